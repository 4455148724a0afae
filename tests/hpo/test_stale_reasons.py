"""Trials failed by Optuna's heartbeat check say why, and a kill mid-recovery loses nothing.

Optuna fails a stale trial first and calls the stale-trial callback after, when a
finished trial takes no attributes: such trials used to end FAIL with no ``fail_reason``
("fail: unknown"), and a process killed between the two left no retry and nothing that
said one was due, so the trial's parameters never ran again.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.storages._rdb import models
from optuna.trial import TrialState

from hpo import load_study_config
from hpo.runner import open_study
from hpo.workers.budget import RETRIED_ATTR, counted_trials
from hpo.workers.identity import WorkerIdentity, mark_owner
from hpo.workers.recovery import fail_stale_trials, requeue, requeue_lost_retries
from tests.hpo.test_workers import by_state, hpo_env, worker_study

STORAGES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")

REMOTE = WorkerIdentity(host="gpu-node-7", pid=4242, machine="elsewhere", slot=0)
"""A worker on another machine: only its heartbeat can tell that it is gone."""


def _where(kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """Storage URL and study name for ``kind``."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'hpo.db'}", "stale"
    return str(request.getfixturevalue("postgres_url")), str(request.getfixturevalue("unique_name"))


def _study_file(
    tmp_path: Path, storage: str | None = None, name: str = "stale", max_retries: int = 1
) -> tuple[Path, str]:
    """A study with Optuna heartbeats (1 s, grace 2 s) and its storage URL (SQLite by default)."""
    storage = storage or f"sqlite:///{tmp_path / 'hpo.db'}"
    path = worker_study(
        tmp_path,
        name=name,
        storage=storage,
        n_trials=2,
        pruner={"name": "none"},
        workers={"heartbeat_interval": 1, "grace_period": 2, "max_retries": max_retries},
        startup="random",  # the trial made stale is the study's first
    )
    return path, storage


def _abandoned_trial(path: Path, storage: str) -> optuna.Study:
    """The study, with one RUNNING trial of a vanished remote worker whose heartbeat is old.

    The heartbeat row is dated back instead of waiting out the grace period: the same
    state, seconds sooner. The study returned is opened anew, as by another worker: the
    one that asked for the trial keeps it in memory as its own.
    """
    cfg = load_study_config(path)
    study = open_study(cfg)
    trial = study.ask()
    mark_owner(trial, REMOTE)
    trial.suggest_float("x", -2.0, 2.0)
    trial.report(0.5, 1)
    backend: Any = study._storage
    backend.record_heartbeat(trial._trial_id)
    engine = sqlalchemy.create_engine(storage)
    try:
        with engine.begin() as connection:
            connection.execute(
                sqlalchemy.update(models.TrialHeartbeatModel)
                .where(models.TrialHeartbeatModel.trial_id == trial._trial_id)
                .values(heartbeat=datetime(2000, 1, 1))
            )
    finally:
        engine.dispose()
    return open_study(cfg)


