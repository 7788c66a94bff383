"""The scripts as a user runs them: one-line errors, non-zero exit, no traceback."""

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT

ROOT = REPO_ROOT


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["training/train_dcgan.py", "--config", "experiments/dcgan_hinge.yaml", "train.epohcs=2", "--dry_run"],
     "unknown key 'train.epohcs'"),
    (["training/train_dcgan.py", "--config", "experiments/missing.yaml"], "config file not found"),
    (["training/train_dcgan.py", "--config", "experiments/dcgan_hinge.yaml", "data.root=/nonexistent/x",
      "output.results_dir=/nonexistent/results"], "dataset folder not found: /nonexistent/x"),
    (["training/prepare_data.py", "--source", "/nonexistent/dir"], "source not found"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_dry_run_prints_resolved_config():
    result = run("training/train_dcgan.py", "--config", "experiments/dcgan_bce.yaml", "train.epochs=3", "--dry_run")
    assert result.returncode == 0
    assert "epochs: 3" in result.stdout and "name: dcgan_bce" in result.stdout


def test_end_to_end_prepare_and_train(tmp_path):
    data = tmp_path / "processed"
    result = run("training/prepare_data.py", "--source", "demo", "--output_dir", str(data), "--image_size", "32",
                 "--demo_num_train", "44", "--demo_imbalance", "3")
    assert result.returncode == 0, result.stderr
    result = run("training/train_dcgan.py", "--config", "experiments/demo_gan.yaml", f"data.root={data / 'demo'}",
                 "train.epochs=1", "train.batch_size=4", "model.g_channels=8", "model.d_channels=8",
                 "metrics.num_samples=16", "metrics.domain_encoder_epochs=1", "metrics.feature_extractor=domain",
                 f"output.results_dir={tmp_path / 'results'}", f"output.synthetic_dir={tmp_path / 'synthetic'}")
    assert result.returncode == 0, result.stderr
    assert "FID final" in result.stdout
    assert (tmp_path / "results" / "checkpoints" / "demo_gan" / "final_generator.pth").is_file()
    assert (tmp_path / "synthetic" / "demo_gan" / "final_samples.png").is_file()


def test_select_samples_bad_input_is_one_line_and_exit_2(tmp_path):
    result = run("training/select_samples.py", "--pool_dir", "/nonexistent/pool", "--real_dir", "/nonexistent/real",
                 "--output_dir", str(tmp_path / "best"), "--keep", "10")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "/nonexistent/pool has no manifest.jsonl" in lines[0]
    assert not (tmp_path / "best").exists()


def test_every_script_says_its_version_and_runs_from_any_folder(tmp_path):
    """The project is installed (requirements.txt: `-e .`), so a script needs no sys.path edits: it runs from
    any working directory, and --version names the release recorded in run_info.json."""
    from training import __version__
    from training.core.run_info import package_versions

    scripts = sorted(p for folder in ("training", "quality") for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")
    for script in scripts:
        assert "sys.path" not in script.read_text(), script
    result = run(str(ROOT / "training" / "train_dcgan.py"), "--version", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == f"train_dcgan.py (medgan-augment) {__version__}"
    assert package_versions()["medgan-augment"] == __version__
