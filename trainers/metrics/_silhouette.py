"""Clustering quality of embeddings: the silhouette coefficient, batched over row chunks."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.metrics._common import _as_float, _row_chunk, _zero

# --------------------------------------------------------------------------- clustering


def _distances(rows: Tensor, x: Tensor, metric: str) -> Tensor:
    """``(c, N)`` distances; for cosine, ``rows`` and ``x`` must already be L2-normalised."""
    if metric == "cosine":
        return (1.0 - rows @ x.T).clamp_(0.0, 2.0)
    return torch.cdist(rows, x)


def silhouette_score(
    z: Tensor,
    labels: Tensor,
    metric: Literal["cosine", "euclidean"] = "cosine",
    *,
    n_classes: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Mean silhouette coefficient, batched over row chunks.

    Same definition as ``sklearn.metrics.silhouette_score``: for sample ``i`` with mean
    intra-cluster distance ``a`` (self excluded) and smallest mean distance to another
    cluster ``b``, ``s = (b - a) / max(a, b)``; ``s = 0`` for singleton clusters and when
    ``a = b = 0``. Cosine distance is ``1 - cos`` clipped to ``[0, 2]``.

    Args:
        z: ``(N, D)`` embeddings.
        labels: ``(N,)`` integer cluster / class labels (any values).
        metric: ``"cosine"`` or ``"euclidean"``.
        n_classes: when given, labels must lie in ``[0, n_classes)`` and the computation
            is sync-free; otherwise labels are remapped with ``torch.unique`` (a device sync).
        chunk_size: rows per ``(rows, N)`` distance block; default bounds a block to ~16M
            elements.

    Returns:
        0-d tensor in ``[-1, 1]``; ``0`` when fewer than 2 distinct labels are present
        (where scikit-learn would raise).
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, D), got {tuple(z.shape)}")
    if labels.dim() != 1 or labels.shape[0] != z.shape[0]:
        raise ValueError(f"labels must be ({z.shape[0]},), got {tuple(labels.shape)}")
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    n = z.shape[0]
    if n < 2:
        return _zero(z)
    x = _as_float(z)
    device = x.device
    lab = labels.detach().to(device=device, dtype=torch.long)
    if n_classes is None:
        uniq, lab = torch.unique(lab, return_inverse=True)
        n_labels = uniq.numel()
    else:
        n_labels = n_classes
    onehot = F.one_hot(lab, n_labels).to(x.dtype)  # (N, L)
    counts = onehot.sum(dim=0)  # (L,)
    n_present = (counts > 0).sum()
    if metric == "cosine":
        x = F.normalize(x, dim=1)

    step = _row_chunk(n, n, chunk_size)
    total = torch.zeros((), dtype=x.dtype, device=device)
    for start in range(0, n, step):
        rows = x[start : start + step]
        c = rows.shape[0]
        dist = _distances(rows, x, metric)
        dist.diagonal(offset=start).zero_()  # exact zero self-distance, as scikit-learn does
        sums = dist @ onehot  # (c, L): summed distance to each cluster
        own = lab[start : start + c]
        own_count = counts[own]
        a = sums.gather(1, own[:, None]).squeeze(1) / (own_count - 1).clamp_min(1.0)
        mean_other = sums / counts.clamp_min(1.0)
        excluded = (counts == 0)[None, :] | F.one_hot(own, n_labels).bool()
        b = mean_other.masked_fill(excluded, math.inf).amin(dim=1)
        denom = torch.maximum(a, b)
        s = torch.where(
            (own_count > 1) & (denom > 0) & torch.isfinite(b),
            (b - a) / denom,
            torch.zeros_like(a),
        )
        total = total + s.sum()
    return torch.where(n_present >= 2, total / n, torch.zeros_like(total))
