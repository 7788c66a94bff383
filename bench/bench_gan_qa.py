"""Does the generator pass its own QA on every training seed? Trains, generates and runs QA per (data set, seed).

    python bench/bench_gan_qa.py                                   # demo data, seeds 0 1 2
    python bench/bench_gan_qa.py --datasets demo breastmnist --breastmnist ../shared/data/breastmnist.npz
    python bench/bench_gan_qa.py --seeds 0 --overrides model.upsample=resize_conv    # a lever switched off
    python bench/bench_gan_qa.py --seeds 3 4 5 --pretrain benign --pretrain_epochs 50 \
        --overrides train.epochs=300                             # transfer from the plentiful class
    python bench/bench_gan_qa.py --seeds 3 --pretrain benign --overrides train.epochs=300 data.image_size=64 \
        --pretrain_overrides data.image_size=64                  # the same at 64 px (a shape change goes in both)

For each data set (demo: experiments/demo_gan.yaml; BreastMNIST malignant: experiments/breastmnist_hinge.yaml)
and seed, it trains the shipped config with train.seed=SEED, makes --num_samples images from
best_generator.pth, runs every QA check against the real training images of the minority class, and
prints one row: the QA verdict and counts, the domain-FID ratio to the real-vs-real baseline, the
detectability AUC, the usefulness ratio, D's mean scores at the end (does D discriminate?) and the
wall time of training (with --pretrain: of both runs). With --pretrain CLASS, the same config (and
--pretrain_overrides) first trains on CLASS for --pretrain_epochs with the same seed, and the run
starts from its last checkpoint (train.init_from). Everything goes into a scratch folder that is
removed afterwards (--keep keeps it).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import torch

from quality.assessment.qa import QAOptions, run_qa
from training.core.cli import Parser
from training.core.config import load_config
from training.data.prepare import SourceOptions, prepare_dataset
from training.gan.checkpoint import list_checkpoints
from training.gan.config import GANConfig
from training.gan.loop import train_gan
from training.gan.run_folder import BEST_GENERATOR, GANRun
from training.synthesis import sampling

ROOT = Path(__file__).resolve().parents[1]

CONFIGS = {"demo": "experiments/demo_gan.yaml", "breastmnist": "experiments/breastmnist_hinge.yaml"}


def prepare(dataset: str, work: Path, breastmnist: str, demo_train: int) -> Path:
    if dataset == "demo":
        return prepare_dataset("demo", work / "processed", "demo", SourceOptions(demo_num_train=demo_train)).root
    return prepare_dataset(breastmnist, work / "processed", "breastmnist",
                           SourceOptions(class_names="0=malignant,1=benign"), drop_leaked=True).root


def one_run(dataset: str, root: Path, seed: int, work: Path, args) -> dict:
    name = f"{dataset}_seed{seed}"
    common = [f"data.root={root}", f"train.seed={seed}", f"output.results_dir={work / 'results'}",
              f"output.synthetic_dir={work / 'synthetic'}", f"train.device={args.device}"]
    start = time.perf_counter()
    init = []
    if args.pretrain:
        pretrain = load_config(GANConfig, ROOT / CONFIGS[dataset], [
            *common, f"output.name={name}_pretrain", f"data.minority_class={args.pretrain}",
            f"train.epochs={args.pretrain_epochs}", *args.pretrain_overrides])
        train_gan(pretrain, overwrite=True)
        init = [f"train.init_from={list_checkpoints(GANRun.of(pretrain).checkpoints)[-1]}"]
    config = load_config(GANConfig, ROOT / CONFIGS[dataset], [*common, f"output.name={name}", *init, *args.overrides])
    train_gan(config, overwrite=True)
    seconds = time.perf_counter() - start
    generators = sampling.load_generators([GANRun.of(config).file(BEST_GENERATOR)], torch.device("cpu"))
    folder = work / "generated" / name
    sampling.generate(generators, [1.0], args.num_samples, 0, folder, progress_bar=False)
    report = run_qa(root / "train" / config.data.minority_class, folder, work / "qa" / name,
                    QAOptions(seed=0, cache_dir=str(work / "results" / "cache"), data_root=str(root)))
    losses = json.loads((work / "results" / "gan" / name / "losses.json").read_text())[-20:]
    metrics = json.loads((work / "results" / "gan" / name / "metrics.json").read_text())
    return {"dataset": dataset, "seed": seed, "verdict": report["summary"]["verdict"],
            "counts": report["summary"]["counts"],
            "checks": {k: v["verdict"] for k, v in report["summary"]["checks"].items()},
            "fid_ratio": report["fidelity"].get("real_baseline", {}).get("ratio"),
            "detectability_auc": report["detectability"]["auc"],
            "detectability_view": report["detectability"]["decisive_view"],
            "cnn_auc": report["detectability"]["views"]["cnn"]["auc"],
            "cnn_ci": (report["detectability"]["views"]["cnn"]["ci_low"], report["detectability"]["views"]["cnn"]["ci_high"]),
            "fine_detail_ratio": report["artefacts"]["high_frequency_ratio"],   # < 0.67 warns as blurry
            "best_epoch": (metrics["best"] or {}).get("epoch"),
            "screened": [{k: h.get(k) for k in ("epoch", "fid", "fid_ratio", "detectability_auc", "screen")}
                         for h in metrics["history"]],
            "minority_images": sum(1 for _ in (root / "train" / config.data.minority_class).iterdir()),
            "epochs": config.train.epochs,
            "usefulness_ratio": report.get("usefulness", {}).get("ratio"),
            "d_real": sum(h["d_real"] for h in losses) / len(losses),
            "d_fake": sum(h["d_fake"] for h in losses) / len(losses), "train_seconds": seconds}


def main() -> None:
    p = Parser(__doc__)
    p.add_argument("--datasets", nargs="+", choices=sorted(CONFIGS), default=["demo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--breastmnist", default=str(ROOT.parent / "shared" / "data" / "breastmnist.npz"))
    p.add_argument("--num_samples", type=int, default=1000)
    p.add_argument("--demo_train", type=int, default=2200,
                   help="the demo's training images, 10 benign : 1 malignant (2200: 200 malignant)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--overrides", nargs="*", default=[], metavar="key.sub=value",
                   help="applied to the run on the minority class (with --pretrain: the fine-tuning run only)")
    p.add_argument("--pretrain", metavar="CLASS", help="first train on this (plentiful) class, then fine-tune")
    p.add_argument("--pretrain_epochs", type=int, default=50)
    p.add_argument("--pretrain_overrides", nargs="*", default=[], metavar="key.sub=value",
                   help="applied to the pretraining run only; a change of shape (data.image_size, model.*) goes in both")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_gan_qa_", dir=ROOT / "results" if (ROOT / "results").is_dir() else None))
    rows = []
    try:
        for dataset in args.datasets:
            root = prepare(dataset, work, args.breastmnist, args.demo_train)
            for seed in args.seeds:
                rows.append(one_run(dataset, root, seed, work, args))
                r = rows[-1]
                r["fid_cell"] = "n/a" if r["fid_ratio"] is None else f"{r['fid_ratio']:.2f}x"
                print(f"{dataset} seed {seed}: QA {r['verdict']} {r['checks']}, FID {r['fid_cell']} baseline, "
                      f"detectability AUC {r['detectability_auc']:.3f}, fine detail {r['fine_detail_ratio']:.2f}x, "
                      f"best epoch {r['best_epoch']}, usefulness {r['usefulness_ratio']}, "
                      f"D(real) {r['d_real']:+.2f} D(fake) {r['d_fake']:+.2f}, {r['train_seconds']:.0f} s", flush=True)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| data | seed | QA | pass/warn/insufficient/fail | FID / real-vs-real | detectability AUC (deciding view) "
          "| CNN view [95 % CI] | fine detail | usefulness | D(real) | D(fake) | train s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c = r["counts"]
        useful = "n/a" if r["usefulness_ratio"] is None else f"{r['usefulness_ratio']:.2f}"
        print(f"| {r['dataset']} | {r['seed']} | {r['verdict']} | {c['pass']}/{c['warn']}/{c['insufficient']}/{c['fail']} | "
              f"{r['fid_cell']} | {r['detectability_auc']:.3f} ({r['detectability_view']}) | {r['cnn_auc']:.3f} "
              f"[{r['cnn_ci'][0]:.3f}, {r['cnn_ci'][1]:.3f}] | {r['fine_detail_ratio']:.2f}x | {useful} "
              f"| {r['d_real']:+.2f} | {r['d_fake']:+.2f} "
              f"| {r['train_seconds']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
