"""The scripts as a user runs them: one-line errors, non-zero exit, no traceback.

Most checks call a script's `main` in this process through `run_cli`, as its `__main__` block does
(tests.helpers.run_script); launching an interpreter costs seconds of imports each time. A real interpreter
is launched where only it shows the behaviour: the exit code and stderr of a refusal, and a script run
from another folder.
"""

import subprocess
import sys

import pytest

from tests.helpers import REPO_ROOT, one_line_error, run_script

ROOT = REPO_ROOT


def run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


BAD_INPUT = [
    (["training/train_dcgan.py", "--config", "experiments/dcgan_hinge.yaml", "train.epohcs=2", "--dry_run"],
     "unknown key 'train.epohcs'"),
    (["training/train_dcgan.py", "--config", "experiments/missing.yaml"], "config file not found"),
    (["training/train_dcgan.py", "--config", "experiments/dcgan_hinge.yaml", "data.root=/nonexistent/x",
      "output.results_dir=/nonexistent/results"], "dataset folder not found: /nonexistent/x"),
    (["training/prepare_data.py", "--source", "/nonexistent/dir"], "source not found"),
]


@pytest.mark.parametrize("args, message", BAD_INPUT)
def test_bad_input_is_one_line_and_exit_2(args, message, capsys):
    one_line_error(run_script(capsys, *args), message)


def test_a_real_interpreter_refuses_a_config_in_one_line_with_exit_2():
    """The launch a user makes: exit status 2 and one stderr line, no traceback, from a real interpreter."""
    args, message = BAD_INPUT[0]
    result = run(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_dry_run_prints_resolved_config(capsys):
    result = run_script(capsys, "training/train_dcgan.py", "--config", "experiments/dcgan_bce.yaml", "train.epochs=3",
                        "--dry_run")
    assert result.returncode == 0
    assert "epochs: 3" in result.stdout and "name: dcgan_bce" in result.stdout


def test_end_to_end_prepare_and_train(tmp_path, capsys):
    data = tmp_path / "processed"
    result = run_script(capsys, "training/prepare_data.py", "--source", "demo", "--output_dir", str(data),
                        "--image_size", "32", "--demo_num_train", "44", "--demo_imbalance", "3")
    assert result.returncode == 0, result.stderr
    result = run_script(capsys, "training/train_dcgan.py", "--config", "experiments/demo_gan.yaml",
                        f"data.root={data / 'demo'}",
                        "train.epochs=1", "train.batch_size=4", "model.g_channels=8", "model.d_channels=8",
                        "metrics.num_samples=16", "metrics.domain_encoder_epochs=1", "metrics.feature_extractor=domain",
                        f"output.results_dir={tmp_path / 'results'}", f"output.synthetic_dir={tmp_path / 'synthetic'}")
    assert result.returncode == 0, result.stderr
    assert "FID final" in result.stdout
    run = tmp_path / "results" / "gan" / "demo_gan"
    assert (run / "final_generator.pth").is_file() and (run / "final_samples.png").is_file()
    assert not (tmp_path / "synthetic").exists()          # training writes nothing into the synthetic folder


def test_select_samples_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    result = run_script(capsys, "training/select_samples.py", "--pool_dir", "/nonexistent/pool", "--real_dir",
                        "/nonexistent/real", "--output_dir", str(tmp_path / "best"), "--keep", "10")
    one_line_error(result, "/nonexistent/pool has no manifest.jsonl")
    assert not (tmp_path / "best").exists()


def scripts():
    return sorted(p for folder in ("training", "quality") for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py")


def test_every_script_says_its_version_and_runs_from_any_folder(tmp_path, capsys):
    """The project is installed (requirements.txt: `-e .`), so a script needs no sys.path edits: it runs from
    any working directory, and --version names the release recorded in run_info.json."""
    from training import __version__
    from training.core.run_info import package_versions

    for script in scripts():
        assert "sys.path" not in script.read_text(), script
        result = run_script(capsys, str(script.relative_to(ROOT)), "--version", cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.strip() == f"{script.name} (medgan-augment) {__version__}"
    result = run(str(ROOT / "training" / "train_dcgan.py"), "--version", cwd=tmp_path)      # a real launch
    assert result.returncode == 0 and result.stdout.strip() == f"train_dcgan.py (medgan-augment) {__version__}"
    assert package_versions()["medgan-augment"] == __version__
