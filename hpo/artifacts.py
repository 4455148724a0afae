"""Where a study's artifacts live, how files get there, and which checkpoints stay.

Everything goes through Optuna's artifact store so optuna-dashboard can show it next
to the trial. Checkpoints are the heavy part, so only the best ``keep_best_k`` trials
keep theirs; the rest are deleted from the store as better trials arrive.

A write the store refuses (disk full, file too large, S3 down) never costs the trial its
metrics: :func:`upload` removes the partial file, records the failure on the trial
(user attr ``artifact_error``) and in the log, and raises :class:`ArtifactWriteError`,
which the trial hooks turn into a note on the trial, not a failed trial.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import optuna
from optuna.artifacts import FileSystemArtifactStore, get_all_artifact_meta, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState

from hpo.duplicates import DUPLICATE_OF_ATTR
from hpo.errors import ConfigError
from hpo.storages import sqlite_path, storage_url

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore
    from optuna.storages import BaseStorage

    from hpo.config import StudyConfig

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_ATTR = "checkpoint_artifact_id"
"""Trial user attribute holding the id of the checkpoint it uploaded (set while it runs)."""
REMOVED_PREFIX = "hpo:removed_artifact:"
"""Study system attribute prefix marking a checkpoint deleted from the store.

Optuna cannot edit a finished trial, so the deletion is recorded on the study (one key
per artifact, so concurrent workers never overwrite each other's records).
"""
_ARTIFACTS_PREFIX = "artifacts:"
ARTIFACT_ERROR_ATTR = "artifact_error"
"""Trial user attribute: why an artifact of this trial could not be stored (last failure)."""
MIMETYPES = {
    ".png": "image/png",
    ".json": "application/json",
    ".html": "text/html",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".csv": "text/csv",
}
"""Content types by suffix; anything else (``.pt``, ``.npz``) is served as plain bytes.

Optuna would guess from the machine's ``/etc/mime.types``, which calls ``.pt`` a SNES
page table: browsers then mislabel or refuse the checkpoint download.
"""
DEFAULT_MIMETYPE = "application/octet-stream"


class ArtifactWriteError(OSError):
    """The artifact store refused a file; the trial itself is unaffected."""


class _RemembersIds:
    """Wraps a store for one upload: a failed write is remembered and its partial file removed."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.failed = False

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return self.store.open_reader(artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        try:
            self.store.write(artifact_id, content_body)
        except BaseException:
            self.failed = True
            with contextlib.suppress(Exception):  # no partial file left to fill the disk
                self.store.remove(artifact_id)
            raise

    def remove(self, artifact_id: str) -> None:
        self.store.remove(artifact_id)


class PrefixedArtifactStore:
    """Keeps every artifact of a study under ``prefix/`` in a shared bucket."""

    def __init__(self, store: ArtifactStore, prefix: str) -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def _key(self, artifact_id: str) -> str:
        return f"{self.prefix}/{artifact_id}" if self.prefix else artifact_id

    def open_reader(self, artifact_id: str) -> BinaryIO:
        """Open the artifact for reading."""
        return self.store.open_reader(self._key(artifact_id))

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        """Store ``content_body`` under the prefixed id."""
        self.store.write(self._key(artifact_id), content_body)

    def remove(self, artifact_id: str) -> None:
        """Delete the artifact."""
        self.store.remove(self._key(artifact_id))


def artifacts_location(cfg: StudyConfig) -> str:
    """``artifacts.dir`` resolved: an ``s3://`` URL, or an absolute folder.

    The default is ``artifacts/`` next to the SQLite file (so the database and its
    artifacts move together), or next to the study file for other storages.
    """
    given = cfg.artifacts.dir
    if given:
        if given.startswith("s3://"):
            return given
        path = Path(given).expanduser()
        return str(path if path.is_absolute() else (cfg.base_dir / path).resolve())
    db = sqlite_path(storage_url(cfg))
    base = db.parent if db is not None else cfg.base_dir
    return str(base / "artifacts")


def open_artifact_store(location: str, *, create: bool = True) -> ArtifactStore:
    """An artifact store for a folder or ``s3://bucket/prefix`` (credentials from boto3's usual
    environment, e.g. ``AWS_ACCESS_KEY_ID`` and ``AWS_ENDPOINT_URL`` for MinIO)."""
    if location.startswith("s3://"):
        bucket, _, prefix = location[len("s3://") :].partition("/")
        if not bucket:
            raise ConfigError([f"artifacts.dir: no bucket in {location!r}; use s3://bucket/prefix"])
        try:
            import boto3
        except ImportError:
            raise ConfigError(
                [
                    "artifacts.dir: s3:// artifact stores need boto3 (pip install 'contrastive-hpo[s3]')"
                ]
            ) from None
        from optuna.artifacts import Boto3ArtifactStore

        s3: ArtifactStore = Boto3ArtifactStore(bucket, client=boto3.client("s3"))
        return PrefixedArtifactStore(s3, prefix) if prefix.strip("/") else s3
    path = Path(location)
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError([f"artifacts.dir: cannot create {path}: {exc.strerror}"]) from None
    return FileSystemArtifactStore(path)


def study_artifact_store(cfg: StudyConfig, *, create: bool = True) -> ArtifactStore:
    """The artifact store of ``cfg`` (the one the runner writes and the dashboard reads)."""
    try:
        return open_artifact_store(artifacts_location(cfg), create=create)
    except ConfigError as exc:
        raise ConfigError([_name_the_default(cfg, p) for p in exc.problems]) from None


def check_artifact_store(cfg: StudyConfig) -> None:
    """Raise :class:`ConfigError` if ``cfg``'s store could not be opened, creating nothing.

    Checked before the storage is opened, and the store is made after it: a run that then
    fails on either leaves neither a study nor an empty artifacts folder behind.
    """
    location = artifacts_location(cfg)
    if location.startswith("s3://"):
        study_artifact_store(cfg, create=False)  # a client only: nothing is written
        return
    path = Path(location)
    try:
        problem = _folder_problem(path)
    except OSError as exc:  # a name longer than the file system allows, a loop of links
        problem = f"artifacts.dir: cannot use {path}: {exc.strerror or exc}"
    if problem:
        raise ConfigError([_name_the_default(cfg, problem)])


def _folder_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or become) a folder the run writes into; ``None`` if it can.

    An existing folder is tried with a file made and removed at once: ``os.access`` says
    yes to root on a read-only mount, and a run would lose every checkpoint.
    """
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"artifacts.dir: cannot create {path}: {existing} is not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):  # unnamed, or removed at once
            pass
    except OSError as exc:
        if existing != path:
            return f"artifacts.dir: cannot create {path}: {existing} is not writable"
        return f"artifacts.dir: cannot write into {path}: {exc.strerror or exc}"
    return None


def _name_the_default(cfg: StudyConfig, problem: str) -> str:
    """A left-out ``artifacts.dir`` follows the storage: say so, or the user looks in vain."""
    if cfg.artifacts.dir or not problem.startswith("artifacts.dir:"):
        return problem
    beside = "the SQLite file" if sqlite_path(storage_url(cfg)) is not None else "the study file"
    return problem.replace(
        "artifacts.dir:", f"artifacts.dir (left out: artifacts/ beside {beside}):", 1
    )


def upload(store: ArtifactStore, trial: optuna.Trial, path: Path) -> str:
    """Attach one file to a running trial; returns the artifact id.

    When the store refuses the file (``OSError``: disk full, file too large; or a cloud
    store's error) nothing partial is left in the store, the trial gets the user attr
    ``artifact_error`` and a warning is logged, then :class:`ArtifactWriteError` is raised.
    """
    wrapped = _RemembersIds(store)
    try:
        return upload_artifact(
            artifact_store=wrapped,
            file_path=str(path),
            study_or_trial=trial,
            mimetype=mimetype_of(path),
        )
    except Exception as exc:
        if not wrapped.failed and not isinstance(exc, OSError):
            raise  # not the store's doing (e.g. the database): let the caller see it
        reason = f"{path.name}: {_describe(exc)}"
        logger.warning("trial %d: artifact not stored (%s)", trial.number, reason)
        with contextlib.suppress(Exception):
            trial.set_user_attr(ARTIFACT_ERROR_ATTR, reason[:500])
        raise ArtifactWriteError(f"artifact not stored ({reason})") from exc


def mimetype_of(path: Path) -> str:
    """The content type the dashboard serves ``path`` with (never guessed per machine)."""
    return MIMETYPES.get(path.suffix.lower(), DEFAULT_MIMETYPE)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else exc.strerror
    return f"{type(exc).__name__}: {exc}".strip()


@dataclass(frozen=True)
class StoredArtifact:
    """One artifact attached to a trial."""

    artifact_id: str
    filename: str
    mimetype: str


def trial_artifacts(
    trial: FrozenTrial | optuna.Trial, storage: BaseStorage
) -> list[StoredArtifact]:
    """Artifacts attached to a trial, tolerating entries the dashboard blanked out on delete."""
    try:
        metas = get_all_artifact_meta(trial, storage=storage)
        return [StoredArtifact(m.artifact_id, m.filename, m.mimetype) for m in metas]
    except (TypeError, KeyError):  # a ``null`` left by the dashboard's delete button
        attrs = storage.get_trial_system_attrs(trial._trial_id)
        out = []
        for key, raw in attrs.items():
            meta: Any = json.loads(raw) if key.startswith(_ARTIFACTS_PREFIX) else None
            if isinstance(meta, dict):
                out.append(StoredArtifact(meta["artifact_id"], meta["filename"], meta["mimetype"]))
        return out


def removed_artifact_ids(study: optuna.Study) -> set[str]:
    """Ids of checkpoints already deleted from the store by the retention policy."""
    attrs = study._storage.get_study_system_attrs(study._study_id)
    return {key[len(REMOVED_PREFIX) :] for key in attrs if key.startswith(REMOVED_PREFIX)}


def _ranked(candidates: Iterable[tuple[int, float]], maximize: bool) -> list[tuple[int, float]]:
    """Best first; ties go to the earlier trial so the decision is stable across workers."""
    return sorted(candidates, key=lambda c: (-c[1] if maximize else c[1], c[0]))


@dataclass
class RetentionDecision:
    """Whether the finishing trial keeps its checkpoint, and which older ones must go."""

    keep_current: bool
    drop: dict[int, str]
    """Trial number -> artifact id of checkpoints that fell out of the best ``k``."""


def decide_retention(
    study: optuna.Study, current_number: int, current_value: float, keep_best_k: int
) -> RetentionDecision:
    """Rank the finishing trial (still RUNNING in storage) against completed ones by the
    first objective; multi-objective studies rank by their first objective too."""
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.values and t.number != current_number and DUPLICATE_OF_ATTR not in t.user_attrs
    ]  # a reused duplicate has its twin's value but no checkpoint: it must not take a slot
    ranked = _ranked(
        [(t.number, float(t.values[0])) for t in complete] + [(current_number, current_value)],
        maximize,
    )
    keepers = {number for number, _ in ranked[:keep_best_k]}
    removed = removed_artifact_ids(study)
    drop = {
        t.number: str(t.user_attrs[CHECKPOINT_ATTR])
        for t in complete
        if t.number not in keepers
        and CHECKPOINT_ATTR in t.user_attrs
        and str(t.user_attrs[CHECKPOINT_ATTR]) not in removed
    }
    return RetentionDecision(keep_current=current_number in keepers, drop=drop)


def remove_checkpoints(study: optuna.Study, store: ArtifactStore, drop: dict[int, str]) -> None:
    """Delete checkpoints from the store and record it; a concurrent delete is not an error."""
    for number, artifact_id in drop.items():
        with contextlib.suppress(ArtifactNotFound):
            store.remove(artifact_id)
        study._storage.set_study_system_attr(study._study_id, REMOVED_PREFIX + artifact_id, number)
        logger.info("trial %d: checkpoint removed (no longer among the best)", number)


def kept_checkpoints(study: optuna.Study) -> dict[int, str]:
    """Trial number -> checkpoint artifact id, for checkpoints still in the store."""
    removed = removed_artifact_ids(study)
    return {
        t.number: str(t.user_attrs[CHECKPOINT_ATTR])
        for t in study.get_trials(deepcopy=False)
        if CHECKPOINT_ATTR in t.user_attrs and str(t.user_attrs[CHECKPOINT_ATTR]) not in removed
    }
