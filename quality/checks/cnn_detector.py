"""A small convolutional network that tells two image sets apart, scored out of fold.

The detectability check's strongest view (quality.checks.detectability). A linear model on pixels or
on a domain encoder's features misses what a person sees at a glance: thin strokes that one set has
and the other lacks (the demo's hairs), soft edges where the real images are crisp, texture a
generator has not learnt. The network sees each image beside its high-pass residual (the image minus
its 5x5 local mean, amplified), where thin strokes and fine texture stand out from the slow changes
of skin tone or illumination; convolutions with a global max pool look for such a pattern anywhere
in the image, and a global mean pool adds how much of it there is. On real demo images against
images rendered without hairs (a set at most ~0.78 can separate: 45 % of real ones have none), one
draw of 200 per set, the residual took the out-of-fold AUC from 0.57 to 0.74 at 30 epochs
(bench/bench_qa_calibration.py repeats that comparison over 20 draws).

Each of `FOLDS` folds trains a fresh network on the other folds' images and scores its own, so every
image is scored by a network that never saw it (a classifier two-sample test, Lopez-Paz & Oquab, ICLR
2017). Both sides go through the same path: [0, 1] pixels scaled to [-1, 1], random horizontal and
vertical flips while training, nothing else, so the only thing that can separate them is the images.

Seeded: the folds, the initial weights, the batch order and the flips all follow from `seed`, on
every run with the same thread count. The global random state is left as it was.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold
from torch import nn

FOLDS = 5
EPOCHS = 30           # passes over a fold's training images (docs/user_guide.md#thresholds-detectability)
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4
HIGH_PASS_GAIN = 4.0  # the residual's scale against the image's [-1, 1]
WIDTH = 16            # channels of the first layer; doubled at each of the first two downsamplings


class DetectorCNN(nn.Module):
    """[image, high-pass residual] -> conv 3x3 at full resolution, three stride-2 convs -> global max and
    mean pooling -> one logit."""

    def __init__(self, channels: int, width: int = WIDTH):
        super().__init__()
        widths = [width, width, 2 * width, 4 * width]
        layers, previous = [], 2 * channels
        for i, w in enumerate(widths):
            layers += [nn.Conv2d(previous, w, 3, stride=1 if i == 0 else 2, padding=1), nn.LeakyReLU(0.2)]
            previous = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(2 * previous, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        detail = x - nn.functional.avg_pool2d(x, 5, stride=1, padding=2, count_include_pad=False)
        h = self.features(torch.cat([x, HIGH_PASS_GAIN * detail], dim=1))
        return self.head(torch.cat([h.amax(dim=(2, 3)), h.mean(dim=(2, 3))], dim=1)).squeeze(1)


def _flip(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image flipped left-right and top-bottom with probability 1/2 each."""
    flips = torch.rand(len(batch), 2, generator=generator) < 0.5
    batch = torch.where(flips[:, 0, None, None, None], batch.flip(3), batch)
    return torch.where(flips[:, 1, None, None, None], batch.flip(2), batch)


def fit_and_score(train_x: torch.Tensor, train_y: torch.Tensor, score_x: torch.Tensor, seed: int,
                  epochs: int = EPOCHS, device: str = "cpu") -> np.ndarray:
    """Train a fresh `DetectorCNN` on (train_x, train_y) and return P(label 1) of each image of `score_x`.

    Images are float (N, C, H, W) in [-1, 1]; labels 0/1.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DetectorCNN(train_x.shape[1]).to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    loss_fn = nn.BCEWithLogitsLoss()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train_x), generator=generator)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start:start + BATCH_SIZE]
            x = _flip(train_x[batch], generator).to(device)
            loss = loss_fn(model(x), train_y[batch].to(device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(score_x[i:i + 256].to(device)).cpu() for i in range(0, len(score_x), 256)])
    return torch.sigmoid(logits).double().numpy()


def cnn_out_of_fold_scores(images_unit: np.ndarray, labels: np.ndarray, seed: int, epochs: int = EPOCHS,
                           device: str = "cpu") -> np.ndarray:
    """P(label 1) of every image of float (N, C, H, W) `images_unit` in [0, 1] from a network that did
    not train on it (k-fold, stratified by `labels`)."""
    x = torch.from_numpy(np.ascontiguousarray(images_unit, dtype=np.float32)) * 2 - 1
    y = torch.from_numpy(labels.astype(np.float32))
    scores = np.empty(len(labels))
    folds = StratifiedKFold(n_splits=min(FOLDS, int(np.bincount(labels).min())), shuffle=True, random_state=seed)
    for fold, (train, held_out) in enumerate(folds.split(images_unit, labels)):
        scores[held_out] = fit_and_score(x[train], y[train], x[held_out], seed=seed * FOLDS + fold,
                                         epochs=epochs, device=device)
    return scores
