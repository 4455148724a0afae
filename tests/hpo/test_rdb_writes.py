"""One-statement writes: the rows Optuna writes, and nothing once the trial is not running."""

from __future__ import annotations

from datetime import datetime

import optuna
from optuna.distributions import FloatDistribution
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from hpo.rdb_writes import (
    finish_trial,
    start_waiting_trial,
    write_attrs,
    write_param,
    write_report,
)
from hpo.storages import open_storage


def _running(url: str, name: str) -> tuple[RDBStorage, int]:
    backend = open_storage(url)
    assert isinstance(backend, RDBStorage)
    study = optuna.create_study(study_name=name, storage=backend)
    return backend, study.ask()._trial_id


def test_writes_match_optunas_own(rdb_url: str, unique_name: str) -> None:
    dist = FloatDistribution(0.0, 1.0)
    stored = []
    for ours in (False, True):
        backend, trial_id = _running(rdb_url, f"{unique_name}-{ours}")
        if ours:
            assert write_param(backend, trial_id, "x", 0.25, dist)
            assert write_param(backend, trial_id, "x", 0.25, dist)  # a retried write is harmless
            assert write_report(backend, trial_id, 0, float("nan"))
            assert write_report(backend, trial_id, 1, 0.5)
            assert write_attrs(backend, trial_id, {"a": [1, 2], "b": None})
            assert write_attrs(backend, trial_id, {"a": "again"})
            assert write_attrs(backend, trial_id, {"s": 3}, system=True)
            assert finish_trial(
                backend, trial_id, TrialState.COMPLETE, [-float("inf")], datetime.now()
            )
        else:
            backend.set_trial_param(trial_id, "x", 0.25, dist)
            backend.set_trial_intermediate_value(trial_id, 0, float("nan"))
            backend.set_trial_intermediate_value(trial_id, 1, 0.5)
            backend.set_trial_user_attr(trial_id, "a", [1, 2])
            backend.set_trial_user_attr(trial_id, "b", None)
            backend.set_trial_user_attr(trial_id, "a", "again")
            backend.set_trial_system_attr(trial_id, "s", 3)
            backend.set_trial_state_values(trial_id, TrialState.COMPLETE, [-float("inf")])
        trial = backend.get_trial(trial_id)
        stored.append(
            (
                trial.state,
                trial.values,
                trial.params,
                trial.distributions,
                {k: repr(v) for k, v in trial.intermediate_values.items()},
                trial.user_attrs,
                trial.system_attrs,
            )
        )
    assert stored[0] == stored[1]


def test_nothing_is_written_once_the_trial_is_not_running(rdb_url: str, unique_name: str) -> None:
    backend, trial_id = _running(rdb_url, unique_name)
    backend.set_trial_state_values(trial_id, TrialState.FAIL)  # e.g. by another worker
    dist = FloatDistribution(0.0, 1.0)
    assert not write_param(backend, trial_id, "x", 0.5, dist)
    assert not write_report(backend, trial_id, 0, 1.0)
    assert not write_attrs(backend, trial_id, {"a": 1, "b": 2})
    assert not finish_trial(backend, trial_id, TrialState.COMPLETE, [1.0], datetime.now())
    trial = backend.get_trial(trial_id)
    assert trial.state == TrialState.FAIL and trial.values is None
    assert not trial.params and not trial.intermediate_values and not trial.user_attrs


def test_a_queued_trial_is_taken_once(rdb_url: str, unique_name: str) -> None:
    backend = open_storage(rdb_url)
    assert isinstance(backend, RDBStorage)
    study = optuna.create_study(study_name=unique_name, storage=backend)
    study.enqueue_trial({"x": 0.5})
    (queued,) = study.get_trials(deepcopy=False)
    start = datetime(2026, 12, 7, 1, 2, 3)
    assert start_waiting_trial(backend, queued._trial_id, start)
    assert not start_waiting_trial(backend, queued._trial_id, datetime.now())  # taken
    taken = backend.get_trial(queued._trial_id)
    assert taken.state == TrialState.RUNNING and taken.datetime_start == start
    backend.set_trial_state_values(queued._trial_id, TrialState.COMPLETE, [1.0])
    assert not start_waiting_trial(backend, queued._trial_id, datetime.now())
