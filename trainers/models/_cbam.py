"""CBAM: channel and temporal attention for 1-D signals."""

from __future__ import annotations

import torch
from torch import Tensor, nn


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
