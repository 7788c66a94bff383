"""The pipeline's pre-flight check: every stage's config resolved and checked against the data before anything
expensive runs (and by `--dry_run`, which runs nothing).

Without it, a study would learn that `data.positive_class` names no class of the data after prepare -> GAN ->
synthesis -> QA -> assembly, minutes in. Here, before the GAN:

* every stage config loads (typos, types, ranges), with the pipeline's own overrides;
* the class the GAN learns (`minority_class`) and the class the classifiers report sensitivity for
  (`positive_class`) are classes of the data, with images in train, val and test;
* the channel count comes from the data, and no override contradicts it;
* every arm's real and synthetic images reach its classifier by the same resizing path (at the GAN's size
  when the GAN upsampled the real images; never upsampling only some of them);
* warnings: fewer than VAL_POSITIVES_FLOOR positives in validation, a GAN arm that adds too few images;
* the minimum detectable effect on the primary metric, from the test positives (every fold's, in a
  cross-validated study), the seeds and a prior seed spread, with a warning when it is above 10 pp.

The data are the prepared dataset when it exists, otherwise the source as prepare_data.py would split it
(an image folder's files are decoded once for that; nothing is written). Each error is one line naming
the key and the file it comes from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from quality.checks.detectability import MIN_IMAGES_PER_SET as DETECTABILITY_NEED
from quality.checks.pixel_statistics import MIN_IMAGES_PER_SET as STATISTICS_NEED
from training.analysis.comparison import DETECTABLE_NOTE_ABOVE
from training.analysis.statistics import MDE_POWER, minimum_detectable_effect, prior_seed_spread
from training.classify.config import ClassifierConfig
from training.classify.metrics import PRIMARY_METRIC
from training.core.config import load_config, parse_overrides
from training.core.errors import ConfigError, DataError
from training.data.augmented_set import few_synthetic_note
from training.data.images import classifier_size_problem
from training.data.prepare import SourceOptions, open_prepared_source
from training.data.processed import DATASET_INFO, SPLITS, SPLITS_MANIFEST, read_splits_manifest
from training.data.scan import GAN_SIZE_RANGE
from training.gan.config import GANConfig
from training.study.config import PipelineConfig

# Fewer validation images of the positive class than this, and the thresholds chosen on validation (Youden's J,
# the 90 %-specificity cut) move by whole images' worth of sensitivity: 1 of 9 is 11 points. A rule of thumb.
VAL_POSITIVES_FLOOR = 20


@dataclass(frozen=True)
class DataFacts:
    """What the stage configs are checked against.

    Attributes:
        where: the prepared dataset, or the source and that it is not prepared yet (for messages).
        prepared: whether the facts come from a prepared dataset.
        counts: split -> class -> images.
        channels: 1 or 3, as the processed images are (or will be) stored.
        train_sides: the distinct shorter sides of the training images as prepared (px).
    """

    where: str
    prepared: bool
    counts: dict[str, dict[str, int]]
    channels: int
    train_sides: tuple[int, ...]

    @property
    def classes(self) -> list[str]:
        return sorted({c for per_class in self.counts.values() for c in per_class})


def source_options(config: PipelineConfig) -> SourceOptions:
    """prepare_data.py's options as the pipeline's `data:` section sets them."""
    d = config.data
    return SourceOptions(class_names=d.class_names, image_size=d.image_size, val_fraction=d.val_fraction,
                         test_fraction=d.test_fraction, seed=d.seed,
                         channels=None if d.channels == "auto" else int(d.channels), resize=d.resize,
                         group_by=d.group_by)


def prepared_facts(root: Path) -> DataFacts | None:
    """The facts of a prepared dataset (None when `root` holds none): counts from manifest.csv, channels and
    sizes from dataset.json, or from the image headers of a dataset prepared before dataset.json existed."""
    if not (root / SPLITS_MANIFEST).is_file():
        return None
    rows = read_splits_manifest(root)
    counts = {s: {} for s in SPLITS}
    for r in rows:
        counts[r["split"]][r["class"]] = counts[r["split"]].get(r["class"], 0) + 1
    info = dataset_info(root)
    if "channels" in info and "train_sides" in info:
        channels, sides = int(info["channels"]), tuple(info["train_sides"])
    else:
        modes, found = set(), set()
        for r in rows:
            if r["split"] == "train":
                with Image.open(root / r["path"]) as img:
                    modes.add(img.mode)
                    found.add(min(img.size))
        channels, sides = (1 if modes == {"L"} else 3), tuple(sorted(found))
    return DataFacts(f"{root} (prepared)", True, {s: dict(sorted(c.items())) for s, c in counts.items()}, channels, sides)


def source_facts(config: PipelineConfig) -> DataFacts:
    """The facts of the pipeline's source as prepare_data.py would write it (nothing is written; duplicates
    and leaks that prepare would leave out are still counted)."""
    options = source_options(config)
    opened = open_prepared_source(config.data.source, options)
    scan = opened.scan
    if options.image_size:
        sides = (options.image_size,)
    else:       # pad gives a square of the longer side, center_crop and squash one of the shorter side
        pick = max if options.resize == "pad" else min
        sides = tuple(sorted({pick(w, h) for _, w, h in scan.sizes}))
    return DataFacts(f"{config.data.source} (not prepared yet: as prepare_data.py would split it)", False,
                     scan.counts, opened.channels, sides)


def dataset_info(root: Path) -> dict:
    """A prepared dataset's dataset.json (how it was made), {} when it has none; DataError when it is damaged."""
    path = root / DATASET_INFO
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        info = None
    if not isinstance(info, dict):
        raise DataError(f"{path} is damaged (not a JSON object); rebuild the dataset with prepare_data.py --overwrite")
    return info


