"""Euclidean nearest neighbours and close pairs between sets of vectors (pixels or features).

Distances come from |q|^2 + |r|^2 - 2 q.r on row chunks, in float32 after subtracting the reference
mean: this keeps a 2,000 x 2,000 search over 12,288-d pixel vectors to a few seconds and a few
hundred MB, and the cancellation error (about 1e-3 of a typical distance) is far below the gaps
the checks look at. Identical vectors are therefore at distance ~0, not exactly 0; callers that need
exact copies compare pixel hashes.
"""

from __future__ import annotations

import numpy as np
import torch

CHUNK_ROWS = 256


def _as_tensors(query: np.ndarray, reference: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    center = reference.mean(axis=0, keepdims=True)
    q = torch.from_numpy(np.ascontiguousarray(query - center, dtype=np.float32))
    r = torch.from_numpy(np.ascontiguousarray(reference - center, dtype=np.float32))
    return q, r


def _squared_distances(q: torch.Tensor, r: torch.Tensor, r_sq: torch.Tensor) -> torch.Tensor:
    """(n, d), (m, d) -> (n, m) squared distances, clamped at 0 against rounding."""
    return ((q * q).sum(1, keepdim=True) + r_sq[None, :] - 2.0 * q @ r.T).clamp_(min=0.0)


def nearest_neighbours(query: np.ndarray, reference: np.ndarray,
                       leave_one_out: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Distance from each query row to its nearest reference row, and that row's index.

    Args:
        query: (n, d) vectors.
        reference: (m, d) vectors.
        leave_one_out: `query` is `reference`; each row's own entry is excluded (needs m >= 2).
    Returns:
        float64 distances (n,) and int64 indices (n,) into `reference`.
    """
    if leave_one_out and len(reference) < 2:
        raise ValueError("leave-one-out neighbours need at least two vectors")
    q, r = _as_tensors(query, reference)
    r_sq = (r * r).sum(1)
    distances, indices = [], []
    for start in range(0, len(q), CHUNK_ROWS):
        d2 = _squared_distances(q[start:start + CHUNK_ROWS], r, r_sq)       # (chunk, m)
        if leave_one_out:
            rows = torch.arange(len(d2))
            d2[rows, rows + start] = float("inf")
        best, index = d2.min(dim=1)
        distances.append(best.sqrt().double())
        indices.append(index)
    return torch.cat(distances).numpy(), torch.cat(indices).numpy()


def close_pairs(vectors: np.ndarray, radius: float) -> tuple[int, np.ndarray]:
    """Pairs (i < j) of rows closer than `radius`: their count, and per row whether it is in one."""
    x, _ = _as_tensors(vectors, vectors)
    x_sq = (x * x).sum(1)
    num_pairs, has_close = 0, torch.zeros(len(x), dtype=torch.bool)
    for start in range(0, len(x), CHUNK_ROWS):
        close = _squared_distances(x[start:start + CHUNK_ROWS], x, x_sq) < radius ** 2   # (chunk, n)
        rows = torch.arange(len(close))
        close[rows, rows + start] = False
        num_pairs += int(close.sum())
        has_close[start:start + len(close)] = close.any(dim=1)
    return num_pairs // 2, has_close.numpy()     # each pair was counted from both ends
