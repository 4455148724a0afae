"""Opening a ``grpc://`` storage: the proxy must answer first, so a dead one is one line."""

from __future__ import annotations

import re
import socket
from typing import TYPE_CHECKING

from hpo.errors import StorageError
from hpo.storages._resilient_grpc import resilient_grpc_storage_class
from hpo.storages._urls import mask_url

if TYPE_CHECKING:
    import optuna

_GRPC_ADDRESS = re.compile(r"^(?P<host>\[[^\]]*\]|[^:/\[\]]*)(?::(?P<port>[^/]*))?/?$")

GRPC_CONNECT_TIMEOUT_S = 5.0
"""How long opening a ``grpc://`` storage waits for the proxy to answer."""


def _open_grpc(url: str) -> optuna.storages.BaseStorage:
    """A client of the storage proxy at ``grpc://host:port``, once the proxy answers.

    Without the check, an unreachable proxy surfaces deep inside study creation as a
    long gRPC traceback; here it is one line, like an unreachable database.
    """
    import warnings

    import optuna

    match = _GRPC_ADDRESS.match(url[len("grpc://") :])
    port_text = (match.group("port") or "13000") if match else ""
    if match is None or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise StorageError(
            [f"storage: {mask_url(url)!r} is not grpc://host:port (port a number, 1-65535)"]
        )
    host, port = match.group("host") or "localhost", int(port_text)
    cannot = f"storage: cannot connect to the storage proxy at {mask_url(url)}"
    try:  # a refused or unroutable port fails at once, in the OS's words
        socket.create_connection((host.strip("[]"), port), timeout=GRPC_CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            reason += " (is `hpo storage-proxy` running there?)"
        raise StorageError([f"{cannot}: {reason}"]) from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # its calls ride out a restart of the proxy, as an RDB storage's ride out the database's
        proxy = resilient_grpc_storage_class()(host=host, port=port)
    try:  # something listens there: is it a gRPC server?
        proxy.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
    except ConnectionError:
        proxy.close()
        raise StorageError(
            [f"{cannot}: no gRPC answer within {GRPC_CONNECT_TIMEOUT_S:g} s"]
        ) from None
    return proxy
