"""The stages of a study, in the order `training.study.orchestrate` runs them: prepare -> train GAN(s) ->
preview -> bulk synthesis -> QA (the gate) -> selection -> assemble -> classifiers -> the grid on validation
-> the chosen arm -> compare.

The fixed arms (baseline, cheap fixes, GAN minority-only at a fixed ratio) are trained and scored as
configured. The grid (`search:`) tries ways of using synthetic images: which classes receive them
(`all` trains one GAN per class, each on as many images in all as the minority's), how many, whether
they are selected by realism, their loss weight, a real-only fine-tune. Grid arms never read the test
split; the models of the arm with the best validation score of the declared primary metric are scored
on test beside the fixed arms, and the grid with every validation score goes into the comparison report.

Every stage records a key of its resolved inputs in results/pipeline/<name>/stages.json
(`training.study.stage_record`); a stage whose key is unchanged and whose outputs still hold what it
recorded is skipped, so a re-run resumes where the last one stopped and a changed config re-runs exactly
the stages it affects (and those after them).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import math
import multiprocessing
import os
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import torch

from quality.assessment.qa import QAOptions, run_qa
from quality.checks.verdicts import FAIL, INSUFFICIENT, VERDICTS
from training.analysis.comparison import (
    compare_runs,
    pair_table,
    primary_line,
    runs_table,
    validation_score,
)
from training.classify.checkpoint import CHECKPOINT_FILE
from training.classify.config import ClassifierConfig
from training.classify.loop import score_on_test, train_classifier
from training.core import atomic
from training.core.config import load_config, to_dict
from training.core.errors import UserError
from training.core.progress import progress
from training.core.runtime import die_with_parent, resolve_device
from training.data.augmented_set import COMPOSITION, build_augmented
from training.data.images import pixel_sha256, read_image
from training.data.prepare import prepare_dataset
from training.data.processed import SPLITS_MANIFEST, read_splits_manifest
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, check_output_dir, read_synthetic_manifest
from training.gan.checkpoint import checkpoint_epoch, checkpoint_path, list_checkpoints
from training.gan.config import GANConfig
from training.gan.loop import CannotResume, train_gan
from training.gan.run_folder import FINAL_GENERATOR, GANRun
from training.study import preflight
from training.study.config import CHOSEN_ARM, PipelineConfig, PipelineSearchConfig
from training.study.preflight import Plan, classifier_overrides, gan_overrides
from training.study.stage_record import Stages, content_hash, dataset_hash, folder_hash, stage_key
from training.synthesis import sampling
from training.synthesis.selection import select_synthetic


@dataclass(frozen=True)
class Study:
    """What every stage needs to know: the config, where things go, and the stage record."""

    config: PipelineConfig
    stages: Stages
    name: str
    results: Path
    dataset: str
    root: Path                  # the processed (real) dataset
    plan: Plan | None = None    # the pre-flight check's, once the data are prepared

    @property
    def channels(self) -> int | None:
        """The data's channel count, which every stage gets (None before the pre-flight check)."""
        return self.plan.channels if self.plan else None

    @functools.cached_property
    def real_train(self) -> Counter:
        """Real training images per class (read once, after the prepare stage)."""
        return Counter(r["class"] for r in read_splits_manifest(self.root) if r["split"] == "train")

    @classmethod
    def of(cls, config: PipelineConfig) -> Study:
        name, results, d = config.output.name, Path(config.output.results_dir), config.data
        dataset = d.name or ("demo" if d.source == "demo" else Path(d.source).stem)
        return cls(config, Stages(results / "pipeline" / name / "stages.json"), name, results, dataset,
                   Path(d.processed_dir) / dataset)


DEMO_LAYOUT = 2            # the demo's split counts: 2 = a balanced test split (500 : 500 at the default size)


def prepare_key(study: Study) -> str:
    """The prepare stage's key: every `data:` option that shapes the prepared dataset, with the version of
    the demo's layout (a balanced test split), so a dataset prepared otherwise is rebuilt.
    Later stages key on the prepared content, so a rebuild that writes the same images re-runs nothing else."""
    d = study.config.data
    return stage_key({"source": d.source, "processed_dir": d.processed_dir, "name": study.dataset,
                      "class_names": d.class_names, "drop_leaked": d.drop_leaked, "val_fraction": d.val_fraction,
                      "test_fraction": d.test_fraction, "seed": d.seed, "image_size": d.image_size,
                      "channels": d.channels, "resize": d.resize, "keep_duplicates": d.keep_duplicates,
                      # named only when set, so that a dataset grouped by image keeps the key it has without the option
                      **({"group_by": d.group_by} if d.group_by != "image" else {}),
                      "demo_layout": DEMO_LAYOUT if d.source == "demo" else None})


