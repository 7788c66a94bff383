"""Networks of the semi-supervised K+1 GAN.

D is the project's `cnn` classifier (`training/classify/networks.py`) as it is. With the fake
logit fixed at 0 (see `training/sgan/losses.py`) its K class logits are all the K+1 GAN needs, so:

* the best D is saved as an ordinary `cnn` classifier checkpoint, which `load_classifier`,
  `compare.py`, `pseudo_label.py` and `export.py` take unchanged;
* the baseline trains the very same network on the labelled images alone.

G's feature matching uses D's globally pooled features, the input of D's last linear layer.
G is the DCGAN generator (`training/gan/dcgan.py`).
"""

from __future__ import annotations

from torch import nn

from training.classify.config import ClassifierModelConfig
from training.classify.networks import build_classifier
from training.gan.dcgan import Generator


def classifier_model(model) -> ClassifierModelConfig:
    """The classifier-config `model` section of the K+1 discriminator (what its checkpoint records)."""
    return ClassifierModelConfig(arch="cnn", width=model.width, dropout=model.dropout)


def build_discriminator(model, channels: int, image_size: int, num_classes: int) -> nn.Sequential:
    """D: images (B, C, S, S) in [-1, 1] -> K class logits (B, K); the `cnn` classifier."""
    return build_classifier(classifier_model(model), channels, image_size, num_classes)


def split_discriminator(d: nn.Sequential) -> tuple[nn.Sequential, nn.Sequential]:
    """(features, head) sharing D's modules: features (B, C, S, S) -> (B, F) pooled, head (B, F) -> (B, K)."""
    if not (isinstance(d[-1], nn.Linear) and isinstance(d[-2], nn.Dropout) and isinstance(d[-3], nn.Flatten)):
        raise TypeError("the K+1 discriminator must end in Flatten, Dropout, Linear (the 'cnn' classifier)")
    return d[:-2], d[-2:]


def build_generator(model, channels: int, image_size: int) -> Generator:
    """G: z (B, z_dim) -> images (B, C, S, S) in [-1, 1]."""
    return Generator(model.z_dim, image_size, channels, model.g_channels, model.upsample)
