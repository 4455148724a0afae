"""A study's storage that answers the study's own id and directions from memory.

Optuna's pruners judge a trial on a view of the study: Hyperband builds one per bracket
at every pruning decision and every sampling call, and :class:`hpo.pruners.
GroupedPruner` one per group. Each view is an ``optuna.Study``, whose constructor looks
the study's id up by name (a SQL statement on an RDB storage; the directions are cached)
and reads its directions, thousands of times a study, for values that never change.
Built on a :class:`StudyBoundStorage`, the view gets them from the study at hand; every
other call, reads and writes alike, reaches the real storage unchanged.
"""

from __future__ import annotations

from typing import Any, cast

import optuna
from optuna.study import StudyDirection


class StudyBoundStorage:
    """``study``'s storage, with the study's id and directions known in advance.

    Duck-typed rather than a ``BaseStorage`` subclass: every method it does not define
    must reach the real storage unchanged, and ``optuna.Study`` accepts any storage
    object that is not a URL.
    """

    def __init__(self, study: optuna.Study) -> None:
        # a view of a view (Hyperband's bracket in a group) keeps the inner view's reads
        self._storage: Any = study._storage
        self._study_name = study.study_name
        self._study_id = study._study_id
        self._directions = list(study.directions)

    def get_study_id_from_name(self, study_name: str) -> int:
        if study_name == self._study_name:
            return self._study_id
        return cast(int, self._storage.get_study_id_from_name(study_name))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        if study_id == self._study_id:
            return list(self._directions)
        return cast(list[StudyDirection], self._storage.get_study_directions(study_id))

    def __getattr__(self, name: str) -> Any:
        if name == "_storage":  # not set yet (a copy or an unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._storage, name)


class _BoundStudy:
    """``study`` itself, but for its storage: a :class:`StudyBoundStorage` over it."""

    def __init__(self, study: optuna.Study) -> None:
        self._study = study
        self._storage = StudyBoundStorage(study)

    def __getattr__(self, name: str) -> Any:
        if name == "_study":  # not set yet (a copy or an unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._study, name)


def bound_study(study: optuna.Study) -> optuna.Study:
    """``study``, for building views on: a view built on it skips the study's look-ups."""
    return cast(optuna.Study, _BoundStudy(study))
