"""resume: a stopped run continued from save_dir ends exactly like an uninterrupted one."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from trainers import RecordingReporter, TrainingFailed
from trainers.checkpoints import (
    STATE_FILE,
    TrainingCheckpoint,
    atomic_save,
    capture_rng,
    load_encoder,
    make_dir,
    prepare_output_dirs,
    resolve_save_dir,
    restore_rng,
)
from trainers.contrastive import train
from trainers.params import ContrastiveParams
from trainers.reporter import USER_ERROR_REASONS

BASE: dict[str, Any] = {
    "dataset": "synthetic_har",
    "synthetic_n_train": 160,
    "synthetic_n_test": 30,
    "model": "conv",
    "dim": 16,
    "proj_dim": 16,
    "batch_size": 32,
    "device": "cpu",
    # dropout and EMA make sure the global RNG and the EMA weights are restored too
    "dropout": 0.2,
    "ema_decay": 0.9,
    "epochs": 8,
}
TIMING = {"train_seconds", "epoch_seconds", "peak_memory_mb"}


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _Killed(Exception):
    """Stands in for the process dying after an epoch's checkpoint was written."""


class _KillAfter:
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.history: list[tuple[int, dict[str, float]]] = []

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        self.history.append((step, dict(metrics)))
        if step >= self.epoch:
            raise _Killed


def _same(a: Mapping[str, float]) -> dict[str, float]:
    return {k: v for k, v in a.items() if k not in TIMING}


@pytest.mark.parametrize(
    "mode",
    [
        {},
        {"mode": "pretrain", "eval_every": 3, "grad_accum": 2, "mixup_views": 0.2},
    ],
    ids=["supervised", "pretrain"],
)
def test_interrupted_run_resumes_to_the_same_result(tmp_path: Path, mode: dict[str, Any]) -> None:
    params = {**BASE, **mode}
    straight_reports = RecordingReporter()
    straight = train(params, straight_reports)

    killed = _KillAfter(4)
    with pytest.raises(_Killed):
        train({**params, "save_dir": str(tmp_path)}, killed)
    assert (tmp_path / STATE_FILE).exists()
    resumed_reports = RecordingReporter()
    resumed = train({**params, "save_dir": str(tmp_path), "resume": True}, resumed_reports)

    assert [s for s, _ in resumed_reports.history] == [5, 6, 7, 8]
    assert _same(resumed) == _same(straight)
    both = killed.history + resumed_reports.history
    assert [_same(m) for _, m in both] == [_same(m) for _, m in straight_reports.history]


@pytest.mark.parametrize("mode", ["supervised", "pretrain"])
def test_four_epochs_then_eight_equals_eight(tmp_path: Path, mode: str) -> None:
    # An LR schedule that does not depend on the run length, so stopping at 4 and
    # continuing to 8 is the same trajectory as 8 in one go.
    params = {**BASE, "mode": mode, "scheduler": "none"}
    straight = train(params)
    train({**params, "epochs": 4, "save_dir": str(tmp_path)})
    resumed = train({**params, "save_dir": str(tmp_path), "resume": True})
    keys = (
        ("best_val_f1", "final_val_f1", "train_loss")
        if mode == "supervised"
        else ("probe_f1", "knn_f1", "ssl_loss", "silhouette", "per_dim_std")
    )
    assert {k: resumed[k] for k in keys} == {k: straight[k] for k in keys}
    assert resumed["epochs_run"] == 8


def test_resume_without_a_checkpoint_starts_fresh(tmp_path: Path) -> None:
    params = {**BASE, "epochs": 2}
    fresh = train({**params, "save_dir": str(tmp_path / "new"), "resume": True})
    assert _same(fresh) == _same(train(params))


def test_resume_with_other_params_is_refused(tmp_path: Path) -> None:
    train({**BASE, "epochs": 1, "save_dir": str(tmp_path)})
    with pytest.raises(TrainingFailed, match="lr") as info:
        train({**BASE, "epochs": 2, "lr": 0.01, "save_dir": str(tmp_path), "resume": True})
    assert info.value.reason == "resume_mismatch"


