"""Losses of the semi-supervised K+1 GAN (Salimans et al., "Improved Techniques for Training GANs", 2016).

D outputs K class logits l_1..l_K; the (K+1)-th, "fake", logit is fixed at 0. Writing
Z(x) = sum_k exp(l_k(x)), the probability that x is real is

    D(x) = Z / (Z + 1) = sigmoid(log Z),   log Z = logsumexp_k l_k

so the real/fake decision needs no extra output, and D is a K-class classifier as it stands.
Logits are (B, K); features are (B, F).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def real_logit(logits: torch.Tensor) -> torch.Tensor:
    """log Z = logsumexp of the K class logits, (B,): the logit of D(x) = P(x is real)."""
    return torch.logsumexp(logits, dim=1)


def supervised_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the K real classes for labelled images (the fake class has probability ~0 there)."""
    return F.cross_entropy(logits, labels)


def unsupervised_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-1/2 E[log D(x_real)] - 1/2 E[log(1 - D(G(z)))], from class logits of unlabelled and generated images."""
    # -log D = -log sigmoid(log Z) = softplus(-log Z);  -log(1 - D) = softplus(log Z)
    return 0.5 * (F.softplus(-real_logit(real_logits)).mean() + F.softplus(real_logit(fake_logits)).mean())


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor,
                          batch_mean: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.mean(dim=0)) -> torch.Tensor:
    """G's loss: squared distance between the batch means of D's intermediate features, mean over features.

    The real side is a target, not something G can move, so it is detached. `batch_mean` is the
    mean over the batch; data-parallel runs pass the mean over every process's rows.
    """
    return (batch_mean(real_features.detach()) - batch_mean(fake_features)).pow(2).mean()
