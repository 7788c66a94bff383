"""Training and evaluating a classifier over several seeds, for the baseline-vs-augmented question.

`train_classifier(config)` writes one auto-numbered run folder (never overwritten):

    results/classifiers/<name>/run_NNN/
        config.yaml, run_info.json, summary.json (mean and std over seeds of every metric)
        seed_<s>/  metrics.json (val and test), val_predictions.csv, test_predictions.csv,
                   classification_report.txt, confusion_matrix.png, roc_curve.png, training_curves.png,
                   model_info.txt, best_model.pth

The model of each seed is selected on validation AUC (early stopping); training.classify.evaluate
then chooses its threshold on validation and scores test once.

Under `torchrun --nproc_per_node N` the same code runs data-parallel (training/core/distributed.py): every
rank draws the same epoch order, takes its slice of each global batch, and DDP averages gradients, so N
processes take the steps one process would take with the whole batch; rank 0 alone writes the run folder.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch.nn.parallel import DistributedDataParallel

from training.classify.checkpoint import CHECKPOINT_FILE, load_classifier
from training.classify.config import ClassifierConfig, ClassifierTrainConfig
from training.classify.data import LabelledSet, Splits, class_counts, load_splits
from training.classify.eos import embedding_oversample
from training.classify.evaluate import evaluate_fitted, summarise
from training.classify.metrics import binary_metrics
from training.classify.networks import build_classifier
from training.classify.scoring import positive_scores
from training.core import atomic
from training.core.config import to_dict, to_yaml
from training.core.distributed import (
    World,
    from_main,
    global_batchnorm,
    init_world,
    local_copy,
    seed_for,
    shutdown,
    sum_over_ranks,
)
from training.core.errors import DataError, TrainingDiverged
from training.core.precision import Precision, resolve_precision, to_device
from training.core.progress import progress
from training.core.run_info import next_run_dir, run_info, write_run_record
from training.core.runtime import resolve_device, seed_everything
from training.data.folders import to_float

# Purposes of the per-rank seeds, seed_for(seed, rank, purpose): distinct streams for distinct draws.
_AUGMENT_SEED, _MIXUP_SEED, _DROPOUT_SEED = 1, 2, 3


def load_classifier_splits(config: ClassifierConfig, *, show_progress: bool = True, with_test: bool = True) -> Splits:
    """The train/val/test folders of `config.data` (plus `data.synthetic_dir` in train; test only `with_test`)."""
    d = config.data
    return load_splits({"train": d.train_dir, "val": d.val_dir, "test": d.test_dir}, d.image_size, d.channels,
                       d.positive_class, synthetic_dir=d.synthetic_dir, show_progress=show_progress, with_test=with_test)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flips, rotations up to 10 degrees, shifts up to 6 %, brightness/contrast +-10 %; x float [-1, 1]."""
    b = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(b, generator=generator).mul_(hi - lo).add_(lo)

    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)     # drawn on the CPU: same draws on any device
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    angle = uniform(-10, 10) * math.pi / 180
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, uniform(-0.12, 0.12)], 1),
                         torch.stack([sin, cos, uniform(-0.12, 0.12)], 1)], 1)     # shifts in [-1, 1] units
    grid = F.affine_grid(theta.to(x.device), list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    contrast, brightness = uniform(0.9, 1.1).to(x.device), uniform(-0.1, 0.1).to(x.device)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return ((x - mean) * contrast[:, None, None, None] + mean + 2 * brightness[:, None, None, None]).clamp_(-1, 1)


def epoch_order(labels: torch.Tensor, oversample: bool, generator: torch.Generator) -> torch.Tensor:
    """Indices for one epoch: a permutation, or (oversample) draws with every class equally likely."""
    if not oversample:
        return torch.randperm(len(labels), generator=generator)
    counts = torch.bincount(labels).float()
    weights = (1.0 / counts)[labels]
    return torch.multinomial(weights, len(labels), replacement=True, generator=generator)


def mixed_order(train: LabelledSet, oversample: bool, fraction: float, batch_size: int,
                generator: torch.Generator) -> torch.Tensor:
    """One epoch in which every batch draws round(fraction * batch_size) synthetic images, the rest real.

    The epoch is one pass over the real images (by `epoch_order`); synthetic images come from a fresh
    permutation, repeated when the batches need more of them. So the mix is the same whatever the
    folders hold, and the synthetic images are used evenly.
    """
    real, synthetic = (~train.synthetic).nonzero().flatten(), train.synthetic.nonzero().flatten()
    real = real[epoch_order(train.labels[real], oversample, generator)]
    per_batch = min(batch_size - 1, max(1, round(fraction * batch_size)))
    real_per_batch = batch_size - per_batch
    batches = math.ceil(len(real) / real_per_batch)
    draws = torch.cat([synthetic[torch.randperm(len(synthetic), generator=generator)]
                       for _ in range(math.ceil(batches * per_batch / len(synthetic)))])
    return torch.cat([torch.cat([real[b * real_per_batch:(b + 1) * real_per_batch], draws[b * per_batch:(b + 1) * per_batch]])
                      for b in range(batches)])


def sample_weights(train: LabelledSet, class_weights: str, synthetic_weight: float, num_classes: int) -> torch.Tensor:
    """Each training image's loss weight: its class weight (train.class_weights) times synthetic_weight
    for a synthetic image."""
    weights = torch.ones(len(train.labels))
    if class_weights == "balanced":
        counts = torch.bincount(train.labels, minlength=num_classes).float()
        weights = (len(train.labels) / (num_classes * counts.clamp(min=1)))[train.labels]
    return torch.where(train.synthetic, weights * synthetic_weight, weights)


def mixed_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
               t: ClassifierTrainConfig, generator: torch.Generator, mixup_rng: np.random.Generator) -> torch.Tensor:
    """Sum over the batch of each image's weight `w` times its cross-entropy (with mixup when train.mixup_alpha > 0)."""
    def weighted(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return (weight * F.cross_entropy(logits, target, reduction="none", label_smoothing=t.label_smoothing)).sum()

    if t.mixup_alpha <= 0:
        return weighted(net(x), y, w)
    lam = float(mixup_rng.beta(t.mixup_alpha, t.mixup_alpha))
    perm = torch.randperm(len(y), generator=generator).to(x.device)
    logits = net(lam * x + (1 - lam) * x[perm])
    # Each target keeps its own image's weight; perm shuffles this rank's rows, so the weights' sum is unchanged.
    return lam * weighted(logits, y, w) + (1 - lam) * weighted(logits, y[perm], w[perm])


@dataclass(frozen=True)
class Stage:
    """One phase of training: which images, how drawn and weighted, how long, at which learning rate."""

    name: str
    train: LabelledSet
    weights: torch.Tensor          # per image, as `sample_weights`
    epochs: int
    lr: float
    oversample: bool
    synthetic_fraction: float | None = None


def stages(config: ClassifierConfig, train: LabelledSet, num_classes: int) -> list[Stage]:
    """Training, then (train.finetune_real_epochs) a short class-balanced stage on the real images alone."""
    t, d = config.train, config.data
    if d.synthetic_weight == 0:        # left out entirely: exactly the run without synthetic images
        train = train.subset(~train.synthetic)
    fraction = d.synthetic_fraction_per_batch if train.synthetic.any() else None
    if d.synthetic_fraction_per_batch and fraction is None and d.synthetic_weight > 0:
        raise DataError("data.synthetic_fraction_per_batch is set but the training set holds no synthetic images")
    out = [Stage("train", train, sample_weights(train, t.class_weights, d.synthetic_weight, num_classes), t.epochs,
                 t.lr, t.oversample, fraction)]
    if t.finetune_real_epochs:
        real = train.subset(~train.synthetic)
        out.append(Stage("finetune_real", real, torch.ones(len(real.labels)), t.finetune_real_epochs, t.lr / 10, True))
    return out


def fit(config: ClassifierConfig, sets: dict[str, LabelledSet], num_classes: int, positive: int, seed: int,
        device: torch.device, *, world: World = World(), precision: Precision | None = None
        ) -> tuple[torch.nn.Module, list[dict], int]:
    """Train one seed, stage by stage (`stages`); returns the model with the best val AUC, the history, and its epoch.

    Each stage starts from the best model so far, with a fresh optimiser and cosine schedule, and
    early stopping counts within it; a fine-tune stage that never beats val AUC changes nothing.

    Data-parallel (`world.distributed`): every rank draws the same initial weights and epoch order from
    `seed` and takes its slice of each global batch; batch norm uses global-batch statistics and DDP
    averages gradients, so the steps are those of one process with the whole batch. Augmentation,
    mixup and dropout draw per-rank streams. Rank 0 scores val and tells the others, so all stop together.
    """
    t = config.train
    precision = precision or resolve_precision(t, device)[0]
    seed_everything(seed)                                      # the same initial weights on every rank
    order_rng = torch.Generator().manual_seed(seed)            # the same epoch order on every rank
    if world.distributed:
        aug_rng = torch.Generator().manual_seed(seed_for(seed, world.rank, _AUGMENT_SEED))
        mixup_rng = np.random.default_rng(seed_for(seed, world.rank, _MIXUP_SEED))
    else:   # one process draws order and augmentation from one generator (single-process results stay put)
        aug_rng, mixup_rng = order_rng, np.random.default_rng(seed)
    model = build_classifier(config.model, config.data.channels, config.data.image_size, num_classes).to(device)
    model = precision.module(model)
    net = model
    if world.distributed:
        net = DistributedDataParallel(global_batchnorm(model, world),
                                      device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(seed_for(seed, world.rank, _DROPOUT_SEED))   # dropout masks differ per rank
    val_labels = (sets["val"].labels == positive).numpy()
    history, best, best_state, best_epoch, epoch = [], -1.0, None, 0, 0
    for stage in stages(config, sets["train"], num_classes):
        if best_state is not None:
            model.load_state_dict(best_state)
        optimiser = torch.optim.AdamW(model.parameters(), lr=stage.lr, weight_decay=t.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=stage.epochs)
        scaler, train, stale = precision.scaler(), stage.train, 0
        bar = progress(range(stage.epochs), desc=f"seed {seed}" + (f" {stage.name}" if stage.name != "train" else ""),
                       unit="epoch", disable=None if world.is_main else True)
        for _ in bar:
            epoch += 1
            net.train()
            order = (mixed_order(train, stage.oversample, stage.synthetic_fraction, t.batch_size, order_rng)
                     if stage.synthetic_fraction else epoch_order(train.labels, stage.oversample, order_rng))
            total, seen = 0.0, 0
            for start in range(0, len(order), t.batch_size):
                idx = order[start:start + t.batch_size]                # the global batch, the same on every rank
                if len(idx) < max(2, world.size):                      # batch norm needs two samples, each rank one
                    continue
                mine = idx[world.share(len(idx))]

                # Forward this rank's rows. Its loss is its part of the global batch's weighted mean
                # loss (exact also for a ragged last batch and unequal weights); one process: all of it.
                x = to_float(to_device(train.images[mine], device))   # (b, C, S, S) in [-1, 1]
                y = to_device(train.labels[mine], device)
                w = to_device(stage.weights[mine], device) / float(stage.weights[idx].double().sum().clamp(min=1e-12))
                if t.augment:
                    x = augment(x, aug_rng)
                x = precision.images(x)
                with precision.autocast():
                    loss = mixed_loss(net, x, y, w, t, aug_rng, mixup_rng)
                batch_loss = sum_over_ranks(loss.detach(), world)      # the global batch's loss, on every rank
                if not torch.isfinite(batch_loss):
                    raise TrainingDiverged(f"classifier loss became {batch_loss.item()} in epoch {epoch} (seed {seed}); "
                                           "try a lower train.lr")

                # Update weights. DDP averages gradients over ranks, so each rank scales its part by N.
                optimiser.zero_grad(set_to_none=True)
                scaler.scale(loss * world.size).backward()
                scaler.step(optimiser)
                scaler.update()
                total, seen = total + batch_loss.item() * len(idx), seen + len(idx)
            scheduler.step()

            # Select on val AUC: rank 0 scores, every rank follows its verdict.
            val_auc = None
            if world.is_main:
                val_auc = binary_metrics(val_labels, positive_scores(model, sets["val"].images, positive, device),
                                         0.5)["roc_auc"]
            val_auc = from_main(val_auc, world)
            history.append({"epoch": epoch, "stage": stage.name, "train_loss": total / max(seen, 1), "val_auc": val_auc})
            bar.set_postfix(loss=f"{total / max(seen, 1):.3f}", val_auc=f"{val_auc:.3f}")
            if val_auc > best:
                best, best_epoch, stale = val_auc, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if t.early_stopping_patience and stale >= t.early_stopping_patience:
                    break
    model.load_state_dict(best_state)
    model = model.to(memory_format=torch.contiguous_format)
    return (local_copy(model) if world.distributed else model), history, best_epoch


def train_classifier(config: ClassifierConfig, *, score_test: bool = True) -> Path:
    """Train one model per seed; returns the run folder.

    `score_test` False never reads the test split: the run is scored on validation alone, as every
    candidate of a choice must be. Under torchrun every rank calls this: all of them train, rank 0
    alone writes the folder and prints.
    """
    world, device = init_world(config.train.device)
    world.local_slice(config.train.batch_size)            # a global batch that does not split is refused here
    precision, compute = resolve_precision(config.train, device)
    splits = load_classifier_splits(config, show_progress=world.is_main, with_test=score_test)
    sets, names, positive = splits.sets, splits.names, splits.positive
    build_classifier(config.model, config.data.channels, config.data.image_size, len(names))   # fail before any folder
    stages(config, sets["train"], len(names))                                                  # likewise
    d, t = config.data, config.train
    if (d.synthetic_weight != 1 or t.finetune_real_epochs) and not sets["train"].synthetic.any() and world.is_main:
        print(f"note: {d.train_dir} holds no image marked synthetic (no augmented manifest.csv beside it, and no "
              "data.synthetic_dir), so data.synthetic_weight / train.finetune_real_epochs treat every image as real")
    counts = class_counts(sets, names)
    run_dir = None
    if world.is_main:
        run_dir = next_run_dir(Path(config.output.results_dir) / "classifiers" / config.output.name)
        atomic.write_text(run_dir / "config.yaml", to_yaml(config))
        compute = {"world_size": world.size, "backend": torch.distributed.get_backend() if world.distributed else None,
                   "batch_size_per_process": config.train.batch_size // world.size, **compute}   # what ran
        atomic.write_json(run_dir / "run_info.json",
                          run_info(config.train.seeds[0], str(device), {"counts": counts, "compute": compute}))
        if "note" in compute:
            print(compute["note"])
        print(f"{config.output.name}: {config.model.arch}, seeds {list(config.train.seeds)}, {device}"
              + (f" x {world.size} processes" if world.distributed else "") + "; "
              + ", ".join(f"{s} {c}" for s, c in counts.items()))
    run_dir = Path(from_main(str(run_dir) if run_dir else None, world))
    per_seed = []
    for seed in config.train.seeds:
        model, history, best_epoch = fit(config, sets, len(names), positive, seed, device, world=world, precision=precision)
        if world.is_main:
            if config.train.embedding_oversampling:     # EOS: the last layer retrained on oversampled features
                model, eos_info = embedding_oversample(model, config, sets, positive, seed, device)
                atomic.write_json(run_dir / f"seed_{seed}" / "eos.json", eos_info)
            per_seed.append(evaluate_fitted(config, sets, names, positive, seed, device, run_dir / f"seed_{seed}",
                                            model, history, best_epoch))
    if world.is_main:
        write_summary(run_dir, config, names, positive, counts, per_seed)
    shutdown(world)                                       # the others wait here until rank 0 has written
    return run_dir


def write_summary(run_dir: Path, config: ClassifierConfig, names: list[str], positive: int, counts: dict,
                  per_seed: list[dict]) -> None:
    """summary.json: the run's data, and the mean and std over seeds of every metric (evaluate.summarise)."""
    atomic.write_json(run_dir / "summary.json", {
        "name": config.output.name, "positive_class": names[positive], "class_names": names,
        "seeds": list(config.train.seeds), "data": {**to_dict(config.data), "counts": counts}, **summarise(per_seed)})


def score_on_test(trained: Path, config: ClassifierConfig) -> Path:
    """Score on test, once, the models of a run that was scored on validation alone (`train_classifier(...,
    score_test=False)`, a candidate of a choice); returns a new run folder of `config`.

    `config` must be the trained run's config but for `output.name`. Each seed's saved model, the one chosen
    on validation, is read; its threshold is chosen on validation as `train_classifier` chooses it, and test
    is read once. On the CPU, training the config again (same seeds, data and thread count) would draw the
    same models, so the run equals a retrained one; on CUDA, whose training is not bit-reproducible here, it
    scores the very models the choice was made on. The seed folders hold a trained run's files
    (training_curves.png and eos.json copied from the trained run).
    """
    recorded = yaml.safe_load((trained / "config.yaml").read_text())
    wanted = to_dict(config)
    if {**recorded, "output": {**recorded["output"], "name": wanted["output"]["name"]}} != wanted:
        raise ValueError(f"{trained} was trained with another config than the one to score on test")
    device = resolve_device(config.train.device)
    compute = resolve_precision(config.train, device)[1]      # cuDNN/TF32 as the run was scored, not inherited
    splits = load_classifier_splits(config)
    sets, names, positive = splits.sets, splits.names, splits.positive
    counts = class_counts(sets, names)
    run_dir = next_run_dir(Path(config.output.results_dir) / "classifiers" / config.output.name)
    write_run_record(run_dir, to_yaml(config), run_info(config.train.seeds[0], str(device), {
        "counts": counts, "compute": compute, "models_from": str(trained)}))
    per_seed = []
    for seed in config.train.seeds:
        source, out = trained / f"seed_{seed}", run_dir / f"seed_{seed}"
        model, record = load_classifier(source / CHECKPOINT_FILE, device)
        for name in ("training_curves.png", "eos.json"):
            if (source / name).is_file():
                atomic.write_bytes(out / name, (source / name).read_bytes())
        per_seed.append(evaluate_fitted(config, sets, names, positive, seed, device, out, model, None,
                                        record["best_epoch"]))
    write_summary(run_dir, config, names, positive, counts, per_seed)
    return run_dir
