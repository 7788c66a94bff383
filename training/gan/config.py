"""The schema of a GAN training config (`experiments/dcgan_*.yaml`).

Each section is a frozen dataclass; `training.core.config.load_config(GANConfig, path, overrides)`
builds and validates it. Units are in the names: epochs, pixels, images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

from quality.features.domain_encoder import DEFAULT_EPOCHS
from training.core.config import MAX_SEED, field
from training.core.errors import ConfigError
from training.data.scan import GAN_SIZE_RANGE
from training.gan.dcgan import levels_for
from training.gan.diffaugment import check_policy
from training.gan.latents import LatentSpec


@dataclass(frozen=True)
class DataConfig:
    root: str = field("data/processed/demo", help="processed dataset with train/val/test/<class>/ folders")
    minority_class: str = field("malignant", plain_name=True,
                                help="the class folder the GAN learns (and the headline FID's class)")
    train_on: Literal["minority", "all_classes"] = field(
        "minority", help="all_classes: every class of train/ (conditional GANs; pseudo-labelling route)")
    image_size: int = field(64, min=GAN_SIZE_RANGE[0], max=GAN_SIZE_RANGE[1],
                            help="pixels; 32, 64 or 128, or the images' own size in between (e.g. 28: learned "
                            "without resampling, the networks working at the next power of two)")
    channels: Literal[1, 3] = 3


@dataclass(frozen=True)
class ModelConfig:
    # Options removed because measurements showed no gain (CHANGELOG.md):
    # a saved config with them off still loads; one with them on is refused, saying why.
    RETIRED: ClassVar[dict[str, tuple[object, str]]] = {
        "d_patch_head": (False, "a patch discriminator did not help the demo GAN"),
        "d_highpass": (False, "a high-pass input to D made QA fail on the demo"),
        "d_minibatch_std": (False, "D's minibatch standard deviation did not help the demo GAN"),
        "arch": ("dcgan", "residual blocks took about 5x the step time of the DCGAN without a measured gain"),
    }

    z_dim: int = field(128, min=1, max=4096)
    g_channels: int = field(64, min=4, max=1024, help="G width at the output resolution; doubles per level")
    d_channels: int = field(64, min=4, max=1024, help="D width at the input resolution; doubles per level")
    spectral_norm: bool = True
    d_norm: Literal["auto", "batch", "none"] = field("auto", help="auto: batch norm unless SN or Wasserstein")
    upsample: Literal["resize_conv", "bilinear", "transposed"] = field(
        "resize_conv", help="G's 2x upsampling before each conv: resize_conv = nearest copies, bilinear = smooth "
                            "interpolation (no pixel-block grid), transposed = strided transposed convs")
    g_output_block: bool = field(False, help="dcgan: one more upsample + conv + BN + ReLU block, so G has a "
                                             "nonlinearity at the output resolution before its RGB conv (off: the "
                                             "RGB conv reads the upsampled map directly, as in DCGAN)")
    g_padding: Literal["zeros", "reflect"] = field(
        "zeros", help="dcgan: how G's 3x3 convs pad: zeros (DCGAN) or reflect (mirrored neighbours); zero "
                      "padding gives border and corner pixels a tell-tale value (measured: the 4 corner pixels "
                      "alone told the demo GAN's images from real ones with AUC 0.87-1.00)")
    g_noise: bool = field(False, help="dcgan: per-pixel noise added after each of G's upsampling convs, with a learned "
                                      "weight per channel (StyleGAN's noise inputs, Karras et al. 2019): a source of "
                                      "stochastic fine detail; outside training an image's noise is drawn from a "
                                      "hash of its z, so the same z gives the same image")
    freeze_d_blocks: int = field(0, min=0, max=6, help="FreezeD (Mo et al. 2020): D's first N conv blocks keep the "
                                                     "weights of train.init_from while the rest fine-tunes")
    conditional: bool = field(False, help="class-conditional G and projection D; needs data.train_on=all_classes")
    info_categories: int = field(0, min=0, max=64, help="InfoGAN: values of one categorical code (0 = none)")
    info_continuous: int = field(0, min=0, max=16, help="InfoGAN: continuous codes, uniform in [-1, 1]")

    def latent_spec(self, num_classes: int = 0):
        """What G takes as input (training.gan.latents.LatentSpec); `num_classes` counts for conditional models."""
        return LatentSpec(self.z_dim, num_classes if self.conditional else 0, self.info_categories, self.info_continuous)

    def validate(self) -> None:
        if self.g_padding != "zeros" and self.upsample == "transposed":
            raise ConfigError("'model.g_padding' = reflect needs 3x3 convs; 'model.upsample' = transposed has "
                              "strided transposed convs, which pad with zeros only")

    def resolved_d_norm(self, loss_name: str) -> str:
        if self.d_norm != "auto":
            return self.d_norm
        return "none" if self.spectral_norm or loss_name == "wasserstein" else "batch"


@dataclass(frozen=True)
class LossConfig:
    name: Literal["hinge", "wasserstein", "bce"] = "hinge"
    gp_weight: float = field(0.0, min=0.0, help="gradient-penalty weight (WGAN-GP uses 10)")
    info_weight: float = field(1.0, min=0.0, help="InfoGAN: weight of the mutual-information term")
    lecam_weight: float = field(0.0, min=0.0, help="LeCam regularisation of D (Tseng et al. 2021; they use 0.1-0.3)")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(300, min=1, help="passes of D over the minority images")
    batch_size: int = field(64, min=1)
    lr_g: float = field(2e-4, min=0.0, max=1.0)
    lr_d: float = field(2e-4, min=0.0, max=1.0)
    betas: tuple[float, float] = field((0.0, 0.9), min=0.0, max=0.9999)
    n_critic: int = field(1, min=1, max=100, help="D updates per G update")
    seed: int = field(0, min=0, max=MAX_SEED)
    init_from: Optional[str] = field(None, help="a training checkpoint (checkpoint_epoch_NNNN.pth) of a GAN with "
                                                "the same model and image size, e.g. one trained on the plentiful "
                                                "class: G, D and EMA start from its weights (transfer; optimisers, "
                                                "augmentation strength and epochs start afresh)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = field(50, min=1, help="epochs between full-state checkpoints")
    ema_decay: Optional[float] = field(0.999, min=0.0, max=1.0, help="EMA of G weights, or off")
    ema_rampup_steps: int = field(100, min=0, help="EMA decay ramps up over this many G steps")
    diffaugment: Optional[str] = field("color,translation,cutout", help="DiffAugment policy, or off")
    ada_target: Optional[float] = field(None, min=0.0, max=1.0,
                                        help="adaptive DiffAugment (Karras et al. 2020): tune each op's probability p "
                                             "so that E[sign D(real)] stays at this target (they use 0.6); off = p 1")
    ada_speed_images: int = field(20_000, min=1, help="real images shown while p can move from 0 to 1")
    sample_grid_size: int = field(8, min=1, max=32, help="grids are N x N images")
    precision: Literal["fp32", "bf16", "fp16"] = field("fp32", help="CUDA autocast; fp16 adds loss scaling")
    channels_last: bool = field(False, help="NHWC memory layout: faster convolutions on CUDA tensor cores, and for "
                                                 "small networks on CPU (docs/benchmarks.md)")
    cudnn_benchmark: bool = field(False, help="CUDA: let cuDNN time kernels (faster, not bit-reproducible)")
    tf32: bool = field(False, help="CUDA: TensorFloat-32 matmuls/convolutions (faster, ~1e-3 precision)")

    def validate(self) -> None:
        check_policy(self.diffaugment)
        if self.ada_target is not None and not self.diffaugment:
            raise ConfigError("'train.ada_target' tunes the DiffAugment probability and needs 'train.diffaugment'")


@dataclass(frozen=True)
class MetricsConfig:
    every: int = field(10, min=0, help="epochs between FID/KID evaluations; 0 = only at the end")
    num_samples: int = field(1000, min=2, help="generated images per evaluation")
    feature_extractor: Literal["auto", "inception-v3-compat", "domain"] = "auto"
    inception_weights: Optional[str] = field(None, help="local torch-fidelity Inception weights (.pth)")
    domain_encoder_epochs: int = field(DEFAULT_EPOCHS, min=1, help="training epochs of the domain feature encoder")
    batch_size: int = field(100, min=1)


@dataclass(frozen=True)
class OutputConfig:
    name: Optional[str] = field(None, plain_name=True, help="run name; default: the config file's stem")
    results_dir: str = field("results", help="the run's folder is <results_dir>/gan/<name>/ (training.gan.run_folder)")
    synthetic_dir: str = field("data/synthetic", help="generate_samples.py --config writes to <synthetic_dir>/<name>/")
    tensorboard: bool = field(False, help="also log to the run's tensorboard/ folder (needs the tensorboard package)")


@dataclass(frozen=True)
class GANConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def validate(self) -> None:
        if self.loss.name == "wasserstein" and self.loss.gp_weight <= 0:
            raise ConfigError("'loss.name' = wasserstein needs 'loss.gp_weight' > 0 "
                              "(the critic is kept 1-Lipschitz by the gradient penalty)")
        if self.model.conditional and self.data.train_on != "all_classes":
            raise ConfigError("'model.conditional' = true needs 'data.train_on' = all_classes "
                              "(a conditional GAN learns every class)")
        if self.model.freeze_d_blocks and self.train.init_from is None:
            raise ConfigError("'model.freeze_d_blocks' keeps pretrained D blocks fixed: it needs 'train.init_from'")
        levels = levels_for(self.data.image_size)               # D's conv blocks: 32 px -> 3
        if self.model.freeze_d_blocks >= levels:
            raise ConfigError(f"'model.freeze_d_blocks' = {self.model.freeze_d_blocks}: D has {levels} conv blocks at "
                              f"{self.data.image_size} px and at least the last must train")
        if self.loss.name == "wasserstein" and self.model.d_norm == "batch":
            raise ConfigError("'loss.name' = wasserstein conflicts with 'model.d_norm' = batch "
                              "(batch norm breaks the per-sample gradient penalty)")
