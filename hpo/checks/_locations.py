"""Storage URLs and artifact stores, as far as their text tells."""

from __future__ import annotations

import re

from hpo.checks._common import _short
from hpo.config import StudyConfig

_ENV_TEXT = re.compile(r"\$\{[^}]*\}?")
_ENV_NAME = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*\}$")
_SQLITE_SCHEME = re.compile(r"(?i)sqlite(\+\w+)?:")
_SQLITE_FILE = re.compile(r"(?i)sqlite(\+\w+)?:///")


def _storage_syntax_problems(cfg: StudyConfig) -> list[str]:
    """Storage URL mistakes that would otherwise pass: ``${}`` forms, SQLite without a file."""
    url = cfg.storage
    if not url:
        return []
    out = [
        f"storage: {_short(ref)} is not a ${{VARIABLE}} reference (letters, digits, _)"
        for ref in _ENV_TEXT.findall(url)
        if not _ENV_NAME.match(ref)
    ]
    # as written; the expanded URL (``${VAR}`` holding ``sqlite://``) is checked by
    # ``storage_problems``, which refuses an in-memory database in any form
    if _SQLITE_SCHEME.match(url) and not _SQLITE_FILE.match(url):
        out.append(
            "storage: a SQLite URL names a file: sqlite:///relative.db or sqlite:////abs/path.db"
        )
    return out


def _artifact_problems(cfg: StudyConfig) -> list[str]:
    """An ``s3://`` store without a bucket: seen in the text, at every load."""
    location = cfg.artifacts.dir or ""
    bucket = location[len("s3://") :].partition("/")[0]
    if cfg.artifacts.enabled and location.startswith("s3://") and not bucket:
        return [f"artifacts.dir: no bucket in {location!r}; use s3://bucket/prefix"]
    return []
