"""Exponential moving average of the generator's weights.

Samples, metrics and the saved generator use the EMA copy: it averages out the oscillation of
adversarial training and gives visibly cleaner, more stable images than the raw G.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, rampup_steps: int = 0):
        self.decay, self.rampup_steps = decay, rampup_steps
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self, step: int) -> float:
        """Ramp the decay up from 0 over the first steps, so early weights do not linger."""
        if self.rampup_steps <= 0:
            return self.decay
        return min(self.decay, (1 + step) / (10 + step) if step < self.rampup_steps else self.decay)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = self.current_decay(step)
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):   # batch-norm running statistics
            ema_b.copy_(b)
