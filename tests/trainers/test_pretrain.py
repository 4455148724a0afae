"""mode: pretrain end to end on small synthetic HAR: metrics, losses, collapse, GradCache."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import torch
from pydantic import ValidationError

from trainers import RecordingReporter, TrainingFailed
from trainers.building import build_loss, build_model
from trainers.checkpoints import load_encoder
from trainers.contrastive import train
from trainers.params import ContrastiveParams
from trainers.pretrain import _Stepper, ssl_chance_level
from trainers.synthetic import make_synthetic_har

TINY: dict[str, Any] = {
    "mode": "pretrain",
    "dataset": "synthetic_har",
    "synthetic_n_train": 240,
    "synthetic_n_test": 60,
    "model": "conv",
    "dim": 16,
    "proj_dim": 16,
    "batch_size": 32,
    "epochs": 2,
    "device": "cpu",
}

PER_EPOCH = {
    "ssl_loss",
    "ssl_chance_loss",
    "retrieval_acc",
    "retrieval_chance",
    "embedding_diversity",
    "per_dim_std",
    "silhouette",
    "lr",
}
PROBE = {"probe_f1", "probe_accuracy", "knn_f1", "knn_accuracy", "best_probe_f1", "best_knn_f1"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_simclr_reports_ssl_metrics_and_probes_every_eval_every(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    result = train({**TINY, "epochs": 3, "eval_every": 2, "evaluate_test": True}, reporter)
    steps = [step for step, _ in reporter.history]
    assert steps == [1, 2, 3]
    for step, metrics in reporter.history:
        assert set(metrics) >= PER_EPOCH
        # probe and k-NN every eval_every epochs, and always at the last epoch
        assert (set(metrics) >= PROBE) == (step in (2, 3))
        # NT-Xent's collapse level for a batch of 32 pairs
        assert metrics["ssl_chance_loss"] == pytest.approx(math.log(2 * 32 - 1))
        assert metrics["retrieval_chance"] == pytest.approx(1 / 32)
        assert all(math.isfinite(v) for v in metrics.values())
    probe_f1s = [m["probe_f1"] for _, m in reporter.history if "probe_f1" in m]
    assert result["best_probe_f1"] == max(probe_f1s)
    assert 0.0 <= result["knn_f1"] <= 1.0 and -1.0 <= result["silhouette"] <= 1.0
    assert {"test_probe_f1", "test_knn_f1", "effective_batch", "ssl_loss"} <= set(result)
    # labels matter to the probe: far better than chance (6 classes) on this easy data
    assert result["best_probe_f1"] > 0.5


@pytest.mark.parametrize("loss", ["barlow_twins", "vicreg"])
def test_other_ssl_losses_train(loss: str) -> None:
    result = train({**TINY, "epochs": 1, "loss": loss, "proto_proj": "mlp"})
    assert math.isfinite(result["ssl_loss"])
    expected = 16.0 if loss == "barlow_twins" else 25.0 * (1 - math.sqrt(1e-4))
    assert result["ssl_chance_loss"] == pytest.approx(expected)


@pytest.mark.parametrize("loss", ["supcon", "triplet"])
def test_label_losses_are_refused_with_a_clear_message(loss: str) -> None:
    with pytest.raises(
        ValidationError, match="needs labels and cannot be used with mode: pretrain"
    ):
        train({**TINY, "loss": loss})


COLLAPSING: dict[str, Any] = {
    **TINY,
    "epochs": 10,
    # VICReg without its variance (and covariance) term and without augmentation (the
    # views differ by dropout only): the invariance term is left, which a constant output
    # minimises; a far too high learning rate gets there in a few epochs.
    "loss": "vicreg",
    "vicreg_var_weight": 0.0,
    "vicreg_cov_weight": 0.0,
    "augment": "none",
    "dropout": 0.5,
    "lr": 0.3,
    "grad_clip": 0.0,
    "scheduler": "none",
    "eval_every": 100,
}


def test_collapse_is_detected_and_stops_the_run() -> None:
    reporter = RecordingReporter()
    with pytest.raises(TrainingFailed, match="collapsed") as info:
        train(COLLAPSING, reporter)
    assert info.value.reason == "collapse"
    assert len(reporter.history) < 10  # stopped early
    last = reporter.history[-1][1]
    assert last["per_dim_std"] < 1e-3  # the collapsed epoch is still reported


def test_one_validation_series_is_no_collapse() -> None:
    """One series has no spread; the detector reads the training series instead."""
    tiny = {**TINY, "synthetic_n_train": 12, "val_fraction": 0.05, "batch_size": 8}
    reporter = RecordingReporter()
    train(tiny, reporter)  # used to fail at epoch 1: "collapsed ... std 0.00e+00"
    assert [m["per_dim_std"] > 1e-3 for _, m in reporter.history] == [True, True]
    assert all(m["embedding_diversity"] != 0 for _, m in reporter.history)


def test_collapse_is_the_trials_fail_reason() -> None:
    from hpo.config import validate_study_data
    from hpo.objective import FAIL_REASON, Objective

    cfg = validate_study_data(
        {
            "name": "collapse",
            "objective": {"metric": "best_probe_f1", "direction": "maximize"},
            "budget": {"n_trials": 1},
            "trainer": {"name": "contrastive", "params": COLLAPSING},
        }
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(cfg, train), n_trials=1, catch=(Exception,))
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.FAIL
    assert trial.user_attrs[FAIL_REASON] == "collapse"


def test_grad_accum_enlarges_the_batch_the_loss_sees() -> None:
    result = train({**TINY, "epochs": 1, "batch_size": 16, "grad_accum": 4})
    assert result["effective_batch"] == 64
    assert result["ssl_chance_loss"] == pytest.approx(math.log(2 * 64 - 1))


def test_grad_accum_trains_every_whole_batch_each_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """3 batches of 64 with grad_accum 2: a group of 2, then a shorter group of 1."""
    groups: list[int] = []
    step = _Stepper.__call__

    def counting(self: _Stepper, micro: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        groups.append(len(micro))
        return step(self, micro)

    monkeypatch.setattr(_Stepper, "__call__", counting)
    train({**TINY, "epochs": 1, "batch_size": 64, "grad_accum": 2})
    n_train = round(TINY["synthetic_n_train"] * (1 - 0.2))
    assert n_train // 64 == 3 and groups == [2, 1]


def test_cached_accumulation_gives_the_big_batch_gradient() -> None:
    """GradCache: same loss, gradient and BatchNorm statistics as one graph over all views."""
    p = ContrastiveParams.model_validate(
        {**TINY, "dropout": 0.3, "attn_dropout": 0.3, "proto_proj": "mlp"}
    )
    loss_fn = build_loss(p)
    assert loss_fn is not None
    torch.manual_seed(0)
    model = build_model(p, 9, 6).train()
    twin = build_model(p, 9, 6).train()
    twin.load_state_dict(model.state_dict())
    micro = [torch.randn(2 * 8, 9, 32) for _ in range(3)]

    torch.manual_seed(1)
    loss, _ = _Stepper(model, model, loss_fn, torch.device("cpu"), None)(micro)

    torch.manual_seed(1)  # same dropout masks, one graph over every micro-batch
    halves = [twin(v).projection.chunk(2) for v in micro]
    ref = loss_fn(torch.cat([h[0] for h in halves]), torch.cat([h[1] for h in halves]))
    ref.backward()

    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)
    for (name, a), b in zip(model.named_parameters(), twin.parameters(), strict=True):
        if name.startswith("classifier."):  # not part of the SSL graph
            assert a.grad is None and b.grad is None
            continue
        assert a.grad is not None and b.grad is not None, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6)
    for a, b in zip(model.buffers(), twin.buffers(), strict=True):
        torch.testing.assert_close(a, b)


def test_chance_levels() -> None:
    p = ContrastiveParams(mode="pretrain", loss="infonce")
    loss = build_loss(p)
    assert loss is not None
    assert ssl_chance_level(loss, 128, 64) == pytest.approx(math.log(255))
    mse = build_loss(ContrastiveParams(mode="pretrain", loss="mse"))
    assert mse is not None and math.isnan(ssl_chance_level(mse, 128, 64))


def test_encoder_checkpoints_and_artifacts_written(tmp_path: Path) -> None:
    params = {**TINY, "epochs": 1, "seed": 7, "artifact_dir": str(tmp_path / "art")}
    train({**params, "save_dir": str(tmp_path / "run-{seed}")})
    files = {p.name for p in (tmp_path / "run-7").iterdir()}
    assert files == {"state.pt", "encoder.pt", "encoder_last.pt"}
    assert {p.name for p in (tmp_path / "art").iterdir()} == {"checkpoint.pt", "val_embeddings.npz"}
    # what the hpo artifact store keeps is itself an encoder checkpoint for init_from
    assert load_encoder(tmp_path / "art" / "checkpoint.pt").arch["dim"] == 16
    assert load_encoder(tmp_path / "run-7").in_channels == 9


def test_early_stopping_counts_evaluated_epochs_only() -> None:
    # patience 1 with a probe every 2 epochs must not stop before the first probe
    reporter = RecordingReporter()
    result = train({**TINY, "epochs": 3, "eval_every": 2, "early_stopping_patience": 1}, reporter)
    assert result["epochs_run"] >= 2
    assert "probe_f1" in reporter.history[1][1]


def test_plateau_schedule_steps_on_the_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    # it was never stepped in pretraining: the rate stayed constant
    seen: list[float] = []
    step = torch.optim.lr_scheduler.ReduceLROnPlateau.step

    def recording_step(self: Any, metrics: float, *args: Any) -> None:
        seen.append(float(metrics))
        step(self, metrics, *args)

    monkeypatch.setattr(torch.optim.lr_scheduler.ReduceLROnPlateau, "step", recording_step)
    reporter = RecordingReporter()
    train({**TINY, "epochs": 3, "eval_every": 2, "scheduler": "plateau"}, reporter)
    probe_f1s = [m["probe_f1"] for _, m in reporter.history if "probe_f1" in m]
    assert seen == pytest.approx(probe_f1s) and len(seen) == 2  # evaluated epochs only


@pytest.mark.parametrize("field", ["save_dir", "artifact_dir"])
def test_a_folder_that_cannot_be_made_stops_before_the_first_epoch(
    tmp_path: Path, field: str
) -> None:
    # a raw NotADirectoryError from mkdir, after the first epoch or after the whole run
    (tmp_path / "afile").write_text("x")
    reporter = RecordingReporter()
    with pytest.raises(TrainingFailed) as info:
        train({**TINY, field: str(tmp_path / "afile" / "sub")}, reporter)
    assert info.value.reason == "bad_params"
    assert str(info.value) == (
        f"{field}: cannot create the folder {tmp_path}/afile/sub "
        "(a part of the path is a file, not a folder)"
    )
    assert reporter.history == []


# --------------------------------------------------------------------------- unlabelled series


def _har_npz(path: Path, labels: str) -> str:
    """Synthetic HAR as an .npz: no ``y`` (``none``), half NaN (``half``), or none usable."""
    x, y, x_test, y_test = make_synthetic_har(n_train=240, n_test=60, length=64)
    arrays: dict[str, Any] = {"X": x}
    if labels == "half":
        partial = y.astype(float)
        partial[::2] = np.nan
        arrays["y"] = partial
    elif labels == "none_usable":  # a test split, but NaN for every label
        arrays.update(y=np.full(len(y), np.nan), X_test=x_test, y_test=np.full(len(y_test), np.nan))
    np.savez(path, **arrays)
    return str(path)


def test_unlabelled_series_pretrain_judged_by_their_effective_rank(tmp_path: Path) -> None:
    reporter = RecordingReporter()
    params = {**TINY, "dataset": _har_npz(tmp_path / "x.npz", "none"), "save_dir": str(tmp_path)}
    result = train({**params, "model": "crossformer", "epochs": 2}, reporter)
    for _, metrics in reporter.history:
        assert {"rankme", "best_rankme", "ssl_loss", "per_dim_std"} <= set(metrics)
        assert not (set(metrics) & (PROBE | {"silhouette"}))
    ranks = [m["rankme"] for _, m in reporter.history]
    assert result["best_rankme"] == max(ranks)
    assert result["best_epoch"] == 1 + ranks.index(max(ranks))  # the best epoch by RankMe
    assert 1.0 <= result["best_rankme"] <= TINY["dim"]
    # "one prototype per class" has no classes to count here
    assert load_encoder(tmp_path / "encoder.pt").arch["n_prototypes"] == 6


def test_partly_labelled_series_probe_on_the_labelled_ones(tmp_path: Path) -> None:
    result = train({**TINY, "dataset": _har_npz(tmp_path / "half.npz", "half")})
    assert set(result) >= PROBE and {"silhouette", "rankme", "best_rankme"} <= set(result)
    assert result["best_probe_f1"] > 0.3  # 6 classes: chance is about 0.17


def test_a_test_score_needs_labelled_series_to_probe(tmp_path: Path) -> None:
    params = {**TINY, "dataset": _har_npz(tmp_path / "t.npz", "none_usable")}
    with pytest.raises(TrainingFailed, match="evaluate_test probes the embeddings") as info:
        train({**params, "epochs": 1, "evaluate_test": True})
    assert info.value.reason == "data"


def test_a_diverged_run_fails_as_nan_before_its_embeddings_are_judged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """NaN weights made the SVD of RankMe (or the probe) raise a linear-algebra error."""
    import trainers.pretrain as pretrain

    real_step = torch.optim.AdamW.step

    def poisoned_step(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        out = real_step(self, *args, **kwargs)  # type: ignore[arg-type]
        with torch.no_grad():
            for group in self.param_groups:
                for param in group["params"]:
                    param.fill_(math.nan)
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", poisoned_step)
    assert pretrain.rankme(torch.full((4, 3), math.nan)).isnan()
    with pytest.raises(TrainingFailed, match="SSL loss is nan at epoch 1") as info:
        train({**TINY, "epochs": 2})
    assert info.value.reason == "nan"
