"""EOS, expansive over-sampling in the embedding space (Dablain, Bellinger, Krawczyk, Chawla 2022, "Efficient
Augmentation for Imbalanced Deep Learning", arXiv:2207.06080).

A competitor of GAN augmentation that makes no images at all. After a classifier is trained as usual:

    1. features   the penultimate-layer features of the real training images (eval mode, no augmentation)
    2. EOS        new minority features f + u * (enemy - f), u ~ U(0, 1), where `enemy` is one of the
                  `train.eos_neighbours` nearest features of another class, until the positive class is
                  as large as the largest class
    3. head       only the last linear layer is retrained on real + synthetic features, class-balanced,
                  and the head with the best val AUC is kept; the original head is the first candidate,
                  so EOS never lowers val AUC. The feature extractor stays frozen.

Moving towards enemies (rather than towards same-class neighbours, as SMOTE does) widens the minority's
region in feature space towards the decision boundary, which is where a CNN trained on imbalanced data
has squeezed it. The authors' code draws the enemy from the k nearest neighbours of any class and skips
minority features with no enemy among them; here the k nearest enemies are searched directly, so every
minority feature is a base and any requested count can be made.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.classify.config import ClassifierConfig
from training.classify.data import LabelledSet
from training.classify.metrics import binary_metrics
from training.core.errors import ConfigError, DataError
from training.core.precision import to_device
from training.data.folders import to_float

HEAD_EPOCHS = 30            # passes over real + synthetic features; a linear layer on fixed features converges fast
_FEATURE_BATCH = 256        # images per forward pass when extracting features
_DISTANCE_CHUNK = 1024      # minority rows per distance block: bounds memory at chunk x enemies floats


def split_head(model: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Linear]:
    """The model's feature function (images -> what the last layer receives) and that last nn.Linear.

    mlp and cnn are nn.Sequential ending in the head; resnet18 ends in `fc = Sequential(Dropout, Linear)`.
    The features are captured at the head's input during an ordinary forward pass, so they are exactly
    what `model(x)` feeds its head, whatever runs before it (in eval mode the dropout before it is a no-op).
    """
    if isinstance(model, nn.Sequential) and isinstance(model[-1], nn.Linear):
        head = model[-1]
    elif isinstance(getattr(model, "fc", None), nn.Sequential) and isinstance(model.fc[-1], nn.Linear):
        head = model.fc[-1]
    else:
        raise ConfigError(f"'train.embedding_oversampling' needs a model ending in a linear layer "
                          f"(mlp, cnn, resnet18); got {type(model).__name__}")

    def features(x: torch.Tensor) -> torch.Tensor:
        captured = []
        handle = head.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
        try:
            model(x)
        finally:
            handle.remove()
        return captured[0]                                            # (B, D)

    return features, head


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Penultimate-layer features (N, D) float32 on `device` of uint8 images (N, C, S, S); eval mode."""
    features, _ = split_head(model)
    model.eval()
    return torch.cat([features(to_float(to_device(images[i:i + _FEATURE_BATCH], device))).float()
                      for i in range(0, len(images), _FEATURE_BATCH)])


