"""medgan-augment: GAN augmentation of the minority class of medical-imaging datasets."""

from training.core.version import __version__  # noqa: F401  (medgan_augment's version: `training.__version__`)
