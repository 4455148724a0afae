"""Fault injection: killed workers, a stopped supervisor, stale heartbeats, GPU out-of-memory.

The promise under test: no trial is ever left RUNNING, no completed trial is lost, and
the study still reaches ``n_trials`` COMPLETE+PRUNED; on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from hpo import load_study_config, run_study, validate_study_data
from hpo.runner import open_study
from hpo.storages import open_storage
from hpo.workers.budget import counted_trials
from hpo.workers.heartbeat import HEARTBEAT_ATTR
from hpo.workers.identity import WorkerIdentity, mark_owner
from hpo.workers.oom import smaller_batch
from hpo.workers.recovery import recover_worker, requeue, retry_copy
from hpo.workers.worker import fail_stale_trials
from tests.conftest import analytic_study, wait_for
from tests.hpo.test_workers import (
    assert_finished_exactly,
    by_state,
    dead_local_worker,
    hpo,
    hpo_background,
    load,
    sqlite_url,
    try_load,
    worker_study,
)

STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")


def _storage(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'hpo.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _name(kind: str, request: pytest.FixtureRequest) -> str:
    return "workers" if kind == "sqlite" else str(request.getfixturevalue("unique_name"))


def _worker_pid(trial: optuna.trial.FrozenTrial) -> int:
    return int(trial.user_attrs["worker"].rsplit(":", 1)[1])


def _running_with_steps(name: str, storage: str, steps: int) -> optuna.trial.FrozenTrial | None:
    study = try_load(name, storage)
    if study is None:
        return None
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if len(trial.intermediate_values) >= steps and "worker" in trial.user_attrs:
            return trial
    return None


def _states(trials: list[optuna.trial.FrozenTrial]) -> str:
    """One line per trial: what a flaky recovery failure needs to be understood."""
    keys = ("failed_trial", "retry_history", "hpo:retried", "hpo:surplus")
    return "\n".join(
        f"{t.number} {t.state.name} reason={t.user_attrs.get('fail_reason')} "
        f"worker={t.user_attrs.get('worker')} steps={len(t.intermediate_values)} "
        + " ".join(f"{k}={t.system_attrs.get(k)}" for k in keys)
        for t in trials
    )


def _complete_numbers(name: str, storage: str) -> set[int]:
    trials = load(name, storage).get_trials(deepcopy=False)
    return {t.number for t in by_state(trials, TrialState.COMPLETE, TrialState.PRUNED)}


@pytest.mark.parametrize("kind", STORAGES)
def test_worker_killed_mid_trial_loses_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage, name = _storage(kind, request, tmp_path), _name(kind, request)
    path = worker_study(
        tmp_path,
        name=name,
        storage=storage,
        n_trials=4,
        # 2.4 s left after the second report: under load (parallel tests) a shorter trial
        # could finish between being seen running and the kill, and the kill hit another
        epochs=10,
        sleep=0.3,
        pruner={"name": "none"},
    )
    run = hpo_background("run", str(path), "--workers", "2")
    victim: list[optuna.trial.FrozenTrial] = []

    def found() -> bool:
        trial = _running_with_steps(name, storage, 2)
        if trial is not None:
            victim.append(trial)
        return trial is not None

    assert wait_for(found, timeout=90), "no trial got going"
    killed = victim[0]
    done_before = _complete_numbers(name, storage)
    os.kill(_worker_pid(killed), signal.SIGKILL)
    output, _ = run.communicate(timeout=180)
    assert run.returncode == 0, output
    assert (
        f"(pid {_worker_pid(killed)}) died (SIGKILL); trial {killed.number} queued again" in output
    )

    study = load(name, storage)
    assert_finished_exactly(study, 4)
    assert done_before <= _complete_numbers(name, storage), "a completed trial was lost"
    trials = study.get_trials(deepcopy=False)
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL
    assert dead.user_attrs["fail_reason"] == "worker_died"
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == dead.params
    assert retry.user_attrs["seed"] == dead.user_attrs["seed"], "a retry repeats the same run"
    for step, value in dead.intermediate_values.items():
        assert retry.intermediate_values[step] == value, "intermediate values are kept"


@pytest.mark.parametrize("kind", STORAGES)
def test_sigterm_to_the_supervisor_records_running_trials_and_resume_finishes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    storage, name = _storage(kind, request, tmp_path), _name(kind, request)
    path = worker_study(
        tmp_path,
        name=name,
        storage=storage,
        n_trials=4,
        epochs=10,  # running when the signal comes, also under load
        sleep=0.3,
        pruner={"name": "none"},
        startup="random",  # the test lists the queued trials: only retries
    )
    run = hpo_background("run", str(path), "--workers", "2")
    assert wait_for(lambda: _running_with_steps(name, storage, 1) is not None, timeout=90)
    started = time.monotonic()
    run.send_signal(signal.SIGTERM)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 130, output
    assert time.monotonic() - started < 30, "stopping must not wait for trials to finish"
    assert "interrupted: running trials were recorded and queued again" in output

    trials = load(name, storage).get_trials(deepcopy=False)
    assert not by_state(trials, TrialState.RUNNING), output
    interrupted = [t for t in trials if t.user_attrs.get("fail_reason") == "interrupted"]
    assert interrupted, output
    queued = by_state(trials, TrialState.WAITING)
    # A worker asking for its next trial as the signal came may take a retry just queued
    # by the other: that retry is interrupted in turn and queued again, so compare the
    # original trials, and check that every interrupted trial has a retry.
    originals = {t.system_attrs.get("failed_trial", t.number) for t in interrupted}
    assert {t.system_attrs["failed_trial"] for t in queued} == originals, _states(trials)
    named = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    assert {t.number for t in interrupted} <= named, _states(trials)
    assert counted_trials(trials) == len(by_state(trials, TrialState.COMPLETE))
    done_before = _complete_numbers(name, storage)

    resumed = hpo("run", str(path), "--workers", "2", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished_exactly(load(name, storage), 4)
    assert done_before <= _complete_numbers(name, storage)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_single_worker_stopped_by_a_signal_records_its_trial(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """``hpo worker`` as Kubernetes and Slurm run it: one process, SIGTERM before the kill."""
    path = worker_study(
        tmp_path, n_trials=3, epochs=20, sleep=0.2, pruner={"name": "none"}, startup="random"
    )
    storage = sqlite_url(path)
    worker = hpo_background("worker", str(path))
    assert wait_for(lambda: _running_with_steps("workers", storage, 2) is not None, timeout=90)
    worker.send_signal(sig)
    output, _ = worker.communicate(timeout=30)
    assert worker.returncode == 130, output
    assert "Traceback" not in output
    trials = load("workers", storage).get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs["fail_reason"] == "interrupted"
    assert trials[1].intermediate_values == trials[0].intermediate_values


class _SignalAfterTraining:
    """A trial hook during whose bookkeeping (say, artifacts) a SIGTERM arrives."""

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        return params

    def after(self, trial: optuna.Trial, *args: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def test_a_signal_after_training_keeps_the_trained_trial(tmp_path: Path) -> None:
    data = analytic_study(
        name="late_signal",
        storage=f"sqlite:///{tmp_path / 'hpo.db'}",
        budget={"n_trials": 3},
        pruner={"name": "none"},
        startup="random",
    )
    with pytest.raises(KeyboardInterrupt):
        run_study(validate_study_data(data), hooks=[_SignalAfterTraining()])
    trials = load("late_signal", f"sqlite:///{tmp_path / 'hpo.db'}").get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE], "it was FAIL (interrupted)"


def interrupted_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Ctrl-C arrives while the trainer runs, after a report to the pruning companion."""
    reporter.report(1, {"score": 0.5, "best_score": 0.5, "loss": 0.5})
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the handler raises KeyboardInterrupt in here
    raise AssertionError("not interrupted")


