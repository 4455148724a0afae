"""Workers that end in ways the run did not ask for: exit status 0 mid-trial, a second run killed.

Real ``hpo`` processes on real SQLite and PostgreSQL storages. The promise: nothing
completed is lost, no trial is left RUNNING, and the study still reaches ``n_trials``.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from rich.console import Console

from hpo import load_study_config, run_study, validate_study_data
from hpo.runner import RunSummary, open_study
from hpo.workers.gpus import WorkerPlan, WorkerSlot
from hpo.workers.identity import SLOT_ENV
from hpo.workers.supervisor import Supervisor, WorkerProcess
from tests.conftest import analytic_study, wait_for
from tests.hpo.test_workers import (
    HPO,
    assert_finished_exactly,
    by_state,
    hpo,
    hpo_background,
    hpo_env,
    load,
    worker_study,
)

STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def _storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(storage url, study name)``: a fresh SQLite file, or the test PostgreSQL server."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'hpo.db'}", "exits"
    return str(request.getfixturevalue("postgres_url")), str(request.getfixturevalue("unique_name"))


def _states(study: optuna.Study) -> str:
    """One line per trial, for the assertion messages."""
    return "\n".join(
        f"{t.number} {t.state.name} reason={t.user_attrs.get('fail_reason')} "
        f"worker={t.user_attrs.get('worker')} failed_trial={t.system_attrs.get('failed_trial')}"
        for t in study.get_trials(deepcopy=False)
    )


def _assert_retried_and_completed(study: optuna.Study, failed: list[int]) -> None:
    """Each of ``failed`` ended ``worker_died`` and a retry with its parameters completed."""
    trials = study.get_trials(deepcopy=False)
    for number in failed:
        original = trials[number]
        assert original.state == TrialState.FAIL
        assert original.user_attrs["fail_reason"] == "worker_died"
        retries = [t for t in trials if original.number in t.system_attrs.get("retry_history", [])]
        assert any(
            t.state == TrialState.COMPLETE and t.params == original.params for t in retries
        ), _states(study)


# -- exit status 0 mid-trial under a supervisor -------------------------------------------------


def exit0_once_per_slot(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """The first trial of each worker slot ends its process with ``os._exit(0)`` mid-trial.

    A marker per slot (not per process): a restarted worker trains normally.
    """
    marker = Path(params["marker_dir"]) / f"slot-{os.environ.get(SLOT_ENV, 'none')}"
    if not marker.exists():
        marker.write_text(str(os.getpid()), encoding="utf-8")
        if reporter is not None:
            reporter.report(1, {"best_score": 0.0})
        os._exit(0)
    return {"best_score": 1.0 - float(params["x"]) ** 2}


@pytest.mark.parametrize("kind", STORAGES)
def test_a_worker_that_exits_0_mid_trial_is_recovered_and_restarted(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Exit status 0 was taken for "done": the slot was never restarted and its trial
    stayed RUNNING; with both workers ending so, the study stopped one trial short and
    the run exited 1."""
    storage, name = _storage(kind, request, tmp_path)
    data = analytic_study(
        name=name,
        storage=storage,
        budget={"n_trials": 4},
        pruner={"name": "none"},
        startup="random",
        artifacts={"enabled": False},
        trainer={
            "name": "tests.hpo.test_worker_exits:exit0_once_per_slot",
            "params": {"marker_dir": str(tmp_path)},
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
        workers={"heartbeat_interval": 1},
    )
    path = tmp_path / "exits.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    result = hpo("run", str(path), "--workers", "2")

    study = load(name, storage)
    assert result.returncode == 0, result.stderr + _states(study)
    assert "died (exit status 0 before the study was finished)" in result.stderr
    assert "unfinished" not in result.stderr
    assert_finished_exactly(study, 4)
    exited = [int(p.read_text()) for p in tmp_path.glob("slot-*")]
    assert len(exited) == 2, "each slot's first trial ended its worker"
    failed = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get("worker", "").rsplit(":", 1)[-1] in {str(pid) for pid in exited}
    ]
    assert len(failed) == 2, _states(study)
    _assert_retried_and_completed(study, failed)


