"""``hpo confirm``: the finalists trained again at fresh seeds, on a real SQLite / PostgreSQL."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo import StudyConfig, load_study_config, run_study, validate_study_data
from hpo.cli_confirm import verdict
from hpo.confirm import (
    CONFIRM_SEED_ATTR,
    CONFIRMS_ATTR,
    confirm_seeds,
    confirm_study,
    confirm_study_name,
    confirmation_config,
    confirmation_overrides,
    queue_confirmation,
    read_confirmation,
    select_finalists,
)
from hpo.duplicates import DUPLICATE_OF_ATTR
from hpo.errors import ConfigError
from hpo.export import export_best
from hpo.results import best_config
from hpo.runner import open_study
from hpo.standalone import load_trainer_config
from hpo.workers.recovery import SEED_ATTR, retry_copy
from tests.conftest import analytic_study
from tests.hpo.test_cli import hpo
from trainers.analytic import train as analytic_train

_X = FloatDistribution(-2.0, 2.0)
_CHOICE = CategoricalDistribution(["a", "b", "c"])


def _noisy_study(name: str, storage: str, n_trials: int = 8) -> dict[str, object]:
    """Seed luck (sd 0.2) larger than the gaps between choices (0.1, 0.3): the search's
    best single run is often not the best configuration."""
    return analytic_study(
        name,
        storage=storage,
        sampler={"name": "random", "seed": 3},
        pruner={"name": "none"},
        budget={"n_trials": n_trials},
        trainer={"name": "analytic", "params": {"epochs": 3, "seed_noise": 0.2}},
        space={
            "x": {"type": "float", "low": 0.0, "high": 0.6, "step": 0.3},
            "choice": {"type": "categorical", "choices": ["a", "b", "c"]},
        },
    )


def _searched(storage: str, name: str) -> StudyConfig:
    """The noisy study, searched to its budget."""
    cfg = validate_study_data(_noisy_study(name, storage))
    run_study(cfg)
    return cfg


def _complete(study: optuna.Study, value: float, x: float, choice: str, **attrs: object) -> None:
    study.add_trial(
        create_trial(
            value=value,
            params={"x": x, "choice": choice},
            distributions={"x": _X, "choice": _CHOICE},
            user_attrs=dict(attrs),
        )
    )


def test_finalists_are_the_best_distinct_configurations() -> None:
    study = optuna.create_study(direction="minimize")
    _complete(study, 0.5, 0.0, "a")
    _complete(study, 0.1, 1.0, "b")
    _complete(study, 0.3, 1.0, "b")  # a rerun of #1, worse: #1 stands for the configuration
    _complete(study, 0.0, 1.0, "b", **{DUPLICATE_OF_ATTR: 1})  # reused value, not a run
    _complete(study, 0.2, 0.5, "c")
    study.add_trial(
        create_trial(
            state=TrialState.PRUNED,
            params={"x": 0.0, "choice": "c"},
            distributions={"x": _X, "choice": _CHOICE},
        )
    )
    assert [t.number for t in select_finalists(study, 3)] == [1, 4, 0]
    assert [t.number for t in select_finalists(study, 1)] == [1]
    assert [t.number for t in select_finalists(study, 10)] == [1, 4, 0]


def test_finalists_trained_with_the_fixed_params_the_confirmation_uses() -> None:
    # a study resumed with other trainer.params: its earlier trials confirm nothing now
    from hpo.fixed_params import FIXED_KEY_ATTR, fixed_key

    study = optuna.create_study(direction="minimize")
    _complete(study, 0.1, 1.0, "b", **{FIXED_KEY_ATTR: fixed_key({"epochs": 3})})
    _complete(study, 0.2, 0.5, "c", **{FIXED_KEY_ATTR: fixed_key({"epochs": 8})})
    _complete(study, 0.3, 0.0, "a")  # from before the keys, no legacy set: alike
    assert [t.number for t in select_finalists(study, 3)] == [0, 1, 2]
    assert [t.number for t in select_finalists(study, 3, {"epochs": 8})] == [1, 2]


def test_confirm_seeds_are_reproducible_and_avoid_the_search_seeds() -> None:
    seeds = confirm_seeds(0, 3, taken=set())
    assert seeds == confirm_seeds(0, 3, taken=set())
    assert len(set(seeds)) == 3
    assert confirm_seeds(0, 2, taken={seeds[0]}) == seeds[1:3]
    assert confirm_seeds(1, 3, taken=set()) != seeds


def test_confirmation_config_is_what_workers_load_with_the_overrides(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    data = _noisy_study("cfg", f"sqlite:///{tmp_path / 'hpo.db'}")
    data["enqueue"] = [{"x": 0.3, "choice": "a"}]
    data["duplicates"] = "reuse"
    data["pruner"] = {"name": "hyperband", "reduction_factor": 3}
    data["budget"] = {"n_trials": 8, "timeout": "1h"}
    path = write_study(data)
    cfg = load_study_config(path)
    by_api = confirmation_config(cfg, n_runs=6)
    by_workers = load_study_config(path, confirmation_overrides(cfg, 6))
    assert by_api.model_dump() == by_workers.model_dump()
    assert by_api.name == "cfg::confirm" == confirm_study_name("cfg")
    assert by_api.pruner.name == "none" and by_api.pruner.kwargs == {}
    assert by_api.enqueue == [] and by_api.duplicates == "rerun"
    assert by_api.budget.n_trials == 6 and by_api.budget.timeout is None
    assert by_api.space == cfg.space and by_api.trainer == cfg.trainer


def _expected_mean(params: dict[str, object], seeds: list[int]) -> float:
    base = {"epochs": 3, "seed_noise": 0.2, **params}
    return statistics.fmean(analytic_train({**base, "seed": s})["best_score"] for s in seeds)


def test_confirmation_picks_the_best_mean_and_hpo_best_returns_it(
    rdb_url: str, unique_name: str, tmp_path: Path
) -> None:
    cfg = _searched(rdb_url, unique_name)
    search_best = best_config(cfg)
    assert "confirmed" not in search_best

    confirmation = confirm_study(cfg, top=3, seeds=3)
    assert confirmation.study_name == f"{unique_name}::confirm"
    assert len(confirmation.seeds) == 3 and not confirmation.pending
    assert [f.trial for f in confirmation.finalists] == queue_confirmation(
        cfg, top=3, seeds=3
    ).finalists
    for finalist in confirmation.finalists:
        assert len(finalist.values) == 3 and finalist.failed == 0
        # each run trained the finalist at one of the fresh seeds: the trainer agrees
        assert finalist.mean == pytest.approx(_expected_mean(finalist.params, confirmation.seeds))
    expected = max(confirmation.finalists, key=lambda f: f.mean)
    pick = confirmation.best()
    assert pick is not None and pick.trial == expected.trial

    confirmed = best_config(cfg)
    assert confirmed["trial"] == pick.trial
    assert confirmed["confirmed"]["mean"] == pytest.approx(pick.mean)
    assert confirmed["confirmed"]["runs"] == 3
    assert confirmed["confirmed"]["seeds"] == confirmation.seeds
    assert confirmed["params"]["choice"] == pick.params["choice"]

    exported = tmp_path / "best.yaml"
    export_best(cfg, exported)
    assert "# Picked by hpo confirm: mean" in exported.read_text(encoding="utf-8")
    name, params = load_trainer_config(exported)  # hpo train takes the confirmed export
    assert name == "analytic" and params["choice"] == pick.params["choice"]

    runs = optuna.load_study(study_name=confirmation.study_name, storage=rdb_url).trials
    assert {t.user_attrs["seed"] for t in runs} == set(confirmation.seeds)
    assert all(t.user_attrs["seed"] == t.user_attrs[CONFIRM_SEED_ATTR] for t in runs)
    assert all(t.state == TrialState.COMPLETE for t in runs)


def test_confirming_again_resumes_and_more_finalists_add_runs(
    tmp_path: Path, unique_name: str
) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    first = confirm_study(cfg, top=2, seeds=2)
    again = queue_confirmation(cfg, top=2, seeds=2)
    assert again.queued == 0 and again.n_runs == 4
    more = queue_confirmation(cfg, top=3, seeds=2)
    assert more.queued == 2 and more.n_runs == 6
    assert read_confirmation(cfg).pending == 2  # type: ignore[union-attr]
    # unfinished: hpo best keeps the search's pick until the queued runs are done
    assert "confirmed" not in best_config(cfg)
    run_study(confirmation_config(cfg, more.n_runs))
    done = read_confirmation(cfg)
    assert done is not None and not done.pending and len(done.finalists) == 3
    assert done.seeds == first.seeds
    assert "confirmed" in best_config(cfg)


def test_a_retried_confirmation_run_keeps_its_seed_and_finalist() -> None:
    study = optuna.create_study()
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"x": 0.3, "choice": "a"},
            distributions={"x": _X, "choice": _CHOICE},
            user_attrs={CONFIRMS_ATTR: 4, CONFIRM_SEED_ATTR: 123, "seed": 123},
            system_attrs={SEED_ATTR: 123},
        )
    )
    retry = retry_copy(study.trials[0], "worker_died")
    assert retry.system_attrs[SEED_ATTR] == 123
    assert retry.user_attrs[CONFIRMS_ATTR] == 4 and retry.user_attrs[CONFIRM_SEED_ATTR] == 123


def test_confirmation_refuses_bad_requests(tmp_path: Path, unique_name: str) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = validate_study_data(_noisy_study(unique_name, storage))
    with pytest.raises(ConfigError, match="not found"):
        queue_confirmation(cfg, top=3, seeds=2)
    multi = analytic_study(
        unique_name,
        storage=storage,
        objective={"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
    )
    with pytest.raises(ConfigError) as info:
        queue_confirmation(validate_study_data(multi), top=0, seeds=2)
    assert info.value.problems == [
        "--top (top): must be from 1 to 100 (got 0)",
        "objective: confirmation needs a single objective (this study has 2: best_score, loss)",
    ]


def test_confirming_under_changed_trainer_params_says_so(tmp_path: Path) -> None:
    """The README's smoke run (--set trainer.params.epochs=...) then confirm: not 'no trial'."""
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    _searched(storage, "smoke")
    changed = _noisy_study("smoke", storage)
    changed["trainer"]["params"]["epochs"] = 4  # type: ignore[index]
    with pytest.raises(ConfigError) as info:
        queue_confirmation(validate_study_data(changed), top=1, seeds=1)
    (problem,) = info.value.problems
    assert "no completed trial trained with this file's trainer.params" in problem


