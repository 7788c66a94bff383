"""Scoring a fitted classifier: the threshold on validation, then test once; the seed's files; the summary.

The model of each seed is selected on validation (early stopping), its decision threshold is chosen
on validation (Youden's J or a target sensitivity), and only then is test touched. A second threshold,
the lowest keeping validation specificity >= PRIMARY_SPECIFICITY, gives the primary metric of comparisons
(SPEC90_METRICS); it does not replace the decision threshold.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import classification_report

from training.classify import plots
from training.classify.checkpoint import CHECKPOINT_FILE, save_classifier
from training.classify.config import ClassifierConfig
from training.classify.data import LabelledSet, class_counts
from training.classify.metrics import (
    METRICS,
    PRIMARY_SPECIFICITY,
    SPEC90_METRICS,
    binary_metrics,
    choose_threshold,
    spec90_metrics,
    specificity_threshold,
)
from training.classify.scoring import positive_scores
from training.core import atomic
from training.core.config import to_yaml


def write_predictions(path: Path, data: LabelledSet, positive: int, scores: np.ndarray) -> None:
    """sha256,path,label,score per image; label 1 = positive class; scores at full precision (repr)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["sha256", "path", "label", "score"])
    for sha, p, label, score in zip(data.sha256, data.paths, data.labels.tolist(), scores):
        writer.writerow([sha, p, int(label == positive), repr(float(score))])
    atomic.write_text(path, buf.getvalue())


def evaluate_fitted(config: ClassifierConfig, sets: dict[str, LabelledSet], names: list[str], positive: int,
                    seed: int, device: torch.device, out: Path, model: torch.nn.Module, history: list[dict] | None,
                    best_epoch: int) -> dict:
    """After `fit`: the threshold on val, test metrics, the seed's folder; returns metrics.json.

    Without a test set in `sets` (a candidate of a choice made on validation), the seed is scored on
    val alone and the test-only files (classification report, confusion matrix) are not written. Without
    a `history` (a saved model scored again) no training curves are drawn.
    """
    scored = [s for s in ("val", "test") if s in sets]
    scores = {s: positive_scores(model, sets[s].images, positive, device) for s in scored}
    labels = {s: (sets[s].labels == positive).numpy().astype(int) for s in scored}
    threshold = choose_threshold(labels["val"], scores["val"], config.train.target_sensitivity)
    threshold_spec90 = specificity_threshold(labels["val"], scores["val"], PRIMARY_SPECIFICITY)
    metrics = {"seed": seed, "best_epoch": best_epoch, "threshold": threshold,
               "threshold_rule": "target_sensitivity" if config.train.target_sensitivity is not None else "youden",
               "threshold_spec90": threshold_spec90,
               **{s: {**binary_metrics(labels[s], scores[s], threshold),
                      **spec90_metrics(labels[s], scores[s], threshold_spec90)} for s in scored}}
    atomic.write_json(out / "metrics.json", metrics)
    for s in scored:
        write_predictions(out / f"{s}_predictions.csv", sets[s], positive, scores[s])
    pos_name = names[positive]
    if "test" in sets:
        report = classification_report(labels["test"], (scores["test"] >= threshold).astype(int), labels=[0, 1],
                                       target_names=[f"not {pos_name}", pos_name], digits=3, zero_division=0)
        atomic.write_text(out / "classification_report.txt",
                          f"test set, threshold {threshold:.4f} chosen on validation\n\n{report}")
        plots.confusion_matrix_png(metrics["test"]["confusion"], pos_name, out / "confusion_matrix.png")
    plots.roc_png(labels, scores, threshold, out / "roc_curve.png", title=f"{config.output.name}, seed {seed}")
    if history is not None:
        plots.training_curves_png(history, best_epoch, out / "training_curves.png")
    atomic.write_text(out / "model_info.txt", model_info(config, model, sets, names))
    save_classifier(out / CHECKPOINT_FILE, model, config, names, positive, threshold=threshold, seed=seed,
                    best_epoch=best_epoch)
    return metrics


def model_info(config: ClassifierConfig, model: torch.nn.Module, sets: dict[str, LabelledSet], names: list[str]) -> str:
    counts = class_counts(sets, names)
    return (f"architecture: {config.model.arch}\nparameters: {sum(p.numel() for p in model.parameters()):,}\n"
            f"input: {config.data.channels} x {config.data.image_size} x {config.data.image_size}\n"
            f"hyper-parameters:\n{to_yaml(config.train)}"
            f"data: train {config.data.train_dir}, val {config.data.val_dir}, test {config.data.test_dir}\n"
            + "".join(f"  {s}: {c}\n" for s, c in counts.items())
            + f"\nmodel:\n{model}\n")


def summarise(per_seed: list[dict]) -> dict:
    """Mean and std (over seeds) of every metric, per split.

    SPEC90_METRICS are summarised only where the seeds hold them: other trainers (the semi-supervised
    GAN's) share this summary but do not compute them.
    """
    out = {}
    for split in (s for s in ("val", "test") if s in per_seed[0]):
        out[split] = {}
        for name in METRICS + SPEC90_METRICS:
            if name not in METRICS and not any(name in m[split] for m in per_seed):
                continue
            values = [m[split].get(name) for m in per_seed]
            known = [v for v in values if v is not None]
            out[split][name] = {"mean": float(np.mean(known)) if known else None,
                                "std": float(np.std(known)) if known else None, "values": values}
    return out
