import pytest

from tests.helpers import write_yaml
from training.core.config import load_config, to_yaml
from training.core.errors import ConfigError
from training.gan.config import GANConfig


def load(tmp_path, raw, overrides=()):
    return load_config(GANConfig, write_yaml(tmp_path / "exp.yaml", raw), overrides)


def test_defaults_and_name_from_file_stem(tmp_path):
    cfg = load(tmp_path, {})
    assert cfg.output.name == "exp"
    assert cfg.loss.name == "hinge" and cfg.train.betas == (0.0, 0.9)


def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"exp\.yaml.*unknown key 'train\.epohcs'.*did you mean 'train\.epochs'"):
        load(tmp_path, {"train": {"epohcs": 2}})


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load(tmp_path, {"trian": {"epochs": 2}})


@pytest.mark.parametrize("raw, message", [
    ({"train": {"epochs": "ten"}}, "'train.epochs' must be an integer"),
    ({"train": {"epochs": 2.5}}, "'train.epochs' must be an integer"),
    ({"train": {"lr_g": "fast"}}, "'train.lr_g' must be a number"),
    ({"model": {"spectral_norm": "yes"}}, "'model.spectral_norm' must be true or false"),
    ({"loss": {"name": "lsgan"}}, "'loss.name' must be one of 'hinge', 'wasserstein', 'bce'"),
    ({"data": {"image_size": 48}}, "'data.image_size' must be one of 32, 64, 128"),
    ({"train": {"betas": [0.5]}}, "'train.betas' must be a list of 2 values"),
    ({"train": {"epochs": 0}}, r"'train.epochs' = 0 is out of range \[1, inf\]"),
    ({"train": {"betas": [0.5, 1.5]}}, "'train.betas' = .* is out of range"),
    ({"train": {"diffaugment": "color,blur"}}, "unknown op 'blur'"),
])
def test_bad_values_are_named(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        load(tmp_path, raw)


def test_conflicting_options_name_both(tmp_path):
    with pytest.raises(ConfigError, match="'loss.name' = wasserstein.*'loss.gp_weight'"):
        load(tmp_path, {"loss": {"name": "wasserstein", "gp_weight": 0}})
    with pytest.raises(ConfigError, match="'model.d_norm' = batch"):
        load(tmp_path, {"loss": {"name": "wasserstein", "gp_weight": 10}, "model": {"d_norm": "batch"}})


def test_overrides_go_through_validation(tmp_path):
    cfg = load(tmp_path, {}, ["train.epochs=2", "data.image_size=32", "train.betas=[0.5, 0.999]",
                              "train.ema_decay=off", "train.diffaugment=off", "output.name=x"])
    assert (cfg.train.epochs, cfg.data.image_size, cfg.train.betas) == (2, 32, (0.5, 0.999))
    assert cfg.train.ema_decay is None and cfg.train.diffaugment is None and cfg.output.name == "x"
    with pytest.raises(ConfigError, match="unknown key 'train.epohcs'"):
        load(tmp_path, {}, ["train.epohcs=2"])
    with pytest.raises(ConfigError, match="must look like section.key=value"):
        load(tmp_path, {}, ["train.epochs"])
    with pytest.raises(ConfigError, match="out of range"):
        load(tmp_path, {}, ["train.lr_d=-1"])


def test_resolved_config_round_trips(tmp_path):
    cfg = load(tmp_path, {}, ["train.epochs=7"])
    again = load_config(GANConfig, write_yaml(tmp_path / "again.yaml", __import__("yaml").safe_load(to_yaml(cfg))))
    assert again == cfg


def test_bad_yaml_and_missing_file(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(GANConfig, tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(GANConfig, tmp_path / "missing.yaml")


def test_shipped_experiments_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "experiments"
    for name in ("dcgan_hinge", "dcgan_wasserstein", "dcgan_bce", "demo_gan"):
        cfg = load_config(GANConfig, root / f"{name}.yaml")
        assert cfg.output.name == name
    assert load_config(GANConfig, root / "dcgan_hinge.yaml").train.epochs == 300
    assert load_config(GANConfig, root / "dcgan_wasserstein.yaml").loss.name == "wasserstein"


def test_scientific_notation_is_a_number_in_yaml_and_overrides(tmp_path):
    """YAML 1.1 reads `1e-3` (no dot) as a string; a learning rate written that way must still work."""
    path = tmp_path / "sci.yaml"
    path.write_text("train:\n  lr_d: 4e-4\n")
    config = load_config(GANConfig, path, ["train.lr_g=1e-3"])
    assert config.train.lr_d == 4e-4 and config.train.lr_g == 1e-3