def check_prepared_settings(config: PipelineConfig, root: Path, pipeline: str) -> None:
    """A dataset prepared by hand (prepare_data.py) is used as it is, so refuse one whose recorded options
    contradict the pipeline's `data:` section, rather than train on images the YAML does not describe."""
    if not (root / DATASET_INFO).is_file():
        return
    info, d = dataset_info(root), config.data
    asked = {"image_size": d.image_size, "channels": d.channels, "resize": d.resize, "group_by": d.group_by}
    recorded_as = {"image_size": "image_size", "channels": "channels_requested", "resize": "resize",
                   "group_by": "group_by"}
    differ = [key for key, value in asked.items()
              if recorded_as[key] in info and str(info[recorded_as[key]]) != str(value)]
    if differ:
        shown = lambda value: "unset" if value is None else value
        made = ", ".join(f"{key} {shown(info[recorded_as[key]])}" for key in differ)
        says = ", ".join(f"{key} {shown(asked[key])}" for key in differ)
        raise ConfigError(f"{root} was prepared with {made}, where {pipeline}'s data: says {says}; a study uses a "
                          "prepared dataset as it is: set data: to match, or prepare it again with "
                          "prepare_data.py --overwrite")


@dataclass(frozen=True)
class Plan:
    """The study as it will run: the data's facts, the class roles, and every stage config resolved."""

    facts: DataFacts
    minority: str
    positive: str
    gan: GANConfig
    classifiers: dict[str, ClassifierConfig]        # config path -> resolved config (fixed arms and grid arm)
    lines: tuple[str, ...]                          # what the check says: roles, channels, sizes, warnings

    @property
    def channels(self) -> int:
        return self.facts.channels


# With gan.pretrain_class the minority's GAN starts from the pretraining run's last checkpoint (stages.gan_stage
# names it); until that run exists the config is checked with this in its place.
PRETRAINED = "<the pretraining run's last checkpoint>"
# A GAN that starts from nothing (the pretraining run, another class's GAN) has no pretrained D blocks to keep.
FROM_SCRATCH = ("train.init_from=off", "model.freeze_d_blocks=0")


