"""Training a GAN on the minority class (or every class) of a processed dataset.

`train_gan(config)` is the whole stage: it loads the training images, builds G, D and the loss from
the config, trains with DiffAugment and an EMA generator, monitors FID/KID (per class for a
conditional GAN), and writes every file of the run into its one folder, results/gan/<name>/
(training.gan.run_folder lays it out).

Under `torchrun` each process trains on its slice of every global batch and gradients are averaged
(training.core.distributed); only rank 0 evaluates and writes. Data order and latents come from seeds
shared by all ranks and augmentation from per-rank seeds, so N processes follow the single-process
run (exactly so without DiffAugment). Every random stream is re-seeded from (seed, epoch) at the
start of each epoch, which is why a resumed run continues exactly without saving RNG states.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from quality.assessment.qa import SCREEN_CHECKS, QAOptions, held_out_half, resolve_space
from quality.assessment.qa import screen as qa_screen
from quality.checks.verdicts import FAIL, PASS, worst
from quality.features.extractors import FeatureSpace, resolve_feature_space
from quality.features.frechet import extract_features, fidelity_metrics
from training.core import atomic
from training.core.config import to_dict, to_yaml
from training.core.distributed import (
    World,
    barrier,
    broadcast_module,
    global_batchnorm,
    init_world,
    local_copy,
    seed_for,
    shutdown,
    sum_over_ranks,
)
from training.core.errors import DataError, TrainingDiverged, UserError
from training.core.outputs import refuse_output_inside_dataset
from training.core.precision import Precision, optimizer_step, resolve_precision
from training.core.progress import progress
from training.core.run_info import run_info, write_run_record
from training.core.runtime import seed_everything
from training.core.tensorboard import TensorBoardLog
from training.data.folders import load_class, load_split, to_float, to_uint8
from training.gan.checkpoint import (
    checkpoint_path,
    list_checkpoints,
    load_training_state,
    save_generator,
    save_training_state,
)
from training.gan.config import GANConfig
from training.gan.diffaugment import AdaptiveProbability, diff_augment
from training.gan.ema import EMA, recalibrate_batchnorm
from training.gan.latents import class_labels, draw
from training.gan.losses import LOSSES, GANLoss, LeCamAnchors, d_objective, g_objective
from training.gan.networks import build_discriminator, build_generator
from training.gan.plots import plot_fidelity, plot_losses, save_grid
from training.gan.run_folder import (
    BEST_GENERATOR,
    FIDELITY_CURVE,
    FINAL_GENERATOR,
    FINAL_SAMPLES,
    GENERATOR_FILES,
    LOSS_CURVES,
    LOSS_HISTORY,
    LOWEST_FID_GENERATOR,
    METRICS,
    GANRun,
)

METRICS_SEED_OFFSET = 1_000_003   # latents for FID samples: fixed, and apart from the training stream
GRID_SEED_OFFSET = 2_000_003      # latents for the sample grids
CALIBRATION_SEED_OFFSET = 3_000_003   # latents for re-estimating G's batch-norm statistics
BEST_REASON = ("fewest checks not passing (warn or insufficient), then lowest FID, among the evaluated checkpoints "
               "whose samples fail none of the artefact, memorisation, fidelity and detectability checks")


@dataclass
class GANState:
    """Everything that changes while training, besides the networks and optimisers."""

    G: torch.nn.Module
    D: torch.nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    scaler_g: torch.amp.GradScaler
    scaler_d: torch.amp.GradScaler
    loss: GANLoss
    anchors: LeCamAnchors = field(default_factory=LeCamAnchors)
    ada: AdaptiveProbability | None = None
    counters: dict = field(default_factory=lambda: {"epoch": 0, "d_steps": 0, "g_steps": 0, "loss_history": [],
                                                    "metric_history": [], "best_fid": None})
    training_data: str | None = None      # training_data_hash of the images G learns: resume needs the same

    def training_state(self, config: GANConfig) -> dict:
        """What checkpoint_epoch_NNNN.pth holds: enough for `--resume` to continue exactly."""
        return {"G": self.G.state_dict(), "D": self.D.state_dict(),
                "G_ema": self.ema.model.state_dict() if self.ema else None,
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
                "lecam": self.anchors.state_dict(), "ada": self.ada.state_dict() if self.ada else None,
                "state": self.counters, "config": to_dict(config), "training_data": self.training_data}

    def restore(self, saved: dict) -> None:
        self.G.load_state_dict(saved["G"])
        self.D.load_state_dict(saved["D"])
        self.opt_g.load_state_dict(saved["opt_g"])
        self.opt_d.load_state_dict(saved["opt_d"])
        if self.ema is not None:
            self.ema.model.load_state_dict(saved["G_ema"])
        for scaler, key in ((self.scaler_g, "scaler_g"), (self.scaler_d, "scaler_d")):
            if saved.get(key):          # optional: a checkpoint may hold no scaler state
                scaler.load_state_dict(saved[key])
        if saved.get("lecam"):
            self.anchors.load_state_dict(saved["lecam"])
        if self.ada is not None and saved.get("ada"):
            self.ada.load_state_dict(saved["ada"])
        self.counters = saved["state"]


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


def training_data_hash(images: torch.Tensor, labels: torch.Tensor, class_names: list[str]) -> str:
    """sha256 of the training set as G sees it (pixels, labels, class names): the same config over another
    folder's content, or a folder whose images changed, is another run."""
    h = hashlib.sha256()
    for part in (images.numpy(), labels.numpy(), np.frombuffer("\0".join(class_names).encode(), np.uint8)):
        h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


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


