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
"""

from __future__ import annotations

import copy
import json
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, cast

import sqlalchemy
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._cached_storage import _CachedStorage, _StudyInfo
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy import orm
from sqlalchemy.engine import CursorResult


class OwnedTrialsStorage(_CachedStorage):
    """``_CachedStorage`` that also caches the running trials this process owns.

    Drop-in for what ``optuna.storages.get_storage`` makes of an ``RDBStorage``.
    """

    def __init__(self, backend: RDBStorage) -> None:
        super().__init__(backend)
        self._owned: dict[int, FrozenTrial] = {}

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
        return trial_id

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        try:
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
        return changed

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

        self._write(
            trial_id,
            lambda: super(OwnedTrialsStorage, self).set_trial_param(
                trial_id, param_name, param_value_internal, distribution
            ),
            update,
        )

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
            "set_trial_intermediate_value", _upsert_report, trial_id, step, value
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
        self._write(
            trial_id,
            lambda: super(OwnedTrialsStorage, self).set_trial_user_attr(trial_id, key, value),
            lambda trial: trial.user_attrs.update({key: _as_stored(value)}),
        )

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._write(
            trial_id,
            lambda: super(OwnedTrialsStorage, self).set_trial_system_attr(trial_id, key, value),
            lambda trial: trial.system_attrs.update({key: _as_stored(value)}),
        )

    def record_user_attrs(self, trial_id: int, attrs: dict[str, Any]) -> None:
        """Note user attributes written to the database outside this class (a batched upsert)."""
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is not None:
                owned.user_attrs.update({k: _as_stored(v) for k, v in attrs.items()})

    # Reads ----------------------------------------------------------------------------

    def get_trial(self, trial_id: int) -> FrozenTrial:
        with self._lock:
            owned = self._owned.get(trial_id)
            if owned is not None:
                return copy.deepcopy(owned)  # a snapshot, as a database read would be
        return super().get_trial(trial_id)

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


def _as_stored(value: Any) -> Any:
    """The value as a database read returns it (JSON round trip: tuples become lists)."""
    return json.loads(json.dumps(value))


def _get_trials_excluding(
    backend: RDBStorage,
    study_id: int,
    included_trial_ids: set[int],
    trial_id_greater_than: int,
    excluded_trial_ids: set[int],
) -> list[FrozenTrial]:
    """``RDBStorage._get_trials`` (Optuna 5.1) with ``excluded_trial_ids`` left out in SQL."""
    included_trial_ids = {i for i in included_trial_ids if i <= trial_id_greater_than}
    trial_model = models.TrialModel
    with _create_scoped_session(backend.scoped_session) as session:
        models.StudyModel.find_or_raise_by_id(study_id, session)  # the study still exists
        base = (
            session.query(trial_model)
            .options(orm.selectinload(trial_model.params))
            .options(orm.selectinload(trial_model.values))
            .options(orm.selectinload(trial_model.user_attributes))
            .options(orm.selectinload(trial_model.system_attributes))
            .options(orm.selectinload(trial_model.intermediate_values))
            .filter(trial_model.study_id == study_id)
        )
        query = base
        if included_trial_ids and trial_id_greater_than > -1:
            query = query.filter(
                sqlalchemy.or_(
                    trial_model.trial_id.in_(included_trial_ids),
                    trial_model.trial_id > trial_id_greater_than,
                )
            )
        elif trial_id_greater_than > -1:
            query = query.filter(trial_model.trial_id > trial_id_greater_than)
        if excluded_trial_ids:
            query = query.filter(trial_model.trial_id.not_in(excluded_trial_ids))
        try:
            rows = query.order_by(trial_model.trial_id).all()
        except sqlalchemy_exc.OperationalError:
            # Likely too many ids for one IN (SQLite's variable limit): Optuna's own fallback.
            session.rollback()
            rows = [
                row
                for row in base.order_by(trial_model.trial_id).all()
                if (row.trial_id in included_trial_ids or row.trial_id > trial_id_greater_than)
                and row.trial_id not in excluded_trial_ids
            ]
        return [backend._build_frozen_trial_from_trial_model(row) for row in rows]


def upsert_insert(backend: RDBStorage) -> Callable[..., Any] | None:
    """The ``insert`` with ``on_conflict_do_update`` for the backend's dialect, if it has one."""
    dialect = backend.engine.name
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    return None


def _upsert_report(backend: RDBStorage, trial_id: int, step: int, value: float) -> bool:
    """Write one report if the trial is still RUNNING, as a single upsert (SQLite, PostgreSQL).

    The same row Optuna writes (value and its finite/inf/nan type), replacing an earlier
    report of the same step; False when the dialect has no upsert or the trial is not
    RUNNING (the caller then takes Optuna's own path, which raises as Optuna does).
    """
    insert = upsert_insert(backend)
    if insert is None:
        return False
    reports = models.TrialIntermediateValueModel.__table__
    trials = models.TrialModel.__table__
    stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
    running = sqlalchemy.exists().where(
        trials.c.trial_id == trial_id, trials.c.state == TrialState.RUNNING
    )
    row = sqlalchemy.select(
        sqlalchemy.literal(trial_id, reports.c.trial_id.type),
        sqlalchemy.literal(step, reports.c.step.type),
        sqlalchemy.literal(stored, reports.c.intermediate_value.type),
        sqlalchemy.literal(kind, reports.c.intermediate_value_type.type),
    ).where(running)
    columns = ["trial_id", "step", "intermediate_value", "intermediate_value_type"]
    stmt = insert(reports).from_select(columns, row)
    stmt = stmt.on_conflict_do_update(
        index_elements=[reports.c.trial_id, reports.c.step],
        set_={
            "intermediate_value": stmt.excluded.intermediate_value,
            "intermediate_value_type": stmt.excluded.intermediate_value_type,
        },
    )
    with _create_scoped_session(backend.scoped_session, True) as session:
        result = cast("CursorResult[Any]", session.execute(stmt))
        return bool(result.rowcount)
