"""The schema of a pipeline config (`experiments/pipeline_*.yaml`): which data, which GAN, how many
synthetic images, which classifiers to compare. Each stage's own settings stay in its own YAML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from training.core.config import field
from training.core.errors import ConfigError


@dataclass(frozen=True)
class PipelineDataConfig:
    source: str = field("demo", help="as prepare_data.py --source: demo, a MedMNIST .npz, or an ImageFolder")
    name: Optional[str] = field(None, plain_name=True, help="processed dataset name (default: as prepare_data.py)")
    class_names: Optional[str] = field(None, help=".npz only, e.g. 0=malignant,1=benign")
    drop_leaked: bool = False
    processed_dir: str = "data/processed"


@dataclass(frozen=True)
class PipelineGANConfig:
    config: str = "experiments/demo_gan.yaml"
    overrides: tuple[str, ...] = field((), help="key=value overrides of the GAN config")


@dataclass(frozen=True)
class PipelineSynthesisConfig:
    target_ratio: Optional[float] = field(1.4, min=1.0, help="largest class : minority after augmentation")
    num_synthetic: Optional[int] = field(None, min=1, help="instead of target_ratio")
    seed: int = field(0, min=0)
    qa_max_images: int = field(2000, min=2)
    qa_gate: Literal["fail", "warn", "off"] = field(
        "fail", help="stop before assembling when the QA verdict is at least this bad (off: use the images anyway)")

    def validate(self) -> None:
        if self.target_ratio is None and self.num_synthetic is None:
            raise ConfigError("set 'synthesis.target_ratio' or 'synthesis.num_synthetic'")


@dataclass(frozen=True)
class PipelineArm:
    config: str
    data: Literal["baseline", "augmented"] = "baseline"


@dataclass(frozen=True)
class PipelineClassifiersConfig:
    arms: tuple[str, ...] = field(("experiments/classifier_baseline.yaml:baseline",
                                   "experiments/classifier_class_weighted.yaml:baseline",
                                   "experiments/classifier_oversampled.yaml:baseline",
                                   "experiments/classifier_gan_augmented.yaml:augmented"),
                                  help="CONFIG:baseline|augmented, the first is the comparison's baseline")
    overrides: tuple[str, ...] = field((), help="key=value overrides applied to every classifier config")

    def validate(self) -> None:
        for arm in self.arms:
            if arm.rpartition(":")[2] not in ("baseline", "augmented"):
                raise ConfigError(f"'classifiers.arms' entry '{arm}' must end in :baseline or :augmented")

    def parsed(self) -> list[PipelineArm]:
        return [PipelineArm(*arm.rsplit(":", 1)) for arm in self.arms]


@dataclass(frozen=True)
class PipelineOutputConfig:
    name: Optional[str] = field(None, plain_name=True, help="default: the config file's stem")
    results_dir: str = "results"


@dataclass(frozen=True)
class PipelineConfig:
    data: PipelineDataConfig = field(default_factory=PipelineDataConfig)
    gan: PipelineGANConfig = field(default_factory=PipelineGANConfig)
    synthesis: PipelineSynthesisConfig = field(default_factory=PipelineSynthesisConfig)
    classifiers: PipelineClassifiersConfig = field(default_factory=PipelineClassifiersConfig)
    output: PipelineOutputConfig = field(default_factory=PipelineOutputConfig)
