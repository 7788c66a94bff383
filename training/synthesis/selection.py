"""Selecting synthetic images: score a larger pool, drop near-copies of real images, keep the best share.

    summary = select_synthetic("data/synthetic/pool", "data/processed/demo/train/malignant",
                               "data/synthetic/selected", keep=1000)

The pool is a folder made by generate_samples.py (training.synthesis.sampling). Every usable image of
it is scored by a named score of `SCORES` (higher is better); those that are near-copies of a real
training image (a stricter rule than quality/checks/memorisation's, below) are dropped; the `keep` best of the rest
(ties broken by pool index, so a re-run keeps the same images) go to a new folder of the same layout:

    synthetic_<class>_000000.png ...   rank 0 (the best) first: hard links to the pool's files (copies
                                       where links are impossible); the pool is never modified
    manifest.jsonl                     the pool's records, with file/index set to the rank and
                                       score, score_name, rank, pool_file, pool_index added; index = rank,
                                       so a consumer that takes the first N images takes the N best
    selection.json                     the score of every pool image and its fate, the cut, what ran
    selection_scores.png               the pool's scores with the cut

A near-copy is an image pixel-identical to a real one, or closer to a real image than the 1st
percentile of the real images' own nearest-neighbour distances in pixels *or* in domain-encoder
features. The memorisation check calls an image a possible copy only when it is that close in both
(a copy is close in every representation, and one space alone gives false alarms on sets without
copies); dropping the images close in either space is the cautious side of that line. By chance about
1-2 % of independent draws fall below it in each space, so a few per cent of a good pool are dropped:
the price of never training on a patient image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from quality.checks.memorisation import COPY_PERCENTILE, nearest_real
from quality.features.domain_encoder import DEFAULT_EPOCHS
from quality.features.extractors import FeatureSpace, resolve_feature_space
from quality.features.frechet import extract_features
from quality.features.image_sets import (
    DecodedFolder,
    check_colour_modes,
    decode_folder,
    default_format,
    flatten,
    pixel_hashes,
    stack,
    to_unit,
)
from training.core import atomic
from training.core.errors import DataError, UserError
from training.core.outputs import dataset_holding
from training.core.plotting import subplots
from training.core.progress import progress
from training.core.registry import Registry
from training.core.run_info import run_info
from training.data.folders import link_or_copy
from training.data.images import pixel_sha256, read_image
from training.data.processed import infer_data_root
from training.data.synthetic_folder import (
    SELECTION_HISTOGRAM,
    check_output_dir,
    read_synthetic,
    read_synthetic_manifest,
    write_synthetic_manifest,
)
from training.synthesis.sampling import classifier_confidence

SELECTION = "selection.json"
SELECTION_VERSION = 1
REALISM_K = 3                # neighbourhood size of the real manifold (Kynkaanniemi et al. 2019 use k = 3)
REALISM_EPS = 1e-5           # keeps the ratio finite for a pool image on top of a real one (as the public code)
CLASSIFIER_BATCH = 256
NEEDS_CLASSIFIER = ("the classifier score needs a classifier: --filter_classifier PATH (train_classifier.py's "
                    "best_model.pth, trained on real images only)")

KEPT, NEAR_COPY, NOT_KEPT = "kept", "near_copy", "not_kept"        # the fate of each pool image


@dataclass(frozen=True)
class Pool:
    """The usable images of a pool folder (less filtered-out and reviewed-out ones), in index order."""

    folder: Path
    records: list[dict]          # the pool's manifest records, in the order of `images`
    images: torch.Tensor         # uint8 (N, C, H, W), in the real images' channel count
    class_name: str
    num_excluded: int            # records the generator's filter or a reviewer left out


@dataclass
class ScoreInputs:
    """What a score sees: the pool, the real training images of its class, and how to get features."""

    pool: Pool
    real: torch.Tensor                              # uint8 (M, C, H, W), at the pool's size
    device: torch.device
    classifier: Path | None
    feature_space: Callable[[], FeatureSpace]       # trains the domain encoder, or loads it from the cache

    @cached_property
    def space(self) -> FeatureSpace:
        return self.feature_space()

    @cached_property
    def features(self) -> tuple[np.ndarray, np.ndarray]:
        """Domain-encoder features of (real, pool), (M, D) and (N, D): computed once, shared by the score
        and the near-copy rule."""
        return (extract_features(self.real, self.space, str(self.device)),
                extract_features(self.pool.images, self.space, str(self.device)))

    def encoder_used(self) -> str | None:
        """The domain encoder file, when a score or the near-copy rule needed features."""
        return self.space.weights_path if "space" in vars(self) else None     # cached_property keeps it in vars


# Per-image scores of a pool, higher is better; `--score` picks one by name.
SCORES = Registry("selection score", "--score")


@SCORES.register("realism")
def _realism(inputs: ScoreInputs) -> np.ndarray:
    real, pool = inputs.features
    return realism_score(real, pool)


@SCORES.register("classifier")
def _classifier(inputs: ScoreInputs) -> np.ndarray:
    # select_synthetic refuses this score without a classifier before any work. The same function
    # generate_samples.py --filter_classifier scores with: one place scores with a classifier.
    confidence = classifier_confidence(inputs.classifier, inputs.pool.class_name, inputs.device)
    pixels = inputs.pool.images.permute(0, 2, 3, 1).numpy()                  # (N, H, W, C), as the filter sees them
    return np.concatenate([confidence(pixels[i:i + CLASSIFIER_BATCH]) for i in
                           progress(range(0, len(pixels), CLASSIFIER_BATCH), desc="classifier score", unit="batch")])


def knn_radii(real: np.ndarray, k: int = REALISM_K) -> np.ndarray:
    """(M,) distance of each real feature vector to its k-th nearest other real one."""
    x = torch.from_numpy(np.asarray(real, dtype=np.float64))
    distances = torch.cdist(x, x)                                          # (M, M), 0 on the diagonal
    return distances.topk(k + 1, dim=1, largest=False).values[:, k].numpy()   # position 0 is the vector itself


def realism_score(real: np.ndarray, query: np.ndarray, k: int = REALISM_K, chunk_rows: int = 1024) -> np.ndarray:
    """Realism score of each query vector (Kynkaanniemi et al. 2019, eq. 3): max_i r_i / ||q - x_i||.

    x_i are the real vectors, r_i the distance of x_i to its k-th nearest real neighbour; as in the
    paper only the real vectors with r_i at most the median radius count, so that one outlier's
    large sphere does not make everything near it look real. A score of 1 or more means the query lies
    inside some real vector's k-NN sphere. (The public code ranks by the same ratio of squared
    distances: the same order.)

    Args:
        real: (M, D) real feature vectors, M > k.
        query: (N, D) vectors to score.
    Returns:
        float64 (N,) scores.
    """
    if len(real) <= k:
        raise DataError(f"the realism score needs more than {k} real images, got {len(real)}")
    radii = knn_radii(real, k)
    central = radii <= np.median(radii)
    centres = torch.from_numpy(np.asarray(real, dtype=np.float64)[central])          # (M', D)
    r = torch.from_numpy(radii[central])                                               # (M',)
    q = torch.from_numpy(np.asarray(query, dtype=np.float64))
    scores = [(r[None, :] / (torch.cdist(q[i:i + chunk_rows], centres) + REALISM_EPS)).max(dim=1).values
              for i in range(0, len(q), chunk_rows)]                                   # each (chunk,)
    return torch.cat(scores).numpy()


def near_copies(real: torch.Tensor, pool: torch.Tensor, real_features: np.ndarray | None = None,
                pool_features: np.ndarray | None = None) -> tuple[list[str | None], dict[str, float]]:
    """Which pool images are near-copies of a real image: close to one in any space (the module docstring).

    Args:
        real, pool: uint8 (M, C, H, W) and (N, C, H, W) at one size and channel count; M >= 2.
        real_features, pool_features: their feature vectors, for the feature-space test (optional).
    Returns:
        per pool image "exact", "pixel" or "feature" (the first test it fails) or None, and the
        distance threshold of each space.
    """
    if len(real) < 2:
        raise DataError(f"near-copies are judged against at least 2 real images, got {len(real)}")
    spaces = {"pixel": nearest_real(flatten(to_unit(real)), flatten(to_unit(pool)))}
    if real_features is not None and pool_features is not None:
        spaces["feature"] = nearest_real(real_features, pool_features)
    real_hashes = set(pixel_hashes(real))
    reasons: list[str | None] = ["exact" if h in real_hashes else None for h in pixel_hashes(pool)]
    for space, found in spaces.items():
        reasons = [reason or (space if flagged else None) for reason, flagged in zip(reasons, found.close)]
    return reasons, {space: found.threshold for space, found in spaces.items()}


def rank_order(scores: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Pool positions of the candidates, best score first; ties go to the lower pool position."""
    positions = np.flatnonzero(candidates)
    return positions[np.lexsort((positions, -scores[positions]))]