def _check_finite(name: str, value: torch.Tensor, epoch: int, paths: GANRun) -> None:
    if not math.isfinite(value.item()):
        last = list_checkpoints(paths.checkpoints)
        kept = f"last good checkpoint kept: {last[-1]}" if last else "no checkpoint written yet"
        raise TrainingDiverged(f"{name} became {value.item()} in epoch {epoch}; {kept} "
                               "(try lower learning rates, spectral norm, or the hinge loss)")


class CannotResume(UserError):
    """`--resume` of a run whose config changed in more than `train.epochs` or the device, or whose training
    images changed."""


def _check_resumable(saved: dict, config: GANConfig, training_data: str) -> None:
    """Only `train.epochs` and the device may change on resume; anything else, the training images included,
    would make a different run. (A checkpoint that holds no hash of its training images is not checked for them.)"""
    if saved.get("training_data") not in (None, training_data):
        raise CannotResume(f"cannot resume: the training images in {config.data.root} differ from those the "
                           "checkpoint was trained on")
    now = to_dict(config)
    before = saved["config"]
    changed = [f"{s}.{k}" for s in now for k in now[s]
               if now[s][k] != before.get(s, {}).get(k) and (s, k) not in {("train", "epochs"), ("train", "device")}]
    if changed:
        raise CannotResume(f"cannot resume: the config differs from the checkpoint's in {', '.join(changed)}")


def newest_readable(checkpoints: list[Path], world: World) -> tuple[Path, dict]:
    """The newest training checkpoint that loads (oldest first in `checkpoints`), saying which were skipped.

    A run killed while the disk filled, or a file damaged since, must not strand the run: the previous
    good checkpoint continues it, and the user is told which epoch is lost.
    """
    unreadable = []
    for path in reversed(checkpoints):
        try:
            saved = load_training_state(path)
        except DataError as err:
            unreadable.append(str(err))
            continue
        if unreadable and world.is_main:
            print(f"note: {len(unreadable)} newer checkpoint(s) could not be read ({unreadable[0]}); "
                  f"resuming from {path.name} instead")
        return path, saved
    raise DataError(f"no readable checkpoint to resume from: {unreadable[0]}")


def prepare_run_folder(paths: GANRun, world: World, resume: bool, overwrite: bool) -> list[Path]:
    """Refuse to mix runs in one folder; with `overwrite`, remove the old run's checkpoints. Returns those kept."""
    existing = list_checkpoints(paths.checkpoints)
    if resume and not existing:
        raise UserError(f"--resume: no checkpoint in {paths.checkpoints}")
    if not resume and not overwrite and (existing or paths.file(FINAL_GENERATOR).exists()):
        raise UserError(f"{paths.root} already holds a run: pass --resume to continue it, "
                        "--overwrite to start again, or output.name=NEW for a new run")
    barrier(world)                          # every rank has looked before rank 0 deletes anything
    if overwrite and not resume and world.is_main:   # a new run: none of the old one's generators may be picked up
        for stale in [*existing, *(paths.file(name) for name in GENERATOR_FILES)]:
            stale.unlink(missing_ok=True)
    return existing if resume else []


