"""Pseudo-labelling library (training/pseudo_label.py is the command).

`pseudo_label` scores every generated image with a saved classifier (training.classify.scoring),
links those whose top-class probability reaches the threshold into `<out>/<class>/`, and writes a
manifest.jsonl that `build_augmented` reads like any synthetic folder's, plus the per-class
acceptance in pseudo_label_report.json.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from training.classify.scoring import load_pixel_scorer
from training.core import atomic
from training.core.errors import DataError, UserError
from training.data.folders import link_or_copy
from training.data.images import pixel_sha256, read_image, resize, to_channels
from training.data.synthetic_folder import (
    SYNTHETIC_MANIFEST,
    check_output_dir,
    check_synthetic_source,
    confined_file,
    read_synthetic_manifest,
)

LOW_ACCEPTANCE = 0.2     # below this share, suggest a lower threshold


def source_images(synth_dir: Path) -> list[Path]:
    """The generated images: those of the folder's manifest (which it must have: `check_synthetic_source`).

    A folder without our manifest, or inside a processed dataset, is refused: its images would be
    labelled and trained on as synthetic while they may be real ones, test images included.
    """
    if not synth_dir.is_dir():
        raise UserError(f"synthetic folder not found: {synth_dir}")
    check_synthetic_source(synth_dir, "--synth_dir")
    records = read_synthetic_manifest(synth_dir).values()
    return [confined_file(synth_dir, r.get("file")) for r in records
            if not r.get("filtered_out") and (synth_dir / str(r.get("file"))).is_file()]


@torch.no_grad()
def classify(files: list[Path], model_path: Path, batch_size: int = 256) -> tuple[np.ndarray, list[str], list[str]]:
    """Class probabilities (N, K) of each file under the classifier, the class names, the pixel hashes."""
    scorer = load_pixel_scorer(model_path)
    probabilities, hashes = [], []
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            pixels = read_image(path)
            hashes.append(pixel_sha256(pixels))
            batch.append(resize(to_channels(pixels, scorer.channels, path), scorer.image_size))
        probabilities.append(scorer(np.stack(batch)))
    probabilities = np.concatenate(probabilities)
    bad = ~np.isfinite(probabilities).all(1)
    if bad.any():       # NaN confidences never reach any threshold: the fault is the model's, not --conf_thresh's
        raise DataError(f"the classifier {model_path}'s outputs are not finite (NaN or inf) for {int(bad.sum())} of "
                        f"{len(files)} images: it cannot label them (retrain it, or use an earlier checkpoint)")
    return probabilities, scorer.class_names, hashes


def pseudo_label(synth_dir: str | Path, model_path: str | Path, out_dir: str | Path, conf_thresh: float,
                 overwrite: bool = False) -> dict:
    """Sort the confident images of `synth_dir` into `out_dir/<class>/`; returns the report."""
    synth_dir, out_dir = Path(synth_dir), Path(out_dir)
    check_output_dir(out_dir)
    if out_dir.resolve() == synth_dir.resolve() or synth_dir.resolve() in out_dir.resolve().parents:
        raise UserError(f"--out_dir {out_dir} is inside --synth_dir; write the labelled copy elsewhere")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite or not (out_dir / SYNTHETIC_MANIFEST).is_file():
            raise UserError(f"{out_dir} is not empty: pass --overwrite to replace an earlier pseudo-labelled folder")
        shutil.rmtree(out_dir)
    files = source_images(synth_dir)
    if not files:
        raise UserError(f"{synth_dir} holds no images")
    probabilities, class_names, hashes = classify(files, Path(model_path))
    # The manifest records each file's pixels: a file replaced by another image (a real one, say) is not ours.
    recorded = {confined_file(synth_dir, r.get("file")): r.get("sha256") for r in read_synthetic_manifest(synth_dir).values()}
    changed = [path for path, sha in zip(files, hashes) if recorded.get(path) != sha]
    if changed:
        raise DataError(f"{changed[0]} does not hold the pixels {synth_dir / SYNTHETIC_MANIFEST} records (replaced or "
                        f"edited; {len(changed)} file(s)); refusing --synth_dir")
    top, confidence = probabilities.argmax(1), probabilities.max(1)
    kept = confidence >= conf_thresh
    lines = []
    for index, (path, label, conf, sha) in enumerate(zip(files, top, confidence, hashes)):
        if not kept[index]:
            continue
        rel = Path(class_names[label]) / f"pseudo_{class_names[label]}_{index:06d}{path.suffix}"   # named by its new class
        (out_dir / rel.parent).mkdir(parents=True, exist_ok=True)
        link_or_copy(path, out_dir / rel)
        lines.append({"file": rel.as_posix(), "index": index, "class": class_names[label], "sha256": sha,
                      "confidence": float(conf), "source": str(path)})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / SYNTHETIC_MANIFEST, "".join(json.dumps(line) + "\n" for line in lines))
    predicted = Counter(class_names[label] for label in top)
    accepted = Counter(line["class"] for line in lines)
    report = {"synth_dir": str(synth_dir), "model_path": str(model_path), "conf_thresh": conf_thresh,
              "images": len(files), "accepted": len(lines), "acceptance_rate": len(lines) / len(files),
              "per_class": {c: {"predicted": predicted[c], "accepted": accepted[c],
                                "acceptance_rate": accepted[c] / predicted[c] if predicted[c] else None}
                            for c in class_names}}
    atomic.write_json(out_dir / "pseudo_label_report.json", report)
    return report
