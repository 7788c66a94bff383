"""Training and evaluating a classifier over several seeds, for the baseline-vs-augmented question.

`train_classifier(config)` writes one auto-numbered run folder (never overwritten):

    results/classifiers/<name>/run_NNN/
        config.yaml, run_info.json, summary.json (mean and std over seeds of every metric)
        seed_<s>/  metrics.json (val and test), val_predictions.csv, test_predictions.csv,
                   classification_report.txt, confusion_matrix.png, roc_curve.png, training_curves.png,
                   model_info.txt, best_model.pth

The model of each seed is selected on validation AUC (early stopping), its decision threshold is
chosen on validation (Youden's J or a target sensitivity), and only then is test touched.

Under `torchrun --nproc_per_node N` the same code runs data-parallel (training/core/distributed.py): every
rank draws the same epoch order, takes its slice of each global batch, and DDP averages gradients, so N
processes take the steps one process would take with the whole batch; rank 0 alone writes the run folder.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import classification_report
from torch.nn.parallel import DistributedDataParallel

from training.core import atomic
from training.classify.config import ClassifierConfig, ClassifierTrainConfig
from training.core.config import to_dict, to_yaml
from training.data.folders import list_classes, list_images, to_float
from training.core.distributed import (World, from_main, global_batchnorm, init_world, local_copy, seed_for, shutdown,
                                  sum_over_ranks)
from training.core.errors import DataError, TrainingDiverged
from training.classify.metrics import METRICS, binary_metrics, choose_threshold
from training.data.images import pixel_sha256, read_image, resize, to_channels
from training.classify.networks import build_classifier
from training.core.precision import Precision, resolve_precision, to_device
from training.core.progress import progress
from training.core.run_info import run_info
from training.core.runtime import seed_everything

CHECKPOINT_FORMAT = "medgan-classifier/1"

# Purposes of the per-rank seeds, seed_for(seed, rank, purpose): distinct streams for distinct draws.
_AUGMENT_SEED, _MIXUP_SEED, _DROPOUT_SEED = 1, 2, 3


@dataclass(frozen=True)
class LabelledSet:
    """One split in memory: uint8 images (N, C, S, S), labels (N,), and each file's path and pixel hash."""

    images: torch.Tensor
    labels: torch.Tensor
    paths: list[str]
    sha256: list[str]
    sizes: set[int]          # the original image sizes found (before resizing)


def load_labelled(split_dir: str | Path, classes: list[str], image_size: int, channels: int) -> LabelledSet:
    images, labels, paths, hashes, sizes = [], [], [], [], set()
    for label, name in enumerate(classes):
        folder = Path(split_dir) / name
        if not folder.is_dir():
            raise DataError(f"class folder missing: {folder}")
        for path in list_images(folder):
            pixels = read_image(path)
            hashes.append(pixel_sha256(pixels))     # of the file's pixels, as in manifest.csv
            sizes.add(min(pixels.shape[:2]))
            images.append(resize(to_channels(pixels, channels, path), image_size))
            labels.append(label)
            paths.append(str(path))
    tensor = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return LabelledSet(tensor, torch.tensor(labels), paths, hashes, sizes)


def with_synthetic(train: LabelledSet, synthetic_dir: str, names: list[str], image_size: int, channels: int) -> LabelledSet:
    """`train` plus the images of a synthetic folder's manifest, labelled by their recorded class."""
    from training.data.augmented_set import read_synthetic

    images = read_synthetic([synthetic_dir])[0]
    unknown = sorted({img.class_name for img in images} - set(names))
    if unknown:
        raise DataError(f"{synthetic_dir} holds class '{unknown[0]}', which is not a class of the training set")
    if not images:
        raise DataError(f"{synthetic_dir} lists no images")
    pixels = [read_image(img.path) for img in images]
    stacked = torch.from_numpy(np.stack([resize(to_channels(x, channels, img.path), image_size)
                                         for x, img in zip(pixels, images)])).permute(0, 3, 1, 2)
    return LabelledSet(torch.cat([train.images, stacked]),
                       torch.cat([train.labels, torch.tensor([names.index(img.class_name) for img in images])]),
                       train.paths + [str(img.path) for img in images], train.sha256 + [img.sha256 for img in images],
                       train.sizes | {min(x.shape[:2]) for x in pixels})


