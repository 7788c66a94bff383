"""Train a classifier over several seeds and report sensitivity, specificity, AUC, ... on real test images.

    python training/train_classifier.py --config experiments/classifier_baseline.yaml
    python training/train_classifier.py --config experiments/classifier_gan_augmented.yaml train.seeds=[0]
    python training/train_classifier.py --config experiments/classifier_baseline.yaml --dry-run
    torchrun --standalone --nproc_per_node 2 training/train_classifier.py --config experiments/classifier_baseline.yaml

Values after the flags override the YAML (`section.key=value`) and are validated the same way.
Each call writes a new results/classifiers/<name>/run_NNN/; compare runs with training/compare.py.
Under torchrun the N processes train data-parallel (gloo on CPU, nccl on CUDA), each taking 1/N of
every train.batch_size batch; process 0 alone writes the run folder and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from training.classify.config import ClassifierConfig
from training.classify.loop import train_classifier
from training.core.cli import Parser
from training.core.config import load_config, to_yaml, with_device
from training.core.errors import run_cli
from training.core.outputs import refuse_output_inside_dataset


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--config", required=True, help="YAML file, e.g. experiments/classifier_baseline.yaml")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    p.add_argument("--dry_run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return p.parse_args(argv)


def is_first_process() -> bool:
    """False in torchrun's processes 1..N-1 (torchrun sets RANK), which train but do not print."""
    return int(os.environ.get("RANK", "0")) == 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = load_config(ClassifierConfig, args.config, args.overrides)
    config = with_device(config, args.device)
    refuse_output_inside_dataset(config.output.results_dir, "output.results_dir",
                                 "a folder of its own (e.g. output.results_dir=results)")
    if args.dry_run:
        if is_first_process():
            print(to_yaml(config), end="")
        return 0
    run_dir = train_classifier(config)
    if not is_first_process():
        return 0
    test = json.loads((run_dir / "summary.json").read_text())["test"]
    print("test (mean +- std over seeds): " + ", ".join(
        f"{k} {v['mean']:.3f}+-{v['std']:.3f}" for k, v in test.items() if v["mean"] is not None))
    print(f"run: {run_dir} (summary.json, seed_*/metrics.json, ROC and confusion-matrix PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
