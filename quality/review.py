"""Step through a folder of images in the terminal and accept or reject each one.

    python quality/review.py data/synthetic/demo_gan
    python quality/review.py data/synthetic/demo_gan --shuffle --seed 1

Answers: y = accept, n = reject (moved into DIR/rejected/, never deleted or overwritten),
s = skip (decide later), q = quit. Every decision is saved at once in DIR/review.json, so a review
can be stopped at any time and resumed later: decided images are not shown again (unless the file's
content has changed since, or a rejected file is back in the folder). The image is shown in a window
when matplotlib has an interactive backend; otherwise only its path is printed, to open in a viewer
of your choice.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quality.assessment.human_review import (
    matplotlib_viewer,
    review_images,
)
from training.core.cli import Parser, seed_arg
from training.core.errors import DataError, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("folder", help="folder of images, e.g. a generated data/synthetic/<run> folder")
    p.add_argument("--shuffle", action="store_true", help="review in a random order (seeded)")
    p.add_argument("--seed", type=seed_arg, default=0)
    p.add_argument("--no_show", action="store_true", help="print paths only, never open a window")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.folder).is_dir():
        raise DataError(f"folder not found: {args.folder}")
    show = None if args.no_show else matplotlib_viewer()
    if show is None:
        print("no image window available: open the printed paths in an image viewer")
    review_images(args.folder, input, show, print, shuffle=args.shuffle, seed=args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
