"""Training a GAN on the minority class (or every class) of a processed dataset.

`train_gan(config)` is the whole stage: it loads the training images, builds G, D and the loss from
the config, trains with DiffAugment and an EMA generator, monitors FID/KID (per class for a
conditional GAN), and writes

    results/checkpoints/<name>/   checkpoint_epoch_NNNN.pth, final_generator.pth, best_generator.pth,
                                  config.yaml, run_info.json
    results/samples/<name>/       epoch_NNNN.png sample grids (fixed latents)
    results/gan_metrics/<name>/   metrics.json, fidelity_curve.png, losses.json, loss_curves.png
    <synthetic_dir>/<name>/       final_samples.png

Under `torchrun` each process trains on its slice of every global batch and gradients are averaged
(training.core.distributed); only rank 0 evaluates and writes. Data order and latents come from seeds
shared by all ranks and augmentation from per-rank seeds, so N processes follow the single-process
run (exactly so without DiffAugment).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from training.core import atomic
from training.gan.diffaugment import diff_augment
from training.gan.checkpoint import (checkpoint_path, list_checkpoints, load_training_state, save_generator,
                                 save_training_state)
from training.core.config import to_dict, to_yaml
from training.data.folders import load_class, load_split, to_float, to_uint8
from training.core.distributed import (barrier, broadcast_module, global_batchnorm, init_world, local_copy, seed_for,
                                  shutdown)
from training.gan.ema import EMA, recalibrate_batchnorm
from training.core.errors import DataError, TrainingDiverged, UserError
from training.gan.config import GANConfig
from training.gan.latents import class_labels, draw
from training.gan.losses import LOSSES, d_objective, g_objective
from training.gan.networks import build_discriminator, build_generator
from training.gan.plots import plot_fidelity, plot_losses, save_grid
from training.core.precision import optimizer_step, resolve_precision
from training.core.progress import progress
from training.core.run_info import run_info, write_run_record
from training.core.runtime import seed_everything

METRICS_SEED_OFFSET = 1_000_003   # latents for FID samples: fixed, and apart from the training stream
GRID_SEED_OFFSET = 2_000_003      # latents for the sample grids
CALIBRATION_SEED_OFFSET = 3_000_003   # latents for re-estimating G's batch-norm statistics


@dataclass(frozen=True)
class RunPaths:
    checkpoints: Path
    samples: Path
    metrics: Path
    synthetic: Path
    cache: Path

    @classmethod
    def of(cls, config: GANConfig) -> "RunPaths":
        results, name = Path(config.output.results_dir), config.output.name
        return cls(results / "checkpoints" / name, results / "samples" / name, results / "gan_metrics" / name,
                   Path(config.output.synthetic_dir) / name, results / "cache")


@torch.no_grad()
def sample_images(generator: torch.nn.Module, num: int, seed: int, device: torch.device, label: int | None = None,
                  per_row: int = 1, batch_size: int = 256) -> torch.Tensor:
    """`num` images from fixed latents (drawn on CPU, so identical on any device); float [-1, 1].

    A conditional G makes class `label`, or without one the classes in turn every `per_row` images.
    """
    z = draw(generator.latent, num, torch.Generator().manual_seed(seed))
    labels = class_labels(generator.latent, num, label, per_row)
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(z[i:i + batch_size].to(device),
                               None if labels is None else labels[i:i + batch_size].to(device)).cpu()
                     for i in range(0, num, batch_size)])
    generator.train(was_training)
    return out


def load_training_set(config: GANConfig) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The images G learns, uint8 (N, C, H, W), their labels (N,) and the class names.

    `data.train_on` = minority: the minority class of train/; all_classes: every class of train/.
    """
    d = config.data
    if d.train_on == "minority":
        images = load_class(d.root, "train", d.minority_class, d.image_size, d.channels)
        return images, torch.zeros(len(images), dtype=torch.int64), [d.minority_class]
    images, labels, names = load_split(d.root, "train", d.image_size, d.channels)
    if d.minority_class not in names:
        raise DataError(f"'data.minority_class' = {d.minority_class} is not a class of {d.root}/train "
                        f"(classes: {', '.join(names)})")
    return images, labels, names