def read_pool(pool_dir: Path) -> tuple[DecodedFolder, list[dict], int]:
    """The pool's usable images (less filtered-out and reviewed-out ones) in index order, each checked
    against the pixel hash its manifest recorded; their records; how many records were left out."""
    images = read_synthetic([pool_dir])[0]
    if not images:
        raise DataError(f"the pool {pool_dir} holds no usable images")
    classes = sorted({image.class_name for image in images})
    if len(classes) > 1:
        raise DataError(f"the pool {pool_dir} mixes classes ({', '.join(classes)}); select from one class's folder")
    records = read_synthetic_manifest(pool_dir)
    pixels = []
    for image in progress(images, desc="reading the pool", unit="img"):
        pixels.append(read_image(image.path))
        if pixel_sha256(pixels[-1]) != image.sha256:
            raise DataError(f"{image.path} does not hold the pixels its manifest records (edited or damaged)")
    decoded = DecodedFolder("synthetic", pool_dir, [image.path for image in images], pixels, len(images), [])
    return decoded, [records[image.index] for image in images], len(records) - len(images)


def domain_space(data_root: Path | None, real_dir: Path, image_size: int, channels: int, epochs: int,
                 cache_dir: Path, device: torch.device) -> Callable[[], FeatureSpace]:
    """The QA domain feature space, resolved when first needed (training the encoder takes a while)."""
    def resolve() -> FeatureSpace:
        if data_root is None:
            raise UserError(f"the domain feature encoder is trained on a processed dataset's train split, and none was "
                            f"found above {real_dir}: pass --data_root data/processed/<dataset>"
                            " (or, with --score classifier, --keep_near_copies)")
        return resolve_feature_space("domain", data_root=data_root, image_size=image_size, channels=channels,
                                     inception_weights=None, encoder_epochs=epochs, cache_dir=cache_dir,
                                     device=str(device))
    return resolve


