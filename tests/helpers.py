"""Helpers shared by the tests."""

from __future__ import annotations

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