@pytest.mark.parametrize(
    "objective",
    [
        {"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
        {"metric": "loss", "direction": "minimize"},
    ],
    ids=["multi-objective", "prune-direction"],
)
def test_an_interrupt_ends_the_pruning_companion_trial(
    tmp_path: Path, objective: dict[str, Any]
) -> None:
    """The companion trial (``<name>::prune::<metric>``) was left RUNNING forever."""
    url = f"sqlite:///{tmp_path / 'hpo.db'}"
    objective = {**objective, "prune_on": "score", "prune_direction": "maximize"}
    data = analytic_study(
        name="companion",
        storage=url,
        objective=objective,
        budget={"n_trials": 2},
        pruner={"name": "median"},
        startup="random",
        trainer={"name": "tests.hpo.test_recovery:interrupted_trainer", "params": {}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    with pytest.raises(KeyboardInterrupt):
        run_study(validate_study_data(data))
    (trial,) = [t for t in load("companion", url).get_trials() if t.state != TrialState.WAITING]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "interrupted"
    companion = load("companion::prune::score", url).get_trials()
    assert [t.number for t in companion] == [trial.user_attrs["prune_companion_trial"]]
    assert [t.state for t in companion] == [TrialState.FAIL], "was RUNNING, forever"


def test_workers_stop_cleanly_when_their_supervisor_is_killed(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=4, epochs=6, sleep=0.3, pruner={"name": "none"})
    storage = sqlite_url(path)
    run = hpo_background("run", str(path), "--workers", "2")
    assert wait_for(lambda: _running_with_steps("workers", storage, 1) is not None, timeout=90)
    workers = {
        _worker_pid(t)
        for t in load("workers", storage).get_trials(states=(TrialState.RUNNING,))
        if "worker" in t.user_attrs
    }
    run.kill()
    run.communicate(timeout=30)

    def workers_gone() -> bool:
        alive = []
        for pid in workers:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        return not alive

    assert wait_for(workers_gone, timeout=30), "orphaned workers kept running"
    trials = load("workers", storage).get_trials(deepcopy=False)
    assert not by_state(trials, TrialState.RUNNING)
    assert by_state(trials, TrialState.WAITING), "the interrupted trials were queued again"


@pytest.mark.postgres
def test_stale_heartbeat_trial_is_retried_with_its_values(
    tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    """A worker on another machine vanished: only its heartbeat tells."""
    path = worker_study(
        tmp_path,
        name=unique_name,
        storage=postgres_url,
        n_trials=3,
        pruner={"name": "none"},
        workers={"heartbeat_interval": 1, "grace_period": 2, "max_retries": 1},
        startup="random",  # the trial made stale is the study's only one
    )
    cfg = load_study_config(path)
    study = open_study(cfg)
    trial = study.ask()
    remote = WorkerIdentity(host="gpu-node-7", pid=4242, machine="elsewhere", slot=0)
    mark_owner(trial, remote)
    trial.set_user_attr("seed", 1234)
    trial.suggest_float("x", -2.0, 2.0)
    for step in (1, 2):
        trial.report(0.1 * step, step)
    storage: Any = study._storage  # _CachedStorage over RDBStorage: has record_heartbeat
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3.0)
    fail_stale_trials(study)

    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL
    (retry,) = by_state(trials, TrialState.WAITING)
    assert retry.system_attrs["retry_history"] == [0]
    assert retry.system_attrs["hpo:retry_reason"] == "stale"
    assert retry.intermediate_values == {1: 0.1, 2: 0.2}
    assert "worker" not in retry.user_attrs, "the retry must not look owned by the dead worker"
    assert counted_trials(trials, include_running=True) == 1

    summary = run_study(cfg)
    assert summary.n_complete == 3 and summary.n_retried == 1
    done = load(unique_name, postgres_url).get_trials(deepcopy=False)
    rerun = next(t for t in done if t.system_attrs.get("failed_trial") == 0)
    assert rerun.state == TrialState.COMPLETE
    assert rerun.user_attrs["seed"] == 1234
    assert rerun.user_attrs["retry_of"] == 0


def test_storages_without_optuna_heartbeats_get_ours(tmp_path: Path) -> None:
    """Journal files and the gRPC proxy have no Optuna heartbeat: trials carry hpo's own."""
    path = worker_study(
        tmp_path,
        storage=f"journal:///{tmp_path / 'journal.log'}",
        n_trials=3,
        pruner={"name": "none"},
        workers={"heartbeat_interval": 1, "grace_period": 2},
    )
    cfg = load_study_config(path)
    study = open_study(cfg)
    trial = study.ask()
    mark_owner(trial, WorkerIdentity(host="gone", pid=1, machine="elsewhere"))
    trial.suggest_float("x", -2.0, 2.0)
    trial.report(0.5, 1)
    study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, time.time() - 60)

    summary = run_study(cfg)
    assert (summary.n_complete, summary.n_retried) == (3, 1)
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "stale"
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state == TrialState.COMPLETE and retry.intermediate_values[1] == 0.5
    for done in by_state(trials, TrialState.COMPLETE):
        assert isinstance(done.system_attrs[HEARTBEAT_ATTR], float)


def test_a_new_run_recovers_trials_of_a_dead_local_process(tmp_path: Path) -> None:
    """``hpo run`` killed with -9 and started again: the old trial is retried at once."""
    path = worker_study(tmp_path, n_trials=3, pruner={"name": "none"})
    cfg = load_study_config(path)
    study = open_study(cfg)
    dead = dead_local_worker()
    trial = study.ask()
    mark_owner(trial, dead)
    trial.suggest_float("x", -2.0, 2.0)

    summary = run_study(cfg)
    assert summary.n_complete == 3
    assert summary.n_retried == 1
    trials = load("workers", sqlite_url(path)).get_trials(deepcopy=False)
    assert trials[0].user_attrs["fail_reason"] == "worker_died"
    assert_finished_exactly(load("workers", sqlite_url(path)), 3)


_KILLED_BETWEEN_RETRY_AND_FLAG = """
import os, signal, sys
import optuna
from hpo.workers import recovery
from hpo.workers.identity import WorkerIdentity, mark_owner
study = optuna.load_study(study_name="workers", storage=sys.argv[1])
trial = study.ask()
mark_owner(trial, WorkerIdentity.current())
trial.suggest_float("x", -2.0, 2.0)
trial.set_user_attr("fail_reason", "interrupted")  # as TrialGuard._record_interrupt does
recovery._after_retry_queued = lambda: os.kill(os.getpid(), signal.SIGKILL)  # 2nd Ctrl-C
recovery.requeue(study, study._storage.get_trial(trial._trial_id), "interrupted",
                 max_retries=2, fail=False)
"""


def test_a_worker_killed_while_queueing_its_interrupted_trial_loses_nothing(
    tmp_path: Path,
) -> None:
    """A second Ctrl-C SIGKILLs the worker between the two writes of its interrupted trial.

    The retry went in after the ``hpo:retried`` flag, so the kill left a flag with no
    retry: the supervisor trusted the flag, failed the trial unretried, and a resume
    sampled a replacement (the configuration never ran). Now the retry goes first.
    """
    path = worker_study(tmp_path, n_trials=3, pruner={"name": "none"}, startup="random")
    url = sqlite_url(path)
    open_study(load_study_config(path))
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_BETWEEN_RETRY_AND_FLAG, url], capture_output=True, text=True
    )
    assert child.returncode == -signal.SIGKILL, child.stderr
    study = load("workers", url)
    (trial,) = study.get_trials(states=(TrialState.RUNNING,))
    assert recover_worker(
        study, trial.user_attrs["worker"], reason="interrupted", max_retries=2
    ) == [0]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING], "one retry"
    assert trials[1].system_attrs["retry_history"] == [0]
    assert trials[1].params == trials[0].params
    assert counted_trials(trials, include_running=True) == 1


