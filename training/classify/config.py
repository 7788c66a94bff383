"""The schema of a classifier config (`experiments/classifier_*.yaml`).

Same rules as the GAN config: frozen dataclasses, strict keys, types and ranges checked on load,
`section.key=value` overrides through the same validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from training.core.config import MAX_SEED, OutputConfig, check_seeds, field
from training.core.errors import ConfigError


@dataclass(frozen=True)
class ClassifierDataConfig:
    train_dir: str = field("data/processed/demo/train", help="split folder with one sub-folder per class")
    val_dir: str = field("data/processed/demo/val", help="real images only: model selection and threshold")
    test_dir: str = field("data/processed/demo/test", help="real images only: the reported numbers")
    image_size: int = field(32, min=8, max=512, help="every image is resized to this (never above the smallest train image)")
    channels: Literal[1, 3] = 3
    positive_class: str = field("malignant", plain_name=True, help="the minority class whose sensitivity is reported")
    synthetic_dir: Optional[str] = field(None, help="a synthetic folder with manifest.jsonl (generate_samples.py or "
                                                    "pseudo_label.py) added to train only")
    synthetic_weight: float = field(1.0, min=0.0, max=1.0,
                                    help="loss weight of synthetic training images (0: they are left out entirely)")
    synthetic_fraction_per_batch: Optional[float] = field(
        None, min=0.01, max=0.9, help="draw this share of every batch from the synthetic images (off: as the folders hold them)")


@dataclass(frozen=True)
class ClassifierModelConfig:
    arch: Literal["mlp", "cnn", "resnet18"] = "cnn"
    width: int = field(32, min=4, max=512, help="mlp: hidden units / 8; cnn: channels of the first block")
    dropout: float = field(0.2, min=0.0, max=0.9)
    pretrained: Optional[str] = field(None, help="resnet18: a local torchvision weights file (never downloaded)")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    epochs: int = field(30, min=1)
    batch_size: int = field(64, min=1, help="the global batch: under torchrun, N processes take 1/N each")
    lr: float = field(1e-3, min=0.0, max=1.0)
    weight_decay: float = field(1e-4, min=0.0, max=1.0)
    seeds: tuple[int, ...] = field((0, 1, 2), min=0, max=MAX_SEED, help="one run per seed; results are mean +- std over seeds")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    early_stopping_patience: Optional[int] = field(8, min=1, help="epochs without a better val AUC, or off")
    class_weights: Literal["none", "balanced"] = field("none", help="balanced: loss weight n / (k * n_class)")
    oversample: bool = field(False, help="draw minority images as often as majority ones")
    label_smoothing: float = field(0.0, min=0.0, max=0.5)
    mixup_alpha: float = field(0.0, min=0.0, max=10.0, help="0 = off")
    augment: bool = field(True, help="flips, small rotations and shifts, brightness/contrast jitter")
    finetune_real_epochs: int = field(0, min=0, help="then this many epochs on real images only, class-balanced, "
                                                     "at lr / 10 (Buda et al. 2018's two-phase scheme)")
    embedding_oversampling: bool = field(False, help="EOS (Dablain et al. 2022): oversample the minority in the "
                                                     "penultimate-layer features and retrain the last layer")
    eos_neighbours: int = field(10, min=1, help="EOS: nearest other-class neighbours a new minority feature moves towards")
    target_sensitivity: Optional[float] = field(None, min=0.0, max=1.0,
                                                help="threshold for this val sensitivity instead of Youden's J")
    precision: Literal["fp32", "bf16", "fp16"] = field("fp32", help="CUDA autocast; fp16 adds loss scaling; "
                                                                  "fp32 on CPU (with a note)")
    channels_last: bool = field(False, help="NHWC memory layout: faster convolutions on CUDA tensor cores, and for "
                                                 "small networks on CPU (docs/benchmarks.md)")
    cudnn_benchmark: bool = field(False, help="CUDA: let cuDNN time kernels (faster, not bit-reproducible)")
    tf32: bool = field(False, help="CUDA: TensorFloat-32 matmuls/convolutions (faster, ~1e-3 precision)")

    def validate(self) -> None:
        check_seeds(self.seeds)


@dataclass(frozen=True)
class ClassifierConfig:
    data: ClassifierDataConfig = field(default_factory=ClassifierDataConfig)
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        if self.data.synthetic_fraction_per_batch and self.train.batch_size < 2:
            raise ConfigError("'data.synthetic_fraction_per_batch' needs 'train.batch_size' >= 2 (a real and a "
                              "synthetic image in every batch)")
