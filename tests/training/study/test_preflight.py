"""The pipeline's pre-flight check: every stage config against the data before anything expensive runs.

The acceptance case of a user's brain-MRI-like folder: mixed sizes, grey stored as L or RGB, duplicates,
minority = healthy, positive = tumour.
"""

import numpy as np
import pytest
from PIL import Image

from tests.helpers import write_yaml
from tests.training.data.test_own_folder import make_brain_folder
from training.core.config import load_config
from training.core.errors import run_cli
from training.pipeline import main as pipeline_main
from training.prepare_data import main as prepare_main
from training.study.config import PipelineConfig
from training.study.orchestrate import check_study
from training.study.stages import Study, prepare_key


@pytest.fixture(scope="module")
def brain(tmp_path_factory):
    root = tmp_path_factory.mktemp("own") / "brain_mri"
    make_brain_folder(root, np.random.default_rng(0))
    return root


def own_study(tmp_path, source, **data):
    """A pipeline YAML for the user's own folder, as the guide's worked example writes it."""
    return write_yaml(tmp_path / "pipeline_brain.yaml", {
        "data": {"source": str(source), "processed_dir": str(tmp_path / "processed"), "minority_class": "healthy",
                 "image_size": 32, **data},
        "gan": {"config": "experiments/gan_own_data.yaml"},
        "classifiers": {"overrides": ["data.image_size=64"]},     # the GAN's size, as the guide's example
        "output": {"results_dir": str(tmp_path / "results")},
    })


def dry_run(capsys, config, *overrides):
    code = run_cli(pipeline_main, ["--config", str(config), "--dry_run", *overrides])
    out = capsys.readouterr()
    return code, out.out, out.err.strip().splitlines()


def test_dry_run_catches_a_wrong_positive_class_before_anything_runs(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain)
    code, _, err = dry_run(capsys, config)           # the shipped classifier configs say malignant
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: experiments/classifier_baseline.yaml: 'data.positive_class' (the classifier "
                             "configs', as ")
    assert "= malignant is not a class of" in err[0] and "(classes: healthy, tumour)" in err[0]
    assert f"set data.positive_class in {config}" in err[0]
    code, _, err = dry_run(capsys, config, "data.positive_class=tumor")           # a typo, in the pipeline's own key
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {config}: 'data.positive_class' = tumor")
    assert not (tmp_path / "processed").exists() and not (tmp_path / "results").exists()    # nothing written


def test_dry_run_names_the_gan_config_when_the_minority_class_is_not_set(brain, tmp_path, capsys):
    config = write_yaml(tmp_path / "p.yaml", {"data": {"source": str(brain), "processed_dir": str(tmp_path / "x"),
                                                       "positive_class": "tumour"},
                                              "gan": {"config": "experiments/gan_own_data.yaml"}})
    code, _, err = dry_run(capsys, config)
    assert code == 2 and len(err) == 1
    assert "experiments/gan_own_data.yaml: 'data.minority_class'" in err[0] and "your_minority_class" in err[0]
    assert f"set data.minority_class in {config}" in err[0]


