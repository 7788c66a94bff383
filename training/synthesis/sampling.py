"""Bulk synthesis from trained generators, deterministic and resumable.

Every image has a global index. Index `i` is made by one generator (a weighted interleave, so any
prefix such as the 64-image preview holds every blended generator in proportion) from one latent
drawn from a seed derived from (seed, i) alone. So the same checkpoints, seed and index give the
same pixels whatever the batch size, the preview shows exactly the first 64 images the bulk run
writes, and a re-run into a partly filled folder can finish the missing indices.

A folder of synthetic images holds

    synthetic_<class>_000000.png ...   one PNG per index
    manifest.jsonl                     one line per file: file, index, sha256 (of the pixels, like
                                       manifest.csv), generator path and SHA-256, seed, created_utc
    generation.json                    what ran: checkpoints, weights, seed, device, versions, commit
    preview_grid.png                   the 8x8 preview (when asked for)

A bulk job can be split into n shards: shard k makes the k-th of n contiguous index ranges of the
plan and records it in its own manifest.shard<k>of<n>.jsonl. The range depends on nothing but the
plan, so shards launched independently (`--shard k/n`) or by torchrun (one per process) agree on it;
every reader merges the shard manifests into manifest.jsonl's records, and a run of the whole job
writes the merged manifest.jsonl and removes them.
"""

from __future__ import annotations

import multiprocessing
import numbers
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from training.classify.scoring import load_pixel_scorer
from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.progress import progress
from training.core.runtime import die_with_parent
from training.data.folders import to_float, to_uint8
from training.data.images import file_sha256, pixel_sha256, read_image
from training.data.png_writer import stale_temporaries, write_pngs
from training.data.synthetic_folder import (
    GENERATION_INFO,
    PREVIEW,
    PREVIEW_SIDE,
    REJECTED,
    check_output_dir,
    clear_folder,
    read_synthetic_manifest,
    write_synthetic_manifest,
    writer_lock,
)
from training.gan.checkpoint import load_generator
from training.gan.latents import class_labels, code_values, draw, set_code
from training.gan.plots import save_grid

MAX_NUM_SAMPLES = 1_000_000   # per folder: the plan lives in memory (~150 MB at this size); larger jobs use several folders
MAX_WORKERS = 256             # PNG-writing processes: more only adds start-up time and memory


def check_job_size(num_samples: int, workers: int | None) -> None:
    """One-line errors for a job no machine should start: too many images for one folder, or too many processes."""
    def whole(value: object) -> bool:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)

    if not whole(num_samples) or not 0 <= num_samples <= MAX_NUM_SAMPLES:
        raise UserError(f"the number of images must be a whole number from 0 to {MAX_NUM_SAMPLES:,} per folder, "
                        f"got {num_samples!r} (split larger jobs over folders)")
    if workers is not None and (not whole(workers) or not 1 <= workers <= MAX_WORKERS):
        raise UserError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers!r}")


@dataclass(frozen=True)
class SourceGenerator:
    """A trained generator loaded from a self-describing checkpoint."""

    path: Path
    sha256: str
    model: torch.nn.Module
    class_name: str                    # the class it makes (for a conditional generator: the one asked for)
    image_size: int
    channels: int
    run_name: str
    epoch: int
    label: int | None = None           # a conditional generator's class index
    codes: tuple[tuple[str, float], ...] = ()   # InfoGAN codes held fixed, e.g. (("cat", 2.0),)


@dataclass(frozen=True)
class Item:
    """One image to make: its index, which generator, the seed of its latent, its file name."""

    index: int
    generator: int
    seed: int
    file: str


