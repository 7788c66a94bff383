"""Calibration of QA, both ways: what it says of real images (it must pass) and of known-bad sets (it must not).

    python bench/bench_qa_calibration.py                                   # demo, 20 draws per set
    python bench/bench_qa_calibration.py --datasets demo breastmnist --breastmnist ../shared/data/breastmnist.npz
    python bench/bench_qa_calibration.py --qa_draws 20                     # also the whole QA on real-vs-real

Every set is judged against real minority images at the generators' 32 px, draw by draw (new images,
new detector seed):

* `real vs real`: demo: fresh renders of the malignant class against the training images; BreastMNIST:
  the malignant images of all three splits cut into two random disjoint halves at each draw;
* known-bad sets, each of the real-vs-real draw's size: a 1-epoch and a 10-epoch generator (the
  shipped config, trained once per data set); real images Gaussian-blurred (sigma 1 px); real images
  with the outer 2-pixel frame darkened by 15 %; the demo without hairs (`render_lesion(hairs=False)`);
  mode collapse (copies of one 10-epoch image, a different one each draw).

The detectability check runs on each draw (its CNN, pixel and frame/interior views; the domain-feature
view needs an encoder that never saw either side, which only the whole QA below has). With
`--qa_draws N` the demo's real-vs-real also goes through the whole `run_qa`, N draws: the overall verdict,
on a demo data set with `--qa_real` malignant training images (default 500: the shipped demo's 200 are
fewer than some checks need to tell a good set from a bad one, so its QA says `insufficient`) against as
many fresh renders.

Prints, per set, the detectability verdict rates and the AUC distribution (median [min, max]) of the
deciding view and of the CNN view alone; then the criteria (real-vs-real: detectability fail <= 5 %,
whole QA pass >= 90 %; known-bad: warn or fail >= 95 %, the 1-epoch generator fail) met or not.
With --memorisation_draws N (demo only) it also repeats the memorisation check on N independent real
sets of 200 images (fresh draws with and without hairs, and with 5 % planted copies).

Everything goes into a scratch folder that is removed afterwards (--keep keeps it).
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_gan_qa import CONFIGS, prepare

from quality.assessment.qa import QAOptions, run_qa
from quality.checks.detectability import border_mask, check_detectability
from quality.checks.memorisation import check_memorisation, nearest_real, possible_copies
from quality.features.domain_encoder import DEFAULT_EPOCHS
from quality.features.extractors import FeatureSpace, resolve_feature_space
from quality.features.frechet import extract_features
from quality.features.image_sets import conform, flatten, to_unit
from training.core.cli import Parser
from training.core.config import load_config
from training.data.folders import load_class, to_uint8
from training.data.prepare import SourceOptions, prepare_dataset
from training.data.sources.demo import render_lesion
from training.gan.config import GANConfig
from training.gan.loop import train_gan
from training.synthesis import sampling

ROOT = Path(__file__).resolve().parents[1]

IMAGE_SIZE = 32        # the shipped configs' size: QA runs at the generated images' size
MINORITY = "malignant"
REAL_VS_REAL = "real vs real"
BAD_GENERATOR_EPOCHS = (1, 10)


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


def save_pngs(images: torch.Tensor, folder: Path) -> Path:
    """uint8 (N, C, H, W) images as PNG files, for the whole QA."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(images):
        pixels = x.permute(1, 2, 0).numpy()
        Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels).save(folder / f"image_{i:05d}.png")
    return folder