def test_own_folder_end_to_end_checks_pass_and_grey_stays_one_channel(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain, positive_class="tumour")
    # The 64 px GAN learns the 32 px images upsampled: classifiers at 32 px would see its images resampled down
    # and the real ones not.
    code, _, err = dry_run(capsys, config, "classifiers.overrides=[data.image_size=32]")
    assert code == 2 and len(err) == 1 and "experiments/classifier_gan_augmented.yaml at data.image_size = 32" in err[0]
    assert "the synthetic images are 64 px, from a GAN that learned real images upsampled from 32 px" in err[0]
    assert f"set data.image_size = 64 in {config}'s classifiers.overrides" in err[0]
    code, out, err = dry_run(capsys, config)
    assert code == 0, err
    assert "pre-flight check passed (nothing was run or written)" in out
    assert "brain_mri (not prepared yet: as prepare_data.py would split it)" in out
    assert "channels: 1 (grey), from the data, for the GAN and every classifier" in out
    assert "minority class (the GAN learns it and adds its images): 'healthy'" in out
    assert "positive class (sensitivity, and the primary metric sensitivity_at_spec90, are for it): 'tumour'" in out
    assert "note: the GAN adds 'healthy' images, not 'tumour' ones" in out
    assert "note: the GAN works above the largest training image (32 px)" in out        # gan_own_data.yaml: 64 px
    assert "note: the classifiers at" not in out                                       # at the GAN's size
    assert "warning: validation holds 2 'tumour' image(s), fewer than 20" in out
    # 19 tumour : 12 healthy in train; a ratio of 1.4 means ceil(19 / 1.4) - 12 = 2 synthetic images
    assert "warning: synthesis.target_ratio = 1.4 adds 2 synthetic 'healthy' image(s) beside 12 real ones" in out
    assert "; target_ratio 1.0 would add 7" in out
    # 12 real healthy images: QA cannot tell good synthetic ones from bad, and the default gate would stop there.
    assert ("warning: 'healthy' has 12 real training image(s), fewer than QA needs to tell good synthetic images "
            "from bad (statistics 123, detectability 109 per set): QA will say insufficient at best, and "
            "synthesis.qa_gate: fail stops the study there") in out
    # 12 images in batches of 32: one step an epoch (the batch is the whole class)
    assert "GAN training: 800 epochs of 12 'healthy' images in batches of 32: 800 steps" in out
    assert not (tmp_path / "processed").exists()
    code, out, err = dry_run(capsys, config, "classifiers.overrides=[data.image_size=64]",
                             "gan.overrides=[data.image_size=32]")
    assert code == 0, err
    assert ("note: the classifiers at 64 px work above the largest training image (32 px): every image "
                          "is upsampled alike") in out

    # Prepared: processed images are grey, and every stage config resolves to one channel.
    assert prepare_main(["--source", str(brain), "--output_dir", str(tmp_path / "processed"), "--image_size", "32"]) == 0
    capsys.readouterr()
    files = list((tmp_path / "processed" / "brain_mri").rglob("*.png"))
    assert files and {Image.open(f).mode for f in files} == {"L"}
    plan = check_study(load_config(PipelineConfig, config), str(config))
    assert plan.facts.prepared and plan.channels == 1
    assert plan.gan.data.channels == 1 and plan.gan.data.minority_class == "healthy"
    assert {c.data.channels for c in plan.classifiers.values()} == {1}
    assert {c.data.positive_class for c in plan.classifiers.values()} == {"tumour"}

    # Prepared by hand at 32 px, so a data: section that says otherwise is refused, not silently overruled.
    for run in (["--dry_run"], []):
        code = run_cli(pipeline_main, ["--config", str(config), *run, "data.image_size=64", "data.resize=squash"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert (f"{tmp_path / 'processed' / 'brain_mri'} was prepared with image_size 32, resize pad, where {config}'s "
                "data: says image_size 64, resize squash") in err[0] and "prepare_data.py --overwrite" in err[0]
    assert not (tmp_path / "results").exists()


def test_a_class_missing_from_val_is_refused_before_anything_trains(tmp_path, capsys):
    src = tmp_path / "three"
    rng = np.random.default_rng(0)
    for split, per_class in (("train", {"healthy": 6, "tumour": 6, "artefact": 3}), ("val", {"healthy": 3, "tumour": 3}),
                             ("test", {"healthy": 3, "tumour": 3, "artefact": 1})):
        for name, n in per_class.items():
            (src / split / name).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(src / split / name / f"{i}.png")
    code, _, err = dry_run(capsys, own_study(tmp_path, src, positive_class="tumour"))
    assert code == 2 and len(err) == 1
    assert "the classifiers need every class in train, val and test" in err[0] and "val has no artefact" in err[0]


def test_a_real_run_stops_on_a_wrong_positive_class_after_prepare_and_before_the_gan(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain)
    assert run_cli(pipeline_main, ["--config", str(config)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "'data.positive_class'" in err[0] and "Traceback" not in captured.err
    assert "[prepare] running" in captured.out and "[gan]" not in captured.out
    assert (tmp_path / "processed" / "brain_mri" / "manifest.csv").is_file()        # prepare's work is kept
    assert not (tmp_path / "results" / "gan").exists()                     # no GAN trained


def test_sizes_channels_and_overrides_are_checked(brain, tmp_path, capsys):
    # Without data.image_size, padded squares of 18-30 px: a 32 px classifier would upsample some of them.
    config = own_study(tmp_path, brain, positive_class="tumour", image_size=None)
    code, _, err = dry_run(capsys, config)
    assert code == 2 and len(err) == 1
    assert "experiments/classifier_baseline.yaml at data.image_size = 64: the real training images come in sizes" in err[0]
    assert "set data.image_size <= 20 in" in err[0] and "or data.image_size, to prepare every image at one size" in err[0]
    # An override that contradicts the data's channel count.
    config = own_study(tmp_path, brain, positive_class="tumour")
    code, _, err = dry_run(capsys, config, "gan.overrides=[data.channels=3]")
    assert code == 2 and len(err) == 1
    assert "'gan.overrides' sets data.channels=3 but the data are grey (1 channel)" in err[0]
    # --channels 3 for prepare: every stage then runs in RGB.
    code, out, _ = dry_run(capsys, config, "data.channels=3")
    assert code == 0 and "channels: 3 (RGB), from the data" in out


def test_the_data_section_takes_prepare_data_options(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain, positive_class="tumour")
    code, out, _ = dry_run(capsys, config, "data.val_fraction=0.3", "data.test_fraction=0.3", "data.seed=2")
    assert code == 0
    assert "val: healthy 4, tumour 8" in out and "test: healthy 4, tumour 8" in out     # of 14 and 25 distinct
    code, _, err = dry_run(capsys, config, "data.val_fractoin=0.3")
    assert code == 2 and "unknown key 'data.val_fractoin' (did you mean 'data.val_fraction'?)" in err[0]
    code, _, err = dry_run(capsys, config, "data.val_fraction=0.5", "data.test_fraction=0.5")
    assert code == 2 and "must be less than 1" in err[0]


def test_the_prepare_key_follows_every_data_option_and_nothing_else(tmp_path):
    """A changed data option rebuilds the prepared dataset; the study's other sections do not."""
    path = write_yaml(tmp_path / "p.yaml", {"data": {"source": "demo"}})
    key = prepare_key(Study.of(load_config(PipelineConfig, path)))
    for override in ("data.channels=1", "data.seed=1", "data.resize=squash", "data.keep_duplicates=true",
                     "data.group_by=subfolder"):
        assert prepare_key(Study.of(load_config(PipelineConfig, path, [override]))) != key, override
    assert prepare_key(Study.of(load_config(PipelineConfig, path, ["synthesis.seed=3", "classifiers.workers=2"]))) == key


def test_a_pretrain_class_must_be_another_class_of_the_data(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain, positive_class="tumour")
    code, _, err = dry_run(capsys, config, "gan.pretrain_class=tumor")
    assert code == 2 and len(err) == 1 and "'gan.pretrain_class' = tumor is not a class of" in err[0]
    code, _, err = dry_run(capsys, config, "gan.pretrain_class=healthy")
    assert code == 2 and len(err) == 1 and "is the minority class itself" in err[0]
    code, out, _ = dry_run(capsys, config, "gan.pretrain_class=tumour", "gan.pretrain_epochs=40")
    assert code == 0 and "pre-flight check passed" in out
    assert "GAN pretraining: 40 epochs of 19 'tumour' images in batches of 32: 40 steps" in out
    assert "GAN fine-tuning: 800 epochs of 12 'healthy' images" in out


def test_the_plan_says_the_minimum_detectable_effect_and_warns_above_10_pp(brain, tmp_path, capsys):
    config = own_study(tmp_path, brain, positive_class="tumour")
    code, out, err = dry_run(capsys, config)
    assert code == 0, err
    line = next(line for line in out.splitlines() if "minimum detectable effect:" in line)
    assert "pp on sensitivity_at_spec90 (80 % power, Holm over" in line and "3 seeds, prior seed spread" in line
    mde = line.split("minimum detectable effect: ")[1].split(" pp")[0]
    assert f"warning: this study would likely miss a real gain in sensitivity_at_spec90 smaller than {mde} pp " \
           "(over 10 pp)" in out                                                 # a handful of tumours
    code, out, _ = dry_run(capsys, config, "classifiers.primary_metric=roc_auc")     # the prior is for sensitivity
    assert code == 0 and "minimum detectable effect" not in out