def gan_overrides(config: PipelineConfig, channels: int | None = None) -> list[str]:
    """The minority GAN's overrides: the pipeline's gan.overrides, then what the pipeline itself decides."""
    extra = [f"data.minority_class={config.data.minority_class}"] if config.data.minority_class else []
    pretrained = [f"train.init_from={PRETRAINED}"] if config.gan.pretrain_class is not None else []
    return [*config.gan.overrides, *extra, *pretrained, *([f"data.channels={channels}"] if channels else [])]


def classifier_overrides(config: PipelineConfig, channels: int | None = None) -> list[str]:
    """Every classifier config's overrides: classifiers.overrides, then what the pipeline itself decides."""
    extra = [f"data.positive_class={config.data.positive_class}"] if config.data.positive_class else []
    return [*config.classifiers.overrides, *extra, *([f"data.channels={channels}"] if channels else [])]


def classifier_paths(config: PipelineConfig) -> list[tuple[str, bool]]:
    """(config path, trains on synthetic images) of every classifier the study runs, each path once."""
    out = {arm.config: arm.data == "augmented" for arm in config.classifiers.parsed()}
    if config.search.enabled:
        out[config.search.arm] = True
    return list(out.items())


def load_stage_configs(config: PipelineConfig) -> None:
    """Load every stage config with the pipeline's overrides: a typo fails now, before any data is read."""
    load_config(GANConfig, config.gan.config, gan_overrides(config))
    for path, _ in classifier_paths(config):
        load_config(ClassifierConfig, path, classifier_overrides(config))


def _set_in(overrides: tuple[str, ...], key: str) -> str | None:
    """The last value `overrides` give `key`, as written (None when they do not set it)."""
    found = None
    for path, value in parse_overrides(list(overrides)):
        if ".".join(path) == key:
            found = str(value)
    return found


