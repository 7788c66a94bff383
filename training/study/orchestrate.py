"""The order of the stages: a study on one split (`run_pipeline`), or the same study once per fold of a
cross-validated one (`evaluation.folds`) with one comparison over the folds' pooled test parts; and the
pre-flight check alone (`check_study`, `--dry_run`).

    run_pipeline(load_config(PipelineConfig, "experiments/pipeline_demo.yaml"))

Before the first expensive stage (the GAN), `training.study.preflight` resolves every stage config and
checks it against the prepared data. A fold is a study of its own (its dataset, run names <name>_fold_<k>,
stage record results/pipeline/<name>/fold_<k>/stages.json), so an interrupted study resumes at the fold and
stage where it stopped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from training.analysis.comparison import load_folded_run, write_comparison
from training.core import atomic
from training.data.processed import SPLITS_MANIFEST
from training.study import folds, preflight
from training.study.config import CHOSEN_ARM, PipelineConfig
from training.study.preflight import Plan
from training.study.stage_record import Stages, content_hash, dataset_hash, stage_key
from training.study.stages import (
    QAGateClosed,
    Study,
    assemble_stage,
    best_fix,
    chosen_stage,
    clear_comparison_extras,
    compare_stage,
    fixed_arm_count,
    fixed_arm_jobs,
    gan_stage,
    grid_choice,
    grid_jobs,
    pool_size,
    prepare_key,
    prepare_stage,
    qa_stage,
    report_comparison,
    run_arms,
    selection_stage,
    synthesis_stage,
)


def check_study(config: PipelineConfig, pipeline: str = "the pipeline config") -> Plan:
    """The pre-flight check alone (`--dry_run`): against the prepared dataset when it is there and this
    pipeline's data: section made it, else against the source as prepare would split it; writes nothing.
    A cross-validated study is checked fold by fold (folds.dry_run_plan)."""
    preflight.load_stage_configs(config)
    study = Study.of(config)
    made = study.stages.done.get("prepare", {}).get("key")
    if made is None:
        preflight.check_prepared_settings(config, study.root, pipeline)
    facts = preflight.prepared_facts(study.root) if made in (None, prepare_key(study)) else None
    if config.evaluation.folds:
        return folds.dry_run_plan(config, study.root if facts else None, facts or preflight.source_facts(config), pipeline)
    return preflight.check(config, facts or preflight.source_facts(config), pipeline)


@dataclass(frozen=True)
class SplitRuns:
    """What a study on one split trained: every fixed arm's run folder and then the chosen grid arm's (run_dirs,
    the first the baseline), those of them that trained on synthetic images (gan_runs), and the grid (search)."""

    run_dirs: list[str]
    gan_runs: list[str]
    search: dict | None


def train_split_study(study: Study, data_key: str) -> SplitRuns:
    """Every stage after the pre-flight check up to the comparison, on the split of `study.root` (whose content
    `data_key` names): the GAN(s), synthesis, QA, selection, assembly, the fixed arms, the grid on validation and
    the chosen arm."""
    config = study.config
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
    fixed = fixed_arm_jobs(study, augmented, data_key, augmented_key)
    grid = grid_jobs(study, folders, minority, excluded) if config.search.enabled else []
    runs = run_arms(study, fixed + [job for _, job, _, _ in grid])      # every arm at once when workers > 1
    run_dirs = runs[:len(fixed)]
    gan_runs = [run for arm, run in zip(config.classifiers.parsed(), run_dirs) if arm.data == "augmented"]
    search = None
    if config.search.enabled:
        search = grid_choice(study, grid, runs[len(fixed):], excluded)
        chosen = [arm.name for arm, *_ in grid].index(search["chosen"])
        gan_runs.append(chosen_stage(study, grid[chosen][1], runs[len(fixed) + chosen]))
        run_dirs.append(gan_runs[-1])
    return SplitRuns(run_dirs, gan_runs, search)


def show_check(lines: list[str] | tuple[str, ...]) -> None:
    print("[check] every stage's config against the data:")
    for line in lines:
        print(f"  {line}")


def run_pipeline(config: PipelineConfig, pipeline: str = "the pipeline config") -> dict:
    """Run every stage of `config` (read from the YAML `pipeline`, named in messages); returns the outputs
    of each stage (stages.json's content; a cross-validated study's fold stages named 'fold <k> <stage>')."""
    preflight.load_stage_configs(config)       # a typo in any stage config fails now, before the data are read
    study = Study.of(config)
    if "prepare" not in study.stages.done:          # a dataset prepared by hand is used as it is: does it match?
        preflight.check_prepared_settings(config, study.root, pipeline)
    data_key = prepare_stage(study)
    if config.evaluation.folds:
        return run_cross_validated(study, data_key, pipeline)
    plan = preflight.check(config, preflight.prepared_facts(study.root), pipeline)   # before the GAN: the first expensive stage
    show_check(plan.lines)
    study = dataclasses.replace(study, plan=plan)
    runs = train_split_study(study, data_key)
    compare_stage(study, runs.run_dirs, runs.gan_runs, runs.search)
    return study.stages.done


def fold_study(study: Study, k: int, plan: Plan) -> Study:
    """The study of fold k (0-based): its own dataset, run names and stage record, so that no output of one fold
    overwrites another's and an interrupted study resumes at the fold and stage where it stopped."""
    folds_in_all, name = study.config.evaluation.folds, f"{study.name}_fold_{k + 1}"
    record = study.results / "pipeline" / study.name / f"fold_{k + 1}" / "stages.json"
    return dataclasses.replace(study, stages=Stages(record, label=f"fold {k + 1}/{folds_in_all}"), name=name,
                               root=Path(study.config.data.processed_dir) / f"{study.dataset}_{name}", plan=plan)


