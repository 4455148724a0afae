"""A RUNNING trial that nobody runs (no owner, no heartbeat) is recovered, not waited for."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import optuna
from optuna.trial import TrialState

from hpo.config import StudyConfig, validate_study_data
from hpo.objective import FAIL_REASON
from hpo.runner import open_study, run_study
from hpo.workers.unowned import (
    NEVER_STARTED,
    UnownedTrialWatch,
    recover_abandoned_unowned,
    single_machine_storage,
)
from hpo.workers.worker import run_worker
from tests.conftest import analytic_study
from tests.hpo.test_workers import assert_finished_exactly, by_state


def _study_with_a_trial_nobody_runs(
    url: str, name: str, n_trials: int
) -> tuple[optuna.Study, StudyConfig]:
    """The state a lost acknowledgement of ``create_new_trial`` leaves: one extra RUNNING trial
    with no owner and no heartbeat, made here by a plain Optuna storage."""
    data = analytic_study(
        name=name,
        storage=url,
        budget={"n_trials": n_trials},
        artifacts={"enabled": False},
        workers={"heartbeat_interval": 1, "grace_period": 2},
        startup="random",  # the unowned trial is trial 0: no start-up design queued first
    )
    data["trainer"]["params"].update({"epochs": 2, "sleep_per_epoch": 0.0})
    cfg = validate_study_data(data)
    open_study(cfg)
    plain = optuna.load_study(study_name=name, storage=url)
    plain._storage.create_new_trial(plain._study_id)
    return plain, cfg


def test_worker_recovers_a_trial_nobody_runs_and_finishes(rdb_url: str, unique_name: str) -> None:
    study, cfg = _study_with_a_trial_nobody_runs(rdb_url, unique_name, n_trials=3)
    run_worker(cfg, poll_interval=0.2)  # would wait for the unowned trial forever before
    assert_finished_exactly(study, 3)
    trials = study.get_trials(deepcopy=False)
    (never,) = by_state(trials, TrialState.FAIL)
    assert never.number == 0 and never.user_attrs[FAIL_REASON] == NEVER_STARTED
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == 0]
    assert retry.state == TrialState.COMPLETE


def test_a_trial_is_recovered_only_after_a_whole_grace_period(tmp_path: Path) -> None:
    study, _ = _study_with_a_trial_nobody_runs(f"sqlite:///{tmp_path / 'grace.db'}", "grace", 3)
    watch = UnownedTrialWatch(grace_period=0.3)
    assert watch.check(study, max_retries=1) == []  # first look: remembered, not judged
    assert study.get_trials()[0].state == TrialState.RUNNING
    assert _wait_until_recovered(watch, study) == [0]
    assert study.get_trials()[0].state == TrialState.FAIL
    assert study.get_trials()[1].state == TrialState.WAITING  # its retry


def _wait_until_recovered(watch: UnownedTrialWatch, study: optuna.Study) -> list[int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        recovered = watch.check(study, max_retries=1)
        if recovered:
            return recovered
        time.sleep(0.05)
    return []


def test_an_owned_trial_is_never_recovered(tmp_path: Path) -> None:
    study, _ = _study_with_a_trial_nobody_runs(f"sqlite:///{tmp_path / 'owned.db'}", "owned", 3)
    study._storage.set_trial_user_attr(study.get_trials()[0]._trial_id, "worker", "host:1")
    watch = UnownedTrialWatch(grace_period=0.0)
    assert watch.check(study, max_retries=1) == []
    assert watch.check(study, max_retries=1) == []
    assert study.get_trials()[0].state == TrialState.RUNNING


def test_a_new_in_process_run_recovers_a_trial_abandoned_unowned(tmp_path: Path) -> None:
    """An in-process ``hpo run`` killed between making a trial and naming itself.

    Every later ``hpo run`` counted that trial as running, ran nothing, and exited 0 one
    trial short (``hpo status`` showed it running forever).
    """
    url = f"sqlite:///{tmp_path / 'abandoned.db'}"
    study, cfg = _study_with_a_trial_nobody_runs(url, "abandoned", n_trials=3)
    run_study(cfg)  # within the grace period (2 s): maybe another run just made it
    assert study.get_trials()[0].state == TrialState.RUNNING
    time.sleep(2.1)
    summary = run_study(cfg)
    assert summary.trials_run == 1, "it ran nothing"
    assert_finished_exactly(study, 3)
    never = study.get_trials()[0]
    assert never.state == TrialState.FAIL and never.user_attrs[FAIL_REASON] == NEVER_STARTED
    (retry,) = [t for t in study.get_trials() if t.system_attrs.get("failed_trial") == 0]
    assert retry.state == TrialState.COMPLETE


def test_a_trial_that_just_started_unowned_is_left_to_its_maker(tmp_path: Path) -> None:
    """Another live process may be between making the trial and naming itself."""
    study, _ = _study_with_a_trial_nobody_runs(f"sqlite:///{tmp_path / 'young.db'}", "young", 3)
    started = study.get_trials()[0].datetime_start
    assert started is not None
    young = started + timedelta(seconds=59)
    assert recover_abandoned_unowned(study, grace_period=60, max_retries=1, now=young) == []
    study._storage.set_trial_user_attr(study.get_trials()[0]._trial_id, "worker", "host:1")
    old = started + timedelta(seconds=61)
    assert recover_abandoned_unowned(study, grace_period=60, max_retries=1, now=old) == []
    assert study.get_trials()[0].state == TrialState.RUNNING, "an owned trial is not ours"


def test_only_storages_one_machine_writes_are_judged_by_their_start_time() -> None:
    """``datetime_start`` is the writer's local time: other machines' clocks may differ."""
    assert single_machine_storage("sqlite:///hpo.db")
    assert single_machine_storage("journal:///tmp/hpo.log")
    assert not single_machine_storage("postgresql+psycopg://u@db:5432/hpo")
    assert not single_machine_storage("grpc://proxy:13000")
