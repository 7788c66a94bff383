"""The schema of a pipeline config (`experiments/pipeline_*.yaml`): which data, which GAN, how many
synthetic images, which classifiers to compare. Each stage's own settings stay in its own YAML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from training.core.config import MAX_SEED, OutputConfig, field
from training.core.errors import ConfigError
from training.synthesis.sampling import MAX_NUM_SAMPLES

CHOSEN_ARM = "gan_chosen"       # the run name (after the study's) of the arm the grid chose


@dataclass(frozen=True)
class PipelineDataConfig:
    """The data, as prepare_data.py takes it (same names as its flags), and the two class roles of the study."""

    source: str = field("demo", help="as prepare_data.py --source: demo, a MedMNIST .npz, or an ImageFolder")
    name: Optional[str] = field(None, plain_name=True, help="processed dataset name (default: as prepare_data.py)")
    class_names: Optional[str] = field(None, help=".npz only, e.g. 0=malignant,1=benign")
    drop_leaked: bool = False
    processed_dir: str = "data/processed"
    val_fraction: float = field(0.1, min=0.0, max=0.95, help="as prepare_data.py --val_fraction: a folder without "
                                                             "split folders, digits, MNIST: val share per class")
    test_fraction: float = field(0.2, min=0.0, max=0.95, help="as --test_fraction: test share per class")
    seed: int = field(0, min=0, max=MAX_SEED, help="as --seed: the stratified split (and the demo images)")
    image_size: Optional[int] = field(None, min=8, max=1024, help="as --image_size: resize every image to this square "
                                                                  "(off: each keeps its size)")
    channels: Literal["auto", 1, 3] = field("auto", help="as --channels: auto = grey when every image is grey in "
                                                         "content (R = G = B); the GAN and every classifier get the "
                                                         "prepared data's channel count")
    resize: Literal["pad", "center_crop", "squash"] = field("pad", help="as --resize: how a non-square image becomes "
                                                                        "square")
    keep_duplicates: bool = field(False, help="as --keep_duplicates: keep every copy of identical images in val/test")
    group_by: Literal["image", "subfolder"] = field("image", help="as --group_by: subfolder keeps every image under one "
                                                                  "sub-folder of a class (a patient's) in one split")
    minority_class: Optional[str] = field(None, plain_name=True, help="the class the GAN learns and adds images of "
                                                                      "(off: the GAN config's data.minority_class)")
    positive_class: Optional[str] = field(None, plain_name=True, help="the class whose sensitivity the classifiers "
                                                                      "and the primary metric report, which need not be "
                                                                      "the minority (off: the classifier configs' "
                                                                      "data.positive_class)")

    def validate(self) -> None:
        if isinstance(self.channels, bool):
            raise ConfigError("'data.channels' must be one of 'auto', 1, 3")
        if self.val_fraction + self.test_fraction >= 1:
            raise ConfigError("'data.val_fraction' + 'data.test_fraction' must be less than 1 (train needs images)")


@dataclass(frozen=True)
class PipelineGANConfig:
    config: str = "experiments/demo_gan.yaml"
    overrides: tuple[str, ...] = field((), help="key=value overrides of the GAN config")
    other_class_overrides: tuple[str, ...] = field((), help="then these, for the GANs of the other classes (search."
                                                           "classes: all), e.g. [train.epochs=200]")
    pretrain_class: Optional[str] = field(None, plain_name=True, help="transfer: first train the same GAN on this "
                                          "class (e.g. the plentiful one; 'largest' = the class with the most "
                                          "training images), then fine-tune on the minority from its last "
                                          "checkpoint (train.init_from)")
    pretrain_epochs: int = field(50, min=1, help="epochs of the pretraining run over the pretrain class")


@dataclass(frozen=True)
class PipelineSynthesisConfig:
    target_ratio: Optional[float] = field(1.4, min=1.0, help="largest class : minority after augmentation")
    num_synthetic: Optional[int] = field(None, min=1, max=MAX_NUM_SAMPLES, help="instead of target_ratio")
    seed: int = field(0, min=0, max=MAX_SEED)
    qa_max_images: int = field(2000, min=2)
    qa_gate: Literal["fail", "warn", "off"] = field(
        "fail", help="stop before assembling when the QA verdict is at least this bad (off: use the images anyway)")

    def validate(self) -> None:
        if self.target_ratio is None and self.num_synthetic is None:
            raise ConfigError("set 'synthesis.target_ratio' or 'synthesis.num_synthetic'")


@dataclass(frozen=True)
class PipelineSearchConfig:
    """The grid of ways to use synthetic images, each scored on validation only; the best by the primary
    metric then has its models scored on test beside the fixed arms."""

    enabled: bool = field(False, help="true: the grid after the fixed arms of classifiers.arms")
    arm: str = field("experiments/classifier_gan_augmented.yaml", help="the classifier config every grid arm starts from")
    synthetic_per_real: tuple[float, ...] = field((0.5, 1.0, 2.0), help="synthetic images per real image of a class "
                                                                       "that receives them")
    synthetic_weight: tuple[float, ...] = field((0.3, 1.0), help="loss weight of the synthetic images")
    selection: tuple[str, ...] = field(("off", "realism"), help="off: the pool's first images; realism: the most "
                                                                "realistic (Kynkäänniemi et al. 2019), near-copies dropped")
    classes: tuple[str, ...] = field(("minority", "all"), help="which classes receive synthetic images (all: one GAN "
                                     "per class, the same share in each, so origin does not predict the label)")
    finetune_real_epochs: tuple[int, ...] = field((0,), help="epochs of a real-only, class-balanced last stage")
    pool_factor: float = field(2.0, min=1.0, max=10.0, help="selection keeps the best 1/pool_factor of a pool this "
                                                            "many times the largest count (at most 10: the best tenth)")

    def validate(self) -> None:
        for name, allowed in (("selection", ("off", "realism")), ("classes", ("minority", "all"))):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise ConfigError(f"'search.{name}' must list some of {', '.join(allowed)}, got {list(values)}")
        for name in ("synthetic_per_real", "synthetic_weight", "finetune_real_epochs"):
            if not getattr(self, name):
                raise ConfigError(f"'search.{name}' needs at least one value")
        if any(not 0 < m <= 10 for m in self.synthetic_per_real):
            raise ConfigError("'search.synthetic_per_real' values must be in (0, 10]")
        if any(not 0 <= w <= 1 for w in self.synthetic_weight):
            raise ConfigError("'search.synthetic_weight' values must be in [0, 1]")
        if any(e < 0 for e in self.finetune_real_epochs):
            raise ConfigError("'search.finetune_real_epochs' values must be >= 0")
        if "realism" in self.selection and self.pool_factor < 1.25:
            raise ConfigError("'search.pool_factor' must be >= 1.25 with realism selection: near-copies are dropped "
                              "first, and selection needs more images than it keeps")


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
    primary_metric: Literal["sensitivity_at_spec90", "roc_auc", "pr_auc", "balanced_accuracy", "f1"] = field(
        "sensitivity_at_spec90", help="declared before any run: the grid's choice on validation and the verdict line")
    workers: int = field(1, min=1, max=64, help="classifier arms trained at once, each in its own process on one "
                                                "thread (1: one after another, in this process, on its threads)")

    def validate(self) -> None:
        if not self.arms:
            raise ConfigError("'classifiers.arms' is empty: list the baseline arm first, then the arms to compare with it")
        for arm in self.arms:
            if arm.rpartition(":")[2] not in ("baseline", "augmented"):
                raise ConfigError(f"'classifiers.arms' entry '{arm}' must end in :baseline or :augmented")
        # An arm's runs are named after its config file: two files of one name would write one folder.
        stems = [Path(arm.config).stem for arm in self.parsed()]
        for stem in stems:
            if stems.count(stem) > 1 or stem == CHOSEN_ARM:
                taken = "names the grid's chosen arm" if stem == CHOSEN_ARM else "is listed twice"
                raise ConfigError(f"'classifiers.arms': the config name '{stem}' {taken}; each arm's runs are named "
                                  "after its file, so give each arm a file of its own name")

    def parsed(self) -> list[PipelineArm]:
        return [PipelineArm(*arm.rsplit(":", 1)) for arm in self.arms]


@dataclass(frozen=True)
class PipelineEvaluationConfig:
    """Where the arms are scored: the prepared test split, or every real image by K-fold cross-validation."""

    folds: Optional[int] = field(None, min=2, max=10, help="off: score on the prepared test split. K: pool the real "
                                 "images of every split into K folds stratified by class (identical pixels in one "
                                 "fold, data.seed); per fold the whole study (GANs, QA, grid, arms) trains on the "
                                 "other folds and scores that fold once; the comparison pools the K test parts")


@dataclass(frozen=True)
class PipelineConfig:
    data: PipelineDataConfig = field(default_factory=PipelineDataConfig)
    gan: PipelineGANConfig = field(default_factory=PipelineGANConfig)
    synthesis: PipelineSynthesisConfig = field(default_factory=PipelineSynthesisConfig)
    classifiers: PipelineClassifiersConfig = field(default_factory=PipelineClassifiersConfig)
    search: PipelineSearchConfig = field(default_factory=PipelineSearchConfig)
    evaluation: PipelineEvaluationConfig = field(default_factory=PipelineEvaluationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        if len(self.classifiers.arms) < 2 and not self.search.enabled:
            raise ConfigError("'classifiers.arms' lists one arm and 'search.enabled' is false: the comparison needs "
                              "the baseline and at least one other arm")