def test_a_pretrain_plateau_run_refuses_a_resume_that_moves_its_lr_cuts(tmp_path: Path) -> None:
    # the plateau schedule steps on the probe F1 of evaluated epochs: eval_every and
    # probe_epochs decide when the learning rate is cut
    pretrain = {**BASE, "mode": "pretrain", "scheduler": "plateau", "epochs": 1}
    train({**pretrain, "save_dir": str(tmp_path)})
    for change in ({"eval_every": 3}, {"probe_epochs": 1}):
        with pytest.raises(TrainingFailed, match=next(iter(change))) as info:
            train({**pretrain, **change, "epochs": 2, "save_dir": str(tmp_path), "resume": True})
        assert info.value.reason == "resume_mismatch"
    # with another schedule they only change what is measured, not the trajectory
    cosine = {**BASE, "mode": "pretrain", "epochs": 1}
    train({**cosine, "save_dir": str(tmp_path / "cosine")})
    resumed = {**cosine, "eval_every": 3, "probe_epochs": 1, "epochs": 2, "resume": True}
    assert train({**resumed, "save_dir": str(tmp_path / "cosine")})


def test_an_oom_retry_resumes_with_half_the_batch_and_twice_the_accumulation(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # workers.on_oom: retry_smaller_batch runs the trial again at the same seed, so in the
    # same save_dir: runs/{seed}; the first try's state.pt refused it as resume_mismatch
    params = {**BASE, "epochs": 4, "save_dir": str(tmp_path / "{seed}"), "resume": True}
    straight = RecordingReporter()
    train({**BASE, "epochs": 4}, straight)
    with pytest.raises(_Killed):
        train(params, _KillAfter(2))
    retry = RecordingReporter()
    with caplog.at_level("WARNING", logger="trainers.checkpoints"):
        result = train({**params, "batch_size": 16, "grad_accum": 2}, retry)
    assert "micro-batch changed from batch_size 32 x grad_accum 1 to 16 x 2" in caplog.text
    assert [s for s, _ in retry.history] == [3, 4] and result["epochs_run"] == 4
    # 128 series: 4 optimizer steps an epoch either way, so the schedule goes on in step
    want = [m["lr"] for _, m in straight.history[2:]]
    assert [m["lr"] for _, m in retry.history] == pytest.approx(want, rel=1e-12)
    saved = torch.load(tmp_path / "0" / STATE_FILE, weights_only=True)
    assert (saved["epoch"], saved["params"]["batch_size"], saved["params"]["grad_accum"]) == (
        4,
        16,
        2,
    )


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"batch_size": 16}, "batch_size: 32 -> 16) (batch_size and grad_accum may change"),
        ({"batch_size": 16, "grad_accum": 2, "lr": 0.01}, "lr: 0.003 -> 0.01)"),
    ],
    ids=["effective_batch", "and_lr"],
)
def test_a_resume_may_change_the_micro_batch_only(
    tmp_path: Path, change: dict[str, Any], shown: str
) -> None:
    train({**BASE, "epochs": 1, "save_dir": str(tmp_path)})
    with pytest.raises(TrainingFailed) as info:
        train({**BASE, "epochs": 2, "save_dir": str(tmp_path), "resume": True, **change})
    assert info.value.reason == "resume_mismatch"
    assert shown in str(info.value)


