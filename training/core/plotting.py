"""Figures for files, without pyplot: no global backend to set or figures to close, so plotting in a
library never changes what an interactive program (quality/review.py) shows."""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """Like `pyplot.subplots`: a new Figure and its axes (`figsize` and the other Figure options are taken)."""
    figure_keys = {"figsize", "dpi", "layout", "constrained_layout", "tight_layout"}
    fig = Figure(**{k: v for k, v in kwargs.items() if k in figure_keys})
    axes = fig.subplots(nrows, ncols, **{k: v for k, v in kwargs.items() if k not in figure_keys})
    return fig, axes
