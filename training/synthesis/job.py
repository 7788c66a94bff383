"""A bulk generation job as `generate_samples.py` runs it: which generators, which folder, which part.

`resolve_sources` turns the flags (checkpoints or a training config, an output folder, a class and
fixed codes) into generator files and a folder; `run_bulk` makes the images, on one process, as one
of N separately launched shards, or as one rank of torchrun, and records the job.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.core.config import load_config
from training.core.distributed import World, barrier, gather_objects, launched_processes, shutdown
from training.core.errors import UserError
from training.core.names import check_plain_name
from training.core.run_info import run_info
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, clear_folder, merge_manifests, shard_manifest
from training.gan.config import GANConfig
from training.gan.run_folder import GANRun
from training.synthesis import sampling
from training.synthesis.sampling import MAX_NUM_SAMPLES, MAX_WORKERS

# The process group's timeout. Under torchrun every process waits at the end for the slowest, and a
# resumed or extended job can leave one process (the one whose index range is missing) most of the work.
WAIT_FOR_OTHERS_MINUTES = 24 * 60
DEFAULT_CONF_THRESH = 0.95


@dataclass(frozen=True)
class BulkJob:
    """Everything a bulk run needs besides the loaded generators and the process world."""

    output_dir: Path
    num_samples: int
    seed: int = 0
    batch_size: int = 256
    overwrite: bool = False
    workers: int | None = None
    shard: tuple[int, int] | None = None           # (k, n): one of n separately launched jobs
    filter_classifier: str | None = None
    conf_thresh: float = DEFAULT_CONF_THRESH
    weights: list[float] | None = None
    codes: dict[str, float] = field(default_factory=dict)


def parse_shard(text: str, num_samples: int | None = None) -> tuple[int, int]:
    """'K/N' -> (K, N) with 0 <= K < N (and N at most the images asked for: every shard makes some)."""
    k, _, n = text.partition("/")
    try:
        shard = int(k), int(n)
    except ValueError:
        shard = (-1, 0)
    if not 0 <= shard[0] < shard[1]:
        raise UserError(f"--shard must be K/N with 0 <= K < N (e.g. 0/4 ... 3/4 for four jobs), not '{text}'")
    if num_samples is not None and shard[1] > num_samples:
        raise UserError(f"--shard {text}: {shard[1]} jobs for {num_samples} images would leave some jobs nothing "
                        "to make; use at most as many jobs as images")
    return shard


def filter_threshold(filter_classifier: str | None, conf_thresh: float | None) -> float:
    """--conf_thresh means something only with --filter_classifier; 0.95 when the filter is on and none is given."""
    if conf_thresh is not None and filter_classifier is None:
        raise UserError("--conf_thresh needs --filter_classifier PATH (the classifier whose confidence it thresholds)")
    return DEFAULT_CONF_THRESH if conf_thresh is None else conf_thresh


def parse_codes(pairs: list[str]) -> dict[str, float]:
    """['cat=2', 'cont0=0.5'] -> {'cat': 2.0, 'cont0': 0.5}; the names are checked against the generator later."""
    codes = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        try:
            codes[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--fix_code takes NAME=VALUE, e.g. cat=2 or cont0=0.5, not '{pair}'") from None
        if not math.isfinite(codes[name.strip()]):
            raise UserError(f"--fix_code {name.strip()} must be a finite number, not '{value}'")
    return codes


def check_counts(num_samples: int | None, batch_size: int, conf_thresh: float, weights: list[float] | None,
                 seed: int, workers: int | None = None) -> None:
    """One-line errors for numbers no job can use."""
    if num_samples is not None and not 1 <= num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"--num_samples must be between 1 and {MAX_NUM_SAMPLES:,} (split larger jobs over folders)")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be between 1 and {MAX_WORKERS} (PNG-writing processes)")
    if batch_size < 1:
        raise UserError("--batch_size must be at least 1")
    if not 0 <= conf_thresh <= 1:
        raise UserError("--conf_thresh must be in [0, 1]")
    if weights is not None and not all(math.isfinite(w) and w >= 0 for w in weights):
        raise UserError("--weights must be finite numbers >= 0")
    if seed < 0:
        raise UserError("--seed must be >= 0")


def check_launch(shard: tuple[int, int] | None, overwrite: bool, would_ask: bool) -> None:
    """Refuse combinations of how the job is launched that cannot work: --overwrite with --shard (one shard
    cannot clear the folder for the others), and under torchrun --shard or a question only one process could ask."""
    if shard and overwrite:
        raise UserError("--overwrite cannot be combined with --shard: one shard cannot clear the folder for the "
                        "others; clear it first (or run --overwrite without --shard)")
    if launched_processes() > 1:
        if shard:
            raise UserError("--shard is for separately launched jobs; under torchrun each process takes its part itself")
        if would_ask:
            raise UserError("--preview under torchrun needs --yes (only one process could ask); or look at "
                            "--preview_only first")


def summary_lines(summary: dict, job: BulkJob) -> list[str]:
    """What a finished bulk run tells the user: the filter's acceptance, what was written, what a shard leaves."""
    lines = []
    if summary["acceptance_rate"] is not None:
        lines.append(f"filter: {summary['written']} of {summary['written'] + summary['filtered_out']} images kept "
                     f"({summary['acceptance_rate']:.1%}) at confidence >= {job.conf_thresh}"
                     + ("; too few pass: lower --conf_thresh or generate more" if summary["acceptance_rate"] < 0.2 else ""))
    rate = f", {summary['images_per_s']:.0f} img/s" if summary["written"] else ""
    lines.append(f"wrote {summary['written']} images ({summary['kept']} already there) to {job.output_dir} "
                 f"in {summary['seconds']:.1f} s{rate}; manifest: {summary['manifest']}")
    if not summary["complete"]:
        lines.append(f"shard {job.shard[0]}/{job.shard[1]} done; when every shard is, run the same command without "
                     "--shard to merge the manifests (it also makes any images a failed shard left out)")
    return lines


