"""The verdicts a QA check can give, and the small rules that turn a number into one.

`insufficient`: the check had fewer images than it needs to tell a good set from a bad one at its
thresholds, and found no fail. It is never a pass: it ranks above a warning, so the pipeline's default
gate (`synthesis.qa_gate: fail`) stops on it too.
"""

from __future__ import annotations

from collections.abc import Iterable

PASS, WARN, INSUFFICIENT, FAIL = "pass", "warn", "insufficient", "fail"
VERDICTS = (PASS, WARN, INSUFFICIENT, FAIL)          # in order of severity


def grade_above(value: float, warn_above: float, fail_above: float) -> str:
    """A verdict for a number where larger is worse (e.g. a flagged fraction)."""
    if value > fail_above:
        return FAIL
    return WARN if value > warn_above else PASS


def grade_below(value: float, warn_below: float, fail_below: float) -> str:
    """A verdict for a number where smaller is worse (e.g. a diversity ratio)."""
    if value < fail_below:
        return FAIL
    return WARN if value < warn_below else PASS


def worst(verdicts: Iterable[str]) -> str:
    """The most severe of several verdicts (pass when there are none)."""
    return max(verdicts, key=VERDICTS.index, default=PASS)


def needs_more(verdict: str, images: int, needed: int) -> str:
    """`verdict` judged on `images` when the check needs `needed`: a fail stands (a tell found on few
    images is a tell); a pass or a warning on too few images is `insufficient`."""
    return verdict if images >= needed or verdict == FAIL else INSUFFICIENT
