"""``hpo storage-proxy`` and ``grpc://`` storages: real proxies on real ports, no mocks.

A proxy that cannot own its port must say so in one line (exit 2) instead of sharing
the port with another proxy (gRPC's default ``SO_REUSEPORT``) or dying in a traceback.
"""

from __future__ import annotations

import pickle
import socket
import subprocess
import threading
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo.errors import HpoError, StorageError
from hpo.storages import StorageUnavailableError, open_storage
from hpo.workers.proxy import make_proxy_server
from tests.conftest import wait_for
from tests.hpo.test_workers import free_port, hpo, hpo_background

pytest.importorskip("grpc", reason="the gRPC storage proxy needs grpcio")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single stderr line of a refused command (exit 2, no traceback, no "listening")."""
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert "listening" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def running_proxy(tmp_path: Path) -> Iterator[int]:
    """The port of a real ``hpo storage-proxy`` serving ``a.db``."""
    port = free_port()
    proxy = hpo_background(
        "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port)
    )
    try:
        assert wait_for(lambda: _listening(port), timeout=60), "the storage proxy did not start"
        yield port
    finally:
        proxy.terminate()
        output, _ = proxy.communicate(timeout=30)
    assert f"storage proxy listening on grpc://127.0.0.1:{port}" in output


def test_a_second_proxy_on_the_same_port_is_refused(tmp_path: Path, running_proxy: int) -> None:
    port = running_proxy
    other_db = tmp_path / "b.db"
    result = hpo("storage-proxy", "--storage", f"sqlite:///{other_db}", "--port", str(port))
    assert _one_error_line(result) == f"error: --port: 127.0.0.1:{port} is already in use"
    assert not other_db.exists(), "the database was opened before the port was checked"


def test_the_proxy_server_does_not_share_its_port_with_a_reuseport_server() -> None:
    """gRPC's default ``SO_REUSEPORT`` would let both bind; the proxy turns it off."""
    import grpc

    port = free_port()
    other = grpc.server(ThreadPoolExecutor(max_workers=1))  # gRPC defaults, as Optuna's own
    assert other.add_insecure_port(f"127.0.0.1:{port}") == port
    other.start()
    try:
        storage = optuna.storages.InMemoryStorage()
        with pytest.raises(HpoError) as info:
            make_proxy_server(storage, "127.0.0.1", port)
        assert info.value.problems == [f"--port: 127.0.0.1:{port} is already in use"]
    finally:
        other.stop(None)


def test_an_address_this_machine_cannot_listen_on(tmp_path: Path) -> None:
    port = free_port()
    db = tmp_path / "p.db"
    result = hpo(
        "storage-proxy", "--storage", f"sqlite:///{db}", "--host", "999.1.1.1", "--port", str(port)
    )
    line = _one_error_line(result)
    assert line.startswith(f"error: --host/--port: cannot listen on 999.1.1.1:{port} ("), line
    assert not db.exists()


def test_a_proxy_storage_in_a_missing_folder_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "nodir"
    port = str(free_port())
    result = hpo("storage-proxy", "--storage", f"sqlite:///{missing}/x.db", "--port", port)
    assert _one_error_line(result) == f"error: storage: folder {missing} does not exist"


def test_an_unreachable_grpc_storage_is_one_clear_error_without_warnings() -> None:
    port = free_port()  # nothing listens there
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's ExperimentalWarning included
        with pytest.raises(StorageError) as info:
            open_storage(f"grpc://127.0.0.1:{port}")
    (line,) = info.value.problems
    assert line.startswith(
        f"storage: cannot connect to the storage proxy at grpc://127.0.0.1:{port}: "
        "Connection refused"
    ), line


@pytest.mark.parametrize("port", ["http", "99999", "0"])
def test_a_grpc_storage_with_a_bad_port_is_named(port: str) -> None:
    with pytest.raises(StorageError) as info:
        open_storage(f"grpc://127.0.0.1:{port}")
    assert info.value.problems == [
        f"storage: 'grpc://127.0.0.1:{port}' is not grpc://host:port (port a number, 1-65535)"
    ]


