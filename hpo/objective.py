"""The bridge between an Optuna trial and an Optuna-free trainer.

The trainer sees a plain dict and a reporter; this module turns reports into
intermediate values and pruning decisions, and the trainer's result (or failure)
into the trial's values and user attributes.
"""

from __future__ import annotations

import logging
import math
import numbers
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import optuna

from hpo.config import PRUNE_COMPANION_ATTR, PRUNE_MARKER, StudyConfig
from hpo.cuda_errors import CUDA_ERROR, CUDA_OOM, is_cuda_oom, is_sticky_cuda_error
from hpo.duplicates import (
    DUPLICATE_OF_ATTR,
    UNUSED_PARAMS_ATTR,
    TwinFinder,
    UnusedParams,
    reuses_duplicates,
)
from hpo.errors import StorageError, exception_chain
from hpo.fixed_params import FIXED_KEY_ATTR, fixed_key
from hpo.owned_trials import OwnedTrialsStorage
from hpo.rdb_writes import upsert_insert, write_attrs
from hpo.space import suggest_params
from hpo.storages import mask_url
from hpo.timeouts import TrialTimeout, deadline, disarm
from hpo.trainer_defaults import builtin_trainer, trainer_param_defaults
from trainers.registry import TrainFn
from trainers.reporter import Pruned, TrainingFailed

logger = logging.getLogger(__name__)

FAIL_REASON = "fail_reason"
FAIL_MESSAGE = "fail_message"
PRUNED_AT_ATTR = "pruned_at_step"
"""User attribute: the step a pruned trial stopped at (one pruned on a companion keeps no
curve of its own)."""


def set_user_attrs(trial: optuna.Trial, attrs: Mapping[str, Any]) -> None:
    """``trial.set_user_attr`` for each item, written in one transaction where possible.

    Each ``set_user_attr`` on an RDB storage is its own transaction of two statements; a
    trial's dozen attributes (owner, metrics, outcome) cost more than its reports. On
    SQLite and PostgreSQL the items go in as one multi-row upsert, the same rows Optuna
    would write one by one (``json.dumps`` of each value, existing keys replaced, the
    trial checked to be still running). Other storages, or any problem with the batch
    other than a finished trial, fall back to one ``set_user_attr`` per item.
    """
    items = dict(attrs)
    if len(items) > 1:
        try:
            if _upsert_user_attrs(trial, items):
                trial._cached_frozen_trial.user_attrs.update(items)  # what set_user_attr does
                if isinstance(trial.storage, OwnedTrialsStorage):
                    trial.storage.record_user_attrs(trial._trial_id, items)
                return
        except optuna.exceptions.UpdateFinishedTrialError:
            raise
        except Exception as exc:  # e.g. a lost connection: the storage's own calls retry
            logger.debug("batched user attributes failed (%s); writing them one by one", exc)
    for key, value in items.items():
        trial.set_user_attr(key, value)


def _upsert_user_attrs(trial: optuna.Trial, items: Mapping[str, Any]) -> bool:
    """Write ``items`` in one transaction on SQLite/PostgreSQL; False for other storages.

    Raises Optuna's ``UpdateFinishedTrialError`` when the trial is no longer running.
    """
    backend = getattr(trial.storage, "_backend", trial.storage)
    if not isinstance(backend, optuna.storages.RDBStorage):
        return False
    if upsert_insert(backend.engine.name) is None:
        return False
    if write_attrs(backend, trial._trial_id, items):
        return True
    # Nothing (or not everything) written: Optuna's check says why, in Optuna's words.
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    with _create_scoped_session(backend.scoped_session) as session:
        state = models.TrialModel.find_or_raise_by_id(trial._trial_id, session).state
    backend.check_trial_is_updatable(trial._trial_id, state)
    return False


class TrialFailed(Exception):
    """A trial that ended without a usable objective value; its reason is in user attrs."""


def derive_seed(study_seed: int, trial_number: int) -> int:
    """A per-trial seed that is independent across trials and reproducible from the study seed."""
    state = np.random.SeedSequence([int(study_seed), int(trial_number)]).generate_state(1)
    return int(state[0] % (2**31 - 1))


def prune_study_name(cfg: StudyConfig) -> str:
    """Name of the companion study that carries pruning where the study cannot (multi-objective,
    or pruning against the objective's direction)."""
    return f"{cfg.name}{PRUNE_MARKER}{cfg.objective.pruning_metric}"


