"""Encoders for contrastive learning on multivariate time series, looked up by name.

Models follow one interface so trainers can swap them from a study's search space:

* input ``x``: ``(B, C, T)`` float tensor (batch, channels, time steps);
* ``model(x)`` returns :class:`ModelOutput` ``(logits (B, n_classes), embedding (B, dim),
  projection (B, proj_dim))``;
* ``model.embed(x)`` is the pooled encoder output ``(B, dim)``;
* ``model.encoder`` / ``model.classifier`` / ``model.projector`` are separate submodules, and
  ``encoder_state_dict`` / ``load_encoder_state_dict`` move the encoder from pretraining to
  fine-tuning.

Forward passes are fully batched, have no data-dependent Python control flow (so
``torch.compile`` can trace them) and run under bf16 autocast on CPU and CUDA.

Registry (timm-like)::

    model = create_model("crossformer", in_channels=9, n_classes=6, dim=64)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.attention import MultiHeadAttention

__all__ = [
    "CBAM",
    "DEFAULT_MODEL",
    "MODELS",
    "ContrastCrossFormerBlock",
    "ConvEmbedding",
    "ConvEncoder",
    "ConvEncoderModel",
    "CrossFormerEncoder",
    "ModelOutput",
    "TimeSeriesContrastiveModel",
    "build_projector",
    "count_parameters",
    "create_model",
    "register_model",
]

# --------------------------------------------------------------------------- registry

ModelFactory = Callable[..., nn.Module]
_F = TypeVar("_F", bound=ModelFactory)

MODELS: dict[str, ModelFactory] = {}
"""Model name -> class (or factory) taking ``in_channels, n_classes, **options``."""

DEFAULT_MODEL = "crossformer"


def register_model(name: str) -> Callable[[_F], _F]:
    """Class decorator adding a model to :data:`MODELS` under ``name``.

    Registering a *different* object under a taken name is an error, so two modules can't
    silently shadow each other; re-registering the same object (module reload) is allowed.
    """

    def decorator(factory: _F) -> _F:
        existing = MODELS.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"model name {name!r} is already registered to {existing!r}")
        MODELS[name] = factory
        return factory

    return decorator


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model by name (``"crossformer"`` is the default architecture)."""
    try:
        factory = MODELS[name]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model {name!r}; available models: {known}") from None
    return factory(**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (what the optimiser updates)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ModelOutput(NamedTuple):
    """What every model's ``forward`` returns."""

    logits: Tensor
    """(B, n_classes) classifier scores."""
    embedding: Tensor
    """(B, dim) pooled encoder output (used for linear probes and prototype init)."""
    projection: Tensor
    """(B, proj_dim) projection-head output fed to the contrastive loss (not normalised)."""


# --------------------------------------------------------------------------- building blocks


class ConvEmbedding(nn.Module):
    """``conv_layers`` x (Conv1d-BN-GELU), same padding: (B, C, T) -> (B, dim, T).

    Gives each time token local context, which is also the only positional signal the
    attention blocks get (they have no positional encoding).
    """

    def __init__(self, in_channels: int, dim: int, *, kernel_size: int = 7, conv_layers: int = 2):
        super().__init__()
        if in_channels < 1 or dim < 1:
            raise ValueError(f"in_channels and dim must be >= 1, got {in_channels} and {dim}")
        if kernel_size < 1:
            raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
        if conv_layers < 1:
            raise ValueError(f"conv_layers must be >= 1, got {conv_layers}")
        self.in_channels = in_channels
        self.dim = dim
        self.layers = nn.Sequential(
            *(
                nn.Sequential(
                    # No bias: BatchNorm's shift makes it redundant.
                    nn.Conv1d(
                        in_channels if i == 0 else dim,
                        dim,
                        kernel_size,
                        padding="same",
                        bias=False,
                    ),
                    nn.BatchNorm1d(dim),
                    nn.GELU(),
                )
                for i in range(conv_layers)
            )
        )

    @property
    def first_conv(self) -> nn.Conv1d:
        """The layer whose weight ``(dim, in_channels, k)`` fixes the input channel count."""
        first = self.layers[0]
        assert isinstance(first, nn.Sequential)
        conv = first[0]
        assert isinstance(conv, nn.Conv1d)
        return conv

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, dim, T)."""
        out: Tensor = self.layers(x)
        return out


class CBAM(nn.Module):
    """Convolutional block attention for 1-D signals: (B, D, T) -> (B, D, T).

    Channel attention (shared MLP over average- and max-pooled time) re-weights feature
    channels; temporal attention (a conv over the channel-wise [mean, max]) re-weights time
    steps, so informative segments dominate the later mean pooling.
    """

    def __init__(self, channels: int, *, reduction: int = 8, kernel_size: int = 7):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.channel_mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels)
        )
        self.temporal_conv = nn.Conv1d(2, 1, kernel_size, padding="same", bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, D, T) -> (B, D, T)."""
        # Channel attention: (B, D) weights from both poolings through one MLP.
        channel_logits = self.channel_mlp(x.mean(dim=-1)) + self.channel_mlp(x.amax(dim=-1))
        x = x * torch.sigmoid(channel_logits).unsqueeze(-1)
        # Temporal attention: (B, 2, T) -> (B, 1, T) weights.
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.temporal_conv(pooled))


