"""Check a folder of synthetic images against the real images they imitate, and write a report.

    python quality/run_qa.py --real data/processed/demo/train/malignant \\
        --synthetic data/synthetic/demo_gan --out results/qa/demo_gan
    python quality/run_qa.py --real data/processed/demo/train/malignant \\
        --synthetic data/processed/demo/val/malignant --out results/qa/real_vs_real --strict

Checks: pixel statistics, diversity (mode collapse, near-duplicates), fidelity (FID/KID), memorisation
(copies of training images), frequency artefacts (checkerboard), detectability (a small CNN and linear
models trying to tell synthetic from real), usefulness; plus a contact sheet to look at.
Writes report.json, report.md and report.html (figures embedded) into --out. Exit code 0; with --strict,
1 when a check fails and 3 when one had too few images to give a verdict (insufficient).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quality.assessment.qa import QAOptions, run_qa
from quality.assessment.report import summary_lines
from quality.checks.cnn_detector import EPOCHS as DETECTOR_EPOCHS
from quality.checks.verdicts import FAIL, INSUFFICIENT
from quality.features.image_sets import DEFAULT_MAX_IMAGES
from training.core.cli import OUTPUT_DIR_FLAGS, Parser, seed_arg
from training.core.errors import UserError, run_cli

MAX_EPOCHS = 1000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--real", required=True, help="folder of real minority-class training images")
    p.add_argument("--synthetic", required=True, help="folder of generated images (sub-folders are ignored)")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", required=True, help="report folder, e.g. results/qa/<name>")
    p.add_argument("--data_root", help="processed dataset for the domain encoder (default: inferred from --real)")
    p.add_argument("--feature_extractor", choices=["auto", "inception-v3-compat", "domain"], default="auto",
                   help="auto: Inception when its weights are on disk, else the domain encoder")
    p.add_argument("--inception_weights", help="local torch-fidelity Inception weights (.pth)")
    p.add_argument("--encoder_epochs", type=int, help="domain encoder training epochs (default: as in training)")
    p.add_argument("--image_size", type=int,
                   help="compare at this size (default: the synthetic images', i.e. the generator's resolution)")
    p.add_argument("--channels", type=int, choices=[1, 3], help="default: the first real image's")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--max_images", type=int, default=None,
                   help=f"at most this many images per set, a seeded random subset (default: {DEFAULT_MAX_IMAGES})")
    p.add_argument("--cache_dir", default="results/cache", help="domain encoders and real features, shared with training")
    p.add_argument("--detector_epochs", type=int,
                   help=f"training passes of the CNN detector per fold (default: {DETECTOR_EPOCHS})")
    p.add_argument("--seed", type=seed_arg, default=0, help="subsets, the real split of the FID baseline, the contact sheet")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check fails, 3 when one lacks images")
    return p.parse_args(argv)


def options_from(args: argparse.Namespace) -> QAOptions:
    """QAOptions from the parsed command line, with range checks."""

    if args.max_images is not None and args.max_images < 2:
        raise UserError("--max_images must be at least 2")
    for flag in ("encoder_epochs", "detector_epochs"):
        if getattr(args, flag) is not None and not 1 <= getattr(args, flag) <= MAX_EPOCHS:
            raise UserError(f"--{flag} must be between 1 and {MAX_EPOCHS}")
    extra = {flag: getattr(args, flag) for flag in ("encoder_epochs", "detector_epochs") if getattr(args, flag)}
    return QAOptions(feature_extractor=args.feature_extractor, data_root=args.data_root, image_size=args.image_size,
                     channels=args.channels, device=args.device, max_images=args.max_images or DEFAULT_MAX_IMAGES,
                     seed=args.seed, cache_dir=args.cache_dir, inception_weights=args.inception_weights, **extra)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for role, folder in (("real", args.real), ("synthetic", args.synthetic)):
        if not Path(folder).is_dir():   # before any work: a typo should fail at once
            raise UserError(f"{role} folder not found: {folder}")

    report = run_qa(args.real, args.synthetic, args.output_dir, options_from(args))
    print("\n".join(summary_lines(report)))
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"report: {report['files']['report.html']} (also report.json, report.md)")
    for name, lacked in report["summary"]["insufficient"].items():
        print(f"insufficient: {name}: {lacked}")
    if not args.strict:
        return 0
    return {FAIL: 1, INSUFFICIENT: 3}.get(report["summary"]["verdict"], 0)


if __name__ == "__main__":
    sys.exit(run_cli(main))
