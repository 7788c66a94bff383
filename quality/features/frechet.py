"""FID, KID, IS and precision/recall of generated images against real ones, via torch-fidelity.

Images are uint8 tensors (N, C, H, W). The real set's features are cached by torch-fidelity under
a name built from a hash of the real pixels and the feature space, so they are computed once per
dataset and extractor, and never reused after either changes.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch.utils.data import Dataset
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD
from torch_fidelity.metric_prc import KEY_METRIC_PRECISION, KEY_METRIC_RECALL
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from quality.features.extractors import FeatureSpace
from training.data.folders import tensor_digest

KID_MAX_SUBSET = 1000     # torch-fidelity's default; smaller sets use all their samples
PRC_NEIGHBORHOOD = 3


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


def extract_features(images: torch.Tensor, space: FeatureSpace, device: str = "cpu",
                     batch_size: int = 100) -> np.ndarray:
    """Features of uint8 (N, C, H, W) images in the layer torch-fidelity uses for FID: (N, D)."""
    cuda = torch.device(device).type == "cuda"
    layer = FEATURE_EXTRACTORS_REGISTRY[space.extractor].get_default_feature_layer_for_metric("fid")
    extractor = create_feature_extractor(space.extractor, [layer], cuda=cuda, verbose=False,
                                         feature_extractor_weights_path=space.weights_path)
    features = get_featuresdict_from_dataset(UInt8Images(images, rgb=space.kind == "inception"), extractor,
                                             batch_size, cuda, save_cpu_ram=True, verbose=False)
    return features[layer].double().numpy()


def real_cache_name(real: torch.Tensor, space: FeatureSpace) -> str:
    return f"real-{tensor_digest(real)}-{space.cache_tag}"


def fidelity_metrics(fake: torch.Tensor, real: torch.Tensor, space: FeatureSpace, *, cache_dir: str | Path,
                     device: torch.device | str = "cpu", isc: bool = True, prc: bool = False,
                     batch_size: int = 100) -> dict:
    """FID and KID (plus IS for Inception, precision/recall when `prc`) of `fake` against `real`.

    KID's subset size is min(1000, len(fake), len(real)): torch-fidelity's default of 1000 fails on
    the few hundred images of a minority class. Returns plain floats (None where not computed).
    """
    kid_subset = min(KID_MAX_SUBSET, len(fake), len(real))
    want_prc = prc and min(len(fake), len(real)) > PRC_NEIGHBORHOOD
    want_isc = isc and space.supports_isc
    rgb = space.kind == "inception"
    with contextlib.redirect_stdout(io.StringIO()):   # torch-fidelity prints a banner on stdout
        result = torch_fidelity.calculate_metrics(
            input1=UInt8Images(fake, rgb), input2=UInt8Images(real, rgb),
            input2_cache_name=real_cache_name(real, space), cache_root=str(cache_dir), cache=True,
            fid=True, kid=kid_subset >= 2, isc=want_isc, prc=want_prc,
            feature_extractor=space.extractor, feature_extractor_weights_path=space.weights_path,
            kid_subset_size=kid_subset, prc_neighborhood=PRC_NEIGHBORHOOD,
            cuda=torch.device(device).type == "cuda", batch_size=batch_size, save_cpu_ram=True, verbose=False,
        )

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
        "kid_subset_size": kid_subset if kid_subset >= 2 else None,
    }


def fid_from_features(fake_features: np.ndarray, real_features: np.ndarray) -> float | None:
    """FID of two sets of FID-layer features (N, D), through torch-fidelity's statistics and metric:
    what `fidelity_metrics` computes, for features a caller already holds. None when not finite."""
    stats = [fid_features_to_statistics(torch.as_tensor(f, dtype=torch.float64)) for f in (fake_features, real_features)]
    value = float(fid_statistics_to_metric(*stats, verbose=False)[KEY_METRIC_FID])
    return value if math.isfinite(value) else None
