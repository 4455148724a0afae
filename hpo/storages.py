"""Storage URLs: defaults, ``${ENV}`` expansion, masking, and opening them safely.

SQLite is the embedded default and is opened so several worker processes can share
it (WAL journal, long busy timeout). PostgreSQL/MySQL URLs go to Optuna unchanged,
except that a storage that was reachable once rides out a database restart: calls that
fail with a connection error are retried with bounded exponential backoff (see
:func:`resilient_rdb_storage_class`). ``journal:///path`` uses Optuna's journal file,
``grpc://host:port`` its storage proxy.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError, StorageError
from trainers.reporter import one_line

if TYPE_CHECKING:
    import optuna

    from hpo.config import StudyConfig

DEFAULT_SQLITE_NAME = "hpo.db"
SQLITE_BUSY_TIMEOUT_S = 60.0
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SCHEMES = ("sqlite", "postgresql", "mysql", "journal", "grpc")
# The password runs to the last ``@`` before the host: an unencoded ``@`` in it must not
# leave its tail in sight. The user may be empty (``://:pw@``) and the password may hold any
# character but a newline (spaces too), never another ``://``. The host after that ``@`` has
# no ``@`` and runs to ``/ ? #`` or the end; failing that (a URL without a path, followed by
# more text), to the first whitespace.
_PASSWORD_IN_URL = re.compile(
    r"(?P<user>://[^:/@\s]*:)(?:"
    r"(?:(?!://)[^\n])+?@(?=[^@/?#\s]*(?:[/?#]|$))"  # host, then a path, query or the end
    r"|(?:(?!://)[^\n])+?@(?=[^@/?#\s]*\s)"  # host, then more text
    r")"
)
_GRPC_ADDRESS = re.compile(r"^(?P<host>\[[^\]]*\]|[^:/\[\]]*)(?::(?P<port>[^/]*))?/?$")
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s;]+)")

logger = logging.getLogger(__name__)

GRPC_CONNECT_TIMEOUT_S = 5.0
"""How long opening a ``grpc://`` storage waits for the proxy to answer."""

STORAGE_RETRY_ENV = "HPO_STORAGE_RETRY_SECONDS"
"""Environment variable: how long a lost database connection is retried (seconds)."""
DEFAULT_STORAGE_RETRY_S = 120.0
STORAGE_UNAVAILABLE_EXIT = 75
"""Exit status (EX_TEMPFAIL) of a worker that gave up on an unreachable storage."""


class StorageUnavailableError(StorageError):
    """The database stopped answering mid-run and did not come back within the retry budget."""

    exit_code = STORAGE_UNAVAILABLE_EXIT


def mask_url(text: str) -> str:
    """Replace every password with ``***``: ``scheme://user:password@host`` and ``password=``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_URL.sub(r"\g<user>***@", text))


def missing_env_vars(url: str) -> list[str]:
    """Names of ``${VAR}`` references that are not set in the environment."""
    return [name for name in _ENV_REF.findall(url) if name not in os.environ]


def expand_env(url: str) -> str:
    """Substitute ``${VAR}`` from the environment (credentials never live in study files)."""
    return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), url)


def default_storage_url(cfg: StudyConfig) -> str:
    """A SQLite file next to the study file."""
    return f"sqlite:///{(cfg.base_dir / DEFAULT_SQLITE_NAME).as_posix()}"


def storage_url(cfg: StudyConfig) -> str:
    """The study's storage URL, expanded, with relative SQLite paths resolved beside the file."""
    if not cfg.storage:
        return default_storage_url(cfg)
    url = expand_env(cfg.storage)
    for scheme in ("sqlite:///", "journal:///"):
        if url.startswith(scheme):
            path = url[len(scheme) :]
            if path and not path.startswith("/") and path != ":memory:":
                return scheme + (cfg.base_dir / path).as_posix()
    return url


def sqlite_path(url: str) -> Path | None:
    """Filesystem path of a ``sqlite:///`` URL, or ``None`` for other storages."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path)
    return None


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage keeps its studies in; ``None`` for servers."""
    if url.startswith("journal:///"):
        return Path(url[len("journal:///") :])
    return sqlite_path(url)


def storage_file_absent(url: str) -> bool:
    """Whether ``url`` names a SQLite or journal file that does not exist: opening it would
    create the file (and Optuna's tables), which a read must not."""
    file = storage_file(url)
    return file is not None and not file.exists()