def test_a_new_micro_batch_places_the_schedule_in_this_runs_steps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a half batch of the ragged tail trains at half the batch size: 2 optimizer steps an
    # epoch became 3, and the per-step schedule would lag 1 step per finished epoch
    first = ContrastiveParams(epochs=4, warmup_epochs=1, save_dir=str(tmp_path))
    old = _linear_checkpoint(tmp_path, first, steps_per_epoch=2)
    for _ in range(2 * 2):
        old.optimizer.step()
        old.schedule.step_batch()
    old.save(2, {})
    retry = first.model_copy(update={"batch_size": 16, "grad_accum": 2})

    resumed = _linear_checkpoint(tmp_path, retry, steps_per_epoch=3)
    assert resumed.load() == (2, {})
    straight = _linear_checkpoint(tmp_path / "straight", retry, steps_per_epoch=3)
    for _ in range(2 * 3):
        straight.optimizer.step()
        straight.schedule.step_batch()
    scheduler = resumed.schedule.scheduler
    assert scheduler is not None and scheduler.last_epoch == 6
    rates = []
    for _ in range(2 * 3):  # the rest of the run goes step for step with a straight one
        rates.append(resumed.optimizer.param_groups[0]["lr"])
        assert rates[-1] == pytest.approx(straight.optimizer.param_groups[0]["lr"], rel=1e-12)
        for run in (resumed, straight):
            run.optimizer.step()
            run.schedule.step_batch()
    assert rates[-1] < rates[0]

    # a loop that does not say its steps per epoch keeps the count, and says so
    untold = _linear_checkpoint(tmp_path, retry, steps_per_epoch=3, tell=False)
    with caplog.at_level("WARNING", logger="trainers.checkpoints"):
        untold.load()
    assert untold.schedule.scheduler is not None
    assert untold.schedule.scheduler.last_epoch == 4
    assert "may lag by up to 2 steps" in caplog.text


def test_finished_run_resumes_to_its_result(tmp_path: Path) -> None:
    params = {**BASE, "epochs": 2, "save_dir": str(tmp_path)}
    first = train(params)
    reporter = RecordingReporter()
    again = train({**params, "resume": True}, reporter)
    assert reporter.history == []
    assert _same(again) == _same(first)


def test_atomic_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    atomic_save({"a": torch.ones(2)}, tmp_path / "x.pt")
    atomic_save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    assert torch.load(tmp_path / "x.pt", weights_only=True)["a"].sum() == 0


def test_save_dir_placeholders() -> None:
    p = ContrastiveParams(save_dir="runs/{loss}/{seed}", seed=3)
    assert resolve_save_dir(p) == Path("runs/infonce/3")
    # the schema refuses an unknown one up front (it failed every trial of a study) ...
    with pytest.raises(ValidationError, match=r"unknown placeholder \{trial\}"):
        ContrastiveParams(save_dir="runs/{trial}")
    # ... and params built without validation still get the one-line failure
    unchecked = ContrastiveParams().model_copy(update={"save_dir": "runs/{trial}"})
    with pytest.raises(TrainingFailed, match="unknown placeholder"):
        resolve_save_dir(unchecked)


def test_a_checkpoint_from_before_attn_dropout_ran_at_dropout(tmp_path: Path) -> None:
    """Attention weights were dropped at ``dropout`` until ``attn_dropout`` split off."""
    params = {**BASE, "epochs": 1, "save_dir": str(tmp_path)}
    train(params)
    state_path = tmp_path / STATE_FILE
    state = torch.load(state_path, weights_only=False)
    del state["params"]["attn_dropout"]  # as the older trainer wrote it
    atomic_save(state, state_path)
    with pytest.raises(TrainingFailed, match=r"attn_dropout: 0\.2 -> 0\.0") as info:
        train({**params, "epochs": 2, "resume": True})
    assert info.value.reason == "resume_mismatch"
    resumed = train({**params, "epochs": 2, "resume": True, "attn_dropout": 0.2})
    assert resumed["epochs_run"] == 2


