"""optuna-dashboard on a study's storage and artifact store, in the foreground or beside a run.

The dashboard is optuna-dashboard's own WSGI app served by :mod:`wsgiref` in threads.
SQLite files are opened as they are: no journal-mode switch, no table creation, a long
busy timeout, so a dashboard never blocks or alters a study that is running on the file.
Only a database with no Optuna tables yet gets them, as a run would create them.
It has no authentication: it binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import warnings
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpo.artifacts import artifacts_location, open_artifact_store
from hpo.errors import HpoError, StorageError
from hpo.storages import SQLITE_BUSY_TIMEOUT_S, mask_url, open_storage, sqlite_path, storage_url

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage

    from hpo.config import StudyConfig

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_PORT = 65535


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """Why binding ``host`` is risky (the dashboard has no login), or ``None`` on loopback.

    Shared by ``hpo dashboard --host`` and ``hpo run --dashboard-host`` so both warn alike.
    """
    if is_loopback(host):
        return None
    return (
        f"serving on {host} without authentication; anyone who can reach this port can read "
        "and edit the study (see docs/dashboard.md)"
    )


def dashboard_storage(cfg: StudyConfig, *, create_missing: bool = False) -> BaseStorage:
    """The study's storage opened for the dashboard.

    SQLite and other SQL databases are opened without creating tables or checking the
    schema (what ``optuna-dashboard URL`` does). A SQLite file that does not exist yet is
    an error, unless ``create_missing`` (a run is about to create it anyway).
    """
    import optuna
    import sqlalchemy.exc

    url = storage_url(cfg)
    path = sqlite_path(url)
    if path is not None and not path.exists():
        if not create_missing:
            raise StorageError([f"storage: {path} does not exist yet; run the study first"])
        return open_storage(url)
    if not url.startswith(("sqlite", "postgresql", "mysql")):
        return open_storage(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        if path is not None
        else {"pool_pre_ping": True}
    )
    try:
        return optuna.storages.RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            skip_compatibility_check=True,
            skip_table_creation=True,
        )
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as exc:
        if path is None and _has_no_optuna_tables(url, engine_kwargs):
            # An empty server database (a team's dashboard started before its first worker):
            # create the tables as a run would, and as ``optuna-dashboard URL`` does. A SQLite
            # file is left as it is: it may be another program's, or about to be a run's.
            return open_storage(url)
        cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
        reason = str(getattr(cause, "orig", None) or cause or exc).strip().splitlines()[0]
        raise StorageError([f"storage: cannot open {mask_url(url)}: {mask_url(reason)}"]) from None


def _has_no_optuna_tables(url: str, engine_kwargs: dict[str, Any]) -> bool:
    """True when the database answers and holds no Optuna schema; False when unreachable."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_kwargs)
    try:
        return not sqlalchemy.inspect(engine).has_table("version_info")
    except sqlalchemy.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def dashboard_artifact_store(cfg: StudyConfig) -> ArtifactStore | None:
    """The store the runner uploads to, so trial pages show the images; ``None`` when the
    study keeps no artifacts (the dashboard then hides the artifact panels)."""
    location = artifacts_location(cfg)
    if not cfg.artifacts.enabled and (location.startswith("s3://") or not Path(location).is_dir()):
        return None
    return open_artifact_store(location, create=True)


def dashboard_app(cfg: StudyConfig, *, create_missing: bool = False) -> Any:
    """optuna-dashboard's WSGI application for ``cfg`` (mountable in gunicorn/uwsgi too)."""
    import optuna_dashboard

    return optuna_dashboard.wsgi(
        dashboard_storage(cfg, create_missing=create_missing),
        artifact_store=dashboard_artifact_store(cfg),
    )


class _QuietHandler(WSGIRequestHandler):
    """Request logs go to the debug log, not over a run's progress display."""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("dashboard: " + format, *args)


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _ThreadingServerV6(_ThreadingServer):
    address_family = socket.AF_INET6


class DashboardServer:
    """A bound dashboard server; ``url`` is known (and reachable) before serving starts."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/dashboard"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        """Serve until :meth:`stop` (or Ctrl-C in the foreground)."""
        self._server.serve_forever(poll_interval=0.2)

    def start(self) -> DashboardServer:
        """Serve from a daemon thread (dies with the process, never keeps a run alive)."""
        self._thread = threading.Thread(
            target=self.serve_forever, name="hpo-dashboard", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def create_server(
    cfg: StudyConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    create_missing: bool = False,
    warn_exposure: bool = True,
) -> DashboardServer:
    """Open the storage and artifact store and bind ``host:port`` (0 picks a free port).

    A host other machines can reach gets a ``UserWarning`` (the dashboard has no login);
    the CLI prints its own line instead (``warn_exposure=False``).
    """
    if not host.strip():
        # the socket layer reads "" as every interface: the opposite of what was meant
        raise HpoError(
            ["dashboard: the host is empty; give 127.0.0.1 (this machine) or 0.0.0.0 (all)"]
        )
    app = dashboard_app(cfg, create_missing=create_missing)
    risk = exposure_warning(host) if warn_exposure else None
    if risk:
        warnings.warn(risk, UserWarning, stacklevel=2)
    try:
        return DashboardServer(app, host, port)
    except OSError as exc:
        raise HpoError(
            [f"dashboard: cannot listen on {host}:{port}: {exc.strerror or exc}"]
        ) from None
    except OverflowError:  # the Python API has no option range check in front of it
        raise HpoError(
            [f"dashboard: cannot listen on {host}:{port}: the port must be 0-{MAX_PORT}"]
        ) from None


def serve_in_background(
    cfg: StudyConfig,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    warn_exposure: bool = True,
) -> DashboardServer:
    """Start the dashboard in a daemon thread beside a run (``hpo run --dashboard``).

    Returns a handle with ``.url`` and ``.stop()``. A SQLite file that does not exist yet is
    created the way the run would create it, so the dashboard can start before the run.
    """
    return create_server(cfg, host, port, create_missing=True, warn_exposure=warn_exposure).start()
