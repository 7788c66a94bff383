"""Semi-supervised K+1 GAN against its baseline on scikit-learn's digits, 10 labels per class.

    python bench/bench_sgan.py                          # experiments/sgan_digits.yaml, seeds 0 1 2, CPU
    python bench/bench_sgan.py --seeds 0 --epochs 20    # a quick look
    python bench/bench_sgan.py --threads 0              # torch's thread count (one per core)

Prepares the digits (prepare_data.py --source digits, 32 px, fixed split) into <out>/digits when they
are not there, then trains the baseline (the D network on the 100 labelled images alone) and the
K+1 GAN (the same network, labelled subset, steps and early stopping, plus the ~1,160 unlabelled
images and a generator) over the seeds, and prints the test accuracy (10-way, 359 real test images)
as mean +- std over seeds, the macro AUC, the epochs early stopping selected, and the wall time.
Runs go to <out>/classifiers/, a summary to <out>/bench_sgan.json.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from training.core import atomic
from training.core.cli import Parser
from training.core.config import load_config
from training.data.processed import SPLITS_MANIFEST, write_dataset
from training.data.sources import open_source
from training.sgan.config import SGANConfig
from training.sgan.loop import train_sgan

ROOT = Path(__file__).resolve().parents[1]


def prepare_digits(out: Path) -> Path:
    """<out>/digits as `prepare_data.py --source digits` makes it (made once, then reused)."""
    root = out / "digits"
    if not (root / SPLITS_MANIFEST).is_file():
        records, total, _ = open_source("digits")
        write_dataset(records, root, total=total)
    return root


def correct_per_seed(run_dir: Path, seeds: list[int]) -> tuple[list[str], np.ndarray]:
    """Test image hashes (sorted) and whether each seed's argmax was right, (S, n), from test_probabilities.csv."""
    rows = []
    for seed in seeds:
        with open(run_dir / f"seed_{seed}" / "test_probabilities.csv", newline="") as f:
            reader = csv.reader(f)
            names = next(reader)[3:]
            per_image = sorted((r[0], names[int(np.argmax([float(v) for v in r[3:]]))] == r[2]) for r in reader)
        rows.append(per_image)
    return [sha for sha, _ in rows[0]], np.array([[ok for _, ok in r] for r in rows], dtype=np.float64)


def paired_bootstrap(base: np.ndarray, other: np.ndarray, resamples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95 % CI of the difference in mean-over-seeds accuracy, resampling test images (the same for both)."""
    rng = np.random.default_rng(seed)
    diff = other.mean(0) - base.mean(0)                                 # (n,) per image
    means = np.array([diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(resamples)])
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> int:
    p = Parser(__doc__)
    p.add_argument("--config", default=str(ROOT / "experiments" / "sgan_digits.yaml"))
    p.add_argument("--output_dir", "--out", dest="out", default=str(ROOT / "results" / "bench_sgan"),
                   help="scratch folder (data and runs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (default 1: fastest for these small networks on 2 cores, and the numbers "
                        "depend on it, as float sums change order; 0 = torch's choice)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    out = Path(args.out)
    load_before = os.getloadavg()[0]          # other processes on the machine slow every number below
    started = time.perf_counter()
    root = prepare_digits(out)
    prepare_s = time.perf_counter() - started
    overrides = [f"data.root={root}", f"output.results_dir={out}", f"train.seeds={args.seeds}",
                 f"train.device={args.device}", *([f"train.epochs={args.epochs}"] if args.epochs else [])]
    rows = {}
    for method in ("baseline", "sgan"):
        config = load_config(SGANConfig, args.config, [*overrides, f"train.method={method}"])
        started = time.perf_counter()
        run_dir = train_sgan(config)
        seconds = time.perf_counter() - started
        summary = json.loads((run_dir / "summary.json").read_text())
        rows[method] = {"run": str(run_dir), "seconds": seconds, "best_epochs": summary["best_epochs"],
                        **{k: summary["multiclass"]["test"][k] for k in ("accuracy", "macro_auc")},
                        "labelled": summary["data"]["labelled"], "unlabelled": summary["data"]["unlabelled"]}

    base, gan = rows["baseline"], rows["sgan"]
    print(f"\nscikit-learn digits, {base['labelled']} labelled + {base['unlabelled']} unlabelled training images, "
          f"seeds {args.seeds}, {args.device}, {torch.get_num_threads()} torch threads "
          f"(data prepared in {prepare_s:.1f} s; load average {load_before:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after)\n")
    print("| method | test accuracy | macro AUC | selected epochs | wall |\n|---|---:|---:|---|---:|")
    for name, row in (("baseline (labelled only)", base), ("K+1 GAN", gan)):
        acc, auc = row["accuracy"], row["macro_auc"]
        print(f"| {name} | {100 * acc['mean']:.2f} ± {100 * acc['std']:.2f} % | {auc['mean']:.4f} ± {auc['std']:.4f} "
              f"| {row['best_epochs']} | {row['seconds']:.0f} s |")
    gain = [100 * (g - b) for g, b in zip(gan["accuracy"]["values"], base["accuracy"]["values"])]
    keys_b, correct_b = correct_per_seed(Path(base["run"]), args.seeds)
    keys_g, correct_g = correct_per_seed(Path(gan["run"]), args.seeds)
    assert keys_b == keys_g, "the two runs were tested on different images"
    low, high = paired_bootstrap(correct_b, correct_g)
    print(f"\nK+1 GAN - baseline: per seed {', '.join(f'{g:+.2f}' for g in gain)} pp; 95 % CI of the mean "
          f"[{100 * low:+.2f}, {100 * high:+.2f}] pp (paired bootstrap over the {len(keys_b)} test images); "
          f"total {base['seconds'] + gan['seconds']:.0f} s")
    rows["difference_ci_95"] = [low, high]
    atomic.write_json(out / "bench_sgan.json", {"seeds": args.seeds, "device": args.device,
                                                "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