def check(config: PipelineConfig, facts: DataFacts, pipeline: str = "the pipeline config",
          pooled_test: dict[str, int] | None = None) -> Plan:
    """Resolve every stage config against `facts` and check it (module docstring); `pipeline` names the
    pipeline's YAML in messages. Raises a one-line ConfigError or DataError; returns the plan.

    In a cross-validated study `facts` are one fold's, and `pooled_test` the images per class of the K test
    parts together, which the comparison pools and the minimum detectable effect counts."""
    classes, counts, d = facts.classes, facts.counts, config.data
    listed = f"{facts.where} (classes: {', '.join(classes)})"

    # Channels: the data decide; an override that says otherwise would fail later, in the stage it reaches.
    for key, overrides in (("gan.overrides", config.gan.overrides), ("classifiers.overrides", config.classifiers.overrides)):
        said = _set_in(overrides, "data.channels")
        if said is not None and said != str(facts.channels):
            raise ConfigError(f"{pipeline}: '{key}' sets data.channels={said} but the data are "
                              f"{_channels_word(facts.channels)} ({facts.where}); remove it: the pipeline gives every "
                              "stage the data's channel count (data.channels sets it for prepare)")

    gan = load_config(GANConfig, config.gan.config, gan_overrides(config, facts.channels))
    minority = gan.data.minority_class
    if minority not in classes:
        where = (f"{pipeline}: 'data.minority_class'" if d.minority_class else
                 f"{config.gan.config}: 'data.minority_class' (the GAN config's, as {pipeline} sets none)")
        raise DataError(f"{where} = {minority} is not a class of {listed}; set data.minority_class in {pipeline} "
                        "to the class the GAN should learn")
    if not counts.get("train", {}).get(minority):
        raise DataError(f"{pipeline}: the minority class '{minority}' has no training images in {facts.where}")
    source = config.gan.pretrain_class
    if source is not None and source != "largest":
        if source not in classes:
            raise DataError(f"{pipeline}: 'gan.pretrain_class' = {source} is not a class of {listed} "
                            "(or 'largest')")
        if source == minority:
            raise ConfigError(f"{pipeline}: 'gan.pretrain_class' = {source} is the minority class itself; "
                              "pretrain on a plentiful class")
    if config.search.enabled and "all" in config.search.classes:     # the grid's GANs of the other classes
        for other in sorted(set(classes) - {minority}):
            load_config(GANConfig, config.gan.config, [*gan_overrides(config, facts.channels), *FROM_SCRATCH,
                                                       f"data.minority_class={other}", *config.gan.other_class_overrides])

    classifiers, positives = {}, {}
    for path, _ in classifier_paths(config):
        cls = load_config(ClassifierConfig, path, classifier_overrides(config, facts.channels))
        classifiers[path] = cls
        positives.setdefault(cls.data.positive_class, []).append(path)
    if len(positives) > 1:
        said = "; ".join(f"{', '.join(paths)}: {p}" for p, paths in positives.items())
        raise ConfigError(f"the classifier configs disagree on 'data.positive_class' ({said}): set data.positive_class "
                          f"in {pipeline}, so that every arm reports sensitivity for the same class")
    positive = next(iter(positives))
    if positive not in classes:
        where = (f"{pipeline}: 'data.positive_class'" if d.positive_class else
                 f"{positives[positive][0]}: 'data.positive_class' (the classifier configs', as {pipeline} sets none)")
        raise DataError(f"{where} = {positive} is not a class of {listed}; set data.positive_class in {pipeline} to "
                        "the class whose sensitivity the study reports")
    for split in ("val", "test"):
        held = counts.get(split, {})
        if not held.get(positive) or sum(held.values()) == held.get(positive, 0):
            raise DataError(f"{pipeline}: the {split} split of {facts.where} needs images of '{positive}' (the positive "
                            f"class) and of another class, or AUC and the decision threshold are undefined; it holds "
                            f"{format_counts(held)}")
    missing = {split: sorted(set(classes) - {c for c, n in counts.get(split, {}).items() if n})
               for split in ("val", "test")}
    if any(missing.values()):
        said = "; ".join(f"{split} has no {', '.join(names)}" for split, names in missing.items() if names)
        raise DataError(f"{pipeline}: the classifiers need every class in train, val and test, and in {facts.where} "
                        f"{said}: add images of it, or leave the class out of the source")

    _check_image_sizes(config, facts, gan, classifiers, pipeline)
    lines = _report(config, facts, gan, classifiers, minority, positive, pooled_test)
    return Plan(facts, minority, positive, gan, classifiers, tuple(lines))


def _check_image_sizes(config: PipelineConfig, facts: DataFacts, gan: GANConfig,
                       classifiers: dict[str, ClassifierConfig], pipeline: str) -> None:
    """Every arm's real and synthetic training images reach its classifier by the same resizing path, as
    train_classifier requires (`classifier_size_problem`): otherwise a classifier could learn the path
    instead of the class."""
    for path, augmented in classifier_paths(config):
        size = classifiers[path].data.image_size
        problem = classifier_size_problem(set(facts.train_sides), {gan.data.image_size} if augmented else set(), size)
        if problem:
            one_size = " (or data.image_size, to prepare every image at one size)" if len(facts.train_sides) > 1 else ""
            raise ConfigError(f"{path} at data.image_size = {size}: {problem[0]}; set {problem[1]} in "
                              f"{pipeline}'s classifiers.overrides{one_size}")


def _channels_word(channels: int) -> str:
    return "grey (1 channel)" if channels == 1 else "RGB (3 channels)"


def format_counts(per_class: dict[str, int]) -> str:
    """'benign 399, malignant 147': a split's images per class, as the check's lines show them."""
    return ", ".join(f"{c} {n}" for c, n in per_class.items()) or "no images"


def fixed_arm_count(config: PipelineConfig, real_train: dict[str, int], minority: str) -> int:
    """Synthetic minority images of the fixed GAN-augmented arm (synthesis.num_synthetic or target_ratio)."""
    s = config.synthesis
    return s.num_synthetic or max(1, math.ceil(max(real_train.values()) / s.target_ratio) - real_train[minority])


