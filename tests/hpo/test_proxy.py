"""``hpo storage-proxy`` and ``grpc://`` storages: real proxies on real ports, no mocks.

A proxy that cannot own its port must say so in one line (exit 2) instead of sharing
the port with another proxy (gRPC's default ``SO_REUSEPORT``) or dying in a traceback.
"""

from __future__ import annotations

import socket
import subprocess
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest

from hpo.errors import HpoError, StorageError
from hpo.storages import open_storage
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
    assert f"storage proxy listening on grpc://0.0.0.0:{port}" in text
    assert "warning: serving the storage on 0.0.0.0 without authentication or TLS" in text
