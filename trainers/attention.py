"""Multi-head attention on ``F.scaled_dot_product_attention``, with nn.MultiheadAttention's weights.

Why not ``nn.MultiheadAttention``: with ``need_weights=False`` it also ends in
``F.scaled_dot_product_attention``, but through batch-first transposes and copies, and it
projects keys shared by the batch (learned prototypes) once per row. Without dropout on a
CPU this module's attention layer takes 113 ms where torch's takes 153 (forward and
backward, 256 x 128 tokens x 64 wide). This module's ``dropout`` drops attention
weights only (the trainer's ``attn_dropout``, default 0). A CPU has no fused kernel with
dropout, so above 0 it draws and keeps a ``(B, heads, Lq, Lk)`` mask, which took a
quarter of a training step at UCI-HAR shape (docs/benchmarks.md). CUDA's fused kernels
take dropout.

The parameters, their names, shapes, order and initial draws are those of
``nn.MultiheadAttention(embed_dim, num_heads, batch_first=True)``. A seed gives the same
initial weights, and state dicts (checkpoints) load in both directions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(nn.Module):
    """Batch-first multi-head attention: query (B, Lq, E), key and value (B or 1, Lk, E).

    Returns (B, Lq, E). A key/value batch of 1 is shared by every query row (learned
    prototypes): it is projected once, not once per row. ``dropout`` is the probability
    of dropping an attention weight in training; 0 lets a CPU use its fused kernel.
    """

    def __init__(self, embed_dim: int, num_heads: int, *, dropout: float = 0.0):
        super().__init__()
        if embed_dim < 1 or num_heads < 1 or embed_dim % num_heads != 0:
            raise ValueError(f"num_heads={num_heads} must divide embed_dim={embed_dim} (both >= 1)")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.dropout = dropout
        # nn.MultiheadAttention's order: packed q/k/v weight and bias, then out_proj
        # (whose own init draws come first), then xavier on the packed weight.
        self.in_proj_weight = nn.Parameter(torch.empty(3 * embed_dim, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim))
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.in_proj_bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor) -> Tensor:
        """(B, Lq, E), (B|1, Lk, E), (B|1, Lk, E) -> (B, Lq, E)."""
        batch, length, _ = query.shape
        if query is key and key is value:  # self-attention: one packed projection
            q, k, v = F.linear(query, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            w_q, w_k, w_v = self.in_proj_weight.chunk(3)
            b_q, b_k, b_v = self.in_proj_bias.chunk(3)
            q = F.linear(query, w_q, b_q)
            k = F.linear(key, w_k, b_k)
            v = F.linear(value, w_v, b_v)
        out = F.scaled_dot_product_attention(
            self._heads(q, batch),
            self._heads(k, batch),
            self._heads(v, batch),
            dropout_p=self.dropout if self.training else 0.0,
        )
        merged = out.transpose(1, 2).reshape(batch, length, self.embed_dim)
        projected: Tensor = self.out_proj(merged)
        return projected

    def _heads(self, x: Tensor, batch: int) -> Tensor:
        """(B|1, L, E) -> (B, heads, L, head_dim); a batch of 1 is expanded, not copied."""
        split = x.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)
        return split.expand(batch, -1, -1, -1)

    def extra_repr(self) -> str:
        return f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}"