def load_splits(config: ClassifierConfig, *, show_progress: bool = True) -> tuple[dict[str, LabelledSet], list[str], int]:
    """Train/val/test with one class list; returns the sets, class names and the positive label."""
    d = config.data
    classes = {split: list_classes(getattr(d, f"{split}_dir")) for split in ("train", "val", "test")}
    if not classes["train"] == classes["val"] == classes["test"]:
        raise DataError("train, val and test have different class folders: "
                        + "; ".join(f"{s}: {', '.join(c)}" for s, c in classes.items()))
    names = classes["train"]
    if d.positive_class not in names:
        raise DataError(f"'data.positive_class' = {d.positive_class} is not a class of {d.train_dir} "
                        f"(classes: {', '.join(names)})")
    sets = {split: load_labelled(getattr(d, f"{split}_dir"), names, d.image_size, d.channels)
            for split in progress(("train", "val", "test"), desc="loading images", unit="split",
                                  disable=None if show_progress else True)}
    if d.synthetic_dir:
        sets["train"] = with_synthetic(sets["train"], d.synthetic_dir, names, d.image_size, d.channels)
    positive = names.index(d.positive_class)
    for split in ("val", "test"):
        present = set(sets[split].labels.tolist())
        if len(present) < 2:
            raise DataError(f"the {split} set holds only class '{names[present.pop()]}': AUC is undefined, so "
                            "models cannot be selected or compared; it needs images of both classes")
    if len(sets["train"].sizes) > 1 and min(sets["train"].sizes) < d.image_size:
        raise DataError(f"train images come in sizes {sorted(sets['train'].sizes)} px and data.image_size is "
                        f"{d.image_size}: upsampling only some of them (e.g. synthetic ones) would let the classifier "
                        f"learn 'blurry means {d.positive_class}'; set data.image_size <= {min(sets['train'].sizes)}")
    return sets, names, positive


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


def loss_weights(labels: torch.Tensor, mode: str, num_classes: int) -> torch.Tensor | None:
    if mode == "none":
        return None
    counts = torch.bincount(labels, minlength=num_classes).float()
    return len(labels) / (num_classes * counts.clamp(min=1))


