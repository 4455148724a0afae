"""Our Hyperband: Optuna's decisions, without re-reading the study for each bracket view."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import event

from hpo.pruners import HyperbandPruner, build_pruner


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", 0.0, 1.0)
    kind = trial.suggest_categorical("kind", ["a", "b"])
    value = 0.0
    for step in range(1, 10):
        value = step * x * (1.0 if kind == "a" else 0.8)
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def _outcome(storage: str, name: str, pruner: optuna.pruners.BasePruner) -> list[Any]:
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        # TPE after 4 trials: Optuna builds a bracket view for every sampling call, so
        # sampling goes through the bracket view too
        sampler=optuna.samplers.TPESampler(seed=5, n_startup_trials=4),
        pruner=pruner,
    )
    study.optimize(_objective, n_trials=30)
    return [
        (t.state, sorted(t.params.items()), sorted(t.intermediate_values.items()))
        for t in study.trials
    ]


def _hyperband(cls: type[optuna.pruners.HyperbandPruner]) -> optuna.pruners.HyperbandPruner:
    return cls(min_resource=1, max_resource=9, reduction_factor=3)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_it_samples_and_prunes_exactly_as_optunas(
    tmp_path: Path, backend: str, unique_name: str, request: pytest.FixtureRequest
) -> None:
    """Same study name (Hyperband's brackets hash it), same seed: the same trials."""
    if backend == "sqlite":
        first, second = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    else:
        first = second = str(request.getfixturevalue("postgres_url"))
    reference = _outcome(first, unique_name, _hyperband(optuna.pruners.HyperbandPruner))
    if first == second:
        optuna.delete_study(study_name=unique_name, storage=first)
    ours = _outcome(second, unique_name, _hyperband(HyperbandPruner))
    assert ours == reference
    states = {state for state, *_ in ours}
    assert optuna.trial.TrialState.PRUNED in states, "the scenario never pruned: it tests nothing"


@contextmanager
def _statements(study: optuna.Study) -> Iterator[list[str]]:
    engine = study._storage._backend.engine  # type: ignore[attr-defined]
    sent: list[str] = []

    def on_execute(*args: Any) -> None:
        sent.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", on_execute)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", on_execute)


def test_a_pruning_decision_skips_the_study_lookups(tmp_path: Path) -> None:
    counts: dict[type, list[str]] = {}
    for cls in (optuna.pruners.HyperbandPruner, HyperbandPruner):
        study = optuna.create_study(
            storage=f"sqlite:///{tmp_path / f'{cls.__module__}.db'}",
            study_name="lookups",
            direction="maximize",
            pruner=_hyperband(cls),
        )
        trial = study.ask()
        trial.report(0.5, 1)
        frozen = study._storage.get_trial(trial._trial_id)
        with _statements(study) as sent:
            study.pruner.prune(study, frozen)
        counts[cls] = sent
    lookups = [s for s in counts[optuna.pruners.HyperbandPruner] if "study_name" in s]
    assert len(lookups) == 1, "Optuna's bracket view looks the study up by name"
    assert not any("study_name" in s for s in counts[HyperbandPruner])
    assert len(counts[HyperbandPruner]) == len(counts[optuna.pruners.HyperbandPruner]) - 1


def test_the_service_builds_ours() -> None:
    pruner = build_pruner("hyperband", {}, max_resource=30, warmup=3)
    assert type(pruner) is HyperbandPruner
    assert isinstance(pruner, optuna.pruners.HyperbandPruner), "Optuna must still know it"


class _HyperbandInDisguise(optuna.pruners.BasePruner):
    """Hyperband's decisions from a pruner Optuna does not take for Hyperband."""

    def __init__(self) -> None:
        self.hyperband = _hyperband(optuna.pruners.HyperbandPruner)

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.hyperband.prune(study, trial)


def test_optunas_tpe_models_every_bracket(tmp_path: Path) -> None:
    """Optuna hands the sampler a view of the trial's bracket, and TPE reads past it.

    The view filters ``get_trials``; Optuna 5's samplers read ``_get_trials``, which it
    leaves alone. So TPE models the whole study under Hyperband, exactly as under a
    pruner Optuna does not recognise. docs/search_efficiency.md relies on this; if a
    new Optuna filters again, this test says so.
    """
    storage = f"sqlite:///{tmp_path / 'brackets.db'}"
    disguised = _outcome(storage, "brackets", _HyperbandInDisguise())
    optuna.delete_study(study_name="brackets", storage=storage)
    assert _outcome(storage, "brackets", _hyperband(optuna.pruners.HyperbandPruner)) == disguised

    study = optuna.load_study(study_name="brackets", storage=storage)
    pruner = study.pruner = _hyperband(optuna.pruners.HyperbandPruner)
    pruner.prune(study, study.trials[-1])  # builds the brackets
    assert pruner._n_brackets == 3
    trials = study.get_trials(deepcopy=False)
    bracket_of = [pruner._get_bracket_id(study, t) for t in trials]
    assert len(set(bracket_of)) == 3, "one bracket only: the filter would filter nothing"
    view = optuna.pruners._filter_study(study, trials[-1])
    assert len(view.get_trials(deepcopy=False)) == bracket_of.count(bracket_of[-1])
    assert len(view._get_trials(deepcopy=False, use_cache=True)) == len(trials)


def _finished_study(tmp_path: Path, pruner: optuna.pruners.BasePruner) -> optuna.Study:
    study = optuna.create_study(
        study_name="views",
        storage=f"sqlite:///{tmp_path / 'views.db'}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=2),
        pruner=pruner,
    )
    study.optimize(_objective, n_trials=30)
    study.ask()  # one running trial in the views too
    return study


def test_bracket_views_hold_the_trials_of_optunas(tmp_path: Path) -> None:
    study = _finished_study(tmp_path, _hyperband(HyperbandPruner))
    ours = study.pruner
    optunas = _hyperband(optuna.pruners.HyperbandPruner)
    optunas.prune(study, study.trials[-2])  # builds the brackets
    assert ours._n_brackets == optunas._n_brackets == 3
    state_filters = (None, (TrialState.COMPLETE,), (TrialState.PRUNED, TrialState.RUNNING))
    for bracket_id in range(3):
        our_view = ours._create_bracket_study(study, bracket_id)
        optunas_view = optunas._create_bracket_study(study, bracket_id)
        for states in state_filters:
            for deepcopy in (False, True):
                got = our_view.get_trials(deepcopy=deepcopy, states=states)
                want = optunas_view.get_trials(deepcopy=deepcopy, states=states)
                assert got == want
        assert our_view.trials == optunas_view.trials
    sizes = [len(ours._create_bracket_study(study, b).trials) for b in range(3)]
    assert sum(sizes) == len(study.trials) and min(sizes) > 0


def test_each_trial_is_hashed_to_its_bracket_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _finished_study(tmp_path, _hyperband(HyperbandPruner))
    hashed: list[int] = []
    optunas_hash = optuna.pruners.HyperbandPruner._get_bracket_id

    def counted(self: Any, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> int:
        hashed.append(trial.number)
        return optunas_hash(self, study, trial)

    monkeypatch.setattr(optuna.pruners.HyperbandPruner, "_get_bracket_id", counted)
    pruner = _hyperband(HyperbandPruner)
    pruner._try_initialization(study)
    study.pruner = pruner
    for _ in range(2):
        for bracket_id in range(3):
            pruner._create_bracket_study(study, bracket_id).get_trials(deepcopy=False)
    assert sorted(hashed) == [t.number for t in study.trials]
