"""A ``grpc://`` storage client that rides out a restart of the storage proxy.

Without it, a proxy that is gone for a few seconds kills every worker with a gRPC
traceback and fails their trials; with it, calls wait as an RDB storage's do (see
:mod:`hpo.storages._resilient_rdb`) and give up with :class:`StorageUnavailableError`.
The class is made on first use, so importing :mod:`hpo.storages` does not import gRPC.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from hpo.errors import exception_chain
from hpo.storages._outages import storage_retry_seconds
from hpo.storages._retrying import RetryingCalls, retry_methods
from hpo.storages._urls import mask_url

if TYPE_CHECKING:
    import optuna

_NOT_RETRIED = frozenset({"close", "wait_server_ready"})
_RESET_WORDS = ("connection reset", "socket closed", "rst_stream", "goaway", "broken pipe")
"""An ``UNKNOWN``/``INTERNAL`` status with these words is a connection cut mid-call."""
RECONNECT_BACKOFF_MS = 1000
"""The channel's longest wait between reconnects (gRPC's default is 120 s, longer than the
retry budget's steps): a restarted proxy is found within a second."""


def grpc_outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` (or what caused it) is a lost proxy connection, or ``None`` if it is not.

    ``UNAVAILABLE`` means the call never reached a proxy (down, restarting, unreachable);
    a reset connection can also surface as ``UNKNOWN`` or ``INTERNAL``.
    """
    import grpc

    for link in exception_chain(exc):
        if isinstance(link, grpc.RpcError) and isinstance(link, grpc.Call):
            code, details = link.code(), str(link.details() or "")
            lost = code == grpc.StatusCode.UNAVAILABLE or (
                code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
                and any(word in details.lower() for word in _RESET_WORDS)
            )
            first = details.strip().splitlines()[0] if details.strip() else ""
            return mask_url(f"{code.name}: {first}".rstrip(": ")) if lost else None
    return None


@functools.cache
def resilient_grpc_storage_class() -> type[optuna.storages.GrpcStorageProxy]:
    """``GrpcStorageProxy`` whose calls are retried while the proxy is unreachable.

    Retried after 0.25, 0.5, 1 ... 8 s until ``HPO_STORAGE_RETRY_SECONDS`` (120 s) have
    passed since the proxy was lost; then :class:`StorageUnavailableError` (exit 75). An
    ``UNAVAILABLE`` call never reached the proxy, so retrying it is safe; after a reset
    mid-call, the same caveats as for a database hold (a created trial may be created twice
    and is then failed and queued again as unowned; finishing a trial again that is found
    finished in the requested state counts as success).
    """
    import optuna
    from optuna.storages._grpc.auto_generated import api_pb2_grpc
    from optuna.storages._grpc.client import GrpcClientCache

    base = optuna.storages.GrpcStorageProxy

    class ResilientGrpcStorageProxy(RetryingCalls, base):  # type: ignore[valid-type,misc]
        def __init__(self, *, retry_seconds: float | None = None, **kwargs: Any) -> None:
            budget = storage_retry_seconds() if retry_seconds is None else retry_seconds
            self._init_resilience(budget)
            super().__init__(**kwargs)

        def _outage_reason(self, exc: BaseException) -> str | None:
            return grpc_outage_reason(exc)

        def _unreachable(self, reason: str) -> str:
            return (
                f"storage: the storage proxy at grpc://{self._host}:{self._port} unreachable "
                f"for {self._outage.budget:g} s ({reason})"
            )

        def _setup(self) -> None:
            import grpc

            self._channel = grpc.insecure_channel(
                f"{self._host}:{self._port}",
                options=[
                    ("grpc.max_receive_message_length", -1),
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", RECONNECT_BACKOFF_MS),
                ],
            )
            self._stub = api_pb2_grpc.StorageServiceStub(self._channel)
            self._cache = GrpcClientCache(self._stub)

    retry_methods(
        ResilientGrpcStorageProxy,
        base,
        [
            name
            for name, value in vars(base).items()
            if callable(value) and not name.startswith("_") and name not in _NOT_RETRIED
        ],
        module=__name__,
    )
    return ResilientGrpcStorageProxy


# The class's ``__module__`` is this module: pickle (a worker process) finds it here.
def __getattr__(name: str) -> Any:
    """``ResilientGrpcStorageProxy`` without importing Optuna when the module loads."""
    if name == "ResilientGrpcStorageProxy":
        return resilient_grpc_storage_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