def check_destination(out_dir: Path, inputs: list[Path], overwrite: bool) -> None:
    """Refuse an output folder that overlaps an input, or that exists and may not be replaced."""
    out = out_dir.resolve()
    for folder in inputs:
        folder = folder.resolve()
        if out == folder or folder in out.parents or out in folder.parents:
            raise UserError(f"--output_dir {out_dir} overlaps {folder}; the inputs are never modified")
    check_output_dir(out_dir)
    if out_dir.exists():
        if not overwrite:
            raise UserError(f"{out_dir} already exists: pass --overwrite to replace it")
        if not (out_dir / SELECTION).is_file():
            raise UserError(f"{out_dir} exists and was not made by select_samples.py (no {SELECTION}); refusing to replace it")


def selected_records(pool: Pool, order: np.ndarray, scores: np.ndarray, score: str) -> dict[int, dict]:
    """The new manifest's records by index (= rank): the pool's record, renamed, with its score."""
    records = {}
    for rank, position in enumerate(order):
        record = pool.records[position]
        records[rank] = {**record, "file": f"synthetic_{pool.class_name}_{rank:06d}.png", "index": rank,
                         "score": float(scores[position]), "score_name": score, "rank": rank,
                         "pool_file": record["file"], "pool_index": record["index"]}
    return records


