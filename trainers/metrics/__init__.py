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

Layout
------
One concept per private module, re-exported here (``from trainers.metrics import X`` is the
only supported import): ``_classification`` (confusion matrix, accuracy, F1, ROC-AUC),
``_embeddings`` (retrieval, diversity, collapse, RankMe), ``_probes`` (k-NN, linear probe),
``_silhouette`` (silhouette score), ``_meter`` (:class:`EpochMeter`), and ``_common`` (the
private helpers they share). Only ``torch`` is imported, as before the split.
"""

from __future__ import annotations

from trainers.metrics._classification import (
    accuracy,
    confusion_matrix,
    f1_from_confusion,
    macro_f1,
    roc_auc,
)
from trainers.metrics._embeddings import (
    mean_cosine_similarity,
    mean_pairwise_cosine,
    per_dim_std,
    rankme,
    retrieval_accuracy,
    retrieval_chance,
)
from trainers.metrics._meter import EpochMeter
from trainers.metrics._probes import knn_classify, knn_scores, linear_probe
from trainers.metrics._silhouette import silhouette_score

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
