"""Opening an RDB storage while other processes create the same tables (a fleet started at once)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from hpo.storages._connection_errors import short_reason

if TYPE_CHECKING:
    import optuna

# The package's logger, as before the split: log lines still say ``hpo.storages``.
logger = logging.getLogger("hpo.storages")

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