def fold_data_stage(fold: Study, cv: folds.CrossValidation, k: int, data_key: str) -> str:
    """Fold k's dataset (rebuilt only when the images it is made of change); returns the key of its content."""
    key = stage_key(data_key, cv.key(k))
    fold.stages.run("data", key, lambda o: (fold.root / SPLITS_MANIFEST).is_file(),
                    lambda: {"root": str(folds.write_fold(cv, k, fold.root))},
                    fingerprint=lambda o: dataset_hash(fold.root))
    return stage_key(key, (fold.root / SPLITS_MANIFEST).read_bytes().decode())


def run_cross_validated(study: Study, data_key: str, pipeline: str) -> dict:
    """Every fold's study, each fold's dataset made from the prepared one (whose content `data_key` names), every
    fold checked before the first GAN; then the pooled comparison. Returns every stage's outputs."""
    cv = folds.CrossValidation.of(study.root, study.config, pipeline)
    facts = folds.fold_facts(cv, preflight.prepared_facts(study.root))
    plans, lines = folds.check_folds(study.config, facts, cv.pooled_test(), pipeline)
    show_check(lines)
    trained, done = [], {}
    for k, plan in enumerate(plans):
        fold = fold_study(study, k, plan)
        trained.append(train_split_study(fold, fold_data_stage(fold, cv, k, data_key)))
        done.update({f"fold {k + 1} {stage}": record for stage, record in fold.stages.done.items()})
    pooled_compare_stage(study, trained)
    return {"prepare": study.stages.done["prepare"], **done, "compare": study.stages.done["compare"]}


def arm_labels(study: Study) -> list[str]:
    """The pooled comparison's name of each arm: the name the arm's run has in a study on one split."""
    labels = [f"{study.name}_{Path(arm.config).stem}" for arm in study.config.classifiers.parsed()]
    return labels + ([f"{study.name}_{CHOSEN_ARM}"] if study.config.search.enabled else [])     # distinct: config.py


def pooled_compare_stage(study: Study, trained: list[SplitRuns]) -> None:
    """The comparison of a cross-validated study: each arm's fold runs pooled into one run over every real image
    (training.analysis.comparison.load_folded_run), the first arm the baseline; then the GAN arms against the
    cheap fix with the best validation mean over the folds, and every fold's grid."""
    comparison, metric = study.results / "comparison" / study.name, study.config.classifiers.primary_metric
    arms = list(zip(*(runs.run_dirs for runs in trained)))              # per arm, its run in each fold
    gan_arms = list(zip(*(runs.gan_runs for runs in trained)))
    labels = dict(zip(arms, arm_labels(study)))
    best = best_fix(study, arms)
    searches = [runs.search for runs in trained]

    def compare() -> dict:
        pooled = {arm: load_folded_run(arm, labels[arm]) for arm in arms}
        clear_comparison_extras(comparison)
        report = write_comparison(list(pooled.values()), comparison, primary_metric=metric)
        against = None
        if best is not None and gan_arms:
            against = write_comparison([pooled[arms[best]], *(pooled[arm] for arm in gan_arms)],
                                       comparison / "vs_best_fix", primary_metric=metric)
        if searches[0]:
            atomic.write_json(comparison / "search.json", {"folds": searches})
        report_comparison(comparison, report, against, None if best is None else labels[arms[best]], len(gan_arms),
                          folds_search_markdown(searches) if searches[0] else "")
        return {"folder": str(comparison), "best_fix": None if best is None else labels[arms[best]]}

    study.stages.run("compare", stage_key("folds", arms, gan_arms, metric, searches),
                     lambda o: (comparison / "comparison.md").is_file(), compare,
                     fingerprint=lambda o: content_hash(comparison / "comparison.md", comparison / "comparison.json"))


def folds_search_markdown(searches: list[dict]) -> str:
    """Every fold's grid as the pooled report's last section: each arm's validation score in each fold, and which
    arm each fold chose."""
    metric = searches[0]["primary_metric"]
    names = list(dict.fromkeys(row["arm"] for search in searches for row in search["arms"]))   # grid order
    scores = [{row["arm"]: row["val"] for row in search["arms"]} for search in searches]
    lines = ["## The GAN arm chosen on validation, per fold\n",
             f"In each fold every arm below was trained on that fold's training part and scored on its validation "
             f"split only; the fold's test part was not read. The arm with the best validation mean of `{metric}` "
             "(ties broken by validation AUC-ROC, then by grid order) had its models scored on the fold's test "
             "part once. The pooled `gan_chosen` above is the recipe \"choose on validation, then train\", whichever "
             "arm each fold chose (the chosen one in bold).\n",
             *[f"Fold {k}: arms with classes = {c} were left out: {why}\n"
               for k, search in enumerate(searches, start=1) for c, why in search.get("excluded", {}).items()],
             "| arm | " + " | ".join(f"fold {k} val primary" for k in range(1, len(searches) + 1)) + " |",
             "|---|" + "---:|" * len(searches)]
    for name in names:
        cells = [("n/a" if name not in fold else f"**{fold[name]:.3f}**" if name == search["chosen"] else
                  f"{fold[name]:.3f}") for fold, search in zip(scores, searches)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
