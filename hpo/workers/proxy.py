"""``hpo storage-proxy``: Optuna's gRPC storage proxy in front of one RDB storage.

Hundreds of workers each holding database connections overwhelm PostgreSQL; pointed at
``grpc://host:port`` they share the proxy's connection pool and cache instead. The
proxy speaks plain (unencrypted) gRPC, so it binds to 127.0.0.1 unless told otherwise:
expose it only on a private cluster network.

Its storage's hpo errors reach workers as hpo errors, as with the database's own URL: a
database unreachable past the proxy's retry budget as ``UNAVAILABLE`` (the worker waits,
then gives up with exit 75), any other as ``FAILED_PRECONDITION`` carrying the problem
lines (one line, exit 2), both marked ``HPO_ERROR_METADATA_KEY``; Optuna's own statuses
(``NOT_FOUND`` for a ``KeyError`` ...) are unchanged.
"""

from __future__ import annotations

import errno
import functools
import logging
import signal
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import optuna

from hpo.errors import HpoError, StorageError
from hpo.storages import (
    expand_env,
    is_rdb_url,
    mask_url,
    missing_env_vars,
    open_storage,
    storage_outage,
)
from hpo.storages._resilient_grpc import HPO_ERROR_METADATA_KEY

if TYPE_CHECKING:
    from types import FrameType

    import grpc

logger = logging.getLogger(__name__)

DEFAULT_PORT = 13000
SERVER_THREADS = 10
"""Threads answering workers' calls (Optuna's default for its proxy)."""
STOP_GRACE_SECONDS = 5.0
"""How long calls in flight (a trial's report, a finished trial's state) get to end on a stop."""
STOP_POLL_SECONDS = 0.2


def proxy_url(url: str) -> str:
    """``url`` expanded, once it is known to be one the proxy can serve (nothing opened)."""
    missing = missing_env_vars(url)
    if missing:
        raise StorageError(
            [f"--storage: environment variable {name} is not set" for name in missing]
        )
    url = expand_env(url)
    try:
        import grpc  # noqa: F401  (Optuna imports it lazily; fail here with a clear message)
    except ImportError:
        raise StorageError(
            [
                "storage-proxy: the gRPC proxy needs grpcio and protobuf (pip install grpcio protobuf)"
            ]
        ) from None
    if not is_rdb_url(url):
        raise StorageError(
            [
                f"--storage: the gRPC proxy serves RDB storages only "
                f"(postgresql://, mysql://, sqlite:///), got {mask_url(url)!r}"
            ]
        )
    return url


