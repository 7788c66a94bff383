"""Generate synthetic minority-class images from trained generators: preview first, then bulk.

    python training/generate_samples.py --checkpoint results/gan/demo_gan/best_generator.pth --preview_only
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
import sys
from pathlib import Path

from training.core.cli import OUTPUT_DIR_FLAGS, Parser, seed_arg
from training.core.distributed import init_world, shutdown
from training.core.errors import UserError, run_cli
from training.core.outputs import refuse_output_inside_dataset
from training.core.runtime import resolve_device
from training.data.synthetic_folder import check_output_dir
from training.synthesis import sampling
from training.synthesis.job import (
    WAIT_FOR_OTHERS_MINUTES,
    BulkJob,
    check_counts,
    check_launch,
    filter_threshold,
    parse_codes,
    parse_shard,
    resolve_sources,
    run_bulk,
    summary_lines,
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = Parser(__doc__)
    p.add_argument("--checkpoint", nargs="+", metavar="PATH", help="generator file(s); several are blended")
    p.add_argument("--weights", nargs="+", type=float, metavar="W", help="blend weights, one per checkpoint (default: equal)")
    p.add_argument("--config", help="a training YAML: use its run's best (else final) generator and output folder")
    p.add_argument("--num_samples", type=int, help="images to have in the folder when done (with "
                   "--filter_classifier: the candidates; those under --conf_thresh are not written)")
    p.add_argument("--batch_size", type=int, default=256, help="images per generator call (does not change the files)")
    p.add_argument(*OUTPUT_DIR_FLAGS, dest="output_dir", help="default: <output.synthetic_dir>/<run name> of the generator")
    p.add_argument("--preview_only", action="store_true", help="write preview_grid.png (8x8) and nothing else")
    p.add_argument("--preview", action="store_true", help="write the preview grid, then ask before the bulk run")
    p.add_argument("--yes", action="store_true", help="answer yes to the question --preview asks")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--seed", type=seed_arg, default=0)
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
    p.add_argument("--conf_thresh", type=float, help="with --filter_classifier (default 0.95)")
    args = p.parse_args(argv)
    args.conf_thresh = filter_threshold(args.filter_classifier, args.conf_thresh)
    check_counts(args.num_samples, args.batch_size, args.conf_thresh, args.weights, args.seed, args.workers)
    args.shard = parse_shard(args.shard, args.num_samples) if args.shard is not None else None
    args.codes = parse_codes(args.fix_code)
    check_launch(args.shard, args.overwrite, args.preview and not args.yes)
    return args


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
    checkpoints, output_dir = resolve_sources(args.checkpoint, args.output_dir, args.config, args.class_name, args.codes)
    if args.sweep_code:
        refuse_output_inside_dataset(output_dir, "--output_dir", "a folder of its own (e.g. data/synthetic/<run>)")
        device = resolve_device(args.device)
        generator = sampling.load_generators(checkpoints[:1], device, args.class_name, args.codes)[0]
        output_dir.mkdir(parents=True, exist_ok=True)
        print(f"code sweep: {sampling.write_code_sweep(generator, args.sweep_code, args.seed, output_dir, device)}")
        return 0
    if not args.preview_only and args.num_samples is None:
        raise UserError("--num_samples N is needed for a bulk run (or use --preview_only)")
    check_output_dir(output_dir, args.overwrite)
    # Under torchrun: one process per rank (on CUDA, GPU LOCAL_RANK); a plain run is a world of one.
    world, device = init_world(args.device, timeout_minutes=WAIT_FOR_OTHERS_MINUTES)
    generators = sampling.load_generators(checkpoints, device, args.class_name, args.codes)
    if args.preview or args.preview_only:
        if world.is_main:
            output_dir.mkdir(parents=True, exist_ok=True)
            weights = sampling.normalise_weights(args.weights, len(generators))
            print(f"preview: {sampling.write_preview(generators, weights, args.seed, output_dir, device)}")
        if args.preview_only:
            shutdown(world)
            return 0
        if not confirmed(args, output_dir):      # under torchrun --yes was required: every process goes on
            print("nothing generated")
            return 0
    job = BulkJob(output_dir, args.num_samples, args.seed, args.batch_size, args.overwrite, args.workers, args.shard,
                  args.filter_classifier, args.conf_thresh, args.weights, args.codes)
    summary = run_bulk(job, generators, world, device)
    if summary["manifest"] is not None:              # None: a torchrun rank other than 0; rank 0 reports
        print("\n".join(summary_lines(summary, job)))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
