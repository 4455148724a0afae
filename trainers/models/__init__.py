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

Laid out like timm's ``models`` package: the registry in ``_registry``, one private module per
building block (``_embedding``, ``_cbam``, ``_crossformer``, ``_conv``, ``_heads``), the
registered models in ``_contrastive`` (imported here, so ``import trainers.models`` fills
:data:`MODELS`), and this small surface re-exported.
"""

from __future__ import annotations

from trainers.models._cbam import CBAM
from trainers.models._contrastive import ConvEncoderModel, TimeSeriesContrastiveModel
from trainers.models._contrastive import _ContrastiveModel as _ContrastiveModel
from trainers.models._conv import ConvEncoder
from trainers.models._crossformer import ContrastCrossFormerBlock, CrossFormerEncoder
from trainers.models._crossformer import heads_problem as heads_problem
from trainers.models._embedding import ConvEmbedding
from trainers.models._heads import build_projector
from trainers.models._registry import (
    DEFAULT_MODEL,
    MODELS,
    ModelOutput,
    count_parameters,
    create_model,
    register_model,
)
from trainers.models._registry import ModelFactory as ModelFactory

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
