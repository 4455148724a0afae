"""Several worker processes on one study: an exact shared budget on SQLite and PostgreSQL.

Everything here runs real ``hpo`` processes against real storages; the helpers are
shared with the GPU and recovery tests.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy.exc
import yaml
from optuna.trial import FrozenTrial, TrialState

from hpo.workers.budget import (
    SURPLUS_ATTR,
    BudgetCallback,
    budget_state,
    counted_trials,
    within_budget,
)
from hpo.workers.identity import WorkerIdentity
from tests.conftest import analytic_study, wait_for

HPO = [sys.executable, "-m", "hpo.cli"]
ROOT = Path(__file__).resolve().parents[2]


def worker_study(
    folder: Path,
    *,
    name: str = "workers",
    storage: str | None = None,
    n_trials: int = 8,
    epochs: int = 4,
    sleep: float = 0.02,
    pruner: dict[str, Any] | None = None,
    workers: dict[str, Any] | None = None,
    startup: str = "auto",
) -> Path:
    """A fast analytic study file for worker tests (artifacts off: they cost seconds a trial).

    ``startup: random`` for tests that list the trials' states one by one: the default
    queues a start-up design (WAITING trials) when the study is created.
    """
    data = analytic_study(
        name=name,
        budget={"n_trials": n_trials},
        artifacts={"enabled": False},
        workers={"heartbeat_interval": 1, **(workers or {})},
        startup=startup,
    )
    if pruner is not None:
        data["pruner"] = pruner
    if storage is not None:
        data["storage"] = storage
    data["trainer"]["params"].update({"epochs": epochs, "sleep_per_epoch": sleep})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def hpo_env(**extra: str) -> dict[str, str]:
    """Environment for ``hpo`` subprocesses: this checkout importable, output unbuffered."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def hpo(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``hpo ARGS`` to completion."""
    return subprocess.run(
        [*HPO, *args], capture_output=True, text=True, timeout=timeout, env=hpo_env(**env)
    )


