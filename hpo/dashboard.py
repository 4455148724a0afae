"""optuna-dashboard on a study's storage and artifact store, in the foreground or beside a run.

The dashboard is optuna-dashboard's own WSGI app served by :mod:`wsgiref` in threads.
SQLite files are opened as they are: no journal-mode switch, no table creation, a long
busy timeout, so a dashboard never blocks or alters a study that is running on the file.
Only a database with no Optuna tables yet gets them, as a run would create them.
It has no authentication: it binds to 127.0.0.1 unless told otherwise, and there it
answers only requests addressed to a loopback name (a web page that rebinds its own
domain to 127.0.0.1 could otherwise drive the API, which can delete studies). Allowed
names (``allowed_hosts``, ``hpo run --dashboard-allowed-host`` or
``HPO_DASHBOARD_ALLOWED_HOSTS``) keep that check on a bind to every interface too, as a
container needs behind a port published on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
import threading
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any, BinaryIO
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from hpo.artifacts import REMOVED_PREFIX, artifacts_location, open_artifact_store
from hpo.errors import HpoError, StorageError
from hpo.storages import (
    SQLITE_BUSY_TIMEOUT_S,
    mask_url,
    open_storage,
    sqlite_path,
    storage_file,
    storage_file_absent,
    storage_url,
)

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage

    from hpo.config import StudyConfig

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
MAX_PORT = 65535
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::"})
"""Binds that answer on every interface: any name may reach them, so Host is not checked
unless names were allowed explicitly."""
ALLOWED_HOSTS_ENV = "HPO_DASHBOARD_ALLOWED_HOSTS"
"""Comma list of allowed ``Host`` names when none are passed (docker-compose sets it)."""
_HOST_TEXT = re.compile(r"[A-Za-z0-9._:\[\]-]+")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


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
    schema (what ``optuna-dashboard URL`` does). A SQLite or journal file that does not
    exist yet is an error, unless ``create_missing`` (a run is about to create it anyway):
    opening it would create it, and the dashboard would show an empty storage. With
    ``create_missing`` a SQLite file without Optuna's tables (an empty one made by
    ``touch``) gets them as the run would, which plain ``hpo run`` accepts too.
    """
    import optuna
    import sqlalchemy.exc

    url = storage_url(cfg)
    path = sqlite_path(url)
    if create_missing and storage_file_absent(url):
        # what the run would do next: create the file, or Optuna's tables in an empty one
        return open_storage(url)
    # only a file that is not there: one without Optuna's tables is opened and explained
    missing = storage_file(url)
    if missing is not None and not missing.exists():
        raise StorageError([f"storage: {missing} does not exist yet; run the study first"])
    if not url.startswith(("sqlite", "postgresql", "mysql")):
        return open_storage(url)
    engine_kwargs: dict[str, Any] = (
        {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
        if path is not None
        else {"pool_pre_ping": True}
    )
    try:
        return optuna.storages.RDBStorage(
            url.replace("{", "{{").replace("}", "}}"),  # Optuna str.format()s the URL
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


def dashboard_artifact_store(
    cfg: StudyConfig, storage: BaseStorage | None = None, *, create_missing: bool = False
) -> ArtifactStore | None:
    """The store the runner uploads to, so trial pages show the images; ``None`` when the
    study keeps no artifacts (the dashboard then hides the artifact panels).

    A missing folder is made only for a run about to fill it (``create_missing``). Else it
    is one warning and a store over the folder that is not there, not created: a database
    copied without its ``artifacts/`` gets no empty folder in its place (each file is a
    404), and a dashboard started before the workers' first upload (``docker compose up``
    on a fresh volume) serves their files as soon as they write the folder.
    ``storage`` lets a file the store lacks be explained (see :class:`ServedArtifacts`).
    """
    location = artifacts_location(cfg)
    remote = location.startswith("s3://")
    if not remote and not Path(location).is_dir():
        if not cfg.artifacts.enabled:
            return None
        if not create_missing:
            logger.warning(
                "artifact folder %s is missing: trial pictures and checkpoints are unavailable "
                "until it is created",
                location,
            )
        return ServedArtifacts(open_artifact_store(location, create=create_missing), storage)
    if remote and not cfg.artifacts.enabled:
        return None
    return ServedArtifacts(open_artifact_store(location, create=False), storage)


class ServedArtifacts:
    """The artifact store as the dashboard reads it: a file gone from the store is a short
    404 that says why (``keep_best_k`` deletes checkpoints the dashboard still lists),
    not a 500 with a traceback on the server's stderr."""

    def __init__(self, store: ArtifactStore, storage: BaseStorage | None = None) -> None:
        self.store = store
        self.storage = storage

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """The artifact's bytes, or a 404 response raised into optuna-dashboard's route."""
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            return self.store.open_reader(artifact_id)
        except ArtifactNotFound:
            raise _plain_response(404, self.why_missing(artifact_id)) from None

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store an upload from the dashboard's UI."""
        self.store.write(artifact_id, content_body)

    def remove(self, artifact_id: str) -> None:
        """Delete an artifact (its delete button, or deleting a study with its artifacts).

        One already gone counts as removed: ``keep_best_k`` deletes checkpoints the trials
        still list, and deleting their study must not stop at the first (a 500, not deleted).
        """
        from optuna.artifacts.exceptions import ArtifactNotFound

        try:
            self.store.remove(artifact_id)
        except ArtifactNotFound:
            logger.debug("artifact %s was already gone from the store", artifact_id)

    def why_missing(self, artifact_id: str) -> str:
        """One line: removed by ``keep_best_k`` when a study recorded it, else just gone."""
        key = REMOVED_PREFIX + artifact_id
        try:
            studies = self.storage.get_all_studies() if self.storage is not None else []
            removed = any(key in study.system_attrs for study in studies)
        except Exception:  # the explanation must never turn the 404 into a 500
            removed = False
        if removed:
            return "removed by keep_best_k: this checkpoint fell out of the best trials"
        return "not in the artifact store (deleted, or the store was moved)"


def _plain_response(status: int, text: str) -> Any:
    """A short text/plain answer that a bottle route may raise."""
    from bottle import HTTPResponse

    return HTTPResponse(
        body=f"{status}: {text}\n", status=status, headers={"Content-Type": "text/plain"}
    )


def host_name(header: str) -> str:
    """The name in a ``Host`` header without its port: ``[::1]:8080`` -> ``::1``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1:].partition("]")[0]
    return value.rpartition(":")[0] if value.count(":") == 1 else value


def parse_allowed_hosts(values: Iterable[str], *, option: str = "--allowed-host") -> frozenset[str]:
    """The names in ``--allowed-host`` values (each one name or a comma list; a port is
    ignored), lower-cased; raises :class:`HpoError` with one line per value that is no
    host name or address (``*``, a URL), so a typo cannot silently allow nothing or all."""
    names: set[str] = set()
    problems: list[str] = []
    for value in values:
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            name = host_name(text) if _HOST_TEXT.fullmatch(text) else ""
            if not name or not _HOST_TEXT.fullmatch(name) or "[" in name or "]" in name:
                problems.append(
                    f"{option}: {text!r} is not a host name or address (e.g. localhost, "
                    "gpu-box.lan, 10.0.0.5)"
                )
                continue
            names.add(name)
    if problems:
        raise HpoError(problems)
    return frozenset(names)


def requested_allowed_hosts(allowed_hosts: Iterable[str] | None) -> frozenset[str]:
    """``allowed_hosts`` checked, or when ``None`` the names in :data:`ALLOWED_HOSTS_ENV`."""
    if allowed_hosts is None:
        return parse_allowed_hosts(
            [os.environ.get(ALLOWED_HOSTS_ENV, "")], option=ALLOWED_HOSTS_ENV
        )
    return parse_allowed_hosts(allowed_hosts)


def allowed_host_names(host: str, allowed: Iterable[str] = ()) -> frozenset[str] | None:
    """Names besides the loopback ones a dashboard bound to ``host`` answers to; ``None``:
    any name (a bind to every interface, which the user chose and was warned about).

    ``allowed`` names are answered too, and keep the check on for a bind to every
    interface: a container binds 0.0.0.0 behind a port published on 127.0.0.1 only, where
    a DNS-rebinding page would otherwise reach the API through the published port.
    """
    extra = frozenset(allowed)
    if host.strip() in WILDCARD_HOSTS:
        return extra or None
    return extra | (frozenset() if is_loopback(host) else frozenset({host_name(host)}))


class HostCheck:
    """WSGI middleware refusing requests addressed to a name that is not this server's.

    A page on ``evil.example`` that rebinds its name to 127.0.0.1 gets the browser to send
    same-origin requests to the dashboard, with ``Host: evil.example``: those get a 403.
    Loopback names (``localhost``, ``127.0.0.1``, ``[::1]``) are always allowed.
    """

    def __init__(self, app: WsgiApp, extra: frozenset[str]) -> None:
        self.app = app
        self.extra = extra

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header (``None``: none sent) may pass."""
        if header is None:  # HTTP/1.0 tools; a browser always sends one
            return True
        name = host_name(header)
        return is_loopback(name) or name in self.extra

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        header = environ.get("HTTP_HOST")
        if self.allows(header):
            return self.app(environ, start_response)
        body = (
            f"403: host {header!r} not allowed; open the dashboard by the address it printed, "
            "or add the name to its allowed hosts (DNS rebinding protection, see "
            "docs/dashboard.md)\n"
        ).encode()
        start_response(
            "403 Forbidden",
            [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))],
        )
        return [body]


