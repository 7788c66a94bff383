"""Quality assurance of a folder of synthetic images against the real images they imitate.

    report = run_qa("data/processed/demo/train/malignant", "data/synthetic/demo_gan", "results/qa/demo_gan")

Each check is a pure chain in its own module (load -> features/statistics -> score -> verdict) and
is found here by name in `CHECKS`; `run_qa` loads both folders once, resolves the feature space,
runs every check, draws the contact sheet and writes report.json / report.md / report.html.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from quality.assessment.contact_sheet import contact_sheet
from quality.assessment.report import write_report
from quality.checks.artefacts import check_artefacts
from quality.checks.cnn_detector import EPOCHS as DETECTOR_EPOCHS
from quality.checks.detectability import BOOTSTRAP, check_detectability
from quality.checks.diversity import check_diversity
from quality.checks.fidelity import check_fidelity, split_halves
from quality.checks.memorisation import check_memorisation
from quality.checks.pixel_statistics import check_statistics
from quality.checks.usefulness import check_usefulness
from quality.checks.verdicts import INSUFFICIENT, VERDICTS, needed_text, worst
from quality.features.domain_encoder import DEFAULT_EPOCHS
from quality.features.extractors import INCEPTION, FeatureSpace, local_inception_weights, resolve_feature_space
from quality.features.frechet import extract_features
from quality.features.image_sets import DEFAULT_MAX_IMAGES, ImageSet, load_pair, purpose_rng, to_unit
from training.core.errors import UserError
from training.core.outputs import refuse_output_inside_dataset
from training.core.progress import progress
from training.core.registry import Registry
from training.core.run_info import run_info
from training.core.runtime import resolve_device
from training.data.folders import load_split
from training.data.processed import infer_data_root

REPORT_VERSION = 5       # raised when a verdict's meaning changes: reports of two versions are not comparable
                         # (docs/reference.md#quality-assurance says what each version changed)
MIN_UNSEEN_FOR_DETECTOR = 10   # the feature detector's real side: the unseen images when there are this many


@dataclass(frozen=True)
class QAOptions:
    """Everything `run_qa` can be told besides the two folders and the output folder."""

    feature_extractor: str = "auto"          # auto | inception-v3-compat | domain
    data_root: str | None = None             # processed dataset whose train split trains the domain encoder
    image_size: int | None = None            # pixels; default: the synthetic images'
    channels: int | None = None              # 1 | 3; default: the first real image's
    device: str = "auto"
    max_images: int | None = DEFAULT_MAX_IMAGES   # per set
    seed: int = 0
    cache_dir: str = "results/cache"         # shared with training: encoders and real features are reused
    encoder_epochs: int = DEFAULT_EPOCHS
    inception_weights: str | None = None
    detector_epochs: int = DETECTOR_EPOCHS   # the CNN detector's training passes per fold


# The graded checks, by report section name, in report order (the order they are registered below).
CHECKS = Registry("QA check", "check")


@dataclass(frozen=True)
class QAContext:
    """What the checks run on: both sets (uint8 and [0, 1]), the feature space and where to write."""

    real: ImageSet
    synthetic: ImageSet
    real_unit: np.ndarray          # float32 (N, C, H, W) in [0, 1]
    synthetic_unit: np.ndarray
    space: FeatureSpace
    real_features: np.ndarray      # (N, D) in the feature space, shared by the checks that need it
    synthetic_features: np.ndarray
    real_unseen: np.ndarray        # (N,) bool: real images the feature space never trained on (the domain
                                   # encoder trains without half of them; Inception saw none)
    out_dir: Path | None           # where figures go; None: none are drawn (a screen)
    cache_dir: Path
    device: str
    seed: int
    data_root: Path | None         # the processed dataset of the real images, when known
    minority_class: str            # the real folder's name: the class the synthetic images stand for
    screening: bool = False        # a GAN checkpoint's screen: no figures, no CNN, no intervals (see `screen`)
    detector_epochs: int = DETECTOR_EPOCHS


@CHECKS.register("statistics")
def _statistics(ctx: QAContext) -> dict:
    return check_statistics(ctx.real_unit, ctx.synthetic_unit, ctx.out_dir)


@CHECKS.register("diversity")
def _diversity(ctx: QAContext) -> dict:
    return check_diversity(ctx.real_unit, ctx.synthetic_unit, ctx.out_dir, seed=ctx.seed)


@CHECKS.register("fidelity")
def _fidelity(ctx: QAContext) -> dict:
    return check_fidelity(ctx.real.images, ctx.synthetic.images, ctx.space, ctx.cache_dir / "fidelity", ctx.device,
                          rng=purpose_rng(ctx.seed, "fidelity-baseline"), real_features=ctx.real_features,
                          synthetic_features=ctx.synthetic_features, report_metrics=not ctx.screening)


@CHECKS.register("memorisation")
def _memorisation(ctx: QAContext) -> dict:
    result = check_memorisation(ctx.real.images, ctx.synthetic.images, None if ctx.screening else ctx.out_dir,
                                real_features=ctx.real_features, synthetic_features=ctx.synthetic_features,
                                real_names=ctx.real.names(), synthetic_names=ctx.synthetic.names())
    return {"feature_extractor": ctx.space.kind, **result}


@CHECKS.register("artefacts")
def _artefacts(ctx: QAContext) -> dict:
    return check_artefacts(ctx.real_unit, ctx.synthetic_unit, None if ctx.screening else ctx.out_dir)


@CHECKS.register("detectability")
def _detectability(ctx: QAContext) -> dict:
    # In features, the real side is the images the encoder never saw, as new to it as the synthetic ones:
    # its own training images are easier to tell apart (fresh demo draws: AUC 0.65 against them).
    unseen = ctx.real_unseen if ctx.real_unseen.sum() >= MIN_UNSEEN_FOR_DETECTOR else slice(None)
    return check_detectability(ctx.real_unit, ctx.synthetic_unit, real_features=ctx.real_features[unseen],
                               synthetic_features=ctx.synthetic_features, seed=ctx.seed, device=ctx.device,
                               cnn=not ctx.screening, bootstrap=0 if ctx.screening else BOOTSTRAP,
                               cnn_epochs=ctx.detector_epochs)


@CHECKS.register("usefulness")
def _usefulness(ctx: QAContext) -> dict | None:
    """Needs the real train and val splits of every class: not run on loose folders."""
    if ctx.data_root is None or not (ctx.data_root / "val").is_dir():
        return None
    size, channels = ctx.real.images.shape[-1], ctx.real.images.shape[1]
    features, is_minority = {}, {}
    for split in ("train", "val"):
        images, labels, names = load_split(ctx.data_root, split, size, channels)
        if ctx.minority_class not in names:
            return None
        features[split] = extract_features(images, ctx.space, ctx.device)
        is_minority[split] = (labels == names.index(ctx.minority_class)).numpy()
    return check_usefulness(features["train"], is_minority["train"], features["val"], is_minority["val"],
                            ctx.synthetic_features, seed=ctx.seed)


def needs_domain_encoder(options: QAOptions) -> bool:
    """Whether the feature extractor will resolve to the domain encoder (auto: no Inception weights on disk)."""
    if options.feature_extractor == "domain":
        return True
    return options.feature_extractor == "auto" and local_inception_weights(options.inception_weights) is None


def resolve_space(options: QAOptions, real_dir: str | Path, image_size: int, channels: int,
                  device: str, held_out: torch.Tensor | None = None) -> tuple[FeatureSpace, Path | None]:
    """The feature space for fidelity and memorisation, and the dataset root it was trained on (if any);
    a domain encoder never trains on `held_out` (uint8 images)."""
    if options.feature_extractor not in ("auto", INCEPTION, "domain"):
        raise UserError(f"unknown feature extractor '{options.feature_extractor}' (use auto, {INCEPTION} or domain)")
    data_root = Path(options.data_root) if options.data_root else infer_data_root(real_dir)
    if data_root is None and needs_domain_encoder(options):
        raise UserError(f"the domain feature extractor is trained on a processed dataset's train split, and none "
                        f"was found above {real_dir}: pass --data_root data/processed/<dataset>")
    space = resolve_feature_space(options.feature_extractor, data_root=data_root or "", image_size=image_size,
                                  channels=channels, inception_weights=options.inception_weights,
                                  encoder_epochs=options.encoder_epochs, cache_dir=Path(options.cache_dir),
                                  device=device, held_out=held_out)
    return space, data_root if space.kind == "domain" else None


def held_out_half(real: torch.Tensor, seed: int) -> torch.Tensor:
    """The half of the real images a QA domain encoder never trains on, so that the checks comparing in its
    features have real images as new to it as the synthetic ones (quality.checks.fidelity)."""
    return real[split_halves(len(real), purpose_rng(seed, "encoder-held-out"))[0]]


def input_warnings(real: ImageSet, synthetic: ImageSet, image_size: int) -> list[str]:
    """Things about the inputs a reader of the report should know."""
    notes = []
    for images in (real, synthetic):
        if images.skipped:
            notes.append(f"{len(images.skipped)} unreadable {images.role} file(s) skipped, e.g. {images.skipped[0]['path']}")
        if len(images.files) + len(images.skipped) < images.num_found:
            notes.append(f"{images.role}: a random {len(images.files) + len(images.skipped)} of {images.num_found} "
                         "images were used (--max_images)")
        if images.num_resized:
            notes.append(f"{images.num_resized} {images.role} image(s) of size {', '.join(images.sizes_found)} were "
                         f"resized to {image_size}x{image_size}")
    return notes


def lacking(result: dict) -> str:
    """What an insufficient check had and needed, in a few words (its reason when it states no evidence)."""
    found = result.get("evidence")
    return f"{found['images']:,} {found['unit']}, needs {needed_text(found['needed'])}" if found else result["reason"]


def summarise(results: dict[str, dict]) -> dict:
    """Overall verdict (the worst), each check's verdict and reason, and which checks lacked evidence."""
    verdicts = [r["verdict"] for r in results.values()]
    return {"verdict": worst(verdicts),
            "counts": {v: verdicts.count(v) for v in VERDICTS},
            "checks": {name: {"verdict": r["verdict"], "reason": r["reason"]} for name, r in results.items()},
            "insufficient": {name: lacking(r) for name, r in results.items() if r["verdict"] == INSUFFICIENT}}


