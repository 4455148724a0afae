"""Trial hooks a study gets by default (artifacts, notes), chosen from its config.

Both hooks run in the worker process right after the trainer returns, while the trial
is still RUNNING (Optuna refuses to attach anything to a finished trial).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.artifacts import (
    CHECKPOINT_ATTR,
    CHECKPOINT_NAME,
    ArtifactWriteError,
    decide_retention,
    remove_checkpoints,
    study_artifact_store,
    upload,
)
from hpo.notes import device_name, git_commit, note_directory, render_note
from hpo.trainer_defaults import trainer_schema

if TYPE_CHECKING:
    from optuna.artifacts._protocol import ArtifactStore

    from hpo.config import StudyConfig
    from hpo.objective import TrialHook

logger = logging.getLogger(__name__)

CONFUSION_FILE = "confusion_matrix.npy"
EMBEDDINGS_FILE = "val_embeddings.npz"
ARTIFACT_DIR_ATTR = "artifact_dir"
"""Trial user attribute: the folder a fixed ``artifact_dir`` gave this trial."""
History = list[tuple[int, dict[str, float]]]


def trainer_accepts_param(cfg: StudyConfig, name: str) -> bool:
    """True when the trainer's schema declares ``name``: a trainer without a schema may reject
    keys it does not know, so nothing is added to its params."""
    schema = trainer_schema(cfg.trainer.name)
    return schema is not None and name in schema.model_fields


def trainer_accepts_artifact_dir(cfg: StudyConfig) -> bool:
    """Only trainers whose schema declares ``artifact_dir`` get one (others reject extra keys)."""
    return trainer_accepts_param(cfg, "artifact_dir")


def _objective_value(cfg: StudyConfig, result: Mapping[str, Any] | None) -> float | None:
    value = (result or {}).get(cfg.objective.names[0])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


class ArtifactHook:
    """Gives the trainer a scratch folder, then turns what it wrote (plus the per-epoch
    history) into PNGs and a checkpoint in the study's artifact store."""

    def __init__(self, cfg: StudyConfig, study: optuna.Study, store: ArtifactStore) -> None:
        self.cfg = cfg
        self.study = study
        self.store = store
        self.give_dir = trainer_accepts_artifact_dir(cfg)
        self._dirs: dict[int, tuple[Path, bool]] = {}
        self._lock = threading.Lock()

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        """Give the trainer an ``artifact_dir`` of this trial's own when it takes one.

        Without one it is a fresh scratch folder (removed after the upload). A folder the
        study file fixes gets a ``trial-<number>`` subfolder, left in place: used as given,
        every trial (and every worker) would read the pictures an earlier trial left there.
        """
        if not self.give_dir:
            return params
        given = params.get("artifact_dir")
        if given:
            workdir = trial_subfolder(Path(given), trial.number)
            trial.set_user_attr(ARTIFACT_DIR_ATTR, str(workdir))  # where to find its files
        else:
            workdir = Path(tempfile.mkdtemp(prefix=f"hpo-{trial.number}-"))
        with self._lock:
            self._dirs[trial._trial_id] = (workdir, not given)
        return {**params, "artifact_dir": str(workdir)}

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: TrialState,
        result: Mapping[str, Any] | None,
        history: History,
    ) -> None:
        """Render, upload and clean up; a scratch folder is removed whatever happens.

        A picture the store refuses costs only itself (``upload`` has noted it on the
        trial): the checkpoint after it, the one artifact that cannot be redrawn, is
        still stored.
        """
        with self._lock:
            workdir, owned = self._dirs.pop(trial._trial_id, (None, False))
        try:
            scratch = Path(tempfile.mkdtemp(prefix=f"hpo-plots-{trial.number}-"))
            try:
                for path in self._render(trial, params, history, workdir, scratch):
                    with contextlib.suppress(ArtifactWriteError):
                        upload(self.store, trial, path)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            if workdir is not None and state == TrialState.COMPLETE:
                self._checkpoint(trial, result, workdir / CHECKPOINT_NAME)
        finally:
            if workdir is not None and owned:
                shutil.rmtree(workdir, ignore_errors=True)

    def _render(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        history: History,
        workdir: Path | None,
        out: Path,
    ) -> list[Path]:
        """PNG files to upload; each picture is independent so one bad input skips only it."""
        opts = self.cfg.artifacts
        files: list[Path] = []
        try:
            from hpo import plots
        except ImportError as exc:  # matplotlib missing: keep checkpoints and notes going
            logger.warning("trial %d: no plots (%s)", trial.number, exc)
            return files
        title = f"{self.cfg.name} trial {trial.number}"
        seed = int(params.get("seed", 0) or 0)
        folder = workdir if workdir is not None else out
        embeddings = _guarded("embeddings", trial.number, lambda: _load_embeddings(folder))
        class_names = embeddings[0][2] if embeddings else None
        if embeddings and opts.embeddings:
            z, y, _ = embeddings[0]
            files += _guarded(
                "embeddings",
                trial.number,
                lambda: plots.plot_embeddings(
                    z,
                    y,
                    out / "embeddings_tsne.png",
                    class_names,
                    seed=seed,
                    title=f"{title}: t-SNE of validation embeddings",
                ),
            )
        if opts.plots:
            files += _guarded(
                "learning curves",
                trial.number,
                lambda: plots.plot_learning_curves(history, out / "learning_curves.png", title),
            )
            confusion = folder / CONFUSION_FILE
            if confusion.is_file():
                files += _guarded(
                    "confusion matrix",
                    trial.number,
                    lambda: plots.plot_confusion_matrix(
                        np.load(confusion, allow_pickle=False),
                        out / "confusion_matrix.png",
                        class_names,
                        title=f"{title}: confusion matrix (best epoch)",
                    ),
                )
        return files

    def _checkpoint(
        self, trial: optuna.Trial, result: Mapping[str, Any] | None, path: Path
    ) -> None:
        keep = self.cfg.artifacts.keep_best_k
        value = _objective_value(self.cfg, result)
        if keep <= 0 or value is None or not path.is_file():
            return
        decision = decide_retention(self.study, trial.number, value, keep)
        if decision.keep_current:
            artifact_id = upload(self.store, trial, path)
            trial.set_user_attr(CHECKPOINT_ATTR, artifact_id)
        remove_checkpoints(self.study, self.store, decision.drop)