def prepare_stage(study: Study) -> str:
    """1. Data (an existing processed dataset is kept as it is); returns the key of its content."""
    d, root = study.config.data, study.root
    key = prepare_key(study)
    # A dataset this pipeline prepared with other settings is rebuilt; one it did not make is kept.
    rebuild = study.stages.done.get("prepare", {}).get("key") not in (None, key)

    def prepare() -> dict:
        prepare_dataset(d.source, d.processed_dir, study.dataset, preflight.source_options(study.config),
                        drop_leaked=d.drop_leaked, keep_duplicates=d.keep_duplicates, overwrite=rebuild)
        return {"root": str(root)}

    study.stages.run("prepare", key, lambda o: (root / SPLITS_MANIFEST).is_file(), prepare)
    return stage_key(key, (root / SPLITS_MANIFEST).read_bytes().decode())   # the content, not the path


def train_resumably(config: GANConfig, extend: bool = False) -> dict:
    """train_gan, continuing an interrupted run of the same config and training images, else starting afresh.
    With `extend`, a finished run of fewer epochs (and otherwise the same config) is continued too."""
    run = GANRun.of(config)
    checkpoints = list_checkpoints(run.checkpoints)
    finished = run.file(FINAL_GENERATOR).exists()
    resumable = bool(checkpoints) and (not finished or (extend and checkpoint_epoch(checkpoints[-1]) <= config.train.epochs))
    try:
        return train_gan(config, resume=resumable, overwrite=not resumable)
    except CannotResume:
        return train_gan(config, overwrite=True)      # an interrupted run of another config or data: start again


def gan_base_overrides(study: Study) -> list[str]:
    """The minority GAN's overrides, with the study's data and results folders."""
    return [*gan_overrides(study.config, study.channels), f"data.root={study.root}",
            f"output.results_dir={study.results}"]


def other_class_overrides(study: Study, class_name: str) -> list[str]:
    """Another class's GAN: as many images seen in all (epochs x class size) as the minority's, with its checkpoint
    and FID schedule scaled alike, from scratch, then gan.other_class_overrides."""
    base = load_config(GANConfig, study.config.gan.config, gan_overrides(study.config, study.channels))
    counts = study.real_train
    scale = counts[base.data.minority_class] / max(1, counts[class_name])
    scaled = lambda n: max(1, round(n * scale))
    return [*gan_base_overrides(study), f"data.minority_class={class_name}", f"train.epochs={scaled(base.train.epochs)}",
            f"train.checkpoint_every={scaled(base.train.checkpoint_every)}",
            f"metrics.every={scaled(base.metrics.every) if base.metrics.every else 0}",
            *preflight.FROM_SCRATCH, *study.config.gan.other_class_overrides]


def pretrain_source(study: Study) -> str:
    g = study.config.gan
    return max(study.real_train, key=study.real_train.get) if g.pretrain_class == "largest" else g.pretrain_class


def pretrain_config(study: Study, run_name: str) -> GANConfig:
    return load_config(GANConfig, study.config.gan.config,
                       [*gan_base_overrides(study), *preflight.FROM_SCRATCH, f"data.minority_class={pretrain_source(study)}",
                        f"train.epochs={study.config.gan.pretrain_epochs}", f"output.name={run_name}"])


