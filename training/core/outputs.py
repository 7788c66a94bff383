"""Where outputs may go: never into a dataset. One rule, checked here for every writer.

A processed or augmented dataset is a folder holding `manifest.csv` with train/val/test split folders
(training/prepare_data.py, training/build_augmented.py). Its validation and test splits must hold
exactly the real images that were prepared: one extra PNG there (a sample grid, a QA contact sheet, a
ROC plot) is counted by the next classifier as a test image. Its train split and the dataset folder
itself belong to the tool that made them. So no output folder may be inside a folder that holds a
`manifest.csv`, nor inside a `val`/`test` split of a dataset (also one made by hand: a folder with a
`train/` beside it). The synthetic folders the toolkit writes carry their own `manifest.jsonl`, not a
`manifest.csv`, so they stay valid places to write into.
"""

from __future__ import annotations

from pathlib import Path

from training.core.errors import UserError

DATASET_MANIFEST = "manifest.csv"        # training.data.processed.SPLITS_MANIFEST (core imports no other layer)
EVAL_SPLITS = {"val", "valid", "validation", "test"}


def dataset_holding(path: str | Path) -> tuple[Path, str | None] | None:
    """(dataset folder, split name or None) when `path` is inside (or is) a dataset's folder; else None."""
    resolved = Path(path).resolve()        # follows links: a link into a test split is inside it
    for folder in (resolved, *resolved.parents):
        dataset = folder.parent
        if folder.name.lower() in EVAL_SPLITS and folder != dataset and (
                (dataset / DATASET_MANIFEST).is_file() or (dataset / "train").is_dir()):
            return dataset, folder.name
        if (folder / DATASET_MANIFEST).is_file():
            return folder, None
    return None


def refuse_output_inside_dataset(path: str | Path, what: str = "the output folder",
                                 instead: str = "a folder under results/", *, is_dataset: bool = False) -> None:
    """UserError (one line) when `path`, an output folder or file, is inside a dataset; call before writing anything.

    `what` names the path in the message (e.g. '--output_dir', 'output.synthetic_dir'); `instead` says where
    such outputs belong. `is_dataset`: `path` is a dataset folder a tool (re)builds as a whole, so only
    the folders above it are checked.
    """
    found = dataset_holding(Path(path).resolve().parent if is_dataset else path)
    if found is None:
        return
    dataset, split = found
    if split is not None:
        raise UserError(f"refusing {what} {path}: it is inside the '{split}' split of {dataset}, and validation and "
                        f"test splits hold only the real images prepared for them; write to {instead}")
    raise UserError(f"refusing {what} {path}: it is inside the processed dataset {dataset} (it holds "
                    f"{DATASET_MANIFEST}); write to {instead}")