@pytest.mark.parametrize("kind", STORAGES)
def test_a_trial_failed_by_the_heartbeat_check_says_stale_and_is_retried(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path, storage = _study_file(tmp_path, *_where(kind, request, tmp_path))
    study = _abandoned_trial(path, storage)
    fail_stale_trials(study)

    stale, retry = study.get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs.get("fail_reason") == "stale", "a FAIL must say why"
    assert stale.system_attrs.get(RETRIED_ATTR) is True
    assert retry.state == TrialState.WAITING
    assert retry.params == stale.params
    assert retry.system_attrs["retry_history"] == [stale.number]
    assert retry.system_attrs["hpo:crashes"] == 1
    assert requeue_lost_retries(study, min_age_s=0) == [], "retried once"


def test_optimizes_own_stale_check_records_the_reason_too(tmp_path: Path) -> None:
    """Optuna runs the same check before each trial of ``optimize``, outside hpo's code."""
    path, storage = _study_file(tmp_path)
    study = _abandoned_trial(path, storage)
    study.optimize(lambda trial: trial.suggest_float("x", -2.0, 2.0), n_trials=1)

    stale, retry = study.get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs.get("fail_reason") == "stale"
    assert retry.state == TrialState.COMPLETE, "the retry was queued, then run"
    assert retry.params == stale.params
    assert retry.system_attrs["retry_history"] == [stale.number]


_KILLED_AFTER_THE_FAIL = """
import os, sys
from hpo import load_study_config
from hpo.runner import open_study
from hpo.workers import recovery

study = open_study(load_study_config(sys.argv[1]))
# killed once Optuna has failed the stale trial, before its callback queued the retry
recovery.RetryStaleTrial.__call__ = lambda self, study, trial: os._exit(9)
recovery.fail_stale_trials(study)
"""


@pytest.mark.parametrize("kind", STORAGES)
def test_a_recoverer_killed_between_the_fail_and_the_retry_loses_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    path, storage = _study_file(tmp_path, *_where(kind, request, tmp_path))
    study = _abandoned_trial(path, storage)
    killed = subprocess.run(
        [sys.executable, "-c", _KILLED_AFTER_THE_FAIL, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=hpo_env(),
    )
    assert killed.returncode == 9, killed.stderr

    (stale,) = study.get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs.get("fail_reason") == "stale"
    assert stale.system_attrs.get(RETRIED_ATTR) is True, "the retry that is due is recorded"
    assert counted_trials([stale]) == 0, "a trial to be retried does not use the budget"
    # what the next start does (after a minute, in case the queueing was only late)
    assert requeue_lost_retries(study, min_age_s=0) == [stale.number]
    (retry,) = by_state(study.get_trials(deepcopy=False), TrialState.WAITING)
    assert retry.params == stale.params
    assert retry.system_attrs["retry_history"] == [stale.number]


def test_a_stale_trial_out_of_retries_says_why_and_stays_failed(tmp_path: Path) -> None:
    path, storage = _study_file(tmp_path, max_retries=0)
    study = _abandoned_trial(path, storage)
    fail_stale_trials(study)

    (stale,) = study.get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs.get("fail_reason") == "stale"
    assert RETRIED_ATTR not in stale.system_attrs
    assert requeue_lost_retries(study, min_age_s=0) == [], "no retry was due"
    assert counted_trials([stale]) == 1, "the failure counts"


def test_a_stale_trial_whose_retry_is_queued_already_is_not_queued_twice(
    tmp_path: Path,
) -> None:
    """Handed over (a lost CUDA context: retry queued, trial left RUNNING for its own worker
    to end), then the worker vanished: the heartbeat check only ends the trial."""
    path, storage = _study_file(tmp_path)
    study = _abandoned_trial(path, storage)
    (running,) = study.get_trials(deepcopy=False)
    assert requeue(study, running, "cuda_error", max_retries=1, fail=False)
    fail_stale_trials(study)

    stale, retry = study.get_trials(deepcopy=False)
    assert stale.state == TrialState.FAIL
    assert stale.user_attrs.get("fail_reason") == "cuda_error", "the first reason is kept"
    assert retry.state == TrialState.WAITING
    assert retry.system_attrs["hpo:retry_reason"] == "cuda_error"
    assert requeue_lost_retries(study, min_age_s=0) == []


def test_a_trial_its_worker_completes_during_the_stale_check_counts_as_complete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check marks a trial (reason, retried) just before Optuna fails it; its own worker,
    alive after all, may complete it in between. Before, the COMPLETE trial kept the mark
    and was dropped from the budget, the status and the best trials (a reviewer's race)."""
    from hpo import load_study_config
    from hpo.owned_trials import OwnedTrialsStorage
    from hpo.results import study_status
    from hpo.workers.budget import budget_state

    path, storage = _study_file(tmp_path)
    study = _abandoned_trial(path, storage)
    (trial,) = study.get_trials(deepcopy=False)
    original = OwnedTrialsStorage._get_stale_trial_ids

    def completed_meanwhile(self: OwnedTrialsStorage, study_id: int) -> list[int]:
        ids = original(self, study_id)  # marked now
        own = optuna.storages.RDBStorage(storage)  # the trial's own worker finishes it
        own.set_trial_state_values(trial._trial_id, TrialState.COMPLETE, [0.9])
        own.engine.dispose()
        return ids

    monkeypatch.setattr(OwnedTrialsStorage, "_get_stale_trial_ids", completed_meanwhile)
    fail_stale_trials(study)  # Optuna's FAIL loses: the trial stays COMPLETE
    monkeypatch.undo()
    assert budget_state(study.get_trials(deepcopy=False)).finished == 1
    status = study_status(load_study_config(path))
    assert status.counts.get("complete") == 1 and status.best_number == trial.number
