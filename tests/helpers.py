"""Helpers shared by the tests."""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]   # the repository: scripts are run from here


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def tiny_gan_raw(data_root: Path, results: Path, loss: str = "hinge", **sections) -> dict:
    """A GAN config small enough for a few-second CPU run."""
    raw = {
        "data": {"root": str(data_root), "minority_class": "malignant", "image_size": 32, "channels": 3},
        "model": {"z_dim": 16, "g_channels": 8, "d_channels": 8, "spectral_norm": loss == "hinge"},
        "loss": {"name": loss, "gp_weight": 10.0 if loss == "wasserstein" else 0.0},
        "train": {"epochs": 2, "batch_size": 8, "checkpoint_every": 1, "device": "cpu", "seed": 0,
                  "ema_decay": 0.9, "ema_rampup_steps": 2, "n_critic": 2 if loss == "wasserstein" else 1,
                  "sample_grid_size": 2},
        "metrics": {"every": 1, "num_samples": 20, "feature_extractor": "domain", "domain_encoder_epochs": 1},
        "output": {"name": f"tiny_{loss}", "results_dir": str(results / "results"),
                   "synthetic_dir": str(results / "synthetic")},
    }
    for section, values in sections.items():
        raw[section].update(values)
    return raw


def random_images(rng: np.random.Generator, n: int, size: int = 16, channels: int = 3) -> np.ndarray:
    shape = (n, size, size, channels) if channels == 3 else (n, size, size)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def synthetic_folder(out: Path, num: int, image_size: int = 32, class_name: str = "malignant", seed: int = 0,
                     channels: int = 3) -> Path:
    """`num` images of an untrained tiny generator (its init drawn from `seed`), written by bulk synthesis."""
    import torch

    from training.core.config import build
    from training.gan.checkpoint import save_generator
    from training.gan.config import GANConfig
    from training.gan.networks import build_generator
    from training.synthesis import sampling

    raw = tiny_gan_raw(Path("unused"), out.parent)
    raw["data"].update(image_size=image_size, minority_class=class_name, channels=channels)
    config = build(GANConfig, raw, "test")
    torch.manual_seed(seed)
    ckpt = out.parent / f"{out.name}.pth"
    save_generator(ckpt, build_generator(config.model, config.data), config, epoch=1)
    generators = sampling.load_generators([ckpt], torch.device("cpu"))
    sampling.generate(generators, [1.0], num, 0, out, workers=1)
    return out


def refused(capsys, code: int, *words: str) -> str:
    """The one `error:` line of a refused in-process CLI call (exit 2, no traceback), holding every word."""
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@dataclass
class ScriptResult:
    """What `run_script` saw: the exit code and the captured output, as subprocess.CompletedProcess names them."""

    returncode: int
    stdout: str
    stderr: str


def run_script(capture, script: str, *args: str, cwd: Path = REPO_ROOT, stdin: str = "") -> ScriptResult:
    """Run `script` (e.g. "training/train_dcgan.py") as `python script args...` would, but in this process.

    The script's `main` goes through `run_cli`, the wrapper its `__main__` block uses, with `sys.argv`, the
    working directory and a non-terminal stdin (holding `stdin`) set as a launch would set them; SystemExit
    (argparse's errors, --version) becomes the exit code. An exception that `run_cli` lets through (a bug, which a
    real launch prints as a traceback) propagates. `capture` is the test's capsys or capfd: whatever it held
    before is discarded, and the call's output comes back. The process state a script may change (torch threads,
    deterministic algorithms, default dtype, grad mode, cuDNN/TF32 flags, the random generators, environment
    variables, warning filters, the root logger, sys.argv, cwd, stdin) is put back afterwards, so nothing leaks
    into later tests.
    """
    import torch

    from training.core.errors import run_cli

    path = Path(script)
    path = path.relative_to(REPO_ROOT) if path.is_absolute() else path
    module = importlib.import_module(".".join(path.with_suffix("").parts))
    capture.readouterr()
    saved = _process_state(torch)
    code = 0
    try:
        os.chdir(cwd)
        sys.argv = [script, *args]
        sys.stdin = io.StringIO(stdin)
        with warnings.catch_warnings():
            try:
                code = run_cli(module.main, list(args))
            except SystemExit as exit_:
                if exit_.code is None or isinstance(exit_.code, int):
                    code = exit_.code or 0
                else:                                   # sys.exit("message"): printed, exit 1
                    print(exit_.code, file=sys.stderr)
                    code = 1
    finally:
        _restore_process_state(torch, saved)
    out, err = capture.readouterr()
    return ScriptResult(code, out, err)


def _process_state(torch) -> dict:
    root = logging.getLogger()
    return {
        "cwd": os.getcwd(), "argv": list(sys.argv), "stdin": sys.stdin, "environ": dict(os.environ),
        "threads": torch.get_num_threads(), "deterministic": torch.are_deterministic_algorithms_enabled(),
        "deterministic_warn_only": torch.is_deterministic_algorithms_warn_only_enabled(),
        "dtype": torch.get_default_dtype(), "grad": torch.is_grad_enabled(),
        "cudnn": (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
                  torch.backends.cuda.matmul.allow_tf32),
        "rng": (random.getstate(), np.random.get_state(), torch.get_rng_state()),
        "logging": (list(root.handlers), root.level),
    }


def _restore_process_state(torch, saved: dict) -> None:
    os.chdir(saved["cwd"])
    sys.argv, sys.stdin = saved["argv"], saved["stdin"]
    if dict(os.environ) != saved["environ"]:
        os.environ.clear()
        os.environ.update(saved["environ"])
    torch.set_num_threads(saved["threads"])
    torch.use_deterministic_algorithms(saved["deterministic"], warn_only=saved["deterministic_warn_only"])
    torch.set_default_dtype(saved["dtype"])
    torch.set_grad_enabled(saved["grad"])
    (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic, torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = saved["cudnn"]
    python_rng, numpy_rng, torch_rng = saved["rng"]
    random.setstate(python_rng)
    np.random.set_state(numpy_rng)
    torch.set_rng_state(torch_rng)
    root = logging.getLogger()
    root.handlers[:] = saved["logging"][0]
    root.setLevel(saved["logging"][1])
    with contextlib.suppress(ImportError):
        import torch.distributed as dist
        if dist.is_available() and dist.is_initialized():     # a script that joined a group must have left it
            dist.destroy_process_group()
            raise AssertionError("the script left a torch.distributed process group initialised")


def one_line_error(result: ScriptResult, *words: str, code: int = 2) -> str:
    """The single stderr line of a refused script run (exit `code`, no traceback), holding every word."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr and len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]
