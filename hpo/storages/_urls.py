"""Storage URLs as a study names them: defaults, ``${ENV}`` expansion, masking, files.

Credentials never live in study files, so a URL carries ``${VAR}`` references, and any URL
that reaches a message or a log is masked first.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from sqlalchemy.engine import URL

    from hpo.config import StudyConfig

DEFAULT_SQLITE_NAME = "hpo.db"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

# ``scheme://user:`` opens a password. The user may hold an ``@`` (Azure's ``hpo@server``)
# and may be empty (``://:pw@``); the password may hold any character but a newline (spaces,
# ``@ / ? #`` too), never another ``://``; where it ends is decided in :func:`_password_end`.
_USER = re.compile(r"://[^:/\s]*:")
# What may follow the ``@`` that ends a password: a host, then a path, query or the end ...
_HOST_THEN_PATH = re.compile(r"[^@/?#\s]*(?:[/?#]|$)")
# ... or, for a URL without a path followed by more text, a host and then a space.
_HOST_THEN_TEXT = re.compile(r"[^@/?#\s]*\s")
# ``?name=`` after an ``@``: the URL's query has begun, so a later ``@`` is in the query.
_QUERY_START = re.compile(r"\?[A-Za-z_][\w.-]*=")
# ``password=``, ``sslpassword=``, ``PGPASSWORD=`` ... in a query string or a DSN.
_PASSWORD_PARAM = re.compile(r"(?i)(\b\w*password\s*=\s*)('[^']*'|[^&\s;]+)")
_PORT_AND_PATH = re.compile(r"\d+/\S*\s")
"""What follows ``host:`` in ``http://host:8080/api ... ops@example.com``: a port, a path
and then free text, not a password (a trainer's message names such URLs beside an e-mail
address). A password such as ``2024/Secret`` has no space before its ``@``: it is masked."""


def _password_end(text: str, start: int) -> int | None:
    """Index of the ``@`` that ends the password starting at ``start``, or ``None``.

    The first ``@`` followed by a plausible host ends it; then, as long as the text up to
    the next ``@`` has no space and no query (``?name=``), that ``@`` was part of the
    password too: ``a@b/c@db/hpo`` is the password ``a@b/c`` on host ``db``.
    """
    stop = len(text)
    for marker in ("\n", "://"):
        found = text.find(marker, start)
        if found >= 0:
            stop = min(stop, found)
    ats = [i for i in range(start + 1, stop) if text[i] == "@"]
    end = next((i for i in ats if _HOST_THEN_PATH.match(text, i + 1)), None)
    if end is None:
        end = next((i for i in ats if _HOST_THEN_TEXT.match(text, i + 1)), None)
    if end is None:
        return None
    for later in (i for i in ats if i > end):
        between = text[end + 1 : later]
        if re.search(r"\s", between) or _QUERY_START.search(between):
            break
        if _HOST_THEN_PATH.match(text, later + 1) or _HOST_THEN_TEXT.match(text, later + 1):
            end = later
    return end


def _url_passwords(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each ``scheme://user:PASSWORD@host`` password in ``text``."""
    spans: list[tuple[int, int]] = []
    pos = 0
    while (user := _USER.search(text, pos)) is not None:
        start = user.end()
        end = _password_end(text, start)
        if end is None or _PORT_AND_PATH.match(text[start:end]):
            pos = user.start() + 3
            continue
        spans.append((start, end))
        pos = end + 1
    return spans


def mask_url(text: str) -> str:
    """Replace every password with ``***``: ``scheme://user:password@host`` and ``password=``."""
    out: list[str] = []
    pos = 0
    for start, end in _url_passwords(text):
        out += [text[pos:start], "***"]
        pos = end
    out.append(text[pos:])
    return _PASSWORD_PARAM.sub(r"\1***", "".join(out))


def url_secrets(url: str) -> list[str]:
    """The password texts of ``url`` (as written, percent-decoded, and as a driver may split
    them at an ``@``), longest first: a driver's message can quote any of them."""
    found: set[str] = set()
    for start, end in _url_passwords(url):
        found.add(url[start:end])
    found.update(match.group(2).strip("'") for match in _PASSWORD_PARAM.finditer(url))
    parsed = _parse(url)
    if parsed is not None and parsed.password:
        found.add(str(parsed.password))
    for secret in list(found):
        found.add(unquote(secret))
        found.update(piece for piece in re.split(r"[@/?#:]", secret) if len(piece) >= 3)
    # shorter texts are too common to replace: a form-based mask covers them
    return sorted((s for s in found if len(s) >= 3 and s != "***"), key=len, reverse=True)


def mask_message(text: str, url: str) -> str:
    """``text`` (a driver's message about ``url``) with ``url``'s password gone, whole or in
    pieces, besides what :func:`mask_url` finds by form."""
    masked = mask_url(text)
    for secret in url_secrets(url):
        masked = masked.replace(secret, "***")
    return masked