def _report(config: PipelineConfig, facts: DataFacts, gan: GANConfig, classifiers: dict[str, ClassifierConfig],
            minority: str, positive: str, pooled_test: dict[str, int] | None = None) -> list[str]:
    """The check's lines: the data, the class roles, channels and sizes, then any warnings."""
    train, val = facts.counts.get("train", {}), facts.counts.get("val", {})
    metric = config.classifiers.primary_metric
    lines = [f"data: {facts.where}",
             *(f"  {split}: {format_counts(facts.counts.get(split, {}))}" for split in SPLITS),
             f"channels: {facts.channels} ({_channels_word(facts.channels).split(' (')[0]}), from the data, for the GAN "
             "and every classifier",
             f"minority class (the GAN learns it and adds its images): '{minority}'",
             f"positive class (sensitivity, and the primary metric {metric}, are for it): '{positive}'"]
    if minority != positive:
        lines.append(f"  note: the GAN adds '{minority}' images, not '{positive}' ones: the classifiers see more "
                     f"negatives, and the primary metric measures what that does to finding '{positive}'")
    sides = facts.train_sides
    lines.append(f"sizes: training images {sides[0]} px" if len(sides) == 1 else
                 f"sizes: training images {min(sides)}-{max(sides)} px ({len(sides)} sizes)" if sides else "sizes: unknown")
    lines.append(f"  the GAN works at {gan.data.image_size} px, the classifiers at "
                 + ", ".join(f"{n} px" for n in sorted({c.data.image_size for c in classifiers.values()})))
    if sides and gan.data.image_size > max(sides):
        fix = (f"; gan.overrides: [data.image_size={max(sides)}] learns them at their own size, without resampling"
               if max(sides) >= GAN_SIZE_RANGE[0] else f" (the smallest size a GAN here learns is {GAN_SIZE_RANGE[0]} px)")
        lines.append(f"  note: the GAN works above the largest training image ({max(sides)} px), so it learns upsampled "
                     f"images{fix}; classifiers of its images work at its size, where the real images are upsampled "
                     "as its training images were")
    lines += gan_step_lines(config, gan, facts.counts.get("train", {}), minority)
    above = sorted({c.data.image_size for c in classifiers.values()
                    if sides and c.data.image_size > max(sides) and c.data.image_size != gan.data.image_size})
    if above:
        lines.append(f"  note: the classifiers at {', '.join(f'{n} px' for n in above)} work above the largest training "
                     f"image ({max(sides)} px): every image is upsampled alike, which adds compute and no detail; "
                     f"classifiers.overrides: [data.image_size={max(sides)}] keeps their own scale")
    if val.get(positive, 0) < VAL_POSITIVES_FLOOR:
        lines.append(f"warning: validation holds {val.get(positive, 0)} '{positive}' image(s), fewer than "
                     f"{VAL_POSITIVES_FLOOR}: every threshold chosen on validation (and the primary metric's "
                     "90 %-specificity cut) moves by whole images, so it is mostly noise; raise data.val_fraction or "
                     "add data")
    lines += qa_evidence_lines(config, train.get(minority, 0), minority)
    lines += detectable_effect_lines(config, facts, classifiers, positive, pooled_test)
    added = fixed_arm_count(config, train, minority)
    note = few_synthetic_note(minority, added, train.get(minority, 0))
    if note and config.synthesis.num_synthetic is None:
        level = max(train.values()) - train[minority]           # what target_ratio 1.0 adds
        lines.append(f"warning: synthesis.target_ratio = {config.synthesis.target_ratio:g} adds {note[len('only '):]}"
                     + (f"; target_ratio 1.0 would add {level}" if level > added else ""))
    elif note:
        lines.append(f"warning: synthesis.num_synthetic = {added}: {note}")
    return lines


