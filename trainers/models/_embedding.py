"""The convolutional embedding every encoder starts with."""

from __future__ import annotations

from torch import Tensor, nn


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