def test_cosine_restarts_state_of_the_old_scheduler_resumes(tmp_path: Path) -> None:
    # Until 2026-12-07 cosine_restarts was torch's CosineAnnealingWarmRestarts. A state it
    # wrote resumes: its step count carries over and the schedule goes on as now.
    params = {**BASE, "scheduler": "cosine_restarts", "t_0": 2, "min_lr_ratio": 0.1}
    straight = RecordingReporter()
    train(params, straight)
    with pytest.raises(_Killed):
        train({**params, "save_dir": str(tmp_path)}, _KillAfter(3))
    state = torch.load(tmp_path / STATE_FILE, map_location="cpu", weights_only=True)
    steps = state["scheduler"]["last_epoch"]
    lr = ContrastiveParams(**params).lr
    groups = [
        {"params": [torch.nn.Parameter(torch.zeros(1))]} for _ in state["scheduler"]["base_lrs"]
    ]
    optimizer = torch.optim.SGD(groups, lr=lr)
    old = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=2 * steps // 3, eta_min=lr * 0.1
    )
    for _ in range(steps):
        optimizer.step()
        old.step()
    state["scheduler"] = old.state_dict()
    atomic_save(state, tmp_path / STATE_FILE)

    resumed = RecordingReporter()
    train({**params, "save_dir": str(tmp_path), "resume": True}, resumed)
    assert [s for s, _ in resumed.history] == [4, 5, 6, 7, 8]
    want = [m["lr"] for _, m in straight.history[3:]]
    assert [m["lr"] for _, m in resumed.history] == pytest.approx(want, rel=1e-9)


def test_random_state_from_another_kind_of_device_reseeds(caplog: pytest.LogCaptureFixture) -> None:
    # a CUDA generator's state is 16 bytes (seed and offset), a CPU one's 5056
    generator = torch.Generator()
    state = capture_rng(torch.device("cpu"), generator)
    state["generator"] = torch.zeros(16, dtype=torch.uint8)
    torch.manual_seed(1)
    with caplog.at_level("WARNING", logger="trainers.checkpoints"):
        restore_rng(state, torch.device("cpu"), generator)
    assert "another kind of device" in caplog.text
    first = torch.rand(3, generator=generator)
    torch.manual_seed(1)
    restore_rng(state, torch.device("cpu"), generator)
    torch.testing.assert_close(torch.rand(3, generator=generator), first)  # reproducible


def _linear_checkpoint(
    folder: Path, params: ContrastiveParams, steps_per_epoch: int = 1, *, tell: bool = True
) -> TrainingCheckpoint:
    """The training state of a tiny linear model with the trainer's own schedule;
    ``tell``: the checkpoint is told the loop's steps per epoch."""
    from trainers.building import make_schedule

    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    return TrainingCheckpoint(
        folder,
        params,
        torch.device("cpu"),
        model=model,
        optimizer=optimizer,
        schedule=make_schedule(params, optimizer, steps_per_epoch=steps_per_epoch),
        generator=torch.Generator(),
        steps_per_epoch=steps_per_epoch if tell else None,
    )


def test_a_plateau_state_with_the_old_relative_threshold_resumes_absolute(tmp_path: Path) -> None:
    # until 2026-12-07 plateau compared relatively: a flat -val_loss counted as better
    params = ContrastiveParams(scheduler="plateau", plateau_patience=1)
    old = _linear_checkpoint(tmp_path, params)
    old.save(1, {})
    state = torch.load(tmp_path / STATE_FILE, weights_only=True)
    state["scheduler"]["threshold_mode"] = "rel"  # as the older trainer wrote it
    atomic_save(state, tmp_path / STATE_FILE)
    resumed = _linear_checkpoint(tmp_path, params)
    assert resumed.load() is not None
    rates = []
    for _ in range(4):
        resumed.schedule.step_epoch(-0.5)
        rates.append(resumed.optimizer.param_groups[0]["lr"])
    assert rates == [1.0, 1.0, 0.5, 0.5]


def _blocked(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Folders that cannot be created, and the reason each is refused with."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "under_a_file": (afile / "sub", "a part of the path is a file, not a folder"),
        "is_a_file": (afile, "a file of that name exists"),
    }


