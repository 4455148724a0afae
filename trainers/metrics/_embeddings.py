"""Label-free embedding metrics: in-batch retrieval, diversity, collapse, effective rank."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.metrics._common import _as_float, _check_pair, _row_chunk, _zero

# --------------------------------------------------------------------------- embeddings


def retrieval_chance(n: int) -> float:
    """Chance level of :func:`retrieval_accuracy` for a batch of ``n`` pairs (``1 / n``)."""
    return 1.0 / n if n > 0 else 0.0


def retrieval_accuracy(z1: Tensor, z2: Tensor, *, chunk_size: int | None = None) -> Tensor:
    """In-batch (InfoNCE) top-1 retrieval accuracy.

    Row ``i`` is a hit when ``argmax_j cos(z1[i], z2[j]) == i``, i.e. the positive view is the
    nearest of the ``N`` candidates. Chance level is :func:`retrieval_chance` ``(N)``.

    Args:
        z1: ``(N, D)`` embeddings of the first view.
        z2: ``(N, D)`` embeddings of the second view (row ``i`` is ``z1[i]``'s positive).
        chunk_size: rows of ``z1`` per ``(rows, N)`` similarity block; default bounds a block
            to ~16M elements.

    Returns:
        0-d float32 tensor in ``[0, 1]``; ``0`` when ``N == 0``.
    """
    _check_pair(z1, z2, "z1 and z2")
    n = z1.shape[0]
    if n == 0:
        return _zero(z1)
    a = F.normalize(_as_float(z1), dim=1)
    b = F.normalize(_as_float(z2), dim=1).to(a.dtype)
    step = _row_chunk(n, n, chunk_size)
    hits = torch.zeros((), dtype=torch.long, device=a.device)
    for start in range(0, n, step):
        sim = a[start : start + step] @ b.T
        rows = torch.arange(start, start + sim.shape[0], device=a.device)
        hits = hits + (sim.argmax(dim=1) == rows).sum()
    return hits.float() / n


def mean_pairwise_cosine(z: Tensor) -> Tensor:
    """Mean cosine similarity over all ordered pairs ``i != j`` (embedding diversity).

    Computed in ``O(N D)`` from ``||sum_i ẑ_i||² - sum_i ||ẑ_i||²`` with ``ẑ`` the
    L2-normalised rows. ``1`` means complete collapse, ``~0`` well spread embeddings.

    Args:
        z: ``(N, D)`` embeddings.

    Returns:
        0-d tensor; ``0`` when ``N < 2``.
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, D), got {tuple(z.shape)}")
    n = z.shape[0]
    if n < 2:
        return _zero(z)
    zn = F.normalize(_as_float(z), dim=1)
    total = zn.sum(dim=0).pow(2).sum()
    diag = zn.pow(2).sum()
    return (total - diag) / (n * (n - 1))


def per_dim_std(z: Tensor) -> Tensor:
    """Mean over dimensions of the per-dimension std of the L2-normalised embeddings.

    Collapse detector (as in SimSiam): for embeddings spread uniformly on the unit sphere
    each coordinate has variance ``1/D``, so the value is ``~1/sqrt(D)``; for collapsed
    embeddings (all rows pointing the same way) it is ``~0``. The population std
    (``correction=0``) is used, so ``N == 1`` gives ``0``.

    Args:
        z: ``(N, D)`` embeddings.

    Returns:
        0-d tensor; ``0`` when ``N == 0``.
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, D), got {tuple(z.shape)}")
    if z.shape[0] == 0 or z.shape[1] == 0:
        return _zero(z)
    zn = F.normalize(_as_float(z), dim=1)
    return zn.std(dim=0, correction=0).mean()


def rankme(z: Tensor, eps: float = 1e-7) -> Tensor:
    """Effective rank of embeddings (RankMe, Garrido et al. 2023): judges SSL without labels.

    ``exp(-sum_k p_k log p_k)`` with ``p_k = s_k / sum(s) + eps`` and ``s`` the singular
    values of ``z``. The paper finds it tracks downstream accuracy across hyperparameters
    of one method, so a study on unlabelled data can maximise it. It lies in
    ``[~1, min(N, D)]``: ``~1`` for collapsed embeddings, ``min(N, D)`` for singular values
    all equal. Fewer samples than dimensions cap it at ``N``.

    Args:
        z: ``(N, D)`` embeddings.
        eps: the paper's smoothing of ``p`` (``1e-7``).

    Returns:
        0-d tensor; ``0`` when ``z`` is empty, ``1`` when it is all zeros, NaN when it
        holds a non-finite value.
    """
    if z.dim() != 2:
        raise ValueError(f"z must be (N, D), got {tuple(z.shape)}")
    if z.shape[0] == 0 or z.shape[1] == 0:
        return _zero(z)
    z = _as_float(z)
    finite = torch.isfinite(z)
    singular = torch.linalg.svdvals(torch.where(finite, z, 0.0))  # SVD refuses NaN
    total = singular.sum()
    # all-zero embeddings: a rank of 1, without a 0/0 (torch.where keeps it sync-free)
    p = torch.where(total > 0, singular / total.clamp_min(torch.finfo(total.dtype).tiny), 0.0)
    p = p + eps
    entropy = -(p * p.log()).sum()
    rank = torch.where(total > 0, entropy.exp(), torch.ones_like(entropy))
    return torch.where(finite.all(), rank, torch.nan)


def mean_cosine_similarity(pred: Tensor, target: Tensor) -> Tensor:
    """Mean row-wise cosine similarity between ``pred`` and ``target``.

    Typical use: BYOL/SimSiam predictor output vs. (stop-gradient) target projection.

    Args:
        pred: ``(..., D)`` tensor.
        target: same shape as ``pred``.

    Returns:
        0-d tensor; ``0`` when there are no rows.
    """
    if pred.shape != target.shape or pred.dim() < 1:
        raise ValueError(
            f"pred and target must have equal (..., D) shapes, got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.numel() == 0:
        return _zero(pred)
    a = _as_float(pred)
    b = _as_float(target).to(a.dtype)
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8).mean()
