"""Tests for trainers.metrics: against scikit-learn and hand-computed cases."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import silhouette_score as sk_silhouette_score
from sklearn.preprocessing import StandardScaler

from trainers.metrics import (
    EpochMeter,
    accuracy,
    confusion_matrix,
    f1_from_confusion,
    knn_classify,
    knn_scores,
    linear_probe,
    macro_f1,
    mean_cosine_similarity,
    mean_pairwise_cosine,
    per_dim_std,
    rankme,
    retrieval_accuracy,
    retrieval_chance,
    roc_auc,
    silhouette_score,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blobs(
    n: int, k: int, d: int, spread: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    centers = torch.randn(k, d, generator=g) * spread
    y = torch.randint(0, k, (n,), generator=g)
    return centers[y] + torch.randn(n, d, generator=g), y


# --------------------------------------------------------------------------- classification


def test_confusion_matrix_hand_case() -> None:
    preds = torch.tensor([0, 1, 1, 2, 0])
    targets = torch.tensor([0, 1, 2, 2, 1])
    cm = confusion_matrix(preds, targets, 3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_sklearn(seed: int) -> None:
    g = _gen(seed)
    k = 7
    targets = torch.randint(0, k, (500,), generator=g)
    preds = torch.randint(0, k, (500,), generator=g)
    cm = confusion_matrix(preds, targets, k)
    expected = sk_confusion_matrix(targets.numpy(), preds.numpy(), labels=list(range(k)))
    np.testing.assert_array_equal(cm.numpy(), expected)


def test_confusion_matrix_drops_out_of_range_labels() -> None:
    preds = torch.tensor([0, 1, 5, -1])
    targets = torch.tensor([0, 1, 1, 0])
    assert confusion_matrix(preds, targets, 2).tolist() == [[1, 0], [0, 1]]


def test_confusion_matrix_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        confusion_matrix(torch.zeros(3, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)
    with pytest.raises(ValueError):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.zeros(4, dtype=torch.long), 2)


def test_accuracy_matches_sklearn_and_returns_0d() -> None:
    g = _gen(3)
    targets = torch.randint(0, 4, (333,), generator=g)
    preds = torch.randint(0, 4, (333,), generator=g)
    acc = accuracy(preds, targets)
    assert acc.dim() == 0 and acc.device == preds.device
    assert float(acc) == pytest.approx(accuracy_score(targets.numpy(), preds.numpy()))


def test_accuracy_empty_is_zero() -> None:
    empty = torch.empty(0, dtype=torch.long)
    assert float(accuracy(empty, empty)) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_matches_sklearn_on_random_data(seed: int) -> None:
    g = _gen(seed)
    k = 6
    targets = torch.randint(0, k, (200,), generator=g)
    # Make predictions correlated with targets, then corrupt some.
    preds = torch.where(
        torch.rand(200, generator=g) < 0.6, targets, torch.randint(0, k, (200,), generator=g)
    )
    expected = f1_score(targets.numpy(), preds.numpy(), average="macro", zero_division=0)
    out = macro_f1(preds, targets, k)
    assert out.dim() == 0
    assert float(out) == pytest.approx(expected, abs=1e-6)


def test_macro_f1_absent_class_excluded_like_sklearn() -> None:
    # Class 3 never appears (neither true nor predicted): it must not drag the average down.
    # Class 2 is only predicted (never true): it counts with F1 = 0, as in scikit-learn.
    targets = torch.tensor([0, 0, 1, 1, 1, 0])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    expected = f1_score(targets.numpy(), preds.numpy(), average="macro", zero_division=0)
    # Hand computation: F1_0 = 2*2/(4+0+1) = 0.8, F1_1 = 2*2/(4+1+1) = 2/3, F1_2 = 0.
    assert expected == pytest.approx((0.8 + 2 / 3 + 0.0) / 3)
    assert float(macro_f1(preds, targets, 4)) == pytest.approx(expected, abs=1e-6)


def test_macro_f1_perfect_and_empty() -> None:
    y = torch.tensor([2, 0, 2, 1])
    assert float(macro_f1(y, y, 5)) == pytest.approx(1.0)
    empty = torch.empty(0, dtype=torch.long)
    assert float(macro_f1(empty, empty, 3)) == 0.0


def test_f1_from_confusion_hand_case() -> None:
    cm = torch.tensor([[3, 1], [0, 0]])
    # Class 0: TP=3, FN=1, FP=0 -> 6/7. Class 1: TP=0, FP=1 -> 0.
    assert float(f1_from_confusion(cm)) == pytest.approx((6 / 7 + 0.0) / 2)
    with pytest.raises(ValueError):
        f1_from_confusion(torch.zeros(2, 3))


# --------------------------------------------------------------------------- retrieval


def test_retrieval_accuracy_identity_is_one() -> None:
    z = torch.randn(64, 16, generator=_gen(0))
    out = retrieval_accuracy(z, z * 3.0)
    assert out.dim() == 0
    assert float(out) == 1.0


def test_retrieval_accuracy_hand_case() -> None:
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # Row 0 -> nearest is z2[0]; row 1 -> z2[0] (miss); row 2 -> z2[2].
    z2 = torch.tensor([[1.0, 0.1], [-1.0, 0.0], [1.0, 1.0]])
    assert float(retrieval_accuracy(z1, z2)) == pytest.approx(2 / 3)


def test_retrieval_accuracy_chunked_matches_reference() -> None:
    g = _gen(1)
    z1 = torch.randn(100, 8, generator=g)
    z2 = z1 + 1.5 * torch.randn(100, 8, generator=g)
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    expected = (sim.argmax(1) == torch.arange(100)).float().mean()
    for chunk in (1, 7, 100, None):
        assert float(retrieval_accuracy(z1, z2, chunk_size=chunk)) == pytest.approx(float(expected))


def test_retrieval_accuracy_random_near_chance() -> None:
    g = _gen(2)
    n = 512
    z1, z2 = torch.randn(n, 32, generator=g), torch.randn(n, 32, generator=g)
    assert float(retrieval_accuracy(z1, z2)) < 10 * retrieval_chance(n)


def test_retrieval_chance() -> None:
    assert retrieval_chance(256) == pytest.approx(1 / 256)
    assert retrieval_chance(0) == 0.0
    assert float(retrieval_accuracy(torch.empty(0, 4), torch.empty(0, 4))) == 0.0


# --------------------------------------------------------------------------- embedding stats


def test_mean_pairwise_cosine_matches_brute_force() -> None:
    z = torch.randn(50, 12, generator=_gen(0)) + 0.5
    zn = F.normalize(z, dim=1)
    sim = zn @ zn.T
    expected = (sim.sum() - sim.diagonal().sum()) / (50 * 49)
    assert float(mean_pairwise_cosine(z)) == pytest.approx(float(expected), abs=1e-5)


def test_mean_pairwise_cosine_edge_cases() -> None:
    assert float(mean_pairwise_cosine(torch.randn(1, 8))) == 0.0
    assert float(mean_pairwise_cosine(torch.empty(0, 8))) == 0.0
    same = torch.tensor([0.3, -1.0, 2.0]).repeat(10, 1)
    assert float(mean_pairwise_cosine(same)) == pytest.approx(1.0, abs=1e-5)
    opposite = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert float(mean_pairwise_cosine(opposite)) == pytest.approx(-1.0)


def test_roc_auc_by_hand() -> None:
    # positives score 0.9 and 0.4, negatives 0.4 and 0.1: pairs won 1 + 1 + 1, tied 1 -> 3.5/4
    p1 = torch.tensor([0.9, 0.4, 0.4, 0.1])
    probs = torch.stack([1 - p1, p1], dim=1)
    assert float(roc_auc(probs, torch.tensor([1, 1, 0, 0]), 2)) == pytest.approx(0.875)
    assert math.isnan(float(roc_auc(probs, torch.zeros(4, dtype=torch.long), 2)))


def test_binary_roc_auc_keeps_the_order_of_confident_predictions() -> None:
    """softmax rounds p0 to 1.0 past a margin of ~17; the log-probability margin does not."""
    from sklearn.metrics import roc_auc_score

    g = _gen(1)
    y = torch.randint(0, 2, (400,), generator=g)
    margin = torch.randn(400, generator=g) * 10 + 12.5 * (2 * y - 1).float()
    logits = torch.stack([torch.zeros(400), margin], dim=1)
    exact = roc_auc_score(y.numpy(), margin.double().numpy())
    assert float(roc_auc(logits.log_softmax(dim=1), y, 2)) == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_roc_auc_matches_sklearn_with_ties_and_an_absent_class(n_classes: int) -> None:
    from sklearn.metrics import roc_auc_score

    g = _gen(n_classes)
    y = torch.randint(0, n_classes, (300,), generator=g)
    logits = torch.randn(300, n_classes, generator=g) + 1.5 * F.one_hot(y, n_classes)
    probs = (torch.round(logits * 2) / 2).softmax(dim=1)  # rounded: many tied scores
    if n_classes == 2:
        expected = roc_auc_score(y.numpy(), probs[:, 1].numpy())
    else:
        expected = roc_auc_score(y.numpy(), probs.double().numpy(), multi_class="ovr")
    assert float(roc_auc(probs, y, n_classes)) == pytest.approx(expected, abs=1e-6)
    if n_classes > 2:  # a class absent from the targets is left out, not scored 0
        keep = y != 0
        per_class = [
            roc_auc_score((y[keep] == k).numpy(), probs[keep][:, k].numpy())
            for k in range(1, n_classes)
        ]
        assert float(roc_auc(probs[keep], y[keep], n_classes)) == pytest.approx(
            float(np.mean(per_class)), abs=1e-6
        )


def test_rankme_by_hand_and_against_numpy() -> None:
    # singular values 3 and 1: p = (0.75, 0.25), exp(entropy) = 1.75477 (hand-computed)
    z = torch.zeros(5, 3)
    z[0, 0], z[1, 1] = 3.0, 1.0
    assert float(rankme(z)) == pytest.approx(1.7547653, abs=1e-5)
    assert float(rankme(torch.eye(8))) == pytest.approx(8.0, abs=1e-4)  # all equal: full rank
    assert float(rankme(torch.ones(10, 4))) == pytest.approx(1.0, abs=1e-4)  # collapsed
    assert float(rankme(torch.zeros(4, 3))) == 1.0
    assert float(rankme(torch.zeros(0, 3))) == 0.0
    x = torch.randn(64, 16, generator=_gen(3))
    s = np.linalg.svd(x.double().numpy(), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert float(rankme(x)) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-5)


def test_per_dim_std_healthy_and_collapsed() -> None:
    d = 64
    healthy = per_dim_std(torch.randn(4096, d, generator=_gen(0)))
    assert healthy.dim() == 0
    assert float(healthy) == pytest.approx(1 / math.sqrt(d), rel=0.05)
    same = torch.randn(1, d, generator=_gen(1)).repeat(100, 1)
    assert float(per_dim_std(same)) == pytest.approx(0.0, abs=1e-6)
    assert float(per_dim_std(torch.randn(1, d))) == 0.0
    assert float(per_dim_std(torch.empty(0, d))) == 0.0


def test_mean_cosine_similarity() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    expected = (1.0 - 1.0 + 1 / math.sqrt(2)) / 3
    assert float(mean_cosine_similarity(a, b)) == pytest.approx(expected, abs=1e-6)
    assert float(mean_cosine_similarity(torch.empty(0, 3), torch.empty(0, 3))) == 0.0
    with pytest.raises(ValueError):
        mean_cosine_similarity(torch.zeros(2, 3), torch.zeros(3, 3))


def test_metrics_detach_inputs() -> None:
    z = torch.randn(20, 4, requires_grad=True)
    for fn in (mean_pairwise_cosine, per_dim_std):
        assert not fn(z).requires_grad
    assert not retrieval_accuracy(z, z).requires_grad
    assert not mean_cosine_similarity(z, z + 1).requires_grad


# --------------------------------------------------------------------------- k-NN


def _knn_reference(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    query_z: torch.Tensor,
    n_classes: int,
    k: int,
    t: float,
) -> torch.Tensor:
    """Per-query loop, straight from the InstDisc description."""
    ref = F.normalize(train_z.double(), dim=1)
    out = []
    for q in F.normalize(query_z.double(), dim=1):
        sim = ref @ q
        top, idx = sim.topk(min(k, len(ref)))
        votes = torch.zeros(n_classes, dtype=torch.float64)
        for s, i in zip(top.tolist(), idx.tolist(), strict=True):
            votes[train_y[i]] += math.exp(s / t)
        out.append(int(votes.argmax()))
    return torch.tensor(out)


def test_knn_classify_matches_reference_and_chunking() -> None:
    train_z, train_y = _blobs(300, 4, 8, spread=1.0, seed=0)
    query_z, _ = _blobs(120, 4, 8, spread=1.0, seed=1)
    expected = _knn_reference(train_z, train_y, query_z, 4, k=10, t=0.1)
    for chunk in (1, 17, None):
        preds = knn_classify(train_z, train_y, query_z, 4, k=10, temperature=0.1, chunk_size=chunk)
        assert preds.dtype == torch.int64 and preds.shape == (120,)
        assert torch.equal(preds, expected)


def test_knn_hand_case_weighted_vote() -> None:
    # Two very close neighbours of class 1 outweigh three farther ones of class 0 at low T.
    train_z = torch.tensor([[1.0, 0.0], [1.0, 0.05], [0.5, 1.0], [0.4, 1.0], [0.3, 1.0]])
    train_y = torch.tensor([1, 1, 0, 0, 0])
    query = torch.tensor([[1.0, 0.02]])
    assert knn_classify(train_z, train_y, query, 2, k=5, temperature=0.05).tolist() == [1]
    # With a huge temperature the vote is (nearly) unweighted: majority class 0 wins.
    assert knn_classify(train_z, train_y, query, 2, k=5, temperature=1e4).tolist() == [0]


def test_knn_k_larger_than_train_is_clipped_and_small_t_is_stable() -> None:
    train_z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    train_y = torch.tensor([0, 1])
    query = torch.tensor([[0.9, 0.1], [0.1, 0.9]])
    preds = knn_classify(train_z, train_y, query, 2, k=50, temperature=1e-3)
    assert preds.tolist() == [0, 1]
    assert knn_classify(train_z, train_y, torch.empty(0, 2), 2).shape == (0,)
    with pytest.raises(ValueError):
        knn_classify(torch.empty(0, 2), torch.empty(0, dtype=torch.long), query, 2)
    with pytest.raises(ValueError):
        knn_classify(train_z, train_y, query, 2, k=0)


def test_knn_scores_on_blobs() -> None:
    train_z, train_y = _blobs(600, 5, 16, spread=3.0, seed=0)
    val_z, val_y = _blobs(200, 5, 16, spread=3.0, seed=0)  # same centres (same seed)
    scores = knn_scores(train_z, train_y, val_z, val_y, 5)
    assert set(scores) == {"accuracy", "macro_f1"}
    assert all(v.dim() == 0 for v in scores.values())
    assert float(scores["accuracy"]) > 0.95
    assert float(scores["macro_f1"]) > 0.95


# --------------------------------------------------------------------------- linear probe


def test_linear_probe_separable_blobs() -> None:
    train_z, train_y = _blobs(1000, 4, 16, spread=4.0, seed=0)
    val_z, val_y = _blobs(400, 4, 16, spread=4.0, seed=0)
    out = linear_probe(train_z, train_y, val_z, val_y, 4)
    assert set(out) == {"accuracy", "macro_f1"}
    assert out["accuracy"].dim() == 0
    assert float(out["accuracy"]) > 0.98
    assert float(out["macro_f1"]) > 0.98


def test_linear_probe_random_labels_near_chance() -> None:
    g = _gen(5)
    k = 4
    train_z, val_z = torch.randn(2000, 32, generator=g), torch.randn(1000, 32, generator=g)
    train_y = torch.randint(0, k, (2000,), generator=g)
    val_y = torch.randint(0, k, (1000,), generator=g)
    out = linear_probe(train_z, train_y, val_z, val_y, k)
    assert abs(float(out["accuracy"]) - 1 / k) < 0.08


def test_linear_probe_agrees_with_sklearn_and_is_deterministic() -> None:
    n, k, wd = 2000, 5, 1e-4
    train_z, train_y = _blobs(n, k, 32, spread=0.4, seed=7)
    val_z, val_y = _blobs(1000, k, 32, spread=0.4, seed=7)
    out = linear_probe(train_z, train_y, val_z, val_y, k, weight_decay=wd, seed=3)
    again = linear_probe(train_z, train_y, val_z, val_y, k, weight_decay=wd, seed=3)
    assert float(out["accuracy"]) == float(again["accuracy"])

    scaler = StandardScaler().fit(train_z.numpy())
    clf = LogisticRegression(C=1.0 / (wd * n), max_iter=2000)
    clf.fit(scaler.transform(train_z.numpy()), train_y.numpy())
    sk_acc = clf.score(scaler.transform(val_z.numpy()), val_y.numpy())
    assert 0.3 < sk_acc < 0.95  # a non-trivial problem
    assert float(out["accuracy"]) == pytest.approx(sk_acc, abs=0.05)


def test_linear_probe_ignores_autograd_state_and_is_fast() -> None:
    train_z, train_y = _blobs(7000, 6, 64, spread=0.5, seed=1)
    val_z, val_y = _blobs(1000, 6, 64, spread=0.5, seed=1)
    train_z.requires_grad_(True)
    # One intra-op thread: on a shared, oversubscribed CI box OpenMP spinning makes
    # multi-threaded wall times meaningless; single-threaded is the honest upper bound.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():  # the probe must still train inside an eval no_grad block
            linear_probe(train_z, train_y, val_z, val_y, 6, epochs=2)  # warm-up
            timings = []
            for _ in range(2):
                start = time.perf_counter()
                out = linear_probe(train_z, train_y, val_z, val_y, 6)
                timings.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    assert train_z.grad is None
    assert float(out["accuracy"]) > 0.5
    assert min(timings) < 1.0


# --------------------------------------------------------------------------- silhouette


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("chunk", [None, 13])
def test_silhouette_cosine_matches_sklearn(seed: int, chunk: int | None) -> None:
    z, y = _blobs(300, 4, 10, spread=1.0, seed=seed)
    expected = sk_silhouette_score(z.numpy(), y.numpy(), metric="cosine")
    out = silhouette_score(z, y, chunk_size=chunk)
    assert out.dim() == 0
    assert float(out) == pytest.approx(expected, abs=1e-4)
    out_k = silhouette_score(z, y, n_classes=4, chunk_size=chunk)
    assert float(out_k) == pytest.approx(expected, abs=1e-4)


def test_silhouette_euclidean_singletons_and_sparse_labels() -> None:
    z, y = _blobs(120, 3, 5, spread=2.0, seed=4)
    z = z.double()
    y = y * 10 - 5  # non-contiguous, negative labels
    y[0] = 99  # a singleton cluster (silhouette 0 for that sample)
    expected = sk_silhouette_score(z.numpy(), y.numpy(), metric="euclidean")
    assert float(silhouette_score(z, y, metric="euclidean")) == pytest.approx(expected, abs=1e-6)
    expected_cos = sk_silhouette_score(z.numpy(), y.numpy(), metric="cosine")
    assert float(silhouette_score(z, y)) == pytest.approx(expected_cos, abs=1e-6)


def test_silhouette_with_absent_class_index() -> None:
    z, y = _blobs(150, 3, 6, spread=1.5, seed=2)
    y = torch.where(y == 1, torch.full_like(y, 4), y)  # labels {0, 2, 4}; 1 and 3 absent
    expected = sk_silhouette_score(z.numpy(), y.numpy(), metric="cosine")
    assert float(silhouette_score(z, y, n_classes=5)) == pytest.approx(expected, abs=1e-4)


def test_silhouette_fewer_than_two_labels_is_zero() -> None:
    z = torch.randn(20, 4)
    assert float(silhouette_score(z, torch.zeros(20, dtype=torch.long))) == 0.0
    assert float(silhouette_score(z, torch.full((20,), 2), n_classes=3)) == 0.0
    assert float(silhouette_score(z[:1], torch.zeros(1, dtype=torch.long))) == 0.0


def test_silhouette_identical_points_is_zero_not_nan() -> None:
    z = torch.ones(6, 3)
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    out = silhouette_score(z, y)
    assert not torch.isnan(out)
    assert float(out) == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- EpochMeter


def test_epoch_meter_weighted_means() -> None:
    meter = EpochMeter()
    meter.update("loss", torch.tensor(2.0), n=3)
    meter.update("loss", torch.tensor(1.0), n=1)
    meter.update("acc", torch.tensor([0.5]), n=4)
    assert "loss" in meter and len(meter) == 2
    out = meter.compute()
    assert out == {"loss": pytest.approx(7 / 4), "acc": pytest.approx(0.5)}
    assert all(isinstance(v, float) for v in out.values())
    meter.reset()
    assert meter.compute() == {}


def test_epoch_meter_single_host_transfer(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"tolist": 0, "item": 0}
    orig_tolist, orig_item = torch.Tensor.tolist, torch.Tensor.item

    def counting_tolist(self: torch.Tensor) -> object:
        calls["tolist"] += 1
        return orig_tolist(self)

    def counting_item(self: torch.Tensor) -> object:
        calls["item"] += 1
        return orig_item(self)

    meter = EpochMeter()
    z = torch.randn(32, 8)
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    for _ in range(5):
        meter.update("pairwise_cos", mean_pairwise_cosine(z), n=32)
        meter.update("std", per_dim_std(z), n=32)
        meter.update("retrieval", retrieval_accuracy(z, z), n=32)
    assert calls == {"tolist": 0, "item": 0}
    out = meter.compute()
    assert calls == {"tolist": 1, "item": 0}
    assert out["retrieval"] == pytest.approx(1.0)


def test_epoch_meter_detaches_and_validates() -> None:
    meter = EpochMeter()
    x = torch.tensor(3.0, requires_grad=True)
    meter.update("x", x * 2)
    assert meter.compute()["x"] == pytest.approx(6.0)
    meter.update("empty", torch.tensor(1.0), n=0)
    assert math.isnan(meter.compute()["empty"])
    with pytest.raises(ValueError):
        meter.update("bad", torch.zeros(2))
    with pytest.raises(ValueError):
        meter.update("bad", torch.tensor(1.0), n=-1)


# --------------------------------------------------------------------------- device / syncs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_hot_path_is_sync_free_and_stays_on_device() -> None:
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    z1 = torch.randn(256, 32, device=dev, generator=g)
    z2 = z1 + 0.1 * torch.randn(256, 32, device=dev, generator=g)
    y = torch.randint(0, 5, (256,), device=dev, generator=g)
    preds = torch.randint(0, 5, (256,), device=dev, generator=g)
    meter = EpochMeter()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        outs = {
            "acc": accuracy(preds, y),
            "f1": macro_f1(preds, y, 5),
            "retrieval": retrieval_accuracy(z1, z2),
            "pairwise": mean_pairwise_cosine(z1),
            "std": per_dim_std(z1),
            "cos": mean_cosine_similarity(z1, z2),
            "sil": silhouette_score(z1, y, n_classes=5),
            **{f"knn_{k}": v for k, v in knn_scores(z1, y, z2, y, 5).items()},
        }
        for name, value in outs.items():
            meter.update(name, value, n=256)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(v.device.type == "cuda" and v.dim() == 0 for v in outs.values())
    assert confusion_matrix(preds, y, 5).device.type == "cuda"
    assert set(meter.compute()) == set(outs)