@pytest.mark.parametrize("case", ["under_a_file", "is_a_file"])
@pytest.mark.parametrize("field", ["save_dir", "artifact_dir"])
def test_a_folder_that_cannot_be_made_is_a_user_error(
    tmp_path: Path, case: str, field: str
) -> None:
    # mkdir's NotADirectoryError / FileExistsError surfaced raw, read as a trainer bug
    path, why = _blocked(tmp_path)[case]
    with pytest.raises(TrainingFailed) as info:
        make_dir(path, field)
    assert info.value.reason == "bad_params" and info.value.reason in USER_ERROR_REASONS
    assert str(info.value) == f"{field}: cannot create the folder {path} ({why})"
    assert info.value.__cause__ is None


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_folder_in_proc_is_a_user_error() -> None:
    with pytest.raises(TrainingFailed, match=r"^save_dir: cannot create the folder /proc/xx \("):
        make_dir(Path("/proc/xx"), "save_dir")


def test_output_folders_are_made_before_training(tmp_path: Path) -> None:
    p = ContrastiveParams(save_dir=str(tmp_path / "s" / "{seed}"), artifact_dir=str(tmp_path / "a"))
    assert prepare_output_dirs(p) == tmp_path / "s" / "0"
    assert (tmp_path / "s" / "0").is_dir() and (tmp_path / "a").is_dir()
    assert prepare_output_dirs(ContrastiveParams()) is None


@pytest.mark.parametrize("field", ["save_dir", "artifact_dir"])
def test_training_stops_before_the_first_epoch_when_a_folder_cannot_be_made(
    tmp_path: Path, field: str
) -> None:
    # artifact_dir failed after the last epoch, save_dir after the first
    path, _ = _blocked(tmp_path)["under_a_file"]
    reporter = RecordingReporter()
    with pytest.raises(TrainingFailed, match=f"^{field}: cannot create the folder") as info:
        train({**BASE, "epochs": 1, field: str(path)}, reporter)
    assert info.value.reason == "bad_params"
    assert reporter.history == []


def _pickled_object(path: Path) -> None:
    import pickle

    with open(path, "wb") as fh:
        pickle.dump({"a": object()}, fh, protocol=2)


@pytest.mark.parametrize(
    ("write", "why"),
    [
        (lambda p: p.write_text("epochs: 3\nloss: infonce\n"), "not a torch file"),
        (lambda p: p.write_text("hello"), "not a torch file"),
        (lambda p: p.write_bytes(b""), "the file is empty"),
        (_pickled_object, "it holds Python objects, not only tensors and plain data"),
        (lambda p: torch.save([1, 2], p), "it holds a list, not a dict"),
        (
            lambda p: p.write_bytes(_torch_bytes()[:40]),
            "a damaged or truncated torch file",
        ),
    ],
    ids=["yaml_text", "text", "empty", "pickled_object", "list", "truncated"],
)
def test_init_from_a_file_that_is_no_checkpoint_is_one_clean_line(
    tmp_path: Path, write: Any, why: str
) -> None:
    # torch's message spanned lines and advised weights_only=False (running the file's code)
    path = tmp_path / "encoder.pt"
    write(path)
    with pytest.raises(TrainingFailed) as info:
        load_encoder(path)
    assert info.value.reason == "bad_checkpoint"
    assert str(info.value) == (
        f"init_from: {path} is not a checkpoint written by this trainer ({why})"
    )


def _torch_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"a": torch.ones(3)}, buffer)
    return buffer.getvalue()


def test_resume_from_a_state_file_that_is_no_checkpoint_names_resume(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE).write_text("not torch")
    params = ContrastiveParams(save_dir=str(tmp_path), resume=True)
    checkpoint = _linear_checkpoint(tmp_path, params)
    with pytest.raises(TrainingFailed, match=r"^resume: .* is not a checkpoint written by this"):
        checkpoint.load()
