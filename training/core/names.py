"""Names that become folder names (run names, dataset names, class names) must be plain names.

A name with a separator or `..` would put outputs outside the folder meant for them (a run's
checkpoints over a user's files, synthetic images into a validation split); a name starting with a
dot is skipped by every folder reader, so its images would silently vanish.
"""

from __future__ import annotations

import re

from training.core.errors import UserError, short_repr

_PLAIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+= -]{0,126}[A-Za-z0-9_.+=-]|[A-Za-z0-9_]")


def check_plain_name(name: str, what: str) -> str:
    """`name` if it is a plain folder name (letters, digits, _ . + = - and inner spaces, not starting with a dot,
    at most 128 characters); else UserError."""
    if not isinstance(name, str) or not _PLAIN.fullmatch(name) or name in (".", ".."):
        raise UserError(f"{what} must be a plain name (letters, digits, _ . + = -, inner spaces; no '/', no '..', not starting "
                        f"with '.'), got {short_repr(name, 60)}")
    return name
