"""Compare classifier runs on the same real test set: mean ± std over seeds, paired-bootstrap CIs, ROC curves,
and a recipe-level verdict on the primary metric (seeds and test images resampled together).

    python training/compare.py results/classifiers/baseline results/classifiers/gan_aug --output_dir results/comparison/gan
    python training/compare.py W O G --baseline B --labels baseline weighted oversampled gan --output_dir results/comparison/all

The first RUN_DIR is the baseline unless --baseline names one. Test images are matched across runs by
pixel sha256, so an augmented dataset's renamed test files still pair up. Writes comparison.md,
comparison.json and roc_curves.png into --output_dir. The --primary_metric (default: sensitivity at >= 90 %
validation specificity) decides each verdict: its test counts seed-to-seed (training) variance as well as
test-set sampling, and is Holm-corrected over the runs compared with the baseline. comparison.md also gives
the per-model CI (test images only) and the minimum detectable effect.
"""

from __future__ import annotations

import sys

from training.analysis.comparison import (
    COMPARISON_METRICS,
    TABLE_METRICS,
    compare_runs,
    detectable_line,
    pair_table,
    runs_table,
)
from training.classify.metrics import PRIMARY_METRIC
from training.core.cli import OUTPUT_DIR_FLAGS, Parser, seed_arg
from training.core.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="classifier run folders (with summary.json)")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", required=True,
                   help="output folder, e.g. results/comparison/<name>")
    p.add_argument("--baseline", metavar="RUN_DIR", help="the run the others are compared with (default: the first)")
    p.add_argument("--labels", nargs="+", metavar="NAME",
                   help="one name per run, baseline first, then the other runs in the order given "
                        "(default: each summary.json's name)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the bootstrap resampling (default 0)")
    p.add_argument("--primary_metric", default=PRIMARY_METRIC, choices=COMPARISON_METRICS,
                   help=f"the metric whose Holm-corrected bootstrap test decides the verdicts (default {PRIMARY_METRIC})")
    args = p.parse_args(argv)
    report, _ = compare_runs(args.run_dirs, args.output_dir, baseline=args.baseline, labels=args.labels,
                             resamples=args.bootstrap, seed=args.seed, primary_metric=args.primary_metric)
    t = report["test_set"]
    print(f"test set: {t['images']} images ({t['positives']} positive, {t['negatives']} negative); "
          f"{args.bootstrap} paired bootstrap resamples, seed {args.seed}; "
          f"primary metric {args.primary_metric} (seeds and test images resampled)\n")
    if detectable_line(report):
        print(detectable_line(report))
    print(runs_table(report) + "\n")
    for comparison in report["comparisons"]:
        print(pair_table(report, comparison) + "\n")
    for run in report["runs"]:
        for warning in run["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {args.output_dir} (comparison.md, comparison.json, roc_curves.png; metrics: {', '.join(TABLE_METRICS)})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
