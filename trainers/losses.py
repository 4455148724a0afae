"""Contrastive and self-supervised losses for time-series encoders.

One ``nn.Module`` per loss, in the style of lightly's ``lightly.loss``. Every loss
casts its inputs to fp32 and runs with autocast disabled: similarity logits divided
by a small temperature, standard deviations and cross-correlations are exactly the
quantities that go wrong in bf16/fp16, and the loss is cheap next to the encoder.

The training loop goes through :func:`build_contrastive_loss`, which returns a
:class:`ContrastiveLoss` with one signature for every loss,
``loss(z1, z2, labels=None) -> scalar``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "CONTRASTIVE_LOSSES",
    "LOSSES",
    "BarlowTwinsLoss",
    "BatchHardTripletLoss",
    "ContrastiveLoss",
    "CosineLoss",
    "CosineMSELoss",
    "MSELoss",
    "NTXentLoss",
    "SupConLoss",
    "VICRegLoss",
    "build_contrastive_loss",
    "nt_xent_chance_level",
]


def _check_pair(z1: Tensor, z2: Tensor) -> None:
    """Both views must be ``(N, D)`` with the same shape and ``N >= 1``."""
    if z1.dim() != 2 or z2.dim() != 2:
        raise ValueError(
            f"expected 2-D (N, D) embeddings, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape != z2.shape:
        raise ValueError(
            f"views must have the same shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    if z1.shape[0] < 1:
        raise ValueError("empty batch")


def _check_labels(labels: Tensor, n: int) -> None:
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must have shape ({n},), got {tuple(labels.shape)}")


def _off_diagonal(m: Tensor) -> Tensor:
    """``(M, M) -> (M, M-1)``: every row without its diagonal entry.

    Selected by a strided view rather than by filling the diagonal with a large
    negative constant, so self-similarity is removed exactly in any dtype; and not by a
    boolean mask, whose result size the host must wait for (a GPU sync every step).
    In the flat matrix the diagonal entries are ``M + 1`` apart, so rows of ``M + 1``
    starting at each diagonal entry hold it first and then the ``M`` entries up to the
    next one.
    """
    size = m.shape[0]
    return m.flatten()[:-1].view(size - 1, size + 1)[:, 1:].reshape(size, size - 1)


def _masked_mean(values: Tensor, valid: Tensor) -> Tensor:
    """Mean of ``values`` where ``valid``, 0 (attached to the graph) where none is.

    ``values[valid].mean()`` needs the count of ``valid`` on the host (a GPU sync).
    """
    total = torch.where(valid, values, torch.zeros_like(values)).sum()
    return total / valid.sum().clamp_min(1)


def nt_xent_chance_level(n: int) -> float:
    """NT-Xent loss of a collapsed encoder on a batch of ``n`` pairs: ``ln(2n - 1)``.

    With all similarities equal the positive is one of ``2n - 1`` equally likely
    candidates; a run whose loss sits at this value has learned nothing.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    return math.log(2 * n - 1)