@pytest.mark.parametrize("retry_queued", [False, True], ids=["flag-only", "retry-only"])
def test_a_dead_workers_trial_is_retried_once_whatever_its_flag_says(
    tmp_path: Path, retry_queued: bool
) -> None:
    """What a kill between the two writes leaves (old order: the flag; new: the retry).

    The supervisor's recovery reads which retries exist instead of trusting the flag: a
    flag without a retry was failed unretried (its configuration lost); a retry without a
    flag got a second retry.
    """
    path = worker_study(tmp_path, n_trials=3, pruner={"name": "none"}, startup="random")
    study = open_study(load_study_config(path))
    dead = dead_local_worker()
    trial = study.ask()
    mark_owner(trial, dead)
    trial.suggest_float("x", -2.0, 2.0)
    trial.set_user_attr("fail_reason", "interrupted")
    if retry_queued:
        study.add_trial(retry_copy(study._storage.get_trial(trial._trial_id), "interrupted"))
    else:
        study._storage.set_trial_system_attr(trial._trial_id, "hpo:retried", True)

    assert recover_worker(study, dead.key, reason="interrupted", max_retries=2) == [0]
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[1].system_attrs["retry_history"] == [0]
    assert trials[1].params == trials[0].params
    assert counted_trials(trials, include_running=True) == 1


