"""FID, KID, IS and precision/recall of generated images against real ones, via torch-fidelity.

Images are uint8 tensors (N, C, H, W). torch-fidelity computes the features and the metrics, but
reads no file of its own: its on-disk cache unpickles whatever sits under its name
(`torch.load(weights_only=False)`), so it is off. The real set's features are cached here instead, as
a `.npz` of plain arrays (read with `allow_pickle=False`) whose digest is checked on every read
(`training.core.verified_cache`), under a name built from a hash of the real pixels and the feature
space: computed once per dataset and extractor, never reused after either changes, and computed
again when the file was damaged or replaced.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_featuresdict_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_featuresdict_to_metric
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL, prc_featuresdict_to_metric
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from quality.features.extractors import FeatureSpace, inception_weights_file
from training.core.errors import DataError
from training.core.verified_cache import read_verified, write_verified
from training.data.folders import tensor_digest

KID_MAX_SUBSET = 1000     # torch-fidelity's default; smaller sets use all their samples
PRC_NEIGHBORHOOD = 3
FEATURES_KEY = "features"


class UInt8Images(Dataset):
    """A uint8 (N, C, H, W) tensor as a torch-fidelity input; grey is repeated to RGB for Inception."""

    def __init__(self, images: torch.Tensor, rgb: bool):
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(f"expected uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images, self.rgb = images, rgb

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = self.images[i]
        return x.expand(3, -1, -1) if self.rgb and x.shape[0] == 1 else x


def feature_layer(space: FeatureSpace, metric: str) -> str:
    return FEATURE_EXTRACTORS_REGISTRY[space.extractor].get_default_feature_layer_for_metric(metric)


def create_extractor(space: FeatureSpace, layers: list[str], cuda: bool):
    """torch-fidelity's extractor for `space`, its weights read safely (never a file torch-fidelity unpickles)."""
    weights = inception_weights_file(space.weights_path)[0] if space.kind == "inception" else space.weights_path
    try:
        with contextlib.redirect_stdout(io.StringIO()):     # torch-fidelity prints on stdout
            return create_feature_extractor(space.extractor, layers, cuda=cuda, verbose=False,
                                            feature_extractor_weights_path=weights)
    except RuntimeError as err:     # e.g. tensors of other shapes than torch-fidelity's Inception
        if space.kind != "inception" or "state_dict" not in str(err):
            raise
        first = str(err).strip().splitlines()[0][:160]
        raise DataError(f"{space.weights_path} does not fit torch-fidelity's Inception ({first})") from None


def _features(images: torch.Tensor, space: FeatureSpace, extractor, cuda: bool, batch_size: int) -> dict:
    with contextlib.redirect_stdout(io.StringIO()):
        return get_featuresdict_from_dataset(UInt8Images(images, rgb=space.kind == "inception"), extractor,
                                             batch_size, cuda, save_cpu_ram=True, verbose=False)


def extract_features(images: torch.Tensor, space: FeatureSpace, device: str = "cpu",
                     batch_size: int = 100) -> np.ndarray:
    """Features of uint8 (N, C, H, W) images in the layer torch-fidelity uses for FID: (N, D)."""
    cuda = torch.device(device).type == "cuda"
    layer = feature_layer(space, "fid")
    extractor = create_extractor(space, [layer], cuda)
    return _features(images, space, extractor, cuda, batch_size)[layer].double().numpy()


def real_cache_name(real: torch.Tensor, space: FeatureSpace) -> str:
    return f"real-{tensor_digest(real)}-{space.cache_tag}"


def real_cache_file(cache_dir: str | Path, real: torch.Tensor, space: FeatureSpace, layer: str) -> Path:
    """Where the real set's features in `layer` are cached (beside it: its `.sha256` digest)."""
    return Path(cache_dir) / f"{real_cache_name(real, space)}-{layer}.npz"


def _read_cached_features(path: Path, count: int) -> torch.Tensor | None:
    """The cached features when the file matches its digest and holds `count` finite rows; else None."""
    data = read_verified(path)
    if data is None:
        if path.is_file():
            print(f"note: {path} does not match its recorded digest; computing the real features again", flush=True)
        return None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            features = npz[FEATURES_KEY]
    except (ValueError, OSError, KeyError):
        return None
    if (features.ndim != 2 or len(features) != count or features.dtype not in (np.float32, np.float64)
            or not np.isfinite(features).all()):
        return None
    return torch.from_numpy(features)


