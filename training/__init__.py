"""medgan-augment: GAN augmentation of the minority class of medical-imaging datasets."""
