"""``hpo storage-proxy``: Optuna's gRPC storage proxy in front of one RDB storage.

Hundreds of workers each holding database connections overwhelm PostgreSQL; pointed at
``grpc://host:port`` they share the proxy's connection pool and cache instead. The
proxy speaks plain (unencrypted) gRPC, so it binds to 127.0.0.1 unless told otherwise:
expose it only on a private cluster network.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import optuna

from hpo.errors import StorageError
from hpo.storages import expand_env, is_rdb_url, mask_url, missing_env_vars, open_storage

logger = logging.getLogger(__name__)

DEFAULT_PORT = 13000


def proxy_storage(url: str) -> optuna.storages.BaseStorage:
    """The cached RDB storage the proxy serves (``${VAR}`` references expanded)."""
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
    return optuna.storages.get_storage(open_storage(url))


def serve_storage_proxy(
    url: str,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve ``url`` over gRPC on ``host:port`` until interrupted."""
    storage = proxy_storage(url)
    if on_ready is not None:
        on_ready(f"grpc://{host}:{port}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)
