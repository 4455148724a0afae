"""The CrossFormer block (self-attention plus cross-attention to prototypes) and its encoder."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from trainers.attention import MultiHeadAttention
from trainers.models._cbam import CBAM
from trainers.models._embedding import ConvEmbedding


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