def plot_scores(scores: np.ndarray, near: np.ndarray, threshold: float, score: str, path: Path) -> None:
    """Histogram of the pool's scores (near-copies apart) with the cut."""
    fig, ax = subplots(figsize=(5, 3.5))
    candidates = scores[~near]
    # Realism scores span decades (an image on top of a real one scores ~1e5): a log axis keeps the bulk visible.
    log = bool(len(candidates)) and candidates.min() > 0 and candidates.max() / candidates.min() > 100
    bins = np.geomspace(candidates.min(), candidates.max(), 40) if log else 40
    ax.hist(candidates, bins=bins, alpha=0.7, label=f"pool ({len(candidates)})")
    if near.any():
        ax.hist(np.clip(scores[near], candidates.min(), candidates.max()), bins=bins, alpha=0.7,
                label=f"near-copies, dropped ({int(near.sum())})")
    ax.axvline(threshold, color="k", linestyle="--", label=f"cut: kept >= {threshold:.3g}")
    ax.set(xlabel=f"{score} score", ylabel="images", xscale="log" if log else "linear")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=100)


def select_synthetic(pool_dir: str | Path, real_dir: str | Path, out_dir: str | Path, keep: int, *,
                     score: str = "realism", classifier: str | Path | None = None, drop_near_copies: bool = True,
                     data_root: str | Path | None = None, cache_dir: str | Path = "results/cache",
                     encoder_epochs: int = DEFAULT_EPOCHS, device: torch.device = torch.device("cpu"),
                     overwrite: bool = False) -> dict:
    """Write the `keep` best images of the pool `pool_dir` (by `score`) into a new folder `out_dir`.

    Args:
        pool_dir: a folder made by generate_samples.py, of one class.
        real_dir: that class's real training images (e.g. data/processed/<dataset>/train/<class>):
            the reference of the realism score and of the near-copy rule.
        out_dir: the new folder; it must not overlap the inputs.
        keep: how many images to keep.
        score: a name in `SCORES`: "realism" (domain-encoder features) or "classifier".
        classifier: for score "classifier": a real-only classifier (train_classifier.py's best_model.pth).
        drop_near_copies: drop near-copies (close to a real image in pixels or features), before ranking.
        data_root: the processed dataset the domain encoder trains on (default: the one above real_dir).
        cache_dir: where QA and training cache domain encoders (shared, so an earlier QA run's is reused).
        encoder_epochs: domain encoder training epochs (part of the cache key; QA's default).
        device: where the encoder and classifier run.
        overwrite: replace an `out_dir` an earlier selection made.
    Returns:
        what selection.json holds.
    """
    pool_dir, real_dir, out_dir = Path(pool_dir), Path(real_dir), Path(out_dir)
    scorer = SCORES[score]                                      # an unknown name fails before any work
    if keep < 1:
        raise UserError(f"--keep must be at least 1, got {keep}")
    if classifier is not None and score != "classifier":
        raise UserError(f"--filter_classifier is for --score classifier (the score is '{score}')")
    if classifier is None and score == "classifier":
        raise UserError(NEEDS_CLASSIFIER)
    check_destination(out_dir, [pool_dir, real_dir], overwrite)
    held = dataset_holding(real_dir)
    if held is not None and held[1] is not None:        # selecting against val/test images tunes the pool to them
        raise UserError(f"--real_dir {real_dir} is in the '{held[1]}' split of {held[0]}: compare with the class's "
                        f"training images ({held[0] / 'train' / real_dir.name})")

    # Load both sets in one format, as QA does: the pool's size, the real images' channels.
    decoded_pool, pool_records, num_excluded = read_pool(pool_dir)
    if keep > len(pool_records):
        raise UserError(f"--keep {keep} is more than the {len(pool_records)} images of the pool {pool_dir}; "
                        "generate a larger pool or keep fewer")
    real_decoded = decode_folder(real_dir, "real", None, 0)
    size, channels = default_format(real_decoded, decoded_pool)
    check_colour_modes(real_decoded, decoded_pool, channels)
    pool = Pool(pool_dir, pool_records, stack(decoded_pool, size, channels).images, pool_records[0]["class"],
                num_excluded)
    real = stack(real_decoded, size, channels).images
    root = Path(data_root) if data_root is not None else infer_data_root(real_dir)
    if data_root is None and root is not None and real_dir.name != pool.class_name:
        raise UserError(f"the pool holds '{pool.class_name}' images but --real_dir is the '{real_dir.name}' class "
                        f"of {root}; compare with {root / real_dir.parent.name / pool.class_name}")
    inputs = ScoreInputs(pool, real, device, Path(classifier) if classifier else None,
                         domain_space(root, real_dir, size, channels, encoder_epochs, Path(cache_dir), device))

    # Score, drop near-copies, rank.
    scores = np.asarray(scorer(inputs), dtype=np.float64)
    if not np.isfinite(scores).all():
        raise DataError(f"the {score} score is not finite for {int((~np.isfinite(scores)).sum())} pool images")
    reasons, thresholds = (near_copies(real, pool.images, *inputs.features) if drop_near_copies
                           else ([None] * len(scores), {}))
    near = np.array([reason is not None for reason in reasons])
    available = int((~near).sum())
    if keep > available:
        raise UserError(f"--keep {keep} is more than the {available} images left of the {len(scores)}-image pool "
                        f"after dropping {int(near.sum())} near-copies of real images; generate a larger pool or keep fewer")
    order = rank_order(scores, ~near)[:keep]
    threshold = float(scores[order[-1]])

    # Write the new folder beside its target and move it into place whole.
    records = selected_records(pool, order, scores, score)
    rank_of = {int(position): rank for rank, position in enumerate(order)}
    summary = {
        "selection_version": SELECTION_VERSION, "score": score, "class": pool.class_name,
        "pool_dir": str(pool_dir), "real_dir": str(real_dir), "data_root": str(root) if root else None,
        "classifier": str(classifier) if classifier else None, "domain_encoder": inputs.encoder_used(),
        "pool_size": len(scores), "pool_excluded": pool.num_excluded, "num_real": len(real),
        "near_copies_dropped": int(near.sum()), "near_copy_rule": {
            "dropped": drop_near_copies, "copy_percentile_of_real_to_real": COPY_PERCENTILE, "thresholds": thresholds},
        "available": available, "keep": keep, "kept": len(order), "score_threshold": threshold,
        "realism_k": REALISM_K if score == "realism" else None,
        "images": [{"pool_file": r["file"], "pool_index": r["index"], "score": float(scores[i]),
                    "fate": KEPT if i in rank_of else NEAR_COPY if near[i] else NOT_KEPT,
                    "rank": rank_of.get(i), "near_copy": reasons[i]} for i, r in enumerate(pool.records)],
        "histogram": SELECTION_HISTOGRAM,
        "run_info": {k: v for k, v in run_info(0, str(device)).items() if k != "seed"},   # nothing here is random
    }
    with atomic.staged_directory(out_dir) as staging:
        for record in progress(records.values(), desc="linking", unit="img"):
            link_or_copy(pool_dir / record["pool_file"], staging / record["file"])
        write_synthetic_manifest(staging, records)
        plot_scores(scores, near, threshold, score, staging / SELECTION_HISTOGRAM)
        atomic.write_json(staging / SELECTION, summary)
    return summary
