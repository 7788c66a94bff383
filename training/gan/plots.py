"""PNG outputs people would rather look at than read: sample grids and training curves."""

from __future__ import annotations

from pathlib import Path

import torch

from training.core import atomic
from training.core.plotting import subplots


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> None:
    """Save float images in [-1, 1], (N, C, H, W), as one PNG grid."""
    from torchvision.utils import save_image  # here: importing torchvision costs about a second per process

    with atomic.atomic_path(path) as tmp:
        save_image(images.detach().cpu(), tmp, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2,
                   format="png")


def plot_losses(history: list[dict], path: str | Path, title: str) -> None:
    """Losses, and D's mean raw score on real and fake images (with the augmentation probability when it adapts).

    The scores say whether D discriminates at all: with the hinge loss, real and fake both near 0 and a
    D loss pinned at 2 mean D gives G no signal.
    """
    fig, (ax_loss, ax_score) = subplots(1, 2, figsize=(11, 4))
    epochs = [h["epoch"] for h in history]
    ax_loss.plot(epochs, [h["d_loss"] for h in history], label="D loss")
    ax_loss.plot(epochs, [h["g_loss"] for h in history], label="G loss")
    ax_loss.set(xlabel="epoch", ylabel="loss (mean over epoch)", title=title)
    if "d_real" in history[0]:
        ax_score.plot(epochs, [h["d_real"] for h in history], label="D(real)")
        ax_score.plot(epochs, [h["d_fake"] for h in history], label="D(fake)")
        ax_score.set(xlabel="epoch", ylabel="mean D score (raw)", title="does D discriminate?")
        if any(h.get("augment_p", 1.0) not in (0.0, 1.0) for h in history):
            twin = ax_score.twinx()
            twin.plot(epochs, [h["augment_p"] for h in history], color="grey", ls="--", label="augment p")
            twin.set(ylabel="augmentation probability p", ylim=(0, 1))
            twin.legend(loc="lower right")
    for ax in (ax_loss, ax_score):
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")


def plot_fidelity(history: list[dict], path: str | Path, title: str) -> None:
    epochs = [h["epoch"] for h in history]
    fig, (ax_fid, ax_kid, ax_screen) = subplots(1, 3, figsize=(15, 4))
    per_class = history[-1].get("per_class")        # a conditional GAN: the mean, and each class's FID
    ax_fid.plot(epochs, [h["fid"] for h in history], marker="o", label="mean over classes" if per_class else None)
    for name in per_class or []:
        fids = [h.get("per_class", {}).get(name, {}).get("fid") for h in history]
        ax_fid.plot(epochs, [float("nan") if f is None else f for f in fids], lw=1, alpha=0.7, label=name)
    if per_class:
        ax_fid.legend()
    ax_fid.set(xlabel="epoch", ylabel=f"FID ({history[-1]['feature_extractor']} features)", title=title)
    kid = [(e, h["kid_mean"], h["kid_std"]) for e, h in zip(epochs, history) if h["kid_mean"] is not None]
    if kid:
        e, m, s = zip(*kid)
        ax_kid.errorbar(e, m, yerr=s, marker="o", capsize=3)
    ax_kid.set(xlabel="epoch", ylabel="KID", title="KID (mean +- std over subsets)")
    # The checkpoint screen's two numbers: fine detail should reach 1 (real), detectability fall to 0.5.
    ax_screen.plot(epochs, [h.get("fine_detail_ratio", float("nan")) for h in history], marker="o",
                   label="fine detail (high-frequency energy / real)")
    ax_screen.plot(epochs, [h.get("detectability_auc", float("nan")) for h in history], marker="s",
                   label="detectability AUC")
    ax_screen.axhline(1.0, color="grey", lw=0.8, ls=":")
    ax_screen.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_screen.set(xlabel="epoch", title="checkpoint screen (targets: 1 and 0.5)")
    ax_screen.legend(fontsize=8)
    for ax in (ax_fid, ax_kid, ax_screen):
        ax.grid(alpha=0.3)
    atomic.save_figure(fig, path, dpi=100, bbox_inches="tight")
