"""Database errors behind ``hpo storage-proxy`` reach ``grpc://`` clients as hpo errors.

Before, the proxy's storage errors crossed gRPC as ``UNKNOWN`` "Exception calling
application" and clients died in a ``grpc._InactiveRpcError`` traceback: a database lost
behind the proxy made a worker exit 1 (a crash to the supervisor) instead of 75 (an
outage), and a study name a MySQL collation takes for another one was a traceback
instead of the one line a direct URL gives. Real proxies, real PostgreSQL and MariaDB,
and a real TCP relay between proxy and database that the tests kill; no mocks.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy
import yaml
from optuna.exceptions import DuplicatedStudyError, UpdateFinishedTrialError
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.storages import StorageUnavailableError, open_storage
from hpo.storages._outages import STORAGE_UNAVAILABLE_EXIT
from hpo.workers.proxy import make_proxy_server
from tests.conftest import analytic_study, fresh_database, wait_for
from tests.hpo.test_proxy import _listening
from tests.hpo.test_workers import free_port, hpo, hpo_background, hpo_env, worker_study

pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")

SECRET = "Pr0xy-s3cret-pw"
"""A password in the proxy's database URL (the test server trusts, so any works): never shown."""
PROXY_RETRY_S = "2"
CLIENT_RETRY_S = "3"

_RELAY = """
import socket, sys, threading
listen_port, target_host, target_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])

def pump(src, dst):
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", listen_port))
server.listen(64)
print("relaying", flush=True)
while True:
    client, _ = server.accept()
    upstream = socket.create_connection((target_host, target_port))
    for a, b in ((client, upstream), (upstream, client)):
        threading.Thread(target=pump, args=(a, b), daemon=True).start()
"""


class Relay:
    """A TCP forwarder from ``127.0.0.1:port`` to the database: killing it is the outage."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.port = free_port()
        self.target = (target_host, target_port)
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RELAY, str(self.port), self.target[0], str(self.target[1])],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "relaying"

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.communicate(timeout=30)


def _start_proxy(storage_url: str, **env: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proxy = hpo_background("storage-proxy", "--storage", storage_url, "--port", str(port), **env)
    if not wait_for(lambda: _listening(port), timeout=60):
        proxy.kill()
        pytest.fail(f"the storage proxy did not start: {proxy.communicate(timeout=30)[0]}")
    return proxy, port


def _stop(proxy: subprocess.Popen[str]) -> str:
    if proxy.poll() is None:
        proxy.terminate()
    return proxy.communicate(timeout=30)[0]


def _stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    assert "_InactiveRpcError" not in result.stdout + result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.fixture
def postgres_behind_relay(postgres_url: str) -> Iterator[tuple[str, Relay]]:
    """A fresh PostgreSQL database's URL through a running relay (with a password in it)."""
    with fresh_database(postgres_url) as url:
        real = sqlalchemy.make_url(url)
        relay = Relay(real.host or "127.0.0.1", real.port or 5432)
        relay.start()
        try:
            through = real.set(host="127.0.0.1", port=relay.port, password=SECRET)
            yield through.render_as_string(hide_password=False), relay
        finally:
            relay.kill()


@pytest.fixture
def proxy_before_relay(
    postgres_behind_relay: tuple[str, Relay],
) -> Iterator[tuple[int, Relay, list[str]]]:
    """A real ``hpo storage-proxy`` (retrying ``PROXY_RETRY_S``) in front of the relay: its
    port, the relay, and (after the test) the proxy's output."""
    url, relay = postgres_behind_relay
    proxy, port = _start_proxy(url, HPO_STORAGE_RETRY_SECONDS=PROXY_RETRY_S)
    output: list[str] = []
    try:
        yield port, relay, output
    finally:
        output.append(_stop(proxy))
        assert SECRET not in output[-1]


