"""Storages: a real PostgreSQL server, SQLite settings, masking and clear open errors."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import yaml

from hpo import ConfigError, StorageError, load_study_config, run_study, validate_study_data
from hpo.results import study_status
from hpo.samplers import study_startup
from hpo.storages import mask_url, open_storage
from tests.conftest import analytic_study, fresh_database, open_at_once
from tests.hpo.test_workers import hpo


def test_mask_url_hides_passwords() -> None:
    url = "postgresql+psycopg://alice:s3cr3t@db.example:5432/hpo"
    assert mask_url(url) == "postgresql+psycopg://alice:***@db.example:5432/hpo"
    assert mask_url(f"could not connect to {url}: refused") == (
        "could not connect to postgresql+psycopg://alice:***@db.example:5432/hpo: refused"
    )
    assert mask_url("sqlite:///tmp/x.db") == "sqlite:///tmp/x.db"


def test_sqlite_is_wal(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}))
    run_study(load_study_config(path))
    con = sqlite3.connect(path.parent / "hpo.db")
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_default_storage_is_next_to_the_study_file(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(budget={"n_trials": 1}))
    summary = run_study(load_study_config(path))
    assert summary.storage == f"sqlite:///{path.parent / 'hpo.db'}"


def test_relative_sqlite_path_resolves_beside_the_file(write_study: Callable[..., Path]) -> None:
    path = write_study(analytic_study(storage="sqlite:///studies.db", budget={"n_trials": 1}))
    run_study(load_study_config(path))
    assert (path.parent / "studies.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write read-only files")
def test_read_only_sqlite_file(tmp_path: Path) -> None:
    db = tmp_path / "ro.db"
    sqlite3.connect(db).close()
    db.chmod(0o444)
    with pytest.raises(StorageError) as info:
        open_storage(f"sqlite:///{db}")
    assert info.value.problems == [f"storage: SQLite file {db} is read-only"]


def test_unreachable_postgres_is_a_clear_masked_error() -> None:
    url = "postgresql+psycopg://user:hunter2@127.0.0.1:1/nodb"
    with pytest.raises(StorageError) as info:
        open_storage(url)
    (line,) = info.value.problems
    assert line.startswith("storage: cannot open postgresql+psycopg://user:***@127.0.0.1:1/nodb: ")
    assert "hunter2" not in line


@pytest.mark.postgres
def test_study_on_real_postgres(
    postgres_url: str, write_study: Callable[..., Path], unique_name: str
) -> None:
    data = analytic_study(name=unique_name, storage=postgres_url, budget={"n_trials": 6})
    summary = run_study(load_study_config(write_study(data)))
    assert summary.n_complete + summary.n_pruned == 6
    study = optuna.load_study(study_name=unique_name, storage=postgres_url)
    assert len(study.trials) == 6
    again = run_study(load_study_config(write_study(data)))
    assert again.trials_run == 0


@pytest.mark.postgres
def test_postgres_wrong_password_or_db(postgres_url: str) -> None:
    bad = postgres_url.rsplit("/", 1)[0] + "/no_such_database_xyz"
    with pytest.raises(StorageError) as info:
        open_storage(bad)
    assert "no_such_database_xyz" in info.value.problems[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql", "mysql"])
def test_a_fleet_started_at_once_on_an_empty_storage_all_open_it(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Each machine's `hpo run` creates the tables when missing: all at once, none may fail."""
    with contextlib.ExitStack() as stack:
        if backend == "sqlite":
            storage = f"sqlite:///{tmp_path / 'fleet.db'}"
        else:
            server = request.getfixturevalue(
                {"postgresql": "postgres_url"}.get(backend, "mysql_url")
            )
            storage = stack.enter_context(fresh_database(server))
        data = analytic_study("fleet", storage=storage, startup="balanced")
        design = study_startup(validate_study_data(data))
        machines = 6
        assert open_at_once(data, machines) == [0] * machines
        storage_obj = open_storage(storage)
        study = optuna.load_study(study_name="fleet", storage=storage_obj)
        waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
        assert len(waiting) == len(design)
        if isinstance(storage_obj, optuna.storages.RDBStorage):
            storage_obj.engine.dispose()  # the database is dropped next


@pytest.mark.parametrize(
    ("message", "race"),
    [
        ("table studies already exists", True),  # SQLite, MySQL
        ('relation "studies" already exists', True),  # PostgreSQL
        ('duplicate key value violates unique constraint "pg_type_typname_nsp_index"', True),
        ("(1062, \"Duplicate entry '1' for key 'PRIMARY'\")", True),
        ("UNIQUE constraint failed: version_info.version_info_id", True),
        ('password authentication failed for user "hpo"', False),
        ('database "nope" does not exist', False),
        ('connection to server at "127.0.0.1", port 1 failed: Connection refused', False),
        ("(1045, \"Access denied for user 'root'@'localhost'\")", False),
        ("(1049, \"Unknown database 'nope'\")", False),
        ("unable to open database file", False),
        ("file is not a database", False),
    ],
)
def test_only_a_race_to_create_the_tables_is_tried_again(message: str, race: bool) -> None:
    import sqlalchemy.exc

    from hpo.storages import is_schema_race

    exc = sqlalchemy.exc.OperationalError("CREATE TABLE studies (...)", {}, Exception(message))
    assert is_schema_race(exc) is race


