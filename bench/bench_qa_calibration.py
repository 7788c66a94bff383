"""What does QA say about a perfect generator? QA of real images that played no part in training anything.

    python bench/bench_qa_calibration.py                                   # demo data
    python bench/bench_qa_calibration.py --datasets demo breastmnist --breastmnist ../shared/data/breastmnist.npz

A perfect generator draws new images from the real distribution. QA should pass them: a fidelity ratio
near 1x, a detectability AUC near 0.5, near-copies at chance. Each probe below is QA'd exactly as
generated images are (`run_qa` against the data set's minority training images, with its domain encoder):

* `fresh draws` (demo only): the minority training images of a second demo data set rendered with
  another seed, i.e. independent draws from the same distribution;
* `fresh draws, no hairs` (demo only): the same without hair strokes: a generator perfect in all but
  the hairs, the demo GANs' visible defect;
* `val split`: the data set's own minority validation images (few: 50 demo, 21 BreastMNIST).

With `--memorisation_draws N` (demo only) it also repeats the memorisation check on N independent
real sets of 200 images at 32 px, in the demo's domain features: how often a set with no copies at all
(fresh draws, with and without hairs) gets a warning or a fail, and how often 5 % copies (with noise,
or shifted by one pixel) among fresh draws are found; by the check's rule (close in pixels and in
features) and by each space alone.

Everything goes into a scratch folder that is removed afterwards (--keep keeps it).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_gan_qa import prepare  # noqa: E402
from quality.assessment.qa import QAOptions, run_qa  # noqa: E402
from quality.checks.memorisation import check_memorisation, extract_features, nearest_real, possible_copies  # noqa: E402
from quality.features.domain_encoder import DEFAULT_EPOCHS  # noqa: E402
from quality.features.extractors import FeatureSpace, resolve_feature_space  # noqa: E402
from quality.features.image_sets import conform, flatten, to_unit  # noqa: E402
from training.core.cli import Parser  # noqa: E402
from training.data.prepare import SourceOptions, prepare_dataset  # noqa: E402
from training.data.sources.demo import render_lesion  # noqa: E402

IMAGE_SIZE = 32        # the shipped 32 px configs' size: QA runs at the generated images' size
MINORITY = "malignant"


def hairless_draws(folder: Path, num: int, seed: int = 778, size: int = 64) -> Path:
    """`num` new malignant demo images without hair strokes, as PNGs (the demo's own size and format)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num):
        pixels = render_lesion(np.random.default_rng([seed, i]), size, malignant=True, hairs=False)
        Image.fromarray(pixels).save(folder / f"hairless_{i:05d}.png")
    return folder


def probe_folders(dataset: str, root: Path, work: Path) -> dict[str, Path]:
    folders = {}
    if dataset == "demo":
        other = prepare_dataset("demo", work / "processed", "demo_seed777", SourceOptions(seed=777)).root
        folders["fresh draws"] = other / "train" / MINORITY
        folders["fresh draws, no hairs"] = hairless_draws(work / "hairless", len(list(folders["fresh draws"].iterdir())))
    folders["val split"] = root / "val" / MINORITY
    return folders


def demo_draws(seed: int, num: int, hairs: bool) -> torch.Tensor:
    """`num` malignant demo images rendered at the demo's 64 px and resized to 32 px as QA resizes them."""
    pixels = [conform(render_lesion(np.random.default_rng([seed, i]), 64, malignant=True, hairs=hairs), IMAGE_SIZE, 3)
              for i in range(num)]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()


def memorisation_verdicts(draws: int, space: FeatureSpace, num: int = 200) -> dict[tuple[str, str], Counter]:
    """Memorisation verdicts over `draws` independent real sets of `num` demo images, by (probe, rule),
    against: fresh draws and fresh draws without hairs (no copies: any warning is a false alarm), and fresh
    draws with 5 % of them replaced by copies of real images with noise (sd 0.03) or shifted by one
    pixel (how often the check finds them). Rules: the check's (pixels and features), each space alone."""
    counts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    rng = np.random.default_rng(0)
    for seed in range(draws):
        real, fresh = demo_draws(seed, num, hairs=True), demo_draws(10_000 + seed, num, hairs=True)
        copied = rng.choice(num, num // 20, replace=False)
        noise = torch.from_numpy(rng.normal(0, 0.03 * 255, tuple(real[copied].shape))).float()
        noisy = (real[copied].float() + noise).round().clamp(0, 255)
        probes = {"fresh draws": fresh, "fresh draws, no hairs": demo_draws(10_000 + seed, num, hairs=False),
                  "fresh draws, 5 % noisy copies": torch.cat([noisy.to(torch.uint8), fresh[len(copied):]]),
                  "fresh draws, 5 % copies shifted 1 px": torch.cat([real[copied].roll(1, dims=3), fresh[len(copied):]])}
        real_features = extract_features(real, space)
        for probe, images in probes.items():
            features = extract_features(images, space)
            counts[probe, "pixels and features"][check_memorisation(
                real, images, real_features=real_features, synthetic_features=features)["verdict"]] += 1
            found = {"pixels": nearest_real(flatten(to_unit(real)), flatten(to_unit(images))),
                     "features": nearest_real(real_features, features)}
            for name, one in found.items():
                counts[probe, f"{name} alone"][possible_copies({name: one}).verdict()] += 1
    return counts


def qa_row(root: Path, folder: Path, out: Path, work: Path) -> dict:
    report = run_qa(root / "train" / MINORITY, folder, out,
                    QAOptions(seed=0, image_size=IMAGE_SIZE, cache_dir=str(work / "cache"), data_root=str(root)))
    views = report["detectability"]["views"]
    return {"images": report["images"]["synthetic"]["num_used"], "verdict": report["summary"]["verdict"],
            "warnings": [k for k, v in report["summary"]["checks"].items() if v["verdict"] != "pass"],
            "fid_ratio": report["fidelity"].get("real_baseline", {}).get("ratio"),
            "detect_features": views.get("features", {}).get("auc"), "detect_pixels": views["pixels"]["auc"],
            "near_copies": report["memorisation"]["possible_copies"]["flagged_share"],
            "fine_detail_ratio": report["artefacts"]["high_frequency_ratio"]}


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--datasets", nargs="+", choices=["demo", "breastmnist"], default=["demo"])
    p.add_argument("--breastmnist", default=str(ROOT.parent / "shared" / "data" / "breastmnist.npz"))
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--memorisation_draws", type=int, default=0, metavar="N",
                   help="also repeat the pixel memorisation check on N independent demo draws, with and "
                        "without planted copies (0: skip)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_qa_calibration_",
                                 dir=ROOT / "results" if (ROOT / "results").is_dir() else None))
    lines = ["| data | probe | images | QA | not passing | FID / real-vs-real | detectability AUC (features / pixels) "
             "| near copies (pixels and features) | fine detail |", "|---|---|---|---|---|---|---|---|---|"]
    memorisation = {}
    try:
        for dataset in args.datasets:
            root = prepare(dataset, work, args.breastmnist)
            for probe, folder in probe_folders(dataset, root, work).items():
                r = qa_row(root, folder, work / "qa" / f"{dataset}_{probe.replace(' ', '_').replace(',', '')}", work)
                ratio = "n/a" if r["fid_ratio"] is None else f"{r['fid_ratio']:.2f}x"
                features = "n/a" if r["detect_features"] is None else f"{r['detect_features']:.3f}"
                lines.append(f"| {dataset} | {probe} | {r['images']} | {r['verdict']} | "
                             f"{', '.join(r['warnings']) or '–'} | {ratio} | {features} / {r['detect_pixels']:.3f} | "
                             f"{r['near_copies']:.1%} | {r['fine_detail_ratio']:.2f}x |")
                print(lines[-1], flush=True)
            if dataset == "demo" and args.memorisation_draws:
                # The demo's domain encoder as the training loop's screen has it (every training image).
                space = resolve_feature_space("domain", data_root=root, image_size=IMAGE_SIZE, channels=3,
                                              inception_weights=None, encoder_epochs=DEFAULT_EPOCHS,
                                              cache_dir=work / "cache")
                memorisation = memorisation_verdicts(args.memorisation_draws, space)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n" + "\n".join(lines))
    if memorisation:
        print(f"\nmemorisation on {args.memorisation_draws} independent demo draws of 200 images (pass / warn / fail):")
        for (probe, rule), counts in memorisation.items():
            print(f"  {probe}, {rule}: " + " / ".join(str(counts.get(v, 0)) for v in ("pass", "warn", "fail")))


if __name__ == "__main__":
    main()
