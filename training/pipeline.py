"""The whole study in one command: prepare -> train GAN -> preview -> bulk synthesis -> QA -> assemble ->
train baseline, cheap-fix and augmented classifiers -> compare.

    python training/pipeline.py --config experiments/pipeline_demo.yaml
    python training/pipeline.py --config experiments/pipeline_demo.yaml classifiers.overrides=[train.seeds=[0]]

Every stage records a key of its resolved inputs in results/pipeline/<name>/stages.json; a stage
whose key is unchanged and whose outputs exist is skipped, so a re-run resumes where the last one
stopped and a changed config re-runs exactly the stages it affects (and those after them).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as `python training/pipeline.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.core import atomic
from training.core.config import load_config, to_dict
from training.core.errors import UserError, run_cli
from training.study.config import PipelineConfig


def stage_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class Stages:
    """Runs named stages, skipping those whose key and outputs are unchanged since the last run."""

    def __init__(self, record: Path):
        self.record = record
        self.done = json.loads(record.read_text()) if record.is_file() else {}

    def run(self, name: str, key: str, outputs_exist: Callable[[dict], bool], work: Callable[[], dict]) -> dict:
        previous = self.done.get(name)
        if previous and previous["key"] == key and outputs_exist(previous["outputs"]):
            print(f"[{name}] up to date, skipped")
            return previous["outputs"]
        print(f"[{name}] running")
        start = time.perf_counter()
        outputs = work()
        self.done[name] = {"key": key, "outputs": outputs, "seconds": round(time.perf_counter() - start, 1)}
        atomic.write_json(self.record, self.done)
        return outputs


def run_pipeline(config: PipelineConfig) -> dict:
    """Run every stage of `config`; returns the outputs of each stage."""
    from training.data.augmented_set import build_augmented
    from training.classify.config import ClassifierConfig
    from training.classify.loop import train_classifier
    from training.gan.config import GANConfig
    from training.prepare_data import main as prepare_main
    from training.data.processed import read_manifest
    from training.core.runtime import resolve_device
    from training.synthesis import sampling

    name, results = config.output.name, Path(config.output.results_dir)
    for arm in config.classifiers.parsed():       # a typo in a classifier config fails now, not after the GAN
        load_config(ClassifierConfig, arm.config, config.classifiers.overrides)
    stages = Stages(results / "pipeline" / name / "stages.json")
    d = config.data
    dataset = d.name or ("demo" if d.source == "demo" else Path(d.source).stem)
    root = Path(d.processed_dir) / dataset

    # 1. Data (prepare_data keeps an existing processed dataset as it is).
    args = ["--source", d.source, "--out", d.processed_dir, "--name", dataset]
    args += ["--class-names", d.class_names] if d.class_names else []
    args += ["--drop-leaked"] if d.drop_leaked else []
    key = stage_key(args)
    # A dataset this pipeline prepared with other settings is rebuilt; one it did not make is kept.
    rebuild = stages.done.get("prepare", {}).get("key") not in (None, key)

    def prepare() -> dict:
        prepare_main(args + ["--overwrite"] * rebuild)
        return {"root": str(root)}

    stages.run("prepare", key, lambda o: (root / "manifest.csv").is_file(), prepare)
    data_key = key = stage_key(key, (root / "manifest.csv").read_bytes().decode())   # the content, not the path

    # 2. GAN on the minority class.
    gan = load_config(GANConfig, config.gan.config, [*config.gan.overrides, f"data.root={root}",
                                                   f"output.name={name}_gan", f"output.results_dir={results}"])
    key = stage_key(key, to_dict(gan))
    checkpoints = results / "checkpoints" / f"{name}_gan"

    def train() -> dict:
        from training.gan.loop import train_gan
        from training.gan.checkpoint import list_checkpoints

        resumable = bool(list_checkpoints(checkpoints)) and not (checkpoints / "final_generator.pth").exists()
        try:
            summary = train_gan(gan, resume=resumable, overwrite=not resumable)
        except UserError as err:
            if not (resumable and str(err).startswith("cannot resume")):
                raise
            summary = train_gan(gan, overwrite=True)      # an interrupted run of another config: start again
        best = checkpoints / "best_generator.pth"
        return {"generator": str(best if best.exists() else checkpoints / "final_generator.pth"),
                "best_fid": summary["best_fid"], "feature_extractor": summary["feature_extractor"]}

    gan_out = stages.run("gan", key, lambda o: Path(o["generator"]).is_file(), train)

    # 3-4. Preview, then bulk synthesis (itself resumable, file by file).
    device = resolve_device(gan.train.device)
    generators = sampling.load_generators([gan_out["generator"]], device)
    synthetic = Path(gan.output.synthetic_dir) / f"{name}_gan"
    rows = read_manifest(root)
    real_train = Counter(r["class"] for r in rows if r["split"] == "train")
    s = config.synthesis
    wanted = s.num_synthetic or max(1, math.ceil(max(real_train.values()) / s.target_ratio) - real_train[gan.data.minority_class])
    key = stage_key(key, wanted, s.seed, generators[0].sha256)

    def synthesise() -> dict:
        sampling.check_output_dir(synthetic)
        synthetic.mkdir(parents=True, exist_ok=True)
        preview = sampling.write_preview(generators, [1.0], s.seed, synthetic, device)
        # A retrained GAN makes the folder's images stale: replace them; otherwise finish or extend it.
        stale = any(r["generator_sha256"] != generators[0].sha256 or r["seed"] != sampling.image_seed(s.seed, i)
                    for i, r in sampling.read_manifest(synthetic).items())
        summary = sampling.generate(generators, [1.0], wanted, s.seed, synthetic, device=device, overwrite=stale)
        return {"folder": str(synthetic), "preview": str(preview), "images": wanted, "written": summary["written"]}

    stages.run("synthesis", key, lambda o: (synthetic / sampling.MANIFEST).is_file(), synthesise)

    # 5. Quality assurance.
    def qa() -> dict:
        from quality.assessment.qa import QAOptions, run_qa

        report = run_qa(root / "train" / gan.data.minority_class, synthetic, results / "qa" / name,
                        QAOptions(seed=s.seed, max_images=s.qa_max_images, cache_dir=str(results / "cache")))
        return {"report": str(results / "qa" / name / "report.html"), "verdict": report["summary"]["verdict"]}

    qa_out = stages.run("qa", key, lambda o: Path(o["report"]).is_file(), qa)
    print(f"  QA verdict: {qa_out['verdict']} ({qa_out['report']})")

    # 6. Augmented dataset.
    augmented = Path(d.processed_dir) / f"{dataset}_{name}_augmented"
    key = stage_key(key, str(augmented))
    stages.run("assemble", key, lambda o: (augmented / "composition.json").is_file(),
               lambda: {"root": str(augmented), **build_augmented(root, [synthetic], augmented, num_synthetic=wanted,
                                                                  overwrite=augmented.exists())})

    # 7. Classifiers, one run per arm.
    run_dirs = []
    for arm in config.classifiers.parsed():
        data_root = augmented if arm.data == "augmented" else root
        arm_name = f"{name}_{Path(arm.config).stem}"
        cls = load_config(ClassifierConfig, arm.config, [
            *config.classifiers.overrides, f"data.train_dir={data_root / 'train'}", f"data.val_dir={data_root / 'val'}",
            f"data.test_dir={data_root / 'test'}", f"output.name={arm_name}", f"output.results_dir={results}"])
        arm_key = stage_key(key if arm.data == "augmented" else data_key, to_dict(cls))   # baseline arms: data only
        out = stages.run(f"classifier {arm_name}", arm_key, lambda o: (Path(o["run"]) / "summary.json").is_file(),
                         lambda: {"run": str(train_classifier(cls))})
        run_dirs.append(out["run"])

    # 8. Comparison.
    from training.compare import main as compare_main

    comparison = results / "comparison" / name
    def compare() -> dict:
        compare_main([*run_dirs, "--out", str(comparison)])
        return {"folder": str(comparison)}

    stages.run("compare", stage_key(run_dirs), lambda o: (comparison / "comparison.md").is_file(), compare)
    return stages.done


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True, help="e.g. experiments/pipeline_demo.yaml")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and exit")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value")
    args = p.parse_args(argv)
    config = load_config(PipelineConfig, args.config, args.overrides)
    if args.dry_run:
        from training.core.config import to_yaml

        print(to_yaml(config), end="")
        return 0
    done = run_pipeline(config)
    print("\nwhere everything is:")
    for stage, record in done.items():
        print(f"  {stage:40s} {record['seconds']:7.1f} s  " + ", ".join(f"{k}: {v}" for k, v in record["outputs"].items()
                                                                      if k in ("root", "generator", "folder", "preview", "report", "run")))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
