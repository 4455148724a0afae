"""The contrastive trainer under a schema that says it reads every knob.

The search-efficiency arm ``tpe_hyperband_exact`` runs our default on it: the service then
counts only identical configurations as repeats, as it did before trainers declared
``unused_params`` (session 12), and the arm measures what that declaration saves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.contrastive import train as contrastive_train
from trainers.params import ContrastiveParams
from trainers.reporter import Reporter


class ReadsEveryKnob(ContrastiveParams):
    """``ContrastiveParams`` without the knowledge of which knobs a configuration leaves unread."""

    def unused_params(self) -> frozenset[str]:
        return frozenset()


def train(params: Mapping[str, Any], reporter: Reporter | None = None) -> Mapping[str, float]:
    """The contrastive trainer, unchanged."""
    return contrastive_train(dict(params), reporter)


train.params_schema = ReadsEveryKnob  # type: ignore[attr-defined]
train.result_metrics = contrastive_train.result_metrics  # type: ignore[attr-defined]
