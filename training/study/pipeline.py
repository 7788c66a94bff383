"""The whole study in one command: prepare -> train GAN -> preview -> bulk synthesis -> QA -> assemble ->
train baseline, cheap-fix and augmented classifiers -> compare.

    run_pipeline(load_config(PipelineConfig, "experiments/pipeline_demo.yaml"))

Every stage records a key of its resolved inputs in results/pipeline/<name>/stages.json; a stage
whose key is unchanged and whose outputs exist is skipped, so a re-run resumes where the last one
stopped and a changed config re-runs exactly the stages it affects (and those after them).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality.assessment.qa import QAOptions, run_qa
from quality.checks.verdicts import VERDICTS
from training.analysis.comparison import compare_runs, pair_table, runs_table
from training.classify.config import ClassifierConfig
from training.classify.loop import train_classifier
from training.core import atomic
from training.core.config import load_config, to_dict
from training.core.errors import UserError
from training.core.runtime import resolve_device
from training.data.augmented_set import COMPOSITION, build_augmented
from training.data.prepare import SourceOptions, prepare_dataset
from training.data.processed import SPLITS_MANIFEST, read_splits_manifest
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, check_output_dir, read_synthetic_manifest
from training.gan.checkpoint import list_checkpoints
from training.gan.config import GANConfig
from training.gan.loop import train_gan
from training.study.config import PipelineConfig
from training.synthesis import sampling


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


@dataclass(frozen=True)
class Study:
    """What every stage needs to know: the config, where things go, and the stage record."""

    config: PipelineConfig
    stages: Stages
    name: str
    results: Path
    dataset: str
    root: Path                  # the processed (real) dataset

    @classmethod
    def of(cls, config: PipelineConfig) -> Study:
        name, results, d = config.output.name, Path(config.output.results_dir), config.data
        dataset = d.name or ("demo" if d.source == "demo" else Path(d.source).stem)
        return cls(config, Stages(results / "pipeline" / name / "stages.json"), name, results, dataset,
                   Path(d.processed_dir) / dataset)


def prepare_stage(study: Study) -> str:
    """1. Data (an existing processed dataset is kept as it is); returns the key of its content."""
    d, root = study.config.data, study.root
    # The key keeps the form of the prepare_data.py arguments it was first computed from, so datasets
    # prepared by earlier versions of the pipeline are recognised.
    args = ["--source", d.source, "--out", d.processed_dir, "--name", study.dataset]
    args += ["--class-names", d.class_names] if d.class_names else []
    args += ["--drop-leaked"] if d.drop_leaked else []
    key = stage_key(args)
    # A dataset this pipeline prepared with other settings is rebuilt; one it did not make is kept.
    rebuild = study.stages.done.get("prepare", {}).get("key") not in (None, key)

    def prepare() -> dict:
        prepare_dataset(d.source, d.processed_dir, study.dataset, SourceOptions(class_names=d.class_names),
                        drop_leaked=d.drop_leaked, overwrite=rebuild)
        return {"root": str(root)}

    study.stages.run("prepare", key, lambda o: (root / SPLITS_MANIFEST).is_file(), prepare)
    return stage_key(key, (root / SPLITS_MANIFEST).read_bytes().decode())   # the content, not the path


def gan_stage(study: Study, key: str) -> tuple[GANConfig, dict, str]:
    """2. The GAN on the minority class (resumed when a run of the same config was interrupted)."""
    gan = load_config(GANConfig, study.config.gan.config, [
        *study.config.gan.overrides, f"data.root={study.root}", f"output.name={study.name}_gan",
        f"output.results_dir={study.results}"])
    key = stage_key(key, to_dict(gan))
    checkpoints = study.results / "checkpoints" / f"{study.name}_gan"

    def train() -> dict:
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

    return gan, study.stages.run("gan", key, lambda o: Path(o["generator"]).is_file(), train), key


def synthesis_stage(study: Study, gan: GANConfig, generator: str, key: str) -> tuple[Path, int, str]:
    """3-4. Preview, then bulk synthesis (itself resumable, file by file); returns the folder and the count."""
    device = resolve_device(gan.train.device)
    generators = sampling.load_generators([generator], device)
    synthetic = Path(gan.output.synthetic_dir) / f"{study.name}_gan"
    real_train = Counter(r["class"] for r in read_splits_manifest(study.root) if r["split"] == "train")
    s = study.config.synthesis
    wanted = s.num_synthetic or max(1, math.ceil(max(real_train.values()) / s.target_ratio)
                                    - real_train[gan.data.minority_class])
    key = stage_key(key, wanted, s.seed, generators[0].sha256)

    def synthesise() -> dict:
        check_output_dir(synthetic)
        synthetic.mkdir(parents=True, exist_ok=True)
        preview = sampling.write_preview(generators, [1.0], s.seed, synthetic, device)
        # A retrained GAN makes the folder's images stale: replace them; otherwise finish or extend it.
        stale = any(r["generator_sha256"] != generators[0].sha256 or r["seed"] != sampling.image_seed(s.seed, i)
                    for i, r in read_synthetic_manifest(synthetic).items())
        summary = sampling.generate(generators, [1.0], wanted, s.seed, synthetic, device=device, overwrite=stale)
        return {"folder": str(synthetic), "preview": str(preview), "images": wanted, "written": summary["written"]}

    study.stages.run("synthesis", key, lambda o: (synthetic / SYNTHETIC_MANIFEST).is_file(), synthesise)
    return synthetic, wanted, key


def qa_stage(study: Study, real_dir: Path, synthetic: Path, key: str) -> dict:
    """5. Quality assurance of the synthetic folder against the real minority images."""
    s, out = study.config.synthesis, study.results / "qa" / study.name

    def qa() -> dict:
        report = run_qa(real_dir, synthetic, out, QAOptions(seed=s.seed, max_images=s.qa_max_images,
                                                            cache_dir=str(study.results / "cache")))
        checks = report["summary"]["checks"]
        return {"report": str(out / "report.html"), "verdict": report["summary"]["verdict"],
                "verdicts": {name: c["verdict"] for name, c in checks.items()}}

    qa_out = study.stages.run("qa", key, lambda o: Path(o["report"]).is_file(), qa)
    print(f"  QA verdict: {qa_out['verdict']} ({qa_out['report']})")
    apply_qa_gate(qa_out, s.qa_gate)
    return qa_out


def apply_qa_gate(qa_out: dict, gate: str) -> None:
    """Stop the study when the QA verdict is at or above `gate`: nothing downstream trains on those images."""
    if gate == "off":
        return
    blocking = [name for name, v in qa_out.get("verdicts", {}).items() if VERDICTS.index(v) >= VERDICTS.index(gate)]
    if blocking or VERDICTS.index(qa_out["verdict"]) >= VERDICTS.index(gate):
        raise UserError(f"QA verdict {qa_out['verdict']} ({', '.join(blocking) or 'see the report'}) at the "
                        f"'{gate}' gate: no classifier was trained on these images; see {qa_out['report']}, improve "
                        "the generator, or set synthesis.qa_gate=off to study them anyway")


def assemble_stage(study: Study, synthetic: Path, wanted: int, key: str) -> tuple[Path, str]:
    """6. The augmented dataset: synthetic images in train only, val/test real."""
    augmented = Path(study.config.data.processed_dir) / f"{study.dataset}_{study.name}_augmented"
    key = stage_key(key, str(augmented))
    study.stages.run("assemble", key, lambda o: (augmented / COMPOSITION).is_file(),
                     lambda: {"root": str(augmented), **build_augmented(study.root, [synthetic], augmented,
                                                                        num_synthetic=wanted,
                                                                        overwrite=augmented.exists())})
    return augmented, key


def classifier_stage(study: Study, augmented: Path, data_key: str, augmented_key: str) -> list[str]:
    """7. One classifier run per arm; baseline arms depend on the real data only."""
    run_dirs = []
    for arm in study.config.classifiers.parsed():
        data_root = augmented if arm.data == "augmented" else study.root
        arm_name = f"{study.name}_{Path(arm.config).stem}"
        cls = load_config(ClassifierConfig, arm.config, [
            *study.config.classifiers.overrides, f"data.train_dir={data_root / 'train'}",
            f"data.val_dir={data_root / 'val'}", f"data.test_dir={data_root / 'test'}", f"output.name={arm_name}",
            f"output.results_dir={study.results}"])
        arm_key = stage_key(augmented_key if arm.data == "augmented" else data_key, to_dict(cls))
        out = study.stages.run(f"classifier {arm_name}", arm_key, lambda o: (Path(o["run"]) / "summary.json").is_file(),
                               lambda cls=cls: {"run": str(train_classifier(cls))})
        run_dirs.append(out["run"])
    return run_dirs


def compare_stage(study: Study, run_dirs: list[str]) -> None:
    """8. The paired comparison of every arm against the first."""
    comparison = study.results / "comparison" / study.name

    def compare() -> dict:
        report, _ = compare_runs(run_dirs, comparison)
        print(runs_table(report) + "\n")
        for pair in report["comparisons"]:
            print(pair_table(report, pair) + "\n")
        return {"folder": str(comparison)}

    study.stages.run("compare", stage_key(run_dirs), lambda o: (comparison / "comparison.md").is_file(), compare)


def run_pipeline(config: PipelineConfig) -> dict:
    """Run every stage of `config`; returns the outputs of each stage (stages.json's content)."""
    for arm in config.classifiers.parsed():       # a typo in a classifier config fails now, not after the GAN
        load_config(ClassifierConfig, arm.config, config.classifiers.overrides)
    study = Study.of(config)
    data_key = prepare_stage(study)
    gan, gan_out, key = gan_stage(study, data_key)
    synthetic, wanted, key = synthesis_stage(study, gan, gan_out["generator"], key)
    qa_stage(study, study.root / "train" / gan.data.minority_class, synthetic, key)
    augmented, augmented_key = assemble_stage(study, synthetic, wanted, key)
    run_dirs = classifier_stage(study, augmented, data_key, augmented_key)
    compare_stage(study, run_dirs)
    return study.stages.done
