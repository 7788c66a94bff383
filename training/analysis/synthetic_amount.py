"""Sweeps of the amount of synthetic data (training/sweep.py is the command and describes the two modes).

`run_sweep(config)` plans the points (`plan_points`, scaling counts down to what the folders hold and
to the 10x ceiling), assembles each with `build_augmented`, trains the classifier config over its
seeds, compares every point with the first by paired bootstrap and plots sweep.png. A point whose
key (data, classifier, synthetic manifests) is unchanged and whose run exists is kept, so an
interrupted sweep resumes.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from training.analysis.comparison import MAX_BOOTSTRAP, load_run, write_comparison
from training.classify.config import ClassifierConfig
from training.classify.loop import train_classifier
from training.core import atomic
from training.core.config import MAX_SEED, OutputConfig, field, load_config, to_dict
from training.core.errors import ConfigError, UserError
from training.core.plotting import subplots
from training.data.augmented_set import MAX_SYNTHETIC_PER_REAL, build_augmented
from training.data.processed import read_splits_manifest
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, read_synthetic


@dataclass(frozen=True)
class SweepDataConfig:
    baseline: str = field("data/processed/demo", help="processed dataset")
    synthetic: tuple[str, ...] = field(("data/synthetic/demo_gan",), help="folders from generate_samples.py")
    minority_class: str = field("malignant", plain_name=True)
    work_dir: str = field("data/processed/sweeps", help="the assembled datasets go to <work_dir>/<name>/")


@dataclass(frozen=True)
class SweepPointsConfig:
    mode: Literal["counts", "mixing"] = "counts"
    counts: tuple[int, ...] = field((0, 2000, 4000, 6000), min=0, help="mode counts: synthetic images added")
    synthetic_fractions: tuple[float, ...] = field((0.0, 0.25, 0.5, 0.75), min=0.0, max=0.95,
                                                   help="mode mixing: share of the minority class made synthetic")
    seed: int = field(0, min=0, max=MAX_SEED, help="which real images a mixing point keeps; the bootstrap")
    bootstrap: int = field(2000, min=1, max=MAX_BOOTSTRAP)

    def validate(self) -> None:
        values = self.counts if self.mode == "counts" else self.synthetic_fractions
        if len(values) < 2 or list(values) != sorted(set(values)):
            key = "counts" if self.mode == "counts" else "synthetic_fractions"
            raise ConfigError(f"the sweep needs at least two increasing {key}")


@dataclass(frozen=True)
class SweepClassifierConfig:
    config: str = "experiments/classifier_gan_augmented.yaml"
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepConfig:
    data: SweepDataConfig = field(default_factory=SweepDataConfig)
    points: SweepPointsConfig = field(default_factory=SweepPointsConfig)
    classifier: SweepClassifierConfig = field(default_factory=SweepClassifierConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def scaled_counts(counts: tuple[int, ...], available: int, real: int) -> tuple[list[int], str | None]:
    """The counts, scaled down together when the largest exceeds what is available or 10x the real images."""
    limit = min(available, MAX_SYNTHETIC_PER_REAL * real)
    if max(counts) <= limit:
        return list(counts), None
    factor = limit / max(counts)
    scaled = sorted({round(c * factor) for c in counts})
    return scaled, (f"counts {list(counts)} scaled by {factor:.3f} to {scaled}: the largest is limited to "
                    f"{limit} ({available} synthetic images available, 10x {real} real)")


def plan_points(config: SweepConfig, available: int, real: int) -> tuple[list[dict], str | None]:
    """Each point: a label, the x value, and build_augmented's arguments."""
    p = config.points
    if p.mode == "counts":
        counts, note = scaled_counts(p.counts, available, real)
        return [{"label": f"+{c} synthetic", "x": c, "num_synthetic": c, "real_fraction": 1.0} for c in counts], note
    needed = round(max(p.synthetic_fractions) * real)
    if needed > available:
        raise ConfigError(f"mixing up to {max(p.synthetic_fractions):.0%} of {real} real images needs {needed} "
                          f"synthetic images; the folders hold {available}")
    return [{"label": f"{f:.0%} synthetic", "x": f, "num_synthetic": round(f * real), "real_fraction": 1.0 - f}
            for f in p.synthetic_fractions], None


def synthetic_digest(folder: str) -> str:
    """A hash of a synthetic folder's manifest: regenerated images make finished points stale."""
    return hashlib.sha256((Path(folder) / SYNTHETIC_MANIFEST).read_bytes()).hexdigest()[:16]