def dashboard_app(
    cfg: StudyConfig,
    *,
    create_missing: bool = False,
    host: str = DEFAULT_HOST,
    allowed_hosts: Iterable[str] | None = None,
) -> Any:
    """optuna-dashboard's WSGI application for ``cfg`` (mountable in gunicorn/uwsgi too).

    ``host`` is the address it will be served on: it decides which ``Host`` headers are
    answered (:class:`HostCheck`); ``0.0.0.0`` or ``::`` turn the check off unless
    ``allowed_hosts`` (default: :data:`ALLOWED_HOSTS_ENV`) names the names to answer.
    """
    import optuna_dashboard

    extra = allowed_host_names(host, requested_allowed_hosts(allowed_hosts))
    storage = dashboard_storage(cfg, create_missing=create_missing)
    app = optuna_dashboard.wsgi(
        storage,
        artifact_store=dashboard_artifact_store(cfg, storage, create_missing=create_missing),
    )
    return app if extra is None else HostCheck(app, extra)


def _starting(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """What a bound server answers until its app is set (never, once started)."""
    start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"503: the dashboard is starting\n"]


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
        """Bind ``host:port`` (``OSError`` when taken); ``app`` may be set later."""
        server_class = _ThreadingServerV6 if ":" in host else _ThreadingServer
        self._server = make_server(
            host, port, app, server_class=server_class, handler_class=_QuietHandler
        )
        self.host = host
        self.port = int(self._server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}/dashboard"
        self._thread: threading.Thread | None = None

    def set_app(self, app: Any) -> None:
        """Serve ``app``: the port is bound first, so a taken one costs no storage file."""
        self._server.set_app(app)

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
    allowed_hosts: Iterable[str] | None = None,
) -> DashboardServer:
    """Bind ``host:port`` (0 picks a free port), then open the storage and artifact store.

    The port comes first: a port in use must not leave behind the storage file and artifact
    folder that ``create_missing`` makes (nor tables in an empty server database).
    A host other machines can reach gets a ``UserWarning`` (the dashboard has no login);
    the CLI prints its own line instead (``warn_exposure=False``). ``allowed_hosts``: see
    :func:`dashboard_app`.
    """
    if not host.strip():
        # the socket layer reads "" as every interface: the opposite of what was meant
        raise HpoError(
            ["dashboard: the host is empty; give 127.0.0.1 (this machine) or 0.0.0.0 (all)"]
        )
    allowed = requested_allowed_hosts(allowed_hosts)  # bad names: refused before anything
    server = _bind(host, port)
    try:
        server.set_app(
            dashboard_app(cfg, create_missing=create_missing, host=host, allowed_hosts=allowed)
        )
    except BaseException:
        server.stop()
        raise
    risk = exposure_warning(host) if warn_exposure else None
    if risk:
        warnings.warn(risk, UserWarning, stacklevel=2)
    return server


def _bind(host: str, port: int) -> DashboardServer:
    """A server bound to ``host:port`` that answers 503 until its app is set."""
    try:
        return DashboardServer(_starting, host, port)
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
    allowed_hosts: Iterable[str] | None = None,
) -> DashboardServer:
    """Start the dashboard in a daemon thread beside a run (``hpo run --dashboard``).

    Returns a handle with ``.url`` and ``.stop()``. A SQLite file that does not exist yet is
    created the way the run would create it, so the dashboard can start before the run.
    """
    return create_server(
        cfg,
        host,
        port,
        create_missing=True,
        warn_exposure=warn_exposure,
        allowed_hosts=allowed_hosts,
    ).start()
