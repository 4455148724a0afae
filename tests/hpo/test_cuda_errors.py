"""CUDA failures told apart: out of memory (the worker goes on) and an error that leaves the
process's CUDA context unusable (its trial is queued again and the worker makes way).

No GPU here: the trainers raise the exceptions torch and the CUDA libraries raise."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo import load_study_config, run_study
from hpo.cuda_errors import (
    CUDA_BROKEN_EXIT,
    CudaContextLost,
    is_cuda_oom,
    is_sticky_cuda_error,
)
from hpo.objective import _classify_exception
from tests.conftest import analytic_study
from tests.hpo.test_workers import hpo

ILLEGAL_ACCESS = (
    "CUDA error: an illegal memory access was encountered\n"
    "CUDA kernel errors might be asynchronously reported at some other API call, so the "
    "stacktrace below might be incorrect."
)


class OutOfMemoryError(RuntimeError):
    """Named as torch's: the objective recognises it by name, without importing torch."""


def _chained(outer: str, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError(outer) from exc
    except RuntimeError as exc:
        return exc


@pytest.mark.parametrize(
    "exc",
    [
        OutOfMemoryError("Tried to allocate 2.00 GiB"),
        RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
        RuntimeError("CUDA error: out of memory"),  # a context created on a full GPU
        RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate`"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
        _chained("the model failed", RuntimeError("CUDA out of memory.")),
    ],
)
def test_every_form_of_out_of_memory_is_cuda_oom(exc: BaseException) -> None:
    assert is_cuda_oom(exc) and _classify_exception(exc) == "cuda_oom"


@pytest.mark.parametrize(
    "exc",
    [
        RuntimeError(ILLEGAL_ACCESS),
        RuntimeError("CUDA error: device-side assert triggered"),
        RuntimeError("CUDA error: unspecified launch failure"),
        RuntimeError("CUDA error: uncorrectable ECC error encountered"),
        _chained("loss failed", RuntimeError("CUDA error: misaligned address")),
    ],
)
def test_errors_that_break_the_cuda_context_are_cuda_error(exc: BaseException) -> None:
    assert is_sticky_cuda_error(exc) and _classify_exception(exc) == "cuda_error"


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("bad shape"),
        RuntimeError("CUDA error: invalid device ordinal"),  # the process is still fine
        RuntimeError("mat1 and mat2 shapes cannot be multiplied"),
    ],
)
def test_other_errors_are_plain_exceptions(exc: BaseException) -> None:
    assert _classify_exception(exc) == "exception"


def sticky_cuda_trainer(params: Mapping[str, Any], reporter: Any) -> dict[str, float]:
    """Breaks "its GPU" once (the first call anywhere, by a marker file), then trains."""
    try:
        os.close(os.open(params["marker"], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return {"best_score": 1.0 - float(params["x"]) ** 2}
    raise RuntimeError(ILLEGAL_ACCESS)


def _study(tmp_path: Path, n_trials: int = 3) -> Path:
    data = analytic_study(
        name="cuda",
        storage=f"sqlite:///{tmp_path / 'hpo.db'}",
        budget={"n_trials": n_trials},
        pruner={"name": "none"},
        sampler={"name": "random", "seed": 0},
        trainer={
            "name": "tests.hpo.test_cuda_errors:sticky_cuda_trainer",
            "params": {"marker": str(tmp_path / "broke")},
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    path = tmp_path / "cuda.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _trials(tmp_path: Path) -> list[optuna.trial.FrozenTrial]:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    return optuna.load_study(study_name="cuda", storage=storage).get_trials(deepcopy=False)


def test_a_broken_cuda_context_stops_the_process_and_queues_the_trial(tmp_path: Path) -> None:
    # it was a plain failure: the worker went on, and every later trial failed at once in
    # the broken process, using up the study's budget
    cfg = load_study_config(_study(tmp_path))
    with pytest.raises(CudaContextLost) as info:
        run_study(cfg)
    (line,) = info.value.problems
    assert line.startswith("trial 0: RuntimeError: CUDA error: an illegal memory access")
    assert info.value.exit_code == CUDA_BROKEN_EXIT
    first, retry = _trials(tmp_path)
    assert first.state == TrialState.FAIL and first.user_attrs["fail_reason"] == "cuda_error"
    assert retry.state == TrialState.WAITING and retry.system_attrs["failed_trial"] == 0
    assert retry.params == first.params

    run_study(cfg)  # a fresh process: the retry, then the rest of the budget
    trials = _trials(tmp_path)
    assert [t.state for t in trials] == [TrialState.FAIL, *[TrialState.COMPLETE] * 3]
    assert trials[1].user_attrs["retry_of"] == 0


def test_the_supervisor_restarts_a_worker_whose_cuda_broke(tmp_path: Path) -> None:
    result = hpo("run", str(_study(tmp_path, n_trials=4)), "--workers", "2", timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "CUDA error, exit status 76" in result.stdout + result.stderr
    trials = _trials(tmp_path)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    (broken,) = [t for t in trials if t.state == TrialState.FAIL]
    assert broken.user_attrs["fail_reason"] == "cuda_error"
    assert any(t.system_attrs.get("failed_trial") == broken.number for t in complete)


def test_cli_says_it_in_one_line_with_its_exit_status(tmp_path: Path) -> None:
    result = hpo("run", str(_study(tmp_path)))
    assert result.returncode == CUDA_BROKEN_EXIT, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "can no longer use its GPU" in errors[0]