def trial_subfolder(parent: Path, number: int) -> Path:
    """``parent/trial-<number>``, or ``-2``, ``-3``... when another study sharing ``parent``
    already used that name: a folder with someone else's files would lend them to this trial.

    Not created here: the trainer makes it, and says so in its own words when it cannot.
    """
    base = f"trial-{number}"
    folder = parent / base
    suffix = 1
    while folder.exists():
        suffix += 1
        folder = parent / f"{base}-{suffix}"
    return folder


T = TypeVar("T")


def _guarded(what: str, number: int, make: Callable[[], T | None]) -> list[T]:
    """``[make()]``, or ``[]`` when it returns ``None`` or fails (logged, never raised)."""
    try:
        made = make()
    except Exception as exc:  # a bad array must not cost the other pictures
        logger.warning("trial %d: cannot use %s: %s", number, what, exc)
        return []
    return [made] if made is not None else []


def _load_embeddings(
    folder: Path,
) -> tuple[np.ndarray, np.ndarray, list[str] | None] | None:
    """``z``, ``y`` and class names from ``val_embeddings.npz``, or ``None`` if absent."""
    path = folder / EMBEDDINGS_FILE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        names = [str(c) for c in data["class_names"]] if "class_names" in data.files else None
        return np.asarray(data["z"]), np.asarray(data["y"]), names


class NoteHook:
    """Writes the trial's Markdown note (parameters, metrics, device, seed, commit, outcome)."""

    def __init__(self, cfg: StudyConfig) -> None:
        # Imported here, not per trial: optuna-dashboard's optional imports keep their
        # ImportError, which during a failed trial's bookkeeping would chain (and keep
        # alive) the trainer's exception and every tensor its frames hold.
        from optuna_dashboard import save_note

        self.cfg = cfg
        self.commit = git_commit(note_directory(cfg.source))
        self._save_note = save_note

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        """Nothing to add before training."""
        return params

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: TrialState,
        result: Mapping[str, Any] | None,
        history: History,
    ) -> None:
        """Save the note through optuna-dashboard's API (stored in the study's storage)."""
        attrs = trial.user_attrs
        checkpoint = None
        if CHECKPOINT_ATTR in attrs:
            keep = self.cfg.artifacts.keep_best_k
            checkpoint = f"`{CHECKPOINT_NAME}` uploaded (kept while among the best {keep})"
        body = render_note(
            number=trial.number,
            state=state.name,
            params=params,
            sampled=trial.params,
            result=result,
            history=history,
            user_attrs=attrs,
            device=device_name(params),
            commit=self.commit,
            checkpoint=checkpoint,
        )
        self._save_note(trial, body)

    def reused(self, trial: optuna.Trial, twin: FrozenTrial) -> None:
        """A short note for a trial that took a completed twin's result without training."""
        lines = [
            f"## Trial {trial.number}: complete (reused)",
            "",
            f"Not trained: the same configuration completed as trial {twin.number} (same "
            "fixed parameters and seed), so its result was taken (`duplicates: reuse`). "
            f"Its note, curves and checkpoint are trial {twin.number}'s.",
            "",
        ]
        self._save_note(trial, "\n".join(lines))


def default_hooks(cfg: StudyConfig, study: optuna.Study) -> list[TrialHook]:
    """Hooks to run around every trial of ``study``: none when ``artifacts.enabled`` is off.

    The artifact hook runs first so the note can say whether a checkpoint was kept.
    """
    if not cfg.artifacts.enabled:
        return []
    hooks: list[TrialHook] = [ArtifactHook(cfg, study, study_artifact_store(cfg))]
    if cfg.artifacts.notes:
        hooks.append(NoteHook(cfg))
    return hooks