def blurred(images: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Each channel convolved with a Gaussian of `sigma` pixels (reflected at the edges)."""
    radius = int(3 * sigma)
    kernel = torch.exp(-torch.arange(-radius, radius + 1.0) ** 2 / (2 * sigma ** 2))
    kernel = (kernel / kernel.sum()).view(1, 1, 1, -1)
    x = images.float()
    n, c, h, w = x.shape
    x = F.pad(x.reshape(n * c, 1, h, w), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(F.conv2d(x, kernel), kernel.transpose(2, 3))
    return x.reshape(n, c, h, w).round().clamp(0, 255).to(torch.uint8)


def darker_frame(images: torch.Tensor, factor: float = 0.85) -> torch.Tensor:
    """The outer 2-pixel frame darkened by 1 - `factor`: a resizing or padding step only one side went through."""
    out = images.clone()
    frame = torch.from_numpy(border_mask(*images.shape[2:]))
    out[:, :, frame] = (out[:, :, frame].float() * factor).round().to(torch.uint8)
    return out


def bad_generators(dataset: str, root: Path, work: Path) -> dict[int, torch.nn.Module]:
    """The shipped GAN config trained for 1 and for 10 epochs: the generators QA must not pass."""
    out = {}
    for epochs in BAD_GENERATOR_EPOCHS:
        name = f"{dataset}_{epochs}_epochs"
        config = load_config(GANConfig, ROOT / CONFIGS[dataset], [
            f"data.root={root}", f"train.epochs={epochs}", f"output.name={name}", f"train.checkpoint_every={epochs}",
            f"output.results_dir={work / 'results'}", f"output.synthetic_dir={work / 'synthetic'}", "train.device=cpu",
            "metrics.every=0", "metrics.num_samples=100"])
        train_gan(config, overwrite=True)
        out[epochs] = sampling.load_generators([work / "results" / "gan" / name / "final_generator.pth"],
                                               torch.device("cpu"))[0].model
    return out


def generated(generator: torch.nn.Module, num: int, seed: int) -> torch.Tensor:
    from training.gan.loop import sample_images

    return to_uint8(sample_images(generator, num, seed, torch.device("cpu")))


def draw_sets(dataset: str, root: Path, draw: int, generators: dict[int, torch.nn.Module],
              channels: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One draw: the real reference and every set judged against it, all of the reference's size."""
    rng = np.random.default_rng([draw, 1])
    if dataset == "demo":
        reference = load_class(root, "train", MINORITY, IMAGE_SIZE, channels)
        other = demo_draws(10_000 + draw, len(reference), hairs=True)
        extra = {"no hairs": demo_draws(20_000 + draw, len(reference), hairs=False)}
    else:
        pool = torch.cat([load_class(root, split, MINORITY, IMAGE_SIZE, channels) for split in ("train", "val", "test")])
        order = torch.from_numpy(rng.permutation(len(pool)))
        reference, other = pool[order[:len(pool) // 2]], pool[order[len(pool) // 2:len(pool) // 2 * 2]]
        extra = {}
    n = len(reference)
    one = generated(generators[10], 1, 50_000 + draw)
    return reference, {REAL_VS_REAL: other, **{f"{e}-epoch generator": generated(g, n, 60_000 + draw)
                                               for e, g in generators.items()},
                       "blurred (sigma 1 px)": blurred(other), "frame darkened 15 %": darker_frame(other), **extra,
                       "mode collapse": one.expand(n, -1, -1, -1).contiguous()}


def whole_qa(draws: int, num_real: int, work: Path) -> Counter:
    """The overall QA verdicts and each check's verdict counts over `draws` demo real-vs-real draws: a demo
    data set with `num_real` malignant training images (and twice as many benign) against as many fresh renders."""
    root = prepare_dataset("demo", work / "processed", "demo_qa",
                           SourceOptions(demo_num_train=3 * num_real, demo_imbalance=2)).root
    counts = Counter()
    for draw in range(draws):
        folder = save_pngs(demo_draws(10_000 + draw, num_real, hairs=True), work / "qa_draws" / f"draw_{draw}")
        report = run_qa(root / "train" / MINORITY, folder, work / "qa" / f"draw_{draw}",
                        QAOptions(seed=draw, image_size=IMAGE_SIZE, cache_dir=str(work / "cache"), data_root=str(root)))
        counts[("overall", report["summary"]["verdict"])] += 1
        for name, check in report["summary"]["checks"].items():
            counts[(name, check["verdict"])] += 1
        print(f"whole QA, demo real-vs-real draw {draw}: {report['summary']['verdict']} "
              f"({', '.join(k for k, v in report['summary']['checks'].items() if v['verdict'] != 'pass') or 'all pass'})",
              flush=True)
        shutil.rmtree(folder)
    return counts


def spread(values: list[float]) -> str:
    return f"{np.median(values):.3f} [{min(values):.3f}, {max(values):.3f}]"


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--datasets", nargs="+", choices=["demo", "breastmnist"], default=["demo"])
    p.add_argument("--breastmnist", default=str(ROOT.parent / "shared" / "data" / "breastmnist.npz"))
    p.add_argument("--draws", type=int, default=20, help="draws of every set (new images, new detector seed)")
    p.add_argument("--qa_draws", type=int, default=0, help="demo real-vs-real draws through the whole QA")
    p.add_argument("--qa_real", type=int, default=500, help="real (and fresh) malignant images per whole-QA draw")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--memorisation_draws", type=int, default=0, metavar="N",
                   help="also repeat the memorisation check on N independent demo draws, with and "
                        "without planted copies (0: skip)")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_qa_calibration_",
                                 dir=ROOT / "results" if (ROOT / "results").is_dir() else None))
    verdicts: dict[tuple[str, str], Counter] = defaultdict(Counter)
    aucs: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    memorisation, qa_counts = {}, Counter()
    try:
        for dataset in args.datasets:
            root = prepare(dataset, work, args.breastmnist)
            channels = 3 if dataset == "demo" else 1
            generators = bad_generators(dataset, root, work)
            for draw in range(args.draws):
                reference, sets = draw_sets(dataset, root, draw, generators, channels)
                for name, images in sets.items():
                    result = check_detectability(to_unit(reference), to_unit(images), seed=draw, bootstrap=0)
                    verdicts[dataset, name][result["verdict"]] += 1
                    aucs[dataset, name]["decisive"].append(result["auc"])
                    aucs[dataset, name]["cnn"].append(result["views"]["cnn"]["auc"])
                    aucs[dataset, name]["views"].append(result["decisive_view"])
                print(f"{dataset} draw {draw}: " + ", ".join(f"{k} {aucs[dataset, k]['decisive'][-1]:.3f}" for k in sets),
                      flush=True)
            if dataset == "demo" and args.qa_draws:
                qa_counts = whole_qa(args.qa_draws, args.qa_real, work)
            if dataset == "demo" and args.memorisation_draws:
                space = resolve_feature_space("domain", data_root=root, image_size=IMAGE_SIZE, channels=3,
                                              inception_weights=None, encoder_epochs=DEFAULT_EPOCHS,
                                              cache_dir=work / "cache")
                memorisation = memorisation_verdicts(args.memorisation_draws, space)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| data | set | draws | detectability pass / warn / insufficient / fail | AUC, deciding view | AUC, CNN "
          "view | deciding views |\n|---|---|---|---|---|---|---|")
    met = []
    for (dataset, name), counts in verdicts.items():
        total, a = sum(counts.values()), aucs[dataset, name]
        print(f"| {dataset} | {name} | {total} | " + " / ".join(str(counts[v]) for v in ("pass", "warn", "insufficient",
              "fail")) + f" | {spread(a['decisive'])} | {spread(a['cnn'])} | "
              + ", ".join(f"{v} {c}" for v, c in Counter(a["views"]).most_common()) + " |")
        if name == REAL_VS_REAL:
            met.append((f"{dataset} real vs real: detectability fail <= 5 %", counts["fail"] <= 0.05 * total))
        else:
            met.append((f"{dataset} {name}: warn or fail >= 95 %", counts["warn"] + counts["fail"] >= 0.95 * total))
        if name == "1-epoch generator":
            met.append((f"{dataset} {name}: fail", counts["fail"] == total))
    if qa_counts:
        total = sum(v for (k, _), v in qa_counts.items() if k == "overall")
        print(f"\nwhole QA on {total} demo real-vs-real draws of {args.qa_real} images per set: "
              + ", ".join(f"{check} {verdict} {n}" for (check, verdict), n in sorted(qa_counts.items()) if verdict != "pass")
              + f"; overall pass {qa_counts['overall', 'pass']}")
        met.append(("demo real vs real: whole QA pass >= 90 %", qa_counts["overall", "pass"] >= 0.9 * total))
    if memorisation:
        print(f"\nmemorisation on {args.memorisation_draws} independent demo draws of 200 images (pass / warn / fail):")
        for (probe, rule), counts in memorisation.items():
            print(f"  {probe}, {rule}: " + " / ".join(str(counts.get(v, 0)) for v in ("pass", "warn", "fail")))
    print("\n" + "\n".join(f"{'met' if ok else 'NOT MET'}: {what}" for what, ok in met))


if __name__ == "__main__":
    main()