def load_generators(paths: list[str | Path], device: torch.device, class_name: str | None = None,
                    codes: dict[str, float] | None = None) -> list[SourceGenerator]:
    """Load the checkpoints to blend; they must make the same class at the same size and channels.

    A conditional generator makes the `class_name` asked for; an InfoGAN's `codes` can be held fixed.
    """
    if not paths:
        raise UserError("no generator checkpoint given (--checkpoint PATH, or --config of a trained run)")
    loaded = []
    for path in map(Path, paths):
        model, record = load_generator(path, device)
        made, label = record["class_name"], None
        if model.latent.num_classes:
            names = record["class_names"]
            if class_name not in names:
                raise UserError(f"{path} is a conditional generator of {', '.join(names)}: choose one with --class"
                                + (f" ('{class_name}' is not one of them)" if class_name else ""))
            made, label = class_name, names.index(class_name)
        elif class_name is not None and class_name != made:
            raise UserError(f"{path} makes '{made}' images only; --class picks the class of a conditional generator")
        for name, value in (codes or {}).items():
            set_code(model.latent, torch.zeros(1, model.latent.z_dim), name, value)    # a clear error when unknown
        data = record["data"]
        loaded.append(SourceGenerator(path, file_sha256(path), model, made, data["image_size"], data["channels"],
                                      record.get("run_name") or path.parent.name, record["epoch"], label,
                                      tuple(sorted((codes or {}).items()))))
    first = loaded[0]
    for g in loaded[1:]:
        if (g.class_name, g.image_size, g.channels) != (first.class_name, first.image_size, first.channels):
            raise DataError(f"cannot blend {first.path} ({first.class_name}, {first.image_size} px, {first.channels} ch) "
                            f"with {g.path} ({g.class_name}, {g.image_size} px, {g.channels} ch)")
    return loaded


def normalise_weights(weights: list[float] | None, count: int) -> list[float]:
    """Blend weights summing to 1; equal when not given."""
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise UserError(f"--weights has {len(weights)} values for {count} checkpoints")
    if any(w < 0 for w in weights) or sum(weights) <= 0:
        raise UserError("--weights must be non-negative and not all zero")
    return [w / sum(weights) for w in weights]


def assign_generators(num: int, weights: list[float]) -> list[int]:
    """Generator of each index: the one furthest behind its share (weighted round robin).

    Every prefix of the sequence holds each generator in proportion to its weight, and the
    sequence does not depend on `num`, so a run extended to more images keeps its first ones.
    """
    counts = [0] * len(weights)
    order = []
    for i in range(num):
        g = max(range(len(weights)), key=lambda j: (weights[j] * (i + 1) - counts[j], -j))
        counts[g] += 1
        order.append(g)
    return order


