"""Train a DCGAN (hinge + spectral norm, Wasserstein-GP or BCE) on the minority class, or a conditional
GAN / InfoGAN / all-classes GAN (see experiments/), on one process or data-parallel under torchrun.

    python training/train_dcgan.py --config experiments/dcgan_hinge.yaml
    python training/train_dcgan.py --config experiments/demo_gan.yaml train.epochs=2 data.image_size=32
    python training/train_dcgan.py --config experiments/dcgan_hinge.yaml --resume
    torchrun --standalone --nproc_per_node 2 training/train_dcgan.py --config experiments/dcgan_hinge.yaml

Values after the flags override the YAML (`section.key=value`) and are validated the same way.
"""

from __future__ import annotations

import argparse
import sys

from training.core.cli import Parser
from training.core.config import load_config, to_yaml, with_device
from training.core.errors import run_cli
from training.gan.config import GANConfig
from training.gan.loop import check_output_paths, train_gan


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--config", required=True, help="YAML file, e.g. experiments/dcgan_hinge.yaml")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides train.device")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start the run again, replacing its outputs")
    p.add_argument("--dry_run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = with_device(load_config(GANConfig, args.config, args.overrides), args.device)
    check_output_paths(config)
    if args.dry_run:
        print(to_yaml(config), end="")
        return 0
    summary = train_gan(config, resume=args.resume, overwrite=args.overwrite)
    if summary["rank"] != 0:        # under torchrun, rank 0 reports
        return 0
    paths = summary["paths"]
    best = "n/a" if summary["best_fid"] is None else f"{summary['best_fid']:.2f}"
    final = "n/a" if summary["final_fid"] is None else f"{summary['final_fid']:.2f}"
    print(f"done: {summary['epochs']} epochs, FID final {final}, best {best} ({summary['feature_extractor']} features)")
    print(f"  run folder:  {paths.root} (best_generator.pth, final_generator.pth, metrics.json, final_samples.png, "
          f"curves, samples/ grids)")
    print(f"  next:        python training/generate_samples.py --config {args.config} --preview_only")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