SCREEN_CHECKS = ("artefacts", "memorisation", "fidelity", "detectability")


def screen(real: torch.Tensor, synthetic: torch.Tensor, space: FeatureSpace, *, real_features: np.ndarray,
           synthetic_features: np.ndarray, seed: int, device: str, cache_dir: str | Path) -> dict[str, dict]:
    """The checks that judge a GAN checkpoint, by name: `SCREEN_CHECKS` of `CHECKS`, the very functions,
    baselines and thresholds `run_qa` uses, on uint8 (N, C, H, W) images and their features in `space`.

    What a screen leaves out, to stay cheap at every evaluation: figures, torch-fidelity's full set of
    numbers, bootstrap intervals and detectability's CNN view (the linear views run). `run_qa` on the
    chosen generator's images runs everything.
    """
    ctx = QAContext(ImageSet.in_memory("real", real), ImageSet.in_memory("synthetic", synthetic), to_unit(real),
                    to_unit(synthetic), space, real_features, synthetic_features, space.unseen(real), None,
                    Path(cache_dir), device, seed, None, "", screening=True)
    return {name: CHECKS[name](ctx) for name in SCREEN_CHECKS}


def run_qa(real_dir: str | Path, synthetic_dir: str | Path, out_dir: str | Path,
           options: QAOptions = QAOptions()) -> dict:
    """Run every check of `CHECKS` on two image folders; write the reports into `out_dir` and return report.json's content."""
    out_dir = Path(out_dir)
    refuse_output_inside_dataset(out_dir, "--output_dir", "a folder of its own, e.g. results/qa/<name>")
    refuse_output_inside_dataset(options.cache_dir, "--cache_dir", "a folder of its own, e.g. results/cache")
    if out_dir.resolve() in (Path(real_dir).resolve(), Path(synthetic_dir).resolve()):
        # The report's PNGs would be read as images by the next run.
        raise UserError(f"--output_dir {out_dir} is one of the image folders; write the report elsewhere, e.g. results/qa/<name>")
    device = str(resolve_device(options.device))
    real, synthetic = load_pair(real_dir, synthetic_dir, image_size=options.image_size, channels=options.channels,
                                max_images=options.max_images, seed=options.seed)
    image_size, channels = real.images.shape[-1], real.images.shape[1]
    print(f"QA of {len(synthetic.images)} synthetic against {len(real.images)} real images at {image_size} px, "
          f"{channels} channel(s)" + ("" if options.image_size else " (the synthetic images' size; --image_size to change)"),
          flush=True)
    space, data_root = resolve_space(options, real_dir, image_size, channels, device, held_out_half(real.images, options.seed))
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = QAContext(real, synthetic, to_unit(real.images), to_unit(synthetic.images), space,
                    extract_features(real.images, space, device), extract_features(synthetic.images, space, device),
                    space.unseen(real.images),
                    out_dir, Path(options.cache_dir), device, options.seed,
                    Path(options.data_root) if options.data_root else infer_data_root(real_dir), Path(real_dir).name,
                    detector_epochs=options.detector_epochs)
    results, not_run = {}, []
    for name, check in progress(CHECKS.items(), desc="QA checks", unit="check", total=len(CHECKS)):
        result = check(ctx)
        if result is None:
            not_run.append(name)
        else:
            results[name] = result
    visual = contact_sheet(real.images, synthetic.images, out_dir, purpose_rng(options.seed, "contact-sheet"))
    report = {
        "report_version": REPORT_VERSION,
        "inputs": {"real": str(real_dir), "synthetic": str(synthetic_dir), "out": str(out_dir),
                   "data_root": str(data_root) if data_root else None, "options": asdict(options)},
        "images": {"real": real.describe(), "synthetic": synthetic.describe(), "image_size": int(image_size),
                   "channels": int(channels)},
        "feature_space": {"kind": space.kind, "extractor": space.extractor, "weights": space.weights_path},
        "warnings": input_warnings(real, synthetic, image_size) + [
            f"not run: {name} (needs the processed dataset with train and val splits; pass --data_root)"
            for name in not_run],
        **results,
        "visual": visual,
        "summary": summarise(results),
        "run_info": run_info(options.seed, device),
    }
    return write_report(report, out_dir)