def test_cli_confirm_prints_the_finalists_and_the_pick(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_study(_noisy_study("cli-confirm", f"sqlite:///{tmp_path / 'hpo.db'}", 6))
    nothing = hpo("confirm", str(path))
    assert nothing.returncode == 2, nothing.stderr
    assert "Traceback" not in nothing.stderr
    assert "study 'cli-confirm' not found" in nothing.stderr
    assert hpo("run", str(path)).returncode == 0
    # two worker processes: the confirmation study reaches them as --set overrides
    result = hpo("confirm", str(path), "--top", "2", "--seeds", "2", "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "worker 1 (cpu) started" in result.stderr
    assert "4 run(s) queued now" in result.stderr
    assert "picked: trial #" in result.stdout and "hpo best now returns trial #" in result.stdout
    again = hpo("confirm", str(path), "--top", "2", "--seeds", "2")
    assert again.returncode == 0 and "0 run(s) queued now" in again.stderr
    pick = read_confirmation(load_study_config(path)).best()  # type: ignore[union-attr]
    assert pick is not None
    status = hpo("status", str(path))
    assert f"#{pick.trial}, mean {pick.mean:.6g} over 2 fresh-seed runs" in status.stdout
    report = tmp_path / "report.html"
    assert hpo("report", str(path), "-o", str(report)).returncode == 0
    page = report.read_text(encoding="utf-8")
    assert '<table id="confirmation">' in page and f"<td>{pick.trial} (pick)</td>" in page
    more = hpo("confirm", str(path), "--top", "50", "--seeds", "1")
    assert more.returncode == 0, more.stderr
    assert "note: --top 50, but the search has " in more.stderr


def test_the_study_file_confirm_section(write_study: Callable[..., Path], tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = validate_study_data({**_noisy_study("sec", storage), "confirm": {}})
    assert cfg.confirm is not None and (cfg.confirm.top, cfg.confirm.seeds) == (3, 2)
    assert validate_study_data(_noisy_study("sec", storage)).confirm is None
    with pytest.raises(ConfigError) as info:
        validate_study_data(
            {
                **_noisy_study("sec", storage),
                "confirm": {"top": 0, "seeds": 2, "extra": 1},
            }
        )
    assert any(p.startswith("confirm.top:") for p in info.value.problems)
    assert any(p.startswith("confirm.extra:") for p in info.value.problems)
    multi = analytic_study(
        "sec",
        objective={"metrics": ["best_score", "loss"], "directions": ["maximize", "minimize"]},
        confirm={"top": 2},
    )
    with pytest.raises(ConfigError) as info:
        validate_study_data(multi)
    assert info.value.problems == [
        "confirm: needs a single objective (the finalists are ranked by one value); "
        "remove it or use objective.metric"
    ]


def test_hpo_run_confirms_when_the_study_file_asks(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    data = _noisy_study("run-confirm", f"sqlite:///{tmp_path / 'hpo.db'}", 6)
    data["confirm"] = {"top": 2, "seeds": 1}
    path = write_study(data)
    assert "confirm   top 2 at 1 fresh seeds" in hpo("validate", str(path)).stdout
    result = hpo("run", str(path))
    assert result.returncode == 0, result.stderr
    assert "2 run(s) queued now" in result.stderr
    assert "picked: trial #" in result.stdout
    cfg = load_study_config(path)
    confirmation = read_confirmation(cfg)
    assert confirmation is not None and len(confirmation.finalists) == 2
    assert len(confirmation.seeds) == 1 and not confirmation.pending
    # hpo confirm with no flags takes the section too: nothing new to queue
    again = hpo("confirm", str(path))
    assert again.returncode == 0 and "0 run(s) queued now, 2 in" in again.stderr


def test_the_pick_is_the_best_mean_without_failures_first() -> None:
    from hpo.confirm import Confirmation, Finalist

    def confirmation(direction: str, *finalists: Finalist) -> Confirmation:
        return Confirmation("s::confirm", "m", direction, [1, 2], list(finalists))

    a = Finalist(0, {"x": 0}, 0.9, [0.80, 0.82])
    b = Finalist(1, {"x": 1}, 0.8, [0.85, 0.83])
    broken = Finalist(2, {"x": 2}, 0.7, [0.95], failed=1)
    waiting = Finalist(3, {"x": 3}, 0.6, [], pending=2)
    assert confirmation("maximize", a, b, broken, waiting).best() == b
    assert confirmation("minimize", a, b, broken, waiting).best() == a
    assert confirmation("maximize", broken, Finalist(4, {}, 0.5, [0.9], failed=1)).best() == broken
    assert confirmation("maximize", waiting).best() is None
    assert confirmation("maximize", a, b, waiting).pending == 2
    tie = Finalist(5, {"x": 5}, 0.5, [0.81, 0.81])
    assert confirmation("maximize", a, tie).best() == a  # ties keep the search's order


def test_a_failed_run_is_queued_again_and_counts_once_it_completes(
    tmp_path: Path, unique_name: str
) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    plan = queue_confirmation(cfg, top=2, seeds=2)
    confirm = optuna.load_study(study_name=confirm_study_name(unique_name), storage=storage)
    lost = confirm.get_trials(deepcopy=False)[0]  # e.g. a run that hit CUDA OOM
    confirm._storage.set_trial_state_values(lost._trial_id, TrialState.FAIL)
    assert read_confirmation(cfg).finalists[0].failed == 1  # type: ignore[union-attr]
    again = queue_confirmation(cfg, top=2, seeds=2)
    assert again.queued == 1 and again.n_runs == plan.n_runs + 1
    run_study(confirmation_config(cfg, again.n_runs))
    done = read_confirmation(cfg)
    assert done is not None and not done.pending
    assert [(len(f.values), f.failed) for f in done.finalists] == [(2, 0), (2, 0)]


def test_a_search_that_moved_on_makes_the_confirmation_stale(
    tmp_path: Path, unique_name: str
) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    confirmation = confirm_study(cfg, top=2, seeds=1)
    assert not confirmation.stale and "confirmed" in best_config(cfg)
    assert best_config(cfg)["confirmed"]["sd"] is None  # one run: no sd (JSON-safe)
    search = optuna.load_study(study_name=unique_name, storage=storage)
    newest = search.trials[0]
    search.add_trial(
        create_trial(
            value=10.0, params={"x": 0.6, "choice": "c"}, distributions=newest.distributions
        )
    )
    stale = read_confirmation(cfg)
    assert stale is not None and stale.stale
    best = best_config(cfg)
    assert "confirmed" not in best and best["trial"] == len(search.trials) - 1


def test_cli_confirm_on_a_grid_study_with_an_awkward_name(
    write_study: Callable[..., Path], tmp_path: Path
) -> None:
    data = _noisy_study("exp #1: grid", f"sqlite:///{tmp_path / 'hpo.db'}", 4)
    data["sampler"] = {"name": "grid"}
    data["space"] = {
        "x": {"type": "categorical", "choices": [0.0, 0.3]},
        **{"choice": {"type": "categorical", "choices": ["a", "b"]}},
    }
    path = write_study(data)
    assert hpo("run", str(path)).returncode == 0
    # 3 finalists x 2 seeds = 6 runs on a 4-point grid: every run is queued, none sampled
    result = hpo("confirm", str(path), "--top", "3", "--seeds", "2")
    assert result.returncode == 0, result.stderr
    assert "exp #1: grid::confirm" in result.stdout
    confirmation = read_confirmation(load_study_config(path))
    assert confirmation is not None and not confirmation.pending
    assert [len(f.values) for f in confirmation.finalists] == [2, 2, 2]
    best = hpo("best", str(path), "--format", "json")
    assert best.returncode == 0
    assert json.loads(best.stdout)["confirmed"]["runs"] == 2


def test_confirmation_checks_the_file_against_the_search(tmp_path: Path) -> None:
    """An edited space made the companion study with it (and refused the restored file)."""
    from hpo.errors import StudyMismatchError

    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, "edited")
    edited = _noisy_study("edited", storage)
    edited["space"]["x"]["high"] = 0.9  # type: ignore[index]
    with pytest.raises(StudyMismatchError, match="different search space"):
        queue_confirmation(validate_study_data(edited), top=1, seeds=1)
    assert confirm_study_name("edited") not in optuna.get_all_study_names(storage)
    assert queue_confirmation(cfg, top=1, seeds=1).queued == 1


def test_companion_names_are_reserved_and_a_long_name_confirms(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    for name in ("a::confirm::b", "a::confirm::confirm", "a::prune::loss"):
        with pytest.raises(ConfigError, match="mark the service's companion studies"):
            validate_study_data(_noisy_study(name, storage))
    longest = "n" * (512 - len("::confirm"))
    cfg = _searched(storage, longest)
    assert confirmation_config(cfg, n_runs=1).name == confirm_study_name(longest)
    assert queue_confirmation(cfg, top=1, seeds=1).queued == 1


def test_a_later_confirmation_keeps_every_finalist_on_the_same_seeds(
    tmp_path: Path, unique_name: str
) -> None:
    # --top 1 --seeds 3, then --top 3 --seeds 1: the new finalists got one seed and their
    # means were ranked against a mean over three
    cfg = _searched(f"sqlite:///{tmp_path / 'hpo.db'}", unique_name)
    first = confirm_study(cfg, top=1, seeds=3)
    more = queue_confirmation(cfg, top=3, seeds=1)
    assert more.seeds == first.seeds and more.queued == 6
    run_study(confirmation_config(cfg, more.n_runs))
    done = read_confirmation(cfg)
    assert done is not None and all(len(f.values) == 3 for f in done.finalists)


def test_runs_under_other_trainer_params_are_not_mixed_in(tmp_path: Path, unique_name: str) -> None:
    # after a resumed search under --set trainer.params..., the old runs were averaged in
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    confirm_study(cfg, top=2, seeds=2)
    data = _noisy_study(unique_name, storage, n_trials=12)
    data["trainer"]["params"]["seed_noise"] = 0.0  # type: ignore[index]
    changed = validate_study_data(data)
    run_study(changed)
    assert read_confirmation(changed) is None, "no run trained under these params yet"
    plan = queue_confirmation(changed, top=2, seeds=2)
    assert plan.queued == 4


def test_finalists_the_forced_space_no_longer_asks_for_are_skipped(
    tmp_path: Path, unique_name: str
) -> None:
    # a run re-suggests the finalist's parameters from the file's space: with y added, each
    # confirmation trained a random y and recorded it as the finalist's
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    data = _noisy_study(unique_name, storage)
    data["space"]["y"] = {"type": "float", "low": -1.0, "high": 1.0}  # type: ignore[index]
    with pytest.raises(ConfigError, match="no completed trial has the parameters of this"):
        queue_confirmation(validate_study_data(data), top=2, seeds=1, force=True)
    assert cfg.space.keys() == {"x", "choice"}


def test_a_search_recreated_under_its_name_is_confirmed_anew(
    tmp_path: Path, unique_name: str
) -> None:
    # runs of the deleted study's trials #N kept the new trials #N from being queued, and
    # were then ignored when read back: "the confirmation study holds no run", every time
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    cfg = _searched(storage, unique_name)
    before = confirm_study(cfg, top=2, seeds=1)
    old = {f.trial: f.params for f in before.finalists}
    optuna.delete_study(study_name=unique_name, storage=storage)
    open_study(cfg)
    search = optuna.load_study(study_name=unique_name, storage=storage)
    for number in range(8):  # the same finalist numbers, other parameters
        x = 0.3 if old.get(number, {}).get("x") != 0.3 else 0.6
        _complete(search, 1.0 if number in old else 0.0, x, "a" if number in old else "b")
    confirmation = confirm_study(cfg, top=2, seeds=1)
    assert [f.trial for f in confirmation.finalists] == sorted(old)
    assert [len(f.values) for f in confirmation.finalists] == [1, 1]
    for finalist in confirmation.finalists:
        assert finalist.params == search.trials[finalist.trial].params != old[finalist.trial]


def test_a_best_trial_outside_the_forced_space_leaves_the_confirmation_up_to_date(
    tmp_path: Path, unique_name: str
) -> None:
    # it counted as an unconfirmed finalist for good: "out of date" after every confirm
    storage = f"sqlite:///{tmp_path / 'hpo.db'}"
    _searched(storage, unique_name)
    search = optuna.load_study(study_name=unique_name, storage=storage)
    _complete(search, 10.0, 0.6, "c")  # the search's best, trained before y joined the space
    best_number = search.trials[-1].number
    data = _noisy_study(unique_name, storage, n_trials=12)
    data["space"]["y"] = {"type": "float", "low": -1.0, "high": 1.0}  # type: ignore[index]
    forced = validate_study_data(data)
    run_study(forced, force=True)
    confirmation = confirm_study(forced, top=2, seeds=1, force=True)
    assert not confirmation.stale and confirmation.search_best == best_number
    assert best_number not in {f.trial for f in confirmation.finalists}
    assert "confirmed" in best_config(forced)
    assert f"the search's best, trial #{best_number}, is no finalist (its parameters" in verdict(
        confirmation
    )
