"""OwnedTrialsStorage: running trials served from memory give the same study, in fewer statements."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from hpo.objective import set_user_attrs
from hpo.owned_trials import OwnedTrialsStorage
from hpo.storages import open_storage


def _rdb(url: str) -> RDBStorage:
    backend = open_storage(url)
    assert isinstance(backend, RDBStorage)
    return backend


def _owned(url: str) -> OwnedTrialsStorage:
    return OwnedTrialsStorage(_rdb(url))


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -5, 5)
    kind = trial.suggest_categorical("kind", ["a", "b", None, 2.5])
    n = trial.suggest_int("n", 1, 8, log=True)
    set_user_attrs(trial, {"owner": "w1", "shape": (1, 2), "n": n})
    if x > 4.5:
        raise RuntimeError("user code failed")
    for step in range(6):
        value = (x - 1) ** 2 + step * 0.1 + (0.5 if kind == "b" else 0.0) + 1.0 / n
        trial.report(value, step)
        seen = trial.study._storage.get_trial(trial._trial_id)
        assert seen.intermediate_values[step] == value  # own writes are visible at once
        if trial.should_prune():
            raise optuna.TrialPruned()
    trial.set_user_attr("done", [1, 2])
    return value


def _run(storage: optuna.storages.BaseStorage, name: str) -> list[FrozenTrial]:
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=4),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    study.enqueue_trial({"x": 0.5, "kind": "a", "n": 2}, user_attrs={"enqueued": True})
    study.enqueue_trial({"x": 4.9})
    study.optimize(_objective, n_trials=16, catch=(RuntimeError,))
    return study.get_trials()


def _comparable(trial: FrozenTrial) -> tuple[Any, ...]:
    return (
        trial.number,
        trial.state,
        trial.values,
        trial.params,
        trial.distributions,
        trial.intermediate_values,
        trial.user_attrs,
        trial.system_attrs,
    )


def test_same_study_as_optuna_cached_storage(rdb_url: str, unique_name: str) -> None:
    plain = _run(optuna.storages.get_storage(open_storage(rdb_url)), f"{unique_name}-plain")
    owned = _run(_owned(rdb_url), f"{unique_name}-owned")
    assert [_comparable(t) for t in owned] == [_comparable(t) for t in plain]
    states = {t.state for t in owned}
    assert {TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL} <= states
    # and a fresh reader of the database sees exactly what the worker saw
    fresh = optuna.load_study(study_name=f"{unique_name}-owned", storage=rdb_url).get_trials()
    assert [_comparable(t) for t in fresh] == [_comparable(t) for t in owned]


def _count_statements(storage: RDBStorage) -> list[str]:
    seen: list[str] = []

    @sqlalchemy.event.listens_for(storage.engine, "before_cursor_execute")
    def _count(*args: Any) -> None:
        seen.append(args[2])

    return seen


def test_fewer_statements_than_optuna_cached_storage(rdb_url: str, unique_name: str) -> None:
    counts = []
    for wrap in (optuna.storages.get_storage, OwnedTrialsStorage):
        backend = _rdb(rdb_url)
        statements = _count_statements(backend)
        _run(wrap(backend), f"{unique_name}-{len(counts)}")
        counts.append(len(statements))
    plain, owned = counts
    assert owned < 0.6 * plain, counts


def test_a_report_is_one_statement(rdb_url: str, unique_name: str) -> None:
    """The one-statement paths are taken (a silent fallback would still store the report)."""
    backend = _rdb(rdb_url)
    study, first = _start(OwnedTrialsStorage(backend), unique_name)
    first.suggest_float("x", 0, 1)  # from here on the study's distribution of x is known
    study.tell(first, 0.0)
    trial = study.ask()
    statements = _count_statements(backend)
    trial.suggest_float("x", 0, 1)
    trial.report(1.0, 0)
    trial.set_user_attr("a", 1)
    study.tell(trial, 1.0)
    writes = [" ".join(s.split()[:3]) for s in statements if not s.startswith("SELECT")]
    assert writes == [
        "INSERT INTO trial_params",
        "INSERT INTO trial_intermediate_values",
        "INSERT INTO trial_user_attributes",
        "INSERT INTO trial_values",
        "UPDATE trials SET",
    ], statements
    assert len(statements) <= 7, statements  # and at most one sweep by the sampler


def _start(storage: optuna.storages.BaseStorage, name: str) -> tuple[optuna.Study, optuna.Trial]:
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True)
    return study, study.ask()


def test_running_trial_is_a_snapshot_and_seen_by_get_trials(tmp_path: Path) -> None:
    study, trial = _start(_owned(f"sqlite:///{tmp_path / 'snap.db'}"), "snap")
    trial.suggest_float("x", 0, 1)
    trial.report(0.5, 0)
    before = study.get_trials(deepcopy=False)
    (running,) = before
    assert running.state == TrialState.RUNNING and running.intermediate_values == {0: 0.5}
    trial.report(0.7, 1)
    assert running.intermediate_values == {0: 0.5}  # what a reader got is not changed later
    assert study.get_trials()[0].intermediate_values == {0: 0.5, 1: 0.7}
    study.tell(trial, 0.7)
    assert study._storage.owned_trial_ids() == set()  # type: ignore[attr-defined]
    (done,) = study.get_trials()
    assert done.state == TrialState.COMPLETE and done.value == 0.7


def test_trial_failed_by_another_worker_surfaces_on_next_write(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stale.db'}"
    storage = _owned(url)
    study, trial = _start(storage, "stale")
    trial.report(1.0, 0)
    other = optuna.storages.get_storage(open_storage(url))
    other.set_trial_state_values(trial._trial_id, TrialState.FAIL)  # e.g. a stale heartbeat
    with pytest.raises(UpdateFinishedTrialError):
        trial.report(2.0, 1)
    assert storage.owned_trial_ids() == set()
    assert storage.get_trial(trial._trial_id).state == TrialState.FAIL
    with pytest.raises(ValueError, match="Cannot tell a FAIL trial"):
        study.tell(trial, 1.0)


def test_other_workers_trials_are_read_as_before(tmp_path: Path) -> None:
    """An owned trial that finishes after a newer trial of another worker is still re-read."""
    url = f"sqlite:///{tmp_path / 'two.db'}"
    mine, my_trial = _start(_owned(url), "two")
    theirs, their_trial = _start(optuna.storages.get_storage(open_storage(url)), "two")
    their_trial.report(3.0, 0)
    seen = {t.number: t for t in mine.get_trials()}
    assert seen[their_trial.number].intermediate_values == {0: 3.0}
    theirs.tell(their_trial, 3.0)
    assert mine.get_trials()[their_trial.number].state == TrialState.COMPLETE
    mine.tell(my_trial, 1.0)  # lower id, finished after a higher one
    assert [t.state for t in mine.get_trials()] == [TrialState.COMPLETE] * 2
    assert mine.best_trial.number == my_trial.number


def test_reads_list_trials_by_number_as_optuna_does(tmp_path: Path) -> None:
    """Sorted on the cache's keys: the order and the state filter of Optuna's reads."""
    url = f"sqlite:///{tmp_path / 'order.db'}"
    mine, _ = _start(_owned(url), "order")
    theirs = optuna.load_study(study_name="order", storage=open_storage(url))
    their_trials = [theirs.ask() for _ in range(3)]
    # created with no read before it: my trial 4 enters my cache before their 1 to 3
    mine._storage.create_new_trial(mine._study_id)
    theirs.tell(their_trials[0], 1.0)
    theirs.tell(their_trials[2], state=TrialState.PRUNED)
    mine.get_trials()
    cached = mine._storage._studies[mine._study_id].trials  # type: ignore[attr-defined]
    assert list(cached) != sorted(cached), "the cache is in order: the test tests nothing"
    reference = optuna.storages.get_storage(open_storage(url))
    for states in (None, (TrialState.COMPLETE,), (TrialState.RUNNING, TrialState.PRUNED)):
        for deepcopy in (False, True):
            ours = mine._storage.get_all_trials(mine._study_id, deepcopy=deepcopy, states=states)
            optunas = reference.get_all_trials(mine._study_id, deepcopy=deepcopy, states=states)
            assert [_comparable(t) for t in ours] == [_comparable(t) for t in optunas]
    assert [t.number for t in mine.get_trials()] == [0, 1, 2, 3, 4]


def test_pickled_copy_owns_nothing(tmp_path: Path) -> None:
    storage = _owned(f"sqlite:///{tmp_path / 'pickle.db'}")
    _start(storage, "pickle")
    assert len(storage.owned_trial_ids()) == 1
    copy = pickle.loads(pickle.dumps(storage))
    assert copy.owned_trial_ids() == set()


def test_reports_of_every_kind_are_stored_as_optuna_stores_them(
    rdb_url: str, unique_name: str
) -> None:
    steps = [(0, 1.5), (1, float("inf")), (2, float("-inf")), (3, float("nan")), (0, 2.5)]
    stored = []
    for wrap in (optuna.storages.get_storage, OwnedTrialsStorage):
        name = f"{unique_name}-{len(stored)}"
        storage = wrap(open_storage(rdb_url))
        study, trial = _start(storage, name)
        for step, value in steps:  # step 0 twice: at the storage level the second replaces it
            storage.set_trial_intermediate_value(trial._trial_id, step, value)
        study.tell(trial, 1.0)
        (read,) = optuna.load_study(study_name=name, storage=rdb_url).get_trials()
        stored.append({step: repr(value) for step, value in read.intermediate_values.items()})
    assert stored[0] == stored[1] == {0: "2.5", 1: "inf", 2: "-inf", 3: "nan"}


def test_this_optuna_is_supported() -> None:
    """CI installs the newest Optuna 5.x: a change of the internals used here shows up."""
    assert OwnedTrialsStorage.supported()


def test_finished_trial_is_served_as_stored_without_a_read(rdb_url: str, unique_name: str) -> None:
    backend = _rdb(rdb_url)
    storage = OwnedTrialsStorage(backend)
    study, trial = _start(storage, unique_name)
    trial.suggest_float("x", 0, 1)
    trial.report(0.25, 0)
    study.tell(trial, float("inf"))
    statements = _count_statements(backend)
    served = storage.get_trial(trial._trial_id)
    assert statements == [], "tell's own copy is served"
    (stored,) = optuna.load_study(study_name=unique_name, storage=rdb_url).get_trials()
    assert served == stored  # every field, datetime_complete included
    assert served.values == [float("inf")] and served.state == TrialState.COMPLETE


def test_a_deleted_study_raises_as_in_optuna(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'deleted.db'}"
    storage = _owned(url)
    study, _ = _start(storage, "deleted")
    optuna.delete_study(study_name="deleted", storage=url)
    with pytest.raises(KeyError):
        storage.get_all_trials(study._study_id)


def test_sweep_with_more_ids_than_one_statement_takes(tmp_path: Path) -> None:
    """Optuna's fallback when an ``IN`` list is too long for SQLite: same trials back."""
    from hpo.owned_trials import _get_trials_excluding

    backend = _rdb(f"sqlite:///{tmp_path / 'many.db'}")
    study = optuna.create_study(storage=backend)
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    ids = [t._trial_id for t in study.get_trials()]
    many = set(range(100_000, 200_000))
    got = _get_trials_excluding(backend, study._study_id, many | {ids[0]}, ids[1], many)
    assert [t._trial_id for t in got] == [ids[0], ids[2]]