def continued_pretraining(study: Study) -> str | None:
    """The class whose own GAN (for the grid's `all` arms) is the pretraining run made longer, or None.

    With the same config on the same images and only more epochs, that GAN's first `gan.pretrain_epochs` epochs
    are the pretraining's, step for step; so it continues the pretraining run (one folder,
    `<study>_gan_<class>`) instead of training those epochs again. Its checkpoint screen also sees the epoch
    where the pretraining ended.
    """
    g, search = study.config.gan, study.config.search
    if not g.pretrain_class or not (search.enabled and "all" in search.classes):
        return None
    source = pretrain_source(study)
    if source not in study.real_train:
        return None
    run_name = f"{study.name}_gan_{source}"
    own = load_config(GANConfig, g.config, [*other_class_overrides(study, source), f"output.name={run_name}"])
    pretraining = to_dict(pretrain_config(study, run_name))
    same = {**to_dict(own), "train": {**to_dict(own)["train"], "epochs": pretraining["train"]["epochs"]}} == pretraining
    return source if same and g.pretrain_epochs <= own.train.epochs else None


def pretrain_stage(study: Study, key: str) -> tuple[str, str]:
    """2a. Transfer (gan.pretrain_class): the same GAN trained first on a plentiful class; returns its last
    training checkpoint, which the minority's GAN starts from, and the key that follows."""
    continued = continued_pretraining(study)
    config = pretrain_config(study, f"{study.name}_gan_{continued}" if continued else f"{study.name}_gan_pretrain")
    key = stage_key(key, to_dict(config))
    run = GANRun.of(config)
    pretrained = checkpoint_path(run.checkpoints, config.train.epochs)

    def train() -> dict:
        train_resumably(config)
        return {"checkpoint": str(pretrained)}

    out = study.stages.run("gan pretrain", key, lambda o: Path(o["checkpoint"]).is_file(), train,
                           fingerprint=lambda o: content_hash(o["checkpoint"]))
    return out["checkpoint"], key


def gan_stage(study: Study, key: str, class_name: str | None = None) -> tuple[GANConfig, dict, str]:
    """2. The GAN on the minority class, or (`class_name`) on another class, resumed when a run of the
    same config was interrupted.

    Another class's GAN trains on as many images in all (epochs x class size) as the minority's, with
    its checkpoint and FID schedule scaled alike, unless gan.other_class_overrides says otherwise (a
    larger class may need more steps to pass QA; its QA gate decides). The class the minority's GAN is
    pretrained on continues the pretraining run when it is the same training made longer
    (`continued_pretraining`).
    """
    base = load_config(GANConfig, study.config.gan.config, gan_overrides(study.config, study.channels))
    overrides, run_name, extend = gan_base_overrides(study), f"{study.name}_gan", False
    if class_name is not None and class_name != base.data.minority_class:
        overrides, run_name = other_class_overrides(study, class_name), f"{study.name}_gan_{class_name}"
        if continued_pretraining(study) == class_name:
            _, key = pretrain_stage(study, key)         # done by the minority's GAN: its key, so a new one re-runs this
            extend = True
    if study.config.gan.pretrain_class and run_name == f"{study.name}_gan":     # the minority's GAN only
        pretrained, key = pretrain_stage(study, key)
        overrides.append(f"train.init_from={pretrained}")
    gan = load_config(GANConfig, study.config.gan.config, [*overrides, f"output.name={run_name}"])
    key = stage_key(key, to_dict(gan))
    run = GANRun.of(gan)

    def train() -> dict:
        if extend:
            print(f"  '{class_name}' GAN: the pretraining run is its first {study.config.gan.pretrain_epochs} epochs, "
                  f"continued to {gan.train.epochs}")
        summary = train_resumably(gan, extend=extend)
        return {"generator": str(run.generator()), "best_fid": summary["best_fid"],
                "feature_extractor": summary["feature_extractor"]}

    stage = "gan" if run_name == f"{study.name}_gan" else f"gan {class_name}"
    out = study.stages.run(stage, key, lambda o: Path(o["generator"]).resolve().parent == run.root.resolve()
                           and Path(o["generator"]).is_file(), train, fingerprint=lambda o: content_hash(o["generator"]))
    return gan, out, key


def fixed_arm_count(study: Study, minority: str) -> int:
    """Synthetic minority images of the fixed GAN-augmented arm (synthesis.num_synthetic or target_ratio)."""
    return preflight.fixed_arm_count(study.config, study.real_train, minority)


def pool_size(study: Study, class_name: str, minority: str) -> int:
    """Images to make of `class_name`: enough for the fixed arm and for the largest grid count, times
    search.pool_factor when the grid selects, so that selection has something to choose from."""
    g, real = study.config.search, study.real_train[class_name]
    # QA compares equal numbers of real and synthetic images: every real one needs a synthetic partner.
    wanted = max(real, fixed_arm_count(study, minority) if class_name == minority else 0)
    if g.enabled:
        wanted = max(wanted, math.ceil(largest_grid_count(study, class_name) *
                                       (g.pool_factor if "realism" in g.selection else 1)))
    return wanted


