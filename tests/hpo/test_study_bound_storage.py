"""The bound storage answers its own study's look-ups and passes every other call through."""

from __future__ import annotations

import copy
from pathlib import Path

import optuna
from optuna.study import StudyDirection

from hpo.study_bound_storage import StudyBoundStorage, bound_study


def test_it_answers_its_study_and_asks_the_storage_for_others(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    mine = optuna.create_study(study_name="mine", storage=url, direction="maximize")
    other = optuna.create_study(study_name="other", storage=url, direction="minimize")
    bound = StudyBoundStorage(mine)
    assert bound.get_study_id_from_name("mine") == mine._study_id
    assert bound.get_study_directions(mine._study_id) == [StudyDirection.MAXIMIZE]
    assert bound.get_study_id_from_name("other") == other._study_id
    assert bound.get_study_directions(other._study_id) == [StudyDirection.MINIMIZE]


def test_a_view_built_on_it_reads_and_writes_the_real_study(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'v.db'}", study_name="v")
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    view = optuna.Study(study_name="v", storage=bound_study(study)._storage)  # type: ignore[arg-type]
    assert [t.number for t in view.trials] == [0, 1, 2]
    view.set_user_attr("seen", True)
    assert study.user_attrs == {"seen": True}


def test_the_bound_study_differs_from_the_study_only_in_its_storage(tmp_path: Path) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b")
    bound = bound_study(study)
    assert isinstance(bound._storage, StudyBoundStorage)
    assert bound._storage._storage is study._storage
    assert (bound.study_name, bound._study_id) == ("b", study._study_id)
    assert bound.sampler is study.sampler


def test_copies_do_not_recurse(tmp_path: Path) -> None:
    """``__getattr__`` on a half-built copy must not look its own delegate up forever."""
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'c.db'}", study_name="c")
    storage = copy.copy(StudyBoundStorage(study))
    assert storage.get_study_id_from_name("c") == study._study_id
    assert copy.copy(bound_study(study)).study_name == "c"