@torch.no_grad()
def positive_scores(model: torch.nn.Module, images: torch.Tensor, positive: int, device: torch.device,
                    batch_size: int = 256) -> np.ndarray:
    """P(positive class) for uint8 images, in eval mode (fp32, whatever the training precision)."""
    model.eval()
    probs = [torch.softmax(model(to_float(to_device(images[i:i + batch_size], device))), 1)[:, positive].cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(probs).numpy().astype(np.float64)


def mixed_loss(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None,
               t: ClassifierTrainConfig, generator: torch.Generator, mixup_rng: np.random.Generator) -> torch.Tensor:
    """Cross-entropy of one batch (weighted mean over its images), with mixup when train.mixup_alpha > 0."""
    if t.mixup_alpha <= 0:
        return F.cross_entropy(net(x), y, weight=weights, label_smoothing=t.label_smoothing)
    lam = float(mixup_rng.beta(t.mixup_alpha, t.mixup_alpha))
    perm = torch.randperm(len(y), generator=generator).to(x.device)
    logits = net(lam * x + (1 - lam) * x[perm])
    return lam * F.cross_entropy(logits, y, weight=weights, label_smoothing=t.label_smoothing) + \
        (1 - lam) * F.cross_entropy(logits, y[perm], weight=weights, label_smoothing=t.label_smoothing)


def fit(config: ClassifierConfig, sets: dict[str, LabelledSet], num_classes: int, positive: int, seed: int,
        device: torch.device, *, world: World = World(), precision: Precision | None = None
        ) -> tuple[torch.nn.Module, list[dict], int]:
    """Train one seed; returns the model with the best val AUC, the history, and its epoch.

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
    else:   # one process draws order and augmentation from one generator, as before: the same numbers
        aug_rng, mixup_rng = order_rng, np.random.default_rng(seed)
    model = build_classifier(config.model, config.data.channels, config.data.image_size, num_classes).to(device)
    model = precision.module(model)
    net = model
    if world.distributed:
        net = DistributedDataParallel(global_batchnorm(model, world),
                                      device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(seed_for(seed, world.rank, _DROPOUT_SEED))   # dropout masks differ per rank
    optimiser = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=t.epochs)
    scaler = precision.scaler()
    train = sets["train"]
    class_weights = loss_weights(train.labels, t.class_weights, num_classes)
    weights = class_weights.to(device) if class_weights is not None else None
    weight_sum = (lambda y: float(class_weights[y].double().sum())) if class_weights is not None else len
    val_labels = (sets["val"].labels == positive).numpy()
    history, best, best_state, best_epoch, stale = [], -1.0, None, 0, 0
    bar = progress(range(1, t.epochs + 1), desc=f"seed {seed}", unit="epoch", disable=None if world.is_main else True)
    for epoch in bar:
        net.train()
        order, total, seen = epoch_order(train.labels, t.oversample, order_rng), 0.0, 0
        for start in range(0, len(order), t.batch_size):
            idx = order[start:start + t.batch_size]                # the global batch, the same on every rank
            if len(idx) < max(2, world.size):                      # batch norm needs two samples, each rank one
                continue
            mine = idx[world.share(len(idx))]

            # Forward this rank's rows. Its loss is its share of the global batch's weighted mean loss
            # (exact also for a ragged last batch and class weights); one process: share = 1.
            x = to_float(to_device(train.images[mine], device))   # (b, C, S, S) in [-1, 1]
            y = to_device(train.labels[mine], device)
            if t.augment:
                x = augment(x, aug_rng)
            x = precision.images(x)
            share = weight_sum(train.labels[mine]) / weight_sum(train.labels[idx])
            with precision.autocast():
                loss = mixed_loss(net, x, y, weights, t, aug_rng, mixup_rng) * share
            batch_loss = sum_over_ranks(loss.detach(), world)      # the global batch's loss, on every rank
            if not torch.isfinite(batch_loss):
                raise TrainingDiverged(f"classifier loss became {batch_loss.item()} in epoch {epoch} (seed {seed}); "
                                       "try a lower train.lr")

            # Update weights. DDP averages gradients over ranks, so each rank scales its share by N.
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss * world.size).backward()
            scaler.step(optimiser)
            scaler.update()
            total, seen = total + batch_loss.item() * len(idx), seen + len(idx)
        scheduler.step()

        # Select on val AUC: rank 0 scores, every rank follows its verdict.
        val_auc = None
        if world.is_main:
            val_auc = binary_metrics(val_labels, positive_scores(model, sets["val"].images, positive, device), 0.5)["roc_auc"]
        val_auc = from_main(val_auc, world)
        history.append({"epoch": epoch, "train_loss": total / max(seen, 1), "val_auc": val_auc})
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


def next_run_dir(root: Path) -> Path:
    """results/classifiers/<name>/run_NNN: the next free number, created at once (never reused)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"run_(\d+)", p.name))]
    number = max(taken, default=-1) + 1
    while True:
        path = root / f"run_{number:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:        # another process took it
            number += 1


