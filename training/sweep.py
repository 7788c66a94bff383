"""How much synthetic data helps: sensitivity and AUC against the number (or share) of synthetic images.

    python training/sweep.py --config experiments/sweep_synthetic_counts.yaml
    python training/sweep.py --config experiments/sweep_mixing_ratios.yaml

mode counts  adds N synthetic minority images to all the real ones, for each N (the reference guide's
             conservative 2,000 -> 4,000 -> 6,000, with 0 as the baseline;
             docs/user_guide.md#defaults-target-ratio-and-sweep-counts). Counts above what the synthetic
             folders hold, or above 10x the real minority images, are scaled down together,
             and the sweep says so.
mode mixing  keeps the minority class at its real size and replaces a share f of it by synthetic
             images (such as 30k real + 30k synthetic, 48k + 12k, 54k + 6k of a 60k class).

Each point is assembled with build_augmented and trained over the classifier config's seeds; the
points are compared with compare.py's paired bootstrap against the first point. Writes
results/sweeps/<name>/: sweep.png (sensitivity and AUC with the spread over seeds and each point's
95 % CI against the first), sweep.json, comparison.md / .json, roc_curves.png. Finished points are
kept, so an interrupted sweep resumes.
"""

from __future__ import annotations

import sys
from pathlib import Path

from training.analysis.synthetic_amount import SweepConfig, run_sweep, sweep_table
from training.core.cli import Parser
from training.core.config import load_config, to_yaml
from training.core.errors import run_cli


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("--config", required=True, help="e.g. experiments/sweep_synthetic_counts.yaml")
    p.add_argument("--dry_run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    config = load_config(SweepConfig, args.config, args.overrides)
    if args.dry_run:
        print(to_yaml(config), end="")
        return 0
    result = run_sweep(config)
    print("\n" + sweep_table(result))
    print(f"\nwrote {Path(config.output.results_dir) / 'sweeps' / config.output.name} (sweep.png, sweep.json, comparison.md)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
