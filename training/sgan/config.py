"""The schema of a semi-supervised GAN config (`experiments/sgan_*.yaml`).

Same rules as the other configs: frozen dataclasses, strict keys, types and ranges checked on load,
`section.key=value` overrides through the same validation. `train.method` picks the K+1 GAN or the
baseline (the same network trained on the labelled images only); both draw the same labelled subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from training.core.config import MAX_SEED, check_seeds, field
from training.gan.diffaugment import check_policy


@dataclass(frozen=True)
class SGANDataConfig:
    root: str = field("data/processed/digits", help="processed dataset with train/val/test/<class>/ folders")
    image_size: Literal[16, 32, 64] = field(32, help="images are resized to this (G doubles 4 px up to it)")
    channels: Literal[1, 3] = 1
    labeled_per_class: int = field(10, min=1, help="labelled training images per class; the rest of train is "
                                                   "used without labels")
    split_seed: int = field(0, min=0, max=MAX_SEED, help="seed of the labelled-subset draw, the same for every training seed")
    positive_class: Optional[str] = field(None, plain_name=True,
                                          help="the class whose binary metrics (sensitivity, AUC) go to the "
                                               "comparison files; default: the smallest training class")


@dataclass(frozen=True)
class SGANModelConfig:
    width: int = field(16, min=4, max=512, help="D is the 'cnn' classifier: channels of its first block")
    dropout: float = field(0.2, min=0.0, max=0.9, help="dropout before D's last layer")
    z_dim: int = field(64, min=1, max=4096)
    g_channels: int = field(32, min=4, max=1024, help="G width at the output resolution; doubles per level")
    upsample: Literal["resize_conv", "transposed"] = "resize_conv"


@dataclass(frozen=True)
class SGANTrainConfig:
    method: Literal["sgan", "baseline"] = field("sgan", help="sgan: K+1 GAN; baseline: D alone on the labelled "
                                                             "images (same network, split, steps, stopping)")
    epochs: int = field(100, min=1, help="an epoch is one pass over the unlabelled images, for both methods")
    batch_size: int = field(64, min=2, help="labelled, unlabelled and generated images per step, each")
    lr_d: float = field(1e-3, min=0.0, max=1.0)
    lr_g: float = field(1e-3, min=0.0, max=1.0)
    betas: tuple[float, float] = field((0.5, 0.999), min=0.0, max=0.9999)
    unsupervised_weight: float = field(1.0, min=0.0, help="weight of the real/fake loss against the supervised one")
    diffaugment: Optional[str] = field("translation", help="DiffAugment policy on every image D sees, or off")
    early_stopping_patience: Optional[int] = field(15, min=1, help="epochs without a better val accuracy, or off")
    seeds: tuple[int, ...] = field((0, 1, 2), min=0, max=MAX_SEED, help="one run per seed; results are mean +- std over seeds")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    sample_grid_size: int = field(8, min=1, max=32, help="G's sample grid is N x N images")

    def validate(self) -> None:
        check_seeds(self.seeds)
        check_policy(self.diffaugment)


@dataclass(frozen=True)
class SGANOutputConfig:
    name: Optional[str] = field(None, plain_name=True, help="default: the config file's stem; the baseline adds '_baseline'")
    results_dir: str = "results"


@dataclass(frozen=True)
class SGANConfig:
    data: SGANDataConfig = field(default_factory=SGANDataConfig)
    model: SGANModelConfig = field(default_factory=SGANModelConfig)
    train: SGANTrainConfig = field(default_factory=SGANTrainConfig)
    output: SGANOutputConfig = field(default_factory=SGANOutputConfig)

    @property
    def run_name(self) -> str:
        """The folder under results/classifiers/: the name, plus '_baseline' for the baseline."""
        return self.output.name + ("_baseline" if self.train.method == "baseline" else "")
