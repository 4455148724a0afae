"""One-statement writes to a running trial on SQLite and PostgreSQL, each statement built once.

Optuna's RDB writes load the trial row, check its state, then add an ORM object and
commit: two or three statements, and about a millisecond of SQLAlchemy work building
and compiling them, per report, parameter or attribute. Here each write is a single
``INSERT ... SELECT ... WHERE <the trial is RUNNING>`` upsert that writes exactly the
row Optuna writes, and the statement is built once per dialect and executed with bound
parameters, so SQLAlchemy's compiled cache serves it.

Every function returns False when nothing was written (another dialect, or the trial is
no longer RUNNING); callers then take Optuna's own path, which raises Optuna's error.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

import sqlalchemy
from optuna import distributions
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.trial import TrialState
from sqlalchemy.engine import CursorResult


def upsert_insert(dialect: str) -> Callable[..., Any] | None:
    """The ``insert`` with ``on_conflict_do_update`` for ``dialect``, if it has one."""
    if dialect == "sqlite" and sqlite3.sqlite_version_info >= (3, 24, 0):
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert
    return None


def _running(trial_id: Any) -> Any:
    trials = models.TrialModel.__table__
    return sqlalchemy.exists().where(
        trials.c.trial_id == trial_id, trials.c.state == TrialState.RUNNING
    )


_UPSERTS: dict[str, tuple[list[str], list[str]]] = {
    # table: (columns written, unique key)
    "trial_intermediate_values": (
        ["trial_id", "step", "intermediate_value", "intermediate_value_type"],
        ["trial_id", "step"],
    ),
    "trial_user_attributes": (["trial_id", "key", "value_json"], ["trial_id", "key"]),
    "trial_system_attributes": (["trial_id", "key", "value_json"], ["trial_id", "key"]),
    # An upsert rather than Optuna's plain insert: a retry after a lost acknowledgement
    # finds its own row instead of failing the trial on the unique constraint.
    "trial_params": (
        ["trial_id", "param_name", "param_value", "distribution_json"],
        ["trial_id", "param_name"],
    ),
    "trial_values": (["trial_id", "objective", "value", "value_type"], ["trial_id", "objective"]),
}


@functools.cache
def _upsert_while_running(dialect: str, table_name: str) -> Any | None:
    """``INSERT INTO table (columns) SELECT :columns WHERE running ON CONFLICT (key) UPDATE``."""
    insert = upsert_insert(dialect)
    if insert is None:
        return None
    columns, key = _UPSERTS[table_name]
    table = models.BaseModel.metadata.tables[table_name]
    # Parameters are named ``p_<column>``: SQLAlchemy reserves bare column names in inserts.
    row = sqlalchemy.select(
        *(sqlalchemy.bindparam(f"p_{name}", type_=table.c[name].type) for name in columns)
    ).where(_running(sqlalchemy.bindparam("p_trial_id", type_=table.c.trial_id.type)))
    stmt = insert(table).from_select(columns, row)
    return stmt.on_conflict_do_update(
        index_elements=[table.c[name] for name in key],
        set_={name: stmt.excluded[name] for name in columns if name not in key},
    )


@functools.cache
def _finish_statement() -> Any:
    trials = models.TrialModel.__table__
    return (
        sqlalchemy.update(trials)
        .where(
            trials.c.trial_id == sqlalchemy.bindparam("p_trial_id"),
            trials.c.state == TrialState.RUNNING,
        )
        .values(
            state=sqlalchemy.bindparam("p_state", type_=trials.c.state.type),
            datetime_complete=sqlalchemy.bindparam("p_datetime_complete"),
        )
    )


@functools.cache
def _start_statement() -> Any:
    trials = models.TrialModel.__table__
    return (
        sqlalchemy.update(trials)
        .where(
            trials.c.trial_id == sqlalchemy.bindparam("p_trial_id"),
            trials.c.state == TrialState.WAITING,
        )
        .values(state=TrialState.RUNNING, datetime_start=sqlalchemy.bindparam("p_start"))
    )


def start_waiting_trial(backend: RDBStorage, trial_id: int, datetime_start: datetime) -> bool:
    """Take a queued trial: WAITING to RUNNING, in one statement that checks it is WAITING.

    Optuna reads the state, then writes it. On SQLite the read does not open the write
    transaction (pysqlite begins one only at the ``UPDATE``), so two workers can both read
    WAITING and both take the trial: measured, 5 of 300 queued trials went to both of two
    workers. Any dialect: the ``UPDATE`` itself decides, and exactly one worker gets a row.
    """
    written = _execute(
        backend, _start_statement(), {"p_trial_id": trial_id, "p_start": datetime_start}
    )
    return written == 1


_ROWCOUNT = {"preserve_rowcount": True}
"""SQLAlchemy reads an INSERT's rowcount lazily, after psycopg 3 has closed the cursor
and reset it to -1; this option keeps it as the driver reported it."""


def _execute(backend: RDBStorage, stmt: Any, params: Any) -> int:
    """Rows written by ``stmt`` in one committed transaction (a list of params: executemany)."""
    with _create_scoped_session(backend.scoped_session, True) as session:
        result = session.execute(stmt, params, execution_options=_ROWCOUNT)
        return int(cast("CursorResult[Any]", result).rowcount)


def write_report(backend: RDBStorage, trial_id: int, step: int, value: float) -> bool:
    """One report (value and its finite/inf/nan type, as Optuna stores it), replacing the step's."""
    stmt = _upsert_while_running(backend.engine.name, "trial_intermediate_values")
    if stmt is None:
        return False
    stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(value)
    params = {
        "p_trial_id": trial_id,
        "p_step": step,
        "p_intermediate_value": stored,
        "p_intermediate_value_type": kind,
    }
    return _execute(backend, stmt, params) > 0


