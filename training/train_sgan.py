"""Semi-supervised K+1 GAN on a few labelled images per class, or its baseline on the same labelled images.

    python training/train_sgan.py --config experiments/sgan_digits.yaml
    python training/train_sgan.py --config experiments/sgan_digits.yaml --baseline
    python training/train_sgan.py --config experiments/sgan_breastmnist.yaml data.labeled_per_class=20 --dry-run

`--baseline` is `train.method=baseline`: the same network, labelled subset, steps and early stopping,
without G and without the unlabelled images. Each call writes a new
results/classifiers/<name>/run_NNN/ (the baseline: <name>_baseline/), a classifier run folder that
training/compare.py compares like any other.
"""

from __future__ import annotations

import argparse
import json
import sys

from training.core.cli import Parser
from training.core.config import load_config, to_yaml, with_device
from training.core.errors import run_cli
from training.core.outputs import refuse_output_inside_dataset
from training.sgan.config import SGANConfig
from training.sgan.loop import train_sgan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--config", required=True, help="YAML file, e.g. experiments/sgan_digits.yaml")
    p.add_argument("--baseline", action="store_true", help="train the baseline (train.method=baseline)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    p.add_argument("--dry_run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = [*args.overrides, *(["train.method=baseline"] if args.baseline else [])]
    config = load_config(SGANConfig, args.config, overrides)
    config = with_device(config, args.device)
    refuse_output_inside_dataset(config.output.results_dir, "output.results_dir",
                                 "a folder of its own (e.g. output.results_dir=results)")
    if args.dry_run:
        print(to_yaml(config), end="")
        return 0
    run_dir = train_sgan(config)
    if run_dir is None:             # under torchrun, rank 0 reports
        return 0
    summary = json.loads((run_dir / "summary.json").read_text())
    test = summary["multiclass"]["test"]
    accuracy, auc = test["accuracy"], test["macro_auc"]
    print(f"test (mean +- std over seeds): accuracy {accuracy['mean']:.4f}+-{accuracy['std']:.4f}"
          + (f", macro AUC {auc['mean']:.4f}+-{auc['std']:.4f}" if auc["mean"] is not None else "")
          + f"; selected epochs {summary['best_epochs']}")
    print("sensitivity per class: " + ", ".join(f"{name} {v['mean']:.3f}" for name, v in
                                                 test["per_class_sensitivity"].items() if v["mean"] is not None))
    print(f"run: {run_dir} (summary.json, labelled_subset.json, val_accuracy.png, seed_*/best_model.pth)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