def mean_over_classes(per_class: dict[str, dict]) -> dict:
    """One class's metrics as they are; several classes': the mean FID/KID/IS (intra-class FID) + each class's."""
    if len(per_class) == 1:
        return next(iter(per_class.values()))
    first = next(iter(per_class.values()))

    def mean(key: str) -> float | None:
        values = [m[key] for m in per_class.values()]
        return None if None in values else sum(values) / len(values)

    return {**{k: mean(k) for k in ("fid", "kid_mean", "kid_std", "is_mean", "is_std")},
            "feature_extractor": first["feature_extractor"], "num_fake": sum(m["num_fake"] for m in per_class.values()),
            "num_real": sum(m["num_real"] for m in per_class.values()),
            "per_class": {name: {"fid": m["fid"], "kid_mean": m["kid_mean"]} for name, m in per_class.items()}}


def _check_finite(name: str, value: torch.Tensor, epoch: int, paths: RunPaths) -> None:
    if not math.isfinite(value.item()):
        last = list_checkpoints(paths.checkpoints)
        kept = f"last good checkpoint kept: {last[-1]}" if last else "no checkpoint written yet"
        raise TrainingDiverged(f"{name} became {value.item()} in epoch {epoch}; {kept} "
                               "(try lower learning rates, spectral norm, or the hinge loss)")


def _check_resumable(saved: dict, config: GANConfig) -> None:
    """Only `train.epochs` and the device may change on resume; anything else would make a different run."""
    now = to_dict(config)
    before = saved["config"]
    changed = [f"{s}.{k}" for s in now for k in now[s]
               if now[s][k] != before.get(s, {}).get(k) and (s, k) not in {("train", "epochs"), ("train", "device")}]
    if changed:
        raise UserError(f"cannot resume: the config differs from the checkpoint's in {', '.join(changed)}")


