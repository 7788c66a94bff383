"""Semi-supervised K+1 GAN (Salimans et al. 2016), and its baseline on the same labelled images.

`train_sgan(config)` draws `data.labeled_per_class` training images per class with `data.split_seed`
(the labelled subset; the rest of train is used without labels), then per training seed

    sgan      D (the `cnn` classifier, K logits, fake logit fixed at 0) learns cross-entropy on the
              labelled images + real/fake on unlabelled and generated ones; G learns feature matching;
    baseline  the same D learns cross-entropy on the labelled images alone, with the same number of
              steps per epoch, augmentation and early stopping;

keeps the D of the best validation accuracy (early stopping), and evaluates it on test. It writes a
classifier run folder, so `compare.py`, `pseudo_label.py` and `export.py` take it as it is:

    results/classifiers/<name>[_baseline]/run_NNN/
        config.yaml, run_info.json, labelled_subset.json, summary.json, val_accuracy.png
        seed_<s>/  metrics.json (per-epoch losses and val accuracy, val and test metrics), val_predictions.csv,
                   test_predictions.csv, test_probabilities.csv, training_curves.png, best_model.pth,
                   samples.png (sgan: G at the selected epoch)
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from training.classify.checkpoint import CHECKPOINT_FILE, save_classifier
from training.classify.config import (
    ClassifierConfig,
    ClassifierDataConfig,
    ClassifierTrainConfig,
)
from training.classify.data import LabelledSet, Splits, class_counts, load_splits
from training.classify.evaluate import summarise, write_predictions
from training.classify.metrics import binary_metrics, choose_threshold
from training.classify.scoring import class_probabilities
from training.core import atomic
from training.core.config import OutputConfig, to_dict, to_yaml
from training.core.distributed import (
    World,
    broadcast_module,
    from_main,
    global_batchnorm,
    global_mean,
    init_world,
    local_copy,
    seed_for,
    shutdown,
)
from training.core.errors import DataError, TrainingDiverged
from training.core.plotting import subplots
from training.core.precision import optimizer_step
from training.core.progress import progress
from training.core.run_info import next_run_dir, run_info, write_run_record
from training.core.runtime import seed_everything
from training.data.folders import to_float
from training.gan.diffaugment import diff_augment
from training.gan.plots import save_grid
from training.sgan.config import SGANConfig
from training.sgan.losses import feature_matching_loss, supervised_loss, unsupervised_loss
from training.sgan.networks import build_discriminator, build_generator, classifier_model, split_discriminator

SUBSET_FILE = "labelled_subset.json"


# ---------------------------------------------------------------------------------------------------------------
# Data and the labelled subset.

@dataclass(frozen=True)
class SemiSupervisedData:
    """The splits in memory, the class names, the positive class, and which train images keep their labels."""

    sets: dict[str, LabelledSet]
    names: list[str]
    positive: int
    labelled: np.ndarray        # indices into sets["train"], sorted
    unlabelled: np.ndarray      # the other train indices, sorted


def load_data(config: SGANConfig) -> Splits:
    """Train/val/test of `data.root` with one class list (training.classify.data, shared with the classifier)."""
    d = config.data
    root = Path(d.root)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (make it with training/prepare_data.py, "
                        "e.g. --source digits)")
    return load_splits({split: root / split for split in ("train", "val", "test")}, d.image_size, d.channels,
                       d.positive_class)


def choose_labelled(labels: torch.Tensor, names: list[str], per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of each class, drawn with `seed`; sorted.

    Class k's draw depends on (seed, k) and the order of its images (sorted file names) alone, so
    the baseline and the GAN, and every training seed, get the same subset.
    """
    labels = labels.numpy()
    chosen = []
    for k, name in enumerate(names):
        members = np.flatnonzero(labels == k)
        if len(members) < per_class:
            raise DataError(f"'data.labeled_per_class' = {per_class} but class '{name}' has only {len(members)} "
                            f"training images; use at most {len(members)}")
        chosen.append(np.random.default_rng([seed, k]).choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def split_labelled(config: SGANConfig) -> SemiSupervisedData:
    """Load the data and draw the labelled subset; the GAN also needs unlabelled images."""
    splits = load_data(config)
    sets, names, positive = splits.sets, splits.names, splits.positive
    labelled = choose_labelled(sets["train"].labels, names, config.data.labeled_per_class, config.data.split_seed)
    unlabelled = np.setdiff1d(np.arange(len(sets["train"].labels)), labelled)
    if config.train.method == "sgan" and len(unlabelled) < 2:
        raise DataError(f"'data.labeled_per_class' = {config.data.labeled_per_class} labels (almost) all of "
                        f"{len(labelled) + len(unlabelled)} training images: the GAN needs unlabelled images")
    return SemiSupervisedData(sets, names, positive, labelled, unlabelled)


def subset_record(config: SGANConfig, data: SemiSupervisedData) -> dict:
    """labelled_subset.json: how the subset was drawn, a digest of it, and every labelled file."""
    train = data.sets["train"]
    files = [{"path": train.paths[i], "class": data.names[int(train.labels[i])], "sha256": train.sha256[i]}
             for i in data.labelled]
    digest = hashlib.sha256("\n".join(sorted(f["sha256"] for f in files)).encode()).hexdigest()
    return {"labeled_per_class": config.data.labeled_per_class, "split_seed": config.data.split_seed,
            "train_dir": str(Path(config.data.root) / "train"), "labelled": len(data.labelled),
            "unlabelled": len(data.unlabelled), "sha256_of_labelled": digest, "files": files}


# ---------------------------------------------------------------------------------------------------------------
# Training one seed.

def cycle_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless batches of min(batch_size, n) indices into n items, reshuffled on every pass."""
    size, buffer = min(batch_size, n), torch.empty(0, dtype=torch.int64)
    while True:
        while len(buffer) < size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:size]
        buffer = buffer[size:]


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """Batches passed inside this block are normalised by their own statistics but leave the running ones alone.

    D sees generated images in training mode too; their statistics would otherwise enter the running
    averages that normalise real images at evaluation, and an evaluation-mode D would drift with G.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0                    # running = (1 - 0) * running + 0 * batch
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def train_step(D: nn.Module, G: nn.Module | None, opt_d: torch.optim.Optimizer, opt_g: torch.optim.Optimizer | None,
               x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor | None, t,
               world: World = World()) -> dict[str, torch.Tensor]:
    """One D update on a labelled batch (and, with G, an unlabelled and a generated one), then one G update.

    Images are float (B, C, S, S) in [-1, 1], already on D's device; `t` is the train section. Under
    torchrun they are this rank's rows; gradients are averaged and feature matching compares the
    global batch's means. Returns the step's losses (detached).
    """
    # Update D: cross-entropy on labelled images (+ real/fake on unlabelled and generated ones).
    loss_sup = supervised_loss(D(diff_augment(x_l, t.diffaugment)), y_l)
    loss_d = loss_sup
    if G is not None:
        x_u = diff_augment(x_u, t.diffaugment)
        z = torch.randn(len(x_u), G.z_dim, device=x_u.device)
        with torch.no_grad():
            x_f = G(z)
        logits_u = D(x_u)
        with frozen_batchnorm_statistics(D):
            logits_f = D(diff_augment(x_f, t.diffaugment))
        loss_unsup = unsupervised_loss(logits_u, logits_f)
        loss_d = loss_sup + t.unsupervised_weight * loss_unsup
    if not torch.isfinite(loss_d):
        raise TrainingDiverged(f"D loss became {loss_d.item()}; try a lower train.lr_d")
    optimizer_step(loss_d, opt_d, None, list(D.parameters()), world)
    if G is None:
        return {"supervised": loss_sup.detach()}

    # Update G: match the mean pooled D features of the unlabelled batch (feature matching).
    D_features, _ = split_discriminator(D)
    with torch.no_grad():
        real_features = D_features(x_u)                                        # (B, F)
    with frozen_batchnorm_statistics(D):
        fake_features = D_features(diff_augment(G(torch.randn_like(z)), t.diffaugment))
    loss_g = feature_matching_loss(real_features, fake_features, lambda x: global_mean(x, world))
    if not torch.isfinite(loss_g):
        raise TrainingDiverged(f"G loss became {loss_g.item()}; try a lower train.lr_g")
    optimizer_step(loss_g, opt_g, None, list(G.parameters()), world)
    return {"supervised": loss_sup.detach(), "unsupervised": loss_unsup.detach(), "feature_matching": loss_g.detach()}


def fit(config: SGANConfig, data: SemiSupervisedData, seed: int, device: torch.device,
        world: World = World()) -> tuple[nn.Module, nn.Module | None, list[dict], int]:
    """Train one seed; returns D at its best val accuracy, G of that epoch (sgan), the history and the epoch.

    Under torchrun every rank draws the same batches and takes its share of each; batch norm uses
    global-batch statistics; DiffAugment and latents come from per-rank seeds.
    """
    t, m, d = config.train, config.model, config.data
    seed_everything(seed)                                   # weights, DiffAugment and latents
    generator = torch.Generator().manual_seed(seed)         # batch order: the same on every rank
    D = global_batchnorm(build_discriminator(m, d.channels, d.image_size, len(data.names)), world).to(device)
    G, opt_g = None, None
    if t.method == "sgan":
        G = global_batchnorm(build_generator(m, d.channels, d.image_size), world).to(device)
        opt_g = torch.optim.Adam(G.parameters(), lr=t.lr_g, betas=t.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=t.lr_d, betas=t.betas)
    if world.distributed:
        for net in (D, G):
            if net is not None:
                broadcast_module(net, world)
        torch.manual_seed(seed_for(seed, world.rank))       # augmentation and latents: this rank's own
    train, val = data.sets["train"], data.sets["val"]
    x_lab, y_lab, x_unl = train.images[data.labelled], train.labels[data.labelled], train.images[data.unlabelled]
    # An epoch is one pass over the unlabelled images for both methods, so both take the same D steps.
    steps = math.ceil(max(len(x_unl), len(x_lab)) / t.batch_size)
    labelled_batches = cycle_batches(len(x_lab), t.batch_size, generator)
    history, best_epoch, best_state = [], 0, None
    bar = progress(range(1, t.epochs + 1), desc=f"{t.method} seed {seed}", unit="epoch",
                   disable=None if world.is_main else True)
    for epoch in bar:
        # Train one epoch.
        started, sums = time.perf_counter(), {}
        nets = [D] if G is None else [D, G]
        for net in nets:
            net.train()
        order = torch.randperm(len(x_unl), generator=generator)
        for step in range(steps):
            idx = next(labelled_batches)
            idx = idx[world.share(len(idx))]
            x_u = None
            if G is not None:
                batch = order[step * t.batch_size:(step + 1) * t.batch_size]
                batch = batch if len(batch) >= 2 * world.size else order[:t.batch_size]   # batch norm: two per rank
                x_u = to_float(x_unl[batch[world.share(len(batch))]]).to(device)
            try:
                losses = train_step(D, G, opt_d, opt_g, to_float(x_lab[idx]).to(device), y_lab[idx].to(device),
                                    x_u, t, world)
            except TrainingDiverged as err:
                raise TrainingDiverged(f"{err} (epoch {epoch}, seed {seed})") from None
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.item()

        # Validate; keep the best D (and the G of that epoch); stop after `patience` epochs without a better one.
        val_accuracy = None
        if world.is_main:         # rank 0 decides, every rank follows: they never disagree about stopping
            val_accuracy = float((class_probabilities(D, val.images, device).argmax(1) == val.labels.numpy()).mean())
        val_accuracy = from_main(val_accuracy, world)
        history.append({"epoch": epoch, **{f"loss_{k}": v / steps for k, v in sums.items()},
                        "val_accuracy": val_accuracy, "seconds": time.perf_counter() - started})
        bar.set_postfix(sup=f"{history[-1]['loss_supervised']:.3f}", val_acc=f"{val_accuracy:.3f}")
        if best_state is None or val_accuracy > history[best_epoch - 1]["val_accuracy"]:
            best_epoch, best_state = epoch, [copy.deepcopy(net.state_dict()) for net in nets]
        elif t.early_stopping_patience and epoch - best_epoch >= t.early_stopping_patience:
            break
    for net, state in zip(nets, best_state):
        net.load_state_dict(state)
        net.eval()
    if world.distributed:           # plain batch norm again, for evaluation and the saved classifier
        D, G = local_copy(D), None if G is None else local_copy(G)
    return D, G, history, best_epoch


# ---------------------------------------------------------------------------------------------------------------
# Evaluation and the run folder.

def multiclass_metrics(labels: np.ndarray, probs: np.ndarray, names: list[str]) -> dict:
    """K-way accuracy (argmax), per-class sensitivity (recall), one-vs-rest AUC per class and their mean."""
    predicted = probs.argmax(1)
    sensitivity, auc = {}, {}
    for k, name in enumerate(names):
        members = labels == k
        sensitivity[name] = float((predicted[members] == k).mean()) if members.any() else None
        auc[name] = float(roc_auc_score(members, probs[:, k])) if 0 < members.sum() < len(labels) else None
    defined = [v for v in auc.values() if v is not None]
    confusion = np.zeros((len(names), len(names)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    return {"accuracy": float((predicted == labels).mean()), "per_class_sensitivity": sensitivity,
            "macro_auc": float(np.mean(defined)) if defined else None, "per_class_auc": auc,
            "confusion": confusion.tolist()}


def checkpoint_config(config: SGANConfig, names: list[str], positive: int) -> ClassifierConfig:
    """The classifier config a `cnn` checkpoint of this D records, so load_classifier can rebuild it."""
    d, t = config.data, config.train
    root = Path(d.root)
    return ClassifierConfig(
        data=ClassifierDataConfig(train_dir=str(root / "train"), val_dir=str(root / "val"),
                                  test_dir=str(root / "test"), image_size=d.image_size, channels=d.channels,
                                  positive_class=names[positive]),
        model=classifier_model(config.model),
        train=ClassifierTrainConfig(epochs=t.epochs, batch_size=t.batch_size, lr=t.lr_d, weight_decay=0.0,
                                    seeds=t.seeds, device=t.device,
                                    early_stopping_patience=t.early_stopping_patience, augment=False),
        output=OutputConfig(name=config.run_name, results_dir=config.output.results_dir))


def write_probabilities(path: Path, data: LabelledSet, names: list[str], probs: np.ndarray) -> None:
    """sha256,path,label (class name), then P(class | real) per class."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sha256", "path", "label", *names])
    for sha, p, label, row in zip(data.sha256, data.paths, data.labels.tolist(), probs):
        writer.writerow([sha, p, names[label], *(repr(float(v)) for v in row)])
    atomic.write_text(path, buf.getvalue())


def evaluate_seed(config: SGANConfig, data: SemiSupervisedData, seed: int, device: torch.device, out: Path,
                  world: World = World()) -> dict | None:
    """Fit one seed, choose its binary threshold on val, evaluate on test, write its folder; returns metrics.json.

    Under torchrun every rank trains and rank 0 alone evaluates and writes (the others return None).
    """
    D, G, history, best_epoch = fit(config, data, seed, device, world)
    if not world.is_main:
        return None
    probs = {s: class_probabilities(D, data.sets[s].images, device) for s in ("val", "test")}
    labels = {s: data.sets[s].labels.numpy() for s in ("val", "test")}
    scores = {s: probs[s][:, data.positive] for s in ("val", "test")}
    binary = {s: (labels[s] == data.positive).astype(int) for s in ("val", "test")}
    threshold = choose_threshold(binary["val"], scores["val"], None)
    metrics = {"seed": seed, "method": config.train.method, "best_epoch": best_epoch, "epochs_run": len(history),
               "threshold": threshold, "threshold_rule": "youden",
               **{s: binary_metrics(binary[s], scores[s], threshold) for s in ("val", "test")},
               "multiclass": {s: multiclass_metrics(labels[s], probs[s], data.names) for s in ("val", "test")},
               "history": history}
    atomic.write_json(out / "metrics.json", metrics)
    for s in ("val", "test"):
        write_predictions(out / f"{s}_predictions.csv", data.sets[s], data.positive, scores[s])
    write_probabilities(out / "test_probabilities.csv", data.sets["test"], data.names, probs["test"])
    curves_png([history], [seed], [best_epoch], out / "training_curves.png", losses=True,
               title=f"{config.run_name}, seed {seed}")
    if G is not None:
        n = config.train.sample_grid_size
        z = torch.randn(n * n, config.model.z_dim, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            save_grid(G(z.to(device)), out / "samples.png", nrow=n)
    save_classifier(out / CHECKPOINT_FILE, D, checkpoint_config(config, data.names, data.positive), data.names,
                    data.positive, threshold=threshold, seed=seed, best_epoch=best_epoch,
                    trained_by=f"train_sgan.py ({config.train.method})", sgan_config=to_dict(config))
    return metrics


def curves_png(histories: list[list[dict]], seeds: list[int], best_epochs: list[int], path: Path, title: str,
               losses: bool = False) -> None:
    """Validation accuracy per epoch for each seed (dot: the selected epoch); with `losses`, the losses beside it."""
    fig, axes = subplots(1, 2 if losses else 1, figsize=(10 if losses else 5.5, 3.8), squeeze=False)
    ax_acc = axes[0, -1]
    for history, seed, best_epoch in zip(histories, seeds, best_epochs):
        epochs = [h["epoch"] for h in history]
        line, = ax_acc.plot(epochs, [h["val_accuracy"] for h in history], label=f"seed {seed}")
        ax_acc.plot(best_epoch, history[best_epoch - 1]["val_accuracy"], "o", color=line.get_color())
        if losses:
            for key in ("loss_supervised", "loss_unsupervised", "loss_feature_matching"):
                if key in history[0]:
                    label = key.removeprefix("loss_").replace("_", " ")
                    axes[0, 0].plot(epochs, [h[key] for h in history], label=label)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy", title=title)
    ax_acc.legend(loc="lower right")
    if losses:
        axes[0, 0].set(xlabel="epoch", ylabel="training loss (mean over epoch)", yscale="log")
        axes[0, 0].legend()
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")


def summarise_multiclass(per_seed: list[dict], names: list[str]) -> dict:
    """Mean and std over seeds of accuracy, macro AUC and each class's sensitivity, per split."""
    def stats(values: list) -> dict:
        known = [v for v in values if v is not None]
        return {"mean": float(np.mean(known)) if known else None, "std": float(np.std(known)) if known else None,
                "values": values}

    out = {}
    for split in ("val", "test"):
        rows = [m["multiclass"][split] for m in per_seed]
        out[split] = {"accuracy": stats([r["accuracy"] for r in rows]),
                      "macro_auc": stats([r["macro_auc"] for r in rows]),
                      "per_class_sensitivity": {n: stats([r["per_class_sensitivity"][n] for r in rows]) for n in names}}
    return out


def train_sgan(config: SGANConfig) -> Path | None:
    """Train one model per seed (K+1 GAN or baseline, by `train.method`); returns the run folder
    (under torchrun on rank 0; the other ranks return None)."""
    world, device = init_world(config.train.device)
    world.local_slice(config.train.batch_size)          # a global batch that does not split is refused here
    data = split_labelled(config)
    counts = class_counts(data.sets, data.names)
    subset = subset_record(config, data)
    run_dir = None
    if world.is_main:
        run_dir = next_run_dir(Path(config.output.results_dir) / "classifiers" / config.run_name)
        write_run_record(run_dir, to_yaml(config), run_info(config.train.seeds[0], str(device), {
            "method": config.train.method, "counts": counts, "processes": world.size,
            "labelled_subset": {k: v for k, v in subset.items() if k != "files"}}))
        atomic.write_json(run_dir / SUBSET_FILE, subset)
        what = "K+1 GAN" if config.train.method == "sgan" else "baseline (labelled images only)"
        print(f"{config.run_name}: {what}, {len(data.labelled)} labelled ({config.data.labeled_per_class} per class, "
              f"split seed {config.data.split_seed}) + {len(data.unlabelled)} unlabelled training images, "
              f"{len(data.names)} classes, seeds {list(config.train.seeds)}, {device} x {world.size}")
    run_dir = Path(from_main(str(run_dir) if run_dir else None, world))
    per_seed = [evaluate_seed(config, data, seed, device, run_dir / f"seed_{seed}", world) for seed in config.train.seeds]
    if not world.is_main:
        shutdown(world)
        return None
    curves_png([m["history"] for m in per_seed], list(config.train.seeds), [m["best_epoch"] for m in per_seed],
               run_dir / "val_accuracy.png", title=f"{config.run_name}: validation accuracy")
    summary = {"name": config.run_name, "method": config.train.method, "positive_class": data.names[data.positive],
               "class_names": data.names, "seeds": list(config.train.seeds),
               "data": {**to_dict(config.data), "counts": counts,
                        "labelled": len(data.labelled), "unlabelled": len(data.unlabelled),
                        "sha256_of_labelled": subset["sha256_of_labelled"]},
               "best_epochs": [m["best_epoch"] for m in per_seed],
               **summarise(per_seed), "multiclass": summarise_multiclass(per_seed, data.names)}
    atomic.write_json(run_dir / "summary.json", summary)
    shutdown(world)
    return run_dir
