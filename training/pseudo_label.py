"""Pseudo-labelling: sort unconditional GAN samples into classes with a trained classifier.

    python training/pseudo_label.py --synth_dir data/synthetic/<run> --model_path results/classifiers/<name>/run_000/seed_0/best_model.pth \
        --out_dir data/synthetic/<run>_labelled --conf_thresh 0.95

Each image whose top-class probability reaches --conf_thresh is linked (copied where links are
impossible) into <out_dir>/<predicted class>/; the rest are left out. <out_dir>/manifest.jsonl lists
the kept images with their class, confidence and pixel SHA-256, so `build_augmented.py --synthetic
<out_dir>` can use them like any synthetic folder. The acceptance rate per class is printed and
written to pseudo_label_report.json; with too few accepted, lower --conf_thresh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

if __package__ in (None, ""):  # run as `python training/pseudo_label.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch

from training.core import atomic
from training.core.errors import UserError, run_cli

LOW_ACCEPTANCE = 0.2     # below this share, suggest a lower threshold


def source_images(synth_dir: Path) -> list[Path]:
    """The generated images: those of the folder's manifest when it has one, else every image in it."""
    from training.data.folders import list_images
    from training.synthesis.sampling import MANIFEST, OWN_FILES, read_manifest

    if not synth_dir.is_dir():
        raise UserError(f"synthetic folder not found: {synth_dir}")
    if (synth_dir / MANIFEST).is_file():
        records = read_manifest(synth_dir).values()
        return [synth_dir / r["file"] for r in records if not r.get("filtered_out") and (synth_dir / r["file"]).is_file()]
    return [p for p in list_images(synth_dir) if p.name not in OWN_FILES]


@torch.no_grad()
def classify(files: list[Path], model_path: Path, batch_size: int = 256) -> tuple[np.ndarray, list[str], list[str]]:
    """Class probabilities (N, K) of each file under the classifier, the class names, the pixel hashes."""
    from training.classify.loop import load_classifier
    from training.data.folders import to_float
    from training.data.images import pixel_sha256, read_image, resize, to_channels

    model, record = load_classifier(model_path)
    data = record["config"]["data"]
    probabilities, hashes = [], []
    for start in range(0, len(files), batch_size):
        batch = []
        for path in files[start:start + batch_size]:
            pixels = read_image(path)
            hashes.append(pixel_sha256(pixels))
            batch.append(resize(to_channels(pixels, data["channels"], path), data["image_size"]))
        x = to_float(torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2))
        x = x if len(x) > 1 else x.repeat(2, 1, 1, 1)            # one-image batches: same scores as in a batch
        probabilities.append(torch.softmax(model(x), 1)[:len(batch)].numpy())
    return np.concatenate(probabilities), record["class_names"], hashes


def pseudo_label(synth_dir: str | Path, model_path: str | Path, out_dir: str | Path, conf_thresh: float,
                 overwrite: bool = False) -> dict:
    """Sort the confident images of `synth_dir` into `out_dir/<class>/`; returns the report."""
    from training.synthesis.sampling import MANIFEST, check_output_dir

    synth_dir, out_dir = Path(synth_dir), Path(out_dir)
    check_output_dir(out_dir)
    if out_dir.resolve() == synth_dir.resolve() or synth_dir.resolve() in out_dir.resolve().parents:
        raise UserError(f"--out_dir {out_dir} is inside --synth_dir; write the labelled copy elsewhere")
    if out_dir.exists() and any(out_dir.iterdir()):
        if not overwrite or not (out_dir / MANIFEST).is_file():
            raise UserError(f"{out_dir} is not empty: pass --overwrite to replace an earlier pseudo-labelled folder")
        shutil.rmtree(out_dir)
    files = source_images(synth_dir)
    if not files:
        raise UserError(f"{synth_dir} holds no images")
    probabilities, class_names, hashes = classify(files, Path(model_path))
    top, confidence = probabilities.argmax(1), probabilities.max(1)
    kept = confidence >= conf_thresh
    lines = []
    for index, (path, label, conf, sha) in enumerate(zip(files, top, confidence, hashes)):
        if not kept[index]:
            continue
        rel = Path(class_names[label]) / f"pseudo_{class_names[label]}_{index:06d}{path.suffix}"   # named by its new class
        (out_dir / rel.parent).mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, out_dir / rel)
        except OSError:
            shutil.copy2(path, out_dir / rel)
        lines.append({"file": rel.as_posix(), "index": index, "class": class_names[label], "sha256": sha,
                      "confidence": float(conf), "source": str(path)})
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out_dir / MANIFEST, "".join(json.dumps(line) + "\n" for line in lines))
    predicted = Counter(class_names[label] for label in top)
    accepted = Counter(line["class"] for line in lines)
    report = {"synth_dir": str(synth_dir), "model_path": str(model_path), "conf_thresh": conf_thresh,
              "images": len(files), "accepted": len(lines), "acceptance_rate": len(lines) / len(files),
              "per_class": {c: {"predicted": predicted[c], "accepted": accepted[c],
                                "acceptance_rate": accepted[c] / predicted[c] if predicted[c] else None}
                            for c in class_names}}
    atomic.write_json(out_dir / "pseudo_label_report.json", report)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--synth_dir", required=True, help="generated images (generate_samples.py output)")
    p.add_argument("--model_path", required=True, help="a classifier's best_model.pth (train_classifier.py)")
    p.add_argument("--out_dir", required=True, help="where <class>/ folders of confident images go")
    p.add_argument("--conf_thresh", type=float, default=0.95)
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    if not 0 <= args.conf_thresh <= 1:
        raise UserError("--conf_thresh must be in [0, 1]")
    report = pseudo_label(args.synth_dir, args.model_path, args.out_dir, args.conf_thresh, args.overwrite)
    print(f"kept {report['accepted']} of {report['images']} images ({report['acceptance_rate']:.1%}) "
          f"at confidence >= {args.conf_thresh}")
    for name, c in report["per_class"].items():
        rate = "n/a" if c["acceptance_rate"] is None else f"{c['acceptance_rate']:.1%}"
        print(f"  {name:20s} predicted {c['predicted']:6d}  kept {c['accepted']:6d}  ({rate})")
    if report["acceptance_rate"] < LOW_ACCEPTANCE:
        print(f"only {report['acceptance_rate']:.1%} passed: try a lower --conf_thresh (e.g. "
              f"{max(0.5, args.conf_thresh - 0.15):.2f}) or a better classifier")
    print(f"wrote {args.out_dir} (<class>/ folders, manifest.jsonl, pseudo_label_report.json)")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