class NTXentLoss(nn.Module):
    """SimCLR NT-Xent (InfoNCE) over ``2N`` views, with optional hard-negative weighting.

    Each of the ``2N`` L2-normalised embeddings is an anchor; its positive is the other
    view of the same sample, its ``2N - 2`` negatives are all other embeddings. Logits
    are cosine similarities / ``temperature`` with self-similarity removed, so the
    loss is a ``(2N - 1)``-way cross-entropy and equals ``ln(2N - 1)`` when all
    similarities are equal (see :func:`nt_xent_chance_level`).

    ``hard_negative_weight`` (``beta >= 0``) applies Robinson et al. 2021, "Contrastive
    learning with hard negative samples": each negative's term is weighted by
    ``exp(beta * cos_sim)`` normalised to mean 1 over the anchor's negatives, which
    up-weights negatives that are close to the anchor. ``beta`` acts on the cosine
    similarity, not on the logit (the authors' code uses ``beta * sim / temperature``,
    i.e. their beta equals ours times ``temperature``). The weights are not detached,
    as in the reference code. ``beta = 0`` is exactly plain NT-Xent.

    Shapes:
        z1, z2: ``(N, D)`` embeddings of two views of the same N samples.
        labels: ignored; accepted so all losses can be called alike.
        output: scalar.
    """

    def __init__(self, temperature: float = 0.07, hard_negative_weight: float = 0.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if hard_negative_weight < 0:
            raise ValueError(f"hard_negative_weight must be >= 0, got {hard_negative_weight}")
        self.temperature = float(temperature)
        self.hard_negative_weight = float(hard_negative_weight)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, hard_negative_weight={self.hard_negative_weight}"

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        _check_pair(z1, z2)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            n = z1.shape[0]
            z = F.normalize(torch.cat([z1.float(), z2.float()], dim=0), dim=1)
            sim = _off_diagonal(z @ z.T)  # (2N, 2N-1) cosine similarities
            # The other view of anchor i sits at column i + N - 1 (i < N) or i - N
            # (i >= N) once the diagonal is gone.
            idx = torch.arange(n, device=z.device)
            pos_idx = torch.cat([idx + n - 1, idx])
            logits = sim / self.temperature
            if self.hard_negative_weight == 0.0 or n == 1:
                return F.cross_entropy(logits, pos_idx)

            # Each row's 2N - 2 negatives: its columns but the positive's, in order
            # (gathered, not masked: a boolean mask makes the host wait for the GPU).
            cols = torch.arange(2 * n - 2, device=z.device).expand(2 * n, -1)
            neg_cols = cols + (cols >= pos_idx.unsqueeze(1)).long()
            neg_sim = sim.gather(1, neg_cols)
            pos_logit = logits.gather(1, pos_idx.unsqueeze(1))
            # log of exp(beta * s) / mean(exp(beta * s)), computed in log space.
            scaled = self.hard_negative_weight * neg_sim
            log_w = scaled - torch.logsumexp(scaled, dim=1, keepdim=True) + math.log(2 * n - 2)
            all_logits = torch.cat([pos_logit, neg_sim / self.temperature + log_w], dim=1)
            return (torch.logsumexp(all_logits, dim=1) - pos_logit.squeeze(1)).mean()


class SupConLoss(nn.Module):
    """Supervised contrastive loss (Khosla et al. 2020, ``L_out``) over both views.

    Every embedding is an anchor; its positives are all other embeddings with the same
    label (including its own other view), the denominator runs over all other
    embeddings. The per-anchor loss is the mean negative log-probability of its
    positives. Anchors without a positive are skipped; if no anchor has one, the loss
    is 0 (still attached to the graph). With all-unique labels and two views this is
    exactly :class:`NTXentLoss`.

    Shapes:
        z1: ``(N, D)``; z2: ``(N, D)`` second view, or ``None`` for a single view
        (then N anchors, and a label seen once has no positive).
        labels: ``(N,)`` integer class labels.
        output: scalar.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"

    def forward(self, z1: Tensor, z2: Tensor | None, labels: Tensor) -> Tensor:
        if z2 is None:
            _check_pair(z1, z1)
        else:
            _check_pair(z1, z2)
        _check_labels(labels, z1.shape[0])
        with torch.autocast(device_type=z1.device.type, enabled=False):
            views = [z1.float()] if z2 is None else [z1.float(), z2.float()]
            z = torch.cat(views, dim=0)
            lab = labels.to(z.device).repeat(len(views))
            m = z.shape[0]
            zn = F.normalize(z, dim=1)
            logits = _off_diagonal(zn @ zn.T) / self.temperature  # (M, M-1)
            pos_mask = _off_diagonal(lab.unsqueeze(0) == lab.unsqueeze(1))
            num_pos = pos_mask.sum(dim=1)
            valid = num_pos > 0
            if m < 2:
                return z.sum() * 0.0
            log_prob = F.log_softmax(logits, dim=1)
            pos_log_prob = torch.where(pos_mask, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
            per_anchor = -pos_log_prob / num_pos.clamp_min(1)
            return _masked_mean(per_anchor, valid)


class BatchHardTripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017) on L2-normalised embeddings.

    For each anchor: hardest positive = farthest same-label embedding (not itself),
    hardest negative = closest different-label embedding; loss
    ``relu(d_pos - d_neg + margin)`` averaged over anchors that have both. Euclidean
    distances on the unit sphere, ``sqrt(max(2 - 2 cos, 1e-12))``: the clamp keeps
    the gradient finite when two embeddings coincide. If no anchor is valid the loss
    is 0 (still attached to the graph).

    Shapes:
        embeddings: ``(M, D)``; labels: ``(M,)``; output: scalar.
    """

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.margin = float(margin)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        _check_pair(embeddings, embeddings)
        _check_labels(labels, embeddings.shape[0])
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            e = embeddings.float()
            en = F.normalize(e, dim=1)
            dist = (2.0 - 2.0 * (en @ en.T)).clamp_min(1e-12).sqrt()
            lab = labels.to(e.device)
            same = lab.unsqueeze(0) == lab.unsqueeze(1)
            eye = torch.eye(e.shape[0], dtype=torch.bool, device=e.device)
            pos_mask = same & ~eye
            neg_mask = ~same
            valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
            # Fills outside the distances' range [0, 2]: an anchor with a positive and a
            # negative gets its hardest ones; one without drops out of the mean anyway.
            hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).amax(dim=1)
            hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, 4.0)).amin(dim=1)
            per_anchor = F.relu(hardest_pos - hardest_neg + self.margin)
            return _masked_mean(per_anchor, valid)