def storage_problems(cfg: StudyConfig) -> list[str]:
    """Problems visible without connecting: unset variables, unknown schemes, missing folders."""
    if not cfg.storage:
        return []
    missing = missing_env_vars(cfg.storage)
    if missing:
        return [f"storage: environment variable {name} is not set" for name in missing]
    url = storage_url(cfg)
    scheme = url.split(":", 1)[0].split("+", 1)[0]
    if "://" not in url or scheme not in _SCHEMES:
        return [
            f"storage: unsupported URL {mask_url(url)!r}; use sqlite:///file.db, "
            "postgresql+psycopg://user@host/db, mysql+pymysql://user@host/db, "
            "journal:///file.log or grpc://host:port"
        ]
    if url.startswith("sqlite:///") and sqlite_path(url) is None:
        return [
            f"storage: {url.split('?', 1)[0]} is an in-memory database: the results would "
            "be gone when the run ends, and workers could not share it; name a file, "
            "e.g. sqlite:///hpo.db"
        ]
    path = storage_file(url)
    if path is None:
        return []
    if not path.parent.is_dir():
        # the first folder on the way that is not one: missing, or a file
        blocker = next((f for f in reversed(path.parents) if not f.is_dir()), path.parent)
        if blocker.exists():
            return [f"storage: {blocker} is a file, not a folder"]
        return [f"storage: folder {path.parent} does not exist"]
    if url.startswith("journal:///"):
        return journal_file_problems(path)
    return []


def journal_file_problems(path: Path) -> list[str]:
    """An existing file that is not an Optuna journal would be appended to, then fail."""
    import json

    if not path.is_file() or path.stat().st_size == 0:
        return [f"storage: {path} is a folder, not a journal file"] if path.is_dir() else []
    try:
        with path.open("rb") as fh:
            line = fh.readline(1 << 20)
    except OSError as exc:
        return [f"storage: cannot read {path}: {exc.strerror or exc}"]
    try:
        first = json.loads(line)
    except ValueError:
        first = None
    if isinstance(first, dict) and "op_code" in first:
        return []
    return [
        f"storage: {path} is not an Optuna journal file (left untouched); "
        "name a new file or an existing journal"
    ]


_SQLITE_PRAGMAS_INSTALLED = False


def _install_sqlite_pragmas() -> None:
    """Per-connection settings for SQLite: WAL makes ``synchronous=NORMAL`` crash-safe.

    With the default FULL every per-epoch report waits for an fsync; NORMAL keeps
    durability across process crashes (only a power loss can drop the last commits).
    """
    global _SQLITE_PRAGMAS_INSTALLED
    if _SQLITE_PRAGMAS_INSTALLED:
        return
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.close()

    _SQLITE_PRAGMAS_INSTALLED = True


def _prepare_sqlite(path: Path) -> None:
    """Switch the file to WAL once (the mode is persistent), so readers never block writers."""
    if path.exists() and not os.access(path, os.W_OK):
        raise StorageError([f"storage: SQLite file {path} is read-only"])
    if not path.parent.is_dir():  # the study checks say so first; the proxy's --storage not
        raise StorageError([f"storage: folder {path.parent} does not exist"])
    if not os.access(path.parent, os.W_OK):
        raise StorageError([f"storage: folder {path.parent} is not writable"])
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_S
    for attempt in itertools.count(1):
        try:
            # the busy timeout of each try is what is left: the whole wait stays within one
            con = sqlite3.connect(path, timeout=max(deadline - time.monotonic(), 0.0))
            try:
                con.execute("PRAGMA journal_mode=WAL")
            finally:
                con.close()
            return
        except sqlite3.OperationalError as exc:
            # the switch to WAL does not always wait on the busy timeout: several processes
            # opening a new file at once can get "locked" until one of them has switched it
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StorageError([f"storage: cannot open SQLite file {path}: {exc}"]) from None
            time.sleep(min(0.02 * attempt, 0.5))
        except sqlite3.Error as exc:
            raise StorageError([f"storage: cannot open SQLite file {path}: {exc}"]) from None


SCHEMA_RACE_ATTEMPTS = 8
"""Tries at opening an RDB storage whose tables another process is creating right now."""


