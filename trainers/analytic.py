"""A fast, deterministic trainer for the service's own tests and benchmarks (no torch).

It "trains" an analytic function: the score climbs towards
``1 - (x - 0.3)^2 - (y + 0.2)^2 - choice penalty`` over ``epochs`` reports, so worse
parameters are worse at every step and pruning has something real to decide on.
``fail`` injects the faults a real trainer produces (exception, ``sys.exit``, NaN, missing
metric, hang);
``seed_noise`` adds the luck of a seed, different for every (seed, configuration).
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainers.reporter import NullReporter, Reporter, TrainingFailed

_CHOICE_PENALTY = {"a": 0.0, "b": 0.1, "c": 0.3}


class AnalyticParams(BaseModel):
    """Parameters of the analytic test trainer."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(default=0.0, ge=-10, le=10)
    y: float = Field(default=0.0, ge=-10, le=10)
    choice: Literal["a", "b", "c"] = "a"
    margin: float = Field(default=0.5, ge=0, le=10)
    epochs: int = Field(default=10, ge=1, le=100_000)
    seed: int = 0
    sleep_per_epoch: float = Field(default=0.0, ge=0, le=60)
    fail: Literal["none", "raise", "exit", "nan", "missing", "hang", "collapse"] = "none"
    fail_when_x_above: float | None = None
    seed_noise: float = Field(default=0.0, ge=0, le=10)
    artifact_dir: str | None = None


def final_score(params: AnalyticParams) -> float:
    """The value a run converges to: the optimum is x=0.3, y=-0.2, choice=a (plus seed luck)."""
    score = 1.0 - (params.x - 0.3) ** 2 - (params.y + 0.2) ** 2 - _CHOICE_PENALTY[params.choice]
    if params.seed_noise:
        luck = random.Random(f"{params.seed}:{params.x}:{params.y}:{params.choice}")
        score += luck.gauss(0.0, params.seed_noise)
    return score


def _write_checkpoint(directory: Path, p: AnalyticParams, result: dict[str, float]) -> None:
    """A stand-in ``checkpoint.pt`` (JSON, not torch) so artifact handling can be tested fast."""
    directory.mkdir(parents=True, exist_ok=True)
    state = {"params": p.model_dump(exclude={"artifact_dir"}), "result": result}
    (directory / "checkpoint.pt").write_text(json.dumps(state), encoding="utf-8")


def train(params: dict[str, Any], reporter: Reporter | None = None) -> dict[str, float]:
    """Report ``score`` once per epoch and return the final metrics."""
    p = AnalyticParams.model_validate(params)
    reporter = reporter or NullReporter()
    triggered = p.fail != "none" and (p.fail_when_x_above is None or p.x > p.fail_when_x_above)
    target = final_score(p)
    best = -math.inf
    score = -math.inf
    for epoch in range(1, p.epochs + 1):
        if p.sleep_per_epoch:
            time.sleep(p.sleep_per_epoch)
        progress = 1.0 - math.exp(-3.0 * epoch / p.epochs)
        score = target * progress - 0.05 * (1.0 - progress)
        best = max(best, score)
        if triggered and epoch > p.epochs // 2:
            if p.fail == "raise":
                raise RuntimeError(f"injected failure at epoch {epoch}")
            if p.fail == "exit":
                sys.exit(3)  # as argparse or a library might
            if p.fail == "hang":
                time.sleep(3600)
            if p.fail == "collapse":
                raise TrainingFailed("collapse", "embeddings collapsed (injected)")
        reporter.report(epoch, {"score": score, "best_score": best, "loss": 1.0 - score})
    result = {
        "score": score,
        "best_score": best,
        "loss": 1.0 - score,
        "n_params": float(abs(p.x) * 100 + abs(p.y) * 10),
        "epochs_run": float(p.epochs),
    }
    if p.artifact_dir:
        _write_checkpoint(Path(p.artifact_dir), p, result)
    if triggered and p.fail == "nan":
        result["score"] = float("nan")
        result["best_score"] = float("nan")
    if triggered and p.fail == "missing":
        del result["score"], result["best_score"]
    return result


train.params_schema = AnalyticParams  # type: ignore[attr-defined]
train.result_metrics = ("score", "best_score", "loss", "n_params", "epochs_run")  # type: ignore[attr-defined]
