"""How far the resizing path alone tells real images from synthetic ones, at each classifier size.

    python bench/bench_resize_path.py --real data/processed/breastmnist/train/malignant \
        --synthetic data/synthetic/pipeline_breastmnist_gan --sizes 28 32

A classifier sees the real images resized from their own size and the synthetic ones from the GAN's.
Where the GAN learned the real images upsampled (28 px scans, a 32 px GAN), a 28 px classifier sees the
synthetic images resampled down and the real ones untouched. For each size this prints QA's CNN detector
(the CNN view: out-of-fold AUC with its 95 % interval) on the two folders loaded at that size, and, as
the part the path alone explains, the same detector on real images split in two halves, one half
round-tripped through the synthetic images' size (the --real images, or every image of the folders
--path_real names: the cue is faint, and 150 images are too few for the CNN to learn it). Nothing is written.
"""

from __future__ import annotations

import time

import numpy as np

from quality.checks.cnn_detector import cnn_out_of_fold_scores
from quality.checks.detectability import detect
from quality.features.image_sets import decode_folder, load_pair, to_unit
from training.core.cli import Parser
from training.data.images import resize


def cnn_view(real: np.ndarray, synthetic: np.ndarray, seed: int) -> dict:
    """QA's CNN view on float (N, C, S, S) sets in [0, 1]."""
    return detect(real, synthetic, seed, scorer=lambda x, y, s: cnn_out_of_fold_scores(x, y, s))


def round_tripped(images: np.ndarray, via: int) -> np.ndarray:
    """uint8 (N, C, S, S) resized to `via` px and back, as a GAN-sized image reaches an S px classifier."""
    size = images.shape[-1]
    return np.stack([resize(resize(x.transpose(1, 2, 0), via), size).transpose(2, 0, 1) for x in images])


def decode(folder: str, size: int) -> np.ndarray:
    """uint8 (N, 1 or 3, S, S): the images of `folder` that are `size` px already (the round trip starts there)."""
    images = [x if x.ndim == 3 else x[:, :, None] for x in decode_folder(folder, "real", None, 0).pixels]
    native = [x.transpose(2, 0, 1) for x in images if x.shape[:2] == (size, size)]
    if not native:
        raise SystemExit(f"{folder} holds no {size} px images: --path_real takes images at the classifier size")
    return np.stack(native)


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--real", required=True, help="the real training images of the GAN's class")
    p.add_argument("--synthetic", required=True, help="the GAN's images")
    p.add_argument("--sizes", type=int, nargs="+", required=True, help="classifier sizes to compare")
    p.add_argument("--path_real", nargs="+", metavar="DIR", help="real images (same size) for the round trip "
                   "(default: --real), e.g. every class folder of the training split")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for size in args.sizes:
        start = time.perf_counter()
        real, synthetic = load_pair(args.real, args.synthetic, image_size=size)
        view = cnn_view(to_unit(real.images), to_unit(synthetic.images), args.seed)
        native = (np.concatenate([decode(folder, size) for folder in args.path_real]) if args.path_real else
                  real.images.numpy() if all(s == f"{size}x{size}" for s in real.sizes_found) else None)
        made_at = synthetic.sizes_found[0].split("x")[0]
        line = (f"at {size} px (real {'/'.join(real.sizes_found)} px, synthetic {'/'.join(synthetic.sizes_found)} px): CNN view "
                f"{view['auc']:.3f} [{view['ci_low']:.3f}, {view['ci_high']:.3f}], {view['images_per_set']} images per set")
        if native is not None and int(made_at) != size:
            half = len(native) // 2
            order = np.random.default_rng(args.seed).permutation(len(native))
            path = cnn_view(native[order[:half]] / 255.0, round_tripped(native[order[half:]], int(made_at)) / 255.0, args.seed)
            line += (f"; real vs real round-tripped through {made_at} px: {path['auc']:.3f} "
                     f"[{path['ci_low']:.3f}, {path['ci_high']:.3f}], {path['images_per_set']} per set")
        print(f"{line} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
