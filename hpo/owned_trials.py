"""The trials a worker is running, served from its memory instead of re-read per call.

Optuna's ``_CachedStorage`` caches finished trials only. Every ``get_trial`` of a running
trial (four per trial: ``ask``, the retry hook, ``tell``, the callbacks) and every
``get_all_trials`` (sampling, the waiting-trial queue) re-reads the running trial with
six SQL statements: the row, then its params, values, attributes and reports. On SQLite
that was about 40 of the 98 statements a trial costs; on PostgreSQL each is a round trip.

A running trial changes only through the worker that runs it, so this process keeps
the trials it started (or popped from the queue) current as it writes them, and leaves
them out of its re-reads. The one outside change, another worker marking it failed after
a lost heartbeat, still surfaces: RDB writes check the trial's state in the database,
and the first write after it raises ``UpdateFinishedTrialError`` as before; the trial is
then dropped from memory and read from the database like any other.

Its writes go through :mod:`hpo.rdb_writes` (one statement each, checked to be RUNNING)
on SQLite and PostgreSQL, and through Optuna's own writes elsewhere.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Container, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy
from optuna import distributions
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import orm

from hpo.rdb_writes import (
    finish_trial,
    start_waiting_trial,
    upsert_insert,
    write_attrs,
    write_param,
    write_report,
)


class OwnedTrialsStorage(_CachedStorage):
    """``_CachedStorage`` that also caches the running trials this process owns.

    Drop-in for what ``optuna.storages.get_storage`` makes of an ``RDBStorage``.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._owned: dict[int, FrozenTrial] = {}
        self.owner_attrs: dict[str, Any] = {}
        """User attributes naming this worker, written the moment a trial becomes ours."""
        # SQLite and PostgreSQL take hpo's one-statement writes; others Optuna's own.
        self._one_statement_writes = upsert_insert(backend.engine.name) is not None

    @staticmethod
    def supported() -> bool:
        """Whether this Optuna has the internals this class builds on (checked, not assumed)."""
        return all(
            hasattr(cls, name)
            for cls, name in (
                (_CachedStorage, "_read_trials_from_remote_storage"),
                (_CachedStorage, "_add_trials_to_cache"),
                (RDBStorage, "_build_frozen_trial_from_trial_model"),
                (models.TrialIntermediateValueModel, "intermediate_value_to_stored_repr"),
            )
        )

    def __getstate__(self) -> dict[Any, Any]:
        state = super().__getstate__()
        state["_owned"] = {}  # another process owns nothing of ours
        return state

    # Ownership -----------------------------------------------------------------------

    def owned_trial_ids(self) -> set[int]:
        """Ids of the running trials this process keeps in memory."""
        with self._lock:
            return set(self._owned)

    def _own(self, study_id: int, trial: FrozenTrial) -> None:
        """Keep ``trial`` in memory; called with the lock held."""
        study = self._studies.setdefault(study_id, _StudyInfo())
        self._add_trials_to_cache(study_id, [trial])
        # Re-read once released, even after later trials have finished.
        study.unfinished_trial_ids.add(trial._trial_id)
        self._owned[trial._trial_id] = trial

    def _release(self, trial_id: int) -> None:
        with self._lock:
            self._owned.pop(trial_id, None)

    def _write(
        self, trial_id: int, write: Callable[[], Any], update: Callable[[FrozenTrial], None]
    ) -> Any:
        """Run the backend ``write``; on success apply ``update`` to the owned copy.

        A failed write (the trial finished elsewhere, a lost connection) releases the
        trial, so later reads come from the database.
        """
        try:
            result = write()
        except BaseException:
            self._release(trial_id)
            raise
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is not None:
                update(owned)
        return result

    # Writes ---------------------------------------------------------------------------

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        if template_trial is None:  # a fresh RUNNING trial, built from its own row
            with self._lock:
                study = self._studies[study_id]
                number = self._trial_id_to_study_id_and_number[trial_id][1]
                self._own(study_id, study.trials[number])
            self._write_owner(trial_id)
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        if state.is_finished() and trial_id in self._owned and self._one_statement_writes:
            return self._finish(trial_id, state, values)
        if state.is_finished() and self._one_statement_writes:
            # another worker's trial, failed by a recoverer: Optuna reads the state, then
            # writes it, and on SQLite two recoverers can both read RUNNING and both queue
            # a retry. The UPDATE that checks RUNNING decides which one did it.
            return bool(
                self._on_backend(
                    "set_trial_state_values",
                    _finish_or_raise,
                    trial_id,
                    state,
                    values,
                    datetime.now(),
                )
            )
        try:
            if state == TrialState.RUNNING and values is None:
                changed = self._start(trial_id)
            else:
                changed = super().set_trial_state_values(trial_id, state, values)
        except BaseException:
            self._release(trial_id)
            raise
        if state.is_finished():
            self._release(trial_id)
        elif state == TrialState.RUNNING and changed:  # popped from the waiting queue
            with self._lock:
                known = self._trial_id_to_study_id_and_number.get(trial_id)
            if known is not None:  # always, for a trial popped by ``Study.ask``
                trial = self._backend.get_trial(trial_id)
                with self._lock:
                    self._own(known[0], trial)
                self._write_owner(trial_id)
        return changed

    def _start(self, trial_id: int) -> bool:
        """Pop a queued trial for this worker only (see :func:`hpo.rdb_writes.start_waiting_trial`)."""
        if self._on_backend(
            "set_trial_state_values", start_waiting_trial, trial_id, datetime.now()
        ):
            return True
        # not taken: Optuna's own path says why (a finished trial raises, others are False)
        return bool(super().set_trial_state_values(trial_id, TrialState.RUNNING))

    def owner_recorded(self, trial_id: int, attrs: Mapping[str, Any]) -> bool:
        """Whether ``attrs`` are already on this running trial of ours (no database read)."""
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is None:
                return False
            return all(owned.user_attrs.get(k, _MISSING) == _as_stored(v) for k, v in attrs.items())

    def _write_owner(self, trial_id: int) -> None:
        """Name this worker on a trial it just created or popped, before the sampler runs.

        Until then the trial is RUNNING with no owner, and a worker that loses the
        database in that gap (the sampler's reads are the long part) leaves a trial that
        its supervisor cannot attribute: it waits out the heartbeat grace period instead
        of being queued again at once. A failed write leaves it as it was, unowned.
        """
        attrs = self.owner_attrs
        if not attrs:
            return
        try:
            if not self._one_statement_writes:
                for key, value in attrs.items():
                    self.set_trial_user_attr(trial_id, key, value)
            elif self._on_backend("set_trial_user_attr", write_attrs, trial_id, attrs):
                self.record_user_attrs(trial_id, attrs)
        except UpdateFinishedTrialError:
            pass  # ended elsewhere already: the worker's own write at the trial's start says so
        except BaseException:
            self._release(trial_id)  # later reads come from the database
            raise

    def _finish(self, trial_id: int, state: TrialState, values: Sequence[float] | None) -> bool:
        """Finish an owned trial in one transaction and keep it, finished, in the cache.

        The finished copy is exactly what was written (Optuna stamps ``datetime_complete``
        the same way), so ``get_trial`` after ``tell`` reads nothing. The trial stays
        among the ids the next re-read includes, so that read replaces this copy with the
        database's (and with anything written to it since).
        """
        completed = datetime.now()
        try:
            ours: bool = self._on_backend(
                "set_trial_state_values", _finish_or_raise, trial_id, state, values, completed
            )
        finally:
            with self._lock:
                done = self._owned.pop(trial_id, None)
        if ours and done is not None:  # never handed out itself, and no longer changed
            done.state = state
            if values is not None:
                done.values = [float(v) for v in values]
            done.datetime_complete = completed
            with self._lock:
                study_id = self._trial_id_to_study_id_and_number[trial_id][0]
                self._add_trials_to_cache(study_id, [done])
        return True

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: distributions.BaseDistribution,
    ) -> None:
        def update(trial: FrozenTrial) -> None:
            trial.params[param_name] = distribution.to_external_repr(param_value_internal)
            trial.distributions[param_name] = distribution

        def write() -> None:
            with self._lock:
                known = self._owned_study_distribution(trial_id, param_name)
            if known is not None:
                # Optuna's own check against the study's first distribution of this name.
                distributions.check_distribution_compatibility(known, distribution)
                if self._on_backend(
                    "set_trial_param",
                    write_param,
                    trial_id,
                    param_name,
                    param_value_internal,
                    distribution,
                ):
                    return
            # First use of the name here, not ours, or not RUNNING: Optuna's path.
            super(OwnedTrialsStorage, self).set_trial_param(
                trial_id, param_name, param_value_internal, distribution
            )

        self._write(trial_id, write, update)

    def _owned_study_distribution(
        self, trial_id: int, param_name: str
    ) -> distributions.BaseDistribution | None:
        """The distribution ``_CachedStorage`` holds for the name, for an owned trial only."""
        if trial_id not in self._owned:
            return None
        study_id = self._trial_id_to_study_id_and_number[trial_id][0]
        return self._studies[study_id].param_distribution.get(param_name)

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        def update(trial: FrozenTrial) -> None:
            trial.intermediate_values[step] = float(intermediate_value)

        def write() -> None:
            if trial_id in self._owned and self._upsert_intermediate_value(
                trial_id, step, intermediate_value
            ):
                return
            # Not ours, another dialect, or not RUNNING: Optuna's path raises the right error.
            super(OwnedTrialsStorage, self).set_trial_intermediate_value(
                trial_id, step, intermediate_value
            )

        self._write(trial_id, write, update)

    def _upsert_intermediate_value(self, trial_id: int, step: int, value: float) -> bool:
        """One statement instead of Optuna's three: False if nothing was written."""
        written: bool = self._on_backend(
            "set_trial_intermediate_value", write_report, trial_id, step, value
        )
        return written

    def _on_backend(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(backend, *args)``, retried like the backend's own ``name`` on hpo's
        reconnecting RDB storage (``ResilientRDBStorage._call``)."""
        call = getattr(self._backend, "_call", None)
        if call is not None:
            return call(name, fn, args, {})
        return fn(self._backend, *args)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        def write() -> None:
            if not self._upsert_attr(trial_id, key, value, system=False):
                super(OwnedTrialsStorage, self).set_trial_user_attr(trial_id, key, value)

        self._write(
            trial_id, write, lambda trial: trial.user_attrs.update({key: _as_stored(value)})
        )

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        def write() -> None:
            if not self._upsert_attr(trial_id, key, value, system=True):
                super(OwnedTrialsStorage, self).set_trial_system_attr(trial_id, key, value)

        self._write(
            trial_id, write, lambda trial: trial.system_attrs.update({key: _as_stored(value)})
        )

    def _upsert_attr(self, trial_id: int, key: str, value: Any, *, system: bool) -> bool:
        """One statement for an owned trial; False (nothing written) sends the caller to
        Optuna's path, which raises Optuna's error for a trial that is not running."""
        if trial_id not in self._owned:
            return False
        name = "set_trial_system_attr" if system else "set_trial_user_attr"
        written: bool = self._on_backend(name, _write_attr, trial_id, key, value, system)
        return written

    def record_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Note user attributes written to the database outside this class (a batched upsert)."""
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is not None:
                owned.user_attrs.update({k: _as_stored(v) for k, v in attrs.items()})

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """The trials Optuna's heartbeat check is about to fail, each tagged first.

        Optuna's ``fail_stale_trials`` (hpo's checks, and ``optimize`` before each trial)
        fails the trials listed here and only then runs the stale-trial callback, when a
        finished trial takes no more attributes. A callback with a ``before_fail``
        (:meth:`hpo.workers.recovery.RetryStaleTrial.before_fail`) records why while the
        trial is still RUNNING; one it leaves out (finished meanwhile) is not failed.
        """
        ids = super()._get_stale_trial_ids(study_id)
        callback = self.get_heartbeat_stale_trial_callback()
        before_fail: Callable[[Any, int, int], bool] | None = getattr(callback, "before_fail", None)
        if not ids or before_fail is None:
            return ids
        return [trial_id for trial_id in ids if before_fail(self, study_id, trial_id)]

    # Reads ----------------------------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is not None:
                return copy.deepcopy(owned)  # a snapshot, as a database read would be
        return super().get_trial(trial_id)

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        """Optuna's, sorted on the cache's keys (the trial numbers) in C.

        Optuna sorts with a Python key function, one call per trial of the study at every
        read: the sampler's and every Hyperband rung decision's, a cost that grows with
        the study.
        """
        self._read_trials_from_remote_storage(study_id)
        with self._lock:
            by_number = self._studies[study_id].trials
            trials = [by_number[number] for number in sorted(by_number)]
            if states is not None:
                trials = [t for t in trials if t.state in states]
            return copy.deepcopy(trials) if deepcopy else trials

    def _read_trials_from_remote_storage(self, study_id: int) -> None:
        """Optuna's re-read of new and unfinished trials, minus the ones owned here."""
        with self._lock:
            study = self._studies.setdefault(study_id, _StudyInfo())
            owned = {
                trial_id: trial
                for trial_id, trial in self._owned.items()
                if self._trial_id_to_study_id_and_number[trial_id][0] == study_id
            }
            trials = self._fetch_trials(
                study_id,
                study.unfinished_trial_ids - owned.keys(),
                study.last_finished_trial_id,
                set(owned),
            )
            self._add_trials_to_cache(study_id, trials)
            for trial in trials:
                if not trial.state.is_finished():
                    study.unfinished_trial_ids.add(trial._trial_id)
                    continue
                study.last_finished_trial_id = max(study.last_finished_trial_id, trial._trial_id)
                study.unfinished_trial_ids.discard(trial._trial_id)
            # Readers get a snapshot, as from the database, not the copy that writes update.
            self._add_trials_to_cache(study_id, [copy.deepcopy(t) for t in owned.values()])

    def _fetch_trials(
        self, study_id: int, included: set[int], greater_than: int, excluded: set[int]
    ) -> list[FrozenTrial]:
        trials: list[FrozenTrial] = self._on_backend(
            "_get_trials", _get_trials_excluding, study_id, included, greater_than, excluded
        )
        return trials


_MISSING = object()


def _finish_or_raise(
    backend: RDBStorage,
    trial_id: int,
    state: TrialState,
    values: Sequence[float] | None,
    completed: datetime,
) -> bool:
    """True once :func:`finish_trial` wrote the trial as given. Otherwise Optuna's own
    ``set_trial_state_values`` raises ``UpdateFinishedTrialError`` for a trial finished
    elsewhere, which hpo's reconnecting storage checks against a retried write whose
    acknowledgement was lost (and then answers True); False if it wrote anyway."""
    if finish_trial(backend, trial_id, state, values, completed):
        return True
    backend.set_trial_state_values(trial_id, state, values)
    return False


def _write_attr(backend: RDBStorage, trial_id: int, key: str, value: Any, system: bool) -> bool:
    return write_attrs(backend, trial_id, {key: value}, system=system)


def _as_stored(value: Any) -> Any:
    """The value as a database read returns it (JSON round trip: tuples become lists)."""
    return json.loads(json.dumps(value))


@functools.cache
def _study_trials_statement() -> Any:
    """All of a study's trials, with everything a FrozenTrial holds, built once."""
    trial = models.TrialModel
    return (
        sqlalchemy.select(trial)
        .options(
            orm.selectinload(trial.params),
            orm.selectinload(trial.values),
            orm.selectinload(trial.user_attributes),
            orm.selectinload(trial.system_attributes),
            orm.selectinload(trial.intermediate_values),
        )
        .where(trial.study_id == sqlalchemy.bindparam("study_id"))
        .order_by(trial.trial_id)
    )


@functools.cache
def _trials_statement() -> Any:
    """The trials a sweep re-reads, built once.

    One shape for every sweep: ``trial_id IN (:included) OR trial_id > :greater_than``,
    minus ``:excluded``; empty lists expand to SQL that matches nothing.
    """
    trial = models.TrialModel
    return (
        _study_trials_statement()
        .where(
            sqlalchemy.or_(
                trial.trial_id.in_(sqlalchemy.bindparam("included", expanding=True)),
                trial.trial_id > sqlalchemy.bindparam("greater_than"),
            )
        )
        .where(trial.trial_id.not_in(sqlalchemy.bindparam("excluded", expanding=True)))
    )


def _get_trials_excluding(
    backend: RDBStorage,
    study_id: int,
    included_trial_ids: set[int],
    trial_id_greater_than: int,
    excluded_trial_ids: set[int],
) -> list[FrozenTrial]:
    """``RDBStorage._get_trials`` (Optuna 5.1) with ``excluded_trial_ids`` left out in SQL.

    The statement is built once (a sweep that finds nothing is most of them), and the
    study is looked up only when no trial came back: a trial row proves its study exists.
    """
    included = sorted(i for i in included_trial_ids if i <= trial_id_greater_than)
    params = {
        "study_id": study_id,
        "included": included,
        "greater_than": trial_id_greater_than,
        "excluded": sorted(excluded_trial_ids),
    }
    with _create_scoped_session(backend.scoped_session) as session:
        try:
            rows = list(session.execute(_trials_statement(), params).scalars().all())
        except sqlalchemy_exc.OperationalError:
            # Likely too many ids for one IN (SQLite's variable limit): Optuna's own fallback.
            session.rollback()
            everything = session.execute(_study_trials_statement(), {"study_id": study_id})
            rows = [
                row
                for row in everything.scalars().all()
                if (row.trial_id in included_trial_ids or row.trial_id > trial_id_greater_than)
                and row.trial_id not in excluded_trial_ids
            ]
        if not rows:
            models.StudyModel.find_or_raise_by_id(study_id, session)  # Optuna's KeyError
        return [backend._build_frozen_trial_from_trial_model(row) for row in rows]
