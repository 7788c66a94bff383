"""A small encoder trained on the real training images of a dataset, used as a feature space for FID/KID.

Inception features come from ImageNet photographs and need weights that an offline machine may
not have; for 28-128 px grey ultrasound or dermoscopy crops they also mean less than features
learnt on the domain itself. This encoder is trained on the real training split (all classes)
with two objectives, so its 128-d embedding keeps both what separates the classes (cross-entropy)
and what the images look like (reconstruction of a 16x16 thumbnail), rather than collapsing to
the class decision alone. It is cached by a hash of the data and its settings.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.core.checkpoint_io import load_checkpoint
from training.core.errors import DataError
from training.core.progress import progress
from training.core.verified_cache import read_verified, write_verified
from training.data.folders import tensor_digest, to_float

ENCODER_VERSION = 2      # bump when the architecture or training recipe changes: invalidates caches
EMBED_DIM = 128
DEFAULT_EPOCHS = 15       # training epochs; GAN monitoring and QA share the default, so they share the cached encoder
MAX_EPOCHS = 1000          # the most --encoder_epochs takes
THUMBNAIL = 16


class DomainEncoder(nn.Module):
    def __init__(self, channels: int, image_size: int, num_classes: int, width: int = 32):
        super().__init__()
        self.channels, self.image_size, self.num_classes = channels, image_size, num_classes
        layers, in_ch = [], channels
        for out_ch in (width, width * 2, width * 4, width * 8):      # four stride-2 stages
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1), nn.BatchNorm2d(out_ch),
                       nn.LeakyReLU(0.2, inplace=True)]
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())  # (B, 8w)
        self.embed = nn.Linear(in_ch, EMBED_DIM)
        self.classify = nn.Linear(EMBED_DIM, num_classes)
        self.decode = nn.Linear(EMBED_DIM, channels * THUMBNAIL * THUMBNAIL)
        # Per-dimension statistics of the real training embeddings, set after training: features are
        # reported in units of the real data's spread, so FID does not depend on the encoder's scale.
        self.register_buffer("feature_mean", torch.zeros(EMBED_DIM))
        self.register_buffer("feature_std", torch.ones(EMBED_DIM))

    def raw_embedding(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> float (B, 128), before standardisation."""
        x = to_float(images_uint8)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        return self.embed(self.features(x))

    def standardised(self, raw: torch.Tensor) -> torch.Tensor:
        """A raw embedding standardised by the real training set's statistics: the feature FID/KID use."""
        return (raw - self.feature_mean) / self.feature_std

    def embedding(self, images_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 (B, C, H, W) -> the feature used for FID/KID."""
        return self.standardised(self.raw_embedding(images_uint8))

    def forward(self, images_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = self.raw_embedding(images_uint8)
        recon = self.decode(z).view(-1, self.channels, THUMBNAIL, THUMBNAIL)
        return z, self.classify(z), recon

    @torch.no_grad()
    def fit_feature_statistics(self, images_uint8: torch.Tensor, batch_size: int = 256) -> None:
        z = torch.cat([self.raw_embedding(images_uint8[i:i + batch_size]) for i in range(0, len(images_uint8), batch_size)])
        self.feature_mean.copy_(z.mean(0))
        self.feature_std.copy_(z.std(0).clamp(min=1e-6))


def _thumbnail(images_uint8: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(to_float(images_uint8), THUMBNAIL)


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal/vertical flips: lesions and ultrasound crops have no canonical orientation."""
    flip_h = torch.rand(len(images), generator=generator) < 0.5
    flip_v = torch.rand(len(images), generator=generator) < 0.5
    images = torch.where(flip_h.view(-1, 1, 1, 1), images.flip(-1), images)
    return torch.where(flip_v.view(-1, 1, 1, 1), images.flip(-2), images)


def train_domain_encoder(images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int,
                         seed: int = 0, batch_size: int = 64, device: str = "cpu") -> DomainEncoder:
    """Train on uint8 (N, C, H, W) images and int labels; deterministic for a seed on one machine."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DomainEncoder(images.shape[1], images.shape[-1], num_classes).to(device)
    # Balanced class weights: the minority class must shape the features as much as the majority.
    counts = torch.bincount(labels, minlength=num_classes).clamp(min=1).float()
    class_weights = (counts.sum() / (num_classes * counts)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in progress(range(epochs), desc="domain encoder", unit="epoch"):
        order = torch.randperm(len(images), generator=generator)
        for start in range(0, len(images), batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:   # batch norm needs two samples
                continue
            x = _augment(images[idx], generator).to(device)
            y = labels[idx].to(device)
            _, logits, recon = model(x)
            loss = F.cross_entropy(logits, y, weight=class_weights) + 10 * F.mse_loss(recon, _thumbnail(x))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model = model.eval().cpu()
    model.fit_feature_statistics(images)
    return model


def encoder_cache_path(cache_dir: str | Path, images: torch.Tensor, labels: torch.Tensor, epochs: int) -> Path:
    """Where the encoder for these images and settings is cached (the name is a content hash)."""
    key = f"{tensor_digest(images)}-{tensor_digest(labels.view(1, 1, 1, -1))}-e{epochs}-v{ENCODER_VERSION}"
    return Path(cache_dir) / f"domain_encoder_{key}.pth"


def get_domain_encoder(images: torch.Tensor, labels: torch.Tensor, class_names: list[str], epochs: int,
                       cache_dir: str | Path, device: str = "cpu") -> Path:
    """Return the path of a trained encoder for these images, training and caching it when missing.

    A cached file is used only when it matches the digest written with it (`training.core.verified_cache`);
    one that does not (edited, truncated, planted, or from before digests) is trained again and replaced.
    """
    path = encoder_cache_path(cache_dir, images, labels, epochs)
    problem = cached_encoder_problem(path)
    if problem is not None:
        why = "" if problem == "missing" else f"the cached {path.name} is not used ({problem}); "
        print(f"training the domain feature encoder: {why}{len(images)} real images at {images.shape[-1]} px, {epochs} "
              f"epochs (cached in {path.parent} for later runs)", flush=True)
        model = train_domain_encoder(images, labels, len(class_names), epochs, device=device)
        buffer = io.BytesIO()
        torch.save({"state_dict": model.state_dict(), "channels": model.channels,
                    "image_size": model.image_size, "class_names": class_names,
                    "version": ENCODER_VERSION}, buffer)
        write_verified(path, buffer.getvalue())
    return path


def cached_encoder_problem(path: Path) -> str | None:
    """Why the encoder cached at `path` cannot be used ('missing', a digest mismatch, not an encoder); None if it can."""
    if not path.is_file():
        return "missing"
    if read_verified(path) is None:
        return "it does not match its recorded digest"
    try:
        load_domain_encoder(path)       # tensors only: a pickle with a forged digest is refused, never run
    except DataError:
        return "it is not a domain encoder of this version"
    return None


def load_domain_encoder(path: str | Path) -> DomainEncoder:
    """The encoder cached at `path`, read only when it matches its digest, and without unpickling objects."""
    data = read_verified(path)
    if data is None:
        raise DataError(f"{path} is missing or does not match its recorded digest ({Path(path).name}.sha256); "
                        "delete it and the encoder is trained again")
    state = load_checkpoint(path, data)
    try:
        model = DomainEncoder(int(state["channels"]), int(state["image_size"]), len(state["class_names"]))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"{path} is not a domain encoder of this version ({type(err).__name__}); delete it and "
                        "it is trained again") from None
    return model.eval()