def nearest_enemies(minority: torch.Tensor, enemies: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (M, k) into `enemies` of each minority row's k nearest enemies (Euclidean), nearest first."""
    k = min(k, len(enemies))
    return torch.cat([torch.cdist(minority[i:i + _DISTANCE_CHUNK], enemies).topk(k, dim=1, largest=False).indices
                      for i in range(0, len(minority), _DISTANCE_CHUNK)])


def eos_features(features: torch.Tensor, labels: torch.Tensor, minority: int, k: int, count: int,
                 generator: torch.Generator) -> torch.Tensor:
    """`count` synthetic features (count, D) of class `minority`, each on a segment to a nearest enemy.

    Args:
        features:  (N, D) real training features.
        labels:    (N,) their classes; every class other than `minority` is an enemy.
        minority:  the class to oversample.
        k:         enemies considered per minority feature (fewer when fewer exist).
        count:     how many to make.
        generator: a CPU generator; the result depends only on its state and the inputs.

    Every minority feature is a base equally often (counts differ by at most one); each new feature is
    base + u * (enemy - base), enemy drawn uniformly from the base's k nearest enemies, u ~ U(0, 1).
    """
    is_minority = labels == minority
    base_pool, enemy_pool = features[is_minority], features[~is_minority]
    if count <= 0:
        return features.new_zeros((0, features.shape[1]))
    if not len(base_pool) or not len(enemy_pool):
        raise DataError(f"EOS needs training features of class {minority} and of another class "
                        f"(got {len(base_pool)} and {len(enemy_pool)})")
    neighbours = nearest_enemies(base_pool, enemy_pool, k)                          # (M, k)

    # Draw on the CPU, so the same seed gives the same features on any device.
    m = len(base_pool)
    bases = torch.randperm(m, generator=generator).repeat(math.ceil(count / m))[:count]
    choice = torch.randint(neighbours.shape[1], (count,), generator=generator)
    u = torch.rand(count, 1, generator=generator)
    bases, choice, u = bases.to(features.device), choice.to(features.device), u.to(features.device)
    base = base_pool[bases]                                                          # (count, D)
    enemy = enemy_pool[neighbours[bases, choice]]                                    # (count, D)
    return base + u * (enemy - base)


def head_auc(head: nn.Linear, features: torch.Tensor, is_positive: np.ndarray, positive: int) -> float:
    """Val ROC-AUC of P(positive) = softmax(head(features))[:, positive], as `positive_scores` would give."""
    with torch.no_grad():
        scores = torch.softmax(head(features).float(), 1)[:, positive].cpu().numpy().astype(np.float64)
    return binary_metrics(is_positive, scores, 0.5)["roc_auc"]


def train_head(head: nn.Linear, features: torch.Tensor, labels: torch.Tensor, val_features: torch.Tensor,
               val_positive: np.ndarray, positive: int, config: ClassifierConfig, generator: torch.Generator
               ) -> tuple[dict, float, float, int]:
    """Retrain `head` in place on (features, labels), class-balanced; select by val AUC.

    Returns the best head's state dict, the val AUC before and of the best, and the best epoch
    (0: the original head was never beaten, and is what the state dict holds).
    """
    t = config.train
    num_classes = head.out_features
    # Class-balanced: weights n / (K * n_class). After EOS the binary case is already balanced (all 1);
    # with more classes the other small classes keep their share of the loss this way.
    counts = torch.bincount(labels, minlength=num_classes).float()
    weights = (len(labels) / (num_classes * counts.clamp(min=1))).to(features.device)
    before = head_auc(head, val_features, val_positive, positive)
    best, best_state, best_epoch = before, copy.deepcopy(head.state_dict()), 0
    optimiser = torch.optim.AdamW(head.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    for epoch in range(1, HEAD_EPOCHS + 1):
        # Update the head, one shuffled pass in mini-batches.
        order = torch.randperm(len(labels), generator=generator).to(features.device)
        for start in range(0, len(order), t.batch_size):
            idx = order[start:start + t.batch_size]
            loss = F.cross_entropy(head(features[idx]), labels[idx], weight=weights)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        # Select on val AUC; strictly better only, so ties keep the earlier (or original) head.
        auc = head_auc(head, val_features, val_positive, positive)
        if auc > best:
            best, best_epoch, best_state = auc, epoch, copy.deepcopy(head.state_dict())
    return best_state, before, best, best_epoch


def embedding_oversample(model: nn.Module, config: ClassifierConfig, sets: dict[str, LabelledSet], positive: int,
                         seed: int, device: torch.device) -> tuple[nn.Module, dict]:
    """EOS after `fit`: oversample class `positive` in feature space, retrain only the last linear layer.

    The model is changed in place and returned, with the same architecture and state-dict keys (so
    save_classifier, load_classifier and positive_scores work unchanged), together with
    {feature_dim, minority_count, majority_count, synthetic_count, neighbours, head_epochs, best_head_epoch,
    val_auc_before, val_auc_after}. Only the real training images (`synthetic` false) are used; the
    positive class is made as large as the largest other class (multi-class: all other classes are
    enemies). Deterministic given `seed`.
    """
    generator = torch.Generator().manual_seed(seed)
    train, val = sets["train"], sets["val"]
    _, head = split_head(model)
    was_training = model.training

    # Features of the real images, from the frozen extractor. GAN images in train (data.synthetic_dir, an
    # augmented folder) are left out: EOS is the competitor that balances the real images without them.
    real = ~train.synthetic
    features = extract_features(model, train.images[real], device)                  # (N_real, D)
    labels = to_device(train.labels[real], device)
    val_features = extract_features(model, val.images, device)
    val_positive = (val.labels == positive).numpy()

    # Synthetic minority features, up to the largest other class.
    counts = torch.bincount(train.labels[real], minlength=head.out_features)
    majority = int(torch.cat([counts[:positive], counts[positive + 1:]]).max())
    synthetic = eos_features(features, labels, positive, config.train.eos_neighbours,
                             majority - int(counts[positive]), generator)
    all_features = torch.cat([features, synthetic])
    all_labels = torch.cat([labels, labels.new_full((len(synthetic),), positive)])

    # Retrain the head alone; the body's parameters get no gradient and no optimiser step.
    with torch.enable_grad():
        state, before, after, best_epoch = train_head(head, all_features, all_labels, val_features, val_positive,
                                                      positive, config, generator)
    head.load_state_dict(state)
    model.train(was_training)
    info = {"feature_dim": int(features.shape[1]), "minority_count": int(counts[positive]), "majority_count": majority,
            "synthetic_count": len(synthetic), "neighbours": config.train.eos_neighbours, "head_epochs": HEAD_EPOCHS,
            "best_head_epoch": best_epoch, "val_auc_before": before, "val_auc_after": after}
    return model, info