def test_a_running_proxy_opens_as_a_storage(running_proxy: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        storage = open_storage(f"grpc://127.0.0.1:{running_proxy}")
    assert storage.get_all_studies() == []


def test_a_proxy_on_all_interfaces_warns_that_it_has_no_login(tmp_path: Path) -> None:
    port = free_port()
    proxy = hpo_background(
        "storage-proxy",
        "--storage",
        f"sqlite:///{tmp_path / 'a.db'}",
        "--host",
        "0.0.0.0",
        "--port",
        str(port),
    )
    try:
        assert wait_for(lambda: _listening(port), timeout=60), "the storage proxy did not start"
    finally:
        proxy.terminate()
        output, _ = proxy.communicate(timeout=30)
    text = " ".join(output.split())
    assert f"storage proxy listening on grpc://0.0.0.0:{port}" in text, output
    assert "warning: serving the storage on 0.0.0.0 without authentication or TLS" in text


def test_sigterm_as_soon_as_the_port_answers_stops_the_proxy_cleanly(tmp_path: Path) -> None:
    """``docker stop``/systemd send SIGTERM: the proxy says it listened, stops, exits 0.

    Before, SIGTERM killed it outright: the "listening" line could be lost (a stop right
    after the port answered, before the line was written) and calls in flight were cut.
    """
    for _ in range(3):  # the race was between binding the port and printing the line
        port = free_port()
        proxy = hpo_background(
            "storage-proxy", "--storage", f"sqlite:///{tmp_path / 'a.db'}", "--port", str(port)
        )
        try:
            assert wait_for(partial(_listening, port), timeout=60), (
                "the storage proxy did not start"
            )
        finally:
            proxy.terminate()
            output, _ = proxy.communicate(timeout=30)
        assert proxy.returncode == 0, output
        assert "Traceback" not in output
        lines = [line.strip() for line in output.splitlines() if line.strip()]
        assert lines == [
            f"storage proxy listening on grpc://127.0.0.1:{port}",
            "storage proxy stopped",
        ]
        assert not _listening(port)


# -- a proxy that goes away and comes back --------------------------------------------------


def _start_proxy(db: Path, port: int) -> subprocess.Popen[str]:
    proxy = hpo_background("storage-proxy", "--storage", f"sqlite:///{db}", "--port", str(port))
    assert wait_for(lambda: _listening(port), timeout=60), "the storage proxy did not start"
    return proxy


def _stop_proxy(proxy: subprocess.Popen[str]) -> None:
    proxy.kill()
    proxy.communicate(timeout=30)


def test_a_restarted_proxy_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls made while the proxy is down wait for it (no gRPC traceback, no failed trial)."""
    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", "90")
    port, db = free_port(), tmp_path / "a.db"
    proxy = _start_proxy(db, port)
    restarted: list[subprocess.Popen[str]] = []
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}")
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
        trial_id = storage.create_new_trial(study_id)
        _stop_proxy(proxy)
        restart = threading.Timer(1.0, lambda: restarted.append(_start_proxy(db, port)))
        restart.start()
        # made while nothing listens: waits for the restarted proxy, then goes through
        assert storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [1.0])
        restart.join()
        assert storage.get_trial(trial_id).state == TrialState.COMPLETE
        copy = pickle.loads(pickle.dumps(storage))  # a worker process gets the same kind
        assert type(copy) is type(storage)
        assert copy.get_all_trials(study_id)[0].values == [1.0]
    finally:
        for running in [proxy, *restarted]:
            if running.poll() is None:
                _stop_proxy(running)


def test_a_proxy_gone_past_the_budget_is_one_line_and_exit_75(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", "1.5")
    port = free_port()
    proxy = _start_proxy(tmp_path / "a.db", port)
    try:
        storage = open_storage(f"grpc://127.0.0.1:{port}")
        storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "s")
    finally:
        _stop_proxy(proxy)
    started = time.monotonic()
    with pytest.raises(StorageUnavailableError) as info:
        storage.get_all_studies()
    assert time.monotonic() - started < 30
    (line,) = info.value.problems
    assert line.startswith(
        f"storage: the storage proxy at grpc://127.0.0.1:{port} unreachable for 1.5 s (UNAVAILABLE"
    ), line
    assert info.value.exit_code == 75