def _supervisor(tmp_path: Path, n_trials: int) -> tuple[Supervisor, optuna.Study]:
    """A supervisor of one CPU slot on a fresh SQLite study (its console kept quiet)."""
    path = worker_study(tmp_path, n_trials=n_trials, pruner={"name": "none"}, startup="random")
    cfg = load_study_config(path)
    plan = WorkerPlan([WorkerSlot(0, "")])
    console = Console(file=io.StringIO(), width=200)
    return Supervisor(cfg, path, plan, console=console), open_study(cfg)


def _exited_with_0(supervisor: Supervisor) -> WorkerProcess:
    """The supervisor's slot, as it is once its (real) worker process exited with status 0."""
    worker = supervisor.workers[0]
    worker.proc = subprocess.Popen([sys.executable, "-c", "pass"], text=True)
    assert worker.proc.wait(timeout=30) == 0
    worker.state = "running"
    return worker


def test_a_worker_that_exits_0_between_trials_with_the_study_unfinished_is_restarted(
    tmp_path: Path,
) -> None:
    """No trial of its own left RUNNING, but the budget is not finished and nobody asked
    it to stop: something inside the worker quit, and the slot must not be lost."""
    supervisor, study = _supervisor(tmp_path, n_trials=3)
    worker = _exited_with_0(supervisor)
    supervisor._on_exit(worker, 0, study, time.monotonic())
    assert worker.state == "restarting"
    assert worker.restarts == 1


def test_a_worker_that_exits_0_once_the_study_is_finished_is_done(tmp_path: Path) -> None:
    """The normal end of a worker stays one: not restarted, nothing recovered."""
    supervisor, study = _supervisor(tmp_path, n_trials=2)
    assert run_study(supervisor.cfg).n_complete == 2
    worker = _exited_with_0(supervisor)
    supervisor._on_exit(worker, 0, study, time.monotonic())
    assert (worker.state, worker.restarts, supervisor.recovered) == ("done", 0, [])


def test_a_worker_that_exits_0_while_stopping_is_not_restarted(tmp_path: Path) -> None:
    """After Ctrl-C the run is ending: an exit 0 then is a stopped worker, not a death."""
    supervisor, study = _supervisor(tmp_path, n_trials=3)
    supervisor.stopping = True
    worker = _exited_with_0(supervisor)
    supervisor._on_exit(worker, 0, study, time.monotonic())
    assert worker.state == "done"
    assert worker.restarts == 0


# -- the single-process `hpo run` beside another run that dies ----------------------------------


_HOLD_A_TRIAL = """
import sys, time
import optuna
from hpo.workers.identity import WorkerIdentity, mark_owner
optuna.logging.set_verbosity(optuna.logging.ERROR)
study = optuna.load_study(study_name=sys.argv[1], storage=sys.argv[2])
trial = study.ask()
mark_owner(trial, WorkerIdentity.current())
trial.suggest_float("x", -2.0, 2.0)
trial.suggest_float("y", -2.0, 2.0)
if trial.suggest_categorical("choice", ["a", "b", "c"]) == "c":
    trial.suggest_float("margin", 0.1, 1.0)
trial.report(0.0, 1)
print(trial.number, flush=True)
time.sleep(600)
"""


@pytest.fixture
def another_run() -> Iterator[list[subprocess.Popen[str]]]:
    """Processes that stand in for another ``hpo run`` mid-trial; killed at the end."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


def _hold_a_trial(
    procs: list[subprocess.Popen[str]], name: str, storage: str
) -> tuple[subprocess.Popen[str], int]:
    """Start a process that runs (holds) one trial of the study as its own; its number."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_A_TRIAL, name, storage],
        stdout=subprocess.PIPE,
        text=True,
        env=hpo_env(),
    )
    procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"the holder did not start: {line!r}"
    return proc, int(line)


def _complete(name: str, storage: str) -> int:
    return len(by_state(load(name, storage).get_trials(deepcopy=False), TrialState.COMPLETE))