def _number(value: Any) -> bool:
    """A real number, NumPy's scalars included (a trainer's ``arr.mean()`` is one), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(float(value))


def _already_reported(trial: optuna.Trial, step: int) -> bool:
    """Whether ``trial`` holds a value for ``step`` already: a retry inherits its original's
    curve, and Optuna ignores a report of such a step (read from the trial's own cache)."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    return cached is not None and step in cached.intermediate_values


class TrialReporter:
    """Implements :class:`trainers.Reporter` on top of an Optuna trial.

    Single-objective studies report to the trial and ask its pruner. Optuna cannot
    prune multi-objective trials, and a study prunes in its own direction only, so there
    (and where ``prune_direction`` goes against the objective) the pruning metric goes to a
    trial of a single-objective companion study (``<name>::prune::<metric>``) whose pruner
    decides.
    """

    def __init__(
        self,
        trial: optuna.Trial,
        metric: str,
        prune_trial: optuna.Trial | None = None,
        final_step: int | None = None,
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.prune_trial = prune_trial
        # The report of the last epoch is never a pruning point: the work is done, and
        # pruning then (Hyperband's top rung sits at max_resource) would only discard it.
        self.final_step = final_step
        self.last_step: int | None = None
        self.last_metrics: dict[str, float] = {}
        self.history: list[tuple[int, dict[str, float]]] = []
        self._warned_missing = False

    def report(self, step: int, metrics: Mapping[str, float]) -> None:
        """Record the pruning metric for ``step``; raise :class:`trainers.Pruned` when told to stop."""
        self.last_step = int(step)
        self.last_metrics = {k: float(v) for k, v in metrics.items() if _finite(v)}
        self.history.append((self.last_step, self.last_metrics))
        value = metrics.get(self.metric)
        if not _finite(value):
            if not self._warned_missing and self._prunes():
                logger.warning(
                    "trial %d: report at step %d has no finite %r; pruning skips it",
                    self.trial.number,
                    step,
                    self.metric,
                )
                self._warned_missing = True
            return
        value = float(value)  # type: ignore[arg-type]
        at_end = self.final_step is not None and self.last_step >= self.final_step
        # The curve lives on the companion trial, where there is one: Optuna's
        # multi-objective TPE reads ``study.direction`` for pruned trials that carry
        # intermediate values, and a single-objective one would rank them in the
        # objective's direction.
        judged = self.trial if self.prune_trial is None else self.prune_trial
        # A retry walking again over the steps it inherited was judged there already (its
        # original went on); asked now, the pruner would judge the inherited last step,
        # the final epoch of a run lost after training, at the retry's epoch 1.
        repeated = _already_reported(judged, self.last_step)
        judged.report(value, self.last_step)
        should_prune = not at_end and not repeated and judged.should_prune()
        if should_prune:
            raise Pruned(f"pruned at step {step} with {self.metric}={value:.6g}")

    def last_value(self) -> float | None:
        """The last finite value of the pruning metric reported, if any."""
        for _, metrics in reversed(self.history):
            if self.metric in metrics:
                return metrics[self.metric]
        return None

    def _prunes(self) -> bool:
        """Whether a pruner reads the reports (``pruner: none`` skips nothing worth a word)."""
        study = (self.prune_trial or self.trial).study
        return not isinstance(study.pruner, optuna.pruners.NopPruner)


def _metric_attrs(metrics: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The finite metrics as user attributes (``prefix`` + name: float value)."""
    return {f"{prefix}{k}": float(v) for k, v in metrics.items() if _finite(v)}


_RESERVED_ATTRS = frozenset(
    {"seed", "wall_seconds", FAIL_REASON, FAIL_MESSAGE, DUPLICATE_OF_ATTR, UNUSED_PARAMS_ATTR}
)


def _reserved(name: str) -> bool:
    """A user attribute the service writes itself: a result metric of that name must not
    overwrite it (a trainer returning ``seed`` changed the seed ``hpo best`` exports)."""
    return name in _RESERVED_ATTRS or name.startswith("hpo:")


class TrainerExited(RuntimeError):
    """The trainer called ``sys.exit``: a failed trial, not the end of the worker."""


def _train(train_fn: TrainFn, params: dict[str, Any], reporter: Any) -> Any:
    """``train_fn(params, reporter)``, with a ``SystemExit`` from it (an argparse error, a
    library's ``sys.exit``) turned into an exception the trial records."""
    try:
        return train_fn(params, reporter)
    except SystemExit as exc:
        raise TrainerExited(f"the trainer called sys.exit({exc.code!r})") from exc


def _from_storage(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is the storage's."""
    for link in exception_chain(exc):
        module = type(link).__module__ or ""
        if isinstance(
            link, StorageError | optuna.exceptions.StorageInternalError | OSError
        ) or module.startswith(("sqlalchemy", "grpc")):
            # hpo's outage handling, Optuna's RDB, a journal file, the storage proxy's client
            return True
    return False


def _classify_exception(exc: BaseException) -> str:
    if isinstance(exc, TrainingFailed):
        return exc.reason
    if isinstance(exc, TrialTimeout):
        return "timeout"
    if is_cuda_oom(exc):
        return CUDA_OOM
    if is_sticky_cuda_error(exc):
        return CUDA_ERROR
    return "exception"


def _release_frames(exc: BaseException) -> None:
    """Clear the locals of the finished frames in ``exc``'s traceback (and its causes').

    Once the failure is recorded nothing needs them, but the exception outlives the
    trial (optuna logs it; a library may keep it as another error's context), and a
    trainer's frame holds its model, optimizer and batches: GPU memory that
    ``torch.cuda.empty_cache`` could not give back while they are referenced.
    Frames still running (this one, its callers) are left as they are.
    """
    for link in exception_chain(exc):
        traceback.clear_frames(link.__traceback__)


class TrialHook(Protocol):
    """Extension point around each trainer call (artifacts, notes, device bookkeeping).

    ``before`` may add keys to the trainer params (e.g. an ``artifact_dir``) and returns
    them; ``after`` runs whatever the outcome and must never raise into the trial.
    """

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]: ...

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: optuna.trial.TrialState,
        result: Mapping[str, Any] | None,
        history: list[tuple[int, dict[str, float]]],
    ) -> None: ...


class Objective:
    """Callable passed to ``study.optimize``: one trial = one trainer call."""

    def __init__(
        self,
        cfg: StudyConfig,
        train_fn: TrainFn,
        prune_study: optuna.Study | None = None,
        hooks: Sequence[TrialHook] = (),
        unused_params: UnusedParams | None = None,
    ) -> None:
        self.cfg = cfg
        self.train_fn = train_fn
        self.prune_study = prune_study
        self.hooks = list(hooks)
        self.reuse_duplicates = reuses_duplicates(cfg)
        # the trainer's word on which sampled parameters a configuration does not read
        self.fixed_key = fixed_key(cfg.trainer.params)
        self.twins = TwinFinder(unused_params, cfg.trainer.params)
        # what a trial that leaves ``epochs`` unset trains for (its last epoch is not judged)
        self.default_epochs = trainer_param_defaults(cfg.trainer.name, ["epochs"]).get("epochs")
        self.on_trained: Callable[[], None] = lambda: None
        """Called as soon as the trainer returns or raises: from then on a first Ctrl-C or
        SIGTERM waits for the trial's bookkeeping (results, artifacts) instead of
        throwing the trained trial away (the runner points it at its interrupt state)."""
        self.cuda_lost: str | None = None
        """Set when a trial left this process's CUDA context unusable (its study stops)."""
        self._open_prune_trials: set[int] = set()
        """Ids of companion trials asked for and not yet ended."""

    def _run_after_hooks(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: optuna.trial.TrialState,
        result: Mapping[str, Any] | None,
        reporter: TrialReporter,
    ) -> None:
        for hook in self.hooks:
            try:
                hook.after(trial, params, state, result, reporter.history)
            except Exception as exc:  # an artifact problem must never lose the trial's metrics
                logger.warning(
                    "trial %d: %s failed: %s", trial.number, type(hook).__name__, mask_url(str(exc))
                )
                trial.set_user_attr("hook_error", mask_url(f"{type(hook).__name__}: {exc}")[:500])

    def _note_reuse(self, trial: optuna.Trial, twin: optuna.trial.FrozenTrial) -> None:
        """Tell the hooks that care (the trial note) about a result taken from ``twin``."""
        for hook in self.hooks:
            reused = getattr(hook, "reused", None)
            if reused is None:
                continue
            try:
                reused(trial, twin)
            except Exception as exc:  # a note must never lose the reused result
                logger.warning("trial %d: %s failed: %s", trial.number, type(hook).__name__, exc)

    def _fail(
        self,
        trial: optuna.Trial,
        reason: str,
        message: str,
        also: Mapping[str, Any] | None = None,
    ) -> TrialFailed:
        """Record why the trial failed (with the attributes in ``also``, in one write).

        Passwords in the message (a trainer's "cannot reach postgresql://u:pw@db") are
        masked: the message reaches the dashboard, notes, ``hpo status`` and the logs.
        """
        message = mask_url(message)
        set_user_attrs(trial, {**(also or {}), FAIL_REASON: reason, FAIL_MESSAGE: message[-2000:]})
        return TrialFailed(f"{reason}: {message.splitlines()[-1] if message else ''}")

    def _hand_over(self, trial: optuna.Trial) -> None:
        """Queue the trial for a fresh process and stop this one's study (its CUDA is gone)."""
        from hpo.workers.recovery import requeue  # it imports this module

        try:
            frozen = trial.storage.get_trial(trial._trial_id)
            requeue(
                trial.study,
                frozen,
                CUDA_ERROR,
                max_retries=self.cfg.workers.max_retries,
                fail=False,
            )
        finally:
            trial.study.stop()

    def _finish_prune_trial(
        self, prune_trial: optuna.Trial | None, state: optuna.trial.TrialState, value: float | None
    ) -> None:
        if self.prune_study is None or prune_trial is None:
            return
        self._open_prune_trials.discard(prune_trial._trial_id)
        if state == optuna.trial.TrialState.COMPLETE and value is None:
            # Optuna takes no COMPLETE without a value: a trial left RUNNING would never
            # count as a finished curve, and nothing would ever be pruned
            state = optuna.trial.TrialState.FAIL
        try:
            if state == optuna.trial.TrialState.COMPLETE:
                self.prune_study.tell(prune_trial, value)
            else:
                self.prune_study.tell(prune_trial, state=state)
        except Exception:  # the companion study is advisory; never fail the real trial for it
            logger.debug("could not finish pruning companion trial", exc_info=True)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        cfg = self.cfg
        try:
            sampled = suggest_params(trial, cfg.space)
        except Exception as exc:
            if _from_storage(exc):
                raise  # the storage's to handle (retry, or end the worker), not the trial's
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            raise self._fail(
                trial, "sampler", f"sampling the parameters failed: {message}"
            ) from exc
        unused = sorted(self.twins.unused_names(sampled))
        noted: dict[str, Any] = {UNUSED_PARAMS_ATTR: unused} if unused else {}
        if self.reuse_duplicates:
            twin = self.twins.find(trial.study, sampled)
            if twin is not None:
                reused = {
                    DUPLICATE_OF_ATTR: twin.number,
                    FIXED_KEY_ATTR: self.fixed_key,
                    "wall_seconds": 0.0,
                    **noted,
                }
                set_user_attrs(trial, reused)
                self._note_reuse(trial, twin)
                return list(twin.values) if cfg.objective.is_multi else twin.values[0]
        seed = derive_seed(cfg.seed, trial.number)
        params: dict[str, Any] = {**cfg.trainer.params, **sampled}
        params.setdefault("seed", seed)
        set_user_attrs(trial, {"seed": params["seed"], FIXED_KEY_ATTR: self.fixed_key, **noted})
        for hook in self.hooks:
            params = hook.before(trial, params)
        prune_trial = self.prune_study.ask() if self.prune_study is not None else None
        if prune_trial is None:
            return self._run(trial, params, None)
        self._open_prune_trials.add(prune_trial._trial_id)
        try:
            trial.set_user_attr(PRUNE_COMPANION_ATTR, prune_trial.number)
            return self._run(trial, params, prune_trial)
        finally:
            # An interrupt (Ctrl-C, SIGTERM: ``KeyboardInterrupt``, which no ``except
            # Exception`` sees) or a storage error skipped the companion's end: left
            # RUNNING, it stayed so forever (nothing recovers companion trials).
            if prune_trial._trial_id in self._open_prune_trials:
                self._finish_prune_trial(prune_trial, optuna.trial.TrialState.FAIL, None)

    def _run(
        self, trial: optuna.Trial, params: dict[str, Any], prune_trial: optuna.Trial | None
    ) -> float | list[float]:
        """Train, then record the result, pruning or failure (the companion trial ended)."""
        cfg = self.cfg
        # Built-in trainers report once per epoch; a user's trainer may count steps otherwise.
        epochs = params.get("epochs", self.default_epochs)
        final_step = (
            epochs
            if builtin_trainer(cfg.trainer.name)
            and isinstance(epochs, int)
            and not isinstance(epochs, bool)
            else None
        )
        reporter = TrialReporter(trial, cfg.objective.pruning_metric, prune_trial, final_step)
        started = time.perf_counter()
        # The after-hooks run once the ``except`` blocks are left: an exception raised (and
        # kept, as optuna's ``try_import`` does) inside one would get the trainer's error as
        # its ``__context__``, and with it the frames holding the model and its batches.
        failure: TrialFailed | None = None
        cause: BaseException | None = None
        pruned: str | None = None
        try:
            try:
                with deadline(cfg.budget.trial_timeout):
                    result = _train(self.train_fn, params, reporter)
            finally:
                disarm()  # a timeout that escaped as the body ended left its timer on
                self.on_trained()
        except Pruned as exc:
            set_user_attrs(
                trial,
                {
                    PRUNED_AT_ATTR: reporter.last_step,
                    "prune_reason": str(exc),
                    **_metric_attrs(reporter.last_metrics, prefix="last_"),
                    "wall_seconds": round(time.perf_counter() - started, 3),
                },
            )
            pruned = str(exc)
            _release_frames(exc)
        except (Exception, TrialTimeout) as exc:  # a timeout is a BaseException: see timeouts
            attrs = {
                "wall_seconds": round(time.perf_counter() - started, 3),
                **_metric_attrs(reporter.last_metrics, prefix="last_"),
            }
            self._finish_prune_trial(prune_trial, optuna.trial.TrialState.FAIL, None)
            message = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            reason = _classify_exception(exc)
            failure = self._fail(trial, reason, message, also=attrs)
            if reason == CUDA_ERROR:
                self.cuda_lost = f"trial {trial.number}: {message.splitlines()[0]}"
            cause = exc
            _release_frames(exc)
        if pruned is not None:
            self._finish_prune_trial(prune_trial, optuna.trial.TrialState.PRUNED, None)
            self._run_after_hooks(trial, params, optuna.trial.TrialState.PRUNED, None, reporter)
            raise optuna.TrialPruned(pruned)
        if failure is not None:
            self._run_after_hooks(trial, params, optuna.trial.TrialState.FAIL, None, reporter)
            if self.cuda_lost is not None:
                self._hand_over(trial)
            raise failure from cause
        wall = {"wall_seconds": round(time.perf_counter() - started, 3)}
        try:
            values = self._values(trial, result, prune_trial, wall, reporter.last_value())
        except TrialFailed as exc:
            failure = exc
        if failure is not None:
            self._run_after_hooks(trial, params, optuna.trial.TrialState.FAIL, result, reporter)
            raise failure
        self._run_after_hooks(trial, params, optuna.trial.TrialState.COMPLETE, result, reporter)
        return values

    def _values(
        self,
        trial: optuna.Trial,
        result: Any,
        prune_trial: optuna.Trial | None,
        attrs: Mapping[str, Any],
        last_reported: float | None = None,
    ) -> float | list[float]:
        """The objective value(s) from the trainer's result; ``attrs`` are written with the
        result's metrics (or with the failure reason when the result is not a dict).
        ``last_reported`` (the pruning metric's last report) completes the pruning trial
        when the result leaves that metric out."""
        fail_state = optuna.trial.TrialState.FAIL
        if not isinstance(result, Mapping):
            self._finish_prune_trial(prune_trial, fail_state, None)
            raise self._fail(
                trial,
                "bad_result",
                f"trainer returned {type(result).__name__}, expected a dict of metrics",
                also=attrs,
            )
        metrics = {k: v for k, v in _metric_attrs(result).items() if not _reserved(k)}
        set_user_attrs(trial, {**attrs, **metrics})
        values: list[float] = []
        for name in self.cfg.objective.names:
            if name not in result:
                self._finish_prune_trial(prune_trial, fail_state, None)
                keys = ", ".join(sorted(map(str, result))) or "nothing"
                raise self._fail(
                    trial, "missing_metric", f"trainer result has no {name!r} (it has {keys})"
                )
            value = result[name]
            if not _number(value):
                self._finish_prune_trial(prune_trial, fail_state, None)
                raise self._fail(trial, "bad_result", f"{name} is {value!r}, not a number")
            if not math.isfinite(float(value)):
                self._finish_prune_trial(prune_trial, fail_state, None)
                raise self._fail(trial, "nan", f"{name} is {value}")
            values.append(float(value))
        prune_value = result.get(self.cfg.objective.pruning_metric)
        if not _finite(prune_value):
            prune_value = last_reported  # a metric reported per epoch but not returned
        self._finish_prune_trial(
            prune_trial,
            optuna.trial.TrialState.COMPLETE,
            None if prune_value is None else float(prune_value),
        )
        return values if self.cfg.objective.is_multi else values[0]