def write_predictions(path: Path, data: LabelledSet, positive: int, scores: np.ndarray) -> None:
    """sha256,path,label,score per image; label 1 = positive class; scores at full precision (repr)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sha256", "path", "label", "score"])
    for sha, p, label, score in zip(data.sha256, data.paths, data.labels.tolist(), scores):
        writer.writerow([sha, p, int(label == positive), repr(float(score))])
    atomic.write_text(path, buf.getvalue())


def evaluate_fitted(config: ClassifierConfig, sets: dict[str, LabelledSet], names: list[str], positive: int,
                    seed: int, device: torch.device, out: Path, model: torch.nn.Module, history: list[dict],
                    best_epoch: int) -> dict:
    """After `fit`: the threshold on val, test metrics, the seed's folder; returns metrics.json."""
    from training.classify import plots

    scores = {s: positive_scores(model, sets[s].images, positive, device) for s in ("val", "test")}
    labels = {s: (sets[s].labels == positive).numpy().astype(int) for s in ("val", "test")}
    threshold = choose_threshold(labels["val"], scores["val"], config.train.target_sensitivity)
    metrics = {"seed": seed, "best_epoch": best_epoch, "threshold": threshold,
               "threshold_rule": "target_sensitivity" if config.train.target_sensitivity is not None else "youden",
               **{s: binary_metrics(labels[s], scores[s], threshold) for s in ("val", "test")}}
    atomic.write_json(out / "metrics.json", metrics)
    for s in ("val", "test"):
        write_predictions(out / f"{s}_predictions.csv", sets[s], positive, scores[s])
    pos_name = names[positive]
    report = classification_report(labels["test"], (scores["test"] >= threshold).astype(int), labels=[0, 1],
                                   target_names=[f"not {pos_name}", pos_name], digits=3, zero_division=0)
    atomic.write_text(out / "classification_report.txt",
                      f"test set, threshold {threshold:.4f} chosen on validation\n\n{report}")
    plots.confusion_matrix_png(metrics["test"]["confusion"], pos_name, out / "confusion_matrix.png")
    plots.roc_png(labels, scores, threshold, out / "roc_curve.png", title=f"{config.output.name}, seed {seed}")
    plots.training_curves_png(history, best_epoch, out / "training_curves.png")
    atomic.write_text(out / "model_info.txt", model_info(config, model, sets, names))
    atomic.torch_save({"format": CHECKPOINT_FORMAT, "state_dict": {k: v.cpu() for k, v in model.state_dict().items()},
                       "config": to_dict(config), "class_names": names, "positive_class": pos_name,
                       "threshold": threshold, "seed": seed, "best_epoch": best_epoch}, out / "best_model.pth")
    return metrics


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict]:
    """A classifier saved by `evaluate_fitted` (best_model.pth), in eval mode, and its record."""
    from training.gan.checkpoint import read_record
    from training.core.config import from_dict

    record = read_record(Path(path), CHECKPOINT_FORMAT, "classifier", "best_model.pth from train_classifier.py")
    config = from_dict(ClassifierConfig, record["config"], source=str(path))
    model = build_classifier(config.model, config.data.channels, config.data.image_size, len(record["class_names"]),
                             load_pretrained=False)
    model.load_state_dict(record["state_dict"])
    return model.to(device).eval(), record


def class_counts(sets: dict[str, LabelledSet], names: list[str]) -> dict[str, dict[str, int]]:
    """Images per class in each split, e.g. {'train': {'benign': 2000, 'malignant': 200}, ...}."""
    return {s: {n: int((d.labels == i).sum()) for i, n in enumerate(names)} for s, d in sets.items()}


def model_info(config: ClassifierConfig, model: torch.nn.Module, sets: dict[str, LabelledSet], names: list[str]) -> str:
    counts = class_counts(sets, names)
    return (f"architecture: {config.model.arch}\nparameters: {sum(p.numel() for p in model.parameters()):,}\n"
            f"input: {config.data.channels} x {config.data.image_size} x {config.data.image_size}\n"
            f"hyper-parameters:\n{to_yaml(config.train)}"
            f"data: train {config.data.train_dir}, val {config.data.val_dir}, test {config.data.test_dir}\n"
            + "".join(f"  {s}: {c}\n" for s, c in counts.items())
            + f"\nmodel:\n{model}\n")


def summarise(per_seed: list[dict]) -> dict:
    """Mean and std (over seeds) of every metric, per split."""
    out = {}
    for split in ("val", "test"):
        out[split] = {}
        for name in METRICS:
            values = [m[split][name] for m in per_seed]
            known = [v for v in values if v is not None]
            out[split][name] = {"mean": float(np.mean(known)) if known else None,
                                "std": float(np.std(known)) if known else None, "values": values}
    return out


def train_classifier(config: ClassifierConfig) -> Path:
    """Train one model per seed; returns the run folder.

    Under torchrun every rank calls this: all of them train, rank 0 alone writes the folder and prints.
    """
    world, device = init_world(config.train.device)
    world.local_slice(config.train.batch_size)            # a global batch that does not split is refused here
    precision, compute = resolve_precision(config.train, device)
    sets, names, positive = load_splits(config, show_progress=world.is_main)
    build_classifier(config.model, config.data.channels, config.data.image_size, len(names))   # fail before any folder
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
            per_seed.append(evaluate_fitted(config, sets, names, positive, seed, device, run_dir / f"seed_{seed}",
                                            model, history, best_epoch))
    if world.is_main:
        summary = {"name": config.output.name, "positive_class": names[positive], "class_names": names,
                   "seeds": list(config.train.seeds), "data": {**to_dict(config.data), "counts": counts},
                   **summarise(per_seed)}
        atomic.write_json(run_dir / "summary.json", summary)
    shutdown(world)                                       # the others wait here until rank 0 has written
    return run_dir
