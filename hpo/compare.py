"""Two or more studies side by side: how good, how fast, and at what compute cost.

"Compute" is what the storage can tell without extra bookkeeping: the trainer's wall
time (``wall_seconds`` user attribute) and the epochs reported as intermediate values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo.errors import ConfigError
from hpo.report import companion_numbers, curves_study, state_counts
from hpo.results import best_trials, load_existing_study
from hpo.storages import mask_url, storage_url
from hpo.workers.budget import replaced_numbers

if TYPE_CHECKING:
    from hpo.config import StudyConfig

_STATE_LABEL = {"fail": "failed"}


@dataclass
class StudySummary:
    """One study's column in the comparison."""

    study: str
    storage: str
    objective: str
    direction: str
    counts: dict[str, int]
    best_value: float | None
    best_trial: int | None
    trials_to_best: int | None
    """Trials started up to and including the best one (failures spent compute too)."""
    wall_seconds: float
    wall_seconds_to_best: float | None
    epochs: int
    epochs_to_best: int | None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return asdict(self)


def _epochs_by_trial(study: optuna.Study, curves: optuna.Study) -> dict[int, int]:
    """Epochs reported per trial number (multi-objective: read from the pruning companion)."""
    trials = study.get_trials(deepcopy=False)
    if curves is study:
        return {t.number: len(t.intermediate_values) for t in trials}
    companion = {t.number: len(t.intermediate_values) for t in curves.get_trials(deepcopy=False)}
    twins = companion_numbers(trials)
    # a trial run before the study had a companion keeps its curve itself
    return {
        t.number: companion.get(twins[t.number], 0)
        if t.number in twins
        else len(t.intermediate_values)
        for t in trials
    }


def _wall(t: FrozenTrial) -> float:
    value = t.user_attrs.get("wall_seconds")
    return float(value) if isinstance(value, int | float) else 0.0


def summarize_study(cfg: StudyConfig) -> StudySummary:
    """The comparison column of the study in ``cfg`` (ranked by its first objective)."""
    study = load_existing_study(cfg)
    all_trials = study.get_trials(deepcopy=False)
    trials = [t for t in all_trials if t.state != TrialState.WAITING]
    epochs = _epochs_by_trial(study, curves_study(study, cfg))
    best = best_trials(study)  # the trial hpo best names (multi-objective: ranked front)
    best_trial = best[0] if best else None
    upto = [t for t in trials if best_trial is not None and t.number <= best_trial.number]
    return StudySummary(
        study=study.study_name,
        storage=mask_url(storage_url(cfg)),
        objective=cfg.objective.names[0],
        direction=study.directions[0].name.lower(),
        counts=state_counts(trials, replaced_numbers(all_trials)),  # retries: not failures
        best_value=float(best_trial.values[0]) if best_trial and best_trial.values else None,
        best_trial=best_trial.number if best_trial else None,
        trials_to_best=len(upto) if best_trial else None,
        wall_seconds=round(sum(_wall(t) for t in trials), 3),
        wall_seconds_to_best=round(sum(_wall(t) for t in upto), 3) if best_trial else None,
        epochs=sum(epochs.values()),
        epochs_to_best=sum(epochs.get(t.number, 0) for t in upto) if best_trial else None,
    )


def compare_studies(cfgs: Sequence[StudyConfig]) -> list[StudySummary]:
    """One summary per study, in the order given; every study not found is named (one
    :class:`ConfigError`, a line each), not only the first. An outage ends it at once."""
    summaries: list[StudySummary] = []
    problems: list[str] = []
    for cfg in cfgs:
        try:
            summaries.append(summarize_study(cfg))
        except ConfigError as exc:
            problems += [p for p in exc.problems if p not in problems]
    if problems:
        raise ConfigError(problems)
    return summaries


def comparison_warnings(summaries: Sequence[StudySummary]) -> list[str]:
    """Why the numbers may not be comparable (different metric or direction)."""
    kinds = {(s.objective, s.direction) for s in summaries}
    if len(kinds) <= 1:
        return []
    shown = "; ".join(f"{s.study}: {s.direction} {s.objective}" for s in summaries)
    return [f"the studies optimize different objectives ({shown})"]


def comparison_rows(summaries: Sequence[StudySummary]) -> list[tuple[str, list[str]]]:
    """(row label, one cell per study) for a side-by-side table."""

    def num(value: float | int | None, fmt: str = "{:.6g}") -> str:
        return "-" if value is None else fmt.format(value)

    states = list(dict.fromkeys(k for s in summaries for k in s.counts))
    return [
        ("objective", [f"{s.direction} {s.objective}" for s in summaries]),
        ("best value", [num(s.best_value) for s in summaries]),
        ("best trial", [num(s.best_trial, "{}") for s in summaries]),
        ("trials to reach best", [num(s.trials_to_best, "{}") for s in summaries]),
        *[
            (f"trials {_STATE_LABEL.get(k, k)}", [str(s.counts.get(k, 0)) for s in summaries])
            for k in states
        ],
        ("wall time (trainer)", [num(s.wall_seconds, "{:.1f} s") for s in summaries]),
        ("wall time to best", [num(s.wall_seconds_to_best, "{:.1f} s") for s in summaries]),
        ("epochs reported", [str(s.epochs) for s in summaries]),
        ("epochs to best", [num(s.epochs_to_best, "{}") for s in summaries]),
        ("storage", [s.storage for s in summaries]),
    ]
