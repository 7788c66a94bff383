"""Assemble an augmented dataset: all real images, synthetic ones added to train only.

    python training/build_augmented.py --baseline data/processed/demo --synthetic data/synthetic/dcgan_hinge \\
        --output_dir data/processed/demo_augmented --target_ratio 1.4
    python training/build_augmented.py --baseline data/processed/demo --synthetic A B --num_synthetic 600 --out ...

Val and test keep the real images only; the result is proved (no synthetic image in val/test, no
content shared between train and val/test, counts as asked) before it is moved into place, and
composition.md says what went in. The baseline dataset and the synthetic folders are never modified.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from training.core.cli import OUTPUT_DIR_FLAGS, Parser
from training.core.errors import UserError, run_cli
from training.data.augmented_set import build_augmented, composition_markdown


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--baseline", required=True, help="processed dataset (data/processed/<name>)")
    p.add_argument("--synthetic", nargs="+", required=True, metavar="DIR", help="folder(s) from generate_samples.py")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", required=True,
                   help="where the augmented dataset goes, e.g. data/processed/<name>_augmented")
    amount = p.add_mutually_exclusive_group()
    amount.add_argument("--num_synthetic", type=int, help="synthetic images per class that has some")
    amount.add_argument("--target_ratio", type=float, help="largest class : augmented class after adding, e.g. 1.4")
    amount.add_argument("--synthetic_per_real", type=float,
                        help="synthetic images per real image of each class that has some (e.g. 1.0 with a folder per "
                             "class: the same share of synthetic images in every class)")
    p.add_argument("--force", action="store_true", help="allow more than 10x the real images of a class")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing augmented dataset")
    args = p.parse_args(argv)
    if args.num_synthetic is not None and args.num_synthetic < 0:
        raise UserError("--num_synthetic must be >= 0")
    if args.target_ratio is not None and not (math.isfinite(args.target_ratio) and args.target_ratio >= 1):
        raise UserError("--target_ratio must be >= 1 (largest class : augmented class)")
    if args.synthetic_per_real is not None and not (math.isfinite(args.synthetic_per_real) and args.synthetic_per_real > 0):
        raise UserError("--synthetic_per_real must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(args.baseline).is_dir():
        raise UserError(f"baseline dataset not found: {args.baseline}")
    composition = build_augmented(args.baseline, args.synthetic, args.output_dir, num_synthetic=args.num_synthetic,
                                  target_ratio=args.target_ratio, synthetic_per_real=args.synthetic_per_real,
                                  force=args.force, overwrite=args.overwrite)
    print(composition_markdown(composition), end="")
    print(f"wrote {args.output_dir} (composition.md, composition.json, manifest.csv)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