def image_seed(seed: int, index: int) -> int:
    """The latent seed of one image: a hash of (seed, index), so no two (seed, index) pairs share it."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0])


def plan(num: int, generators: list[SourceGenerator], weights: list[float], seed: int) -> list[Item]:
    class_name = generators[0].class_name
    return [Item(i, g, image_seed(seed, i), f"synthetic_{class_name}_{i:06d}.png")
            for i, g in enumerate(assign_generators(num, weights))]


def shard_items(items: list[Item], shard: tuple[int, int]) -> list[Item]:
    """Shard k of n: the items [k*M//n, (k+1)*M//n) of an M-item plan; the n shards are the whole plan."""
    k, n = shard
    return items[k * len(items) // n:(k + 1) * len(items) // n]


def latents(generator: SourceGenerator, seeds: list[int]) -> torch.Tensor:
    """The latent of each seed (training.gan.latents.draw), with the generator's fixed codes set."""
    spec = generator.model.latent
    z = torch.cat([draw(spec, 1, torch.Generator().manual_seed(s)) for s in seeds])
    for name, value in generator.codes:
        z = set_code(spec, z, name, value)
    return z


@torch.no_grad()
def render(generator: SourceGenerator, seeds: list[int], device: torch.device, z: torch.Tensor | None = None) -> np.ndarray:
    """Images of the given latent seeds (or of latents `z`) as uint8 (N, H, W, C)."""
    z = latents(generator, seeds) if z is None else z
    labels = class_labels(generator.model.latent, len(z), generator.label)
    # A one-image batch takes a different CPU kernel path whose last float bits differ; pairing it
    # with a copy keeps files byte-identical whatever the batch size (G in eval mode is per-sample).
    repeat = 1 if len(z) > 1 else 2
    images = generator.model(z.repeat(repeat, 1).to(device),
                             None if labels is None else labels.repeat(repeat).to(device))[:len(z)]
    if not bool(torch.isfinite(images).all()):      # to_uint8 would turn NaN into black pixels, written as images
        raise DataError(f"the generator {generator.path} makes non-finite pixels (NaN or inf): its weights overflow; "
                        "nothing more was written (use an earlier checkpoint)")
    return to_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


def write_code_sweep(generator: SourceGenerator, code: str, seed: int, out_dir: Path, device: torch.device,
                     rows: int = 8) -> Path:
    """`code_sweep_<code>.png`: what one InfoGAN code controls. Each row is one latent (the first
    `rows` images of a bulk run with this seed); along the row only `code` changes, over every
    category or from -2 to 2 (past the training range [-1, 1], which often shows the effect best)."""
    spec = generator.model.latent
    values = code_values(spec, code)
    base = latents(generator, [image_seed(seed, i) for i in range(rows)])
    z = torch.stack([set_code(spec, base, code, v) for v in values], 1).flatten(0, 1)   # row-major: latent, value
    pixels = render(generator, [], device, z)
    path = out_dir / f"code_sweep_{code}.png"
    save_grid(to_float(torch.from_numpy(pixels).permute(0, 3, 1, 2)), path, nrow=len(values))
    return path


def holds_pixels(path: Path, sha256: str) -> bool:
    """Whether the image file decodes to the pixels whose hash a manifest recorded."""
    try:
        return pixel_sha256(read_image(path)) == sha256
    except DataError:
        return False


def reconcile(items: list[Item], generators: list[SourceGenerator], out_dir: Path, records: dict[int, dict],
              device: torch.device, job: list[Item] | None = None) -> list[Item]:
    """Which planned items still need a file; refuses when the folder holds different images.

    A recorded file made by the same generator from the same seed is kept when it still decodes to the
    recorded pixels (a truncated or altered file is made again), and one a reviewer moved to rejected/
    is not made again. A file without a record
    (a run killed between writing it and updating the manifest) is kept when its pixels equal what
    would be generated, and recorded. Anything else is a conflict: never overwritten silently.
    When `items` is one shard of `job`, the records of the whole job are checked too, so that no
    shard adds to a folder of another job; the other shards' unrecorded files may be being written
    now and are left to them.
    """
    def same_source(item: Item) -> bool:
        record, source = records[item.index], generators[item.generator]
        return (record["generator_sha256"] == source.sha256 and record["seed"] == item.seed
                and record.get("class") == source.class_name and record.get("codes", {}) == dict(source.codes))

    conflicts = [item.file for item in (job or items) if item.index in records and not same_source(item)]
    todo, unrecorded = [], []
    for item in items:
        path, record = out_dir / item.file, records.get(item.index)
        if record is not None:
            if not same_source(item):
                continue                                   # a conflict, listed above
            elif record.get("filtered_out"):
                continue                                   # the filter decided: not made again
            elif not path.is_file():
                if not (out_dir / REJECTED / item.file).is_file():      # rejected stays out
                    todo.append(item)
            elif not holds_pixels(path, record["sha256"]):         # truncated or altered since: made again
                todo.append(item)
        elif path.is_file():
            unrecorded.append(item)
        else:
            todo.append(item)
    for item in unrecorded:
        expected = render(generators[item.generator], [item.seed], device)[0]
        expected = expected[:, :, 0] if expected.shape[2] == 1 else expected
        found = pixel_sha256(read_image(out_dir / item.file))
        if found != pixel_sha256(expected):
            conflicts.append(item.file)
        else:
            records[item.index] = manifest_record(item, generators[item.generator], found)
    if conflicts:
        raise UserError(f"{out_dir} already holds {len(conflicts)} images from another generator or seed "
                        f"(e.g. {conflicts[0]}); use --overwrite to replace them, or another --output_dir")
    return todo


def manifest_record(item: Item, generator: SourceGenerator, sha256: str) -> dict:
    return {"file": item.file, "index": item.index, "class": generator.class_name, "sha256": sha256,
            "generator": str(generator.path), "generator_sha256": generator.sha256, "generator_run": generator.run_name,
            "seed": item.seed, **({"codes": dict(generator.codes)} if generator.codes else {}),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_preview(generators: list[SourceGenerator], weights: list[float], seed: int, out_dir: Path,
                  device: torch.device) -> Path:
    """`preview_grid.png`: the first 64 images the bulk run would write, 8 x 8."""
    items = plan(PREVIEW_SIDE ** 2, generators, weights, seed)
    images = np.empty((len(items), generators[0].image_size, generators[0].image_size, generators[0].channels), np.uint8)
    for g, source in enumerate(generators):
        mine = [k for k, item in enumerate(items) if item.generator == g]
        if mine:
            images[mine] = render(source, [items[k].seed for k in mine], device)
    path = out_dir / PREVIEW
    save_grid(to_float(torch.from_numpy(images).permute(0, 3, 1, 2)), path, nrow=PREVIEW_SIDE)
    return path


def _batches(todo: list[Item], batch_size: int):
    """Consecutive items of one generator, at most `batch_size` at a time."""
    for g in sorted({item.generator for item in todo}):
        mine = [item for item in todo if item.generator == g]
        for start in range(0, len(mine), batch_size):
            yield g, mine[start:start + batch_size]


def _pool(workers: int):
    if workers <= 1:
        return None
    # fork: workers inherit the imported modules and start at once; they only run numpy and Pillow.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    return multiprocessing.get_context(method).Pool(workers, initializer=die_with_parent, initargs=(os.getpid(),))


def generate(generators: list[SourceGenerator], weights: list[float], num_samples: int, seed: int, out_dir: Path,
             *, batch_size: int = 256, device: torch.device = torch.device("cpu"), overwrite: bool = False,
             workers: int | None = None, manifest_every_s: float = 5.0,
             confidence: Callable[[np.ndarray], np.ndarray] | None = None, conf_thresh: float = 0.0,
             shard: tuple[int, int] = (0, 1), progress_bar: bool = True,
             before_writing: Callable[[], None] | None = None) -> dict:
    """Write images 0..num_samples-1 into `out_dir` (the missing ones, unless `overwrite`); returns a summary.

    G runs in batches in this process and worker processes encode and write the PNGs (on a GPU,
    while G makes the next batch); the manifest is rewritten atomically every few seconds and at
    the end, so an interrupted run can be finished by running it again.

    With `confidence` (uint8 (N, H, W, C) -> (N,) probabilities of the generator's class, e.g. from
    `classifier_confidence`), images below `conf_thresh` are not written; the manifest records them
    as `filtered_out` with their confidence, so a re-run does not make them again.

    With `shard=(k, n)`, only shard k of the n (`shard_items`) is made and recorded in its own
    manifest (`shard_manifest`); each index's generator and latent seed come from the whole plan,
    so the n shards write exactly the files one run writes. Shards clear nothing: `overwrite` is
    for a whole job (a split one clears the folder with `clear_folder` before its shards start).
    `before_writing` runs once the folder is checked; under torchrun a barrier, so that a refusal
    in one process stops them all before any of them writes.
    """
    if overwrite and shard[1] > 1:
        raise UserError("--overwrite cannot be combined with --shard: one shard cannot clear the folder for the "
                        "others; clear it first (or run --overwrite without --shard)")
    check_job_size(num_samples, workers)
    check_output_dir(out_dir, overwrite)
    with writer_lock(out_dir, shard):
        job = plan(num_samples, generators, weights, seed)
        items = shard_items(job, shard)
        # Left by a killed worker mid-write; a shard removes only its own (another may be writing now).
        for stale in stale_temporaries(out_dir, None if shard[1] == 1 else {item.file for item in items}):
            stale.unlink(missing_ok=True)
        if overwrite:
            clear_folder(out_dir)
        records = read_synthetic_manifest(out_dir)
        todo = items if overwrite else reconcile(items, generators, out_dir, records, device, job)
        if before_writing is not None:
            before_writing()
        workers = workers if workers is not None else (os.cpu_count() or 1)
        chunk = max(1, batch_size // max(1, workers))

        start = time.perf_counter()
        pool, pending, last_write = _pool(workers), deque(), time.perf_counter()

        scores: dict[int, float] = {}

        def collect(job) -> None:
            chunk_items, result = job
            for item, sha in zip(chunk_items, result.get() if pool else result):
                records[item.index] = manifest_record(item, generators[item.generator], sha)
                if item.index in scores:
                    records[item.index]["confidence"] = scores[item.index]
            bar.update(len(chunk_items))

        def save_manifest() -> None:
            # A shard records only its own indices: the folder's other records belong to other shards.
            mine = records if shard[1] == 1 else {item.index: records[item.index] for item in items if item.index in records}
            write_synthetic_manifest(out_dir, mine, shard)

        filtered = 0
        bar = progress(total=len(todo), desc="generating", unit="img", disable=None if progress_bar else True)
        try:
            for g, batch in _batches(todo, batch_size):
                pixels = render(generators[g], [item.seed for item in batch], device)
                if confidence is not None:
                    conf = confidence(pixels)
                    scores.update({item.index: float(c) for item, c in zip(batch, conf)})
                    for item in (item for item, c in zip(batch, conf) if c < conf_thresh):
                        records[item.index] = {**manifest_record(item, generators[item.generator], None),
                                               "filtered_out": True, "confidence": scores[item.index]}
                        filtered += 1
                    bar.update(int((conf < conf_thresh).sum()))
                    keep = conf >= conf_thresh
                    batch, pixels = [item for item, k in zip(batch, keep) if k], pixels[keep]
                for k in range(0, len(batch), chunk):
                    names, part = [item.file for item in batch[k:k + chunk]], pixels[k:k + chunk]
                    written = (pool.apply_async(write_pngs, (str(out_dir), names, part)) if pool
                               else write_pngs(str(out_dir), names, part))
                    pending.append((batch[k:k + chunk], written))
                # On a GPU, G runs while the workers write. On CPU, G already uses every core, and workers
                # competing with its threads slow both, so each batch is written before the next is made.
                while len(pending) > (2 * max(1, workers) if device.type == "cuda" else 0):
                    collect(pending.popleft())
                if time.perf_counter() - last_write > manifest_every_s:
                    save_manifest()
                    last_write = time.perf_counter()
            while pending:
                collect(pending.popleft())
            if pool:
                pool.close()
                pool.join()
        finally:
            bar.close()
            if pool:
                pool.terminate()
            save_manifest()                      # what was written, even when interrupted
        seconds = time.perf_counter() - start
        return {"written": len(todo) - filtered, "filtered_out": filtered, "kept": len(items) - len(todo),
                "total_in_folder": sum(not r.get("filtered_out") for r in records.values()),
                "acceptance_rate": (len(todo) - filtered) / len(todo) if todo and confidence is not None else None,
                "seconds": seconds, "images_per_s": len(todo) / seconds if seconds > 0 else None}


def combine_summaries(parts: list[dict], records: dict[int, dict]) -> dict:
    """One summary of a job whose shards ran at the same time (`generate`'s, one per shard), given the merged records."""
    written, filtered = sum(p["written"] for p in parts), sum(p["filtered_out"] for p in parts)
    seconds = max(p["seconds"] for p in parts)            # the shards ran side by side
    filtering = any(p["acceptance_rate"] is not None for p in parts)
    return {"written": written, "filtered_out": filtered, "kept": sum(p["kept"] for p in parts),
            "total_in_folder": sum(not r.get("filtered_out") for r in records.values()),
            "acceptance_rate": written / (written + filtered) if filtering else None,
            "seconds": seconds, "images_per_s": (written + filtered) / seconds if seconds > 0 else None}


def classifier_confidence(path: str | Path, class_name: str, device: torch.device) -> Callable[[np.ndarray], np.ndarray]:
    """P(`class_name`) under a classifier saved by train_classifier.py (best_model.pth), for uint8 images."""
    scorer = load_pixel_scorer(path, device)
    if class_name not in scorer.class_names:
        raise UserError(f"the classifier {path} knows classes {', '.join(scorer.class_names)}, not '{class_name}'")
    index = scorer.class_names.index(class_name)

    def confidence(pixels: np.ndarray) -> np.ndarray:
        scores = scorer(pixels)[:, index]
        if not np.isfinite(scores).all():         # NaN < threshold is False: every image would pass the filter
            raise DataError(f"the classifier {path}'s outputs are not finite (NaN or inf) for "
                            f"{int((~np.isfinite(scores)).sum())} of {len(scores)} images: it cannot filter them")
        return scores
    return confidence


def write_generation_info(out_dir: Path, info: dict) -> None:
    atomic.write_json(out_dir / GENERATION_INFO, info)