def load_pretrained(path: str, G: torch.nn.Module, D: torch.nn.Module) -> dict:
    """Start G and D from a training checkpoint's weights (`train.init_from`); returns the checkpoint.

    Transfer from a plentiful class (Wang et al. 2018; Mo et al. 2020): the networks must be the same
    shapes, so the checkpoint's model and image size must match this config's; a mismatch is one line.
    """
    saved = load_training_state(path)
    for name, net in (("G", G), ("D", D)):
        mine, theirs = net.state_dict(), saved[name]
        if not isinstance(theirs, dict):
            raise DataError(f"train.init_from: {path} has no {name} weights")
        wrong = sorted(set(mine) ^ set(theirs)) or [k for k in mine if tuple(mine[k].shape) != tuple(theirs[k].shape)]
        if wrong:
            raise UserError(f"train.init_from: {path} holds a different {name} (first mismatch: {wrong[0]}); "
                            "the pretrained run needs the same model section and data.image_size/channels")
        if any(v.is_floating_point() and not torch.isfinite(v).all() for v in theirs.values()):
            raise DataError(f"train.init_from: {path} has non-finite {name} weights")
        net.load_state_dict(theirs)
    return saved


def build_state(config: GANConfig, num_classes: int, world: World, device: torch.device,
                precision: Precision, fresh: bool = True) -> GANState:
    """G, D, EMA, optimisers and loss. The same seed on every rank, so the networks start equal (and are broadcast).
    A fresh run starts from `train.init_from`'s weights when set (a resumed one from its own checkpoint)."""
    t = config.train
    seed_everything(t.seed)
    G = build_generator(config.model, config.data, num_classes)
    D = build_discriminator(config.model, config.data, config.loss.name, num_classes)
    pretrained = load_pretrained(t.init_from, G, D) if t.init_from and fresh else None
    for block in D.input_blocks()[:config.model.freeze_d_blocks]:
        block.requires_grad_(False)
    ema = EMA(G, t.ema_decay, t.ema_rampup_steps) if t.ema_decay is not None else None
    if ema is not None and pretrained and pretrained.get("G_ema"):
        ema.model.load_state_dict(pretrained["G_ema"])
    G, D = (precision.module(global_batchnorm(net, world)) for net in (G, D))
    if ema is not None:
        ema.model.to(device)
    broadcast_module(G, world)
    broadcast_module(D, world)
    ada = AdaptiveProbability(t.ada_target, t.ada_speed_images, t.batch_size) if t.ada_target is not None else None
    return GANState(G, D, ema, torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=t.betas),
                    torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=t.betas), precision.scaler(), precision.scaler(),
                    LOSSES[config.loss.name], ada=ada)


