"""Evaluation metrics for contrastive / self-supervised training, computed on the tensors' device.

Everything here is batched torch code: no per-sample Python loops, no numpy, and no
``.item()`` in the hot-path functions. Scalar results come back as 0-d tensors on the input
device so a training loop can accumulate them (see :class:`EpochMeter`) and pay for a single
device→host transfer per epoch.

Conventions
-----------
* ``N`` samples, ``D`` embedding dimensions, ``K`` classes, ``M`` reference (train) samples.
* Labels are integer tensors with values in ``[0, K)``.
* Embeddings are detached and, when stored in half precision, up-cast to float32 before any
  reduction; float64 inputs stay float64.
* Functions that would divide by zero on empty inputs return ``0`` instead of NaN; this is
  decided from tensor *shapes*, which never needs a device sync.

Functions that do need data-dependent shapes say so: :func:`silhouette_score` without
``n_classes`` (``torch.unique``) and :func:`linear_probe` (L-BFGS line search). Both are meant
for end-of-epoch evaluation, not per-batch logging.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EpochMeter",
    "accuracy",
    "confusion_matrix",
    "f1_from_confusion",
    "knn_classify",
    "knn_scores",
    "linear_probe",
    "macro_f1",
    "mean_cosine_similarity",
    "mean_pairwise_cosine",
    "per_dim_std",
    "rankme",
    "retrieval_accuracy",
    "retrieval_chance",
    "roc_auc",
    "silhouette_score",
]

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


# --------------------------------------------------------------------------- classification


def confusion_matrix(preds: Tensor, targets: Tensor, n_classes: int) -> Tensor:
    """Confusion matrix, a bincount over ``target * K + pred`` done with a 1-D ``scatter_add_``.

    ``torch.bincount`` itself is avoided: on CUDA it reads the input's min and max back to the
    host (two syncs), and it is non-deterministic there; a 1-D ``scatter_add_`` into a
    preallocated ``K * K`` vector is sync-free and has a deterministic CUDA path.

    Args:
        preds: ``(N,)`` integer predicted classes.
        targets: ``(N,)`` integer true classes.
        n_classes: ``K``.

    Returns:
        ``(K, K)`` int64 tensor on the input device; ``cm[t, p]`` counts samples of true class
        ``t`` predicted as ``p`` (rows = true, cols = predicted, as in scikit-learn).
        Pairs with a label outside ``[0, K)`` are dropped (like scikit-learn's ``labels=``).
    """
    _check_labels(preds, targets)
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    p = preds.detach().long()
    t = targets.detach().to(device=p.device, dtype=torch.long)
    k = n_classes
    valid = (p >= 0) & (p < k) & (t >= 0) & (t < k)
    # Invalid pairs go to an overflow bin that is sliced off, so nothing is synced.
    idx = torch.where(valid, t * k + p, torch.full_like(p, k * k))
    counts = torch.zeros(k * k + 1, dtype=torch.long, device=p.device)
    counts.scatter_add_(0, idx, torch.ones_like(idx))
    return counts[: k * k].reshape(k, k)


def accuracy(preds: Tensor, targets: Tensor) -> Tensor:
    """Fraction of ``preds == targets``.

    Args:
        preds: ``(N,)`` predicted classes.
        targets: ``(N,)`` true classes.

    Returns:
        0-d float32 tensor; ``0`` when ``N == 0``.
    """
    _check_labels(preds, targets)
    n = preds.shape[0]
    if n == 0:
        return _zero(preds)
    return (preds.detach() == targets.detach().to(preds.device)).float().mean()


def f1_from_confusion(cm: Tensor) -> Tensor:
    """Macro F1 from a ``(K, K)`` confusion matrix (rows = true, cols = predicted).

    Per class ``F1 = 2 TP / (2 TP + FP + FN)``. The macro average runs over the classes that
    occur in the true *or* predicted labels (non-zero row or column); a class that is only
    predicted scores 0. This is scikit-learn's ``f1_score(average="macro", zero_division=0)``
    with its default ``labels`` (``unique(y_true ∪ y_pred)``).

    Returns:
        0-d float32 tensor; ``0`` when the matrix is empty.
    """
    if cm.dim() != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be square (K, K), got {tuple(cm.shape)}")
    c = cm.detach().to(torch.float64 if cm.device.type != "mps" else torch.float32)
    tp = torch.diagonal(c)
    support = c.sum(dim=1)  # TP + FN
    predicted = c.sum(dim=0)  # TP + FP
    denom = support + predicted  # 2 TP + FP + FN
    present = denom > 0
    f1 = torch.where(present, 2.0 * tp / denom.clamp_min(1.0), torch.zeros_like(tp))
    n_present = present.sum().clamp_min(1)
    return (f1.sum() / n_present).float()


def macro_f1(preds: Tensor, targets: Tensor, n_classes: int) -> Tensor:
    """Macro F1 of ``preds`` against ``targets`` (see :func:`f1_from_confusion`).

    Args:
        preds: ``(N,)`` predicted classes in ``[0, K)``.
        targets: ``(N,)`` true classes in ``[0, K)``.
        n_classes: ``K``.

    Returns:
        0-d float32 tensor equal to ``sklearn.metrics.f1_score(targets, preds,
        average="macro", zero_division=0)``: classes absent from both ``preds`` and
        ``targets`` are left out of the average.
    """
    return f1_from_confusion(confusion_matrix(preds, targets, n_classes))


def roc_auc(scores: Tensor, targets: Tensor, n_classes: int) -> Tensor:
    """Macro one-vs-rest ROC-AUC: the ranking metric of imbalanced (medical) labels.

    Equal to ``sklearn.metrics.roc_auc_score(targets, probs, multi_class="ovr")`` and, for
    two classes, to the binary AUC of class 1, ranked by ``scores[:, 1] - scores[:, 0]``
    (the logit margin for log-probabilities: confident models keep their order, where
    ``1 - p`` would round to the same float). Each class's AUC is the Mann-Whitney rank
    statistic of its column, tied scores counted half; the average ranks come from
    ``searchsorted`` on the sorted columns, so nothing syncs with the host.

    Args:
        scores: ``(N, K)`` class log-probabilities (``log_softmax``, which keeps the
            resolution ``softmax`` loses near 0 and 1) or probabilities; not raw logits
            for ``K > 2``, since a class's logit does not rank samples as its probability.
        targets: ``(N,)`` true classes in ``[0, K)``.
        n_classes: ``K``.

    Returns:
        0-d float32 tensor. Classes with no positive or no negative sample in ``targets``
        are left out of the mean (scikit-learn refuses them); NaN when none is left.
    """
    if scores.dim() != 2 or scores.shape[0] != targets.shape[0]:
        raise ValueError(f"scores must be (N, K) for {targets.shape[0]} targets")
    # float64 keeps rank sums (up to N^2 / 2) exact; MPS has no float64
    dtype = torch.float32 if scores.device.type == "mps" else torch.float64
    columns = scores.detach().to(dtype).T.contiguous()  # (K, N)
    positive = F.one_hot(targets, n_classes).T.to(dtype)  # (K, N)
    if n_classes == 2:  # one ranking: class 1 by the margin (class 0's AUC is its mirror)
        columns, positive = (columns[1] - columns[0]).unsqueeze(0), positive[1:]
    ordered = columns.sort(dim=1).values
    first = torch.searchsorted(ordered, columns)  # 0-based first position of each value
    after = torch.searchsorted(ordered, columns, right=True)
    ranks = (first + after + 1).to(dtype) / 2  # 1-based, ties get their average rank
    n_pos = positive.sum(dim=1)
    n_neg = targets.shape[0] - n_pos
    u = (ranks * positive).sum(dim=1) - n_pos * (n_pos + 1) / 2
    defined = (n_pos > 0) & (n_neg > 0)
    auc = torch.where(defined, u / (n_pos * n_neg).clamp_min(1), 0.0)
    mean = auc.sum() / defined.sum().clamp_min(1)
    return torch.where(defined.any(), mean, torch.nan).float()


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


# --------------------------------------------------------------------------- k-NN


def knn_classify(
    train_z: Tensor,
    train_y: Tensor,
    query_z: Tensor,
    n_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    *,
    chunk_size: int | None = None,
) -> Tensor:
    """Weighted k-nearest-neighbour classification with cosine similarity.

    The protocol of InstDisc (Wu et al., 2018) as implemented in solo-learn: each of the
    ``k`` most similar training samples votes for its label with weight ``exp(sim / T)``;
    the class with the largest total wins (ties go to the lowest class index). Weights are
    shifted by each query's top similarity before ``exp`` — this leaves the vote unchanged and
    avoids overflow for small ``T``. ``k`` is clipped to the number of training samples.

    Args:
        train_z: ``(M, D)`` reference embeddings.
        train_y: ``(M,)`` reference labels in ``[0, K)``.
        query_z: ``(Q, D)`` embeddings to classify.
        n_classes: ``K``.
        k: neighbours per query (``>= 1``).
        temperature: ``T`` of the vote weights (``> 0``).
        chunk_size: queries per ``(rows, M)`` similarity block; default bounds a block to
            ~16M elements.

    Returns:
        ``(Q,)`` int64 predicted classes on the input device.
    """
    if train_z.dim() != 2 or query_z.dim() != 2 or train_z.shape[1] != query_z.shape[1]:
        raise ValueError(
            f"train_z (M, D) and query_z (Q, D) must share D, got "
            f"{tuple(train_z.shape)} and {tuple(query_z.shape)}"
        )
    if train_y.dim() != 1 or train_y.shape[0] != train_z.shape[0]:
        raise ValueError(f"train_y must be ({train_z.shape[0]},), got {tuple(train_y.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if n_classes < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    m, q = train_z.shape[0], query_z.shape[0]
    if m == 0:
        raise ValueError("knn_classify needs at least one training sample")
    device = query_z.device
    if q == 0:
        return torch.empty(0, dtype=torch.long, device=device)

    ref = F.normalize(_as_float(train_z).to(device), dim=1)
    qry = F.normalize(_as_float(query_z), dim=1).to(ref.dtype)
    labels = train_y.detach().to(device=device, dtype=torch.long)
    k = min(k, m)
    step = _row_chunk(q, m, chunk_size)
    out = []
    for start in range(0, q, step):
        sim = qry[start : start + step] @ ref.T  # (c, M)
        top_sim, top_idx = sim.topk(k, dim=1)  # sorted, top_sim[:, 0] is the max
        weights = torch.exp((top_sim - top_sim[:, :1]) / temperature)
        rows = sim.shape[0]
        # Flattened 1-D scatter: (row, label) -> row * K + label; deterministic on CUDA.
        slot = torch.arange(rows, device=device)[:, None] * n_classes + labels[top_idx]
        votes = torch.zeros(rows * n_classes, dtype=weights.dtype, device=device)
        votes.scatter_add_(0, slot.reshape(-1), weights.reshape(-1))
        out.append(votes.view(rows, n_classes).argmax(dim=1))
    return torch.cat(out)


def knn_scores(
    train_z: Tensor,
    train_y: Tensor,
    query_z: Tensor,
    query_y: Tensor,
    n_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    *,
    chunk_size: int | None = None,
) -> dict[str, Tensor]:
    """:func:`knn_classify` on ``query_z`` scored against ``query_y`` (``(Q,)``).

    Returns:
        ``{"accuracy": 0-d tensor, "macro_f1": 0-d tensor}``.
    """
    preds = knn_classify(
        train_z, train_y, query_z, n_classes, k, temperature, chunk_size=chunk_size
    )
    targets = query_y.detach().to(preds.device)
    return {
        "accuracy": accuracy(preds, targets),
        "macro_f1": macro_f1(preds, targets, n_classes),
    }


# --------------------------------------------------------------------------- linear probe


def linear_probe(
    train_z: Tensor,
    train_y: Tensor,
    val_z: Tensor,
    val_y: Tensor,
    n_classes: int,
    *,
    epochs: int = 100,
    lr: float = 1.0,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> dict[str, Tensor]:
    """Linear evaluation: multinomial logistic regression on frozen embeddings.

    Features are detached and standardised with the training mean/std (constant features are
    left centred, not scaled). The model ``softmax(x W + b)`` is fit full-batch on the
    embeddings' device with L-BFGS (strong-Wolfe line search, ``epochs`` iterations at most)
    minimising ``mean cross-entropy + weight_decay / 2 * ||W||²`` (bias not penalised). This
    is scikit-learn's ``LogisticRegression(C=1 / (weight_decay * M))`` objective.

    The problem is convex and starts from ``W = 0, b = 0``, so the result is deterministic
    and does not depend on ``seed`` (kept for a uniform trainer API; it seeds nothing).
    L-BFGS reads scalars back from the device during its line search: call this once per
    evaluation, not per batch. ~0.1-0.15 s for 7k x 64 (6 classes) on one CPU thread; the
    first ``torch.optim`` optimizer built in a process also imports ``torch._dynamo`` (~2 s,
    already paid by any trainer that has built its own optimizer).

    Args:
        train_z: ``(M, D)`` training embeddings.
        train_y: ``(M,)`` training labels in ``[0, K)``.
        val_z: ``(V, D)`` validation embeddings.
        val_y: ``(V,)`` validation labels in ``[0, K)``.
        n_classes: ``K``.
        epochs: maximum L-BFGS iterations.
        lr: L-BFGS step size (1.0 is right with the line search).
        weight_decay: L2 coefficient on ``W``.
        seed: unused, see above.

    Returns:
        ``{"accuracy": 0-d tensor, "macro_f1": 0-d tensor}`` on the validation set.
    """
    del seed
    if train_z.dim() != 2 or val_z.dim() != 2 or train_z.shape[1] != val_z.shape[1]:
        raise ValueError(
            f"train_z (M, D) and val_z (V, D) must share D, got "
            f"{tuple(train_z.shape)} and {tuple(val_z.shape)}"
        )
    if train_y.shape != train_z.shape[:1] or val_y.shape != val_z.shape[:1]:
        raise ValueError("train_y / val_y must be 1-D and match train_z / val_z rows")
    if train_z.shape[0] == 0:
        raise ValueError("linear_probe needs at least one training sample")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = train_z.device
    x = _as_float(train_z)
    xv = _as_float(val_z).to(device=device, dtype=x.dtype)
    y = train_y.detach().to(device=device, dtype=torch.long)
    yv = val_y.detach().to(device=device, dtype=torch.long)

    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    x = (x - mean) / std
    xv = (xv - mean) / std

    d = x.shape[1]
    weight = torch.zeros(d, n_classes, dtype=x.dtype, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, dtype=x.dtype, device=device, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias],
        lr=lr,
        max_iter=epochs,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad(set_to_none=False)
        loss = F.cross_entropy(x @ weight + bias, y)
        loss = loss + 0.5 * weight_decay * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)

    with torch.no_grad():
        preds = (xv @ weight + bias).argmax(dim=1)
    return {"accuracy": accuracy(preds, yv), "macro_f1": macro_f1(preds, yv, n_classes)}


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


# --------------------------------------------------------------------------- epoch meter


class EpochMeter:
    """Running, count-weighted means of named scalar tensors, kept on their device.

    ``update(name, value, n)`` adds ``value * n`` (``value`` being a batch mean over ``n``
    samples) to a device-side sum without syncing; :meth:`compute` stacks every sum and does
    one ``.tolist()`` — a single device→host transfer — to return plain floats.

    Example::

        meter = EpochMeter()
        for x, y in loader:
            loss = ...
            meter.update("loss", loss, n=len(x))
            meter.update("acc", accuracy(logits.argmax(1), y), n=len(x))
        reporter.report(epoch, meter.compute())
        meter.reset()
    """

    def __init__(self) -> None:
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def update(self, name: str, value: Tensor, n: int = 1) -> None:
        """Accumulate a 1-element tensor ``value`` (a mean over ``n >= 0`` samples)."""
        if value.numel() != 1:
            raise ValueError(f"{name!r}: expected a scalar tensor, got shape {tuple(value.shape)}")
        if n < 0:
            raise ValueError(f"{name!r}: n must be >= 0, got {n}")
        acc_dtype = torch.float32 if value.device.type == "mps" else torch.float64
        v = value.detach().reshape(()).to(acc_dtype) * n
        prev = self._sums.get(name)
        self._sums[name] = v if prev is None else prev + v.to(prev.device)
        self._counts[name] = self._counts.get(name, 0) + n

    def compute(self) -> dict[str, float]:
        """Weighted means by name (NaN for a name whose total count is 0); one host transfer."""
        if not self._sums:
            return {}
        names = list(self._sums)
        first = self._sums[names[0]]
        stacked = torch.stack([self._sums[k].to(first.device, first.dtype) for k in names])
        values = stacked.tolist()
        return {
            k: (v / self._counts[k] if self._counts[k] > 0 else math.nan)
            for k, v in zip(names, values, strict=True)
        }

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._sums.clear()
        self._counts.clear()

    def __len__(self) -> int:
        return len(self._sums)

    def __contains__(self, name: object) -> bool:
        return name in self._sums
