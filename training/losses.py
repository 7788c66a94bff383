"""GAN losses, found by name (`loss.name`).

Each loss is a pair of functions of D's raw outputs (logits or critic scores, shape (B,)):
`d_loss(real, fake)` is minimised by D, `g_loss(fake)` by G.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class GANLoss:
    d_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    g_loss: Callable[[torch.Tensor], torch.Tensor]


def hinge_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()   # E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))]


def hinge_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()                                         # -E[D(G(z))]


def wasserstein_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return fake.mean() - real.mean()                            # E[D(G(z))] - E[D(x)]  (+ gradient penalty)


def wasserstein_g(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()                                         # -E[D(G(z))]


def bce_d(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real).mean() + F.softplus(fake).mean()   # -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))


def bce_g(fake: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake).mean()                             # non-saturating: -log sigmoid(D(G(z)))


LOSSES: dict[str, GANLoss] = {
    "hinge": GANLoss(hinge_d, hinge_g),
    "wasserstein": GANLoss(wasserstein_d, wasserstein_g),
    "bce": GANLoss(bce_d, bce_g),
}


def gradient_penalty(discriminator: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): E[(||grad_x D(x_hat)||_2 - 1)^2] at x_hat between real and fake."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(discriminator(x_hat).sum(), x_hat, create_graph=True)
    return (grad.flatten(1).norm(2, dim=1) - 1).pow(2).mean()
