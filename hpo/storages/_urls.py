"""Storage URLs as a study names them: defaults, ``${ENV}`` expansion, masking, files.

Credentials never live in study files, so a URL carries ``${VAR}`` references, and any URL
that reaches a message or a log is masked first.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpo.config import StudyConfig

DEFAULT_SQLITE_NAME = "hpo.db"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
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
_PASSWORD_PARAM = re.compile(r"(?i)(\bpassword\s*=\s*)('[^']*'|[^&\s;]+)")


_PORT_AND_PATH = re.compile(r"\d+/")
"""What follows ``host:`` in ``http://host:8080/api ... ops@example.com``: a port and a
path, not a password (a trainer's message names such URLs beside an e-mail address)."""


def mask_url(text: str) -> str:
    """Replace every password with ``***``: ``scheme://user:password@host`` and ``password=``."""

    def masked(match: re.Match[str]) -> str:
        password = match.group(0)[len(match.group("user")) : -1]
        if _PORT_AND_PATH.match(password):
            return match.group(0)
        return f"{match.group('user')}***@"

    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD_IN_URL.sub(masked, text))


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
    """Whether ``url`` names a SQLite or journal file that holds no Optuna storage: opening
    it would create the file (and Optuna's tables, and switch a SQLite file to WAL), which
    a read must not do, least of all to another program's database."""
    file = storage_file(url)
    if file is None:
        return False
    if not file.exists():
        return True
    return sqlite_path(url) is not None and not _has_optuna_tables(file)


def _has_optuna_tables(path: Path) -> bool:
    """Whether a SQLite file has Optuna's ``studies`` table, read without writing to it."""
    import sqlite3

    try:
        with contextlib.closing(
            sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        ) as db:
            row = db.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies'"
            ).fetchone()
    except sqlite3.Error:
        return True  # unreadable here: opening it says why, with the storage's own error
    return row is not None


def is_rdb_url(url: str) -> bool:
    """Whether Optuna opens ``url`` as an RDBStorage (the storages with heartbeats)."""
    return url.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql")
