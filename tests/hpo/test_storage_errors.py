"""Storage URLs that cannot work: one clear line, exit status 2, no partial study, no password.

Every case runs the real ``hpo run`` against a real failure: a port nobody listens on,
a PostgreSQL server of our own that rejects a wrong password, a SQLite file the OS
refuses to write, a folder that does not exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from optuna_dashboard import get_note

from hpo.storages import mask_url
from tests.conftest import PostgresServer, analytic_study
from tests.hpo.test_workers import hpo

SECRET = "Tr0ub4dor-and-3"
"""A password that must never be printed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _study_file(folder: Path, storage: str, **overrides: Any) -> Path:
    data = analytic_study(name="bad-storage", storage=storage, budget={"n_trials": 2}, **overrides)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _assert_one_line_error(
    result: subprocess.CompletedProcess[str], *expected: str, secrets: tuple[str, ...] = (SECRET,)
) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("error: storage: "), line
    for text in expected:
        assert text in line, line
    for secret in secrets:
        assert secret not in result.stdout + result.stderr
    return line


# -- masking -----------------------------------------------------------------------------------


def test_mask_url_hides_every_password_form() -> None:
    assert mask_url(f"postgresql+psycopg://u:{SECRET}@h:5432/db") == (
        "postgresql+psycopg://u:***@h:5432/db"
    )
    assert mask_url(f"postgresql://u@h/db?sslmode=require&password={SECRET}") == (
        "postgresql://u@h/db?sslmode=require&password=***"
    )
    assert mask_url(f"host=h user=u password={SECRET} dbname=db") == (
        "host=h user=u password=*** dbname=db"
    )
    assert mask_url(f"dsn: password='{SECRET}'") == "dsn: password=***"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_mask_url_leaves_a_port_and_path_before_an_email_address() -> None:
    # a trainer's message: the text between "localhost:" and the "@" is no password
    for text in (
        "Could not connect to http://localhost:8080/api; write to ops@example.com",
        "GET https://host:443/x failed: 'user@domain'",
    ):
        assert mask_url(text) == text


def test_mask_url_hides_a_password_with_an_unencoded_at_sign() -> None:
    """Everything up to the last ``@`` before the host is the password, not just its head."""
    assert (
        mask_url("postgresql://postgres:s3cret@pw@host/db") == "postgresql://postgres:***@host/db"
    )
    assert mask_url(f"cannot open mysql://u:{SECRET}@@x@h:3306/db: refused") == (
        "cannot open mysql://u:***@h:3306/db: refused"
    )
    # an ``@`` after the host (in the query) is not part of the password
    assert mask_url("postgresql://u:pw@h/db?application_name=a@b") == (
        "postgresql://u:***@h/db?application_name=a@b"
    )


def test_mask_url_hides_a_password_with_no_user_or_with_spaces() -> None:
    """An empty user and a password with whitespace are masked up to the last ``@``."""
    for url, masked in [
        (
            "postgresql+psycopg://:topsecret@127.0.0.1:1/db",
            "postgresql+psycopg://:***@127.0.0.1:1/db",
        ),
        ("postgresql+psycopg://:top secret@h:1/db", "postgresql+psycopg://:***@h:1/db"),
        ("postgresql+psycopg://u:top secret@h:1/db", "postgresql+psycopg://u:***@h:1/db"),
        ("mysql://u:a b@c d@h/db", "mysql://u:***@h/db"),
        ("postgresql://:p@ss word@h/db", "postgresql://:***@h/db"),
        ("postgresql://u:a\tb/c?d#e@h/db", "postgresql://u:***@h/db"),
        ("grpc://:top secret@h:1", "grpc://:***@h:1"),
    ]:
        assert mask_url(url) == masked, url
        assert mask_url(f"cannot open {url}: refused") == f"cannot open {masked}: refused", url
    # a URL without a path, followed by more text: the host ends at the first space
    assert mask_url("grpc://u:top secret@h:1 failed: refused") == (
        "grpc://u:***@h:1 failed: refused"
    )
    # two URLs on one line: each keeps its own host
    assert mask_url("a://:p w@h/x and b://:q@k/y") == "a://:***@h/x and b://:***@k/y"
    # an ``@`` after the database (e.g. in a server's message) is not part of the password
    assert mask_url("mysql://u:pw@h:3306/db: denied for 'u'@'10.0.0.1' (using password)") == (
        "mysql://u:***@h:3306/db: denied for 'u'@'10.0.0.1' (using password)"
    )
    assert mask_url("grpc://127.0.0.1:13000: refused") == "grpc://127.0.0.1:13000: refused"
    assert mask_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("password", ["topsecret", "top secret"])
