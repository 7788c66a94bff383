"""Pseudo-labelling: sort unconditional GAN samples into classes with a trained classifier.

    python training/pseudo_label.py --synth_dir data/synthetic/<run> \
        --model_path results/classifiers/<name>/run_000/seed_0/best_model.pth \
        --output_dir data/synthetic/<run>_labelled --conf_thresh 0.95

Each image whose top-class probability reaches --conf_thresh is linked (copied where links are
impossible) into <out_dir>/<predicted class>/; the rest are left out. <out_dir>/manifest.jsonl lists
the kept images with their class, confidence and pixel SHA-256, so `build_augmented.py --synthetic
<out_dir>` can use them like any synthetic folder. The acceptance rate per class is printed and
written to pseudo_label_report.json; with too few accepted, lower --conf_thresh.
"""

from __future__ import annotations

import sys

from training.core.cli import OUTPUT_DIR_FLAGS, Parser
from training.core.errors import UserError, run_cli
from training.synthesis.labelling import LOW_ACCEPTANCE, pseudo_label


def main(argv: list[str] | None = None) -> int:
    p = Parser(__doc__)
    p.add_argument("--synth_dir", required=True, help="generated images (generate_samples.py output)")
    p.add_argument("--model_path", required=True, help="a classifier's best_model.pth (train_classifier.py)")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", required=True, help="where <class>/ folders of confident images go")
    p.add_argument("--conf_thresh", type=float, default=0.95)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.conf_thresh <= 1:
        raise UserError("--conf_thresh must be in [0, 1]")
    report = pseudo_label(args.synth_dir, args.model_path, args.output_dir, args.conf_thresh, args.overwrite)
    print(f"kept {report['accepted']} of {report['images']} images ({report['acceptance_rate']:.1%}) "
          f"at confidence >= {args.conf_thresh}")
    for name, c in report["per_class"].items():
        rate = "n/a" if c["acceptance_rate"] is None else f"{c['acceptance_rate']:.1%}"
        print(f"  {name:20s} predicted {c['predicted']:6d}  kept {c['accepted']:6d}  ({rate})")
    if report["acceptance_rate"] < LOW_ACCEPTANCE:
        print(f"only {report['acceptance_rate']:.1%} passed: try a lower --conf_thresh (e.g. "
              f"{max(0.5, args.conf_thresh - 0.15):.2f}) or a better classifier")
    print(f"wrote {args.output_dir} (<class>/ folders, manifest.jsonl, pseudo_label_report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
