"""Turn a data source into the processed layout `data/processed/<name>/{train,val,test}/<class>/`.

    python training/prepare_data.py --source demo
    python training/prepare_data.py --source digits          # scikit-learn's handwritten digits, 32 px
    python training/prepare_data.py --source path/to/mnist    # MNIST IDX files (or mnist.npz with x_train, ...)
    python training/prepare_data.py --source breastmnist.npz --class_names 0=malignant,1=benign
    python training/prepare_data.py --source path/to/folder --val_fraction 0.1 --test_fraction 0.2
    python training/prepare_data.py --source path/to/folder --channels auto --resize pad --image_size 128

It reports what it found before writing: the classes, the colour modes (and how many images are grey in
content, R = G = B, whatever their file mode), the channel count chosen, the range of sizes and how
non-square images are made square; then the duplicate groups, listed in <dataset>/duplicates.csv.
"""

from __future__ import annotations

import sys

from training.core.cli import OUTPUT_DIR_FLAGS, Parser, seed_arg
from training.core.errors import run_cli
from training.data.images import DEFAULT_RESIZE, RESIZE_POLICIES
from training.data.prepare import SourceOptions, prepare_dataset
from training.data.processed import format_summary
from training.data.sources.imagefolder import GROUPINGS


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("--source", required=True,
                   help="'demo', 'digits', a MedMNIST or MNIST-style .npz, a folder of MNIST IDX files, or an ImageFolder")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", default="data/processed",
                   help="parent folder of the processed dataset")
    p.add_argument("--name", help="dataset name (default: 'demo', or the source's file/folder name)")
    p.add_argument("--class_names", help=".npz and IDX only: label names, e.g. 0=malignant,1=benign")
    p.add_argument("--image_size", type=int, help="resize to this square size (demo: render size, default 64; digits: 32)")
    p.add_argument("--val_fraction", type=float, default=0.1, help="folder without splits, digits, MNIST: val share per class")
    p.add_argument("--test_fraction", type=float, default=0.2, help="folder without splits, digits: test share per class")
    p.add_argument("--seed", type=seed_arg, default=0, help="demo images and stratified splits")
    p.add_argument("--demo_num_train", type=int, default=2200, help="demo: training images (all classes)")
    p.add_argument("--demo_imbalance", type=int, default=10, help="demo: benign images per malignant one (train, val)")
    p.add_argument("--demo_test_malignant", type=int,
                   help="demo: malignant test images (default: as many as benign ones, 500 at the default size; "
                        "train and val keep --demo_imbalance): test positives give the comparison its power")
    p.add_argument("--drop_leaked", action="store_true",
                   help="leave val/test images that duplicate a train image out (default: refuse)")
    p.add_argument("--channels", choices=("auto", "1", "3"), default="auto",
                   help="1: grey, 3: RGB; auto: grey when every image is grey in content (R = G = B), whatever "
                        "its file mode, else RGB")
    p.add_argument("--resize", choices=RESIZE_POLICIES, default=DEFAULT_RESIZE,
                   help="how a non-square image becomes square: pad (default: black bands, every pixel and shape "
                        "kept), center_crop (edges cut off) or squash (shapes distorted)")
    p.add_argument("--group_by", choices=GROUPINGS, default="image",
                   help="a folder without splits: subfolder keeps every image under one sub-folder of a class (one "
                        "patient's, say) in one split; image (default) splits image by image, identical ones together")
    p.add_argument("--keep_duplicates", action="store_true",
                   help="keep every copy of identical images in val/test (default: one copy per group)")
    p.add_argument("--overwrite", action="store_true", help="rebuild an existing processed dataset")
    args = p.parse_args(argv)
    options = SourceOptions(args.class_names, args.image_size, args.val_fraction, args.test_fraction, args.seed,
                            args.demo_num_train, args.demo_imbalance, demo_test_malignant=args.demo_test_malignant,
                            channels=None if args.channels == "auto" else int(args.channels), resize=args.resize,
                            group_by=args.group_by)
    prepared = prepare_dataset(args.source, args.output_dir, args.name, options, drop_leaked=args.drop_leaked,
                               keep_duplicates=args.keep_duplicates, overwrite=args.overwrite)
    if prepared.summary is None:
        print(f"{prepared.root} is already prepared; kept as it is (pass --overwrite to rebuild it)")
        return 0
    print(f"wrote {prepared.root} ({sum(sum(c.values()) for c in prepared.summary.values())} images)")
    print(format_summary(prepared.summary))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
