"""Private helpers shared by the metric modules: dtype, empty-input zeros, chunking, checks."""

from __future__ import annotations

import torch
from torch import Tensor

_CHUNK_ELEMENTS = 1 << 24
"""Upper bound on the elements of one (rows x N) similarity block (64 MiB in float32)."""


# --------------------------------------------------------------------------- helpers


def _as_float(z: Tensor) -> Tensor:
    """Detached floating view of ``z``: float64 stays float64, everything else becomes float32."""
    z = z.detach()
    if z.dtype in (torch.float32, torch.float64):
        return z
    return z.float()


def _zero(like: Tensor) -> Tensor:
    """A 0-d float32 zero on ``like``'s device."""
    return torch.zeros((), dtype=torch.float32, device=like.device)


def _row_chunk(n_rows: int, n_cols: int, chunk_size: int | None) -> int:
    """Rows per block so that a ``(rows, n_cols)`` block stays under :data:`_CHUNK_ELEMENTS`."""
    if chunk_size is not None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        return chunk_size
    return max(1, min(n_rows, _CHUNK_ELEMENTS // max(n_cols, 1)))


def _check_labels(preds: Tensor, targets: Tensor) -> None:
    if preds.dim() != 1 or targets.dim() != 1:
        raise ValueError(
            f"preds and targets must be 1-D, got {tuple(preds.shape)} and {tuple(targets.shape)}"
        )
    if preds.shape[0] != targets.shape[0]:
        raise ValueError(f"preds has {preds.shape[0]} entries but targets has {targets.shape[0]}")


def _check_pair(a: Tensor, b: Tensor, names: str) -> None:
    if a.dim() != 2 or a.shape != b.shape:
        raise ValueError(
            f"{names} must both be (N, D) with equal shapes, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