@pytest.mark.parametrize("user", ["", "hpo"])
def test_validate_and_status_never_print_the_password(
    tmp_path: Path, password: str, user: str
) -> None:
    port = _free_port()
    path = _study_file(tmp_path, f"postgresql+psycopg://{user}:${{PGPW}}@127.0.0.1:{port}/db")
    masked = f"postgresql+psycopg://{user}:***@127.0.0.1:{port}/db"
    shown = hpo("validate", str(path), timeout=60, PGPW=password)
    assert shown.returncode == 0, shown.stderr
    assert f"storage   {masked}" in shown.stdout
    assert "secret" not in shown.stdout + shown.stderr
    status = hpo("status", str(path), timeout=60, PGPW=password)
    line = _assert_one_line_error(status, f"cannot open {masked}: ", secrets=("secret",))
    assert line.startswith("error: storage: ")


# -- a server nobody answers on --------------------------------------------------------------


@pytest.mark.parametrize("how", ["in_file", "from_env", "set_override", "supervised"])
def test_unreachable_server(tmp_path: Path, how: str) -> None:
    port = _free_port()
    literal = f"postgresql+psycopg://hpo:{SECRET}@127.0.0.1:{port}/hpo"
    args: list[str] = []
    env: dict[str, str] = {}
    if how == "from_env":
        path = _study_file(tmp_path, f"postgresql+psycopg://hpo:${{PGPW}}@127.0.0.1:{port}/hpo")
        env["PGPW"] = SECRET
    elif how == "set_override":
        path = _study_file(tmp_path, "sqlite:///hpo.db")
        args = ["--set", f"storage={literal}"]
    else:
        path = _study_file(tmp_path, literal)
        if how == "supervised":
            args = ["--workers", "2"]
    result = hpo("run", str(path), *args, timeout=60, **env)
    _assert_one_line_error(
        result,
        f"error: storage: cannot open postgresql+psycopg://hpo:***@127.0.0.1:{port}/hpo: ",
        "Connection refused",
    )
    assert not (tmp_path / "hpo.db").exists()


@pytest.mark.parametrize("how", ["in_file", "supervised"])
def test_unreachable_grpc_storage_proxy(tmp_path: Path, how: str) -> None:
    """Checked before any study is created: one line, no gRPC traceback, no Optuna warning."""
    pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")
    port = _free_port()
    path = _study_file(tmp_path, f"grpc://127.0.0.1:{port}")
    args = ["--workers", "2"] if how == "supervised" else []
    result = hpo("run", str(path), *args, timeout=60)
    _assert_one_line_error(
        result,
        f"error: storage: cannot connect to the storage proxy at grpc://127.0.0.1:{port}: ",
        "Connection refused",
    )
    assert "ExperimentalWarning" not in result.stderr


# -- a real server that says no ----------------------------------------------------------------


@pytest.mark.postgres
def test_wrong_password_on_a_real_server(tmp_path: Path, own_postgres: PostgresServer) -> None:
    right = "right-horse-battery"
    own_postgres.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'hpo_user') THEN "
        f"CREATE ROLE hpo_user LOGIN PASSWORD '{right}'; END IF; END $$"
    )
    own_postgres.execute("CREATE DATABASE hpo_wrong_pw OWNER hpo_user")
    base = f"127.0.0.1:{own_postgres.port}/hpo_wrong_pw"
    path = _study_file(tmp_path, f"postgresql+psycopg://hpo_user:${{PGPW}}@{base}")
    result = hpo("run", str(path), timeout=60, PGPW=SECRET)
    _assert_one_line_error(
        result,
        f"cannot open postgresql+psycopg://hpo_user:***@{base}: ",
        'password authentication failed for user "hpo_user"',
        secrets=(SECRET, right),
    )
    # Nothing was created: the right password finds an empty database.
    good = f"postgresql+psycopg://hpo_user:{right}@{base}"
    import sqlalchemy

    engine = sqlalchemy.create_engine(good)
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