@pytest.mark.parametrize("kind", STORAGES)
def test_a_single_process_run_reruns_the_trial_of_another_run_killed_beside_it(
    kind: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    another_run: list[subprocess.Popen[str]],
) -> None:
    """Two ``hpo run`` on one study, one ``kill -9``-ed mid-trial: the survivor exited 0
    as soon as the budget was claimed, the dead run's trial RUNNING and the study one
    short; it looked for dead owners only when it started."""
    storage, name = _storage(kind, request, tmp_path)
    path = worker_study(
        tmp_path,
        name=name,
        storage=storage,
        n_trials=3,
        epochs=3,
        sleep=0.2,
        pruner={"name": "none"},
        startup="random",
    )
    open_study(load_study_config(path))
    holder, held = _hold_a_trial(another_run, name, storage)
    run = hpo_background("run", str(path))
    try:
        assert wait_for(lambda: _complete(name, storage) >= 1, timeout=60), "no trial ran"
        holder.kill()  # the other run dies mid-trial, after this one started
        holder.wait(timeout=30)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    study = load(name, storage)
    assert run.returncode == 0, output + _states(study)
    assert_finished_exactly(study, 3)
    _assert_retried_and_completed(study, [held])


def test_a_single_process_run_waits_for_a_live_runs_trial_and_stops_on_ctrl_c(
    tmp_path: Path, another_run: list[subprocess.Popen[str]]
) -> None:
    """With the budget claimed and another live run's trial still going, the run waits
    for it (it may yet have to re-run it); Ctrl-C ends the wait with status 130 and
    leaves the other run's trial alone."""
    path = worker_study(
        tmp_path, n_trials=2, epochs=2, sleep=0.05, pruner={"name": "none"}, startup="random"
    )
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    open_study(load_study_config(path))
    _, held = _hold_a_trial(another_run, "workers", storage)
    run = subprocess.Popen(
        [*HPO, "run", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=hpo_env(),
    )
    try:
        assert wait_for(lambda: _complete("workers", storage) == 1, timeout=60), "no trial ran"
        time.sleep(1.5)  # the run has nothing left to start: it waits, it does not exit
        assert run.poll() is None, "the run exited with another run's trial still RUNNING"
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, output
    trials = load("workers", storage).get_trials(deepcopy=False)
    assert trials[held].state == TrialState.RUNNING, "a live run's trial is not ours"
    assert len(by_state(trials, TrialState.COMPLETE)) == 1


def _summary(complete: int, failed: int = 0, running: int = 0) -> RunSummary:
    return RunSummary("s", "sqlite://", 0, complete, 0, failed, running, 1.0)


def test_an_unfinished_single_process_run_is_reported_unless_its_timeout_ended_it() -> None:
    """What the run's exit status rests on: finished trials against the budget."""
    from hpo.cli_run import _unfinished

    cfg = validate_study_data(analytic_study(budget={"n_trials": 3}))
    assert _unfinished(cfg, _summary(2, failed=1), None) is None
    note = _unfinished(cfg, _summary(2, running=1), None)
    assert note is not None and "2 of 3 trials finished" in note
    assert _unfinished(cfg, _summary(2), time.time() - 1) is None, "the timeout ended it"
    assert _unfinished(cfg, _summary(2), time.time() + 60) is not None


@pytest.mark.parametrize("workers", [[], ["--workers", "2"]], ids=["in-process", "supervised"])
def test_an_exhausted_grid_ends_the_run_before_n_trials(tmp_path: Path, workers: list[str]) -> None:
    """The grid sampler stops the study once its points are tried: the run ends there,
    exit 0, instead of re-running points until ``n_trials`` or calling it unfinished."""
    data = analytic_study(
        "grid",
        sampler={"name": "grid"},
        pruner={"name": "none"},
        budget={"n_trials": 6},
        trainer={"name": "analytic", "params": {"epochs": 2}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0, "step": 2.0}},
    )
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = hpo("run", str(path), *workers)
    assert result.returncode == 0, result.stderr
    assert "unfinished" not in result.stderr
    trials = optuna.load_study(study_name="grid", storage=f"sqlite:///{tmp_path / 'hpo.db'}")
    points = [t.params["x"] for t in trials.get_trials(states=(TrialState.COMPLETE,))]
    assert sorted(set(points)) == [-1.0, 1.0]
    assert len(points) <= 2 + len(workers) // 2  # two workers may each draw the last point