def test_crash_retries_are_bounded(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=2, workers={"max_retries": 1}, startup="random")
    study = open_study(load_study_config(path))
    first = study.ask()
    first.suggest_float("x", -2.0, 2.0)
    assert requeue(study, study._storage.get_trial(first._trial_id), "worker_died", max_retries=1)
    second = study.ask()  # pops the retry
    assert second.params == first.params
    frozen = study._storage.get_trial(second._trial_id)
    assert not requeue(study, frozen, "worker_died", max_retries=1)
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert counted_trials(trials) == 1, "the last failure counts; the retried one does not"
    interrupted = study.ask()
    interrupted.suggest_float("x", -2.0, 2.0)
    frozen = study._storage.get_trial(interrupted._trial_id)
    for _ in range(3):  # interrupts are never the trial's fault: always queued again
        assert requeue(study, frozen, "interrupted", max_retries=0)
        frozen = study._storage.get_trial(study.ask()._trial_id)


def test_a_dead_workers_twin_on_another_machine_keeps_its_trial(tmp_path: Path) -> None:
    """Containers repeat hostnames and pids: only this machine's ``host:pid`` is ours."""
    path = worker_study(tmp_path, n_trials=4, startup="random", workers={"max_retries": 0})
    study = open_study(load_study_config(path))
    dead = dead_local_worker()
    twin = WorkerIdentity(dead.host, dead.pid, "another-machine-token", None, None)
    ours, theirs = study.ask(), study.ask()
    mark_owner(ours, dead)
    mark_owner(theirs, twin)
    # ours is failed, but out of retries (max_retries 0): not reported as queued again
    assert recover_worker(study, dead.key, max_retries=0) == []
    assert study._storage.get_trial(ours._trial_id).state == TrialState.FAIL
    assert study._storage.get_trial(theirs._trial_id).state == TrialState.RUNNING
    again = study.ask()
    mark_owner(again, dead)
    assert recover_worker(study, dead.key, max_retries=1) == [again.number]


