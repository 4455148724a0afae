"""Mode dispatch, the metric names studies may use, and the SSL/align study files."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers import NullReporter, resolve_trainer
from trainers.modes import train_mode
from trainers.params import ContrastiveParams

STUDIES = Path(__file__).resolve().parents[2] / "studies"
MODE_STUDIES = [
    "simclr_pretrain.yaml",
    "ssl_pretrain_finetune.yaml",
    "ssl_finetune.yaml",
    "loss_comparison.yaml",
]


def test_every_reported_metric_is_declared() -> None:
    declared = set(resolve_trainer("contrastive").fn.result_metrics)  # type: ignore[attr-defined]
    wanted = {
        # pretrain
        "probe_f1", "probe_accuracy", "best_probe_f1", "knn_f1", "knn_accuracy", "best_knn_f1",
        "ssl_loss", "ssl_chance_loss", "per_dim_std", "silhouette", "embedding_diversity",
        "retrieval_acc", "retrieval_chance", "effective_batch", "test_probe_f1", "test_knn_f1",
        # align
        "val_cosine", "best_val_cosine", "val_mse", "val_retrieval_acc", "best_val_retrieval_acc",
        "train_cosine", "test_cosine", "test_mse", "test_retrieval_acc",
    }  # fmt: skip
    assert wanted <= declared


def test_supervised_is_not_a_mode() -> None:
    with pytest.raises(ValueError, match="pretrain, finetune and align"):
        train_mode(ContrastiveParams(), NullReporter())


@pytest.mark.parametrize("name", MODE_STUDIES)
def test_study_files_validate(name: str) -> None:
    from hpo.config import load_study_config
    from hpo.errors import ConfigError

    text = (STUDIES / name).read_text(encoding="utf-8")
    assert text.startswith("#")  # the header says what it answers and what it costs
    try:
        cfg = load_study_config(STUDIES / name)
    except ConfigError as exc:  # its header says to make its input (data, an encoder) first
        missing = ("mode: align: no file ", "no encoder checkpoint at ")
        assert all(any(m in p for m in missing) for p in exc.problems), exc.problems
        return
    assert cfg.trainer.name == "contrastive"


def test_each_mode_reports_exactly_its_metrics(tmp_path: Path) -> None:
    """MODE_METRICS is what `hpo validate` checks an objective against: it must be true."""
    import subprocess
    import sys

    from trainers import RecordingReporter
    from trainers.contrastive import train
    from trainers.params import MODE_METRICS

    base = {
        "dataset": "synthetic_har",
        "synthetic_n_train": 120,
        "synthetic_n_test": 30,
        "model": "conv",
        "dim": 16,
        "epochs": 1,
        "device": "cpu",
        "evaluate_test": True,
    }
    align_file = tmp_path / "align.npz"
    subprocess.run([sys.executable, "-m", "trainers.align", str(align_file)], check=True)
    runs = {
        "supervised": {},
        "pretrain": {"mode": "pretrain", "loss": "infonce", "save_dir": str(tmp_path / "pre")},
        "finetune": {"mode": "finetune", "init_from": str(tmp_path / "pre")},
        "align": {"mode": "align", "dataset": str(align_file), "loss": "cosine"},
    }
    for mode, overrides in runs.items():
        reporter = RecordingReporter()
        result = train({**base, **overrides}, reporter)
        reported = set(result).union(*(set(m) for _, m in reporter.history))
        assert reported == set(MODE_METRICS[mode]), mode
    declared = set(resolve_trainer("contrastive").fn.result_metrics)  # type: ignore[attr-defined]
    assert declared == {m for metrics in MODE_METRICS.values() for m in metrics}