def _address(host: str, port: int) -> str:
    """``host:port`` as gRPC parses it (an IPv6 literal in brackets)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on, in the OS's words; ``None`` if it can.

    gRPC only says "Failed to bind" (after logging its own multi-part line); binding a
    plain socket the way it does (``SO_REUSEADDR``, no ``SO_REUSEPORT``) first tells a
    port in use apart from an address this machine lacks.
    """
    address = _address(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return f"--host/--port: cannot listen on {address} ({exc.strerror or exc})"
    for family, kind, proto, _, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return f"--port: {address} is already in use"
                return f"--host/--port: cannot listen on {address} ({exc.strerror or exc})"
    return None


def _hpo_error_status(exc: BaseException) -> tuple[grpc.StatusCode, HpoError] | None:
    """The status a call that raised ``exc`` ends with when an hpo error caused it.

    A database unreachable past the proxy's retry budget is ``UNAVAILABLE``, which the
    ``grpc://`` client waits out as it does a restarting proxy and then gives up with
    :class:`StorageUnavailableError` (exit 75, an outage to the supervisor); any other
    hpo error is ``FAILED_PRECONDITION``, which the client raises as :class:`StorageError`
    with the same problem lines. ``None``: gRPC's own ``UNKNOWN``, as before.
    """
    import grpc

    outage = storage_outage(exc)
    if outage is not None:
        return grpc.StatusCode.UNAVAILABLE, outage
    if isinstance(exc, HpoError):
        return grpc.StatusCode.FAILED_PRECONDITION, exc
    return None


def _answering_hpo_errors(rpc: Callable[..., Any]) -> Callable[..., Any]:
    """``rpc`` (a method of Optuna's servicer) ending the call with a status of its own when
    the storage raises an hpo error, instead of gRPC's ``UNKNOWN`` "Exception calling
    application" (a traceback on both sides). Optuna's own statuses pass unchanged."""

    @functools.wraps(rpc)
    def answer(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return rpc(self, request, context)
        except Exception as exc:
            status = _hpo_error_status(exc)
            if status is None:
                raise
            code, error = status
        # hpo's messages mask passwords already; masked again, as nothing may leak here
        details = "\n".join(mask_url(problem) for problem in error.problems)
        logger.debug("answering %s with %s: %s", rpc.__name__, code.name, details)
        context.set_trailing_metadata(((HPO_ERROR_METADATA_KEY, type(error).__name__),))
        context.abort(code, details or type(error).__name__)
        raise AssertionError("unreachable: abort() raises")  # pragma: no cover

    return answer


@functools.cache
def proxy_servicer_class() -> type:
    """Optuna's servicer whose calls answer hpo errors with a status (see
    :func:`_answering_hpo_errors`), every RPC of the service wrapped."""
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.servicer import OptunaStorageProxyService

    class HpoStorageProxyService(OptunaStorageProxyService):
        pass

    for name, value in vars(api_pb2_grpc.StorageServiceServicer).items():
        if callable(value) and not name.startswith("_"):
            rpc = getattr(OptunaStorageProxyService, name)
            setattr(HpoStorageProxyService, name, _answering_hpo_errors(rpc))
    HpoStorageProxyService.__module__ = __name__
    return HpoStorageProxyService


def make_proxy_server(storage: optuna.storages.BaseStorage, host: str, port: int) -> grpc.Server:
    """Optuna's proxy server (its servicer, answering hpo errors), bound to ``host:port``,
    not yet started.

    Built here rather than by ``run_grpc_proxy_server`` to turn off ``SO_REUSEPORT``,
    which gRPC sets by default: with it a second proxy on the same port also starts and
    the kernel spreads workers over two databases without a word.
    """
    import grpc
    from optuna.storages._grpc.auto_generated import api_pb2_grpc

    server = grpc.server(
        ThreadPoolExecutor(max_workers=SERVER_THREADS), options=[("grpc.so_reuseport", 0)]
    )
    api_pb2_grpc.add_StorageServiceServicer_to_server(proxy_servicer_class()(storage), server)
    try:
        bound = server.add_insecure_port(_address(host, port))
    except RuntimeError:  # grpcio >= 1.5x raises; older ones return 0
        bound = 0
    if not bound:  # gRPC has logged its own line; ours says what to change
        server.stop(None)
        address = _address(host, port)
        raise HpoError([bind_problem(host, port) or f"--port: cannot listen on {address}"])
    return server


@contextmanager
def _sigterm_recorded(requests: list[int]) -> Iterator[None]:
    """Record SIGTERM in ``requests`` instead of dying (main thread; elsewhere a no-op).

    ``docker stop`` and systemd stop a service with SIGTERM: by default it killed the
    proxy in the middle of workers' calls (and a proxy that is PID 1 in a container
    ignored it, to be killed 10 s later). The handler only appends, so it can never
    deadlock against gRPC's locks; the serving loop sees it within a poll.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def record(signum: int, frame: FrameType | None) -> None:
        requests.append(signum)

    previous = signal.signal(signal.SIGTERM, record)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve_storage_proxy(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``url`` over gRPC on ``host:port`` until SIGTERM or Ctrl-C.

    ``on_ready`` hears the URL only once the port is bound, so "listening" is never
    printed by a proxy that then fails to start. Either way of stopping gives calls in
    flight ``STOP_GRACE_SECONDS`` to finish; SIGTERM then returns normally (exit 0),
    Ctrl-C raises ``KeyboardInterrupt`` as everywhere else.
    """
    url = proxy_url(url)
    problem = bind_problem(host, port)  # before the database is opened (or created)
    if problem:
        raise HpoError([problem])
    storage = optuna.storages.get_storage(open_storage(url))  # Optuna's cache in front
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        server = make_proxy_server(storage, host, port)
    stop_requests: list[int] = []
    with _sigterm_recorded(stop_requests):  # before the port answers: a stop is never lost
        server.start()
        try:
            if on_ready is not None:
                on_ready(f"grpc://{_address(host, port)}")
            while not stop_requests and server.wait_for_termination(timeout=STOP_POLL_SECONDS):
                pass
        finally:
            server.stop(STOP_GRACE_SECONDS).wait()
