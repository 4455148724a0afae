"""Which database errors mean a lost connection, and the one line that says why.

Only a lost connection is worth retrying; a statement timeout or a full disk must fail at once.
"""

from __future__ import annotations

from hpo.errors import exception_chain
from hpo.storages._urls import mask_url


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database connection failed or was lost.

    These are the errors worth retrying: the server refused or dropped the connection
    (restart, failover, network), so the transaction was never started or was rolled back.
    Optuna wraps them in ``StorageInternalError``; the chain is followed.
    """
    import sqlalchemy.exc

    for link in exception_chain(exc):
        if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
            return True
        if isinstance(link, sqlalchemy.exc.InterfaceError):
            return True
        if isinstance(link, sqlalchemy.exc.OperationalError):
            said = _driver_says_connection_lost(link.orig)
            return True if said is None else said
        said = _driver_says_connection_lost(link)
        if said is not None:
            return said
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


def short_reason(exc: BaseException) -> str:
    """The first line of the database's own message, password masked."""
    cause: BaseException = exc
    while cause.__cause__ is not None and not getattr(cause, "orig", None):
        cause = cause.__cause__
    text = str(getattr(cause, "orig", None) or cause).strip()
    return mask_url(text.splitlines()[0] if text else type(cause).__name__)