def gan_step_lines(config: PipelineConfig, gan: GANConfig, train: dict[str, int], minority: str) -> list[str]:
    """The GAN's training steps (an epoch is n // batch steps, the ragged batch dropped), which the user guide's
    epoch rules are written in: a small class makes few steps of many epochs."""
    batch = gan.train.batch_size
    steps = lambda images, epochs: epochs * max(1, images // batch)
    lines = []
    g = config.gan
    if g.pretrain_class is not None:
        source = max(train, key=train.get) if g.pretrain_class == "largest" else g.pretrain_class
        lines.append(f"  GAN pretraining: {g.pretrain_epochs} epochs of {train.get(source, 0)} '{source}' images in "
                     f"batches of {batch}: {steps(train.get(source, 0), g.pretrain_epochs):,} steps")
    lines.append(f"  GAN {'fine-tuning' if g.pretrain_class is not None else 'training'}: {gan.train.epochs} epochs "
                 f"of {train.get(minority, 0)} '{minority}' images in batches of {batch}: "
                 f"{steps(train.get(minority, 0), gan.train.epochs):,} steps")
    return lines


def qa_evidence_lines(config: PipelineConfig, real: int, minority: str) -> list[str]:
    """A warning, before hours of training, when the minority class has fewer real training images than QA's
    checks need for a verdict (the fixed needs; the others depend on the images and show in the QA report)."""
    needs = {"statistics": STATISTICS_NEED, "detectability": DETECTABILITY_NEED}
    per_set = [f"{name} {need}" for name, need in needs.items() if real < need]
    if not per_set:
        return []
    gate = config.synthesis.qa_gate
    then = ("synthesis.qa_gate: off lets the study go on anyway" if gate == "off" else
            f"synthesis.qa_gate: {gate} stops the study there; add real images, or set qa_gate: off to study them anyway")
    return [f"warning: '{minority}' has {real} real training image(s), fewer than QA needs to tell good synthetic "
            f"images from bad ({', '.join(per_set)} per set): QA will say insufficient at best, and {then}"]


def detectable_effect_lines(config: PipelineConfig, facts: DataFacts, classifiers: dict[str, ClassifierConfig],
                            positive: str, pooled_test: dict[str, int] | None = None) -> list[str]:
    """The smallest true gain in the primary metric the study's comparison can find (80 % power, Holm over the
    arms), from the test positives, the fewest seeds of any arm and the prior seed spread; and a warning when
    it is above DETECTABLE_NOTE_ABOVE. The prior is for sensitivity, so other primary metrics get none.

    A cross-validated study's test positives are those of every fold (`pooled_test`). The prior's model part
    is kept whole, not divided by the folds: a seed's fold models share their initialisation and most of
    their training images, so their luck need not average out over the folds; the effect stated errs on the
    large side."""
    metric, arms = config.classifiers.primary_metric, len(config.classifiers.parsed()) - 1 + config.search.enabled
    positives = (pooled_test or facts.counts.get("test", {})).get(positive, 0)
    seeds = min(len(c.train.seeds) for c in classifiers.values())
    if metric != PRIMARY_METRIC or not positives or arms < 1:
        return []
    spread = prior_seed_spread(positives)
    mde = minimum_detectable_effect(spread, seeds, arms, power=MDE_POWER)
    pooled = f" pooled over {config.evaluation.folds} folds" if pooled_test else ""
    where = f"{positives} '{positive}' test images{pooled}, {seeds} seeds, prior seed spread {100 * spread:.1f} pp"
    if mde == float("inf"):
        return [f"minimum detectable effect: none ({where}): one seed cannot measure training variance"]
    lines = [f"minimum detectable effect: {100 * mde:.1f} pp on {metric} ({100 * MDE_POWER:.0f} % power, Holm over "
             f"{arms} arms; {where})"]
    if mde > DETECTABLE_NOTE_ABOVE:
        lines.append(f"warning: this study would likely miss a real gain in {metric} smaller than {100 * mde:.1f} pp "
                     f"(over {100 * DETECTABLE_NOTE_ABOVE:.0f} pp); more seeds (train.seeds) or more positive test "
                     "images would lower it")
    return lines
