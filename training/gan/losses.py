"""GAN losses, found by name (`loss.name`).

Each loss is a pair of functions of D's raw outputs (logits or critic scores, shape (B,)): `d_loss(real,
fake)` is minimised by D, `g_loss(fake)` by G. `d_objective` and `g_objective` put a
batch's terms together (adversarial, InfoGAN, gradient penalty) for the training loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.core.registry import Registry
from training.gan.latents import LatentSpec, split_codes


@dataclass(frozen=True)
class GANLoss:
    """A loss as a pair of functions of D's raw outputs: `d_loss(real, fake)` for D, `g_loss(fake)` for G."""

    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


LOSSES = Registry("GAN loss", "loss.name")


def _mean(values: torch.Tensor) -> torch.Tensor:
    return values.mean()


@LOSSES.register("hinge")
class Hinge:
    """Hinge loss (Lim & Ye 2017; Miyato et al. 2018), the usual partner of spectral norm."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return _mean(F.relu(1 - real)) + _mean(F.relu(1 + fake))   # E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -_mean(fake)                                         # -E[D(G(z))]


@LOSSES.register("wasserstein")
class Wasserstein:
    """Wasserstein critic loss (Arjovsky et al. 2017); the gradient penalty is added by `d_objective`."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return _mean(fake) - _mean(real)                            # E[D(G(z))] - E[D(x)]  (+ gradient penalty)

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return -_mean(fake)                                         # -E[D(G(z))]


@LOSSES.register("bce")
class BCE:
    """The original GAN loss (Goodfellow et al. 2014) with the non-saturating generator loss."""

    @staticmethod
    def d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return _mean(F.softplus(-real)) + _mean(F.softplus(fake))   # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))

    @staticmethod
    def g_loss(fake: torch.Tensor) -> torch.Tensor:
        return _mean(F.softplus(-fake))                             # non-saturating: -log sigmoid(D(G(z)))


def gradient_penalty(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor,
                     labels: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat between real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(x_hat) if labels is None else discriminator(x_hat, labels)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()


def info_loss(spec: LatentSpec, predicted: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """InfoGAN's mutual-information bound as a loss (Chen et al. 2016): cross-entropy of Q's guess of
    the categorical code, plus the unit-variance Gaussian negative log-likelihood (half the squared
    error, constants dropped) of its guess of the continuous codes."""
    category, continuous = split_codes(spec, z)
    loss = predicted.new_zeros(())
    if category is not None:
        loss = loss + F.cross_entropy(predicted[:, :spec.info_categories].float(), category)
    if continuous is not None:
        loss = loss + 0.5 * (predicted[:, spec.info_categories:].float() - continuous).pow(2).sum(1).mean()
    return loss


class LeCamAnchors:
    """Moving averages of D's mean score on real and on fake images, the anchors of the LeCam term."""

    def __init__(self, decay: float = 0.99):
        self.decay, self.real, self.fake = decay, 0.0, 0.0

    def update(self, real_scores: torch.Tensor, fake_scores: torch.Tensor) -> None:
        self.real = self.decay * self.real + (1 - self.decay) * float(real_scores.mean())
        self.fake = self.decay * self.fake + (1 - self.decay) * float(fake_scores.mean())

    def state_dict(self) -> dict:
        return {"decay": self.decay, "real": self.real, "fake": self.fake}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.real, self.fake = state["decay"], state["real"], state["fake"]


def lecam_penalty(real_scores: torch.Tensor, fake_scores: torch.Tensor, anchors: LeCamAnchors) -> torch.Tensor:
    """LeCam regularisation (Tseng et al., CVPR 2021), made for GANs on limited data.

    Penalises real scores above the fakes' moving average and fake scores below the reals' moving
    average: E[relu(D(x) - a_fake)^2] + E[relu(a_real - D(G(z)))^2]. It keeps D's outputs from
    drifting apart as D memorises a small training set, which is what starves G of a useful signal.
    """
    return _mean(F.relu(real_scores - anchors.fake).pow(2)) + _mean(F.relu(anchors.real - fake_scores).pow(2))


def d_objective(D: torch.nn.Module, loss: GANLoss, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None,
                z: torch.Tensor, spec: LatentSpec, info_weight: float = 0.0, gp_weight: float = 0.0,
                lecam_weight: float = 0.0, anchors: LeCamAnchors | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """What D minimises on one batch: the adversarial loss, InfoGAN's term on the fakes, the gradient
    penalty and the LeCam term; returns it with D's per-image scores of the real and fake batch (detached, (B,))."""
    real_scores = D(real, labels)
    if spec.has_codes:
        fake_scores, predicted = D(fake, labels, codes=True)
        total = loss.d_loss(real_scores, fake_scores) + info_weight * info_loss(spec, predicted, z)
    else:
        fake_scores = D(fake, labels)
        total = loss.d_loss(real_scores, fake_scores)
    if lecam_weight > 0 and anchors is not None:
        total = total + lecam_weight * lecam_penalty(real_scores.float(), fake_scores.float(), anchors)
        anchors.update(real_scores.detach(), fake_scores.detach())
    if gp_weight > 0:          # in fp32 even under autocast: the double backward is precision-sensitive
        with torch.autocast(real.device.type, enabled=False):
            total = total + gp_weight * gradient_penalty(D, real.float(), fake.float(), labels)
    return total, real_scores.detach(), fake_scores.detach()


def g_objective(D: torch.nn.Module, loss: GANLoss, fake: torch.Tensor, labels: torch.Tensor | None, z: torch.Tensor,
                spec: LatentSpec, info_weight: float = 0.0) -> torch.Tensor:
    """What G minimises on one batch: the adversarial loss, plus InfoGAN's term."""
    if spec.has_codes:
        logits, predicted = D(fake, labels, codes=True)
        return loss.g_loss(logits) + info_weight * info_loss(spec, predicted, z)
    return loss.g_loss(D(fake, labels))