def killer_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """A configuration that takes its worker down every time (think: a segfault)."""
    if reporter is not None:
        reporter.report(1, {"best_score": 0.0})
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def test_a_trial_that_always_kills_its_worker_is_bounded(tmp_path: Path) -> None:
    data = analytic_study(
        name="killer",
        budget={"n_trials": 2},
        pruner={"name": "none"},
        artifacts={"enabled": False},
        trainer={"name": "tests.hpo.test_recovery:killer_trainer", "params": {}},
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
        workers={"max_retries": 1, "max_restarts": 1},
        startup="random",  # the test lists every trial: no queued start-up design
    )
    path = tmp_path / "killer.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = hpo("run", str(path), "--gpus", "0")  # one supervised worker process
    assert result.returncode == 1, result.stderr
    assert "not restarted (workers.max_restarts=1)" in result.stderr
    assert "the study is unfinished" in result.stderr
    trials = load("killer", f"sqlite:///{tmp_path / 'hpo.db'}").get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert [t.user_attrs["fail_reason"] for t in trials] == ["worker_died", "worker_died"]
    assert trials[1].system_attrs["failed_trial"] == 0
    assert counted_trials(trials) == 1, "the last crash counts: retries are bounded"


def lapsing_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """The first trial stalls past the grace period: another worker fails it meanwhile."""
    marker = Path(params["marker"])
    if not marker.exists():
        marker.touch()
        other = optuna.load_study(study_name=params["study"], storage=open_storage(params["url"]))
        (mine,) = other.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        requeue(other, mine, "stale", max_retries=1)  # as the other worker's recovery does
        if params["report_after"]:  # the trainer writes again on waking, or only returns
            reporter.report(1, {"best_score": 0.5})
    return {"best_score": float(params["x"])}