def _outage_line_prefix(port: int, client_budget: str = CLIENT_RETRY_S) -> str:
    return (
        f"storage: the database behind the storage proxy at grpc://127.0.0.1:{port} "
        f"unreachable for {client_budget} s (proxy: postgresql+psycopg://"
    )


# -- (a) the proxy's database lost past its budget --------------------------------------------


@pytest.mark.postgres
def test_a_database_lost_behind_the_proxy_is_a_storage_outage_on_the_client(
    proxy_before_relay: tuple[int, Relay, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``UNAVAILABLE`` from the proxy: waited out like a restarting proxy, then exit 75."""
    port, relay, _ = proxy_before_relay
    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", CLIENT_RETRY_S)
    storage = open_storage(f"grpc://127.0.0.1:{port}")
    study = optuna.create_study(study_name="lost", storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    relay.kill()
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as info:
        study.get_trials()
    assert time.monotonic() - started < 30
    assert info.value.exit_code == STORAGE_UNAVAILABLE_EXIT
    (line,) = info.value.problems
    assert line.startswith(_outage_line_prefix(port)), line
    assert f"postgres:***@127.0.0.1:{relay.port}/" in line, line
    assert f"unreachable for {PROXY_RETRY_S} s (" in line, line
    assert SECRET not in line
    relay.start()  # the database is back: the same client works again through the proxy
    assert len(study.get_trials()) == 2


@pytest.mark.postgres
def test_hpo_status_on_a_database_lost_behind_the_proxy_is_one_line_and_exit_75(
    proxy_before_relay: tuple[int, Relay, list[str]], tmp_path: Path
) -> None:
    port, relay, _ = proxy_before_relay
    storage = f"grpc://127.0.0.1:{port}"
    path = tmp_path / "study.yaml"
    data = analytic_study(name="lost", storage=storage, budget={"n_trials": 2})
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    assert hpo("run", str(path), timeout=120).returncode == 0
    relay.kill()
    result = hpo("status", str(path), timeout=120, HPO_STORAGE_RETRY_SECONDS=CLIENT_RETRY_S)
    assert result.returncode == STORAGE_UNAVAILABLE_EXIT, (result.stdout, result.stderr)
    *warnings, error = _stderr_lines(result)
    assert error.startswith("error: " + _outage_line_prefix(port)), result.stderr
    # as with a direct URL: the wait is announced once, in the database's words
    assert warnings == [
        f"storage connection lost (proxy: {error.split('(proxy: ', 1)[1][:-1]}); "
        f"retrying for up to {CLIENT_RETRY_S} s"
    ], result.stderr
    assert SECRET not in result.stdout + result.stderr


@pytest.mark.postgres
def test_a_worker_whose_database_is_lost_behind_the_proxy_exits_75_not_1(
    proxy_before_relay: tuple[int, Relay, list[str]], tmp_path: Path
) -> None:
    """The supervisor restarts a worker that exits 75 as an outage; 1 was counted a crash."""
    port, relay, _ = proxy_before_relay
    path = worker_study(
        tmp_path, name="lost", storage=f"grpc://127.0.0.1:{port}", n_trials=200, sleep=0.2
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "hpo.workers.worker_main", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=hpo_env(HPO_STORAGE_RETRY_SECONDS=CLIENT_RETRY_S),
    )
    try:
        client = open_storage(f"grpc://127.0.0.1:{port}")

        def a_trial_has_finished() -> bool:
            try:
                study = optuna.load_study(study_name="lost", storage=client)
            except KeyError:
                return False
            return any(trial.state.is_finished() for trial in study.get_trials())

        assert wait_for(a_trial_has_finished, timeout=60), "the worker ran no trial"
        relay.kill()  # mid-run: the worker is inside a trial or starting one
        _, stderr = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
    assert worker.returncode == STORAGE_UNAVAILABLE_EXIT, stderr
    assert "Traceback" not in stderr and "_InactiveRpcError" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith("error: " + _outage_line_prefix(port)), stderr
    assert SECRET not in stderr


# -- (b) other hpo errors of the proxy's storage ----------------------------------------------


@pytest.mark.mysql
def test_a_name_a_mysql_collation_confuses_is_one_line_through_the_proxy(
    tmp_path: Path, mysql_url: str
) -> None:
    """As with the MySQL URL itself (test_storage_errors): exit 2, the same one line."""
    with fresh_database(mysql_url) as database:
        proxy, port = _start_proxy(database)
        try:
            storage = f"grpc://127.0.0.1:{port}"
            path = tmp_path / "study.yaml"
            data = analytic_study(name="rev", storage=storage, budget={"n_trials": 2})
            path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
            assert hpo("run", str(path), timeout=120).returncode == 0
            for other in ("REV", "Rév"):
                expected = (
                    f"name: the database takes {other!r} for the existing study 'rev' "
                    "(its collation ignores case and accents); use that exact name, or one "
                    "that differs in more than case or accents"
                )
                for command in ("status", "run"):
                    result = hpo(command, str(path), "--set", f"name={other}", timeout=60)
                    assert result.returncode == 2, (command, result.stdout, result.stderr)
                    assert _stderr_lines(result) == [f"error: {expected}"], result.stderr
                with pytest.raises(StorageError) as info:  # the API: a StorageError, no gRPC
                    open_storage(storage).get_study_id_from_name(other)
                assert info.value.problems == [expected]
                assert info.value.exit_code == 2
            assert optuna.get_all_study_names(database) == ["rev"]
            assert len(optuna.load_study(study_name="rev", storage=database).trials) == 2
        finally:
            output = _stop(proxy)
        assert "Traceback" not in output, output


class _RefusingStorage(optuna.storages.InMemoryStorage):
    """A real storage whose study list fails with a two-line hpo error naming a password."""

    def get_all_studies(self) -> list[FrozenStudy]:
        raise StorageError(
            [
                f"storage: postgresql://u:{SECRET}@db-host/hpo refused the call",
                "second line: what to do about it",
            ]
        )


def test_every_problem_line_of_an_hpo_error_reaches_the_client_masked() -> None:
    """A real proxy server, in this process, on a storage that raises an hpo error."""
    port = free_port()
    server = make_proxy_server(_RefusingStorage(), "127.0.0.1", port)
    server.start()
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}")
        with pytest.raises(HpoError) as info:
            storage.get_all_studies()
    finally:
        server.stop(None)
    assert type(info.value) is StorageError
    assert info.value.problems == [
        "storage: postgresql://u:***@db-host/hpo refused the call",
        "second line: what to do about it",
    ]


# -- Optuna's own statuses are unchanged -------------------------------------------------------


def test_optunas_own_errors_still_cross_the_proxy_as_before(tmp_path: Path) -> None:
    """NOT_FOUND is a KeyError, ALREADY_EXISTS a duplicated study, and FAILED_PRECONDITION
    without the proxy's mark a finished trial (UpdateFinishedTrialError), not a StorageError."""
    proxy, port = _start_proxy(f"sqlite:///{tmp_path / 'a.db'}")
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}")
        study_id = storage.create_new_study([StudyDirection.MINIMIZE], "s")
        with pytest.raises(DuplicatedStudyError):
            storage.create_new_study([StudyDirection.MINIMIZE], "s")
        with pytest.raises(KeyError):
            storage.get_study_id_from_name("missing")
        with pytest.raises(KeyError):
            storage.get_trial(12345)
        trial_id = storage.create_new_trial(study_id)
        assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
        for finished_write in (
            lambda: storage.set_trial_state_values(trial_id, TrialState.FAIL),
            lambda: storage.set_trial_user_attr(trial_id, "k", 1),
            lambda: storage.set_trial_intermediate_value(trial_id, 0, 1.0),
        ):
            with pytest.raises(UpdateFinishedTrialError):
                finished_write()
    finally:
        output = _stop(proxy)
    assert "Traceback" not in output, output