def test_a_trial_names_its_owner_the_moment_it_is_ours(rdb_url: str, unique_name: str) -> None:
    """Created or popped from the queue: the owner is in the database before sampling."""
    storage = _owned(rdb_url)
    owner = {"worker": "host:123", "worker_slot": None, "worker_machine": "m-1"}
    storage.owner_attrs = dict(owner)
    study = optuna.create_study(storage=storage, study_name=unique_name)
    study.enqueue_trial({"x": 1.0})
    popped, fresh = study.ask(), study.ask()
    reader = _rdb(rdb_url)
    for trial in (popped, fresh):
        assert reader.get_trial(trial._trial_id).user_attrs == owner
        assert storage.owner_recorded(trial._trial_id, owner)
    assert not storage.owner_recorded(fresh._trial_id, {**owner, "worker": "host:999"})
    study.tell(fresh, 1.0)
    assert not storage.owner_recorded(fresh._trial_id, owner)  # finished: no longer ours

    # A storage that names no owner writes nothing at creation, as before.
    plain = _owned(rdb_url)
    trial = optuna.load_study(storage=plain, study_name=unique_name).ask()
    assert reader.get_trial(trial._trial_id).user_attrs == {}


def test_naming_the_owner_of_a_trial_that_ended_elsewhere_is_left_to_the_worker(
    rdb_url: str, unique_name: str
) -> None:
    """The worker's own write at the trial's start raises Optuna's error; creation does not."""
    storage = _owned(rdb_url)
    study = optuna.create_study(storage=storage, study_name=unique_name)
    trial = study.ask()
    _rdb(rdb_url).set_trial_state_values(trial._trial_id, TrialState.FAIL)  # another worker
    storage.owner_attrs = {"worker": "host:123"}
    storage._write_owner(trial._trial_id)
    assert not storage.owner_recorded(trial._trial_id, storage.owner_attrs)
    assert _rdb(rdb_url).get_trial(trial._trial_id).user_attrs == {}
    with pytest.raises(UpdateFinishedTrialError):
        set_user_attrs(trial, storage.owner_attrs)


