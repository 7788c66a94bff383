"""The whole study in one command: prepare -> train GAN(s) -> preview -> bulk synthesis -> QA (the gate) ->
selection -> assemble -> classifiers -> the grid on validation -> the chosen arm -> compare.

    run_pipeline(load_config(PipelineConfig, "experiments/pipeline_demo.yaml"))

The fixed arms (baseline, cheap fixes, GAN minority-only at a fixed ratio) are trained and scored as
configured. The grid (`search:`) tries ways of using synthetic images: which classes receive them
(`all` trains one GAN per class, each on as many images in all as the minority's), how many, whether
they are selected by realism, their loss weight, a real-only fine-tune. Grid arms never read the test
split; the arm with the best validation score of the declared primary metric is trained once more
and scored on test beside the fixed arms, and the grid with every validation score goes into the
comparison report.

Every stage records a key of its resolved inputs in results/pipeline/<name>/stages.json; a stage
whose key is unchanged and whose outputs exist is skipped, so a re-run resumes where the last one
stopped and a changed config re-runs exactly the stages it affects (and those after them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality.assessment.qa import QAOptions, run_qa
from quality.checks.verdicts import FAIL, INSUFFICIENT, VERDICTS
from training.analysis.comparison import compare_runs, pair_table, primary_line, runs_table, validation_score
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
from training.study.config import PipelineConfig, PipelineSearchConfig
from training.synthesis import sampling
from training.synthesis.selection import select_synthetic


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


def gan_stage(study: Study, key: str, class_name: str | None = None) -> tuple[GANConfig, dict, str]:
    """2. The GAN on the minority class, or (`class_name`) on another class, resumed when a run of the
    same config was interrupted.

    Another class's GAN trains on as many images in all (epochs x class size) as the minority's, with
    its checkpoint and FID schedule scaled alike, unless gan.other_class_overrides says otherwise (a
    larger class may need more steps to pass QA; its QA gate decides).
    """
    base = load_config(GANConfig, study.config.gan.config, study.config.gan.overrides)
    overrides = [*study.config.gan.overrides, f"data.root={study.root}", f"output.results_dir={study.results}"]
    run_name = f"{study.name}_gan"
    if class_name is not None and class_name != base.data.minority_class:
        counts = study.real_train
        scale = counts[base.data.minority_class] / max(1, counts[class_name])
        scaled = lambda n: max(1, round(n * scale))
        overrides += [f"data.minority_class={class_name}", f"train.epochs={scaled(base.train.epochs)}",
                      f"train.checkpoint_every={scaled(base.train.checkpoint_every)}",
                      f"metrics.every={scaled(base.metrics.every) if base.metrics.every else 0}",
                      *study.config.gan.other_class_overrides]
        run_name = f"{study.name}_gan_{class_name}"
    gan = load_config(GANConfig, study.config.gan.config, [*overrides, f"output.name={run_name}"])
    key = stage_key(key, to_dict(gan))
    checkpoints = study.results / "checkpoints" / run_name

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

    stage = "gan" if run_name == f"{study.name}_gan" else f"gan {class_name}"
    return gan, study.stages.run(stage, key, lambda o: Path(o["generator"]).is_file(), train), key


def fixed_arm_count(study: Study, minority: str) -> int:
    """Synthetic minority images of the fixed GAN-augmented arm (synthesis.num_synthetic or target_ratio)."""
    real_train, s = study.real_train, study.config.synthesis
    return s.num_synthetic or max(1, math.ceil(max(real_train.values()) / s.target_ratio) - real_train[minority])


def pool_size(study: Study, class_name: str, minority: str) -> int:
    """Images to make of `class_name`: enough for the fixed arm and for the largest grid count, times
    search.pool_factor when the grid selects, so that selection has something to choose from."""
    g, real = study.config.search, study.real_train[class_name]
    # QA compares equal numbers of real and synthetic images: every real one needs a synthetic partner.
    wanted = max(real, fixed_arm_count(study, minority) if class_name == minority else 0)
    if g.enabled:
        largest = max(1, round(max(g.synthetic_per_real) * real))
        wanted = max(wanted, math.ceil(largest * (g.pool_factor if "realism" in g.selection else 1)))
    return wanted


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
        stale = any(r["generator_sha256"] != generators[0].sha256 or r["seed"] != sampling.image_seed(s.seed, i)
                    for i, r in read_synthetic_manifest(synthetic).items())
        summary = sampling.generate(generators, [1.0], num_images, s.seed, synthetic, device=device, overwrite=stale)
        return {"folder": str(synthetic), "preview": str(preview), "images": num_images, "written": summary["written"]}

    stage = "synthesis" if gan.output.name == f"{study.name}_gan" else f"synthesis {gan.data.minority_class}"
    study.stages.run(stage, key, lambda o: (synthetic / SYNTHETIC_MANIFEST).is_file(), synthesise)
    return synthetic, key


def qa_stage(study: Study, class_name: str, synthetic: Path, key: str, minority: bool = True) -> dict:
    """5. Quality assurance of a synthetic folder against the real training images of its class."""
    s, real_dir = study.config.synthesis, study.root / "train" / class_name
    out = study.results / "qa" / (study.name if minority else f"{study.name}_{class_name}")

    def qa() -> dict:
        report = run_qa(real_dir, synthetic, out, QAOptions(seed=s.seed, max_images=s.qa_max_images,
                                                            cache_dir=str(study.results / "cache")))
        checks = report["summary"]["checks"]
        return {"report": str(out / "report.html"), "verdict": report["summary"]["verdict"],
                "verdicts": {name: c["verdict"] for name, c in checks.items()},
                "insufficient": report["summary"]["insufficient"]}

    qa_out = study.stages.run("qa" if minority else f"qa {class_name}", key, lambda o: Path(o["report"]).is_file(), qa)
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
    why = "; ".join(f"{name}: {reason.split(';')[0]}" for name, reason in lacking.items())
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
                                                                        overwrite=augmented.exists(), **amount)})
    return augmented, key


def selection_stage(study: Study, class_name: str, pool: Path, key: str) -> tuple[Path, str]:
    """The most realistic images of a pool (near-copies of training images dropped), best first."""
    g, real = study.config.search, study.real_train[class_name]
    keep = max(1, round(max(g.synthetic_per_real) * real))
    out = pool.parent / f"{pool.name}_selected"
    key = stage_key(key, keep, "realism")

    def select() -> dict:
        summary = select_synthetic(pool, study.root / "train" / class_name, out, keep, score="realism",
                                   cache_dir=study.results / "cache", device=resolve_device("auto"),
                                   overwrite=out.exists())
        return {"folder": str(out), "kept": keep, "summary": summary}

    study.stages.run(f"select {class_name}", key, lambda o: (out / SYNTHETIC_MANIFEST).is_file(), select)
    return out, key


def classifier_run(study: Study, config_path: str, data_root: Path, arm_name: str, key: str,
                   overrides: tuple[str, ...] = (), score_test: bool = True) -> str:
    """One classifier config on `data_root`, as a stage; returns its run folder."""
    cls = load_config(ClassifierConfig, config_path, [
        *study.config.classifiers.overrides, *overrides, f"data.train_dir={data_root / 'train'}",
        f"data.val_dir={data_root / 'val'}", f"data.test_dir={data_root / 'test'}", f"output.name={arm_name}",
        f"output.results_dir={study.results}"])
    arm_key = stage_key(key, to_dict(cls), score_test)
    out = study.stages.run(f"classifier {arm_name}", arm_key, lambda o: (Path(o["run"]) / "summary.json").is_file(),
                           lambda: {"run": str(train_classifier(cls, score_test=score_test))})
    return out["run"]


def classifier_stage(study: Study, augmented: Path, data_key: str, augmented_key: str) -> list[str]:
    """7. One classifier run per fixed arm; baseline arms depend on the real data only."""
    return [classifier_run(study, arm.config, augmented if arm.data == "augmented" else study.root,
                           f"{study.name}_{Path(arm.config).stem}",
                           augmented_key if arm.data == "augmented" else data_key)
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


def search_stage(study: Study, folders: dict[tuple[str, str], tuple[Path, str]], minority: str,
                 excluded: dict[str, str]) -> dict:
    """The grid, each arm trained and scored on validation only (the test split is never read), and the
    choice by the primary metric's validation mean over seeds (ties: validation AUC, then grid order).
    `excluded` maps a value of search.classes whose images failed the QA gate to why; its arms are skipped."""
    g, metric = study.config.search, study.config.classifiers.primary_metric
    arms, rows = [a for a in grid_arms(g) if a.classes not in excluded], []
    for arm in arms:
        classes = [minority] if arm.classes == "minority" else sorted(study.real_train)
        sources = [folders[(c, arm.selection)] for c in classes]
        data_name = f"{study.name}_grid_{arm.classes}_{arm.selection}_x{arm.per_real:g}"
        data_root, key = assemble_stage(study, [f for f, _ in sources], stage_key(*[k for _, k in sources]),
                                        data_name, synthetic_per_real=arm.per_real)
        run = classifier_run(study, g.arm, data_root, f"{study.name}_grid_{arm.name}", key, arm.overrides,
                             score_test=False)
        rows.append({"arm": arm.name, **dataclasses.asdict(arm), "run": run, "data": str(data_root), "data_key": key,
                     "val": validation_score(run, metric), "val_roc_auc": validation_score(run, "roc_auc")})
    if not rows:
        raise UserError(f"every arm of the grid was left out ({'; '.join(excluded.values())})")
    best = min(range(len(rows)), key=lambda i: (-rows[i]["val"], -rows[i]["val_roc_auc"], i))
    chosen = rows[best]
    return {"primary_metric": metric, "arms": rows, "excluded": excluded, "chosen": chosen["arm"],
            "chosen_data": chosen["data"], "chosen_data_key": chosen["data_key"],
            "chosen_overrides": list(arms[best].overrides)}


def search_markdown(search: dict) -> str:
    """The grid, every arm's validation score, and the choice, as the comparison report's last section."""
    lines = ["## The GAN arm chosen on validation\n",
             f"Every arm below was trained ({len(search['arms'])} arms) and scored on the validation split only; the test "
             "split was not read. Realism-selected arms also drop near-copies of training images; unselected arms "
             "take the pool's first images as they come."
             f" The arm with the best validation mean of `{search['primary_metric']}` (declared "
             "before any run; ties broken by validation AUC-ROC, then by grid order) was then trained again and "
             "scored on test once, as `gan_chosen` above.\n",
             *[f"Arms with classes = {k} were left out: {why}\n" for k, why in search.get("excluded", {}).items()],
             "| arm | classes | selection | synthetic per real | weight | fine-tune epochs | val primary | val AUC-ROC |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in sorted(search["arms"], key=lambda r: -r["val"]):
        mark = " **(chosen)**" if r["arm"] == search["chosen"] else ""
        lines.append(f"| {r['arm']}{mark} | {r['classes']} | {r['selection']} | {r['per_real']:g} | {r['weight']:g} | "
                     f"{r['finetune']} | {r['val']:.3f} | {r['val_roc_auc']:.3f} |")
    return "\n".join(lines) + "\n"


def best_fix(study: Study, run_dirs: list[str]) -> str | None:
    """The cheap fix (a fixed arm on the real data, not the baseline) with the best validation mean of the
    primary metric: the competitor a GAN arm has to beat, chosen without looking at test."""
    arms = study.config.classifiers.parsed()
    fixes = [run for arm, run in zip(arms[1:], run_dirs[1:len(arms)]) if arm.data == "baseline"]
    metric = study.config.classifiers.primary_metric
    return max(fixes, key=lambda run: validation_score(run, metric), default=None)


def compare_stage(study: Study, run_dirs: list[str], gan_runs: list[str], search: dict | None) -> None:
    """8. The paired comparison of every arm against the first, on the declared primary metric; then every
    GAN arm (`gan_runs`) against the best cheap fix, with the grid."""
    comparison, metric = study.results / "comparison" / study.name, study.config.classifiers.primary_metric
    competitor = best_fix(study, run_dirs)

    def compare() -> dict:
        report, _ = compare_runs(run_dirs, comparison, primary_metric=metric)
        print(runs_table(report) + "\n")
        for pair in report["comparisons"]:
            print(pair_table(report, pair) + "\n")
        text = ""
        if competitor and gan_runs:
            against, _ = compare_runs([competitor, *gan_runs], comparison / "vs_best_fix", primary_metric=metric)
            text += (f"## The GAN arms against the best cheap fix\n\nThe cheap fix with the best validation "
                     f"`{metric}` is `{Path(competitor).parent.name}`; against it (Holm over the "
                     f"{len(gan_runs)} GAN arms; details in `vs_best_fix/comparison.md`):\n\n"
                     + "".join(f"- `{pair['run']}`: {primary_line(pair)}\n" for pair in against["comparisons"]))
        if search:
            atomic.write_json(comparison / "search.json", search)
            text += "\n" + search_markdown(search)
        if text:
            atomic.write_text(comparison / "comparison.md", (comparison / "comparison.md").read_text() + "\n" + text)
            print(text)
        return {"folder": str(comparison), "best_fix": competitor}

    study.stages.run("compare", stage_key(run_dirs, gan_runs, metric, search),
                     lambda o: (comparison / "comparison.md").is_file(), compare)


def run_pipeline(config: PipelineConfig) -> dict:
    """Run every stage of `config`; returns the outputs of each stage (stages.json's content)."""
    for arm in config.classifiers.parsed():       # a typo in a classifier config fails now, not after the GAN
        load_config(ClassifierConfig, arm.config, config.classifiers.overrides)
    if config.search.enabled:
        load_config(ClassifierConfig, config.search.arm, config.classifiers.overrides)
    study = Study.of(config)
    data_key = prepare_stage(study)
    gan, gan_out, key = gan_stage(study, data_key)
    minority = gan.data.minority_class
    gan_classes = [minority]
    if config.search.enabled and "all" in config.search.classes:
        gan_classes += sorted(set(study.real_train) - {minority})
    folders: dict[tuple[str, str], tuple[Path, str]] = {}
    excluded: dict[str, str] = {}
    for class_name in gan_classes:
        if class_name != minority:
            gan, gan_out, key = gan_stage(study, data_key, class_name)
        pool, pool_key = synthesis_stage(study, gan, gan_out["generator"], key, pool_size(study, class_name, minority))
        try:
            qa_stage(study, class_name, pool, pool_key, minority=class_name == minority)
        except QAGateClosed as gate:
            if class_name == minority:
                raise
            # Another class's images serve only the grid's 'all' arms: those go, the rest of the study stays.
            excluded["all"] = str(gate)
            print(f"  the grid's 'all' arms are left out: {gate}")
            continue
        folders[(class_name, "off")] = pool, pool_key
        if config.search.enabled and "realism" in config.search.selection:
            folders[(class_name, "realism")] = selection_stage(study, class_name, pool, pool_key)
    pool, pool_key = folders[(minority, "off")]
    augmented, augmented_key = assemble_stage(study, [pool], pool_key, f"{study.name}_augmented",
                                              num_synthetic=fixed_arm_count(study, minority))
    run_dirs = classifier_stage(study, augmented, data_key, augmented_key)
    gan_runs = [run for arm, run in zip(config.classifiers.parsed(), run_dirs) if arm.data == "augmented"]
    search = None
    if config.search.enabled:
        search = search_stage(study, folders, minority, excluded)
        gan_runs.append(classifier_run(study, config.search.arm, Path(search["chosen_data"]), f"{study.name}_gan_chosen",
                                       search["chosen_data_key"], tuple(search["chosen_overrides"])))
        run_dirs.append(gan_runs[-1])
    compare_stage(study, run_dirs, gan_runs, search)
    return study.stages.done