@pytest.mark.parametrize("storage", ["sqlite", "journal"])
@pytest.mark.parametrize("report_after", [True, False], ids=["reports", "returns"])
def test_a_worker_whose_trial_was_failed_while_it_stalled_goes_on(
    tmp_path: Path, report_after: bool, storage: str
) -> None:
    """On journal storages too: there the worker exited 1 (the journal's ``_backend`` is
    its log file, which the check for a trial ended elsewhere took for the database)."""
    url = (
        f"sqlite:///{tmp_path / 'hpo.db'}"
        if storage == "sqlite"
        else f"journal:///{tmp_path / 'hpo.log'}"
    )
    data = analytic_study(
        name="lapsed",
        storage=url,
        budget={"n_trials": 3},
        pruner={"name": "none"},
        startup="random",
        trainer={
            "name": "tests.hpo.test_recovery:lapsing_trainer",
            "params": {
                "marker": str(tmp_path / "lapsed"),
                "url": url,
                "study": "lapsed",
                "report_after": report_after,
            },
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
    )
    summary = run_study(validate_study_data(data))  # was: ValueError "Cannot tell a FAIL trial."
    trials = optuna.load_study(study_name="lapsed", storage=open_storage(url)).get_trials()
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "stale"
    assert summary.n_complete == 3
    assert [t.state for t in trials[1:]] == [TrialState.COMPLETE] * 3
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert retry.params == trials[0].params


# -- GPU out of memory ------------------------------------------------------------------------


class OutOfMemoryError(RuntimeError):
    """Stands in for ``torch.cuda.OutOfMemoryError`` (the objective matches the class name)."""


def oom_trainer(params: Mapping[str, Any], reporter: Any = None) -> dict[str, float]:
    """Runs out of 'GPU memory' above a batch of 32."""
    if params["batch_size"] > 32:
        raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return {
        "best_score": 1.0 - float(params["x"]) ** 2,
        "batch_size_used": float(params["batch_size"]),
        "grad_accum_used": float(params.get("grad_accum", 1)),
    }


def _oom_study(tmp_path: Path, on_oom: str, batch_size: int) -> Path:
    data = analytic_study(
        name="oom",
        budget={"n_trials": 2},
        pruner={"name": "none"},
        artifacts={"enabled": False},
        trainer={
            "name": "tests.hpo.test_recovery:oom_trainer",
            "params": {"batch_size": batch_size, "grad_accum": 1},
        },
        space={"x": {"type": "float", "low": -1.0, "high": 1.0}},
        workers={"on_oom": on_oom},
    )
    path = tmp_path / "oom.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_out_of_memory_is_a_recorded_failure_and_the_worker_goes_on(tmp_path: Path) -> None:
    summary = run_study(load_study_config(_oom_study(tmp_path, "fail", 64)))
    assert summary.n_failed == 2
    trials = optuna.load_study(study_name="oom", storage=f"sqlite:///{tmp_path / 'hpo.db'}").trials
    for trial in trials:
        assert trial.state == TrialState.FAIL
        assert trial.user_attrs["fail_reason"] == "cuda_oom"
        assert "x" in trial.params, "the parameters that caused it are recorded"


def test_out_of_memory_is_retried_once_with_half_the_batch(tmp_path: Path) -> None:
    summary = run_study(load_study_config(_oom_study(tmp_path, "retry_smaller_batch", 64)))
    assert summary.n_complete == 2 and summary.n_retried == 2 and summary.n_failed == 0
    trials = optuna.load_study(study_name="oom", storage=f"sqlite:///{tmp_path / 'hpo.db'}").trials
    for oom in [t for t in trials if t.state == TrialState.FAIL]:
        assert oom.user_attrs["fail_reason"] == "cuda_oom"
        (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == oom.number]
        assert retry.state == TrialState.COMPLETE
        assert retry.params == oom.params
        assert retry.user_attrs["param_overrides"] == {"batch_size": 32, "grad_accum": 2}
        assert retry.user_attrs["batch_size_used"] == 32.0
        assert retry.user_attrs["grad_accum_used"] == 2.0


def test_a_retry_that_still_runs_out_of_memory_is_not_retried_again(tmp_path: Path) -> None:
    summary = run_study(load_study_config(_oom_study(tmp_path, "retry_smaller_batch", 256)))
    assert summary.n_complete == 0 and summary.n_failed == 2 and summary.n_retried == 2


def test_smaller_batch() -> None:
    assert smaller_batch({"batch_size": 64}) == {"batch_size": 32, "grad_accum": 2}
    assert smaller_batch({"batch_size": 33, "grad_accum": 4}) == {"batch_size": 16, "grad_accum": 8}
    assert smaller_batch({"batch_size": 1}) is None
    assert smaller_batch({"batch_size": 3}) is None, "1 is below the built-in trainer's floor"
    assert smaller_batch({"lr": 0.1}) is None
    # evaluation is often the memory peak: a retry that kept its chunk ran out again
    assert smaller_batch({"batch_size": 8, "eval_batch_size": 1024}) == {
        "batch_size": 4,
        "grad_accum": 2,
        "eval_batch_size": 512,
    }
    assert smaller_batch({"batch_size": 8}, {"eval_batch_size": 1024, "grad_accum": 1}) == {
        "batch_size": 4,
        "grad_accum": 2,
        "eval_batch_size": 512,
    }


def test_a_run_recovers_another_machines_stale_trial_when_the_budget_is_otherwise_used(
    tmp_path: Path,
) -> None:
    """The laptop-reboot case: the trial's worker is gone, only its heartbeat says so."""
    path = worker_study(
        tmp_path,
        n_trials=1,
        pruner={"name": "none"},
        workers={"heartbeat_interval": 1, "grace_period": 2},
        startup="random",
    )
    cfg = load_study_config(path)
    study = open_study(cfg)
    trial = study.ask()
    mark_owner(trial, WorkerIdentity(host="laptop", pid=4242, machine="before-reboot"))
    trial.suggest_float("x", -2.0, 2.0)
    storage: Any = study._storage
    storage.record_heartbeat(trial._trial_id)
    time.sleep(3.0)
    summary = run_study(cfg)  # counted the RUNNING trial and ran nothing, exiting 0
    assert summary.n_complete == 1 and summary.n_retried == 1
    assert not by_state(open_study(cfg, create=False).get_trials(), TrialState.RUNNING)


def test_a_retry_an_interrupt_kept_from_being_added_is_queued_at_the_next_start(
    tmp_path: Path,
) -> None:
    from datetime import datetime, timedelta

    from hpo.workers.budget import RETRIED_ATTR
    from hpo.workers.recovery import requeue_lost_retries

    path = worker_study(tmp_path, n_trials=4, pruner={"name": "none"}, startup="random")
    cfg = load_study_config(path)
    study = open_study(cfg)
    storage: Any = study._storage
    for _ in range(4):
        trial = study.ask()
        trial.suggest_float("x", -2.0, 2.0)
    flagged, interrupted, crashed, retried = study.get_trials(deepcopy=False)
    # flagged as retried, then the second Ctrl-C: no retry was added
    storage.set_trial_system_attr(flagged._trial_id, RETRIED_ATTR, True)
    storage.set_trial_user_attr(flagged._trial_id, "fail_reason", "interrupted")
    # ended interrupted before its retry could be flagged or added
    storage.set_trial_user_attr(interrupted._trial_id, "fail_reason", "interrupted")
    storage.set_trial_user_attr(crashed._trial_id, "fail_reason", "exception")  # not ours
    storage.set_trial_user_attr(retried._trial_id, "fail_reason", "interrupted")
    for trial in (flagged, interrupted, crashed, retried):
        storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    requeue(study, storage.get_trial(retried._trial_id), "interrupted", max_retries=1)

    assert requeue_lost_retries(study) == [], "a retry is added milliseconds later"
    soon = datetime.now() + timedelta(minutes=2)  # the storage may still be retrying (120 s)
    assert requeue_lost_retries(study, now=soon) == []
    later = datetime.now() + timedelta(minutes=10)
    assert requeue_lost_retries(study, now=later) == [flagged.number, interrupted.number]
    assert requeue_lost_retries(study, now=later) == [], "queued once"
    waiting = by_state(study.get_trials(deepcopy=False), TrialState.WAITING)
    assert sorted(t.system_attrs["retry_history"][-1] for t in waiting) == [0, 1, 3]

    # another start queued the same retry at the same moment: the later copy ends unrun
    from hpo.workers.recovery import _end_duplicate_retries, retry_copy

    twin = retry_copy(storage.get_trial(flagged._trial_id), "interrupted")
    twin.system_attrs["hpo:queued_by"] = "other-start"
    study.add_trial(twin)
    _end_duplicate_retries(study, {flagged.number}, "other-start")
    duplicate = study.get_trials(deepcopy=False)[-1]
    assert duplicate.state == TrialState.FAIL and duplicate.system_attrs["hpo:surplus"]
    assert len(by_state(study.get_trials(deepcopy=False), TrialState.WAITING)) == 3
    trials = study.get_trials(deepcopy=False)
    assert counted_trials(trials, include_running=True, include_waiting=False) == 1


def test_a_signal_while_a_retry_is_queued_waits_for_the_retry() -> None:
    # raise_signal: delivered to this thread and handled before it returns (os.kill may
    # land on another thread, whose handler call waits for the main thread's next check).
    # The handler held signals go back to is Python's own: a pytest-xdist worker starts
    # with SIGINT ignored, where a held Ctrl-C is rightly ignored too.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _held_signals_wait_for_the_block()
    finally:
        signal.signal(signal.SIGINT, previous)


def _held_signals_wait_for_the_block() -> None:
    from hpo.workers.recovery import signals_held

    done = []
    with pytest.raises(KeyboardInterrupt), signals_held():
        signal.raise_signal(signal.SIGINT)
        done.append("retry queued")
    assert done == ["retry queued"]
    with pytest.raises(KeyboardInterrupt), signals_held():  # asked twice: at once
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        done.append("not reached")
    assert done == ["retry queued"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_only_the_worker_on_the_same_machine_owns_a_trial() -> None:
    from hpo.workers.identity import owned_by

    me = WorkerIdentity(host="vm", pid=1, machine="boot-a-ns-1")
    twin = WorkerIdentity(host="vm", pid=1, machine="boot-a-ns-2")  # host-network container
    trial = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs=twin.attrs())
    assert not owned_by(trial, me) and owned_by(trial, twin)
    legacy = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"worker": "vm:1"})
    assert owned_by(legacy, me), "trials recorded before machine tokens: host:pid decides"