def _parse(url: str) -> URL | None:
    """``url`` as SQLAlchemy reads it, or ``None`` where it does not parse."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        return None


def missing_env_vars(url: str) -> list[str]:
    """Names of ``${VAR}`` references that are not set in the environment."""
    return [name for name in _ENV_REF.findall(url) if name not in os.environ]


def _userinfo_span(url: str) -> tuple[int, int] | None:
    """Where ``user:password`` lies in ``scheme://user:password@host/...``, or ``None``."""
    scheme_end = url.find("://")
    if scheme_end < 0 or not re.fullmatch(r"[A-Za-z][\w+.-]*", url[:scheme_end]):
        return None
    start = scheme_end + 3
    authority_end = next((i for i in range(start, len(url)) if url[i] in "/?#"), len(url))
    at = url.rfind("@", start, authority_end)
    return (start, at) if at >= 0 else None


def expand_env(url: str) -> str:
    """Substitute ``${VAR}`` from the environment (credentials never live in study files).

    A value that lands in the user or password of a URL is percent-encoded, so a password
    with ``@ : / #`` or ``%`` stays the password instead of moving the host or being decoded.
    """
    userinfo = _userinfo_span(url)

    def value(match: re.Match[str]) -> str:
        text = os.environ.get(match.group(1), "")
        if userinfo is not None and userinfo[0] <= match.start() < userinfo[1]:
            return quote(text, safe="")
        return text

    return _ENV_REF.sub(value, url)


def default_storage_url(cfg: StudyConfig) -> str:
    """A SQLite file next to the study file (its path escaped: ``?`` or ``%`` in a folder
    name is part of the path, not a query or an escape)."""
    return sqlite_url(cfg.base_dir / DEFAULT_SQLITE_NAME)


def sqlite_url(path: Path) -> str:
    """The ``sqlite:///`` URL of the file ``path``, escaped where a URL needs it."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite", database=path.as_posix()).render_as_string(hide_password=False)


def is_sqlite_url(url: str) -> bool:
    """Whether ``url`` is a SQLite URL in any form (``sqlite://``, ``sqlite+pysqlite://``)."""
    if not url.lower().startswith("sqlite"):
        return False
    parsed = _parse(url)
    return parsed is not None and parsed.get_backend_name() == "sqlite"


def storage_url(cfg: StudyConfig) -> str:
    """The study's storage URL, expanded, with relative SQLite paths resolved beside the file."""
    if not cfg.storage:
        return default_storage_url(cfg)
    url = expand_env(cfg.storage)
    if url.startswith("journal:///"):
        path = url[len("journal:///") :]
        if path and not path.startswith("/"):
            return "journal:///" + (cfg.base_dir / path).as_posix()
        return url
    if is_sqlite_url(url):
        parsed = _parse(url)
        database = parsed.database if parsed is not None else None
        if (
            parsed is not None
            and database
            and not database.startswith(("/", "file:"))
            and database != ":memory:"
        ):
            absolute = (cfg.base_dir / database).as_posix()
            return parsed.set(database=absolute).render_as_string(hide_password=False)
        if parsed is not None and database and database.startswith("file:"):
            # a URI filename (``file:rel.db?uri=true``): relative to the study file too
            path = database[len("file:") :]
            if path and not path.startswith("/") and parsed.query.get("mode") != "memory":
                absolute = "file:" + (cfg.base_dir / path).as_posix()
                return parsed.set(database=absolute).render_as_string(hide_password=False)
    return url


def sqlite_path(url: str) -> Path | None:
    """Filesystem path of a SQLite URL (any driver), or ``None`` for in-memory and others."""
    if not is_sqlite_url(url):
        return None
    parsed = _parse(url)
    database = (parsed.database if parsed is not None else None) or ""
    if database.startswith("file:"):  # a URI filename: ``sqlite:///file:x.db?uri=true``
        if parsed is not None and parsed.query.get("mode") == "memory":
            return None
        database = unquote(database[len("file:") :])
    return None if database in ("", ":memory:") else Path(database)


def is_in_memory_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite database that lives in memory (no file to keep it)."""
    return is_sqlite_url(url) and sqlite_path(url) is None


def storage_file(url: str) -> Path | None:
    """The file a SQLite or journal storage keeps its studies in; ``None`` for servers."""
    if url.startswith("journal:///"):
        return Path(url[len("journal:///") :])
    return sqlite_path(url)


def storage_file_absent(url: str) -> bool:
    """Whether ``url`` names a SQLite or journal file that holds no Optuna storage: opening
    it would create the file (and Optuna's tables, and switch a SQLite file to WAL), which
    a read must not do, least of all to another program's database."""
    file = storage_file(url)
    if file is None:
        return False
    if not file.exists():
        return True
    return sqlite_path(url) is not None and not _has_optuna_tables(file)


def read_sqlite_master(path: Path, sql: str) -> Any:
    """The first row of ``sql`` on a SQLite file, read-only and through SQLite itself.

    Never ``open()``: closing any other descriptor of a file drops every POSIX lock this
    process holds on it, and a connection of this process to the same file then reads a
    stale database (SQLite's own opens share one descriptor per file). Raises
    ``sqlite3.Error`` (``DatabaseError`` "file is not a database", locked, unreadable).
    """
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return db.execute(sql).fetchone()


def _has_optuna_tables(path: Path) -> bool:
    """Whether a SQLite file has Optuna's ``studies`` table, read without writing to it."""
    import sqlite3

    try:
        row = read_sqlite_master(
            path, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'"
        )
    except sqlite3.Error:
        return True  # unreadable here: opening it says why, with the storage's own error
    return row is not None


def is_rdb_url(url: str) -> bool:
    """Whether Optuna opens ``url`` as an RDBStorage (the storages with heartbeats)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")