def hpo_background(*args: str, **env: str) -> subprocess.Popen[str]:
    """Start ``hpo ARGS`` and return at once (output collected for the assertion messages)."""
    return subprocess.Popen(
        [*HPO, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=hpo_env(**env),
    )


def load(name: str, storage: str) -> optuna.Study:
    """The study as plain Optuna sees it."""
    return optuna.load_study(study_name=name, storage=storage)


def try_load(name: str, storage: str) -> optuna.Study | None:
    """The study, or ``None`` while nobody has created it yet.

    Plain Optuna creates the tables of an empty storage too: racing the run that is
    creating them, it may meet a half-made schema (``IntegrityError`` on SQLite).
    """
    try:
        return load(name, storage)
    except (KeyError, sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):
        return None


def dead_local_worker() -> WorkerIdentity:
    """This machine's identity with the pid of a process that has exited: a dead worker."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    here = WorkerIdentity.current()
    return WorkerIdentity(here.host, int(gone.stdout), here.machine, None, None)


def sqlite_url(study_file: Path) -> str:
    """The default storage of a study file written by :func:`worker_study`."""
    return f"sqlite:///{study_file.parent / 'hpo.db'}"


def by_state(trials: list[FrozenTrial], *states: TrialState) -> list[FrozenTrial]:
    """Trials in any of ``states``."""
    return [t for t in trials if t.state in states]


def assert_finished_exactly(study: optuna.Study, n_trials: int) -> None:
    """The study reached ``n_trials`` COMPLETE+PRUNED, with nothing left running or queued."""
    trials = study.get_trials(deepcopy=False)
    assert not by_state(trials, TrialState.RUNNING), "a trial was left RUNNING"
    assert not by_state(trials, TrialState.WAITING), "a queued retry was never run"
    assert len(by_state(trials, TrialState.COMPLETE, TrialState.PRUNED)) == n_trials
    assert counted_trials(trials) == n_trials
    for trial in by_state(trials, TrialState.FAIL):
        assert "locked" not in str(trial.user_attrs.get("fail_message", ""))


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the budget arithmetic, on plain Optuna trials ------------------------------------------


def _trial(number: int, state: TrialState, **system_attrs: Any) -> FrozenTrial:
    trial = optuna.trial.create_trial(
        state=state, value=1.0 if state == TrialState.COMPLETE else None, system_attrs=system_attrs
    )
    trial.number = number
    return trial


def test_retried_and_surplus_trials_do_not_count() -> None:
    trials = [
        _trial(0, TrialState.COMPLETE),
        _trial(1, TrialState.FAIL, **{"hpo:retried": True}),
        _trial(2, TrialState.FAIL),  # failed by Optuna's heartbeat, replaced by trial 4
        _trial(3, TrialState.RUNNING),
        _trial(4, TrialState.WAITING, retry_history=[2], failed_trial=2),
        _trial(5, TrialState.FAIL, **{SURPLUS_ATTR: True}),
    ]
    assert counted_trials(trials) == 1
    assert counted_trials(trials, include_running=True) == 3
    assert counted_trials(trials, include_running=True, include_waiting=False) == 2
    st = budget_state(trials)
    assert (st.finished, st.running, st.waiting, st.replaced) == (1, 1, 1, 3)


def test_a_trial_may_run_only_within_the_first_n_claimed() -> None:
    trials = [_trial(i, TrialState.RUNNING) for i in range(5)]
    assert [within_budget(trials, t.number, 4) for t in trials] == [True] * 4 + [False]
    trials[1] = _trial(1, TrialState.FAIL, **{"hpo:retried": True})
    assert within_budget(trials, 4, 4), "a replaced trial frees its place"


def test_budget_callback_stops_a_study_at_n(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=20, callbacks=[BudgetCallback(3)])
    assert len(study.trials) == 3


# -- real worker processes ------------------------------------------------------------------


def test_four_sqlite_workers_finish_exactly_n_trials(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=12)
    result = hpo("run", str(path), "--workers", "4")
    assert result.returncode == 0, result.stderr
    assert "database is locked" not in result.stderr
    study = load("workers", sqlite_url(path))
    assert_finished_exactly(study, 12)
    trials = study.get_trials(deepcopy=False)
    for trial in by_state(trials, TrialState.FAIL):
        assert trial.system_attrs.get(SURPLUS_ATTR), trial.user_attrs
    owners = {t.user_attrs["worker"] for t in trials}
    assert len(owners) >= 2, "the trials were not shared between worker processes"
    assert {t.user_attrs["worker_slot"] for t in trials} <= {0, 1, 2, 3}
    first = [tuple(sorted(t.params.items())) for t in trials[:4]]
    assert len(set(first)) == 4, "workers must not all propose the same parameters"
    assert "cpu (4 processes)" in result.stdout


def test_resume_with_workers_adds_only_the_missing_trials(tmp_path: Path) -> None:
    path = worker_study(tmp_path, n_trials=3)
    assert hpo("run", str(path)).returncode == 0
    result = hpo("run", str(path), "--workers", "2", "--set", "budget.n_trials=6")
    assert result.returncode == 0, result.stderr
    assert_finished_exactly(load("workers", sqlite_url(path)), 6)


@pytest.mark.postgres
def test_supervised_workers_and_a_joining_worker_on_postgres(
    tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    path = worker_study(tmp_path, name=unique_name, storage=postgres_url, n_trials=12, sleep=0.05)
    supervised = hpo_background("run", str(path), "--workers", "3")
    assert wait_for(lambda: try_load(unique_name, postgres_url) is not None, timeout=60)
    joined = hpo("worker", str(path), timeout=180)
    output, _ = supervised.communicate(timeout=180)
    assert supervised.returncode == 0, output
    assert joined.returncode == 0, joined.stderr
    study = load(unique_name, postgres_url)
    assert_finished_exactly(study, 12)
    hosts = {t.user_attrs["worker"] for t in study.get_trials(deepcopy=False)}
    assert len(hosts) >= 2


@pytest.mark.mysql
def test_supervised_workers_on_mysql(tmp_path: Path, mysql_url: str, unique_name: str) -> None:
    """MySQL has no one-statement upserts here: the workers write through Optuna's own path."""
    path = worker_study(tmp_path, name=unique_name, storage=mysql_url, n_trials=10, sleep=0.05)
    result = hpo("run", str(path), "--workers", "3", timeout=180)
    assert result.returncode == 0, result.stderr
    study = load(unique_name, mysql_url)
    assert_finished_exactly(study, 10)
    assert len({t.user_attrs["worker"] for t in study.get_trials(deepcopy=False)}) >= 2
    resumed = hpo("run", str(path), "--workers", "2", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert_finished_exactly(load(unique_name, mysql_url), 10)


def test_workers_through_the_grpc_storage_proxy(tmp_path: Path) -> None:
    pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")
    port = free_port()
    db = f"sqlite:///{tmp_path / 'proxied.db'}"
    proxy = hpo_background("storage-proxy", "--storage", db, "--port", str(port))
    try:

        def listening() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0

        assert wait_for(listening, timeout=60), "the storage proxy did not start"
        path = worker_study(tmp_path, storage=f"grpc://127.0.0.1:{port}", n_trials=6)
        result = hpo("run", str(path), "--workers", "2")
        assert result.returncode == 0, result.stderr
        assert_finished_exactly(load("workers", db), 6)
    finally:
        proxy.terminate()
        proxy.communicate(timeout=30)


def test_storage_proxy_refuses_a_non_rdb_storage(tmp_path: Path) -> None:
    pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")
    result = hpo("storage-proxy", "--storage", f"journal:///{tmp_path / 'j.log'}")
    assert result.returncode == 2
    assert "serves RDB storages only" in result.stderr


def test_storage_proxy_reads_the_url_from_the_environment_and_masks_it() -> None:
    pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")
    result = hpo("storage-proxy", HPO_STORAGE_URL="postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    assert result.returncode == 2
    assert "hunter2" not in result.stderr
    assert "u:***@" in result.stderr
