"""Classification metrics from predicted classes or scores: confusion matrix, accuracy, F1, AUC."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from trainers.metrics._common import _check_labels, _zero

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
