"""What a run records next to its outputs: resolved config, seed, package versions, git commit."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from training.core import atomic
from training.core.version import __version__

_PACKAGES = ("torch", "torchvision", "torch-fidelity", "numpy", "scikit-learn", "pillow", "matplotlib", "pyyaml")


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"medgan-augment": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_commit(repo_dir: str | Path | None = None) -> dict[str, Any]:
    """The commit of the code that ran, and whether the work tree had uncommitted changes."""
    repo_dir = Path(repo_dir or Path(__file__).resolve().parents[1])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo_dir, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo_dir,
                                capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip()) if commit else None}


def run_info(seed: int, device: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "device": device,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "host": platform.node(),
        "versions": package_versions(),
        "git": git_commit(),
        **(extra or {}),
    }


def write_run_record(out_dir: str | Path, config_yaml: str, info: dict[str, Any]) -> None:
    """Write `config.yaml` (resolved) and `run_info.json` into `out_dir`."""
    out_dir = Path(out_dir)
    atomic.write_text(out_dir / "config.yaml", config_yaml)
    atomic.write_json(out_dir / "run_info.json", info)


def next_run_dir(root: Path) -> Path:
    """<root>/run_NNN (e.g. results/classifiers/<name>/run_003): the next free number, created at once
    (never reused, never overwritten)."""
    root.mkdir(parents=True, exist_ok=True)
    taken = [int(m.group(1)) for p in root.iterdir() if (m := re.fullmatch(r"run_(\d+)", p.name))]
    number = max(taken, default=-1) + 1
    while True:
        path = root / f"run_{number:03d}"
        try:
            path.mkdir()
            return path
        except FileExistsError:        # another process took it
            number += 1
