"""The shared contrastive trainer end to end, on small real data (BasicMotions, synthetic HAR)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from trainers import Pruned, RecordingReporter, resolve_trainer
from trainers.contrastive import PER_EPOCH_METRICS, train
from trainers.params import ContrastiveParams

SMALL_HAR: dict[str, Any] = {
    "dataset": "synthetic_har",
    "synthetic_n_train": 240,
    "synthetic_n_test": 60,
    "dim": 32,
    "proj_dim": 32,
    "batch_size": 32,
    "epochs": 2,
}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_basicmotions_reports_every_epoch_and_returns_results() -> None:
    reporter = RecordingReporter()
    result = train({"dataset": "BasicMotions", "epochs": 3, "evaluate_test": True}, reporter)
    assert [step for step, _ in reporter.history] == [1, 2, 3]
    for _, metrics in reporter.history:
        assert set(PER_EPOCH_METRICS) <= set(metrics)
        assert all(np.isfinite(v) for v in metrics.values())
    expected = {
        "best_val_f1",
        "best_epoch",
        "final_val_f1",
        "val_accuracy",
        "train_loss",
        "n_params",
        "train_seconds",
        "test_f1",
        "test_accuracy",
    }
    assert expected <= set(result)
    assert 0.0 <= result["best_val_f1"] <= 1.0
    assert result["best_val_f1"] == max(m["val_f1"] for _, m in reporter.history)
    # The lowest validation loss so far: what a study ranks by once val F1 saturates.
    losses = [m["val_loss"] for _, m in reporter.history]
    assert [m["best_val_loss"] for _, m in reporter.history] == [
        min(losses[: i + 1]) for i in range(len(losses))
    ]
    assert result["best_val_loss"] == min(losses)


def test_same_seed_same_result_on_cpu() -> None:
    a = train({**SMALL_HAR, "seed": 3})
    b = train({**SMALL_HAR, "seed": 3})
    c = train({**SMALL_HAR, "seed": 4})
    keys = ("best_val_f1", "train_loss", "final_val_f1")
    assert [a[k] for k in keys] == [b[k] for k in keys]
    assert a["train_loss"] != c["train_loss"]


class _PruneAt:
    def __init__(self, step: int) -> None:
        self.step = step
        self.seen: list[int] = []

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.seen.append(step)
        if step >= self.step:
            raise Pruned(f"pruned at {step}")


def test_stops_when_the_reporter_prunes() -> None:
    reporter = _PruneAt(2)
    with pytest.raises(Pruned):
        train({**SMALL_HAR, "epochs": 5}, reporter)
    assert reporter.seen == [1, 2]


@pytest.mark.parametrize(
    "overrides",
    [
        {"loss": "triplet", "margin": 0.5},
        {"loss": "barlow_twins"},
        {"loss": "vicreg"},
        {"loss": "supcon"},
        {"loss": "cosine_mse", "loss_mix": "additive"},
        {"loss": "none"},
        {"contrastive_weight": 0.0},
        {
            "proto_init": "class_mean",
            "proto_proj": "mlp",
            "use_dim_reduction": True,
            "reduction_dim": 16,
        },
        {"n_heads": 8, "depth": 2, "use_cbam": False},
        {"model": "conv"},
        {"ema_decay": 0.9, "scheduler": "cosine_restarts", "t_0": 1},
        {"scheduler": "plateau", "label_smoothing": 0.1, "grad_accum": 2, "mixup_views": 0.2},
        {"augment": ["jitter", {"name": "time_warp", "p": 0.9}], "hard_negative_weight": 1.0},
    ],
)
def test_every_option_trains(overrides: dict[str, Any]) -> None:
    result = train({**SMALL_HAR, **overrides})
    assert np.isfinite(result["train_loss"])
    assert 0.0 <= result["best_val_f1"] <= 1.0


def test_early_stopping() -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 30, "early_stopping_patience": 1, "lr": 1e-6}, reporter)
    assert result["epochs_run"] < 30
    assert len(reporter.history) == result["epochs_run"]


def test_artifacts_written(tmp_path: Path) -> None:
    train({**SMALL_HAR, "artifact_dir": str(tmp_path / "a")})
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"checkpoint.pt", "confusion_matrix.npy", "val_embeddings.npz"}
    cm = np.load(tmp_path / "a" / "confusion_matrix.npy")
    assert cm.shape == (6, 6)
    emb = np.load(tmp_path / "a" / "val_embeddings.npz")
    assert emb["z"].shape[0] == emb["y"].shape[0] == cm.sum()


def test_schema_rejects_typos_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="infonce"):
        ContrastiveParams.model_validate({"loss": "infonc"})
    with pytest.raises(ValidationError, match="extra"):
        ContrastiveParams.model_validate({"temprature": 0.1})
    with pytest.raises(ValidationError, match="needs labels"):
        ContrastiveParams.model_validate({"mode": "pretrain", "loss": "supcon"})


def test_registered_with_schema_and_metrics() -> None:
    spec = resolve_trainer("contrastive")
    assert spec.params_schema is ContrastiveParams
    assert {"best_val_f1", "val_f1", "test_f1"} <= set(spec.fn.result_metrics)  # type: ignore[attr-defined]


def test_bad_dataset_is_a_clear_error() -> None:
    from trainers.data import DataError

    with pytest.raises(DataError, match="NoSuchDataset"):
        train({"dataset": "NoSuchDataset", "epochs": 1})


def test_standalone_command(tmp_path: Path) -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "contrastive_weight" in help_text and "temperature" in help_text
    config = tmp_path / "run.yaml"
    config.write_text("params:\n  dataset: BasicMotions\n  epochs: 1\n")
    done = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "best_val_f1" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "trainers.contrastive", "--set", "loss=infonc"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "error: loss:" in bad.stderr


def test_monitor_val_loss_keeps_the_lowest_loss_epoch() -> None:
    reporter = RecordingReporter()
    result = train({**SMALL_HAR, "epochs": 4, "monitor": "val_loss"}, reporter)
    losses = [m["val_loss"] for _, m in reporter.history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert result["best_epoch"] == best + 1
    assert result["val_loss"] == pytest.approx(losses[best])
    assert result["best_val_loss"] == losses[best]
    assert result["best_val_f1"] == max(m["val_f1"] for _, m in reporter.history)
