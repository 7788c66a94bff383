"""The pipeline config's limits: numbers that would overflow or never finish are refused at load, naming the key."""

import pytest

from tests.helpers import REPO_ROOT
from training.core.config import load_config
from training.core.errors import ConfigError
from training.study.config import PipelineConfig

DEMO = REPO_ROOT / "experiments" / "pipeline_demo.yaml"


@pytest.mark.parametrize("override, words", [
    ("search.pool_factor=1e308", "'search.pool_factor' = 1e+308 is out of range [1.0, 10.0]"),
    ("synthesis.num_synthetic=100000000", "'synthesis.num_synthetic' = 100000000 is out of range [1, 1000000]"),
])
def test_unbounded_numbers_are_refused_at_load(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(PipelineConfig, DEMO, [override])
    assert words in str(err.value)


def test_the_help_example_override_loads():
    import training.pipeline

    example = next(word.strip("'") for line in training.pipeline.__doc__.splitlines()
                   for word in line.split() if word.startswith("'classifiers.overrides="))
    assert load_config(PipelineConfig, DEMO, [example]).classifiers.overrides == ("train.seeds=[0]",)


@pytest.mark.parametrize("arms, words", [
    ("[experiments/classifier_baseline.yaml:baseline, other/classifier_baseline.yaml:augmented]",
     "'classifier_baseline' is listed twice"),
    ("[experiments/classifier_baseline.yaml:baseline, mine/gan_chosen.yaml:augmented]",
     "'gan_chosen' names the grid's chosen arm"),
    ("[experiments/classifier_baseline.yaml:both]", "must end in :baseline or :augmented"),
])
def test_arms_that_would_share_a_run_folder_are_refused_at_load(arms, words):
    # An arm's runs are named after its config file: two arms of one name would train into one folder.
    with pytest.raises(ConfigError, match=words):
        load_config(PipelineConfig, DEMO, [f"classifiers.arms={arms}"])


@pytest.mark.parametrize("overrides, words", [
    (["classifiers.arms=[]"], "'classifiers.arms' is empty"),
    (["classifiers.arms=[experiments/classifier_baseline.yaml:baseline]", "search.enabled=false"],
     "the comparison needs the baseline and at least one other arm"),
    (["synthesis.target_ratio=.nan"], "'synthesis.target_ratio' must be a finite number"),
])
def test_a_study_that_cannot_reach_its_comparison_is_refused_at_load(overrides, words):
    # Otherwise the pre-flight check, or the comparison after the whole study, would stop with a traceback.
    with pytest.raises(ConfigError, match=words):
        load_config(PipelineConfig, DEMO, overrides)


def test_one_arm_with_the_grid_loads():
    config = load_config(PipelineConfig, DEMO, ["classifiers.arms=[experiments/classifier_baseline.yaml:baseline]"])
    assert config.search.enabled and len(config.classifiers.arms) == 1