def is_schema_race(exc: BaseException) -> bool:
    """Whether opening a storage failed because another process created its tables first.

    Optuna creates the tables when they are missing (check, then create), so a fleet
    started at once on an empty database races: the losers see "table studies already
    exists" (SQLite, MySQL), "relation ... already exists" or a duplicate ``pg_type`` key
    (PostgreSQL), or a duplicate version row. Opening again finds the tables made.
    """
    text = short_reason(exc).lower()
    return any(
        marker in text
        for marker in ("already exists", "duplicate key", "duplicate entry", "unique constraint")
    )


def _open_rdb(factory: Callable[[], optuna.storages.BaseStorage]) -> optuna.storages.BaseStorage:
    """``factory()``, tried again while another process is creating the same tables."""
    import optuna
    import sqlalchemy.exc

    attempt = 1
    while True:
        try:
            return factory()
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
            if attempt == SCHEMA_RACE_ATTEMPTS or not is_schema_race(exc):
                raise
            logger.debug("another process is creating the tables (%s); again", short_reason(exc))
            time.sleep(0.1 * attempt)
            attempt += 1


def is_rdb_url(url: str) -> bool:
    """Whether Optuna opens ``url`` as an RDBStorage (the storages with heartbeats)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")


def default_grace_period(heartbeat_interval: int) -> int:
    """Seconds without a heartbeat before a trial counts as lost: ``max(4 x interval, 60)``.

    Generous on purpose: a busy database or a long garbage collection must never get a
    live trial failed, and on one machine a dead worker is noticed at once anyway.
    """
    return max(4 * heartbeat_interval, 60)


def storage_retry_seconds() -> float:
    """How long a storage that was reachable keeps retrying a lost connection.

    ``HPO_STORAGE_RETRY_SECONDS`` overrides the default (120 s); 0 turns retries off.
    """
    raw = os.environ.get(STORAGE_RETRY_ENV, "").strip()
    try:
        return max(float(raw), 0.0) if raw else DEFAULT_STORAGE_RETRY_S
    except ValueError:
        return DEFAULT_STORAGE_RETRY_S


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database connection failed or was lost.

    These are the errors worth retrying: the server refused or dropped the connection
    (restart, failover, network), so the transaction was never started or was rolled back.
    Optuna wraps them in ``StorageInternalError``; the chain is followed.
    """
    import sqlalchemy.exc

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sqlalchemy.exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(current, sqlalchemy.exc.OperationalError):
            said = _driver_says_connection_lost(current.orig)
            return True if said is None else said
        said = _driver_says_connection_lost(current)
        if said is not None:
            return said
        current = current.__cause__ or current.__context__
    return False


# PostgreSQL SQLSTATEs of a lost connection: class 08 (connection exception), and the
# server shutting down (admin_shutdown, crash_shutdown, cannot_connect_now).
_PG_CONNECTION_LOST = ("08", "57P01", "57P02", "57P03")
# MySQL client errors of a lost connection: can't connect (2002, 2003), server gone away
# (2006), lost during query (2013), lost at handshake/reading (2055).
_MYSQL_CONNECTION_LOST = frozenset({2002, 2003, 2006, 2013, 2055})


def _driver_says_connection_lost(exc: BaseException | None) -> bool | None:
    """The driver's own verdict on ``exc``: lost connection, other error, or ``None`` (not a
    driver error we know). A statement timeout, a full disk or a deadlock is not an outage:
    retrying it for minutes would only hide it."""
    if exc is None:
        return None
    module = type(exc).__module__ or ""
    names = {base.__name__ for base in type(exc).__mro__}
    if not names & {"OperationalError", "InterfaceError"}:
        return None
    if module.startswith("psycopg"):
        sqlstate = getattr(exc, "sqlstate", None)
        # No SQLSTATE: the client never got an answer (refused, reset, timed out).
        return sqlstate is None or str(sqlstate).startswith(_PG_CONNECTION_LOST)
    if module.startswith(("pymysql", "MySQLdb")):
        code = exc.args[0] if exc.args else None
        return code in _MYSQL_CONNECTION_LOST or "InterfaceError" in names
    return None


