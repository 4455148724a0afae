"""The projection head fed to the contrastive loss."""

from __future__ import annotations

from torch import nn


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