def largest_grid_count(study: Study, class_name: str) -> int:
    """Synthetic images of `class_name` the grid's largest synthetic-per-real value uses (at least one)."""
    return max(1, round(max(study.config.search.synthetic_per_real) * study.real_train[class_name]))


def synthesis_stage(study: Study, gan: GANConfig, generator: str, key: str, num_images: int) -> tuple[Path, str]:
    """3-4. Preview, then bulk synthesis of `num_images` of the GAN's class (itself resumable, file by file)."""
    device = resolve_device(gan.train.device)
    generators = sampling.load_generators([generator], device)
    synthetic = Path(gan.output.synthetic_dir) / gan.output.name
    s = study.config.synthesis
    key = stage_key(key, num_images, s.seed, generators[0].sha256)

    def synthesise() -> dict:
        check_output_dir(synthetic)
        synthetic.mkdir(parents=True, exist_ok=True)
        preview = sampling.write_preview(generators, [1.0], s.seed, synthetic, device)
        # A retrained GAN makes the folder's images stale: replace them; otherwise finish or extend it.
        # So is a file that no longer holds the pixels recorded for it (overwritten by other images).
        records = read_synthetic_manifest(synthetic)
        stale = any(r.get("generator_sha256") != generators[0].sha256 or r.get("seed") != sampling.image_seed(s.seed, i)
                    for i, r in records.items()) or not pixels_as_recorded(synthetic, records)
        summary = sampling.generate(generators, [1.0], num_images, s.seed, synthetic, device=device, overwrite=stale)
        return {"folder": str(synthetic), "preview": str(preview), "images": num_images, "written": summary["written"]}

    stage = "synthesis" if gan.output.name == f"{study.name}_gan" else f"synthesis {gan.data.minority_class}"
    # Every image is checked against its record even before a fingerprint exists (records of earlier versions).
    in_place = lambda o: (synthetic / SYNTHETIC_MANIFEST).is_file() and pixels_as_recorded(
        synthetic, read_synthetic_manifest(synthetic))
    study.stages.run(stage, key, in_place, synthesise,
                     fingerprint=lambda o: folder_hash(synthetic))      # the folder this stage writes, not o's word
    return synthetic, key


def pixels_as_recorded(folder: Path, records: dict[int, dict]) -> bool:
    """Whether every file of `records` that exists holds the pixels its record names (missing ones are made)."""
    for r in records.values():
        path = folder / str(r.get("file"))
        if path.is_file():
            try:
                if pixel_sha256(read_image(path)) != r.get("sha256"):
                    return False
            except UserError:                       # undecodable: not what was written
                return False
    return True


def qa_outputs(out: Path) -> dict:
    """The QA stage's outputs read from its report.json (the verdict the gate applies is the report's own)."""
    try:
        summary = json.loads((out / "report.json").read_text())["summary"]
        return {"report": str(out / "report.html"), "verdict": summary["verdict"],
                "verdicts": {name: c["verdict"] for name, c in summary["checks"].items()},
                "insufficient": summary["insufficient"]}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise UserError(f"{out / 'report.json'} is missing or not a QA report; delete {out} and re-run the study "
                        "to redo QA") from None


def qa_stage(study: Study, class_name: str, synthetic: Path, key: str, minority: bool = True) -> dict:
    """5. Quality assurance of a synthetic folder against the real training images of its class."""
    s, real_dir = study.config.synthesis, study.root / "train" / class_name
    out = study.results / "qa" / (study.name if minority else f"{study.name}_{class_name}")

    def qa() -> dict:
        run_qa(real_dir, synthetic, out, QAOptions(seed=s.seed, max_images=s.qa_max_images,
                                                   cache_dir=str(study.results / "cache")))
        return qa_outputs(out)

    # Skipped only while report.json and the synthetic folder it judged are as recorded; the verdict the gate
    # applies is then read from the report itself, never from stages.json.
    study.stages.run("qa" if minority else f"qa {class_name}", key, lambda o: (out / "report.json").is_file(), qa,
                     fingerprint=lambda o: stage_key(content_hash(out / "report.json"), folder_hash(synthetic)))
    qa_out = qa_outputs(out)
    print(f"  QA verdict ({class_name}): {qa_out['verdict']} ({qa_out['report']})")
    apply_qa_gate(qa_out, s.qa_gate)
    return qa_out


