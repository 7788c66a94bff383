"""Keep the best share of a larger pool of synthetic images, by a stated score, in a new folder.

    python training/generate_samples.py --config experiments/demo_gan.yaml --num_samples 4000 \\
        --output_dir data/synthetic/demo_pool --yes
    python training/select_samples.py --pool_dir data/synthetic/demo_pool \\
        --real_dir data/processed/demo/train/malignant --output_dir data/synthetic/demo_best --keep 1000

Scores (higher is better):
    realism      Kynkaanniemi et al. (2019) realism score in the domain-encoder feature space QA uses
                 (the encoder is cached in --cache_dir, so one an earlier QA or training run made is reused)
    classifier   a real-only classifier's probability of the pool's class (--filter_classifier PATH)

Near-copies of real training images (close to one in pixels or in features: stricter than the memorisation
check, which needs both) are dropped first, unless
--keep_near_copies. The new folder holds the kept images best first (rank 0 = synthetic_<class>_000000.png),
so build_augmented.py --num_synthetic N takes the N best; its manifest.jsonl records each image's score,
rank and pool file, and selection.json the score and fate of every pool image. The pool is not modified.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quality.features.domain_encoder import MAX_EPOCHS as MAX_ENCODER_EPOCHS
from training.core.cli import OUTPUT_DIR_FLAGS, Parser
from training.core.errors import UserError, run_cli
from training.core.runtime import resolve_device
from training.synthesis.selection import SCORES, SELECTION, select_synthetic


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--pool_dir", required=True, help="a folder made by generate_samples.py (one class)")
    p.add_argument("--real_dir", required=True, help="that class's real training images, e.g. "
                   "data/processed/<dataset>/train/<class>")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", required=True, help="the new folder of selected images")
    p.add_argument("--keep", type=int, required=True, help="how many images to keep")
    p.add_argument("--score", choices=sorted(SCORES), default="realism", help="what ranks the images (default realism)")
    p.add_argument("--filter_classifier", metavar="PATH", help="with --score classifier: train_classifier.py's "
                   "best_model.pth, trained on real images only")
    p.add_argument("--keep_near_copies", action="store_true", help="do not drop near-copies of real training images")
    p.add_argument("--data_root", help="processed dataset for the domain encoder (default: inferred from --real_dir)")
    p.add_argument("--cache_dir", default="results/cache", help="domain encoders, shared with QA and training")
    p.add_argument("--encoder_epochs", type=int, help="domain encoder training epochs (default: as in QA and training)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--overwrite", action="store_true", help="replace a folder an earlier selection made")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.encoder_epochs is not None and not 1 <= args.encoder_epochs <= MAX_ENCODER_EPOCHS:
        raise UserError(f"--encoder_epochs must be between 1 and {MAX_ENCODER_EPOCHS}")
    options = {"encoder_epochs": args.encoder_epochs} if args.encoder_epochs is not None else {}
    summary = select_synthetic(args.pool_dir, args.real_dir, args.output_dir, args.keep, score=args.score,
                               classifier=args.filter_classifier, drop_near_copies=not args.keep_near_copies,
                               data_root=args.data_root, cache_dir=args.cache_dir,
                               device=resolve_device(args.device), overwrite=args.overwrite, **options)
    print(f"kept {summary['kept']} of {summary['pool_size']} pool images by {summary['score']} score "
          f"(>= {summary['score_threshold']:.4g}); dropped {summary['near_copies_dropped']} near-copies of real images")
    print(f"wrote {args.output_dir} (record: {Path(args.output_dir) / SELECTION})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
