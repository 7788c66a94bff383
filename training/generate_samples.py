"""Generate synthetic minority-class images from trained generators: preview first, then bulk.

    python training/generate_samples.py --checkpoint results/checkpoints/demo_gan/best_generator.pth --preview_only
    python training/generate_samples.py --config experiments/demo_gan.yaml --num_samples 6000 --preview
    python training/generate_samples.py --checkpoint A.pth B.pth C.pth --weights 2 1 1 --num_samples 3000 \\
        --output_dir data/synthetic/blend --yes

The same checkpoints, --seed and --num_samples give byte-identical files whatever --batch_size; a
re-run into a partly filled folder writes only the missing images. Files go to
synthetic_<class>_NNNNNN.png with a manifest.jsonl; validation and test folders are refused.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/generate_samples.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.errors import UserError, run_cli
from training.runtime import resolve_device
from training.run_info import run_info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", nargs="+", metavar="PATH", help="generator file(s); several are blended")
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="blend weights, one per checkpoint (default: equal)")
    p.add_argument("--config", help="a training YAML: use its run's best (else final) generator and output folder")
    p.add_argument("--num_samples", type=int, help="images to have in the folder when done")
    p.add_argument("--batch_size", type=int, default=256, help="images per generator call (does not change the files)")
    p.add_argument("--output_dir", help="default: <output.synthetic_dir>/<run name> of the generator")
    p.add_argument("--preview_only", action="store_true", help="write preview_grid.png (8x8) and nothing else")
    p.add_argument("--preview", action="store_true", help="write the preview grid, then ask before the bulk run")
    p.add_argument("--yes", action="store_true", help="answer yes to the question --preview asks")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace images already in the folder")
    p.add_argument("--workers", type=int, help="PNG-writing processes (default: CPU count)")
    p.add_argument("--filter_classifier", metavar="PATH", help="a classifier's best_model.pth: keep only images it "
                   "assigns to the generator's class with at least --conf_thresh")
    p.add_argument("--conf_thresh", type=float, default=0.95, help="with --filter_classifier (default 0.95)")
    args = p.parse_args(argv)
    if args.num_samples is not None and args.num_samples < 1:
        raise UserError("--num_samples must be at least 1")
    if args.batch_size < 1:
        raise UserError("--batch_size must be at least 1")
    if not 0 <= args.conf_thresh <= 1:
        raise UserError("--conf_thresh must be in [0, 1]")
    return args


def checkpoints_and_output(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The generator files and the output folder, from the flags or from a training config."""
    from training.config import load_config
    from training.gan_config import GANConfig
    from training.training_loop import RunPaths

    checkpoints, output_dir = args.checkpoint, args.output_dir
    if args.config:
        paths = RunPaths.of(load_config(GANConfig, args.config, []))
        if not checkpoints:
            best, final = paths.checkpoints / "best_generator.pth", paths.checkpoints / "final_generator.pth"
            if not best.is_file() and not final.is_file():
                raise UserError(f"no trained generator in {paths.checkpoints} (train it first with training/train_dcgan.py)")
            checkpoints = [str(best if best.is_file() else final)]
        output_dir = output_dir or str(paths.synthetic)
    if not checkpoints:
        raise UserError("give --checkpoint PATH [PATH ...] or --config of a trained run")
    if output_dir is None:
        if len(checkpoints) > 1:
            raise UserError("blending several generators needs --output_dir")
        output_dir = str(Path("data/synthetic") / Path(checkpoints[0]).resolve().parent.name)
    return checkpoints, Path(output_dir)


def confirmed(args: argparse.Namespace, output_dir: Path) -> bool:
    """--preview asks on a terminal; without one it needs --yes."""
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(f"--preview without a terminal needs --yes to generate; no images written "
                        f"(look at {output_dir / 'preview_grid.png'} first)")
    answer = input(f"Generate {args.num_samples} images into {output_dir}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from training import synthesis

    checkpoints, output_dir = checkpoints_and_output(args)
    if not args.preview_only and args.num_samples is None:
        raise UserError("--num_samples N is needed for a bulk run (or use --preview_only)")
    synthesis.check_output_dir(output_dir)
    device = resolve_device(args.device)
    generators = synthesis.load_generators(checkpoints, device)
    weights = synthesis.normalise_weights(args.weights, len(generators))

    if args.preview or args.preview_only:
        output_dir.mkdir(parents=True, exist_ok=True)
        print(f"preview: {synthesis.write_preview(generators, weights, args.seed, output_dir, device)}")
        if args.preview_only:
            return 0
        if not confirmed(args, output_dir):
            print("nothing generated")
            return 0

    confidence = (synthesis.classifier_confidence(args.filter_classifier, generators[0].class_name, device)
                  if args.filter_classifier else None)
    summary = synthesis.generate(generators, weights, args.num_samples, args.seed, output_dir,
                                 batch_size=args.batch_size, device=device, overwrite=args.overwrite,
                                 workers=args.workers, confidence=confidence, conf_thresh=args.conf_thresh)
    synthesis.write_generation_info(output_dir, run_info(args.seed, str(device), {
        "num_samples": args.num_samples, "weights": weights, "summary": summary,
        "generators": [{"path": str(g.path), "sha256": g.sha256, "run": g.run_name, "epoch": g.epoch,
                        "class": g.class_name} for g in generators]}))
    rate = f", {summary['images_per_s']:.0f} img/s" if summary["written"] else ""
    if summary["acceptance_rate"] is not None:
        print(f"filter: {summary['written']} of {summary['written'] + summary['filtered_out']} images kept "
              f"({summary['acceptance_rate']:.1%}) at confidence >= {args.conf_thresh}"
              + ("; too few pass: lower --conf_thresh or generate more" if summary["acceptance_rate"] < 0.2 else ""))
    print(f"wrote {summary['written']} images ({summary['kept']} already there) to {output_dir} "
          f"in {summary['seconds']:.1f} s{rate}; manifest: {output_dir / synthesis.MANIFEST}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
