"""Feature spaces for FID/KID/precision-recall, all computed through torch-fidelity.

* `inception-v3-compat`: torch-fidelity's own Inception, comparable with published FIDs; needs its
  weights file (downloaded once by torch-fidelity, or a local file from `metrics.inception_weights`).
* `domain`: `quality.features.domain_encoder` trained on the dataset's real training split, registered with
  torch-fidelity as a custom `FeatureExtractorBase`, so the metrics work offline.
* `auto`: Inception when its weights are on disk, the domain encoder otherwise.

No weights file is unpickled: torch-fidelity itself reads Inception weights with `weights_only=False`,
so we read the file with `weights_only=True` (tensors only, or a one-line refusal), and hand
torch-fidelity a copy of those tensors serialised by us (`inception_weights_file`), never the file.
"""

from __future__ import annotations

import functools
import hashlib
import io
import socket
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from quality.features.domain_encoder import get_domain_encoder, load_domain_encoder
from quality.features.image_sets import pixel_hashes
from training.core.checkpoint_io import load_checkpoint
from training.core.errors import ConfigError, DataError, UserError
from training.data.folders import load_split

INCEPTION = "inception-v3-compat"
DOMAIN = "medgan-domain"          # the name under which the domain encoder is registered
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class FeatureSpace:
    """A resolved feature extractor: its torch-fidelity name, weights file, and a cache tag."""

    kind: str                 # "inception" or "domain"
    extractor: str            # name in torch-fidelity's registry
    weights_path: str | None
    cache_tag: str            # changes whenever the features would change
    # Pixel hashes of the images the encoder trained on (domain space); None: it trained on none of ours.
    trained_on: frozenset[str] | None = field(default=None, repr=False, compare=False)

    def unseen(self, images: torch.Tensor) -> np.ndarray:
        """Which of uint8 (N, C, H, W) `images` the feature extractor never trained on, (N,) bool.

        An encoder's features of its own training images are special: measured on the demo data, fresh
        draws from the real distribution sat at a domain-FID 3.25x the real-vs-real baseline when that
        baseline was drawn from the encoder's training images (bench/bench_qa_calibration.py).
        """
        if self.trained_on is None:
            return np.ones(len(images), dtype=bool)
        return np.array([h not in self.trained_on for h in pixel_hashes(images)], dtype=bool)

    @property
    def supports_isc(self) -> bool:
        return self.kind == "inception"   # IS needs ImageNet class logits


class DomainFeatureExtractor(FeatureExtractorBase):
    """torch-fidelity adapter for `DomainEncoder`: uint8 (B, C, H, W) in, 128-d embeddings out."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None,
                 **kwargs):
        super().__init__(name, features_list)
        if not feature_extractor_weights_path:
            raise UserError("the domain feature extractor needs its encoder weights file")
        self.encoder = load_domain_encoder(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("embedding", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return {"isc": "logits"}.get(metric, "embedding")

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, 32, 32, dtype=torch.uint8)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        raw = self.encoder.raw_embedding(x)
        features = {"embedding": self.encoder.standardised(raw),
                    "logits": self.encoder.classify(raw)}
        return tuple(features[name] for name in self.features_list)


def register_domain_extractor() -> None:
    if DOMAIN not in FEATURE_EXTRACTORS_REGISTRY:
        torch_fidelity.register_feature_extractor(DOMAIN, DomainFeatureExtractor)


def local_inception_weights(configured: str | None) -> Path | None:
    """The Inception weights file on disk: the configured one, or torch-fidelity's download cache."""
    if configured:
        path = Path(configured)
        if not path.is_file():
            raise ConfigError(f"'metrics.inception_weights' file not found: {path}")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return cached if cached.is_file() else None


def download_inception_weights() -> Path:
    """Let torch-fidelity download its Inception weights, with a timeout instead of a hang."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:    # weights_only: the download is read as tensors only (torch.hub's default would unpickle it)
        torch.hub.load_state_dict_from_url(URL_INCEPTION_V3, progress=False, weights_only=True)
    except Exception as err:  # any network failure means the same thing to the user
        raise UserError(f"Inception weights are not on this machine and could not be downloaded ({err.__class__.__name__}); "
                        f"put {INCEPTION_FILE} in {Path(torch.hub.get_dir()) / 'checkpoints'} or set "
                        "metrics.inception_weights=PATH, or use metrics.feature_extractor=domain") from None
    finally:
        socket.setdefaulttimeout(previous)
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def inception_weights_file(path: str | Path) -> tuple[io.BytesIO, str]:
    """A file-like copy of the Inception weights at `path` for torch-fidelity, and a digest of them.

    The file is read with `weights_only=True` (a pickle payload is refused in one line, and never runs)
    and must be a state dict of tensors; the copy holds those tensors serialised by us, so torch-fidelity's
    own `torch.load(..., weights_only=False)` of it unpickles nothing but tensors.
    """
    path = Path(path)
    stat = path.stat()
    data, digest = _safe_inception_weights(str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    return io.BytesIO(data), digest


@functools.lru_cache(maxsize=1)   # one weights file per process; read again when it changes on disk
def _safe_inception_weights(path: str, mtime_ns: int, size: int) -> tuple[bytes, str]:
    state = load_checkpoint(path)
    if (not isinstance(state, dict) or not state
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())):
        raise DataError(f"{path} is not Inception weights (expected torch-fidelity's {INCEPTION_FILE}: "
                        "a state dict of tensors)")
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()[:16]


def inception_space(configured_weights: str | None, allow_download: bool) -> FeatureSpace | None:
    path = local_inception_weights(configured_weights)
    if path is None and allow_download:
        path = download_inception_weights()
    if path is None:
        return None
    _, digest = inception_weights_file(path)     # read (safely) now: a bad file fails before any training
    # The cache tag follows the weights: features cached with other Inception weights are never reused.
    return FeatureSpace("inception", INCEPTION, str(path), f"inception-{digest}")


def domain_space(encoder_path: str | Path, trained_on: frozenset[str] | None = None) -> FeatureSpace:
    register_domain_extractor()
    return FeatureSpace("domain", DOMAIN, str(encoder_path), "domain-" + Path(encoder_path).stem.split("_", 2)[-1],
                        trained_on)


def resolve_feature_space(choice: str, *, data_root: str | Path, image_size: int, channels: int,
                          inception_weights: str | None, encoder_epochs: int, cache_dir: str | Path,
                          device: str = "cpu", held_out: torch.Tensor | None = None) -> FeatureSpace:
    """Turn `metrics.feature_extractor` (auto | inception-v3-compat | domain) into a ready feature space.

    `auto` never touches the network: Inception only when its weights are already on disk. An explicit
    `inception-v3-compat` may download them (with a timeout) through torch-fidelity. The domain encoder
    trains on the train split less any image pixel-identical to one of `held_out` (uint8, N x C x H x W).
    """
    if choice in ("auto", INCEPTION):
        space = inception_space(inception_weights, allow_download=choice == INCEPTION)
        if space is not None:
            return space

    images, labels, class_names = load_split(data_root, "train", image_size, channels)
    hashes = pixel_hashes(images)
    if held_out is not None:
        excluded = set(pixel_hashes(held_out))
        keep = torch.tensor([h not in excluded for h in hashes])
        images, labels, hashes = images[keep], labels[keep], [h for h, k in zip(hashes, keep) if k]
    path = get_domain_encoder(images, labels, class_names, encoder_epochs, Path(cache_dir), device)
    return domain_space(path, frozenset(hashes))
