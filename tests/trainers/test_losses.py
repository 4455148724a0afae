"""Losses checked against hand-worked numbers and plain per-anchor loop references."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from trainers.losses import (
    CONTRASTIVE_LOSSES,
    LOSSES,
    BarlowTwinsLoss,
    BatchHardTripletLoss,
    ContrastiveLoss,
    CosineLoss,
    CosineMSELoss,
    MSELoss,
    NTXentLoss,
    SupConLoss,
    VICRegLoss,
    build_contrastive_loss,
    nt_xent_chance_level,
)


def _randn(*shape: int, seed: int = 0) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------
# Plain references: one anchor at a time, float64, written straight from the papers.
# --------------------------------------------------------------------------------------


def _cos(a: Tensor, b: Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def ref_nt_xent(z1: Tensor, z2: Tensor, t: float, beta: float = 0.0) -> float:
    z = torch.cat([z1, z2]).double()
    m, n = z.shape[0], z1.shape[0]
    total = 0.0
    for i in range(m):
        j = (i + n) % m  # the other view
        negs = [k for k in range(m) if k not in (i, j)]
        s_neg = [_cos(z[i], z[k]) for k in negs]
        if negs:
            raw = [math.exp(beta * s) for s in s_neg]
            mean_raw = sum(raw) / len(raw)
            w = [r / mean_raw for r in raw]
        else:
            w = []
        pos = math.exp(_cos(z[i], z[j]) / t)
        denom = pos + sum(wk * math.exp(s / t) for wk, s in zip(w, s_neg, strict=True))
        total += -math.log(pos / denom)
    return total / m


def ref_supcon(views: list[Tensor], labels: Tensor, t: float) -> float | None:
    z = torch.cat(views).double()
    lab = labels.repeat(len(views)).tolist()
    m = z.shape[0]
    losses = []
    for i in range(m):
        others = [a for a in range(m) if a != i]
        positives = [p for p in others if lab[p] == lab[i]]
        if not positives:
            continue  # anchor skipped
        denom = sum(math.exp(_cos(z[i], z[a]) / t) for a in others)
        li = -sum(math.log(math.exp(_cos(z[i], z[p]) / t) / denom) for p in positives)
        losses.append(li / len(positives))
    return sum(losses) / len(losses) if losses else None


def ref_triplet(e: Tensor, labels: Tensor, margin: float) -> float | None:
    e = F.normalize(e.double(), dim=1)
    lab = labels.tolist()
    losses = []
    for i in range(e.shape[0]):
        dp = [float((e[i] - e[p]).norm()) for p in range(len(lab)) if p != i and lab[p] == lab[i]]
        dn = [float((e[i] - e[q]).norm()) for q in range(len(lab)) if lab[q] != lab[i]]
        if dp and dn:
            losses.append(max(0.0, max(dp) - min(dn) + margin))
    return sum(losses) / len(losses) if losses else None


def ref_vicreg(z1: Tensor, z2: Tensor, sw: float, vw: float, cw: float, eps: float) -> float:
    a, b = z1.double(), z2.double()
    n, d = a.shape
    inv = float(((a - b) ** 2).mean())

    def var_cov(z: Tensor) -> tuple[float, float]:
        zc = z - z.mean(0)
        v = sum(
            max(0.0, 1 - math.sqrt(float((zc[:, k] ** 2).sum()) / (n - 1) + eps)) for k in range(d)
        )
        c = 0.0
        for p in range(d):
            for q in range(d):
                if p != q:
                    c += (float((zc[:, p] * zc[:, q]).sum()) / (n - 1)) ** 2
        return v / d, c / d

    va, ca = var_cov(a)
    vb, cb = var_cov(b)
    return sw * inv + vw * (va + vb) / 2 + cw * (ca + cb)


# --------------------------------------------------------------------------------------
# NT-Xent
# --------------------------------------------------------------------------------------


def test_chance_level() -> None:
    assert nt_xent_chance_level(1) == 0.0
    assert nt_xent_chance_level(4) == pytest.approx(math.log(7))
    with pytest.raises(ValueError):
        nt_xent_chance_level(0)


@pytest.mark.parametrize("n", [1, 2, 4, 16])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_nt_xent_equal_similarities_is_ln_2n_minus_1(n: int, beta: float) -> None:
    # All 2N embeddings identical -> all logits equal -> uniform over 2N-1 candidates.
    z = torch.ones(n, 8)
    loss = NTXentLoss(temperature=0.07, hard_negative_weight=beta)(z, z.clone())
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(math.log(2 * n - 1), abs=1e-6)
    assert loss.item() == pytest.approx(nt_xent_chance_level(n), abs=1e-6)


def test_nt_xent_hand_example() -> None:
    # z1 = z2 = [e1, e2], t = 1. Anchor e1: positive e1 (cos 1), negatives e2, e2 (cos 0):
    # -log(e / (e + 2)) = log(1 + 2/e) = 0.5514447139...; every anchor is the same.
    z = torch.eye(2)
    loss = NTXentLoss(temperature=1.0)(z, z.clone())
    assert loss.item() == pytest.approx(0.5514447139320511, abs=1e-6)


@pytest.mark.parametrize("t", [0.07, 0.5, 1.0])
@pytest.mark.parametrize("n", [1, 3, 5])
def test_nt_xent_matches_loop_reference(t: float, n: int) -> None:
    z1, z2 = _randn(n, 6, seed=1), _randn(n, 6, seed=2)
    assert NTXentLoss(temperature=t)(z1, z2).item() == pytest.approx(
        ref_nt_xent(z1, z2, t), rel=1e-5
    )


@pytest.mark.parametrize("beta", [0.5, 2.0, 10.0])
@pytest.mark.parametrize("n", [2, 4])
def test_nt_xent_hard_negatives_match_loop_reference(beta: float, n: int) -> None:
    z1, z2 = _randn(n, 5, seed=3), _randn(n, 5, seed=4)
    loss = NTXentLoss(temperature=0.2, hard_negative_weight=beta)(z1, z2)
    assert loss.item() == pytest.approx(ref_nt_xent(z1, z2, 0.2, beta), rel=1e-5)


def test_nt_xent_beta_zero_is_exactly_plain() -> None:
    z1, z2 = _randn(6, 4, seed=5), _randn(6, 4, seed=6)
    plain = NTXentLoss(temperature=0.1)(z1, z2)
    hn0 = NTXentLoss(temperature=0.1, hard_negative_weight=0.0)(z1, z2)
    assert torch.equal(plain, hn0)
    # and the reweighting path is continuous at beta -> 0
    tiny = NTXentLoss(temperature=0.1, hard_negative_weight=1e-6)(z1, z2)
    assert tiny.item() == pytest.approx(plain.item(), rel=1e-5)


def test_nt_xent_hard_negatives_raise_loss_when_negatives_are_close() -> None:
    # Up-weighting the closest negatives can only increase the denominator's hard part.
    z1, z2 = _randn(8, 4, seed=7), _randn(8, 4, seed=8)
    plain = NTXentLoss(temperature=0.5)(z1, z2)
    hard = NTXentLoss(temperature=0.5, hard_negative_weight=5.0)(z1, z2)
    assert hard.item() > plain.item()


def test_nt_xent_ignores_labels_and_validates() -> None:
    z1, z2 = _randn(3, 4, seed=9), _randn(3, 4, seed=10)
    loss = NTXentLoss()
    assert torch.equal(loss(z1, z2), loss(z1, z2, labels=torch.tensor([0, 1, 2])))
    with pytest.raises(ValueError):
        loss(z1, z2[:2])
    with pytest.raises(ValueError):
        loss(z1[0], z2[0])
    with pytest.raises(ValueError):
        NTXentLoss(temperature=0.0)
    with pytest.raises(ValueError):
        NTXentLoss(hard_negative_weight=-1.0)


# --------------------------------------------------------------------------------------
# SupCon
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2], [0, 1, 0, 1, 0], [3, 3, 3, 3, 3]])
def test_supcon_matches_loop_reference(labels: list[int]) -> None:
    z1, z2 = _randn(5, 6, seed=11), _randn(5, 6, seed=12)
    lab = torch.tensor(labels)
    expected = ref_supcon([z1, z2], lab, 0.1)
    assert expected is not None
    assert SupConLoss(temperature=0.1)(z1, z2, lab).item() == pytest.approx(expected, rel=1e-5)


def test_supcon_unique_labels_two_views_is_nt_xent() -> None:
    # With all-unique labels the only positive of each anchor is its other view.
    z1, z2 = _randn(6, 4, seed=13), _randn(6, 4, seed=14)
    sup = SupConLoss(temperature=0.2)(z1, z2, torch.arange(6))
    assert sup.item() == pytest.approx(NTXentLoss(temperature=0.2)(z1, z2).item(), rel=1e-6)


def test_supcon_single_view_skips_anchors_without_positive() -> None:
    # Labels [0, 0, 1]: anchor 2 has no positive and is skipped (loop reference does too).
    z = _randn(3, 4, seed=15)
    lab = torch.tensor([0, 0, 1])
    expected = ref_supcon([z], lab, 0.5)
    assert expected is not None
    loss = SupConLoss(temperature=0.5)(z, None, lab)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_supcon_no_positives_anywhere_is_zero_with_grad() -> None:
    z = _randn(4, 3, seed=16).requires_grad_()
    loss = SupConLoss()(z, None, torch.arange(4))
    assert loss.item() == 0.0 and not torch.isnan(loss)
    loss.backward()
    assert z.grad is not None and torch.all(z.grad == 0)
    # single sample, single view: nothing to contrast at all
    one = _randn(1, 3).requires_grad_()
    out = SupConLoss()(one, None, torch.tensor([7]))
    out.backward()
    assert out.item() == 0.0 and one.grad is not None


def test_supcon_validates_labels() -> None:
    z = _randn(3, 4)
    with pytest.raises(ValueError):
        SupConLoss()(z, z, torch.tensor([0, 1]))


# --------------------------------------------------------------------------------------
# Batch-hard triplet
# --------------------------------------------------------------------------------------


def test_triplet_hand_examples() -> None:
    # Square on the unit circle, labels [0, 0, 1, 1]: a=(1,0), b=(0,1) | c=(-1,0), d=(0,-1).
    # Every anchor: hardest positive sqrt(2), hardest negative sqrt(2) -> relu(margin) = 0.3.
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    loss = BatchHardTripletLoss(margin=0.3)(e, torch.tensor([0, 0, 1, 1]))
    assert loss.item() == pytest.approx(0.3, abs=1e-6)
    # a = b = (1,0) label 0, c = (0,1) label 1 (no positive -> skipped), margin 2:
    # a and b: d_pos = 0, d_neg = sqrt(2) -> 2 - sqrt(2) = 0.585786...
    e = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0]])  # norms do not matter
    loss = BatchHardTripletLoss(margin=2.0)(e, torch.tensor([0, 0, 1]))
    assert loss.item() == pytest.approx(2 - math.sqrt(2), abs=1e-5)


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 2], [0, 0, 0, 1, 2, 3]])
def test_triplet_matches_loop_reference(labels: list[int]) -> None:
    e, lab = _randn(6, 5, seed=17), torch.tensor(labels)
    expected = ref_triplet(e, lab, 0.5)
    assert expected is not None
    assert BatchHardTripletLoss(margin=0.5)(e, lab).item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]])
def test_triplet_no_valid_anchor_is_zero_with_grad(labels: list[int]) -> None:
    e = _randn(4, 3, seed=18).requires_grad_()
    loss = BatchHardTripletLoss()(e, torch.tensor(labels))
    assert loss.item() == 0.0
    loss.backward()
    assert e.grad is not None and torch.all(e.grad == 0)


# --------------------------------------------------------------------------------------
# Barlow Twins
# --------------------------------------------------------------------------------------


def test_barlow_twins_hand_2x2() -> None:
    # z1 = [[1,2],[3,4]]: each column has mean +-1 deviations, biased var 1
    #   -> z1n = [[-1,-1],[1,1]] * s1, s1 = 1/sqrt(1 + 1e-5).
    # z2 = [[1,0],[0,1]]: deviations +-0.5, biased var 0.25
    #   -> z2n = [[1,-1],[-1,1]] * s2, s2 = 0.5/sqrt(0.25 + 1e-5).
    # c = z1n.T @ z2n / 2 = a * [[-1, 1], [-1, 1]] with a = s1 * s2 (~1).
    # loss = (1 - (-a))^2 + (1 - a)^2 + lambda * (a^2 + a^2)  (~ 4 + 2 * lambda)
    z1 = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    z2 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = (1 / math.sqrt(1 + 1e-5)) * (0.5 / math.sqrt(0.25 + 1e-5))
    lam = 5e-3
    expected = (1 + a) ** 2 + (1 - a) ** 2 + lam * 2 * a**2
    loss = BarlowTwinsLoss(lambda_offdiag=lam)(z1, z2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(4.01, abs=1e-3)


def test_barlow_twins_normalisation_is_batchnorm_without_affine() -> None:
    z1, z2 = _randn(16, 8, seed=19) * 3 + 1, _randn(16, 8, seed=20)
    bn = torch.nn.BatchNorm1d(8, affine=False, eps=1e-5).train()
    c = bn(z1).T @ bn(z2) / 16
    eye = torch.eye(8, dtype=torch.bool)
    expected = ((1 - c.diagonal()) ** 2).sum() + 0.01 * (c[~eye] ** 2).sum()
    loss = BarlowTwinsLoss(lambda_offdiag=0.01)(z1, z2)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_barlow_twins_perfect_views_are_zero() -> None:
    # Decorrelated, standardised, identical views: c = I -> loss 0 (up to the eps).
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert BarlowTwinsLoss()(z, z.clone()).item() == pytest.approx(0.0, abs=1e-4)


# --------------------------------------------------------------------------------------
# VICReg
# --------------------------------------------------------------------------------------


def test_vicreg_hand_example() -> None:
    # z1 = [[1,0],[-1,0]], z2 = [[1,1],[-1,-1]], N = 2 (unbiased denominator 1).
    # invariance: mean([[0,1],[0,1]]) = 0.5                          -> 25 * 0.5 = 12.5
    # variance z1: col0 var 2 -> hinge 0; col1 var 0 -> 1 - sqrt(1e-4) = 0.99; mean 0.495
    # variance z2: both var 2 -> 0; averaged over views: 0.2475       -> 25 * 0.2475 = 6.1875
    # covariance z1: [[2,0],[0,0]] -> 0; z2: [[2,2],[2,2]] -> (4+4)/2 = 4  -> 1 * 4 = 4
    z1 = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    z2 = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    assert VICRegLoss()(z1, z2).item() == pytest.approx(22.6875, rel=1e-6)


def test_vicreg_matches_loop_reference() -> None:
    z1, z2 = _randn(7, 4, seed=21) * 0.5, _randn(7, 4, seed=22) * 2
    loss = VICRegLoss(sim_weight=2.0, var_weight=3.0, cov_weight=0.5, eps=1e-4)(z1, z2)
    assert loss.item() == pytest.approx(ref_vicreg(z1, z2, 2.0, 3.0, 0.5, 1e-4), rel=1e-5)


def test_vicreg_batch_of_one_is_finite() -> None:
    z = _randn(1, 4).requires_grad_()
    loss = VICRegLoss()(z, z * 2)
    loss.backward()
    assert torch.isfinite(loss) and z.grad is not None and torch.isfinite(z.grad).all()


# --------------------------------------------------------------------------------------
# Cosine / MSE
# --------------------------------------------------------------------------------------


def test_cosine_mse_hand_example() -> None:
    # rows: cos([1,0],[0,1]) = 0, cos([1,1],[2,2]) = 1 -> cosine = mean(1, 0) = 0.5
    # squared errors: [1,1] and [1,1] -> mse = 1.0
    pred = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    target = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert CosineLoss()(pred, target).item() == pytest.approx(0.5)
    assert MSELoss()(pred, target).item() == pytest.approx(1.0)
    loss = CosineMSELoss(cosine_weight=2.0, mse_weight=0.5)(pred, target)
    assert loss.item() == pytest.approx(2.0 * 0.5 + 0.5 * 1.0)


# --------------------------------------------------------------------------------------
# Every loss: scalar fp32 output, finite gradients (also at collapse), bf16 autocast.
# --------------------------------------------------------------------------------------

LossFn = Callable[[Tensor, Tensor], Tensor]
LAB = torch.tensor([0, 1, 0, 1, 2, 2])

ALL_LOSSES: dict[str, LossFn] = {
    "infonce": lambda a, b: NTXentLoss()(a, b),
    "infonce_hard": lambda a, b: NTXentLoss(hard_negative_weight=1.0)(a, b),
    "supcon": lambda a, b: SupConLoss()(a, b, LAB),
    "triplet": lambda a, b: BatchHardTripletLoss()(torch.cat([a, b]), torch.cat([LAB, LAB])),
    "barlow_twins": lambda a, b: BarlowTwinsLoss()(a, b),
    "vicreg": lambda a, b: VICRegLoss()(a, b),
    "cosine": lambda a, b: CosineLoss()(a, b),
    "mse": lambda a, b: MSELoss()(a, b),
    "cosine_mse": lambda a, b: CosineMSELoss()(a, b),
}


def _inputs(kind: str) -> tuple[Tensor, Tensor]:
    if kind == "random":
        return _randn(6, 8, seed=23), _randn(6, 8, seed=24)
    if kind == "collapsed":  # every embedding the same vector, both views identical
        z = torch.ones(6, 8) * 0.3
        return z, z.clone()
    if kind == "same_views":  # z1 == z2, distinct rows
        z = _randn(6, 8, seed=25)
        return z, z.clone()
    assert kind == "zeros"
    return torch.zeros(6, 8), torch.zeros(6, 8)


@pytest.mark.parametrize("kind", ["random", "collapsed", "same_views", "zeros"])
@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_scalar_fp32_and_finite_gradients(name: str, kind: str) -> None:
    a, b = _inputs(kind)
    a.requires_grad_()
    b.requires_grad_()
    loss = ALL_LOSSES[name](a, b)
    assert loss.shape == () and loss.dtype == torch.float32
    assert torch.isfinite(loss)
    loss.backward()
    for g in (a.grad, b.grad):
        assert g is not None and g.shape == (6, 8) and torch.isfinite(g).all()


@pytest.mark.parametrize("name", list(ALL_LOSSES))
def test_bf16_autocast_computes_in_fp32(name: str) -> None:
    a, b = _randn(6, 8, seed=26), _randn(6, 8, seed=27)
    a16, b16 = a.bfloat16(), b.bfloat16()
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = ALL_LOSSES[name](a16, b16)
    assert out.dtype == torch.float32
    # Same bf16-rounded inputs computed outside autocast: identical fp32 math.
    ref = ALL_LOSSES[name](a16.float(), b16.float())
    assert out.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    # And close to the full-precision inputs (bf16 input rounding only).
    full = ALL_LOSSES[name](a, b)
    assert out.item() == pytest.approx(full.item(), rel=3e-2, abs=3e-2)


# --------------------------------------------------------------------------------------
# Builder / adapter
# --------------------------------------------------------------------------------------


def test_registry_covers_every_name() -> None:
    assert set(LOSSES) == set(CONTRASTIVE_LOSSES)
    for name in CONTRASTIVE_LOSSES:
        built = build_contrastive_loss(name)
        assert isinstance(built, ContrastiveLoss)
        assert isinstance(built.loss, LOSSES[name])
        assert built.needs_labels == (name in ("supcon", "triplet"))


def test_builder_routes_kwargs_only_to_users() -> None:
    every = {
        "temperature": 0.3,
        "hard_negative_weight": 0.7,
        "margin": 0.4,
        "barlow_lambda": 0.02,
        "vicreg_sim_weight": 1.0,
        "vicreg_var_weight": 2.0,
        "vicreg_cov_weight": 3.0,
        "cosine_weight": 0.1,
        "mse_weight": 0.9,
    }
    nt = build_contrastive_loss("infonce", **every).loss
    assert isinstance(nt, NTXentLoss)
    assert (nt.temperature, nt.hard_negative_weight) == (0.3, 0.7)
    sc = build_contrastive_loss("supcon", **every).loss
    assert isinstance(sc, SupConLoss) and sc.temperature == 0.3
    tr = build_contrastive_loss("triplet", **every).loss
    assert isinstance(tr, BatchHardTripletLoss) and tr.margin == 0.4
    bt = build_contrastive_loss("barlow_twins", **every).loss
    assert isinstance(bt, BarlowTwinsLoss) and bt.lambda_offdiag == 0.02
    vr = build_contrastive_loss("vicreg", **every).loss
    assert isinstance(vr, VICRegLoss)
    assert (vr.sim_weight, vr.var_weight, vr.cov_weight) == (1.0, 2.0, 3.0)
    cm = build_contrastive_loss("cosine_mse", **every).loss
    assert isinstance(cm, CosineMSELoss) and (cm.cosine_weight, cm.mse_weight) == (0.1, 0.9)


def test_builder_errors() -> None:
    with pytest.raises(TypeError, match="lr") as info:
        build_contrastive_loss("infonce", temperature=0.1, lr=1e-3, tau=2)
    assert "tau" in str(info.value)
    with pytest.raises(ValueError, match="simclr"):
        build_contrastive_loss("simclr")
    z = _randn(4, 3)
    for name in ("supcon", "triplet"):
        with pytest.raises(ValueError, match=f"loss '{name}' needs labels"):
            build_contrastive_loss(name)(z, z)


def test_adapter_dispatch_matches_direct_calls() -> None:
    z1, z2 = _randn(4, 5, seed=28), _randn(4, 5, seed=29)
    lab = torch.tensor([0, 0, 1, 1])
    cases: dict[str, Tensor] = {
        "infonce": NTXentLoss(temperature=0.2)(z1, z2),
        "supcon": SupConLoss(temperature=0.2)(z1, z2, lab),
        "triplet": BatchHardTripletLoss()(torch.cat([z1, z2]), torch.cat([lab, lab])),
        "barlow_twins": BarlowTwinsLoss()(z1, z2),
        "vicreg": VICRegLoss()(z1, z2),
        "cosine": CosineLoss()(z1, z2),
        "mse": MSELoss()(z1, z2),
        "cosine_mse": CosineMSELoss()(z1, z2),
    }
    for name, expected in cases.items():
        got = build_contrastive_loss(name, temperature=0.2)(z1, z2, lab)
        assert torch.equal(got, expected), name
        if name not in ("supcon", "triplet"):  # labels are optional there
            assert torch.equal(build_contrastive_loss(name, temperature=0.2)(z1, z2), expected)


# --------------------------------------------------------------------------------------
# No host syncs: a loss that waits for the GPU every step stalls the training loop.
# --------------------------------------------------------------------------------------


class _HostSyncs(TorchDispatchMode):
    """Counts the ops that make the host wait for a CUDA device: a data-dependent size
    (``nonzero``, boolean-mask indexing, ``masked_select``) or a value read back
    (``.item()``, ``bool(tensor)``). They run on the CPU too, where they can be counted."""

    SYNCS = frozenset(
        {
            "aten.nonzero.default",
            "aten._local_scalar_dense.default",
            "aten.is_nonzero.default",
            "aten.masked_select.default",
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        name = str(func)
        if name in self.SYNCS:
            self.seen.append(name)
        elif name.startswith("aten.index") and any(
            i is not None and i.dtype == torch.bool for i in args[1]
        ):
            self.seen.append(f"{name} (boolean mask)")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("infonce", {}),
        ("infonce", {"hard_negative_weight": 1.0}),
        ("supcon", {}),
        ("triplet", {}),
        ("barlow_twins", {}),
        ("vicreg", {}),
    ],
    ids=lambda v: v if isinstance(v, str) else ",".join(v) or "-",
)
def test_a_loss_step_never_waits_for_the_device(name: str, kwargs: dict[str, float]) -> None:
    z1 = _randn(16, 8, seed=1).requires_grad_()
    z2 = _randn(16, 8, seed=2).requires_grad_()
    labels = torch.arange(16) % 4
    loss = build_contrastive_loss(name, **kwargs)
    with _HostSyncs() as syncs:
        loss(z1, z2, labels).backward()
    assert syncs.seen == []


def test_masked_means_with_no_valid_entry_are_zero_and_attached() -> None:
    z = _randn(3, 4).requires_grad_()
    supcon = SupConLoss()(z, None, torch.tensor([0, 1, 2]))  # every label once: no positive
    triplet = BatchHardTripletLoss()(z, torch.tensor([5, 5, 5]))  # no negative anywhere
    for value in (supcon, triplet):
        assert value.item() == 0.0 and value.requires_grad
        (grad,) = torch.autograd.grad(value, z)
        assert torch.equal(grad, torch.zeros_like(z))
