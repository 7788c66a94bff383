"""Turn a data source into the processed layout `data/processed/<name>/{train,val,test}/<class>/`.

    python training/prepare_data.py --source demo
    python training/prepare_data.py --source digits          # scikit-learn's handwritten digits, 32 px
    python training/prepare_data.py --source path/to/mnist    # MNIST IDX files (or mnist.npz with x_train, ...)
    python training/prepare_data.py --source breastmnist.npz --class-names 0=malignant,1=benign
    python training/prepare_data.py --source path/to/folder --val-fraction 0.1 --test-fraction 0.2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/prepare_data.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.core.errors import DataError, run_cli
from training.data.processed import MANIFEST, format_summary, write_dataset
from training.data.sources import open_source


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", required=True,
                   help="'demo', 'digits', a MedMNIST or MNIST-style .npz, a folder of MNIST IDX files, "
                        "or an ImageFolder")
    p.add_argument("--out", default="data/processed", help="parent folder of the processed dataset")
    p.add_argument("--name", help="dataset name (default: 'demo', or the source's file/folder name)")
    p.add_argument("--class-names", help=".npz and IDX only: label names, e.g. 0=malignant,1=benign")
    p.add_argument("--image-size", type=int,
                   help="resize to this square size (demo: render size, default 64; digits: default 32)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="folder without splits, digits, MNIST: val share per class")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="folder without splits, digits: test share per class")
    p.add_argument("--seed", type=int, default=0, help="demo images and stratified splits")
    p.add_argument("--demo-num-train", type=int, default=2200, help="demo: training images (all classes)")
    p.add_argument("--demo-imbalance", type=int, default=10, help="demo: benign images per malignant one")
    p.add_argument("--drop-leaked", action="store_true",
                   help="leave val/test images that duplicate a train image out (default: refuse)")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing processed dataset")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (0 <= args.val_fraction < 1 and 0 <= args.test_fraction < 1
            and args.val_fraction + args.test_fraction < 1):
        raise DataError("--val-fraction and --test-fraction must be in [0, 1) and sum to less than 1")
    if args.image_size is not None and not 8 <= args.image_size <= 1024:
        raise DataError("--image-size must be between 8 and 1024")
    records, total, default_name = open_source(
        args.source, seed=args.seed, image_size=args.image_size, class_names=args.class_names,
        val_fraction=args.val_fraction, test_fraction=args.test_fraction,
        demo_num_train=args.demo_num_train, demo_imbalance=args.demo_imbalance)
    out_dir = Path(args.out) / (args.name or default_name)
    source = Path(args.source).resolve()
    if args.source != "demo" and (out_dir.resolve() == source or source in out_dir.resolve().parents
                                  or out_dir.resolve() in source.parents):
        raise DataError(f"--out {out_dir} overlaps the source {args.source}; the source is never modified")
    if out_dir.exists() and (out_dir / MANIFEST).is_file() and not args.overwrite:
        print(f"{out_dir} is already prepared; kept as it is (pass --overwrite to rebuild it)")
        return 0
    summary = write_dataset(records, out_dir, overwrite=args.overwrite, total=total,
                            drop_leaked=args.drop_leaked)
    print(f"wrote {out_dir} ({sum(sum(c.values()) for c in summary.values())} images)")
    print(format_summary(summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