def train_epoch(s: GANState, config: GANConfig, epoch: int, images: torch.Tensor, labels: torch.Tensor | None,
                batch_size: int, world: World, device: torch.device, precision: Precision, paths: GANRun) -> dict:
    """One pass over the training images (ragged last batch dropped: BN and GP need full ones); returns the log row."""
    t, spec, c = config.train, s.G.latent, s.counters
    started, d_sum, g_sum, g_count = time.perf_counter(), 0.0, 0.0, 0
    real_sum = fake_sum = torch.zeros((), device=device)
    shared = torch.Generator().manual_seed(seed_for(t.seed, epoch))   # order and latents: the same on all ranks
    torch.manual_seed(seed_for(t.seed, epoch, world.rank))            # augmentation: this rank's own
    order, mine = torch.randperm(len(images), generator=shared), world.local_slice(batch_size)
    batches = max(1, len(images) // batch_size)
    for b in range(batches):
        batch = order[b * batch_size:(b + 1) * batch_size][mine]
        x_real = to_float(precision.images(images[batch.to(device)]))   # (b, C, S, S) in [-1, 1]
        y = labels[batch].to(device) if labels is not None else None    # fakes take the real batch's classes

        # Update D (on augmented reals and fakes: with ADA, each op applies with probability p).
        p = s.ada.p if s.ada is not None else 1.0
        z = draw(spec, batch_size, shared)[mine].to(device)
        with precision.autocast():
            with torch.no_grad():
                fake = s.G(z, y)
            d_loss, real_scores, fake_scores = d_objective(
                s.D, s.loss, diff_augment(x_real, t.diffaugment, p), diff_augment(fake, t.diffaugment, p), y, z, spec,
                config.loss.info_weight, config.loss.gp_weight, config.loss.lecam_weight, s.anchors)
        optimizer_step(d_loss, s.opt_d, s.scaler_d, list(s.D.parameters()), world)
        c["d_steps"] += 1
        _check_finite("D loss", d_loss, epoch, paths)
        d_sum += d_loss.item()            # this rank's share of the batch: the logged losses are rank 0's
        real_sum, fake_sum = real_sum + real_scores.mean(), fake_sum + fake_scores.mean()   # on the device: no sync
        if s.ada is not None:             # the global batch's signs: every rank sees the same r and keeps the same p
            s.ada.observe(float(sum_over_ranks(real_scores.sign().sum().float(), world)), batch_size)

        # Update G, once every n_critic D updates.
        if c["d_steps"] % t.n_critic == 0:
            z = draw(spec, batch_size, shared)[mine].to(device)
            with precision.autocast():
                g_loss = g_objective(s.D, s.loss, diff_augment(s.G(z, y), t.diffaugment, p), y, z, spec,
                                     config.loss.info_weight)
            optimizer_step(g_loss, s.opt_g, s.scaler_g, list(s.G.parameters()), world)
            c["g_steps"] += 1
            _check_finite("G loss", g_loss, epoch, paths)
            g_sum, g_count = g_sum + g_loss.item(), g_count + 1

            # Update EMA.
            if s.ema is not None:
                s.ema.update(s.G, c["g_steps"])
    return {"epoch": epoch, "d_loss": d_sum / batches, "g_loss": g_sum / max(g_count, 1),
            "d_real": float(real_sum) / batches, "d_fake": float(fake_sum) / batches,   # D's mean raw score per side
            "augment_p": s.ada.p if s.ada is not None else (1.0 if t.diffaugment else 0.0),
            "seconds": time.perf_counter() - started}


def checkpoint_rank(screen: dict[str, str], fid: float | None) -> list | None:
    """How best_generator.pth orders checkpoints, lower first: [screen checks that did not pass, FID]; None
    when not eligible (a screen check fails, or no FID)."""
    verdicts = list(screen.values())
    return None if fid is None or FAIL in verdicts else [len(verdicts) - verdicts.count(PASS), fid]


class Monitor:
    """Rank 0's view of a run: FID/KID against the real images, grids, curves, checkpoints."""

    def __init__(self, config: GANConfig, paths: GANRun, device: torch.device, real: torch.Tensor,
                 labels: torch.Tensor, class_names: list[str]):
        self.config, self.paths, self.device, self.class_names = config, paths, device, class_names
        m = config.metrics
        self.space: FeatureSpace = resolve_feature_space(
            m.feature_extractor, data_root=config.data.root, image_size=config.data.image_size,
            channels=config.data.channels, inception_weights=m.inception_weights,
            encoder_epochs=m.domain_encoder_epochs, cache_dir=paths.cache, device=str(device))
        self.log = TensorBoardLog(paths.tensorboard, config.output.tensorboard)
        # The screen's feature space is QA's, built as run_qa builds it (QA's encoder epochs, half of the real
        # images held out by the same seed), so the pipeline's QA finds it in the cache.
        self.screen_space, _ = resolve_space(
            QAOptions(feature_extractor=m.feature_extractor, data_root=config.data.root, inception_weights=m.inception_weights,
                      cache_dir=str(paths.cache)),
            config.data.root, config.data.image_size, config.data.channels, str(device),
            held_out_half(real, config.train.seed))
        self.screen_real = None                               # each FID target's real images and their features
        # What FID compares against: each class's images for a conditional G, else all of them.
        self.targets = ([(k, name, real[labels == k]) for k, name in enumerate(class_names)] if config.model.conditional
                        else [(None, class_names[0] if len(class_names) == 1 else "all", real)])

    def sampler(self, s: GANState) -> torch.nn.Module:
        """What samples, metrics and saved generators use: the EMA G (or a copy of G), BN recalibrated."""
        model = s.ema.model if s.ema is not None else local_copy(s.G)
        recalibrate_batchnorm(model, self.config.train.seed + CALIBRATION_SEED_OFFSET)
        return model

    def screen(self, fakes: list[torch.Tensor]) -> tuple[dict[str, str], dict[str, float]]:
        """QA's checkpoint screen (quality.assessment.qa.screen: artefacts, memorisation, fidelity and
        detectability's linear views, with QA's baselines and thresholds) of the evaluation samples (one
        tensor per FID target) against that target's real training images, in QA's feature space; the
        worst verdict over targets, and the two numbers worth watching over training (fine detail: the
        high-frequency ratio to real; the detectability AUC, the largest of its views).
        """
        device = str(self.device)
        if self.screen_real is None:       # the real side never changes: its features at the first evaluation
            self.screen_real = [(images, extract_features(images, self.screen_space, device))
                                for _, _, images in self.targets]
        results = [qa_screen(real, fake, self.screen_space, real_features=real_features, seed=self.config.train.seed,
                             synthetic_features=extract_features(fake, self.screen_space, device), device=device,
                             cache_dir=self.paths.cache)
                   for (real, real_features), fake in zip(self.screen_real, fakes)]
        verdicts = {name: worst(r[name]["verdict"] for r in results) for name in SCREEN_CHECKS}
        # NaN where a check had too few images to measure its number (its verdict is then insufficient).
        number = lambda check, key: [r[check].get(key, float("nan")) for r in results]
        ratios = [(r["fidelity"].get("real_baseline") or {}).get("ratio") for r in results]
        return verdicts, {"fine_detail_ratio": float(np.mean(number("artefacts", "high_frequency_ratio"))),
                          "detectability_auc": float(np.max(number("detectability", "auc"))),
                          "fid_ratio": float(np.mean([float("nan") if r is None else r for r in ratios]))}

    def evaluate(self, s: GANState, epoch: int, sampler: torch.nn.Module) -> None:
        """FID/KID of `sampler` now, and the screening checks.

        best_generator.pth is the checkpoint a user would pick: among those whose screen has no fail, the
        fewest checks not passing, then the lowest FID (so a slightly higher FID buys a checkpoint without possible
        patient copies). lowest_fid_generator.pth is the lowest FID of all, the fallback when every
        checkpoint fails a screening check.
        """
        cfg, c = self.config, s.counters
        per_class, fakes = {}, []
        for label, name, images in self.targets:
            fake = to_uint8(sample_images(sampler, cfg.metrics.num_samples, cfg.train.seed + METRICS_SEED_OFFSET,
                                          self.device, label))
            fakes.append(fake)
            per_class[name] = fidelity_metrics(fake, images, self.space, cache_dir=self.paths.cache / "fidelity",
                                               device=self.device, batch_size=cfg.metrics.batch_size)
        verdicts, measures = self.screen(fakes)
        result = {**mean_over_classes(per_class), **measures, "screen": verdicts}
        self.log.scalars(epoch, result, "metrics")
        c["metric_history"].append({"epoch": epoch, **result})
        fid = result["fid"]
        if fid is not None and (c.get("lowest_fid") is None or fid < c["lowest_fid"]):
            c["lowest_fid"] = fid
            save_generator(self.paths.file(LOWEST_FID_GENERATOR), sampler, cfg, epoch=epoch, metrics=result,
                           class_names=self.class_names)
        rank = checkpoint_rank(result["screen"], fid)
        if rank is not None and (c.get("best_rank") is None or rank < c["best_rank"]):
            c["best_fid"], c["best_rank"] = fid, rank
            c["best_choice"] = {"epoch": epoch, "fid": fid, "screen": result["screen"], "reason": BEST_REASON}
            save_generator(self.paths.file(BEST_GENERATOR), sampler, cfg, epoch=epoch, metrics=result,
                           class_names=self.class_names)
        self.write_metrics(c)
        plot_fidelity(c["metric_history"], self.paths.file(FIDELITY_CURVE), cfg.output.name)

    def write_metrics(self, counters: dict) -> None:
        """metrics.json: every evaluation, and which checkpoint best_generator.pth is and why."""
        atomic.write_json(self.paths.file(METRICS), {"run": self.config.output.name,
                                                                "history": counters["metric_history"],
                                                                "best": counters.get("best_choice")})

    def grid(self, sampler: torch.nn.Module, path: Path, epoch: int | None = None) -> None:
        n = self.config.train.sample_grid_size
        images = sample_images(sampler, n ** 2, self.config.train.seed + GRID_SEED_OFFSET, self.device, per_row=n)
        save_grid(images, path, nrow=n)
        if epoch is not None:
            self.log.image_grid(epoch, "samples", images, n)

    def checkpoint(self, s: GANState, epoch: int, sampler: torch.nn.Module) -> None:
        self.grid(sampler, self.paths.samples / f"epoch_{epoch:04d}.png", epoch)
        atomic.write_json(self.paths.file(LOSS_HISTORY), s.counters["loss_history"])
        plot_losses(s.counters["loss_history"], self.paths.file(LOSS_CURVES), self.config.output.name)
        save_training_state(checkpoint_path(self.paths.checkpoints, epoch), s.training_state(self.config))

    def finish(self, s: GANState) -> dict:
        """final_generator.pth and final_samples.png; best_generator.pth when no checkpoint passed; the last metrics."""
        sampler, c = self.sampler(s), s.counters
        final = c["metric_history"][-1] if c["metric_history"] else {}
        lowest = self.paths.file(LOWEST_FID_GENERATOR)
        if c["best_fid"] is None and lowest.is_file():
            with atomic.atomic_path(self.paths.file(BEST_GENERATOR)) as tmp:
                shutil.copyfile(lowest, tmp)
            c["best_fid"] = c["lowest_fid"]
            lowest_entry = min((h for h in c["metric_history"] if h["fid"] is not None), key=lambda h: h["fid"])
            c["best_choice"] = {"epoch": lowest_entry["epoch"], "fid": c["lowest_fid"], "screen": lowest_entry["screen"],
                                "reason": "every evaluated checkpoint failed one of the artefact, memorisation, "
                                "fidelity and detectability checks: the lowest FID of all (expect QA to fail)"}
            print(f"note: {c['best_choice']['reason']}")
            self.write_metrics(c)
        save_generator(self.paths.file(FINAL_GENERATOR), sampler, self.config, epoch=c["epoch"],
                       metrics=final, class_names=self.class_names)
        self.grid(sampler, self.paths.file(FINAL_SAMPLES))
        self.log.close()
        return final


def check_output_paths(config: GANConfig) -> None:
    """Refuse, before anything is written, a run whose outputs would land inside a dataset (training.core.outputs):
    its run folder, the shared cache, and the synthetic folder its images will be generated into (e.g.
    output.synthetic_dir=data/processed/demo/test with output.name=malignant: synthetic test images)."""
    paths = GANRun.of(config)
    refuse_output_inside_dataset(paths.synthetic, "output.synthetic_dir/output.name",
                                 "a folder of its own (e.g. output.synthetic_dir=data/synthetic)")
    for folder in (paths.root, paths.cache):
        refuse_output_inside_dataset(folder, "output.results_dir", "a folder of its own (e.g. output.results_dir=results)")


def train_gan(config: GANConfig, *, resume: bool = False, overwrite: bool = False) -> dict:
    """Train the GAN described by `config`; returns a summary (paths, final and best FID).

    Launched by torchrun, it joins the other processes and trains data-parallel; rank 0's summary is
    the run's (the others return theirs, without metrics).
    """
    check_output_paths(config)
    t, paths = config.train, GANRun.of(config)
    world, device = init_world(t.device)
    existing = prepare_run_folder(paths, world, resume, overwrite)

    # Data: in memory as uint8. On a GPU the whole set lives there (10,000 RGB images at 128 px are
    # 0.5 GB): batches are index lookups on the device, with no loader, workers or host copies per step.
    real, labels, class_names = load_training_set(config)                    # (N, C, H, W), (N,)
    batch_size = min(t.batch_size, len(real) // world.size * world.size)
    world.local_slice(batch_size)                                            # a batch that does not split is refused
    precision, precision_record = resolve_precision(t, device)
    train_images = real.to(device)

    s = build_state(config, len(class_names), world, device, precision, fresh=not existing)
    s.training_data = training_data_hash(real, labels, class_names)
    if existing:
        resumed_from, saved = newest_readable(existing, world)
        _check_resumable(saved, config, s.training_data)
        s.restore(saved)
    monitor = None
    if world.is_main:
        if existing:
            print(f"resumed from {resumed_from} (epoch {s.counters['epoch']})")
        write_run_record(paths.root, to_yaml(config), run_info(t.seed, str(device), {
            "training_images": len(real), "classes": class_names, "resumed_from_epoch": s.counters["epoch"] or None,
            "processes": world.size, "global_batch_size": batch_size, "compute": precision_record}))
        if "note" in precision_record:
            print(precision_record["note"])
        monitor = Monitor(config, paths, device, real, labels, class_names)
        print(f"training {config.output.name}: {len(real)} images of {', '.join(class_names)}, {config.loss.name} "
              f"loss{', conditional' if config.model.conditional else ''}"
              f"{', InfoGAN codes' if s.G.latent.has_codes else ''}, {device} x {world.size}, "
              f"FID/KID features: {monitor.space.kind}")

    s.G.train()
    s.D.train()
    c = s.counters
    bar = progress(range(c["epoch"] + 1, t.epochs + 1), desc=config.output.name, unit="epoch",
                   initial=c["epoch"], total=t.epochs, leave=True, disable=None if world.is_main else True)
    for epoch in bar:
        row = train_epoch(s, config, epoch, train_images, labels if config.model.conditional else None, batch_size,
                          world, device, precision, paths)
        c["epoch"] = epoch
        c["loss_history"].append(row)
        if monitor is not None:
            monitor.log.scalars(epoch, row, "train")

        # Monitor, then checkpoint (so the checkpoint holds the metric history). Rank 0 only.
        last = epoch == t.epochs
        due_metrics = last or (config.metrics.every and epoch % config.metrics.every == 0)
        due_checkpoint = last or epoch % t.checkpoint_every == 0
        if monitor is not None and (due_metrics or due_checkpoint):
            sampler = monitor.sampler(s)
            if due_metrics:
                monitor.evaluate(s, epoch, sampler)
            if due_checkpoint:
                monitor.checkpoint(s, epoch, sampler)
        status = {"d": f"{row['d_loss']:.3f}", "g": f"{row['g_loss']:.3f}",
                  "fid": fid_status(c["metric_history"][-1] if c["metric_history"] else {})}
        bar.set_postfix(status)
        if monitor is not None and bar.disable and (due_metrics or due_checkpoint):   # no terminal: a log line
            print(f"epoch {epoch}/{t.epochs} " + " ".join(f"{k}={v}" for k, v in status.items()), flush=True)

    summary = {"paths": paths, "final_fid": None, "best_fid": c["best_fid"], "epochs": c["epoch"],
               "feature_extractor": None, "rank": world.rank}
    if monitor is not None:
        final = monitor.finish(s)
        print(chosen_line(c.get("best_choice")))
        summary.update(final_fid=final.get("fid"), best_fid=c["best_fid"], feature_extractor=monitor.space.kind)
    shutdown(world)
    return summary


def fid_status(metrics: dict) -> str:
    """FID for the progress line, with a scale: the checkpoint screen's FID in QA's feature space as a multiple
    of the real-vs-real FID at the same size (domain features have no absolute scale; 1x is as close as
    another real sample is)."""
    fid, ratio = metrics.get("fid"), metrics.get("fid_ratio")
    if fid is None:
        return "-"
    return f"{fid:.2f}" + ("" if ratio is None or not math.isfinite(ratio) else f" (QA: {ratio:.1f}x real-vs-real)")


def chosen_line(choice: dict | None) -> str:
    """Which checkpoint best_generator.pth is, and what its screen found."""
    if not choice:
        return "best_generator.pth: no checkpoint was evaluated (metrics off)"
    flagged = [f"{name} {verdict}" for name, verdict in choice.get("screen", {}).items() if verdict != PASS]
    where = f"epoch {choice['epoch']}, " if "epoch" in choice else ""
    fid = "-" if choice.get("fid") is None else f"{choice['fid']:.2f}"
    return (f"best_generator.pth: {where}FID {fid}; checkpoint screen: "
            f"{', '.join(flagged) if flagged else 'every check passed'} (QA on the bulk images decides)")
