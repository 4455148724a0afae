"""Shared fixtures: study files on disk and real PostgreSQL and MySQL servers.

PostgreSQL comes from ``HPO_TEST_POSTGRES_URL`` when set (CI sets it); otherwise a
throwaway server is started when PostgreSQL's binaries are installed; otherwise the
tests that need it skip and say why. MySQL/MariaDB comes from ``HPO_TEST_MYSQL_URL``
(CI sets it); without it those tests skip.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hpo.yaml_loader import dump_yaml


@contextlib.contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server of ``server_url``: its URL, dropped afterwards."""
    import sqlalchemy

    name = f"hpo_fresh_{uuid.uuid4().hex[:10]}"
    admin = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        try:
            with admin.connect() as con:
                con.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
        except sqlalchemy.exc.SQLAlchemyError as exc:
            pytest.skip(f"cannot create a database on the test server: {exc.__class__.__name__}")
        try:
            yield str(sqlalchemy.make_url(server_url).set(database=name))
        finally:
            with admin.connect() as con:
                if server_url.startswith("postgresql"):  # end what the test left connected
                    con.execute(
                        sqlalchemy.text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": name},
                    )
                con.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
    finally:
        admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    return None


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL database the tests may create tables in."""
    url = os.environ.get("HPO_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL not available: set HPO_TEST_POSTGRES_URL or install postgresql")
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to own a throwaway server")
        prefix = ["runuser", "-u", "postgres", "--"]
    tmp = tempfile.mkdtemp(prefix="hpo-pg-")
    os.chmod(tmp, 0o777)
    data = os.path.join(tmp, "data")
    port = _free_port()
    subprocess.run(
        [*prefix, initdb, "-D", data, "-A", "trust", "-U", "postgres"],
        check=True,
        capture_output=True,
    )
    # The server must not inherit our pipes, or subprocess.run never returns.
    subprocess.run(
        [
            *prefix,
            pg_ctl,
            "-D",
            data,
            "-w",
            "-l",
            os.path.join(tmp, "postgres.log"),
            "-o",
            f"-p {port} -k {tmp} -h 127.0.0.1",
            "start",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True
        )
        shutil.rmtree(tmp, ignore_errors=True)


class PostgresServer:
    """A throwaway PostgreSQL server of our own: tests may stop, start and restart it.

    Connections over TCP need a password (scram-sha-256), so the URL carries one and
    tests can check it never leaks; the Unix socket in ``folder`` is trusted, for setup.
    """

    password = "Sup3r-s3cret-pw"

    def __init__(self, folder: Path, pg_ctl: str, prefix: list[str], port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "postgres.log"
        self.pg_ctl = pg_ctl
        self.prefix = prefix
        self.port = port

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the ``postgres`` database as the superuser (password included)."""
        return f"postgresql+psycopg://postgres:{self.password}@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(
            [*self.prefix, self.pg_ctl, "-D", str(self.data), *args],
            check=True,
            stdout=subprocess.DEVNULL,  # the server must not inherit our pipes
            stderr=subprocess.DEVNULL,
            timeout=timeout,
        )

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.folder} -h 127.0.0.1"
        self._ctl("-w", "-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back open transactions and disconnect clients)."""
        self._ctl("-w", "-m", mode, "stop")

    def execute(self, sql: str) -> None:
        """Run one statement as the superuser over the trusted Unix socket."""
        import psycopg

        with psycopg.connect(
            host=str(self.folder), port=self.port, user="postgres", dbname="postgres"
        ) as con:
            con.autocommit = True
            con.execute(sql)  # type: ignore[arg-type]


def start_postgres_server() -> PostgresServer | str:
    """Start a fresh server in a temporary folder, or return why that is impossible here."""
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        return "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql"
    prefix: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to own a throwaway server"
        prefix = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="hpo-pg-own-"))
    os.chmod(folder, 0o777)
    pwfile = folder / "pw"
    pwfile.write_text(PostgresServer.password + "\n", encoding="utf-8")
    os.chmod(pwfile, 0o644)
    server = PostgresServer(folder, pg_ctl, prefix, _free_port())
    subprocess.run(
        [
            *prefix,
            initdb,
            "-D",
            str(server.data),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def own_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server only these tests use, so they may restart it (never a shared one)."""
    server = start_postgres_server()
    if isinstance(server, str):
        pytest.skip(server)
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(server.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def mysql_url() -> str:
    """URL of a real MySQL or MariaDB database the tests may create tables in."""
    url = os.environ.get("HPO_TEST_MYSQL_URL")
    if not url:
        pytest.skip(
            "MySQL not available: set HPO_TEST_MYSQL_URL (e.g. mysql+pymysql://root@127.0.0.1:3306/test)"
        )
    pytest.importorskip("pymysql", reason="the MySQL driver: pip install -e '.[mysql]'")
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def rdb_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite file, or the test PostgreSQL server (skipped where there is none)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hpo.db'}"
    else:
        yield request.getfixturevalue("postgres_url")


@pytest.fixture
def unique_name() -> str:
    """A study name no other test (or earlier run on a shared server) uses."""
    return f"t-{uuid.uuid4().hex[:10]}"


def analytic_study(name: str = "analytic", **overrides: Any) -> dict[str, Any]:
    """A valid study on the fast analytic trainer; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "name": name,
        "objective": {"metric": "best_score", "direction": "maximize"},
        "sampler": {"name": "tpe", "seed": 0, "n_startup_trials": 4},
        "pruner": {"name": "median", "n_startup_trials": 3, "n_warmup_steps": 2},
        "budget": {"n_trials": 12},
        "trainer": {"name": "analytic", "params": {"epochs": 8}},
        "space": {
            "x": {"type": "float", "low": -2.0, "high": 2.0},
            "y": {"type": "float", "low": -2.0, "high": 2.0},
            "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
            "margin": {"type": "float", "low": 0.1, "high": 1.0, "if": {"choice": "c"}},
        },
        # Plots and notes cost ~0.2 s a trial; tests of artifacts turn them on explicitly.
        "artifacts": {"enabled": False},
    }
    data.update(overrides)
    return data


def _open_when_all_are_ready(cfg_data: dict[str, Any], barrier: Any) -> int:
    """One machine's ``hpo run`` opening the study: all of them at the same instant."""
    from hpo import open_study, validate_study_data

    cfg = validate_study_data(cfg_data)
    barrier.wait(timeout=120)
    open_study(cfg)
    return 0


def open_at_once(cfg_data: dict[str, Any], machines: int = 6) -> list[int]:
    """``machines`` processes, released together, each open the study as ``hpo run`` does.

    Returns each one's status (0: it opened the study); one that failed raises here.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(machines, mp_context=ctx) as pool:
        barrier = manager.Barrier(machines)
        runs = [pool.submit(_open_when_all_are_ready, cfg_data, barrier) for _ in range(machines)]
        return [r.result(timeout=300) for r in runs]


def pretrain_conv_encoder(save_dir: Path) -> Path:
    """A conv encoder of width 16 on synthetic HAR's 9 channels, one epoch: a checkpoint for
    fine-tuning checks, written in ``save_dir`` (a few seconds on CPU)."""
    from trainers.contrastive import train

    train(
        {
            "mode": "pretrain",
            "dataset": "synthetic_har",
            "synthetic_n_train": 120,
            "model": "conv",
            "dim": 16,
            "proj_dim": 8,
            "epochs": 1,
            "save_dir": str(save_dir),
        }
    )
    return save_dir


@pytest.fixture
def write_study(tmp_path: Path) -> Callable[..., Path]:
    """Write a study mapping (or raw text) to ``tmp_path`` and return its path."""

    def _write(data: dict[str, Any] | str, filename: str = "study.yaml") -> Path:
        path = tmp_path / filename
        text = data if isinstance(data, str) else dump_yaml(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


MAX_TEST_PROCESSES = 4
"""``-n auto``'s cap: many tests start worker processes of their own, so more test
processes than this mostly wait on the CPU and stretch the timing-bound tests."""


@pytest.hookimpl(optionalhook=True)  # xdist's hook: pytest without xdist must not fail
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``pytest -n auto``: one test process per core, at most :data:`MAX_TEST_PROCESSES`
    (``PYTEST_XDIST_AUTO_NUM_WORKERS`` still decides when set)."""
    chosen = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if chosen and chosen.isdigit():
        return int(chosen)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, MAX_TEST_PROCESSES))


@pytest.fixture(autouse=True)
def _quiet_optuna() -> None:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, interval: float = 0.1) -> bool:
    """Poll until ``predicate`` is true or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
