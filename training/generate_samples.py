"""Generate synthetic minority-class images from trained generators: preview first, then bulk.

    python training/generate_samples.py --checkpoint results/checkpoints/demo_gan/best_generator.pth --preview_only
    python training/generate_samples.py --config experiments/demo_gan.yaml --num_samples 6000 --preview
    python training/generate_samples.py --checkpoint A.pth B.pth C.pth --weights 2 1 1 --num_samples 3000 \\
        --output_dir data/synthetic/blend --yes

Conditional generators make the class asked for; an InfoGAN's codes can be held fixed or swept:

    python training/generate_samples.py --config experiments/conditional_gan.yaml --class malignant --num_samples 2000 --yes
    python training/generate_samples.py --config experiments/infogan.yaml --sweep_code cat     # code_sweep_cat.png
    python training/generate_samples.py --config experiments/infogan.yaml --fix_code cat=2 --num_samples 500 --yes

Split over processes or GPUs (each makes a contiguous index range; the manifests are merged):

    torchrun --standalone --nproc_per_node 4 training/generate_samples.py --config ... --num_samples 60000 --yes
    python training/generate_samples.py ... --shard 0/4      # ... --shard 3/4, as separate jobs; then the
    python training/generate_samples.py ...                  # same command without --shard merges them

The same checkpoints, --seed and --num_samples give byte-identical files whatever --batch_size or
split; a re-run into a partly filled folder writes only the missing images. Files go to
synthetic_<class>_NNNNNN.png with a manifest.jsonl; validation and test folders are refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/generate_samples.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.core.distributed import launched_processes
from training.core.errors import UserError, run_cli
from training.core.run_info import run_info
from training.core.runtime import resolve_device

# The process group's timeout. Under torchrun every process waits at the end for the slowest, and a
# resumed or extended job can leave one process (the one whose index range is missing) most of the work.
WAIT_FOR_OTHERS_MINUTES = 24 * 60


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
    p.add_argument("--workers", type=int, help="PNG-writing processes (default: CPU count, shared among "
                   "torchrun's processes on the machine)")
    p.add_argument("--class", dest="class_name", metavar="NAME",
                   help="the class a conditional generator makes (its folder gets _<class> by default)")
    p.add_argument("--fix_code", action="append", default=[], metavar="NAME=VALUE",
                   help="InfoGAN: hold a code fixed, e.g. cat=2 or cont0=0.5 (repeatable)")
    p.add_argument("--sweep_code", metavar="NAME", help="InfoGAN: write code_sweep_<NAME>.png (rows: latents; "
                   "columns: the code's values) and nothing else")
    p.add_argument("--shard", metavar="K/N", help="make only part K (0-based) of N of the images, as one of N separate "
                   "jobs; then run without --shard to merge (under torchrun each process takes its part itself)")
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
    args.shard = parse_shard(args.shard) if args.shard is not None else None
    args.codes = parse_codes(args.fix_code)
    if args.shard and args.overwrite:
        raise UserError("--overwrite cannot be combined with --shard: one shard cannot clear the folder for the "
                        "others; clear it first (or run --overwrite without --shard)")
    if launched_processes() > 1:
        if args.shard:
            raise UserError("--shard is for separately launched jobs; under torchrun each process takes its part itself")
        if args.preview and not args.yes:
            raise UserError("--preview under torchrun needs --yes (only one process could ask); or look at "
                            "--preview_only first")
    return args


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N."""
    k, _, n = text.partition("/")
    try:
        shard = int(k), int(n)
    except ValueError:
        shard = (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        raise UserError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4 ... 3/4 for four jobs), not '{text}'")
    return shard