# -- SQLite files and folders ------------------------------------------------------------------


@contextlib.contextmanager
def _read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` and what is in it read-only for this user, for real.

    Unprivileged: file modes. As root (which ignores modes): a read-only bind mount,
    or a skip where mounting is not permitted.
    """
    if os.geteuid() != 0:
        for path in [*folder.iterdir(), folder]:
            path.chmod(0o555 if path.is_dir() else 0o444)
        try:
            yield
        finally:
            for path in [folder, *folder.iterdir()]:
                path.chmod(0o755 if path.is_dir() else 0o644)
        return
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("root ignores file modes and cannot bind-mount read-only here")
    try:
        ro = subprocess.run(
            ["mount", "-o", "remount,bind,ro", str(folder), str(folder)], capture_output=True
        )
        if ro.returncode != 0:
            pytest.skip("root ignores file modes and cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="hpo-ro-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_read_only_sqlite_file(scratch: Path, tmp_path: Path) -> None:
    db = scratch / "ro.db"
    optuna.create_study(study_name="other", storage=f"sqlite:///{db}")
    before = db.read_bytes()
    path = _study_file(tmp_path, f"sqlite:///{db}")
    with _read_only(scratch):
        result = hpo("run", str(path), timeout=60)
    _assert_one_line_error(result, f"error: storage: SQLite file {db} is read-only")
    assert db.read_bytes() == before, "no partial study"
    assert optuna.get_all_study_names(f"sqlite:///{db}") == ["other"]


def test_sqlite_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    path = _study_file(tmp_path, f"sqlite:///{missing}/hpo.db")
    result = hpo("run", str(path), timeout=60)
    _assert_one_line_error(result, f"error: storage: folder {missing} does not exist")
    assert not (tmp_path / "no").exists()


def test_journal_folder_that_does_not_exist(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    path = _study_file(tmp_path, f"journal:///{missing}/hpo.log")
    result = hpo("run", str(path), timeout=60)
    _assert_one_line_error(result, f"error: storage: folder {missing} does not exist")
    assert not missing.exists()


def test_a_file_on_the_way_to_the_storage_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    path = _study_file(tmp_path, f"sqlite:///{tmp_path}/notes.txt/hpo.db")
    result = hpo("run", str(path), timeout=60)
    _assert_one_line_error(result, f"storage: {tmp_path}/notes.txt is a file, not a folder")


@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused(tmp_path: Path, url: str) -> None:
    """Each worker would get its own empty database, and the results would vanish."""
    result = hpo("run", str(_study_file(tmp_path, url)), "-w", "2", timeout=60)
    _assert_one_line_error(result, f"storage: {url} is an in-memory database", "sqlite:///hpo.db")


def test_a_file_that_is_not_a_journal_is_left_untouched(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    result = hpo("run", str(_study_file(tmp_path, f"journal:///{notes}")), timeout=60)
    _assert_one_line_error(result, f"storage: {notes} is not an Optuna journal file")
    assert notes.read_text() == "hello\n"


def test_an_existing_journal_is_opened(tmp_path: Path) -> None:
    journal = tmp_path / "hpo.log"
    path = _study_file(tmp_path, f"journal:///{journal}")
    for _ in range(2):  # the second run resumes the journal the first one wrote
        result = hpo("run", str(path), timeout=60)
        assert result.returncode == 0, result.stderr
    assert len(optuna.load_study(study_name="bad-storage", storage=_journal(journal)).trials) == 2


def _journal(path: Path) -> optuna.storages.BaseStorage:
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(path)))


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        (
            "mysql://root@127.0.0.1:1/x",
            "use mysql+pymysql://... (pip install 'contrastive-hpo[mysql]')",
        ),
        (
            "postgresql+psycopg2://u@127.0.0.1:1/x",
            "use postgresql+psycopg://... (pip install 'contrastive-hpo[postgres]')",
        ),
    ],
)
def test_a_missing_driver_names_the_url_that_works(tmp_path: Path, url: str, hint: str) -> None:
    result = hpo("status", str(_study_file(tmp_path, url)), timeout=60)
    _assert_one_line_error(result, "no database driver for", hint)


@pytest.mark.parametrize("command", ["validate", "run"])
def test_not_a_database_file(tmp_path: Path, command: str) -> None:
    """Before, ``hpo validate`` passed it and only the run said "file is not a database"."""
    db = tmp_path / "garbage.db"
    db.write_bytes(b"this is not SQLite" * 100)
    path = _study_file(tmp_path, f"sqlite:///{db}")
    result = hpo(command, str(path), timeout=60)
    _assert_one_line_error(result, f"storage: {db} is not a SQLite database (left untouched)")
    assert db.read_bytes() == b"this is not SQLite" * 100


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_folder_named_as_the_sqlite_file_is_refused(tmp_path: Path, command: str) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    result = hpo(command, str(_study_file(tmp_path, f"sqlite:///{folder}")), timeout=60)
    _assert_one_line_error(result, f"storage: {folder} is a folder, not a SQLite file")


# -- a successful run leaks the password nowhere -------------------------------------------------


@pytest.mark.slow
@pytest.mark.postgres
def test_password_appears_in_no_output_note_or_report(
    tmp_path: Path, own_postgres: PostgresServer
) -> None:
    storage = f"postgresql+psycopg://postgres:${{PGPW}}@127.0.0.1:{own_postgres.port}/postgres"
    data = analytic_study(
        name="masked",
        storage=storage,
        budget={"n_trials": 2},
        artifacts={"enabled": True, "plots": False, "dir": str(tmp_path / "artifacts")},
    )
    path = tmp_path / "masked.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    secret = own_postgres.password
    outputs = [
        hpo("run", str(path), "-v", timeout=120, PGPW=secret),
        hpo("validate", str(path), timeout=60, PGPW=secret),
        hpo("status", str(path), timeout=60, PGPW=secret),
        hpo("best", str(path), timeout=60, PGPW=secret),
        hpo("report", str(path), "-o", str(tmp_path / "report.html"), timeout=120, PGPW=secret),
    ]
    for result in outputs:
        assert result.returncode == 0, (result.args, result.stderr)
        assert secret not in result.stdout + result.stderr, result.args
    assert "postgres:***@" in outputs[0].stdout
    assert secret not in (tmp_path / "report.html").read_text(encoding="utf-8")
    study = optuna.load_study(study_name="masked", storage=own_postgres.url)
    for trial in study.trials:
        assert secret not in str(trial.user_attrs) + str(trial.system_attrs)
        assert secret not in get_note(optuna.Trial(study, trial._trial_id))
    assert secret not in str(study.user_attrs)
    assert secret not in str(study._storage.get_study_system_attrs(study._study_id))
    for file in (tmp_path / "artifacts").rglob("*"):
        if file.is_file():
            assert secret.encode() not in file.read_bytes(), file


# -- the retrying storage itself ----------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_storage_retries_and_gives_up_within_its_budget(
    own_postgres: PostgresServer, unique_name: str
) -> None:
    import pickle
    import time

    from hpo.storages import StorageUnavailableError, open_storage, storage_outage

    storage: Any = open_storage(own_postgres.url)
    assert type(storage).__name__ == "ResilientRDBStorage"
    copy = pickle.loads(pickle.dumps(storage))  # Optuna storages are picklable; ours too
    assert copy.get_all_studies() is not None
    storage._outage.budget = 1.0
    study = optuna.create_study(study_name=unique_name, storage=storage)
    own_postgres.stop("fast")
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as info:
            study.get_trials()
        assert 0.9 < time.monotonic() - started < 10
        (line,) = info.value.problems
        assert "postgres:***@" in line and own_postgres.password not in line
        assert info.value.exit_code == 75
        wrapped = RuntimeError("raised while handling")
        wrapped.__context__ = info.value
        assert storage_outage(wrapped) is info.value
    finally:
        own_postgres.start()
    assert study.get_trials() == [], "the same storage works again once the server is back"


# -- Which errors count as a lost connection -------------------------------------------------


@pytest.mark.parametrize(
    ("error_name", "lost"),
    [
        ("OperationalError", True),  # no SQLSTATE: refused, reset, timed out
        ("AdminShutdown", True),  # 57P01: the server is restarting
        ("CannotConnectNow", True),  # 57P03: still starting up
        ("QueryCanceled", False),  # 57014: a statement timeout is not an outage
        ("DiskFull", False),  # 53100: retrying for minutes would only hide it
    ],
)
def test_only_a_lost_connection_is_retried(error_name: str, lost: bool) -> None:
    psycopg = pytest.importorskip("psycopg")
    import sqlalchemy.exc

    from hpo.storages import is_connection_error

    cls = getattr(psycopg.errors, error_name, None) or getattr(psycopg, error_name)
    driver_error = cls("message")
    wrapped = sqlalchemy.exc.OperationalError("SELECT 1", {}, driver_error)
    assert is_connection_error(wrapped) is lost
    assert is_connection_error(optuna.exceptions.StorageInternalError("x")) is False
    try:  # as Optuna raises it: the driver's error is the cause of its own
        raise optuna.exceptions.StorageInternalError("write failed") from wrapped
    except optuna.exceptions.StorageInternalError as exc:
        assert is_connection_error(exc) is lost


def test_an_unreadable_journal_and_a_broken_driver_say_what_happened(tmp_path: Path) -> None:
    from unittest import mock

    from hpo.storages import _driver_problem, journal_file_problems

    journal = tmp_path / "hpo.log"
    journal.write_text('{"op_code": 0}\n')
    assert journal_file_problems(journal) == []
    with mock.patch.object(Path, "open", side_effect=PermissionError(13, "Permission denied")):
        assert journal_file_problems(journal) == [
            f"storage: cannot read {journal}: Permission denied"
        ]  # not "is not an Optuna journal file"
    assert _driver_problem("postgresql+psycopg://u@h/db", ImportError("no libpq\nfound")) == (
        "storage: the postgresql+psycopg driver cannot be imported (no libpq\\nfound); "
        "pip install 'contrastive-hpo[postgres]'"
    )


# -- passwords with URL characters, masked and expanded ------------------------------------------


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        # an ``@`` in the password, then ``/``: the whole password, not just its head
        ("postgresql://hpo:a@b/c@db/hpo", "postgresql://hpo:***@db/hpo"),
        ("postgresql://hpo:p@ss?wd@db/hpo", "postgresql://hpo:***@db/hpo"),
        # digits and ``/`` with no space before the ``@``: a password, not a port and path
        ("postgresql://hpo:2024/Secret@db/hpo", "postgresql://hpo:***@db/hpo"),
        # an ``@`` in the user name (Azure's ``user@server``)
        ("postgresql://hpo@server:pw-Azure1@host/db", "postgresql://hpo@server:***@host/db"),
        # ``sslpassword`` (and other ``...password``) in the query
        (
            "postgresql://u@h/db?sslpassword=Key-Secret&sslmode=require",
            "postgresql://u@h/db?sslpassword=***&sslmode=require",
        ),
    ],
)
def test_mask_url_hides_passwords_with_url_characters(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert mask_url(f"cannot open {url}: refused") == f"cannot open {masked}: refused"


def test_a_driver_message_quoting_part_of_the_password_is_masked() -> None:
    """SQLAlchemy ends the password at its first ``@``; the driver names the rest as a host."""
    from hpo.errors import StorageError
    from hpo.storages import open_storage

    with pytest.raises(StorageError) as info:
        open_storage("postgresql+psycopg://hpo:p@ssTAIL@127.0.0.1:1/hpo")
    (line,) = info.value.problems
    assert line.startswith("storage: cannot open postgresql+psycopg://hpo:***@127.0.0.1:1/hpo: ")
    assert "ssTAIL" not in line


@pytest.mark.parametrize("password", ["p@ss:w/rd#1", "pct%41sign", "a?b=c&d"])
def test_an_env_password_with_url_characters_stays_the_password(
    password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.engine import make_url

    from hpo.storages import expand_env

    monkeypatch.setenv("PGPW", password)
    monkeypatch.setenv("PGUSER_X", "hpo@server")
    url = make_url(expand_env("postgresql+psycopg://${PGUSER_X}:${PGPW}@db.internal:5432/hpo"))
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "hpo@server",
        password,
        "db.internal",
        5432,
        "hpo",
    )
    # a whole URL from the environment, and values outside the user/password, as they are
    monkeypatch.setenv("HPO_URL", "postgresql://u:p@h/db?sslmode=require")
    assert expand_env("${HPO_URL}") == "postgresql://u:p@h/db?sslmode=require"
    monkeypatch.setenv("DB", "hpo_db")
    assert expand_env("postgresql://u@h/${DB}") == "postgresql://u@h/hpo_db"


@pytest.mark.postgres
def test_a_run_with_an_env_password_holding_url_characters(
    tmp_path: Path, postgres_url: str, unique_name: str
) -> None:
    """The server (trust auth) accepts any password: before, the ``@`` moved the host."""
    from sqlalchemy.engine import make_url

    server = make_url(postgres_url)
    storage = f"postgresql+psycopg://{server.username}:${{PGPW}}@{server.host}:{server.port}"
    data = analytic_study(
        unique_name, storage=f"{storage}/{server.database}", budget={"n_trials": 1}
    )
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    result = hpo("run", str(path), timeout=120, PGPW="p@ssTAIL/x#%41")
    assert result.returncode == 0, result.stderr
    assert "ssTAIL" not in result.stdout + result.stderr


# -- SQLite in any URL form ----------------------------------------------------------------------


def test_an_in_memory_sqlite_url_from_the_environment_is_refused(tmp_path: Path) -> None:
    for url in ("sqlite://", "sqlite+pysqlite:///:memory:"):
        result = hpo("run", str(_study_file(tmp_path, "${U1}")), timeout=60, U1=url)
        _assert_one_line_error(result, f"storage: {url} is an in-memory database")


def test_a_sqlite_url_with_a_driver_is_a_file_beside_the_study(tmp_path: Path) -> None:
    path = _study_file(tmp_path, "sqlite+pysqlite:///rel.db")
    result = hpo("run", str(path), timeout=120)
    assert result.returncode == 0, result.stderr
    db = tmp_path / "rel.db"
    assert db.exists(), "resolved against the current folder, not the study's"
    with contextlib.closing(sqlite3.connect(db)) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- tables of another Optuna version -----------------------------------------------------------


def test_tables_of_another_optuna_version_are_one_line(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    path = _study_file(tmp_path, f"sqlite:///{db}")
    assert hpo("run", str(path), timeout=120).returncode == 0
    with contextlib.closing(sqlite3.connect(db)) as con, con:
        con.execute("UPDATE alembic_version SET version_num = 'v3.0.0.d'")
    for command in ("status", "run"):
        result = hpo(command, str(path), timeout=60)
        line = _assert_one_line_error(
            result, "is no longer compatible with the table schema", "optuna storage upgrade"
        )
        assert line.startswith(f"error: storage: sqlite:///{db}: "), line
        assert line.endswith(f"; run: optuna storage upgrade --storage 'sqlite:///{db}'"), line


# -- study names a database collation takes for one another ----------------------------------


@pytest.mark.mysql
def test_a_name_differing_only_in_case_is_not_another_study_on_mysql(
    tmp_path: Path, mysql_url: str
) -> None:
    """MariaDB's default collation finds ``rev`` for ``REV``: refused, not resumed."""
    from tests.conftest import fresh_database

    with fresh_database(mysql_url) as storage:
        path = _study_file(tmp_path, storage)
        assert hpo("run", str(path), "--set", "name=rev", timeout=120).returncode == 0
        for other in ("REV", "Rév"):
            result = hpo("run", str(path), "--set", f"name={other}", timeout=60)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr
            lines = [line for line in result.stderr.splitlines() if line.strip()]
            assert lines == [
                f"error: name: the database takes {other!r} for the existing study 'rev' "
                "(its collation ignores case and accents); use that exact name, or one that "
                "differs in more than case or accents"
            ], result.stderr
        assert optuna.get_all_study_names(storage) == ["rev"]
        assert len(optuna.load_study(study_name="rev", storage=storage).trials) == 2
