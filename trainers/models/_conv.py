"""The attention-free convolutional encoder."""

from __future__ import annotations

from torch import Tensor, nn

from trainers.models._cbam import CBAM
from trainers.models._embedding import ConvEmbedding


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
