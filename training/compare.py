"""Compare classifier runs on the same real test set: mean ± std over seeds, paired-bootstrap CIs, ROC curves.

    python training/compare.py results/classifiers/baseline results/classifiers/gan_aug --out results/comparison/gan
    python training/compare.py W O G --baseline B --labels baseline weighted oversampled gan --out results/comparison/all

The first RUN_DIR is the baseline unless --baseline names one. Test images are matched across runs by
pixel sha256, so an augmented dataset's renamed test files still pair up. Writes comparison.md,
comparison.json and roc_curves.png into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/compare.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.core.errors import UserError, run_cli


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="classifier run folders (with summary.json)")
    p.add_argument("--out", required=True, help="output folder, e.g. results/comparison/<name>")
    p.add_argument("--baseline", metavar="RUN_DIR", help="the run the others are compared with (default: the first)")
    p.add_argument("--labels", nargs="+", metavar="NAME",
                   help="one name per run, baseline first, then the other runs in the order given "
                        "(default: each summary.json's name)")
    p.add_argument("--bootstrap", type=int, default=2000, metavar="B", help="bootstrap resamples (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resampling (default 0)")
    args = p.parse_args(argv)
    if args.bootstrap < 1:
        raise UserError("--bootstrap must be >= 1")
    return args


def ordered_run_dirs(run_dirs: list[str], baseline: str | None) -> list[Path]:
    """Baseline first, then the other runs in the order given; the baseline is not compared with itself."""
    dirs = [Path(d) for d in run_dirs]
    if baseline is not None:
        base = Path(baseline)
        dirs = [base] + [d for d in dirs if d.resolve() != base.resolve()]
    if len({d.resolve() for d in dirs}) != len(dirs):
        raise UserError("the same run folder is given twice")
    if len(dirs) < 2:
        raise UserError("give at least two runs to compare (a baseline and one other)")
    return dirs


def run_labels(names: list[str], dirs: list[Path], given: list[str] | None) -> list[str]:
    """--labels, else summary names, else folder names where summary names collide; unique either way."""
    if given is not None:
        if len(given) != len(dirs):
            raise UserError(f"--labels gives {len(given)} names for {len(dirs)} runs (baseline first)")
        labels = given
    else:
        labels = names if len(set(names)) == len(names) else [d.name for d in dirs]
    if len(set(labels)) != len(labels):
        raise UserError(f"two runs would share the label {labels!r}: name them with --labels")
    return labels


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training.analysis.comparison import TABLE_METRICS, load_run, pair_table, runs_table, write_comparison

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise UserError(f"--out is a file, not a folder: {args.out}")
    dirs = ordered_run_dirs(args.run_dirs, args.baseline)
    runs = [load_run(d) for d in dirs]
    labels = run_labels([r.label for r in runs], dirs, args.labels)
    runs = [dataclasses.replace(r, label=label) for r, label in zip(runs, labels)]
    report = write_comparison(runs, args.out, resamples=args.bootstrap, seed=args.seed)

    t = report["test_set"]
    print(f"test set: {t['images']} images ({t['positives']} positive, {t['negatives']} negative); "
          f"{args.bootstrap} paired bootstrap resamples, seed {args.seed}\n")
    print(runs_table(report) + "\n")
    for comparison in report["comparisons"]:
        print(pair_table(report, comparison) + "\n")
    for run in report["runs"]:
        for warning in run["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {args.out} (comparison.md, comparison.json, roc_curves.png; metrics: {', '.join(TABLE_METRICS)})")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
