"""Command-line conventions shared by every script.

Flags are spelled with underscores (`--num_samples`, `--output_dir`, `--preview_only`), as the reference
guide and docs/user_guide.md spell them; the dashed spelling of any flag (`--num-samples`, `--dry-run`) is accepted too, so
muscle memory from other tools works. Output folders are `--output_dir` everywhere, with `--out` and
`--out_dir` accepted as short aliases.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from training.core.config import MAX_SEED
from training.core.errors import UserError
from training.core.version import __version__

OUTPUT_DIR_FLAGS = ("--output_dir", "--out", "--out_dir")


def seed_arg(text: str) -> int:
    """argparse type of a `--seed`: a whole number >= 0, as numpy's and torch's generators take.

    It raises UserError, which argparse does not catch, so the refusal is `run_cli`'s one line.
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise UserError(f"--seed must be >= 0 (a whole number up to {MAX_SEED}), got {text!r}")
    return value


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that reads `--some-flag` as `--some_flag` and keeps the script's docstring layout."""

    def __init__(self, description: str | None = None, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(description=description, **kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s (medgan-augment) {__version__}")

    def parse_known_args(self, args: Sequence[str] | None = None, namespace=None):  # noqa: ANN001 (argparse's)
        args = [self._canonical(a) for a in (sys.argv[1:] if args is None else args)]
        return super().parse_known_args(args, namespace)

    def _canonical(self, arg: str) -> str:
        if not arg.startswith("--") or "-" not in arg[2:]:
            return arg
        flag, sep, value = arg.partition("=")
        underscored = "--" + flag[2:].replace("-", "_")
        return underscored + sep + value if underscored in self._option_string_actions else arg