def run_sweep(config: SweepConfig) -> dict:
    """Assemble and train every point (resuming finished ones), then compare and plot."""
    d, name = config.data, config.output.name
    out_dir = Path(config.output.results_dir) / "sweeps" / name
    real = Counter(r["class"] for r in read_splits_manifest(d.baseline) if r["split"] == "train")[d.minority_class]
    if real == 0:
        raise UserError(f"'data.minority_class' = {d.minority_class} has no training images in {d.baseline}")
    available = sum(img.class_name == d.minority_class for folder in read_synthetic(list(d.synthetic)) for img in folder)
    points, note = plan_points(config, available, real)
    if note:
        print(f"note: {note}")
    if len(points) < 2:
        raise UserError(f"a sweep needs two points or more, and {len(points)} remain{f' ({note})' if note else ''}: "
                        f"give 'data.synthetic' folders with '{d.minority_class}' images ({available} found)")
    state_path = out_dir / "points.json"
    state = {}
    if state_path.is_file():
        try:
            state = json.loads(state_path.read_text())
        except (ValueError, UnicodeDecodeError):
            state = None
        if not isinstance(state, dict):           # our own record, damaged: every point runs again
            print(f"note: {state_path} is damaged; every point runs again")
            state = {}
    for k, point in enumerate(points):
        key = json.dumps([point, to_dict(config.data), to_dict(config.classifier), config.points.seed,
                          [synthetic_digest(folder) for folder in d.synthetic]], sort_keys=True)
        if state.get(point["label"], {}).get("key") == key and (Path(state[point["label"]]["run"]) / "summary.json").is_file():
            print(f"[{point['label']}] done, kept")
            continue
        print(f"[{point['label']}] assembling and training")
        data = Path(d.work_dir) / name / f"point_{k:02d}"
        build_augmented(d.baseline, list(d.synthetic), data, num_synthetic=point["num_synthetic"],
                        real_fraction=point["real_fraction"], seed=config.points.seed, overwrite=data.exists())
        cls = load_config(ClassifierConfig, config.classifier.config, [
            *config.classifier.overrides, f"data.train_dir={data / 'train'}", f"data.val_dir={data / 'val'}",
            f"data.test_dir={data / 'test'}", f"output.name={name}_point_{k:02d}",
            f"output.results_dir={config.output.results_dir}"])
        state[point["label"]] = {"key": key, "run": str(train_classifier(cls))}
        atomic.write_json(state_path, state)
    runs = [load_run(state[p["label"]]["run"], p["label"]) for p in points]
    report = write_comparison(runs, out_dir, config.points.bootstrap, config.points.seed)
    result = {"mode": config.points.mode, "note": note, "points": points, "comparison": report}
    atomic.write_json(out_dir / "sweep.json", result)
    plot_sweep(result, out_dir / "sweep.png")
    return result


def plot_sweep(result: dict, path: Path) -> None:
    """Sensitivity and AUC against the sweep's x: mean over seeds, +-1 std band, 95 % CI vs the first point."""
    xs = [p["x"] for p in result["points"]]
    runs, pairs = result["comparison"]["runs"], result["comparison"]["comparisons"]
    fig, axes = subplots(1, 2, figsize=(10, 4))
    for ax, metric, title in zip(axes, ("sensitivity", "roc_auc"), ("sensitivity (test)", "AUC-ROC (test)")):
        mean = [r["metrics"][metric]["mean"] for r in runs]
        std = [r["metrics"][metric]["std"] or 0.0 for r in runs]           # None with one seed
        ax.plot(xs, mean, "o-", label="mean over seeds")
        ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2,
                        label="+-1 std over seeds")
        base = mean[0]
        low = [base] + [base + (p["metrics"][metric]["ci_low"] or 0.0) for p in pairs]     # None: undefined
        high = [base] + [base + (p["metrics"][metric]["ci_high"] or 0.0) for p in pairs]
        ax.errorbar(xs, mean, yerr=[[max(0, m - lo) for m, lo in zip(mean, low)], [max(0, hi - m) for m, hi in zip(mean, high)]],
                    fmt="none", ecolor="black", capsize=4, label="95 % CI of the change vs first point")
        ax.set(xlabel="synthetic images added" if result["mode"] == "counts" else "share of minority class synthetic",
               title=title)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    atomic.save_figure(fig, path, dpi=110, bbox_inches="tight")


def _cell(stats: dict) -> str:
    if stats["mean"] is None:
        return "n/a"
    return f"{stats['mean']:.3f}" + ("" if stats["std"] is None else f" ± {stats['std']:.3f}")


def sweep_table(result: dict) -> str:
    """The sweep as a Markdown table: each point's sensitivity and AUC, and the change against the first point."""
    rows = ["| point | sensitivity | AUC-ROC | change in sensitivity (95 % CI) | verdict |", "|---|---|---|---|---|"]
    runs, pairs = result["comparison"]["runs"], [None, *result["comparison"]["comparisons"]]
    for point, run, pair in zip(result["points"], runs, pairs):
        sens, auc = run["metrics"]["sensitivity"], run["metrics"]["roc_auc"]
        d = None if pair is None else pair["metrics"]["sensitivity"]
        change = "baseline" if d is None else (
            f"{d['difference']:+.3f}" + ("" if d["ci_low"] is None else f" ({d['ci_low']:+.3f}, {d['ci_high']:+.3f})"))
        verdict = "" if pair is None else pair["metrics"]["sensitivity"]["verdict"]
        rows.append(f"| {point['label']} | {_cell(sens)} | {_cell(auc)} | {change} | {verdict} |")
    return "\n".join(rows)
