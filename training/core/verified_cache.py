"""Cache files whose content is checked before it is used.

A cache under results/cache is a file anyone with write access to the folder can replace. Each one
we write has a `<file>.sha256` beside it, written after the file, that holds the SHA-256 of the
file's name and bytes. A reader gets the bytes only when they match it, and parses them without
unpickling anything (`torch.load(weights_only=True)`, `np.load(allow_pickle=False)`); a file that is
missing its digest, differs from it, or was renamed from another entry is made again instead.
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from training.core import atomic

DIGEST_SUFFIX = ".sha256"


def digest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + DIGEST_SUFFIX)


def content_digest(name: str, data: bytes) -> str:
    """SHA-256 of a cache entry's file name and bytes: a file copied under another entry's name does not match."""
    digest = hashlib.sha256(name.encode() + b"\0")
    digest.update(data)
    return digest.hexdigest()


def write_verified(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` (atomically), then its digest beside it."""
    path = Path(path)
    atomic.write_bytes(path, data)
    atomic.write_text(digest_path(path), content_digest(path.name, data) + "\n")


def read_verified(path: str | Path) -> bytes | None:
    """The bytes of `path` when they match the digest written with them; None when missing, unreadable or different."""
    path = Path(path)
    try:
        data = path.read_bytes()
        expected = digest_path(path).read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return data if hmac.compare_digest(content_digest(path.name, data), expected) else None