class QAGateClosed(UserError):
    """A synthetic folder's QA verdict is at or above the pipeline's gate."""


def apply_qa_gate(qa_out: dict, gate: str) -> None:
    """Stop the study when a QA verdict is at or above `gate`, or a check lacked the images it needs
    (insufficient, at either gate): nothing downstream trains on those images."""
    if gate == "off":
        if qa_out["verdict"] in (FAIL, INSUFFICIENT):
            print(f"  note: synthesis.qa_gate is off: the study goes on with images QA judged {qa_out['verdict']}")
        return
    blocked = lambda v: v == INSUFFICIENT or VERDICTS.index(v) >= VERDICTS.index(gate)
    blocking = [name for name, v in qa_out.get("verdicts", {}).items() if blocked(v)]
    if not blocking and not blocked(qa_out["verdict"]):
        return
    lacking = qa_out.get("insufficient", {})
    why = "; ".join(f"{name}: {lacked}" for name, lacked in lacking.items())
    raise QAGateClosed(f"QA verdict {qa_out['verdict']} ({', '.join(blocking) or 'see the report'}) at the '{gate}' gate"
                       + (f" (not enough evidence: {why})" if why else "") + f": no classifier was trained on these "
                       f"images; see {qa_out['report']}, improve the generator"
                       + (" or add real images" if why else "") + ", or set synthesis.qa_gate=off to study them anyway")


def assemble_stage(study: Study, folders: list[Path], key: str, name: str, **amount: float) -> tuple[Path, str]:
    """6. An augmented dataset: the synthetic images of `folders` in train only (`amount` as build_augmented's
    num_synthetic / synthetic_per_real), val/test real."""
    augmented = Path(study.config.data.processed_dir) / f"{study.dataset}_{name}"
    key = stage_key(key, str(augmented), amount)
    study.stages.run(f"assemble {name}", key, lambda o: (augmented / COMPOSITION).is_file(),
                     lambda: {"root": str(augmented), **build_augmented(study.root, folders, augmented,
                                                                        overwrite=augmented.exists(), **amount)},
                     fingerprint=lambda o: stage_key(dataset_hash(augmented), *map(folder_hash, folders)))
    return augmented, key


def selection_stage(study: Study, class_name: str, pool: Path, key: str) -> tuple[Path, str]:
    """The most realistic images of a pool (near-copies of training images dropped), best first."""
    keep = largest_grid_count(study, class_name)
    out = pool.parent / f"{pool.name}_selected"
    key = stage_key(key, keep, "realism")

    def select() -> dict:
        summary = select_synthetic(pool, study.root / "train" / class_name, out, keep, score="realism",
                                   cache_dir=study.results / "cache", device=resolve_device("auto"),
                                   overwrite=out.exists())
        return {"folder": str(out), "kept": keep, "summary": summary}

    study.stages.run(f"select {class_name}", key, lambda o: (out / SYNTHETIC_MANIFEST).is_file(), select,
                     fingerprint=lambda o: stage_key(folder_hash(out), folder_hash(pool)))
    return out, key


@dataclass(frozen=True)
class ArmJob:
    """One classifier arm as a stage: its resolved config, and the stage name and key it is recorded under."""

    stage: str
    key: str
    config: ClassifierConfig
    score_test: bool

    @property
    def runs(self) -> Path:
        """Where train_classifier puts this arm's run folders."""
        return (Path(self.config.output.results_dir) / "classifiers" / self.config.output.name).resolve()

    def done(self, outputs: dict) -> bool:
        """The recorded run is this arm's, with its summary and every seed's model (the grid's chosen arm reads them)."""
        run = Path(outputs["run"])
        return (run.resolve().parent == self.runs and (run / "summary.json").is_file()
                and all((run / f"seed_{seed}" / CHECKPOINT_FILE).is_file() for seed in self.config.train.seeds))