def resolve_sources(checkpoints: list[str] | None, output_dir: str | None, config: str | None,
                    class_name: str | None, codes: dict[str, float]) -> tuple[list[str], Path]:
    """The generator files and the output folder, from the flags or from a training config.

    A default folder gets `_<class>` and `_<code><value>` suffixes, so images of different classes or
    codes never share one folder.
    """
    explicit_output = output_dir
    if class_name is not None:
        check_plain_name(class_name, "--class")
    if config:
        paths = GANRun.of(load_config(GANConfig, config, []))
        if not checkpoints:
            generator = paths.generator()
            if generator is None:
                raise UserError(f"no trained generator in {paths.root} (train it first with training/train_dcgan.py)")
            checkpoints = [str(generator)]
        output_dir = output_dir or str(paths.synthetic)
    if not checkpoints:
        raise UserError("give --checkpoint PATH [PATH ...] or --config of a trained run")
    if output_dir is None:
        if len(checkpoints) > 1:
            raise UserError("blending several generators needs --output_dir")
        output_dir = str(Path("data/synthetic") / Path(checkpoints[0]).resolve().parent.name)
    if not explicit_output:
        output_dir += "".join(f"_{part}" for part in [class_name, *(f"{k}{v:g}" for k, v in codes.items())] if part)
    return checkpoints, Path(output_dir)


def run_bulk(job: BulkJob, generators: list[sampling.SourceGenerator], world: World, device: torch.device) -> dict:
    """Make the job's images (this process's part of them); returns the summary with `manifest` (where the
    records are) and `complete` (False for one of several separately launched shards)."""
    weights = sampling.normalise_weights(job.weights, len(generators))
    confidence = (sampling.classifier_confidence(job.filter_classifier, generators[0].class_name, device)
                  if job.filter_classifier else None)
    # One mechanism, two ways to set it: --shard K/N for separate jobs, or torchrun's rank and world size.
    shard = job.shard or (world.rank, world.size)
    workers = job.workers
    if world.distributed:
        if workers is None:     # the machine's cores are shared by the processes torchrun started on it
            workers = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world.size)))
        if job.overwrite and world.is_main:
            clear_folder(job.output_dir)
        barrier(world)          # the folder is cleared (and the preview written) before any process writes
    summary = sampling.generate(generators, weights, job.num_samples, job.seed, job.output_dir,
                                batch_size=job.batch_size, device=device,
                                overwrite=job.overwrite and not world.distributed, workers=workers,
                                confidence=confidence, conf_thresh=job.conf_thresh, shard=shard,
                                progress_bar=world.is_main, before_writing=lambda: barrier(world))
    if world.distributed:
        parts = gather_objects(summary, world)
        if world.is_main:
            summary = sampling.combine_summaries(parts, merge_manifests(job.output_dir))
        shutdown(world)
        if not world.is_main:
            return {**summary, "manifest": None, "complete": False}
    if shard[1] > 1 and not world.distributed:      # one of several separate jobs: the merging run records the job
        return {**summary, "manifest": str(shard_manifest(job.output_dir, shard)), "complete": False}
    sampling.write_generation_info(job.output_dir, run_info(job.seed, str(device), {
        "num_samples": job.num_samples, "weights": weights, "processes": world.size, "summary": summary,
        "generators": [{"path": str(g.path), "sha256": g.sha256, "run": g.run_name, "epoch": g.epoch,
                        "class": g.class_name, "fixed_codes": dict(g.codes)} for g in generators]}))
    return {**summary, "manifest": str(job.output_dir / SYNTHETIC_MANIFEST), "complete": True}