def parse_codes(pairs: list[str]) -> dict[str, float]:
    """['cat=2', 'cont0=0.5'] -> {'cat': 2.0, 'cont0': 0.5}; the names are checked against the generator later."""
    codes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            codes[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--fix_code takes NAME=VALUE, e.g. cat=2 or cont0=0.5, not '{pair}'") from None
    return codes


def checkpoints_and_output(args: argparse.Namespace) -> tuple[list[str], Path]:
    """The generator files and the output folder, from the flags or from a training config."""
    from training.core.config import load_config
    from training.gan.config import GANConfig
    from training.gan.loop import RunPaths

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
    if not args.output_dir:     # a default folder: one per class and per fixed code, never mixed in one folder
        output_dir += "".join(f"_{part}" for part in [args.class_name, *(f"{k}{v:g}" for k, v in args.codes.items())]
                              if part)
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
    from training.synthesis import sampling
    from training.core.distributed import barrier, gather_objects, init_world, shutdown

    checkpoints, output_dir = checkpoints_and_output(args)
    if args.sweep_code:
        device = resolve_device(args.device)
        generator = sampling.load_generators(checkpoints[:1], device, args.class_name, args.codes)[0]
        output_dir.mkdir(parents=True, exist_ok=True)
        print(f"code sweep: {sampling.write_code_sweep(generator, args.sweep_code, args.seed, output_dir, device)}")
        return 0
    if not args.preview_only and args.num_samples is None:
        raise UserError("--num_samples N is needed for a bulk run (or use --preview_only)")
    sampling.check_output_dir(output_dir)
    # Under torchrun: one process per rank (on CUDA, GPU LOCAL_RANK); a plain run is a world of one.
    world, device = init_world(args.device, timeout_minutes=WAIT_FOR_OTHERS_MINUTES)
    generators = sampling.load_generators(checkpoints, device, args.class_name, args.codes)
    weights = sampling.normalise_weights(args.weights, len(generators))

    if args.preview or args.preview_only:
        if world.is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            print(f"preview: {sampling.write_preview(generators, weights, args.seed, output_dir, device)}")
        if args.preview_only:
            shutdown(world)
            return 0
        if not confirmed(args, output_dir):      # under torchrun --yes was required: every process goes on
            print("nothing generated")
            return 0

    confidence = (sampling.classifier_confidence(args.filter_classifier, generators[0].class_name, device)
                  if args.filter_classifier else None)
    # One mechanism, two ways to set it: --shard K/N for separate jobs, or torchrun's rank and world size.
    shard = args.shard or (world.rank, world.size)
    workers = args.workers
    if world.distributed:
        if workers is None:     # the machine's cores are shared by the processes torchrun started on it
            workers = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        if args.overwrite and world.is_main:
            sampling.clear_folder(output_dir)
        barrier(world)          # the folder is cleared (and the preview written) before any process writes
    summary = sampling.generate(generators, weights, args.num_samples, args.seed, output_dir,
                                 batch_size=args.batch_size, device=device,
                                 overwrite=args.overwrite and not world.distributed, workers=workers,
                                 confidence=confidence, conf_thresh=args.conf_thresh, shard=shard,
                                 progress_bar=world.is_main, before_writing=lambda: barrier(world))
    if world.distributed:
        parts = gather_objects(summary, world)
        if world.is_main:
            summary = sampling.combine_summaries(parts, sampling.merge_manifests(output_dir))
        shutdown(world)
        if not world.is_main:
            return 0
    if shard[1] > 1 and not world.distributed:      # one of several separate jobs: the merging run records the job
        report(args, summary, output_dir, sampling.shard_manifest(output_dir, shard))
        print(f"shard {shard[0]}/{shard[1]} done; when every shard is, run the same command without --shard to merge "
              "the manifests (it also makes any images a failed shard left out)")
        return 0
    sampling.write_generation_info(output_dir, run_info(args.seed, str(device), {
        "num_samples": args.num_samples, "weights": weights, "processes": world.size, "summary": summary,
        "generators": [{"path": str(g.path), "sha256": g.sha256, "run": g.run_name, "epoch": g.epoch,
                        "class": g.class_name, "fixed_codes": dict(g.codes)} for g in generators]}))
    report(args, summary, output_dir, output_dir / sampling.MANIFEST)
    return 0


def report(args: argparse.Namespace, summary: dict, output_dir: Path, manifest: Path) -> None:
    rate = f", {summary['images_per_s']:.0f} img/s" if summary["written"] else ""
    if summary["acceptance_rate"] is not None:
        print(f"filter: {summary['written']} of {summary['written'] + summary['filtered_out']} images kept "
              f"({summary['acceptance_rate']:.1%}) at confidence >= {args.conf_thresh}"
              + ("; too few pass: lower --conf_thresh or generate more" if summary["acceptance_rate"] < 0.2 else ""))
    print(f"wrote {summary['written']} images ({summary['kept']} already there) to {output_dir} "
          f"in {summary['seconds']:.1f} s{rate}; manifest: {manifest}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