def _race_two(target: Any, url: str, name: str) -> tuple[list[int], list[int]]:
    """What each of two processes running ``target`` at the same instant reports."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    barrier, out = ctx.Barrier(2), ctx.Queue()
    workers = [ctx.Process(target=target, args=(url, name, barrier, out)) for _ in range(2)]
    for worker in workers:
        worker.start()
    first, second = out.get(timeout=120), out.get(timeout=120)
    for worker in workers:
        worker.join(timeout=30)
    return first, second


def _pop_all(url: str, name: str, barrier: Any, out: Any) -> None:
    study = optuna.load_study(study_name=name, storage=_owned(url))
    barrier.wait(timeout=60)
    taken = []
    while (trial_id := study._pop_waiting_trial_id()) is not None:
        taken.append(trial_id)
    out.put(taken)


def test_two_workers_never_take_the_same_queued_trial(tmp_path: Path) -> None:
    # On SQLite, Optuna's read-then-write gave 5 to 11 of 300 queued trials to both workers.
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=_owned(url))
    for i in range(300):
        study.enqueue_trial({"x": float(i)})
    first, second = _race_two(_pop_all, url, "race")
    assert not set(first) & set(second)
    assert len(first) + len(second) == 300


def _fail_all(url: str, name: str, barrier: Any, out: Any) -> None:
    storage = _owned(url)
    study = optuna.load_study(study_name=name, storage=storage)
    ids = [t._trial_id for t in study.get_trials(deepcopy=False)]
    barrier.wait(timeout=60)
    won = []
    for trial_id in ids:
        try:
            if storage.set_trial_state_values(trial_id, TrialState.FAIL):
                won.append(trial_id)
        except UpdateFinishedTrialError:
            pass  # the other recoverer failed it first
    out.put(won)


def test_two_recoverers_never_both_fail_the_same_trial(tmp_path: Path) -> None:
    """Each recoverer that fails a trial queues its retry: exactly one may succeed."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    study = optuna.create_study(study_name="race", storage=_rdb(url))
    for _ in range(300):
        study.ask()  # RUNNING trials of workers that are gone (nobody here owns them)
    first, second = _race_two(_fail_all, url, "race")
    assert not set(first) & set(second)
    assert len(first) + len(second) == 300