def train_gan(config: GANConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train the GAN described by `config`; returns a summary (paths, final and best FID).

    Launched by torchrun, it joins the other processes and trains data-parallel; rank 0's summary is
    the run's (the others return theirs, without metrics).
    """
    cfg_t, paths = config.train, RunPaths.of(config)
    world, device = init_world(cfg_t.device)
    existing = list_checkpoints(paths.checkpoints)
    if resume and not existing:
        raise UserError(f"--resume: no checkpoint in {paths.checkpoints}")
    if not resume and not overwrite and (existing or (paths.checkpoints / "final_generator.pth").exists()):
        raise UserError(f"{paths.checkpoints} already holds a run: pass --resume to continue it, "
                        "--overwrite to start again, or output.name=NEW for a new run")
    barrier(world)                          # every rank has looked before rank 0 deletes anything
    if overwrite and not resume and world.is_main:   # a new run: none of the old one's generators may be picked up
        for stale in [*existing, paths.checkpoints / "final_generator.pth", paths.checkpoints / "best_generator.pth"]:
            stale.unlink(missing_ok=True)

    # Data: in memory as uint8; each step takes this rank's slice of a global batch.
    real, labels, class_names = load_training_set(config)                    # (N, C, H, W), (N,)
    batch_size = min(cfg_t.batch_size, len(real) // world.size * world.size)
    mine = world.local_slice(batch_size)
    batches_per_epoch = max(1, len(real) // batch_size)   # drop the ragged last batch (BN, GP need full ones)
    conditional = config.model.conditional
    precision, precision_record = resolve_precision(cfg_t, device)
    # On a GPU the whole uint8 set lives there (10,000 RGB images at 128 px are 0.5 GB): batches are
    # index lookups on the device, with no loader, workers or host-to-device copies per step.
    train_images = real.to(device)

    # Networks, optimisers, loss. Same seed on every rank, so the networks start equal (and are broadcast).
    seed_everything(cfg_t.seed)
    G = build_generator(config.model, config.data, len(class_names))
    D = build_discriminator(config.model, config.data, config.loss.name, len(class_names))
    ema = EMA(G, cfg_t.ema_decay, cfg_t.ema_rampup_steps) if cfg_t.ema_decay is not None else None
    G, D = (precision.module(global_batchnorm(net, world)) for net in (G, D))
    if ema is not None:
        ema.model.to(device)
    broadcast_module(G, world)
    broadcast_module(D, world)
    spec = G.latent
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg_t.lr_g, betas=cfg_t.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg_t.lr_d, betas=cfg_t.betas)
    scaler_g, scaler_d = precision.scaler(), precision.scaler()
    loss = LOSSES[config.loss.name]
    state = {"epoch": 0, "d_steps": 0, "g_steps": 0, "loss_history": [], "metric_history": [], "best_fid": None}

    if resume:
        saved = load_training_state(existing[-1])
        _check_resumable(saved, config)
        G.load_state_dict(saved["G"])
        D.load_state_dict(saved["D"])
        opt_g.load_state_dict(saved["opt_g"])
        opt_d.load_state_dict(saved["opt_d"])
        if ema is not None:
            ema.model.load_state_dict(saved["G_ema"])
        state = saved["state"]
        if world.is_main:
            print(f"resumed from {existing[-1]} (epoch {state['epoch']})")

    def sampling_generator() -> torch.nn.Module:
        """What samples, metrics and saved generators use: the EMA G (or a copy of G), BN recalibrated."""
        model = ema.model if ema is not None else local_copy(G)
        recalibrate_batchnorm(model, cfg_t.seed + CALIBRATION_SEED_OFFSET)
        return model

    grid = cfg_t.sample_grid_size
    if world.is_main:
        info = run_info(cfg_t.seed, str(device), {
            "training_images": len(real), "classes": class_names, "resumed_from_epoch": state["epoch"] or None,
            "processes": world.size, "global_batch_size": batch_size, "compute": precision_record})
        write_run_record(paths.checkpoints, to_yaml(config), info)
        if "note" in precision_record:
            print(precision_record["note"])
        space = _feature_space(config, paths, device)
        targets = ([(k, name, real[labels == k]) for k, name in enumerate(class_names)] if conditional
                   else [(None, class_names[0] if len(class_names) == 1 else "all", real)])
        print(f"training {config.output.name}: {len(real)} images of {', '.join(class_names)}, {config.loss.name} "
              f"loss{', conditional' if conditional else ''}{', InfoGAN codes' if spec.has_codes else ''}, "
              f"{device} x {world.size}, FID/KID features: {space.kind}")

    def evaluate(epoch: int, sampler: torch.nn.Module) -> None:
        from quality.features.frechet import fidelity_metrics

        per_class = {}
        for label, name, images in targets:
            fake = to_uint8(sample_images(sampler, config.metrics.num_samples, cfg_t.seed + METRICS_SEED_OFFSET,
                                          device, label))
            per_class[name] = fidelity_metrics(fake, images, space, cache_dir=paths.cache / "fidelity", device=device,
                                               batch_size=config.metrics.batch_size)
        result = mean_over_classes(per_class)
        state["metric_history"].append({"epoch": epoch, **result})
        atomic.write_json(paths.metrics / "metrics.json", {"run": config.output.name, "history": state["metric_history"]})
        plot_fidelity(state["metric_history"], paths.metrics / "fidelity_curve.png", config.output.name)
        if result["fid"] is not None and (state["best_fid"] is None or result["fid"] < state["best_fid"]):
            state["best_fid"] = result["fid"]
            save_generator(paths.checkpoints / "best_generator.pth", sampler, config, epoch=epoch, metrics=result,
                           class_names=class_names)

    def checkpoint(epoch: int, sampler: torch.nn.Module) -> None:
        save_grid(sample_images(sampler, grid ** 2, cfg_t.seed + GRID_SEED_OFFSET, device, per_row=grid),
                  paths.samples / f"epoch_{epoch:04d}.png", nrow=grid)
        atomic.write_json(paths.metrics / "losses.json", state["loss_history"])
        plot_losses(state["loss_history"], paths.metrics / "loss_curves.png", config.output.name)
        save_training_state(checkpoint_path(paths.checkpoints, epoch), {
            "G": G.state_dict(), "D": D.state_dict(), "G_ema": ema.model.state_dict() if ema else None,
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "state": state, "config": to_dict(config)})

    G.train()
    D.train()
    bar = progress(range(state["epoch"] + 1, cfg_t.epochs + 1), desc=config.output.name, unit="epoch",
                   initial=state["epoch"], total=cfg_t.epochs, leave=True, disable=None if world.is_main else True)
    for epoch in bar:
        t0, d_sum, g_sum, g_count = time.perf_counter(), 0.0, 0.0, 0
        shared = torch.Generator().manual_seed(seed_for(cfg_t.seed, epoch))   # order and latents: same on all ranks
        torch.manual_seed(seed_for(cfg_t.seed, epoch, world.rank))            # augmentation: this rank's own
        order = torch.randperm(len(real), generator=shared)
        for b in range(batches_per_epoch):
            batch = order[b * batch_size:(b + 1) * batch_size][mine]
            x_real = to_float(precision.images(train_images[batch.to(device)]))
            y = labels[batch].to(device) if conditional else None            # fakes take the real batch's classes

            # Update D.
            z = draw(spec, batch_size, shared)[mine].to(device)
            with precision.autocast():
                with torch.no_grad():
                    fake = G(z, y)
                d_loss = d_objective(D, loss, diff_augment(x_real, cfg_t.diffaugment),
                                     diff_augment(fake, cfg_t.diffaugment), y, z, spec,
                                     config.loss.info_weight, config.loss.gp_weight)
            optimizer_step(d_loss, opt_d, scaler_d, list(D.parameters()), world)
            state["d_steps"] += 1
            _check_finite("D loss", d_loss, epoch, paths)
            d_sum += d_loss.item()            # this rank's share of the batch: the logged losses are rank 0's

            # Update G, once every n_critic D updates.
            if state["d_steps"] % cfg_t.n_critic == 0:
                z = draw(spec, batch_size, shared)[mine].to(device)
                with precision.autocast():
                    g_loss = g_objective(D, loss, diff_augment(G(z, y), cfg_t.diffaugment), y, z, spec,
                                         config.loss.info_weight)
                optimizer_step(g_loss, opt_g, scaler_g, list(G.parameters()), world)
                state["g_steps"] += 1
                _check_finite("G loss", g_loss, epoch, paths)
                g_sum, g_count = g_sum + g_loss.item(), g_count + 1
                if ema is not None:
                    ema.update(G, state["g_steps"])

        state["epoch"] = epoch
        state["loss_history"].append({"epoch": epoch, "d_loss": d_sum / batches_per_epoch,
                                      "g_loss": g_sum / max(g_count, 1), "seconds": time.perf_counter() - t0})

        # Monitor, then checkpoint (so the checkpoint holds the metric history). Rank 0 only.
        last = epoch == cfg_t.epochs
        due_metrics = last or (config.metrics.every and epoch % config.metrics.every == 0)
        due_checkpoint = last or epoch % cfg_t.checkpoint_every == 0
        if world.is_main and (due_metrics or due_checkpoint):
            sampler = sampling_generator()
            if due_metrics:
                evaluate(epoch, sampler)
            if due_checkpoint:
                checkpoint(epoch, sampler)
        fid = state["metric_history"][-1]["fid"] if state["metric_history"] else None
        status = dict(d=f"{state['loss_history'][-1]['d_loss']:.3f}", g=f"{state['loss_history'][-1]['g_loss']:.3f}",
                      fid="-" if fid is None else f"{fid:.2f}")
        bar.set_postfix(status)
        if world.is_main and bar.disable and (due_metrics or due_checkpoint):   # no terminal: a log line instead
            print(f"epoch {epoch}/{cfg_t.epochs} " + " ".join(f"{k}={v}" for k, v in status.items()), flush=True)

    # Final outputs.
    summary = {"paths": paths, "final_fid": None, "best_fid": state["best_fid"], "epochs": state["epoch"],
               "feature_extractor": None, "rank": world.rank}
    if world.is_main:
        sampler = sampling_generator()
        final = state["metric_history"][-1] if state["metric_history"] else {}
        save_generator(paths.checkpoints / "final_generator.pth", sampler, config, epoch=state["epoch"],
                       metrics=final, class_names=class_names)
        save_grid(sample_images(sampler, grid ** 2, cfg_t.seed + GRID_SEED_OFFSET, device, per_row=grid),
                  paths.synthetic / "final_samples.png", nrow=grid)
        summary.update(final_fid=final.get("fid"), feature_extractor=space.kind)
    shutdown(world)
    return summary


def _feature_space(config: GANConfig, paths: RunPaths, device: torch.device):
    from quality.features.extractors import resolve_feature_space

    m = config.metrics
    return resolve_feature_space(m.feature_extractor, data_root=config.data.root, image_size=config.data.image_size,
                                 channels=config.data.channels, inception_weights=m.inception_weights,
                                 encoder_epochs=m.domain_encoder_epochs, cache_dir=paths.cache, device=str(device))


def with_device(config: GANConfig, device: str | None) -> GANConfig:
    """The config with `train.device` replaced by a `--device` flag, when given."""
    return config if device is None else replace(config, train=replace(config.train, device=device))