def heads_problem(
    n_heads: int, dim: int, use_dim_reduction: bool, reduction_dim: int
) -> str | None:
    """Why ``n_heads`` cannot split the attention width, or None (checked by the params too)."""
    width = reduction_dim if use_dim_reduction else dim
    if n_heads >= 1 and width % n_heads == 0:
        return None
    which = f"reduction_dim={reduction_dim}" if use_dim_reduction else f"dim={dim}"
    return (
        f"n_heads={n_heads} must divide the attention width ({which}); "
        f"pick n_heads from the divisors of {width}"
    )


class ContrastCrossFormerBlock(nn.Module):
    """Pre-norm transformer block over time tokens with cross-attention to prototypes.

    (B, T, dim) -> (B, T, dim). Sub-layers, each ``h = h + dropout(f(norm(h)))``:

    1. multi-head self-attention between time tokens;
    2. cross-attention from tokens (queries) to ``n_prototypes`` learnable, L2-normalised
       prototypes (keys/values), so tokens are pulled toward class-like anchors;
    3. MLP with hidden width ``mlp_ratio * working_dim``.

    With ``use_dim_reduction`` the sub-layers run at ``reduction_dim`` (the "working dim",
    e.g. a 64->32->64 bottleneck): ``out = x + out_proj(sublayers(in_proj(x)))``. The
    full-width skip keeps stacked blocks from losing what the bottleneck drops. Without it
    the working dim is ``dim`` and ``in_proj``/``out_proj`` are identities.

    ``prototypes``: (n_prototypes, working_dim), xavier-uniform initialised. ``dropout``
    drops sub-layer outputs and MLP activations; ``attn_dropout`` drops attention weights
    (:class:`~trainers.attention.MultiHeadAttention`), 0 by default because on a CPU it
    costs a fused attention kernel.
    """

    def __init__(
        self,
        dim: int,
        n_prototypes: int = 6,
        n_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        use_dim_reduction: bool = False,
        reduction_dim: int = 32,
        attn_dropout: float = 0.0,
    ):
        super().__init__()
        working_dim = reduction_dim if use_dim_reduction else dim
        if working_dim < 1:
            raise ValueError(f"working dim must be >= 1, got {working_dim}")
        problem = heads_problem(n_heads, dim, use_dim_reduction, reduction_dim)
        if problem is not None:
            raise ValueError(problem)
        if n_prototypes < 1:
            raise ValueError(f"n_prototypes must be >= 1, got {n_prototypes}")
        if mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be > 0, got {mlp_ratio}")

        self.dim = dim
        self.working_dim = working_dim
        self.n_prototypes = n_prototypes
        self.use_dim_reduction = use_dim_reduction

        self.in_proj: nn.Module = (
            nn.Linear(dim, working_dim) if use_dim_reduction else nn.Identity()
        )
        self.out_proj: nn.Module = (
            nn.Linear(working_dim, dim) if use_dim_reduction else nn.Identity()
        )

        self.norm1 = nn.LayerNorm(working_dim)
        self.self_attn = MultiHeadAttention(working_dim, n_heads, dropout=attn_dropout)
        self.norm2 = nn.LayerNorm(working_dim)
        self.cross_attn = MultiHeadAttention(working_dim, n_heads, dropout=attn_dropout)
        self.prototypes = nn.Parameter(torch.empty(n_prototypes, working_dim))
        nn.init.xavier_uniform_(self.prototypes)
        self.norm3 = nn.LayerNorm(working_dim)
        hidden = max(int(working_dim * mlp_ratio), 1)
        self.mlp = nn.Sequential(
            nn.Linear(working_dim, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, working_dim),
            nn.Dropout(dropout),
        )
        self.drop = nn.Dropout(dropout)

    def normalized_prototypes(self) -> Tensor:
        """(n_prototypes, working_dim) unit-norm prototypes, as the block uses them."""
        return F.normalize(self.prototypes, dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, T, dim) -> (B, T, dim)."""
        h = self.in_proj(x)
        q = self.norm1(h)
        h = h + self.drop(self.self_attn(q, q, q))
        protos = self.normalized_prototypes().unsqueeze(0)  # (1, n_prototypes, working_dim)
        h = h + self.drop(self.cross_attn(self.norm2(h), protos, protos))
        h = h + self.mlp(self.norm3(h))
        if self.use_dim_reduction:  # static config, not data: fine for torch.compile
            out: Tensor = x + self.out_proj(h)
            return out
        return h

    def prototype_similarity(self, pooled: Tensor) -> Tensor:
        """Cosine similarity of pooled features to each prototype: (B, dim) -> (B, n_prototypes).

        ``pooled`` lives at the block's input width and goes through ``in_proj`` first, so it
        is compared in the same space the prototypes live in.
        """
        z = F.normalize(self.in_proj(pooled), dim=-1)
        return z @ self.normalized_prototypes().to(z.dtype).t()

    @torch.no_grad()
    def set_prototypes_from_means(self, means: Tensor, present: Tensor) -> None:
        """Write class means (n_classes, dim) into the prototypes (see the model's method).

        Row ``i < min(n_prototypes, n_classes)`` becomes ``in_proj(means[i])`` when class
        ``i`` was ``present``; rows of absent classes keep their value, and rows past
        ``n_classes`` are redrawn with xavier-uniform (same fan as the full matrix).
        """
        n_classes = means.shape[0]
        k = min(self.n_prototypes, n_classes)
        target = self.prototypes.detach().clone()
        if self.n_prototypes > n_classes:
            fresh = torch.empty_like(target)
            nn.init.xavier_uniform_(fresh)
            target[n_classes:] = fresh[n_classes:]
        projected = self.in_proj(means[:k].to(self.prototypes.dtype))
        keep = present[:k].to(target.device).unsqueeze(-1)
        target[:k] = torch.where(keep, projected, target[:k])
        self.prototypes.copy_(target)


def build_projector(
    dim: int,
    proto_proj: str = "linear",
    *,
    proj_dim: int = 64,
    proj_hidden_dim: int = 128,
    proj_depth: int = 1,
) -> nn.Module:
    """Projection head for the contrastive loss: (B, dim) -> (B, proj_dim).

    ``"linear"``: one Linear. ``"mlp"``: ``proj_depth`` x (Linear-BatchNorm1d-GELU) blocks of
    width ``proj_hidden_dim`` then a Linear to ``proj_dim`` (SimCLR-style; deeper heads help
    SSL). ``proj_depth`` only affects ``"mlp"``.
    """
    if proj_depth < 1:
        raise ValueError(f"proj_depth must be >= 1, got {proj_depth}")
    if proj_dim < 1 or proj_hidden_dim < 1:
        raise ValueError(
            f"proj_dim and proj_hidden_dim must be >= 1, got {proj_dim}, {proj_hidden_dim}"
        )
    if proto_proj == "linear":
        return nn.Linear(dim, proj_dim)
    if proto_proj == "mlp":
        layers: list[nn.Module] = []
        width = dim
        for _ in range(proj_depth):
            layers += [
                nn.Linear(width, proj_hidden_dim),
                nn.BatchNorm1d(proj_hidden_dim),
                nn.GELU(),
            ]
            width = proj_hidden_dim
        layers.append(nn.Linear(width, proj_dim))
        return nn.Sequential(*layers)
    raise ValueError(f"proto_proj must be 'linear' or 'mlp', got {proto_proj!r}")


# --------------------------------------------------------------------------- encoders


class CrossFormerEncoder(nn.Module):
    """Conv embedding -> optional CBAM -> ``depth`` blocks -> mean over time.

    (B, C, T) -> (B, dim).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        dim: int = 64,
        depth: int = 1,
        n_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        use_cbam: bool = True,
        use_dim_reduction: bool = False,
        reduction_dim: int = 32,
        n_prototypes: int = 6,
        kernel_size: int = 7,
        conv_layers: int = 2,
    ):
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.in_channels = in_channels
        self.dim = dim
        self.embedding = ConvEmbedding(
            in_channels, dim, kernel_size=kernel_size, conv_layers=conv_layers
        )
        self.cbam: nn.Module = CBAM(dim, kernel_size=kernel_size) if use_cbam else nn.Identity()
        self.blocks = nn.ModuleList(
            ContrastCrossFormerBlock(
                dim,
                n_prototypes=n_prototypes,
                n_heads=n_heads,
                mlp_ratio=mlp_ratio,
                dropout=dropout,
                use_dim_reduction=use_dim_reduction,
                reduction_dim=reduction_dim,
                attn_dropout=attn_dropout,
            )
            for _ in range(depth)
        )

    def iter_blocks(self) -> Iterator[ContrastCrossFormerBlock]:
        """The blocks, typed."""
        for block in self.blocks:
            assert isinstance(block, ContrastCrossFormerBlock)
            yield block

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, dim)."""
        h = self.cbam(self.embedding(x)).transpose(1, 2)  # (B, T, dim) tokens
        for block in self.blocks:
            h = block(h)
        return h.mean(dim=1)


class ConvEncoder(nn.Module):
    """Conv embedding -> optional CBAM -> dropout -> mean over time: (B, C, T) -> (B, dim)."""

    def __init__(
        self,
        in_channels: int,
        *,
        dim: int = 64,
        dropout: float = 0.1,
        use_cbam: bool = False,
        kernel_size: int = 7,
        conv_layers: int = 2,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.dim = dim
        self.embedding = ConvEmbedding(
            in_channels, dim, kernel_size=kernel_size, conv_layers=conv_layers
        )
        self.cbam: nn.Module = CBAM(dim, kernel_size=kernel_size) if use_cbam else nn.Identity()
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T) -> (B, dim)."""
        pooled: Tensor = self.drop(self.cbam(self.embedding(x))).mean(dim=-1)
        return pooled


