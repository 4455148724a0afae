"""Reading a study back: counts, the best trial, and a ready-to-run trainer config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.config import PRUNE_COMPANION_ATTR, StudyConfig
from hpo.duplicates import DUPLICATE_OF_ATTR, originals
from hpo.errors import StudyMismatchError
from hpo.fixed_params import trial_fixed_params
from hpo.runner import (
    ATTR_FIXED,
    ATTR_TRAINER,
    objective_change,
    ranked_best_trials,
    study_not_found,
)
from hpo.storages import (
    NoStudiesError,
    mask_url,
    open_storage,
    storage_file_absent,
    storage_url,
)

if TYPE_CHECKING:
    from hpo.confirm import Confirmation


@dataclass
class StudyStatus:
    """Counts by state, the best trial so far, and what is running now."""

    study_name: str
    storage: str
    counts: dict[str, int]
    best_number: int | None
    best_values: list[float] | None
    best_params: dict[str, Any]
    running: list[dict[str, Any]] = field(default_factory=list)
    confirmation: Confirmation | None = None
    """What ``hpo confirm`` found, when it was run."""
    failures: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Failed trials by ``fail_reason``: how many, and the latest one's first message line."""


PARAM_OVERRIDES_ATTR = "param_overrides"
"""Trial user attribute: parameters a retry trained with in place of its own (RetryHook)."""
_NOT_METRICS = frozenset({"seed", "retry_of", DUPLICATE_OF_ATTR, PRUNE_COMPANION_ATTR})
"""Numbers among a trial's user attributes that are bookkeeping, not results."""


def load_existing_study(cfg: StudyConfig) -> optuna.Study:
    """Load the study named in ``cfg``; a clear error when it has never run.

    Read-only commands come here: a storage file that does not exist is that error too,
    not opened, since opening would create it (and Optuna's tables) as a side effect. A
    file whose objective differs from the study's is refused, as a run refuses it: its
    metric names and directions would label and rank the stored values wrongly.
    """
    url = storage_url(cfg)
    if storage_file_absent(url):
        raise study_not_found(cfg)
    try:
        storage = open_storage(url, read_only=True)  # a read switches and creates nothing
        study = optuna.load_study(study_name=cfg.name, storage=storage)
    except (KeyError, NoStudiesError):
        raise study_not_found(cfg) from None
    changed = objective_change(study, cfg)
    if changed is not None:
        raise StudyMismatchError(
            [
                f"{changed}; its values would be shown under the file's objective: use the file "
                "the study was run with"
            ]
        )
    return study


def best_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The best trial, or the Pareto front ranked by the first objective (empty when none completed)."""
    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return []
    # a reused duplicate has no checkpoint or metrics of its own: name the trial that trained
    return originals(study, ranked_best_trials(study))


def study_status(cfg: StudyConfig) -> StudyStatus:
    """Where the study stands."""
    from hpo.confirm import read_confirmation

    study = load_existing_study(cfg)
    from hpo.workers.budget import is_replaced, replaced_numbers

    all_trials = study.get_trials(deepcopy=False)
    replaced = replaced_numbers(all_trials)
    trials = [t for t in all_trials if not is_replaced(t, replaced)]
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    counts["retried or surplus"] = len(all_trials) - len(trials)
    best = best_trials(study)
    running = [
        {
            "number": t.number,
            "params": t.params,
            "last_step": t.last_step,
            "started": t.datetime_start.isoformat(timespec="seconds") if t.datetime_start else None,
        }
        for t in trials
        if t.state == TrialState.RUNNING
    ]
    failures: dict[str, tuple[int, str]] = {}
    for t in trials:  # in trial order: the last message kept is the latest
        if t.state == TrialState.FAIL:
            reason = str(t.user_attrs.get("fail_reason") or "unknown")
            lines = str(t.user_attrs.get("fail_message") or "").strip().splitlines()
            count = failures.get(reason, (0, ""))[0]
            failures[reason] = (count + 1, lines[0] if lines else "")
    return StudyStatus(
        failures=failures,
        study_name=cfg.name,
        storage=mask_url(storage_url(cfg)),
        counts=counts,
        best_number=best[0].number if best else None,
        best_values=list(best[0].values) if best else None,
        best_params=dict(best[0].params) if best else {},
        running=running,
        confirmation=read_confirmation(cfg, study),
    )


def best_config(cfg: StudyConfig) -> dict[str, Any]:
    """The best trial as a standalone trainer config: fixed params + best params + its seed.

    After a finished ``hpo confirm`` it is the finalist with the best confirmed mean (with
    a ``confirmed`` block), not the trial with the best single search value.
    """
    from hpo.confirm import read_confirmation
    from hpo.errors import ConfigError

    study = load_existing_study(cfg)
    best = best_trials(study)
    if not best:
        raise ConfigError([f"study {cfg.name!r} has no completed trial yet"])
    trial = best[0]
    confirmed: dict[str, Any] | None = None
    confirmation = read_confirmation(cfg, study)
    finished = confirmation is not None and not confirmation.pending and not confirmation.stale
    pick = confirmation.best() if confirmation is not None and finished else None
    if confirmation is not None and pick is not None:
        # a finished, up-to-date confirmation outranks the search's single lucky run
        trial = next(t for t in study.get_trials(deepcopy=False) if t.number == pick.trial)
        confirmed = {
            "mean": pick.mean,
            "sd": pick.sd,
            "runs": len(pick.values),
            "seeds": confirmation.seeds,
            "finalists": len(confirmation.finalists),
            "study": confirmation.study_name,
        }
    attrs = study.user_attrs
    fixed = trial_fixed_params(attrs, trial, attrs.get(ATTR_FIXED, cfg.trainer.params))
    params = {**fixed, **trial.params}
    overrides = trial.user_attrs.get(PARAM_OVERRIDES_ATTR)
    if isinstance(overrides, dict):  # an OOM retry trained at a smaller batch
        params.update(overrides)
    if "seed" in trial.user_attrs:
        params["seed"] = trial.user_attrs["seed"]
    metrics = {
        k: v
        for k, v in trial.user_attrs.items()
        if isinstance(v, int | float) and not isinstance(v, bool) and k not in _NOT_METRICS
    }
    out: dict[str, Any] = {
        "trainer": study.user_attrs.get(ATTR_TRAINER, cfg.trainer.name),
        "params": params,
        "study": cfg.name,
        "trial": trial.number,
        "values": dict(zip(cfg.objective.names, trial.values or [], strict=False)),
        "metrics": metrics,
    }
    if len(best) > 1:  # the others are as good on some objective: say which they are
        out["pareto_front"] = [t.number for t in best]
    if confirmed is not None:
        out["confirmed"] = confirmed
    return out
