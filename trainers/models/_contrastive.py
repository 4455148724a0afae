"""The registered models: encoder plus classifier and projection heads."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from trainers.models._conv import ConvEncoder
from trainers.models._crossformer import ContrastCrossFormerBlock, CrossFormerEncoder
from trainers.models._embedding import ConvEmbedding
from trainers.models._heads import build_projector
from trainers.models._registry import ModelOutput, register_model


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