class _Outage:
    """When the connection was lost, and whether the retry budget for it is spent."""

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.down_since: float | None = None
        self.last_recovery: float | None = None
        self.lock = threading.Lock()

    def wait_before_retry(
        self, attempt: int, exc: BaseException, call_started: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` once the budget is spent.

        The budget runs from the outage's start, and never longer than from the start of
        the call itself: another thread's successful call (a heartbeat) ends the outage
        for the log, but cannot give a call that keeps failing a fresh budget.
        """
        now = time.monotonic()
        with self.lock:
            first = self.down_since is None
            if self.down_since is None:
                self.down_since = now
            elapsed = now - self.down_since
        if call_started is not None:
            elapsed = max(elapsed, now - call_started)
        remaining = self.budget - elapsed
        if remaining <= 0:
            return None
        wait = min(0.25 * 2.0 ** min(attempt, 5), 8.0, remaining)
        if first:
            logger.warning(
                "storage connection lost (%s); retrying for up to %g s",
                short_reason(exc),
                self.budget,
            )
        return wait

    def succeeded(self) -> None:
        """A call went through: the outage (if any) is over."""
        if self.down_since is None:
            return
        with self.lock:
            if self.down_since is None:
                return
            lasted = time.monotonic() - self.down_since
            self.down_since = None
            self.last_recovery = time.monotonic()
        logger.warning("storage reachable again after %.1f s", lasted)

    def recovered_within(self, seconds: float) -> bool:
        """Whether an outage ended less than ``seconds`` ago."""
        last = self.last_recovery
        return last is not None and time.monotonic() - last < seconds


def storage_outage(exc: BaseException) -> StorageUnavailableError | None:
    """The :class:`StorageUnavailableError` behind ``exc``, if a lost database caused it.

    Optuna sometimes raises something else while handling it (a failed ``tell`` inside
    its optimize loop), so the whole cause/context chain is searched.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, StorageUnavailableError):
            return current
        current = current.__cause__ or current.__context__
    return None


@contextlib.contextmanager
def outage_as_error() -> Iterator[None]:
    """A database lost mid-run past the retry budget becomes :class:`StorageUnavailableError`
    (one masked line; the CLI exits 75), whatever Optuna raised while handling it.

    Also a decorator: :func:`hpo.run_study` and :func:`hpo.confirm_study` use it, so a script
    that catches :class:`HpoError` sees an outage as the CLI does.
    """
    try:
        yield
    except HpoError:
        raise
    except Exception as exc:
        outage = storage_outage(exc)
        if outage is None:
            raise
        raise outage from None


def short_reason(exc: BaseException) -> str:
    """The first line of the database's own message, password masked."""
    cause: BaseException = exc
    while cause.__cause__ is not None and not getattr(cause, "orig", None):
        cause = cause.__cause__
    text = str(getattr(cause, "orig", None) or cause).strip()
    return mask_url(text.splitlines()[0] if text else type(cause).__name__)


_RETRIED_METHODS = (
    "create_new_study",
    "delete_study",
    "set_study_user_attr",
    "set_study_system_attr",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_directions",
    "get_study_user_attrs",
    "get_study_system_attrs",
    "get_all_studies",
    "create_new_trial",
    "set_trial_param",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_number_from_id",
    "get_trial_param",
    "set_trial_state_values",
    "set_trial_intermediate_value",
    "set_trial_user_attr",
    "set_trial_system_attr",
    "get_trial",
    "get_all_trials",
    "get_n_trials",
    "get_best_trial",
    "get_trial_params",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "_get_stale_trial_ids",
    # What Optuna's ``_CachedStorage`` calls on its backend directly:
    "_create_new_trial",
    "_set_trial_param",
    "_get_trials",
    "_get_best_trial_id",
)


@functools.cache
def resilient_rdb_storage_class() -> type[optuna.storages.RDBStorage]:
    """``RDBStorage`` that rides out a lost database connection (PostgreSQL, MySQL).

    Once the storage has been opened, a call that fails with a connection error (server
    restarted, failover, network blip) is retried after 0.25, 0.5, 1 ... 8 s until
    ``HPO_STORAGE_RETRY_SECONDS`` (120 s) have passed since the connection was lost; then
    it raises :class:`StorageUnavailableError` and later calls fail after one attempt
    until one succeeds. What makes retrying safe:

    - a connection error means the server never started the transaction or rolled it
      back (pooled connections are pre-pinged, so a dead one is replaced, not used);
    - writes are upserts (attrs, reports, params, values, heartbeats), except trial and study
      creation: if the server committed a new trial but its acknowledgement was lost (a
      window of microseconds), the retry creates a second one and the first stays
      RUNNING with no heartbeat and no owner, which Optuna's stale check does not see;
      a worker waiting for the end of the budget fails it and queues it again once it
      has stayed unowned for a grace period (:mod:`hpo.workers.unowned`);
    - finishing a trial again after a lost acknowledgement finds it already finished
      in the requested state, which counts as success;
    - heartbeats are never retried (the next beat comes soon, and a heartbeat thread
      stuck in a backoff would delay the end of its trial), and for one grace period
      after an outage this process judges no trial stale, since no worker could
      beat during it.
    """
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError

    base = optuna.storages.RDBStorage

    class ResilientRDBStorage(base):  # type: ignore[valid-type,misc]
        def __init__(self, *args: Any, retry_seconds: float | None = None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            budget = storage_retry_seconds() if retry_seconds is None else retry_seconds
            self._init_resilience(budget)

        def _init_resilience(self, budget: float) -> None:
            self._outage = _Outage(budget)
            self._depth = threading.local()

        def __getstate__(self) -> dict[Any, Any]:
            state = super().__getstate__()
            state["_outage_budget"] = self._outage.budget
            state.pop("_outage", None)
            state.pop("_depth", None)
            return state

        def __setstate__(self, state: dict[Any, Any]) -> None:
            budget = state.pop("_outage_budget", DEFAULT_STORAGE_RETRY_S)
            super().__setstate__(state)
            self._init_resilience(budget)

        def _call(self, name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            depth = getattr(self._depth, "value", 0)
            if depth:  # a nested call: the outermost one retries
                return fn(self, *args, **kwargs)
            self._depth.value = 1
            try:
                attempt = 0
                started = time.monotonic()
                while True:
                    try:
                        result = fn(self, *args, **kwargs)
                    except UpdateFinishedTrialError:
                        if (
                            attempt
                            and name == "set_trial_state_values"
                            and self._already_finished_as(args, kwargs)
                        ):
                            self._outage.succeeded()
                            return True
                        raise
                    except Exception as exc:
                        if not is_connection_error(exc):
                            raise
                        wait = self._outage.wait_before_retry(attempt, exc, started)
                        if wait is None:
                            raise StorageUnavailableError(
                                [
                                    f"storage: {mask_url(self.url)} unreachable for "
                                    f"{self._outage.budget:g} s ({short_reason(exc)})"
                                ]
                            ) from None
                        time.sleep(wait)
                        attempt += 1
                        continue
                    self._outage.succeeded()
                    return result
            finally:
                self._depth.value = 0

        def _already_finished_as(self, args: Any, kwargs: Any) -> bool:
            """After a lost acknowledgement: did our earlier attempt finish the trial?"""
            trial_id = kwargs.get("trial_id", args[0] if args else None)
            state = kwargs.get("state", args[1] if len(args) > 1 else None)
            values = kwargs.get("values", args[2] if len(args) > 2 else None)
            try:
                stored = base.get_trial(self, trial_id)
            except Exception:
                return False
            same_values = values is None or list(stored.values or []) == list(values)
            return stored.state == state and same_values

        def record_heartbeat(self, trial_id: int) -> None:
            try:
                super().record_heartbeat(trial_id)
            except Exception as exc:
                if not is_connection_error(exc):
                    raise
                logger.debug("heartbeat not recorded: %s", short_reason(exc))
                return
            self._outage.succeeded()

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            grace = self.grace_period or 2 * (self.heartbeat_interval or 0)
            ids: list[int] = self._call(
                "_get_stale_trial_ids", base._get_stale_trial_ids, (study_id,), {}
            )
            if ids and self._outage.recovered_within(float(grace)):
                return []  # nobody could beat during the outage: not evidence of death
            return ids

    def _wrap(name: str) -> Callable[..., Any]:
        fn = getattr(base, name)

        @functools.wraps(fn)
        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            return self._call(name, fn, args, kwargs)

        return method

    for name in _RETRIED_METHODS:
        if name != "_get_stale_trial_ids" and hasattr(base, name):
            setattr(ResilientRDBStorage, name, _wrap(name))
    ResilientRDBStorage.__name__ = ResilientRDBStorage.__qualname__ = "ResilientRDBStorage"
    ResilientRDBStorage.__module__ = __name__
    return ResilientRDBStorage


def __getattr__(name: str) -> Any:
    """``hpo.storages.ResilientRDBStorage`` without importing Optuna when the module loads."""
    if name == "ResilientRDBStorage":
        return resilient_rdb_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _open_grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of the storage proxy at ``grpc://host:port``, once the proxy answers.

    Without the check, an unreachable proxy surfaces deep inside study creation as a
    long gRPC traceback; here it is one line, like an unreachable database.
    """
    import warnings

    import optuna

    match = _GRPC_ADDRESS.match(url[len("grpc://") :])
    port_text = (match.group("port") or "13000") if match else ""
    if match is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise StorageError(
            [f"storage: {mask_url(url)!r} is not grpc://host:port (port a number, 1-65535)"]
        )
    host, port = match.group("host") or "localhost", int(port_text)
    cannot = f"storage: cannot connect to the storage proxy at {mask_url(url)}"
    try:  # a refused or unroutable port fails at once, in the OS's words
        socket.create_connection((host.strip("[]"), port), timeout=GRPC_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            reason += " (is `hpo storage-proxy` running there?)"
        raise StorageError([f"{cannot}: {reason}"]) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        proxy = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:  # something listens there: is it a gRPC server?
        proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            [f"{cannot}: no gRPC answer within {GRPC_CONNECT_TIMEOUT_S:g} s"]
        ) from None
    return proxy


_DRIVERS = {
    "postgresql": ("postgresql+psycopg", "postgres"),
    "mysql": ("mysql+pymysql", "mysql"),
}
"""The driver each database is tested with, and the extra that installs it."""


def _driver_problem(url: str, exc: BaseException) -> str:
    """Which URL form and extra give a working driver (Optuna's own message names neither)."""
    scheme = url.split("://", 1)[0]
    database = scheme.split("+", 1)[0]
    if database not in _DRIVERS:
        return f"storage: missing database driver for {scheme}://: {exc}"
    form, extra = _DRIVERS[database]
    if scheme == form:  # the right driver, present or not: say what failed to import
        return (
            f"storage: the {form} driver cannot be imported ({one_line(str(exc))[:200]}); "
            f"pip install 'contrastive-hpo[{extra}]'"
        )
    return (
        f"storage: no database driver for {scheme}:// here; use {form}://... "
        f"(pip install 'contrastive-hpo[{extra}]')"
    )


def open_storage(
    url: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    heartbeat_stale_trial_callback: Any = None,
    failed_trial_callback: Any = None,
) -> optuna.storages.BaseStorage:
    """Open a storage for a study, raising :class:`StorageError` (password masked) on failure.

    ``heartbeat_interval`` turns on Optuna's heartbeats (RDB storages only; ignored for
    journal and gRPC URLs); ``failed_trial_callback`` is the pre-Optuna-4.9 name of
    ``heartbeat_stale_trial_callback``.
    """
    import warnings

    import optuna
    import sqlalchemy.exc

    stale_callback = heartbeat_stale_trial_callback or failed_trial_callback

    try:
        if url.startswith("journal:///"):
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            return JournalStorage(JournalFileBackend(str(storage_file(url))))
        if url.startswith("grpc://"):
            return _open_grpc(url)
        engine_kwargs: dict[str, Any] = {}
        path = sqlite_path(url)
        if path is not None:
            _prepare_sqlite(path)
            _install_sqlite_pragmas()
            engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
        else:
            engine_kwargs["pool_pre_ping"] = True
            if url.startswith("postgresql"):
                engine_kwargs["connect_args"] = {"connect_timeout": 10}
        storage_class = (
            optuna.storages.RDBStorage if path is not None else resilient_rdb_storage_class()
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _open_rdb(
                lambda: storage_class(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_interval,
                    grace_period=grace_period if heartbeat_interval else None,
                    heartbeat_stale_trial_callback=stale_callback if heartbeat_interval else None,
                )
            )
    except StorageError:
        raise
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        raise StorageError([f"storage: cannot open {mask_url(url)}: {short_reason(exc)}"]) from None
    except (ImportError, ModuleNotFoundError) as exc:
        raise StorageError([_driver_problem(url, exc)]) from None
    except (OSError, ValueError) as exc:
        raise StorageError(
            [f"storage: cannot open {mask_url(url)}: {mask_url(str(exc))}"]
        ) from None