class BarlowTwinsLoss(nn.Module):
    """Barlow Twins (Zbontar et al. 2021): cross-correlation of the views towards identity.

    Each view is standardised along the batch without learnable parameters,
    ``(z - mean) / sqrt(var + 1e-5)`` with the biased (``/N``) variance, i.e. exactly
    ``nn.BatchNorm1d(D, affine=False)`` in training mode as in the reference code. The
    eps inside the square root keeps a constant feature (collapse, or ``N = 1``) at
    0 instead of NaN. Then ``c = z1n.T @ z2n / N`` and
    ``loss = sum((1 - diag(c))^2) + lambda_offdiag * sum(offdiag(c)^2)``.

    Shapes:
        z1, z2: ``(N, D)``; output: scalar (a sum over D, so it scales with D).
    """

    eps: float = 1e-5

    def __init__(self, lambda_offdiag: float = 5e-3) -> None:
        super().__init__()
        if lambda_offdiag < 0:
            raise ValueError(f"lambda_offdiag must be >= 0, got {lambda_offdiag}")
        self.lambda_offdiag = float(lambda_offdiag)

    def extra_repr(self) -> str:
        return f"lambda_offdiag={self.lambda_offdiag}"

    def _standardise(self, z: Tensor) -> Tensor:
        mean = z.mean(dim=0, keepdim=True)
        var = z.var(dim=0, unbiased=False, keepdim=True)
        return (z - mean) / torch.sqrt(var + self.eps)

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        _check_pair(z1, z2)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            n = z1.shape[0]
            c = self._standardise(z1.float()).T @ self._standardise(z2.float()) / n
            on_diag = (1.0 - torch.diagonal(c)).pow(2).sum()
            off_diag = _off_diagonal(c).pow(2).sum()
            return on_diag + self.lambda_offdiag * off_diag


