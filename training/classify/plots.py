"""PNG figures of a classifier run: confusion matrix, ROC curve, training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from training.core import atomic
from training.core.plotting import subplots


def confusion_matrix_png(confusion: dict, positive_name: str, path: Path) -> None:
    matrix = np.array([[confusion["tn"], confusion["fp"]], [confusion["fn"], confusion["tp"]]])
    fig, ax = subplots(figsize=(4.2, 3.8))
    ax.imshow(matrix, cmap="Blues")
    labels = [f"not {positive_name}", positive_name]
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=labels, yticklabels=labels, xlabel="predicted", ylabel="true",
           title="test confusion matrix")
    for (i, j), n in np.ndenumerate(matrix):
        ax.text(j, i, str(n), ha="center", va="center", color="white" if n > matrix.max() / 2 else "black")
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")


def roc_png(labels: dict, scores: dict, threshold: float, path: Path, title: str) -> None:
    """ROC on val and test (those of `labels`), with the operating point chosen on val marked on each."""
    fig, ax = subplots(figsize=(5, 5))
    for split in labels:
        fpr, tpr, _ = roc_curve(labels[split], scores[split])
        ax.plot(fpr, tpr, label=f"{split} (AUC {roc_auc_score(labels[split], scores[split]):.3f})")
        predicted = scores[split] >= threshold
        positives = labels[split] == 1
        ax.plot(predicted[~positives].mean(), predicted[positives].mean(), "o", color=ax.lines[-1].get_color())
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"{title}\n(dot: threshold {threshold:.3f} from val)")
    ax.legend(loc="lower right")
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")


def training_curves_png(history: list[dict], best_epoch: int, path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_auc) = subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, [h["train_loss"] for h in history])
    ax_loss.set(xlabel="epoch", ylabel="training loss")
    ax_auc.plot(epochs, [h["val_auc"] for h in history])
    ax_auc.axvline(best_epoch, ls=":", color="grey", label=f"selected: epoch {best_epoch}")
    ax_auc.set(xlabel="epoch", ylabel="validation AUC")
    ax_auc.legend()
    for ax in (ax_loss, ax_auc):
        ax.grid(alpha=0.3)
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")
