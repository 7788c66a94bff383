"""The whole study in one command: prepare -> train GAN -> preview -> bulk synthesis -> QA -> assemble ->
train baseline, cheap-fix and augmented classifiers -> compare.

    python training/pipeline.py --config experiments/pipeline_demo.yaml
    python training/pipeline.py --config experiments/pipeline_demo.yaml 'classifiers.overrides=["train.seeds=[0]"]'

Every stage records a key of its resolved inputs in results/pipeline/<name>/stages.json; a stage
whose key is unchanged and whose outputs exist is skipped, so a re-run resumes where the last one
stopped and a changed config re-runs exactly the stages it affects (and those after them).

Before the GAN (the first expensive stage), every stage's config is resolved and checked against the
prepared data: class names, the minority class the GAN learns, the positive class the classifiers report
sensitivity for, channels and image sizes. `--dry_run` prints the resolved config and runs the same
check (against the source folder when the data are not prepared yet), running and writing nothing.

With `evaluation.folds: K` the study is cross-validated: the real images of every split are pooled into K
folds, the whole study runs once per fold (stages recorded in results/pipeline/<name>/fold_<k>/stages.json),
training on the other folds and scoring that fold once, and one comparison pools the K test parts, every
real image tested exactly once.
"""

from __future__ import annotations

import sys

from training.core.cli import Parser
from training.core.config import load_config, to_yaml
from training.core.errors import run_cli
from training.study.config import PipelineConfig
from training.study.orchestrate import check_study, run_pipeline


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("--config", required=True, help="e.g. experiments/pipeline_demo.yaml")
    p.add_argument("--dry_run", action="store_true",
                   help="print the resolved config, check every stage's config against the data, and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    config = load_config(PipelineConfig, args.config, args.overrides)
    if args.dry_run:
        print(to_yaml(config), end="")
        plan = check_study(config, args.config)
        print("\npre-flight check passed (nothing was run or written):")
        for line in plan.lines:
            print(f"  {line}")
        return 0
    done = run_pipeline(config, args.config)
    print("\nwhere everything is:")
    shown = ("root", "generator", "folder", "preview", "report", "run")
    for stage, record in done.items():
        where = ", ".join(f"{k}: {v}" for k, v in record["outputs"].items() if k in shown)
        print(f"  {stage:40s} {record['seconds']:7.1f} s  {where}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