def arm_job(study: Study, config_path: str, data_root: Path, arm_name: str, key: str,
            overrides: tuple[str, ...] = (), score_test: bool = True) -> ArmJob:
    """One classifier config on `data_root`, as a stage (not yet run)."""
    cls = load_config(ClassifierConfig, config_path, [
        *classifier_overrides(study.config, study.channels), *overrides, f"data.train_dir={data_root / 'train'}",
        f"data.val_dir={data_root / 'val'}", f"data.test_dir={data_root / 'test'}", f"output.name={arm_name}",
        f"output.results_dir={study.results}"])
    # A thread count changes the numbers: it is part of the key.
    threads = ("one thread",) if one_thread_per_arm(study) else ()
    return ArmJob(f"classifier {arm_name}", stage_key(key, to_dict(cls), score_test, *threads), cls, score_test)


def one_thread_per_arm(study: Study) -> bool:
    """With `classifiers.workers` > 1 every arm trains (and is scored) in a worker process of its own, on one thread."""
    return study.config.classifiers.workers > 1


def summary_fingerprint(outputs: dict) -> str | None:
    """What a classifier stage's run is checked by on a re-run: its summary.json."""
    return content_hash(Path(outputs["run"]) / "summary.json")


def train_arm(job: ArmJob, log: Path) -> tuple[str, float]:
    """Train one arm in a worker process, on one thread, its output in `log`: (run folder, seconds)."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    with open(log, "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        run = train_classifier(job.config, score_test=job.score_test)
    return str(run), time.perf_counter() - start


def run_arms(study: Study, jobs: list[ArmJob]) -> list[str]:
    """Each job's run folder: a recorded one when its stage is up to date, else trained now; with
    `classifiers.workers` > 1 that many at once, each in a process of its own on one thread (on 2 cores about
    0.8x the time of one after another on two threads: docs/benchmarks.md)."""
    runs = {job.stage: (study.stages.reusable(job.stage, job.key, job.done, summary_fingerprint) or {}).get("run")
            for job in jobs}
    pending = [job for job in jobs if runs[job.stage] is None]
    workers = study.config.classifiers.workers
    if workers == 1:
        for job in pending:
            start = time.perf_counter()
            runs[job.stage] = str(train_classifier(job.config, score_test=job.score_test))
            study.stages.record(job.stage, job.key, {"run": runs[job.stage]}, time.perf_counter() - start,
                                summary_fingerprint)
    elif pending:
        logs = study.results / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(min(workers, len(pending)), mp_context=multiprocessing.get_context("spawn"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(train_arm, job, logs / f"{job.config.output.name}.log"): job for job in pending}
            try:
                for future in progress(as_completed(futures), total=len(futures), desc="classifier arms", unit="arm"):
                    job = futures[future]
                    runs[job.stage], seconds = future.result()
                    study.stages.record(job.stage, job.key, {"run": runs[job.stage]}, seconds, summary_fingerprint)
                    print(f"{study.stages.tag(job.stage)} done in {seconds:.0f} s (log: "
                          f"{logs / f'{job.config.output.name}.log'})")
            except BaseException:
                pool.shutdown(cancel_futures=True)      # say why now, not after every queued arm has trained
                raise
    return [runs[job.stage] for job in jobs]


def fixed_arm_jobs(study: Study, augmented: Path, data_key: str, augmented_key: str) -> list[ArmJob]:
    """7. One classifier per fixed arm; baseline arms depend on the real data only."""
    return [arm_job(study, arm.config, augmented if arm.data == "augmented" else study.root,
                    f"{study.name}_{Path(arm.config).stem}", augmented_key if arm.data == "augmented" else data_key)
            for arm in study.config.classifiers.parsed()]


@dataclass(frozen=True)
class GridArm:
    """One way of using synthetic images: which classes get them, how many, how chosen, how weighted."""

    classes: str
    selection: str
    per_real: float
    weight: float
    finetune: int

    @property
    def name(self) -> str:
        return (f"{self.classes}_{self.selection}_x{self.per_real:g}_w{self.weight:g}"
                + (f"_ft{self.finetune}" if self.finetune else ""))

    @property
    def overrides(self) -> tuple[str, ...]:
        return (f"data.synthetic_weight={self.weight}", f"train.finetune_real_epochs={self.finetune}")


def grid_arms(search: PipelineSearchConfig) -> list[GridArm]:
    """Every combination of the search's values, in a fixed order (the order also breaks ties)."""
    return [GridArm(*values) for values in itertools.product(search.classes, search.selection, search.synthetic_per_real,
                                                             search.synthetic_weight, search.finetune_real_epochs)]


