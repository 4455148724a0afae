"""A ``grpc://`` storage client that rides out a restart of the storage proxy.

Without it, a proxy that is gone for a few seconds kills every worker with a gRPC
traceback and fails their trials; with it, calls wait as an RDB storage's do (see
:mod:`hpo.storages._resilient_rdb`) and give up with :class:`StorageUnavailableError`.
A database lost behind the proxy is waited for the same way; the proxy's other hpo errors
are raised as :class:`StorageError` with the same problem lines (see
:mod:`hpo.workers.proxy`).
The class is made on first use, so importing :mod:`hpo.storages` does not import gRPC.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from hpo.errors import StorageError, exception_chain
from hpo.storages._outages import storage_retry_seconds
from hpo.storages._retrying import RetryingCalls, retry_methods
from hpo.storages._urls import mask_url

if TYPE_CHECKING:
    from collections.abc import Callable

    import grpc
    import optuna

_NOT_RETRIED = frozenset({"close", "wait_server_ready"})
_RESET_WORDS = ("connection reset", "socket closed", "rst_stream", "goaway", "broken pipe")
"""An ``UNKNOWN``/``INTERNAL`` status with these words is a connection cut mid-call."""
RECONNECT_BACKOFF_MS = 1000
"""The channel's longest wait between reconnects (gRPC's default is 120 s, longer than the
retry budget's steps): a restarted proxy is found within a second."""


HPO_ERROR_METADATA_KEY = "hpo-error"
"""Trailing metadata on a status ``hpo storage-proxy`` made from an hpo error (the value
names its class): ``UNAVAILABLE`` when its database stayed unreachable past the proxy's
retry budget, ``FAILED_PRECONDITION`` with the error's problem lines (one a line) in the
details otherwise. Optuna's own statuses lack it: its ``FAILED_PRECONDITION`` means a
finished trial (``UpdateFinishedTrialError``)."""
_BEHIND_PROXY = "proxy: "
"""How :func:`grpc_outage_reason` starts the reason of a database lost behind the proxy."""


class _LostProxyCall(Exception):
    """A call that did not go through for a retried reason: ``str()`` is that reason (gRPC's
    own ``str()`` starts "<_InactiveRpcError of RPC that terminated with:", which was all the
    "storage connection lost" warning showed)."""

    def __init__(self, reason: str, call: grpc.Call) -> None:
        super().__init__(reason)
        self.call = call


def _rpc_error(exc: BaseException) -> grpc.Call | None:
    """The gRPC call that failed behind ``exc`` (its first one in the chain), if any."""
    import grpc

    for link in exception_chain(exc):
        if isinstance(link, _LostProxyCall):
            return link.call
        if isinstance(link, grpc.RpcError) and isinstance(link, grpc.Call):
            return link
    return None


def _from_hpo_error(call: grpc.Call) -> bool:
    """Whether the proxy made this status from an hpo error (see ``HPO_ERROR_METADATA_KEY``)."""
    try:
        metadata = call.trailing_metadata() or ()
    except Exception:  # a status made on this side (no connection) may have none to give
        return False
    return any(item[0] == HPO_ERROR_METADATA_KEY for item in metadata)


def _problem_lines(call: grpc.Call) -> list[str]:
    """The non-empty lines of the call's details, any password masked."""
    return [mask_url(line) for line in str(call.details() or "").splitlines() if line.strip()]


def grpc_outage_reason(exc: BaseException) -> str | None:
    """Why ``exc`` (or what caused it) is a lost proxy connection, or ``None`` if it is not.

    ``UNAVAILABLE`` means the call never reached a proxy (down, restarting, unreachable)
    or, marked as the proxy's own, that the proxy's database stayed unreachable past the
    proxy's retry budget (both are waited for); a reset connection can also surface as
    ``UNKNOWN`` or ``INTERNAL``.
    """
    import grpc

    call = _rpc_error(exc)
    if call is None:
        return None
    code, details = call.code(), str(call.details() or "")
    lost = code == grpc.StatusCode.UNAVAILABLE or (
        code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL)
        and any(word in details.lower() for word in _RESET_WORDS)
    )
    if not lost:
        return None
    first = details.strip().splitlines()[0] if details.strip() else ""
    if code == grpc.StatusCode.UNAVAILABLE and first and _from_hpo_error(call):
        return _BEHIND_PROXY + mask_url(first.removeprefix("storage: "))
    return mask_url(f"{code.name}: {first}".rstrip(": "))


def proxy_storage_error(exc: BaseException) -> StorageError | None:
    """The :class:`StorageError` the proxy's storage raised behind ``exc``, if it did.

    The proxy answers an hpo error other than an outage (a study name a MySQL collation
    takes for another one) with ``FAILED_PRECONDITION`` and the error's problem lines; here
    they become the same one-line error as with the database's own URL, not a traceback.
    """
    import grpc

    call = _rpc_error(exc)
    if (
        call is None
        or call.code() != grpc.StatusCode.FAILED_PRECONDITION
        or not _from_hpo_error(call)
    ):
        return None
    return StorageError(_problem_lines(call) or ["storage: the storage proxy refused the call"])


def _raising_proxy_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` raising the proxy's hpo errors as :class:`StorageError` and a lost call as
    :class:`_LostProxyCall` (retried, and logged in one readable line), not as gRPC errors."""

    @functools.wraps(fn)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except Exception as exc:
            error: Exception | None = proxy_storage_error(exc)
            if error is None:
                reason, rpc = grpc_outage_reason(exc), _rpc_error(exc)
                if reason is None or rpc is None:
                    raise
                error = _LostProxyCall(reason, rpc)
            raise error from None

    return call


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

        def _call(self, name: str, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
            # Translated inside the retry loop: Optuna's client turns the proxy's
            # FAILED_PRECONDITION into UpdateFinishedTrialError for a trial's writes.
            return super()._call(name, _raising_proxy_errors(fn), args, kwargs)

        def _unreachable(self, reason: str) -> str:
            proxy = f"the storage proxy at grpc://{self._host}:{self._port}"
            budget = f"{self._outage.budget:g} s"
            if reason.startswith(_BEHIND_PROXY):  # the proxy answered: its database did not
                return f"storage: the database behind {proxy} unreachable for {budget} ({reason})"
            return f"storage: {proxy} unreachable for {budget} ({reason})"

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
