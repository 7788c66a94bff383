"""What does QA say about a perfect generator? Scores real images that QA's feature space never saw.

    python bench/bench_qa_calibration.py                                   # demo data
    python bench/bench_qa_calibration.py --datasets demo breastmnist --breastmnist ../shared/data/breastmnist.npz

A perfect generator draws new images from the real distribution. QA should pass them: a fidelity ratio
near 1x and a detectability AUC near 0.5. Two probes stand in for such a generator:

* `fresh draws` (demo only): the minority training images of a second demo data set rendered with
  another seed, i.e. independent draws from the same distribution, QA'd exactly as generated images
  are (`run_qa` against the first data set's training images, its encoder trained on that train split).
  `fresh draws, no hairs`: the same, rendered without hair strokes: a generator perfect in all but
  the hairs, the demo GANs' visible defect.
* `held-out real` (any data set): a random half H of the minority training images is left out of the
  domain encoder's training. Today's QA procedure is then applied with the seen half S as the real set
  and H as the "synthetic" one: the fidelity ratio (real-vs-real baseline drawn within S, as QA draws it
  within the training images its encoder saw) and the linear detectors on features and on pixels.
  Ten random baseline splits; the median and the range are printed.

`pixels` needs no encoder and is the unbiased reference. Everything goes into a scratch folder that is
removed afterwards (--keep keeps it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_gan_qa import prepare  # noqa: E402
from quality.assessment.qa import QAOptions, run_qa  # noqa: E402
from quality.checks.detectability import detect  # noqa: E402
from quality.checks.fidelity import baseline_from_features  # noqa: E402
from quality.features.domain_encoder import DEFAULT_EPOCHS, train_domain_encoder  # noqa: E402
from training.core.cli import Parser  # noqa: E402
from training.data.folders import load_split, to_float  # noqa: E402
from training.data.prepare import SourceOptions, prepare_dataset  # noqa: E402
from training.data.sources.demo import render_lesion  # noqa: E402

IMAGE_SIZE = 32        # the shipped 32 px configs' size: QA runs at the generated images' size
MINORITY = "malignant"
SPLITS = 10


def hairless_draws(folder: Path, num: int, seed: int = 778, size: int = 64) -> Path:
    """`num` new malignant demo images without hair strokes, as PNGs (the demo's own size and format)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num):
        pixels = render_lesion(np.random.default_rng([seed, i]), size, malignant=True, hairs=False)
        Image.fromarray(pixels).save(folder / f"hairless_{i:05d}.png")
    return folder


def fresh_draws(root: Path, work: Path, hairs: bool = True) -> dict:
    """QA of a second demo data set's minority training images (or hairless ones) against the first's."""
    if hairs:
        folder = prepare_dataset("demo", work / "processed", "demo_seed777", SourceOptions(seed=777)).root
        folder = folder / "train" / MINORITY
    else:
        folder = hairless_draws(work / "hairless", len(list((root / "train" / MINORITY).iterdir())))
    report = run_qa(root / "train" / MINORITY, folder, work / ("qa_fresh" if hairs else "qa_hairless"),
                    QAOptions(seed=0, image_size=IMAGE_SIZE, cache_dir=str(work / "cache"), data_root=str(root)))
    return {"verdict": report["summary"]["verdict"],
            "checks": {k: v["verdict"] for k, v in report["summary"]["checks"].items()},
            "fid_ratio": report["fidelity"].get("real_baseline", {}).get("ratio"),
            "detectability_auc": report["detectability"]["auc"],
            "memorisation": report["memorisation"]["reason"],
            "fine_detail_ratio": report["artefacts"]["high_frequency_ratio"],
            "views": {k: v["auc"] for k, v in report["detectability"].get("views", {}).items()}}


def held_out(root: Path, channels: int, seed: int = 0) -> dict:
    """Today's QA procedure on minority images its encoder did not train on, against ones it did."""
    images, labels, names = load_split(root, "train", IMAGE_SIZE, channels)
    minority = np.flatnonzero(labels.numpy() == names.index(MINORITY))
    rng = np.random.default_rng(seed)
    unseen = np.sort(rng.choice(minority, len(minority) // 2, replace=False))
    seen = np.setdiff1d(minority, unseen)
    trained_on = np.setdiff1d(np.arange(len(images)), unseen)
    encoder = train_domain_encoder(images[trained_on], labels[trained_on], len(names), DEFAULT_EPOCHS, seed=seed)
    with torch.no_grad():
        features = encoder.embedding(images).double().numpy()
    ratios = [baseline_from_features(features[seen], features[unseen], np.random.default_rng(k))["ratio"]
              for k in range(SPLITS)]
    pixels = to_float(images).flatten(1).double().numpy()
    return {"seen": len(seen), "unseen": len(unseen), "fid_ratio_median": float(np.median(ratios)),
            "fid_ratio_range": [float(min(ratios)), float(max(ratios))],
            "detect_features": detect(features[seen], features[unseen], seed, bootstrap=0)["auc"],
            "detect_pixels": detect(pixels[seen], pixels[unseen], seed, bootstrap=0)["auc"]}


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--datasets", nargs="+", choices=["demo", "breastmnist"], default=["demo"])
    p.add_argument("--breastmnist", default=str(ROOT.parent / "shared" / "data" / "breastmnist.npz"))
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_qa_calibration_",
                                 dir=ROOT / "results" if (ROOT / "results").is_dir() else None))
    lines = ["| data | probe | QA | FID / real-vs-real | detectability AUC (features) | (pixels) |",
             "|---|---|---|---|---|---|"]
    try:
        for dataset in args.datasets:
            root = prepare(dataset, work, args.breastmnist)
            channels = 3 if dataset == "demo" else 1
            for hairs in ([True, False] if dataset == "demo" else []):
                r, probe = fresh_draws(root, work, hairs), "fresh draws" + ("" if hairs else ", no hairs")
                print(f"{dataset} {probe}: QA {r['verdict']} {r['checks']}; fine detail {r['fine_detail_ratio']:.2f}x; "
                      f"memorisation: {r['memorisation']}", flush=True)
                lines.append(f"| {dataset} | {probe} (200) | {r['verdict']} | {r['fid_ratio']:.2f}x | "
                             f"{r['views'].get('features', float('nan')):.3f} | "
                             f"{r['views'].get('pixels', float('nan')):.3f} |")
            h = held_out(root, channels)
            low, high = h["fid_ratio_range"]
            lines.append(f"| {dataset} | held-out real ({h['unseen']} vs {h['seen']} seen) | – | "
                         f"{h['fid_ratio_median']:.2f}x ({low:.2f}–{high:.2f}) | {h['detect_features']:.3f} | "
                         f"{h['detect_pixels']:.3f} |")
            print(lines[-1], flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
