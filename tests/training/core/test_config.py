import pytest

from tests.helpers import REPO_ROOT, write_yaml
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
    ({"train": {"lr_g": float("nan")}}, "'train.lr_g' must be a finite number, got nan"),
    ({"train": {"lr_d": float("inf")}}, "'train.lr_d' must be a finite number"),
    ({"model": {"spectral_norm": "yes"}}, "'model.spectral_norm' must be true or false"),
    ({"loss": {"name": "lsgan"}}, "'loss.name' must be one of 'hinge', 'wasserstein', 'bce'"),
    ({"data": {"image_size": 20}}, r"'data.image_size' = 20 is out of range \[24, 128\]"),
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


def test_a_shipped_config_is_found_from_any_folder_and_a_local_file_comes_first(tmp_path, monkeypatch):
    """A study YAML in a user's own folder names `experiments/gan_own_data.yaml`: found in the project's
    folder when the working directory has none, the user's own copy when it has."""
    monkeypatch.chdir(tmp_path)
    assert load_config(GANConfig, "experiments/demo_gan.yaml").output.name == "demo_gan"
    (tmp_path / "experiments").mkdir()
    own = write_yaml(tmp_path / "experiments" / "demo_gan.yaml", {"output": {"name": "mine"}})
    assert load_config(GANConfig, "experiments/demo_gan.yaml").output.name == "mine" and own.is_file()
    with pytest.raises(ConfigError, match=f"not found: experiments/nope.yaml \\(looked in {tmp_path} and in "):
        load_config(GANConfig, "experiments/nope.yaml")


def test_shipped_experiments_load():

    root = REPO_ROOT / "experiments"
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


def write_text(path, text):
    path.write_text(text)
    return path


def test_only_null_and_off_unset_an_optional_key_so_a_class_named_no_stays_a_name(tmp_path):
    for word in ("no", "none", "None", "yes"):
        cfg = load_config(GANConfig, write_text(tmp_path / "c.yaml", f"output:\n  name: {word}\n"))
        assert cfg.output.name == word
    for unset in ("off", "null", "~", ""):
        cfg = load_config(GANConfig, write_text(tmp_path / "c.yaml", f"output:\n  name: {unset}\n"))
        assert cfg.output.name == "c"                        # unset: the file's stem
    cfg = load(tmp_path, {}, ["train.ema_decay=off", "output.name=no"])
    assert cfg.train.ema_decay is None and cfg.output.name == "no"


def test_yaml_words_yes_and_on_are_not_booleans(tmp_path):
    with pytest.raises(ConfigError, match="'model.spectral_norm' must be true or false, got 'yes'"):
        load_config(GANConfig, write_text(tmp_path / "c.yaml", "model:\n  spectral_norm: yes\n"))


@pytest.mark.parametrize("content, message", [
    ("train:\n  epochs: 2\n  epochs: 3\n", "key 'epochs' is given twice"),
    ("a: &x [1]\ntrain:\n  betas: *x\n", "aliases"),
    ("", "the config is empty"),
    ("# only a comment\n", "the config is empty"),
    ("[" * 5000 + "]" * 5000, "nested too deeply|invalid YAML"),
])
def test_hostile_yaml_is_refused_in_one_line(tmp_path, content, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config(GANConfig, write_text(tmp_path / "c.yaml", content))
    assert "\n" not in str(err.value) and len(str(err.value)) < 400


def test_binary_and_huge_files_are_refused_without_reading_them_as_yaml(tmp_path):
    (tmp_path / "bin.yaml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(GANConfig, tmp_path / "bin.yaml")
    (tmp_path / "big.yaml").write_text("x: " + "1" * 2_000_000)
    with pytest.raises(ConfigError, match="too large"):
        load_config(GANConfig, tmp_path / "big.yaml")


def test_error_messages_never_quote_an_unbounded_value(tmp_path):
    with pytest.raises(ConfigError) as err:
        load(tmp_path, {"train": {"epochs": "x" * 100_000}})
    assert len(str(err.value)) < 300


@pytest.mark.parametrize("seeds, message", [
    ([], "'train.seeds' needs at least one seed"),
    ([0, 1, 1], r"'train.seeds' has repeated seeds \(1 in \[0, 1, 1\]\)"),
    ([0, -1], r"'train.seeds' = \(0, -1\) is out of range \[0, 4294967295\]"),   # numpy's generators refuse it mid-study
    ([2**64], r"'train.seeds' = \(18446744073709551616,\) is out of range \[0, 4294967295\]"),   # torch's too
])
def test_classifier_and_sgan_seeds_are_checked_at_load(seeds, message):
    from training.classify.config import ClassifierConfig
    from training.core.config import build
    from training.sgan.config import SGANConfig

    for schema in (ClassifierConfig, SGANConfig):
        with pytest.raises(ConfigError, match=message):
            build(schema, {"train": {"seeds": seeds}}, "exp.yaml")
