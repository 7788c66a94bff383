"""Image classifiers for the baseline-vs-augmented comparison, found by name (`model.arch`).

    mlp       a shallow fully connected net on the pixels: the weakest reference
    cnn       four conv blocks, global average pooling: the default for 28-128 px medical crops
    resnet18  torchvision's ResNet-18; with `model.pretrained` a local ImageNet weights file

Every model maps float images in [-1, 1], (B, C, S, S), to class logits (B, K).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from training.core.checkpoint_io import load_checkpoint
from training.core.errors import ConfigError, DataError
from training.core.registry import Registry

CLASSIFIERS = Registry("classifier architecture", "model.arch")


@CLASSIFIERS.register("mlp")
def mlp(model, channels: int, image_size: int, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    hidden = model.width * 8
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * image_size * image_size, hidden), nn.ReLU(inplace=True),
                         nn.Dropout(model.dropout), nn.Linear(hidden, num_classes))


@CLASSIFIERS.register("cnn")
def cnn(model, channels: int, image_size: int, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    layers, in_ch = [], channels
    for level in range(4):
        out_ch = model.width * 2 ** level
        layers += [nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                   nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
        if level < 3 and image_size // 2 ** (level + 1) >= 2:
            layers.append(nn.MaxPool2d(2))
        in_ch = out_ch
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(model.dropout),
                         nn.Linear(in_ch, num_classes))


@CLASSIFIERS.register("resnet18")
def resnet18(model, channels: int, image_size: int, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    from torchvision.models import resnet18 as torchvision_resnet18  # here: about a second per process to import

    net = torchvision_resnet18(weights=None)
    if model.pretrained:        # the ImageNet architecture; its weights unless rebuilding a saved classifier
        if load_pretrained:
            path = Path(model.pretrained)
            if not path.is_file():
                raise ConfigError(f"'model.pretrained' weights file not found: {path} (weights are never downloaded)")
            state = load_checkpoint(path)       # tensors only: a pickle payload is a one-line refusal
            try:
                net.load_state_dict(state)
            except (RuntimeError, TypeError, AttributeError) as err:
                first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
                raise DataError(f"'model.pretrained' {path} is not torchvision ResNet-18 weights ({first})") from None
        if channels == 1:       # grey: the sum over RGB filters responds to grey input as RGB filters did
            conv = nn.Conv2d(1, 64, 7, stride=2, padding=3, bias=False)
            conv.weight.data = net.conv1.weight.data.sum(dim=1, keepdim=True)
            net.conv1 = conv
    else:
        # From scratch on small images: a 3x3 stride-1 stem and no max-pool (the CIFAR variant),
        # or a 28-64 px image would be 7-16 px after the ImageNet stem.
        net.conv1 = nn.Conv2d(channels, 64, 3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    net.fc = nn.Sequential(nn.Dropout(model.dropout), nn.Linear(net.fc.in_features, num_classes))
    return net


def build_classifier(model, channels: int, image_size: int, num_classes: int, load_pretrained: bool = True) -> nn.Module:
    """`model.arch` for this input and class count; `load_pretrained=False` when weights come from a checkpoint."""
    return CLASSIFIERS[model.arch](model, channels, image_size, num_classes, load_pretrained)