def grid_jobs(study: Study, folders: dict[tuple[str, str], tuple[Path, str]], minority: str,
              excluded: dict[str, str]) -> list[tuple[GridArm, ArmJob, Path, str]]:
    """8. The grid's arms with their assembled data (arm, job, data folder, data key); each is trained and scored
    on validation only (the test split is never read). `excluded` maps a value of search.classes whose images
    failed the QA gate to why; its arms are left out."""
    g, out = study.config.search, []
    for arm in [a for a in grid_arms(g) if a.classes not in excluded]:
        classes = [minority] if arm.classes == "minority" else sorted(study.real_train)
        sources = [folders[(c, arm.selection)] for c in classes]
        data_name = f"{study.name}_grid_{arm.classes}_{arm.selection}_x{arm.per_real:g}"
        data_root, key = assemble_stage(study, [f for f, _ in sources], stage_key(*[k for _, k in sources]),
                                        data_name, synthetic_per_real=arm.per_real)
        out.append((arm, arm_job(study, g.arm, data_root, f"{study.name}_grid_{arm.name}", key, arm.overrides,
                                 score_test=False), data_root, key))
    if not out:
        raise UserError(f"every arm of the grid was left out ({'; '.join(excluded.values())})")
    return out


def grid_choice(study: Study, grid: list[tuple[GridArm, ArmJob, Path, str]], runs: list[str],
                excluded: dict[str, str]) -> dict:
    """The grid's rows and the choice by the primary metric's validation mean over seeds (ties: validation AUC,
    then grid order)."""
    metric = study.config.classifiers.primary_metric
    rows = [{"arm": arm.name, **dataclasses.asdict(arm), "run": run, "data": str(data_root), "data_key": key,
             "val": validation_score(run, metric), "val_roc_auc": validation_score(run, "roc_auc")}
            for (arm, _, data_root, key), run in zip(grid, runs)]
    best = min(range(len(rows)), key=lambda i: (-rows[i]["val"], -rows[i]["val_roc_auc"], i))
    return {"primary_metric": metric, "arms": rows, "excluded": excluded, "chosen": rows[best]["arm"],
            "chosen_data": rows[best]["data"]}


def chosen_stage(study: Study, job: ArmJob, trained: str) -> str:
    """9. The grid's chosen arm (`job`, which trained the run `trained`) scored on test once, as the run
    `<study>_gan_chosen`; returns its folder. The models are the grid run's, read rather than trained again
    (training.classify.loop.score_on_test): on the CPU a retrain would draw the same ones."""
    name = f"{study.name}_{CHOSEN_ARM}"
    chosen = dataclasses.replace(job, stage=f"classifier {name}", score_test=True,
                                 key=stage_key(job.key, summary_fingerprint({"run": trained})),
                                 config=dataclasses.replace(job.config, output=dataclasses.replace(job.config.output,
                                                                                                    name=name)))

    def score() -> dict:
        threads = torch.get_num_threads()
        if one_thread_per_arm(study):
            torch.set_num_threads(1)          # as the grid's arm was scored in its worker: the same numbers
        try:
            return {"run": str(score_on_test(Path(trained), chosen.config))}
        finally:
            torch.set_num_threads(threads)

    return study.stages.run(chosen.stage, chosen.key, chosen.done, score, fingerprint=summary_fingerprint)["run"]


