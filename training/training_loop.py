"""Training a GAN on the minority class of a processed dataset.

`train_gan(config)` is the whole stage: it loads the minority images, builds G, D and the loss from
the config, trains with DiffAugment and an EMA generator, monitors FID/KID, and writes

    results/checkpoints/<name>/   checkpoint_epoch_NNNN.pth, final_generator.pth, best_generator.pth,
                                  config.yaml, run_info.json
    results/samples/<name>/       epoch_NNNN.png sample grids (fixed latents)
    results/gan_metrics/<name>/   metrics.json, fidelity_curve.png, losses.json, loss_curves.png
    <synthetic_dir>/<name>/       final_samples.png
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from training import atomic
from training.augment import diff_augment
from training.checkpoint import (checkpoint_path, list_checkpoints, load_training_state, save_generator,
                                 save_training_state)
from training.config import to_dict, to_yaml
from training.dataset import load_class, to_float, to_uint8
from training.ema import EMA, recalibrate_batchnorm
from training.errors import TrainingDiverged, UserError
from training.gan_config import GANConfig
from training.losses import LOSSES, gradient_penalty
from training.networks import build_discriminator, build_generator
from training.plots import plot_fidelity, plot_losses, save_grid
from training.progress import progress
from training.run_info import run_info, write_run_record
from training.runtime import resolve_device, rng_state, seed_everything, set_rng_state

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
def sample_images(generator: torch.nn.Module, num: int, seed: int, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """`num` images from fixed latents (seeded on CPU, so identical on any device); float [-1, 1]."""
    z = torch.randn(num, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    was_training = generator.training
    generator.eval()
    out = torch.cat([generator(z[i:i + batch_size].to(device)).cpu() for i in range(0, num, batch_size)])
    generator.train(was_training)
    return out


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
    """Train the GAN described by `config`; returns a summary (paths, final and best FID)."""
    cfg_t, paths = config.train, RunPaths.of(config)
    device = resolve_device(cfg_t.device)
    existing = list_checkpoints(paths.checkpoints)
    if resume and not existing:
        raise UserError(f"--resume: no checkpoint in {paths.checkpoints}")
    if not resume and not overwrite and (existing or (paths.checkpoints / "final_generator.pth").exists()):
        raise UserError(f"{paths.checkpoints} already holds a run: pass --resume to continue it, "
                        "--overwrite to start again, or output.name=NEW for a new run")
    if overwrite and not resume:           # a new run: none of the old one's generators may be picked up
        for stale in [*existing, paths.checkpoints / "final_generator.pth", paths.checkpoints / "best_generator.pth"]:
            stale.unlink(missing_ok=True)

    # Data: the minority class of the training split, in memory as uint8.
    real = load_class(config.data.root, "train", config.data.minority_class, config.data.image_size,
                      config.data.channels)                                                    # (N, C, H, W)
    batch_size = min(cfg_t.batch_size, len(real))
    batches_per_epoch = max(1, len(real) // batch_size)   # drop the ragged last batch (BN, GP need full ones)

    # Networks, optimisers, loss.
    seed_everything(cfg_t.seed)
    G = build_generator(config.model, config.data).to(device)
    D = build_discriminator(config.model, config.data, config.loss.name).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg_t.lr_g, betas=cfg_t.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg_t.lr_d, betas=cfg_t.betas)
    ema = EMA(G, cfg_t.ema_decay, cfg_t.ema_rampup_steps) if cfg_t.ema_decay is not None else None
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
        set_rng_state(saved["rng"])
        print(f"resumed from {existing[-1]} (epoch {state['epoch']})")

    def sampling_generator() -> torch.nn.Module:
        """What samples, metrics and saved generators use: the EMA G (or a copy of G), BN recalibrated."""
        model = ema.model if ema is not None else copy.deepcopy(G)
        recalibrate_batchnorm(model, cfg_t.seed + CALIBRATION_SEED_OFFSET)
        return model

    info = run_info(cfg_t.seed, str(device), {"minority_images": len(real), "resumed_from_epoch": state["epoch"] or None})
    write_run_record(paths.checkpoints, to_yaml(config), info)
    space = _feature_space(config, paths, device)
    print(f"training {config.output.name}: {len(real)} '{config.data.minority_class}' images, "
          f"{config.loss.name} loss, {device}, FID/KID features: {space.kind}")

    def evaluate(epoch: int, sampler: torch.nn.Module) -> None:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            fake = to_uint8(sample_images(sampler, config.metrics.num_samples, cfg_t.seed + METRICS_SEED_OFFSET, device))
            from quality.fidelity import fidelity_metrics
            result = fidelity_metrics(fake, real, space, cache_dir=paths.cache / "fidelity", device=device,
                                      batch_size=config.metrics.batch_size)
        state["metric_history"].append({"epoch": epoch, **result})
        atomic.write_json(paths.metrics / "metrics.json", {"run": config.output.name, "history": state["metric_history"]})
        plot_fidelity(state["metric_history"], paths.metrics / "fidelity_curve.png", config.output.name)
        if result["fid"] is not None and (state["best_fid"] is None or result["fid"] < state["best_fid"]):
            state["best_fid"] = result["fid"]
            save_generator(paths.checkpoints / "best_generator.pth", sampler, config, epoch=epoch, metrics=result)

    def checkpoint(epoch: int, sampler: torch.nn.Module) -> None:
        save_grid(sample_images(sampler, cfg_t.sample_grid_size ** 2, cfg_t.seed + GRID_SEED_OFFSET, device),
                  paths.samples / f"epoch_{epoch:04d}.png", nrow=cfg_t.sample_grid_size)
        atomic.write_json(paths.metrics / "losses.json", state["loss_history"])
        plot_losses(state["loss_history"], paths.metrics / "loss_curves.png", config.output.name)
        save_training_state(checkpoint_path(paths.checkpoints, epoch), {
            "G": G.state_dict(), "D": D.state_dict(), "G_ema": ema.model.state_dict() if ema else None,
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(), "state": state, "rng": rng_state(),
            "config": to_dict(config)})

    G.train()
    D.train()
    bar = progress(range(state["epoch"] + 1, cfg_t.epochs + 1), desc=config.output.name, unit="epoch",
                   initial=state["epoch"], total=cfg_t.epochs, leave=True)
    for epoch in bar:
        t0, d_sum, g_sum, g_count = time.perf_counter(), 0.0, 0.0, 0
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(cfg_t.seed * 100_003 + epoch))
        for b in range(batches_per_epoch):
            x_real = to_float(real[order[b * batch_size:(b + 1) * batch_size]]).to(device)

            # Update D.
            fake = G(torch.randn(batch_size, G.z_dim, device=device))
            aug_real, aug_fake = diff_augment(x_real, cfg_t.diffaugment), diff_augment(fake.detach(), cfg_t.diffaugment)
            d_loss = loss.d_loss(D(aug_real), D(aug_fake))
            if config.loss.gp_weight > 0:
                d_loss = d_loss + config.loss.gp_weight * gradient_penalty(D, aug_real, aug_fake)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            state["d_steps"] += 1
            _check_finite("D loss", d_loss, epoch, paths)
            d_sum += d_loss.item()

            # Update G, once every n_critic D updates.
            if state["d_steps"] % cfg_t.n_critic == 0:
                fake = G(torch.randn(batch_size, G.z_dim, device=device))
                g_loss = loss.g_loss(D(diff_augment(fake, cfg_t.diffaugment)))
                opt_g.zero_grad(set_to_none=True)
                g_loss.backward()
                opt_g.step()
                state["g_steps"] += 1
                _check_finite("G loss", g_loss, epoch, paths)
                g_sum, g_count = g_sum + g_loss.item(), g_count + 1

                # Update EMA.
                if ema is not None:
                    ema.update(G, state["g_steps"])

        state["epoch"] = epoch
        state["loss_history"].append({"epoch": epoch, "d_loss": d_sum / batches_per_epoch,
                                      "g_loss": g_sum / max(g_count, 1), "seconds": time.perf_counter() - t0})

        # Monitor, then checkpoint (so the checkpoint holds the metric history).
        last = epoch == cfg_t.epochs
        due_metrics = last or (config.metrics.every and epoch % config.metrics.every == 0)
        due_checkpoint = last or epoch % cfg_t.checkpoint_every == 0
        if due_metrics or due_checkpoint:
            sampler = sampling_generator()
            if due_metrics:
                evaluate(epoch, sampler)
            if due_checkpoint:
                checkpoint(epoch, sampler)
        fid = state["metric_history"][-1]["fid"] if state["metric_history"] else None
        status = dict(d=f"{state['loss_history'][-1]['d_loss']:.3f}", g=f"{state['loss_history'][-1]['g_loss']:.3f}",
                      fid="-" if fid is None else f"{fid:.2f}")
        bar.set_postfix(status)
        if bar.disable and (due_metrics or due_checkpoint):   # no terminal: a log line instead
            print(f"epoch {epoch}/{cfg_t.epochs} " + " ".join(f"{k}={v}" for k, v in status.items()), flush=True)

    # Final outputs.
    sampler = sampling_generator()
    final = state["metric_history"][-1] if state["metric_history"] else {}
    save_generator(paths.checkpoints / "final_generator.pth", sampler, config, epoch=state["epoch"], metrics=final)
    save_grid(sample_images(sampler, cfg_t.sample_grid_size ** 2, cfg_t.seed + GRID_SEED_OFFSET, device),
              paths.synthetic / "final_samples.png", nrow=cfg_t.sample_grid_size)
    return {"paths": paths, "final_fid": final.get("fid"), "best_fid": state["best_fid"],
            "feature_extractor": space.kind, "epochs": state["epoch"]}


def _feature_space(config: GANConfig, paths: RunPaths, device: torch.device):
    from quality.feature_extractors import resolve_feature_space

    m = config.metrics
    return resolve_feature_space(m.feature_extractor, data_root=config.data.root, image_size=config.data.image_size,
                                 channels=config.data.channels, inception_weights=m.inception_weights,
                                 encoder_epochs=m.domain_encoder_epochs, cache_dir=paths.cache, device=str(device))


def with_device(config: GANConfig, device: str | None) -> GANConfig:
    """The config with `train.device` replaced by a `--device` flag, when given."""
    return config if device is None else replace(config, train=replace(config.train, device=device))