@pytest.mark.parametrize("folder", ["q?mark", "pct%41x", "hash#1 and space"])
def test_a_study_folder_with_url_characters_keeps_its_database(tmp_path: Path, folder: str) -> None:
    """The folder is a path, not a URL: ``?`` starts no query and ``%41`` is no escape."""
    home = tmp_path / folder
    home.mkdir()
    path = home / "study.yaml"
    path.write_text(
        yaml.safe_dump(analytic_study(budget={"n_trials": 1}), sort_keys=False), encoding="utf-8"
    )
    summary = run_study(load_study_config(path))
    assert summary.n_complete + summary.n_pruned == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder], "a sibling file was written"
    assert optuna.get_all_study_names(open_storage(summary_url(home))) == ["analytic"]


def summary_url(folder: Path) -> str:
    """The URL of the default database in ``folder``, escaped as a URL needs it."""
    from sqlalchemy.engine import URL

    return URL.create("sqlite", database=str(folder / "hpo.db")).render_as_string()


def test_a_failed_open_leaves_no_empty_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError):
        open_storage(f"sqlite:///{tmp_path / 'x.db'}?timeout=not-a-number")
    assert list(tmp_path.iterdir()) == []


def _rollback_journal_study(folder: Path) -> Path:
    """A study whose SQLite file uses a rollback journal (as another program left it)."""
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(analytic_study(budget={"n_trials": 1})), encoding="utf-8")
    assert hpo("run", str(path), timeout=120).returncode == 0  # its connections are closed
    with contextlib.closing(sqlite3.connect(folder / "hpo.db")) as con:
        con.execute("PRAGMA journal_mode=DELETE")
    return path


def test_a_read_switches_no_journal_mode_and_writes_nothing(tmp_path: Path) -> None:
    from hpo.results import load_existing_study

    path = _rollback_journal_study(tmp_path)
    db = tmp_path / "hpo.db"
    before = (db.stat().st_mtime_ns, db.read_bytes())
    study = load_existing_study(load_study_config(path))
    assert len(study.get_trials()) == 1
    for command in ("status", "best"):  # both also read hpo confirm's results
        assert hpo(command, str(path), timeout=120).returncode == 0
    assert (db.stat().st_mtime_ns, db.read_bytes()) == before
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hpo.db", "study.yaml"]


def test_a_read_only_study_folder_can_be_read(tmp_path: Path) -> None:
    """A study on a read-only share: opened read-only, not refused (root: a bind mount)."""
    from hpo.results import load_existing_study
    from tests.hpo.test_storage_errors import _read_only

    path = _rollback_journal_study(tmp_path)
    with _read_only(tmp_path):
        study = load_existing_study(load_study_config(path))
        assert [t.number for t in study.get_trials()] == [0]


def test_hpo_pragmas_leave_a_callers_own_sqlite_database_as_it_was(tmp_path: Path) -> None:
    """The listener was on every SQLAlchemy engine: a caller's rollback-journal database got
    ``synchronous=NORMAL`` (not crash-safe there) once hpo had opened a storage."""
    import sqlalchemy

    storage = open_storage(f"sqlite:///{tmp_path / 'hpo.db'}")
    storage.get_all_studies()
    with storage.engine.connect() as conn:  # type: ignore[attr-defined]
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    mine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'mine.db'}")
    with mine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, as it was
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    mine.dispose()


@pytest.mark.postgres
def test_reading_a_server_database_without_studies_creates_no_tables(postgres_url: str) -> None:
    """``hpo status`` on another program's database made Optuna's 13 tables there."""
    import sqlalchemy

    with fresh_database(postgres_url) as url:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql("CREATE TABLE customers (id int)")
            with pytest.raises(ConfigError) as info:
                study_status(validate_study_data(analytic_study("absent", storage=url)))
            assert info.value.problems == [
                f"study 'absent' not found in {mask_url(url)}; run it first"
            ]
            assert sqlalchemy.inspect(engine).get_table_names() == ["customers"]
        finally:
            engine.dispose()


@pytest.mark.mysql
def test_a_name_a_utf8mb3_database_cannot_hold_is_one_line(mysql_url: str) -> None:
    """An emoji in a MySQL ``utf8mb3`` database was a StorageInternalError traceback."""
    import sqlalchemy

    with fresh_database(mysql_url) as url:
        engine = sqlalchemy.create_engine(url)
        with engine.begin() as conn:
            name = sqlalchemy.make_url(url).database
            conn.exec_driver_sql(f"ALTER DATABASE {name} CHARACTER SET utf8mb3")
        engine.dispose()
        cfg = validate_study_data(analytic_study("emoji-\U0001f642", storage=url))
        for call in (run_study, study_status):  # run creates it; status looks it up
            with pytest.raises(StorageError) as info:
                call(cfg)
            assert info.value.problems == [
                "name: the database cannot store the study name 'emoji-\U0001f642' in its "
                "character set; convert it to utf8mb4 or use a name without such characters"
            ]


def test_a_relative_sqlite_uri_filename_is_beside_the_study_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sqlite:///file:rel.db?uri=true`` went to the current folder; plain paths did not."""
    from hpo.storages import sqlite_path, storage_url

    (tmp_path / "study").mkdir()
    (tmp_path / "elsewhere").mkdir()
    path = tmp_path / "study" / "s.yaml"
    data = analytic_study(storage="sqlite:///file:rel.db?uri=true", budget={"n_trials": 1})
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path / "elsewhere")
    cfg = load_study_config(path)
    assert sqlite_path(storage_url(cfg)) == tmp_path / "study" / "rel.db"
    run_study(cfg)
    assert (tmp_path / "study" / "rel.db").is_file()
    assert list((tmp_path / "elsewhere").iterdir()) == []
