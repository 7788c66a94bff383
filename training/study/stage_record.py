"""The pipeline's record of its stages (results/pipeline/<name>/stages.json) and the content hashes that let a
re-run skip a stage only while its outputs hold what it recorded.

    stages = Stages(Path("results/pipeline/demo/stages.json"))
    outputs = stages.run("qa", stage_key(inputs), outputs_exist, work, fingerprint=lambda o: content_hash(report))
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.core import atomic
from training.core.errors import UserError
from training.data.processed import SPLITS_MANIFEST, read_splits_manifest
from training.data.synthetic_folder import SYNTHETIC_MANIFEST, read_synthetic_manifest


def stage_key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def content_hash(*paths: str | Path) -> str | None:
    """SHA-256 over the bytes of `paths` (names and content), or None when one is missing or unreadable."""
    digest = hashlib.sha256()
    try:
        for path in paths:
            digest.update(str(path).encode() + b"\0" + Path(path).read_bytes() + b"\0")
    except OSError:
        return None
    return digest.hexdigest()


def folder_hash(folder: str | Path) -> str | None:
    """The content of a synthetic folder: its manifest.jsonl and every file the manifest lists (None if one is
    missing). Images overwritten by another generator's change it even when the manifest stays."""
    folder = Path(folder)
    try:
        records = read_synthetic_manifest(folder)
    except UserError:
        return None
    files = [folder / str(r.get("file")) for _, r in sorted(records.items())]
    return content_hash(folder / SYNTHETIC_MANIFEST, *files)


def dataset_hash(root: str | Path) -> str | None:
    """The content of a processed or augmented dataset: its manifest.csv and every file it lists."""
    root = Path(root)
    try:
        rows = read_splits_manifest(root)
    except UserError:
        return None
    return content_hash(root / SPLITS_MANIFEST, *sorted(root / r["path"] for r in rows))


class Stages:
    """Runs named stages, skipping those whose key is unchanged and whose outputs still hold what was recorded.

    stages.json is a file anyone can edit or damage, so nothing in it is taken on trust: a stage is
    skipped only when its outputs are where the stage puts them (`outputs_exist`) and
    `fingerprint(outputs)` (a hash of their content, computed now) equals the one recorded when the
    stage ran. An edited record or a damaged file (not JSON, not an object) makes the stages concerned
    run again, saying why. A record of an earlier version (no fingerprint) whose outputs pass
    `outputs_exist` is adopted and fingerprinted, so an unchanged study still skips its stages.
    """

    def __init__(self, record: Path, label: str = ""):
        self.record_path = record
        self.label = label          # said before each stage's name, e.g. "fold 2/5"
        self.done = self._load(record)

    def tag(self, name: str) -> str:
        """How messages name stage `name`: [name], or [label name]."""
        return f"[{self.label} {name}]" if self.label else f"[{name}]"

    @staticmethod
    def _load(record: Path) -> dict:
        if not record.is_file():
            return {}
        try:
            done = json.loads(record.read_bytes())
        except (ValueError, OSError) as err:       # truncated, random bytes, unreadable
            print(f"note: {record} is damaged ({type(err).__name__}); every stage runs again")
            return {}
        if not isinstance(done, dict):
            print(f"note: {record} is not a record of stages (a JSON {type(done).__name__}); every stage runs again")
            return {}
        # A stage's entry is {"key": str, "outputs": dict, ...}; anything else is dropped, so that stage re-runs.
        return {name: entry for name, entry in done.items()
                if isinstance(entry, dict) and isinstance(entry.get("key"), str) and isinstance(entry.get("outputs"), dict)}

    def reusable(self, name: str, key: str, outputs_exist: Callable[[dict], bool],
                 fingerprint: Callable[[dict], str | None] | None = None) -> dict | None:
        """The recorded outputs of stage `name` when its key matches and they verify (see the class); None, having
        said why, when the stage must run."""
        previous = self.done.get(name)
        if previous and previous["key"] == key:
            why = self._stale(previous, outputs_exist, fingerprint)
            if why is None and fingerprint is not None and "fingerprint" not in previous:
                # Recorded by an earlier version: its outputs passed the checks above, so they are adopted, and
                # from now on the stage is skipped only while they keep the content fingerprinted here.
                previous["fingerprint"] = fingerprint(previous["outputs"])
                atomic.write_json(self.record_path, self.done)
                print(f"{self.tag(name)} recorded by an earlier version; its outputs are in place: skipped (now "
                      "fingerprinted)")
                return previous["outputs"]
            if why is None:
                print(f"{self.tag(name)} up to date, skipped")
                return previous["outputs"]
            print(f"{self.tag(name)} running again: {why}")
        else:
            print(f"{self.tag(name)} running")
        return None

    def record(self, name: str, key: str, outputs: dict, seconds: float,
               fingerprint: Callable[[dict], str | None] | None = None) -> None:
        """Write down that stage `name` ran with `key` and made `outputs`."""
        entry = {"key": key, "outputs": outputs, "seconds": round(seconds, 1)}
        if fingerprint is not None:
            entry["fingerprint"] = fingerprint(outputs)
        self.done[name] = entry
        atomic.write_json(self.record_path, self.done)

    def run(self, name: str, key: str, outputs_exist: Callable[[dict], bool], work: Callable[[], dict],
            fingerprint: Callable[[dict], str | None] | None = None) -> dict:
        """`work()`'s outputs, or the recorded ones when the key matches and the outputs verify (see the class)."""
        previous = self.reusable(name, key, outputs_exist, fingerprint)
        if previous is not None:
            return previous
        start = time.perf_counter()
        outputs = work()
        self.record(name, key, outputs, time.perf_counter() - start, fingerprint)
        return outputs

    @staticmethod
    def _stale(previous: dict, outputs_exist: Callable[[dict], bool],
               fingerprint: Callable[[dict], str | None] | None) -> str | None:
        """Why the recorded outputs cannot be reused, or None when they can."""
        try:
            if not outputs_exist(previous["outputs"]):
                return "its outputs are missing"
            if fingerprint is None:
                return None
            if "fingerprint" not in previous:
                return None              # an earlier version's record: adopted by `run`
            if previous["fingerprint"] is None or fingerprint(previous["outputs"]) != previous["fingerprint"]:
                return "its outputs changed since they were recorded"
        except (KeyError, TypeError, ValueError, OSError, UserError) as err:    # an edited record
            return f"its record is not one this pipeline wrote ({type(err).__name__})"
        return None