# --------------------------------------------------------------------------- models


class _ContrastiveModel(nn.Module):
    """Shared head wiring and pretrain->finetune plumbing; subclasses set ``self.encoder``."""

    encoder: nn.Module

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        dim: int,
        *,
        proto_proj: str,
        proj_dim: int,
        proj_hidden_dim: int,
        proj_depth: int,
    ):
        super().__init__()
        if n_classes < 1:
            raise ValueError(f"n_classes must be >= 1, got {n_classes}")
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.dim = dim
        self.classifier = nn.Linear(dim, n_classes)
        self.projector = build_projector(
            dim,
            proto_proj,
            proj_dim=proj_dim,
            proj_hidden_dim=proj_hidden_dim,
            proj_depth=proj_depth,
        )

    def embed(self, x: Tensor) -> Tensor:
        """Pooled encoder output: (B, C, T) -> (B, dim)."""
        out: Tensor = self.encoder(x)
        return out

    def forward(self, x: Tensor) -> ModelOutput:
        """(B, C, T) -> ModelOutput(logits (B, n_classes), embedding (B, dim), projection)."""
        embedding = self.embed(x)
        return ModelOutput(self.classifier(embedding), embedding, self.projector(embedding))

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """A detached copy of the encoder's weights (no heads), for pretrain -> finetune."""
        return {k: v.detach().clone() for k, v in self.encoder.state_dict().items()}

    def load_encoder_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load weights from :meth:`encoder_state_dict` (or a full model state dict).

        Heads are left alone: the fine-tuning task may have other classes. A mismatch in
        input channels or width raises ``ValueError`` naming both numbers, instead of
        torch's generic size-mismatch error.
        """
        first_key = self._first_conv_key()
        sd = dict(state_dict)
        if first_key not in sd and f"encoder.{first_key}" in sd:
            sd = {k[len("encoder.") :]: v for k, v in sd.items() if k.startswith("encoder.")}
        weight = sd.get(first_key)
        if weight is None:
            raise ValueError(
                f"not an encoder state dict for {type(self).__name__}: missing {first_key!r}"
            )
        pre_dim, pre_channels = int(weight.shape[0]), int(weight.shape[1])
        if pre_channels != self.in_channels:
            raise ValueError(
                f"encoder was pretrained on {pre_channels} channels, data has {self.in_channels}"
            )
        if pre_dim != self.dim:
            raise ValueError(f"encoder was pretrained with dim={pre_dim}, model has dim={self.dim}")
        self.encoder.load_state_dict(sd)

    def _first_conv_key(self) -> str:
        embedding = self.encoder.embedding
        assert isinstance(embedding, ConvEmbedding)
        target = embedding.first_conv.weight
        for name, param in self.encoder.named_parameters():
            if param is target:
                return name
        raise AssertionError("first conv weight not found in encoder")  # pragma: no cover


@register_model("crossformer")
class TimeSeriesContrastiveModel(_ContrastiveModel):
    """Conv embedding + CBAM + ContrastCrossFormer blocks, with classifier and projection heads.

    ``forward(x)``: (B, C, T) -> :class:`ModelOutput`. ``n_prototypes=None`` means one
    prototype per class.
    """

    encoder: CrossFormerEncoder

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        dim: int = 64,
        depth: int = 1,
        n_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        attn_dropout: float = 0.0,
        use_cbam: bool = True,
        use_dim_reduction: bool = False,
        reduction_dim: int = 32,
        n_prototypes: int | None = None,
        proto_proj: str = "linear",
        proj_dim: int = 64,
        proj_hidden_dim: int = 128,
        proj_depth: int = 1,
        kernel_size: int = 7,
        conv_layers: int = 2,
    ):
        super().__init__(
            in_channels,
            n_classes,
            dim,
            proto_proj=proto_proj,
            proj_dim=proj_dim,
            proj_hidden_dim=proj_hidden_dim,
            proj_depth=proj_depth,
        )
        self.n_prototypes = n_classes if n_prototypes is None else n_prototypes
        self.encoder = CrossFormerEncoder(
            in_channels,
            dim=dim,
            depth=depth,
            n_heads=n_heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            attn_dropout=attn_dropout,
            use_cbam=use_cbam,
            use_dim_reduction=use_dim_reduction,
            reduction_dim=reduction_dim,
            n_prototypes=self.n_prototypes,
            kernel_size=kernel_size,
            conv_layers=conv_layers,
        )

    def prototype_similarity(self, embedding: Tensor, block: int = -1) -> Tensor:
        """(B, dim) pooled embedding -> (B, n_prototypes) cosine similarity to one block's
        prototypes (the last by default)."""
        blk = self.encoder.blocks[block]
        assert isinstance(blk, ContrastCrossFormerBlock)
        return blk.prototype_similarity(embedding)

    @torch.no_grad()
    def init_prototypes_from_class_means(self, x: Tensor, y: Tensor, batch_size: int = 512) -> None:
        """ "class_mean" prototype init: seed every block's prototypes with class centroids.

        Runs the current (normally untrained) encoder in eval mode without gradients over
        ``x`` (N, C, T) in batches of ``batch_size``, sums pooled features per label with
        ``index_add_`` and divides by counts. Class ``c``'s mean goes into row ``c`` of each
        block's ``prototypes``, through that block's ``in_proj`` when ``use_dim_reduction``.
        Means are computed once, before any block is changed.

        ``y`` (N,) holds labels in ``[0, n_classes)``. If ``n_prototypes < n_classes`` only the
        first ``n_prototypes`` classes are used; if larger, rows past ``n_classes`` are redrawn
        with xavier-uniform. Classes absent from ``y`` keep their current prototype. The
        model's train/eval mode is restored afterwards.
        """
        if x.ndim != 3 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be (N, {self.in_channels}, T), got shape {tuple(x.shape)}")
        y = torch.as_tensor(y).reshape(-1)
        if y.shape[0] != x.shape[0] or y.numel() == 0:
            raise ValueError(f"need one label per sample: x has {x.shape[0]}, y has {y.shape[0]}")
        if y.is_floating_point() or y.is_complex():
            raise ValueError(f"labels must be integers, got dtype {y.dtype}")
        if int(y.min()) < 0 or int(y.max()) >= self.n_classes:
            raise ValueError(
                f"labels must lie in [0, {self.n_classes}), got [{int(y.min())}, {int(y.max())}]"
            )
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")

        param = next(self.parameters())
        device = param.device
        sums = torch.zeros(self.n_classes, self.dim, dtype=torch.float64, device=device)
        counts = torch.zeros(self.n_classes, dtype=torch.float64, device=device)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, x.shape[0], batch_size):
                xb = x[start : start + batch_size].to(device=device, dtype=param.dtype)
                yb = y[start : start + batch_size].to(device=device, dtype=torch.long)
                feats = self.encoder(xb).to(torch.float64)
                sums.index_add_(0, yb, feats)
                counts.index_add_(0, yb, torch.ones_like(yb, dtype=torch.float64))
        finally:
            self.train(was_training)
        means = sums / counts.clamp_min(1.0).unsqueeze(-1)
        present = counts > 0
        for block in self.encoder.iter_blocks():
            block.set_prototypes_from_means(means, present)


@register_model("conv")
class ConvEncoderModel(_ContrastiveModel):
    """Attention-free baseline: conv embedding (+ optional CBAM) -> mean pool -> heads.

    Same interface as :class:`TimeSeriesContrastiveModel` and accepts its keyword arguments
    so one search space can switch architectures; ``depth``, ``n_heads``, ``mlp_ratio``,
    ``use_dim_reduction``, ``reduction_dim``, ``n_prototypes`` and ``attn_dropout`` are accepted
    and ignored.
    It has no prototypes (no ``init_prototypes_from_class_means``).
    """

    encoder: ConvEncoder

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        *,
        dim: int = 64,
        dropout: float = 0.1,
        use_cbam: bool = False,
        proto_proj: str = "linear",
        proj_dim: int = 64,
        proj_hidden_dim: int = 128,
        proj_depth: int = 1,
        kernel_size: int = 7,
        conv_layers: int = 2,
        depth: int | None = None,
        n_heads: int | None = None,
        mlp_ratio: float | None = None,
        use_dim_reduction: bool | None = None,
        reduction_dim: int | None = None,
        n_prototypes: int | None = None,
        attn_dropout: float | None = None,
    ):
        super().__init__(
            in_channels,
            n_classes,
            dim,
            proto_proj=proto_proj,
            proj_dim=proj_dim,
            proj_hidden_dim=proj_hidden_dim,
            proj_depth=proj_depth,
        )
        self.encoder = ConvEncoder(
            in_channels,
            dim=dim,
            dropout=dropout,
            use_cbam=use_cbam,
            kernel_size=kernel_size,
            conv_layers=conv_layers,
        )