def _write_cached_features(path: Path, features: torch.Tensor) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **{FEATURES_KEY: features.numpy()})
    write_verified(path, buffer.getvalue())


def fidelity_metrics(fake: torch.Tensor, real: torch.Tensor, space: FeatureSpace, *, cache_dir: str | Path,
                     device: torch.device | str = "cpu", prc: bool = False,
                     batch_size: int = 100) -> dict:
    """FID and KID (plus IS where the space has a classifier head: Inception; precision/recall when `prc`) of
    `fake` against `real`.

    KID's subset size is min(1000, len(fake), len(real)): torch-fidelity's default of 1000 fails on
    the few hundred images of a minority class. Returns plain floats (None where not computed).
    The metrics are torch-fidelity's (its defaults, as `calculate_metrics` uses them); the real
    features come from this module's cache in `cache_dir`.
    """
    kid_subset = min(KID_MAX_SUBSET, len(fake), len(real))
    want_kid = kid_subset >= 2
    want_prc = prc and min(len(fake), len(real)) > PRC_NEIGHBORHOOD
    want_isc = space.supports_isc
    cuda = torch.device(device).type == "cuda"
    metrics = ["fid"] + ["kid"] * want_kid + ["prc"] * want_prc
    real_layers = sorted({feature_layer(space, m) for m in metrics})
    fake_layers = sorted(set(real_layers) | ({feature_layer(space, "isc")} if want_isc else set()))

    extractor = create_extractor(space, fake_layers, cuda)
    fake_features = _features(fake, space, extractor, cuda, batch_size)
    real_features = {}
    for layer in real_layers:
        path = real_cache_file(cache_dir, real, space, layer)
        cached = _read_cached_features(path, len(real))
        if cached is None:
            cached = _features(real, space, extractor, cuda, batch_size)[layer]
            _write_cached_features(path, cached)
        real_features[layer] = cached.to(fake_features[layer].dtype)

    options = {"verbose": False, "kid_subset_size": kid_subset, "prc_neighborhood": PRC_NEIGHBORHOOD,
               "save_cpu_ram": True}
    result = {}
    with contextlib.redirect_stdout(io.StringIO()):
        fid_layer = feature_layer(space, "fid")
        result.update(fid_statistics_to_metric(fid_features_to_statistics(fake_features[fid_layer]),
                                               fid_features_to_statistics(real_features[fid_layer]), False))
        if want_kid:
            result.update(kid_featuresdict_to_metric(fake_features, real_features, feature_layer(space, "kid"), **options))
        if want_isc:
            result.update(isc_featuresdict_to_metric(fake_features, feature_layer(space, "isc"), **options))
        if want_prc:
            result.update(prc_featuresdict_to_metric(fake_features, real_features, feature_layer(space, "prc"), **options))

    def number(key: str) -> float | None:
        value = result.get(key)
        return None if value is None or not math.isfinite(float(value)) else float(value)

    return {
        "fid": number(KEY_METRIC_FID),
        "kid_mean": number(KEY_METRIC_KID_MEAN),
        "kid_std": number(KEY_METRIC_KID_STD),
        "is_mean": number(KEY_METRIC_ISC_MEAN),
        "is_std": number(KEY_METRIC_ISC_STD),
        "precision": number(KEY_METRIC_PRECISION),
        "recall": number(KEY_METRIC_RECALL),
        "feature_extractor": space.kind,
        "num_fake": len(fake),
        "num_real": len(real),
        "kid_subset_size": kid_subset if want_kid else None,
    }


def fid_from_features(fake_features: np.ndarray, real_features: np.ndarray) -> float | None:
    """FID of two sets of FID-layer features (N, D), through torch-fidelity's statistics and metric:
    what `fidelity_metrics` computes, for features a caller already holds. None when not finite."""
    stats = [fid_features_to_statistics(torch.as_tensor(f, dtype=torch.float64)) for f in (fake_features, real_features)]
    value = float(fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID])
    return value if math.isfinite(value) else None
