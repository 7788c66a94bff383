"""Errors caused by the user's input, and the command-line wrapper that reports them in one line.

Anything raised as a `UserError` is the user's to fix (a config key, a path, an image); the scripts
print it as `error: <message>` and exit non-zero, without a traceback. Any other exception is a bug
and keeps its traceback.
"""

from __future__ import annotations

import errno
import sys
from collections.abc import Callable

# OSErrors that the user fixes (space, permissions, a read-only mount), reported in one line.
ENVIRONMENT_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
# A path that names a file where a folder must be, or a folder where a file must be.
PATH_KIND_ERRORS = {errno.EEXIST, errno.ENOTDIR, errno.EISDIR}


def short_repr(value: object, limit: int = 80) -> str:
    """repr(value), cut to `limit` characters: error messages quote user input, never unbounded."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line."""


class ConfigError(UserError):
    """An unknown key, a wrong type or an out-of-range value in a config."""


class DataError(UserError):
    """Missing, empty, corrupt or inconsistent image data."""


class TrainingDiverged(UserError):
    """A loss became NaN or infinite."""


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> int:
    """Run a script's `main`, turning UserErrors into one line on stderr and exit code 2."""
    try:
        return int(main(argv) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        if err.errno not in ENVIRONMENT_ERRORS | PATH_KIND_ERRORS:
            raise
        # A full disk, a read-only folder or a file in the way is the environment's, not a bug: one line. Every
        # write of ours goes through a temporary file, so what was written before stays valid for a re-run.
        # filename2 is the destination of a copy, link or rename (filename its source, which is not at fault).
        why = (" (a file stands where a folder is needed, or a folder where a file is)"
               if err.errno in PATH_KIND_ERRORS else "")
        print(f"error: cannot write {err.filename2 or err.filename or 'a file'}: {err.strerror}{why}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
