"""A person's review of generated images (quality/review.py is the command and describes the answers).

`review_images` walks the undecided images of a folder, asks for each, moves rejected ones into
`rejected/` (never deleting or overwriting) and saves every decision at once in review.json, keyed by
the file's content hash, so a review resumes and a changed file is asked again.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from training.core import atomic
from training.core.errors import DataError
from training.core.outputs import dataset_holding
from training.data.images import file_sha256, is_image_file, read_image
from training.data.synthetic_folder import OWN_FILES
from training.data.synthetic_folder import REJECTED as REJECTED_FOLDER

REVIEW_FILE = "review.json"
REJECTED_DIR = REJECTED_FOLDER   # the folder generate_samples.py and build_augmented.py leave out
ACCEPTED, REJECTED = "accepted", "rejected"
ANSWERS = {"y": ACCEPTED, "n": REJECTED, "s": "skip", "q": "quit"}
PROMPT = "Quality OK? [y]es / [n]o, reject / [s]kip / [q]uit: "


def load_decisions(folder: Path) -> dict[str, dict]:
    """The decisions recorded so far in folder/review.json, by file name ({} when there is none)."""
    path = folder / REVIEW_FILE
    if not path.is_file():
        return {}
    try:
        return dict(json.loads(path.read_text())["decisions"])
    except (ValueError, KeyError, TypeError) as err:
        raise DataError(f"{path} is not a review file ({err.__class__.__name__}); move it away to start afresh") from None


def save_decisions(folder: Path, decisions: dict[str, dict]) -> None:
    """Write folder/review.json atomically: an interrupted write never loses earlier decisions."""
    atomic.write_json(folder / REVIEW_FILE, {"version": 1, "decisions": decisions})


def is_decided(path: Path, decisions: dict[str, dict]) -> bool:
    """Accepted earlier with this very content. A rejected file that is back in the folder (e.g.
    re-generated from the same seed) is asked about again rather than moved without asking."""
    decision = decisions.get(path.name)
    return decision is not None and decision["decision"] == ACCEPTED and decision["sha256"] == file_sha256(path)


def pending_images(folder: Path, decisions: dict[str, dict], shuffle: bool, seed: int) -> list[Path]:
    """Images directly in `folder` not yet decided (see `is_decided`), in review order; the preview and
    sample grids this toolkit writes beside the images are not samples, so they are not reviewed."""
    files = sorted(p for p in folder.iterdir() if is_image_file(p) and p.name not in OWN_FILES)
    pending = [p for p in files if not is_decided(p, decisions)]
    if shuffle:
        random.Random(seed).shuffle(pending)
    return pending


def unique_destination(directory: Path, name: str) -> Path:
    """directory/name, or name_2, name_3, ... when taken: an earlier rejected file is never overwritten."""
    candidate, n = directory / name, 1
    while candidate.exists():
        n += 1
        candidate = directory / f"{Path(name).stem}_{n}{Path(name).suffix}"
    return candidate


def move_to_rejected(path: Path) -> Path:
    """Move an image into rejected/ beside it; returns its new path."""
    destination = unique_destination(path.parent / REJECTED_DIR, path.name)
    destination.parent.mkdir(exist_ok=True)
    path.rename(destination)
    return destination


def ask(read: Callable[[str], str], say: Callable[[str], None]) -> str:
    """One of ANSWERS' values; asks again on anything else; end of input counts as quit."""
    while True:
        try:
            answer = read(PROMPT).strip().lower()[:1]
        except EOFError:
            return "quit"
        if answer in ANSWERS:
            return ANSWERS[answer]
        say("please answer y, n, s or q")


def record(decisions: dict[str, dict], path: Path, digest: str, decision: str, moved_to: Path | None) -> None:
    """Add one decision, with the content hash that lets a resumed review recognise the file."""
    decisions[path.name] = {"decision": decision, "sha256": digest,
                            "decided_utc": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if moved_to is not None:
        decisions[path.name]["moved_to"] = str(moved_to.relative_to(path.parent))


def review_images(folder: str | Path, read: Callable[[str], str] = input, show: Callable[[Path], None] | None = None,
                  say: Callable[[str], None] = print, shuffle: bool = False, seed: int = 0) -> dict:
    """Review the undecided images of `folder`, asking `read` about each; returns the counts.

    Args:
        folder: a flat folder of images (its rejected/ sub-folder is not reviewed).
        read: called with the prompt, returns the answer (`input` in a terminal; a stub in tests).
        show: displays an image, or None to print paths only.
        say: prints a line.
        shuffle, seed: review in a seeded random order instead of by name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"folder not found: {folder}")
    held = dataset_holding(folder)
    if held is not None:      # a rejection moves the file: a prepared dataset would no longer match its manifest
        where = f"the '{held[1]}' split of {held[0]}" if held[1] else f"the prepared dataset {held[0]}"
        raise DataError(f"{folder} is in {where}: review a synthetic folder (generate_samples.py's output); "
                        "a dataset's images are never moved")
    decisions = load_decisions(folder)
    pending = pending_images(folder, decisions, shuffle, seed)
    if decisions:
        say(f"resuming: {len(decisions)} image(s) decided earlier, {len(pending)} to go")
    for index, path in enumerate(pending, start=1):
        say(f"[{index}/{len(pending)}] {path}")
        if show is not None:
            show(path)
        answer = ask(read, say)
        if answer == "quit":
            break
        if answer == "skip":
            continue
        digest = file_sha256(path)   # hashed before a move, so a resumed review recognises the content
        moved_to = move_to_rejected(path) if answer == REJECTED else None
        record(decisions, path, digest, answer, moved_to)
        save_decisions(folder, decisions)
    counts = {"accepted": sum(d["decision"] == ACCEPTED for d in decisions.values()),
              "rejected": sum(d["decision"] == REJECTED for d in decisions.values()),
              "remaining": len(pending_images(folder, decisions, False, 0))}
    say(f"accepted {counts['accepted']}, rejected {counts['rejected']} (in {folder / REJECTED_DIR}), "
        f"remaining {counts['remaining']}; decisions in {folder / REVIEW_FILE}")
    return counts


def interactive_backends() -> set[str]:
    """Names of matplotlib's backends that open windows."""
    try:
        from matplotlib.backends import BackendFilter, backend_registry
        return {b.lower() for b in backend_registry.list_builtin(BackendFilter.INTERACTIVE)}
    except ImportError:   # matplotlib < 3.9
        from matplotlib import rcsetup
        return {b.lower() for b in rcsetup.interactive_bk}


def matplotlib_viewer() -> Callable[[Path], None] | None:
    """A function that shows an image in a window without blocking, or None when there is no display."""
    import matplotlib.pyplot as plt  # here, not at the top: pyplot chooses a window backend when imported

    if plt.get_backend().lower() not in interactive_backends():
        return None
    fig, ax = plt.subplots()

    def show(path: Path) -> None:
        ax.clear()
        ax.imshow(read_image(path), cmap="gray", vmin=0, vmax=255)
        ax.set_title(path.name)
        ax.axis("off")
        fig.canvas.draw_idle()
        plt.show(block=False)
        plt.pause(0.001)   # lets the window draw before the terminal waits for input

    return show