def write_attrs(
    backend: RDBStorage, trial_id: int, attrs: Mapping[str, Any], *, system: bool = False
) -> bool:
    """User (or system) attributes in one transaction (``json.dumps`` of each, keys replaced).

    False, with nothing relied on, unless every row was written.
    """
    table = "trial_system_attributes" if system else "trial_user_attributes"
    stmt = _upsert_while_running(backend.engine.name, table)
    if stmt is None or not attrs:
        return False
    rows = [
        {"p_trial_id": trial_id, "p_key": k, "p_value_json": json.dumps(v)}
        for k, v in attrs.items()
    ]
    return _execute(backend, stmt, rows) == len(rows)


def write_param(
    backend: RDBStorage,
    trial_id: int,
    name: str,
    internal: float,
    distribution: distributions.BaseDistribution,
) -> bool:
    """One sampled parameter; the caller has checked ``distribution`` against the study's."""
    stmt = _upsert_while_running(backend.engine.name, "trial_params")
    if stmt is None:
        return False
    params = {
        "p_trial_id": trial_id,
        "p_param_name": name,
        "p_param_value": internal,
        "p_distribution_json": distributions.distribution_to_json(distribution),
    }
    return _execute(backend, stmt, params) > 0


def finish_trial(
    backend: RDBStorage,
    trial_id: int,
    state: TrialState,
    values: Sequence[float] | None,
    datetime_complete: datetime,
) -> bool:
    """A RUNNING trial's values and final state in one transaction, as Optuna writes them.

    Two statements where Optuna has three and an ORM flush; the state changes only from
    RUNNING (checked by the ``UPDATE`` itself), and nothing is kept when it did not.
    """
    assert state.is_finished()
    value_stmt = _upsert_while_running(backend.engine.name, "trial_values")
    if value_stmt is None:
        return False
    with _create_scoped_session(backend.scoped_session, True) as session:
        for objective, value in enumerate(values or ()):
            stored, kind = models.TrialValueModel.value_to_stored_repr(value)
            params = {
                "p_trial_id": trial_id,
                "p_objective": objective,
                "p_value": stored,
                "p_value_type": kind,
            }
            session.execute(value_stmt, params)
        finish = {
            "p_trial_id": trial_id,
            "p_state": state,
            "p_datetime_complete": datetime_complete,
        }
        result = session.execute(_finish_statement(), finish, execution_options=_ROWCOUNT)
        if cast("CursorResult[Any]", result).rowcount != 1:
            session.rollback()  # not RUNNING any more: no value of ours stays either
            return False
    return True