def search_markdown(search: dict) -> str:
    """The grid, every arm's validation score, and the choice, as the comparison report's last section."""
    lines = ["## The GAN arm chosen on validation\n",
             f"Every arm below was trained ({len(search['arms'])} arms) and scored on the validation split only; the test "
             "split was not read. Realism-selected arms also drop near-copies of training images; unselected arms "
             "take the pool's first images as they come."
             f" The arm with the best validation mean of `{search['primary_metric']}` (declared "
             "before any run; ties broken by validation AUC-ROC, then by grid order) then had its models "
             "scored on test once, as `gan_chosen` above.\n",
             *[f"Arms with classes = {k} were left out: {why}\n" for k, why in search.get("excluded", {}).items()],
             "| arm | classes | selection | synthetic per real | weight | fine-tune epochs | val primary | val AUC-ROC |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(search["arms"], key=lambda r: -r["val"]):
        mark = " **(chosen)**" if r["arm"] == search["chosen"] else ""
        lines.append(f"| {r['arm']}{mark} | {r['classes']} | {r['selection']} | {r['per_real']:g} | {r['weight']:g} | "
                     f"{r['finetune']} | {r['val']:.3f} | {r['val_roc_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def best_fix(study: Study, arms: list[tuple[str, ...]]) -> int | None:
    """Which fixed arm is the cheap fix (an arm on the real data, not the baseline) with the best validation mean
    of the primary metric, averaged over its runs (one per fold; one on a single split): the competitor a GAN
    arm has to beat, chosen without looking at test. Its index in `arms`, None when there is no cheap fix."""
    parsed, metric = study.config.classifiers.parsed(), study.config.classifiers.primary_metric
    fixes = [i for i, arm in enumerate(parsed[1:], start=1) if arm.data == "baseline"]
    score = lambda i: sum(validation_score(run, metric) for run in arms[i]) / len(arms[i])
    return max(fixes, key=score, default=None)


def report_comparison(comparison: Path, report: dict, against: dict | None, competitor: str | None, gan_arms: int,
                      search_text: str) -> None:
    """Print the comparison's tables, and add to its comparison.md the GAN arms against the best cheap fix
    (`against`, a comparison written in comparison/vs_best_fix) and the grid (`search_text`)."""
    print(runs_table(report) + "\n")
    for pair in report["comparisons"]:
        print(pair_table(report, pair) + "\n")
        if pair.get("identical_to_baseline"):
            print(f"note: {pair['run']} made exactly the baseline's predictions ({pair['identical_to_baseline']}): "
                  "its differences are 0 by construction\n")
    metric = report["primary_metric"]["metric"]
    text = ""
    if against:
        text += (f"## The GAN arms against the best cheap fix\n\nThe cheap fix with the best validation "
                 f"`{metric}` is `{competitor}`; against it (Holm over the {gan_arms} GAN arms; details in "
                 "`vs_best_fix/comparison.md`):\n\n"
                 + "".join(f"- `{pair['run']}`: {primary_line(pair)}\n" for pair in against["comparisons"]))
    if search_text:
        text += "\n" + search_text
    if text:
        atomic.write_text(comparison / "comparison.md", (comparison / "comparison.md").read_text() + "\n" + text)
        print(text)


def clear_comparison_extras(comparison: Path) -> None:
    """Remove the parts of a comparison folder that only some studies write (the GAN arms against the best
    cheap fix, the grid's record), so that an earlier study's never sit beside a new report."""
    shutil.rmtree(comparison / "vs_best_fix", ignore_errors=True)
    (comparison / "search.json").unlink(missing_ok=True)


def compare_stage(study: Study, run_dirs: list[str], gan_runs: list[str], search: dict | None) -> None:
    """10. The paired comparison of every arm against the first, on the declared primary metric; then every
    GAN arm (`gan_runs`) against the best cheap fix, with the grid."""
    comparison, metric = study.results / "comparison" / study.name, study.config.classifiers.primary_metric
    best = best_fix(study, [(run,) for run in run_dirs])
    competitor = None if best is None else run_dirs[best]

    def compare() -> dict:
        clear_comparison_extras(comparison)
        report, _ = compare_runs(run_dirs, comparison, primary_metric=metric)
        against = None
        if competitor and gan_runs:
            against, _ = compare_runs([competitor, *gan_runs], comparison / "vs_best_fix", primary_metric=metric)
        if search:
            atomic.write_json(comparison / "search.json", search)
        report_comparison(comparison, report, against, competitor and Path(competitor).parent.name, len(gan_runs),
                          search_markdown(search) if search else "")
        return {"folder": str(comparison), "best_fix": competitor}

    study.stages.run("compare", stage_key(run_dirs, gan_runs, metric, search),
                     lambda o: (comparison / "comparison.md").is_file(), compare,
                     fingerprint=lambda o: content_hash(comparison / "comparison.md", comparison / "comparison.json"))


