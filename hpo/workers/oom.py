"""Out-of-GPU-memory trials: record them, free the memory, optionally retry with half the batch.

The objective already records such a trial as FAIL with ``fail_reason: cuda_oom`` (it
recognises ``torch.cuda.OutOfMemoryError`` by name). Here the worker makes sure the next
trial starts with an empty CUDA cache -- after *every* trial, not only after an OOM: a
long-lived worker must not carry one trial's cached blocks (sized for its model and
batch) into the next, or fragment towards an OOM over hundreds of trials -- and with
``workers.on_oom: retry_smaller_batch``
queues the same parameters once more with ``batch_size`` halved and ``grad_accum``
doubled, so the effective batch (and the meaning of the hyperparameters) is unchanged.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Mapping
from typing import Any, TypeGuard

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.cuda_errors import CUDA_OOM
from hpo.objective import FAIL_REASON
from hpo.trainer_defaults import trainer_param_defaults
from hpo.workers.recovery import OVERRIDES_ATTR, requeue

logger = logging.getLogger(__name__)


def free_cuda_memory(*, collect: bool = True) -> None:
    """Drop unreachable tensors and return cached blocks to the driver.

    A no-op in a process that never initialised CUDA (it is not initialised here either).
    ``collect=False`` skips the garbage collection when the caller just ran one.
    """
    if collect:
        gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:  # a broken CUDA context must not stop the worker
        logger.debug("could not empty the CUDA cache", exc_info=True)


BATCH_KEYS = ("batch_size", "grad_accum", "eval_batch_size")
MIN_BATCH = 2
"""The smallest batch a retry asks for: the built-in trainer's floor (contrastive pairs,
BatchNorm); a batch of 2 or 3 is not halved again."""


def trainer_batch_defaults(trainer: str | None) -> dict[str, Any]:
    """The defaults the trainer's schema gives ``batch_size`` and ``grad_accum``.

    A study that leaves them unset runs with these, so an OOM retry must halve them: the
    trial's params alone would say there is nothing to halve.
    """
    return trainer_param_defaults(trainer, BATCH_KEYS)


def smaller_batch(
    params: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
) -> dict[str, int] | None:
    """``batch_size`` halved and ``grad_accum`` doubled, or ``None`` when it cannot shrink.

    ``defaults`` (the trainer's) stand in for keys the params leave out. An
    ``eval_batch_size`` is halved too: evaluating a large chunk of validation series at
    once is often the run's memory peak, and a retry that kept it would run out again.
    """
    params = {**(defaults or {}), **params}
    batch = params.get("batch_size")
    if not _count(batch) or batch // 2 < MIN_BATCH:
        return None
    accum = params.get("grad_accum", 1)
    if not _count(accum):
        return None
    smaller = {"batch_size": batch // 2, "grad_accum": accum * 2}
    evaluated = params.get("eval_batch_size")
    if _count(evaluated) and evaluated > 1:
        smaller["eval_batch_size"] = evaluated // 2
    return smaller


def _count(value: object) -> TypeGuard[int]:
    """A positive int (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class FreeMemoryAfterOom:
    """Study callback: after every trial (and the runner's ``CollectGarbage``), empty the CUDA
    cache; after a ``cuda_oom`` trial collect garbage once more first (the exception's
    traceback may have kept the trial's tensors alive through the first collection)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        oom = trial.state == TrialState.FAIL and trial.user_attrs.get(FAIL_REASON) == CUDA_OOM
        free_cuda_memory(collect=oom)


class OomRetryHook:
    """Trial hook: queue an OOM trial again with a smaller batch (``on_oom: retry_smaller_batch``).

    ``trainer`` names the trainer whose defaults apply to a batch size the study leaves
    unset; without it the study's recorded trainer is looked up at the first OOM.
    """

    def __init__(self, trainer: str | None = None) -> None:
        self.trainer = trainer
        self._defaults: dict[str, Any] | None = None

    def _batch_defaults(self, study: optuna.Study) -> dict[str, Any]:
        if self._defaults is None:
            trainer = self.trainer
            if trainer is None:
                from hpo.runner import ATTR_TRAINER  # hpo.runner imports this module

                trainer = study.user_attrs.get(ATTR_TRAINER)
            self._defaults = trainer_batch_defaults(trainer if isinstance(trainer, str) else None)
        return self._defaults

    def before(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        """Nothing to change before the trial."""
        return params

    def after(
        self,
        trial: optuna.Trial,
        params: Mapping[str, Any],
        state: TrialState,
        result: Mapping[str, Any] | None,
        history: list[tuple[int, dict[str, float]]],
    ) -> None:
        """Queue the retry while the trial is still RUNNING (so it can be tagged as replaced)."""
        if state != TrialState.FAIL:
            return
        frozen = trial.storage.get_trial(trial._trial_id)
        if frozen.user_attrs.get(FAIL_REASON) != CUDA_OOM:
            return
        if "batch_size" in (frozen.system_attrs.get(OVERRIDES_ATTR) or {}):
            logger.warning("trial %d ran out of GPU memory again; not retried", trial.number)
            return
        overrides = smaller_batch(params, self._batch_defaults(trial.study))
        if overrides is None:
            logger.warning(
                "trial %d ran out of GPU memory; its params have no batch_size to halve",
                trial.number,
            )
            return
        requeue(
            trial.study,
            frozen,
            CUDA_OOM,
            max_retries=1,
            fail=False,
            overrides=overrides,
            inherit_intermediate_values=False,
        )