class VICRegLoss(nn.Module):
    """VICReg (Bardes et al. 2022): invariance + variance + covariance terms.

    - invariance: ``mse(z1, z2)`` (mean over N * D);
    - variance: ``mean_d relu(1 - sqrt(var_d + eps))`` per view, averaged over the two
      views (as in the reference code and lightly);
    - covariance: ``sum(offdiag(cov)^2) / D`` per view, summed over the two views.

    Variance and covariance use the unbiased ``N - 1`` denominator, clamped to at
    least 1 so a batch of one gives finite values instead of NaN.

    Shapes:
        z1, z2: ``(N, D)``; output: scalar.
    """

    def __init__(
        self,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.sim_weight = float(sim_weight)
        self.var_weight = float(var_weight)
        self.cov_weight = float(cov_weight)
        self.eps = float(eps)

    def extra_repr(self) -> str:
        return (
            f"sim_weight={self.sim_weight}, var_weight={self.var_weight}, "
            f"cov_weight={self.cov_weight}, eps={self.eps}"
        )

    def _var_cov(self, z: Tensor) -> tuple[Tensor, Tensor]:
        n, d = z.shape
        zc = z - z.mean(dim=0, keepdim=True)
        denom = max(n - 1, 1)
        var = zc.pow(2).sum(dim=0) / denom
        variance = F.relu(1.0 - torch.sqrt(var + self.eps)).mean()
        cov = zc.T @ zc / denom
        covariance = _off_diagonal(cov).pow(2).sum() / d
        return variance, covariance

    def forward(self, z1: Tensor, z2: Tensor) -> Tensor:
        _check_pair(z1, z2)
        with torch.autocast(device_type=z1.device.type, enabled=False):
            a, b = z1.float(), z2.float()
            invariance = F.mse_loss(a, b)
            var_a, cov_a = self._var_cov(a)
            var_b, cov_b = self._var_cov(b)
            return (
                self.sim_weight * invariance
                + self.var_weight * 0.5 * (var_a + var_b)
                + self.cov_weight * (cov_a + cov_b)
            )


class CosineLoss(nn.Module):
    """``mean(1 - cos(pred, target))`` over the batch, in ``[0, 2]``.

    No stop-gradient is applied; detach ``target`` yourself for SimSiam/BYOL-style
    training.

    Shapes:
        pred, target: ``(N, D)``; output: scalar.
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            p = F.normalize(pred.float(), dim=1)
            t = F.normalize(target.float(), dim=1)
            return (1.0 - (p * t).sum(dim=1)).mean()


class MSELoss(nn.Module):
    """Mean squared error over all N * D entries, in fp32.

    Shapes:
        pred, target: ``(N, D)``; output: scalar.
    """

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        _check_pair(pred, target)
        with torch.autocast(device_type=pred.device.type, enabled=False):
            return F.mse_loss(pred.float(), target.float())


class CosineMSELoss(nn.Module):
    """``cosine_weight * CosineLoss + mse_weight * MSELoss``: direction plus scale.

    Shapes:
        pred, target: ``(N, D)``; output: scalar.
    """

    def __init__(self, cosine_weight: float = 1.0, mse_weight: float = 1.0) -> None:
        super().__init__()
        self.cosine_weight = float(cosine_weight)
        self.mse_weight = float(mse_weight)
        self.cosine = CosineLoss()
        self.mse = MSELoss()

    def extra_repr(self) -> str:
        return f"cosine_weight={self.cosine_weight}, mse_weight={self.mse_weight}"

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return self.cosine_weight * self.cosine(pred, target) + self.mse_weight * self.mse(
            pred, target
        )


LOSSES: dict[str, type[nn.Module]] = {
    "infonce": NTXentLoss,
    "supcon": SupConLoss,
    "triplet": BatchHardTripletLoss,
    "barlow_twins": BarlowTwinsLoss,
    "vicreg": VICRegLoss,
    "cosine": CosineLoss,
    "mse": MSELoss,
    "cosine_mse": CosineMSELoss,
}
"""Loss classes by the names the training loop and search spaces use."""

CONTRASTIVE_LOSSES: tuple[str, ...] = (
    "infonce",
    "supcon",
    "triplet",
    "barlow_twins",
    "vicreg",
    "cosine",
    "mse",
    "cosine_mse",
)

_LABELLED = frozenset({"supcon", "triplet"})

# Builder kwarg -> constructor argument, per loss. A kwarg a loss does not use is
# dropped, so a search space can pass every hyperparameter whatever loss it picked.
_KWARG_MAP: dict[str, dict[str, str]] = {
    "infonce": {"temperature": "temperature", "hard_negative_weight": "hard_negative_weight"},
    "supcon": {"temperature": "temperature"},
    "triplet": {"margin": "margin"},
    "barlow_twins": {"barlow_lambda": "lambda_offdiag"},
    "vicreg": {
        "vicreg_sim_weight": "sim_weight",
        "vicreg_var_weight": "var_weight",
        "vicreg_cov_weight": "cov_weight",
    },
    "cosine": {},
    "mse": {},
    "cosine_mse": {"cosine_weight": "cosine_weight", "mse_weight": "mse_weight"},
}
_KNOWN_KWARGS = frozenset(k for m in _KWARG_MAP.values() for k in m)
LOSS_KWARGS: frozenset[str] = _KNOWN_KWARGS
"""Every hyperparameter :func:`build_contrastive_loss` accepts, whatever the loss."""


def loss_kwargs(name: str) -> frozenset[str]:
    """The builder kwargs loss ``name`` reads; the others in :data:`LOSS_KWARGS` it ignores."""
    if name not in _KWARG_MAP:
        raise ValueError(f"unknown loss {name!r}; expected one of {CONTRASTIVE_LOSSES}")
    return frozenset(_KWARG_MAP[name])


class ContrastiveLoss(nn.Module):
    """Any loss of :data:`LOSSES` behind one signature, ``(z1, z2, labels=None) -> scalar``.

    Build it with :func:`build_contrastive_loss`. ``needs_labels`` is True for
    ``supcon`` and ``triplet``, which raise ``ValueError`` when called without labels.
    ``triplet`` sees both views as one batch of ``2N`` embeddings with labels repeated.
    """

    def __init__(self, name: str, loss: nn.Module) -> None:
        super().__init__()
        if name not in LOSSES:
            raise ValueError(f"unknown loss {name!r}; expected one of {CONTRASTIVE_LOSSES}")
        self.name = name
        self.loss = loss
        self.needs_labels: bool = name in _LABELLED

    def extra_repr(self) -> str:
        return f"name={self.name!r}"

    def forward(self, z1: Tensor, z2: Tensor, labels: Tensor | None = None) -> Tensor:
        if self.needs_labels and labels is None:
            raise ValueError(
                f"loss {self.name!r} needs labels; pass labels=(N,) class ids or pick an "
                "unsupervised loss"
            )
        if self.name == "supcon":
            return self.loss(z1, z2, labels)
        if self.name == "triplet":
            assert labels is not None
            return self.loss(torch.cat([z1, z2], dim=0), torch.cat([labels, labels], dim=0))
        return self.loss(z1, z2)


def build_contrastive_loss(name: str, **kwargs: Any) -> ContrastiveLoss:
    """Build the loss ``name`` (one of :data:`CONTRASTIVE_LOSSES`).

    Accepted kwargs: temperature, hard_negative_weight (infonce), temperature (supcon),
    margin (triplet), barlow_lambda (barlow_twins), vicreg_sim_weight /
    vicreg_var_weight / vicreg_cov_weight (vicreg), cosine_weight / mse_weight
    (cosine_mse). Each goes only to the losses that use it; the others ignore it.
    Unknown kwargs raise ``TypeError``, an unknown name ``ValueError``.
    """
    if name not in _KWARG_MAP:
        raise ValueError(f"unknown loss {name!r}; expected one of {CONTRASTIVE_LOSSES}")
    unknown = sorted(set(kwargs) - _KNOWN_KWARGS)
    if unknown:
        raise TypeError(
            f"build_contrastive_loss() got unexpected keyword argument(s): {', '.join(unknown)}"
        )
    mapping = _KWARG_MAP[name]
    ctor_kwargs = {mapping[k]: v for k, v in kwargs.items() if k in mapping}
    return ContrastiveLoss(name, LOSSES[name](**ctor_kwargs))
