"""The public surface of ``hpo``: what a script needs for every CLI command, imported lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna

import hpo


def test_every_public_name_resolves() -> None:
    for name in hpo.__all__:
        assert getattr(hpo, name) is not None, name


def test_importing_hpo_leaves_the_heavy_parts_for_later() -> None:
    """The report, dashboard and trainer modules are imported by the commands that use them."""
    code = (
        "import sys, hpo; heavy = ['hpo.dashboard', 'hpo.report', 'optuna_dashboard', 'torch']; "
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_storage_outage_reaches_api_callers_as_hpo_error() -> None:
    """``run_study`` and ``confirm_study`` translate what Optuna raises around a lost
    database, as the CLI does, so ``except hpo.HpoError`` catches it."""
    from hpo.storages import outage_as_error

    assert issubclass(hpo.StorageUnavailableError, hpo.HpoError)

    @outage_as_error()
    def lose_the_database() -> None:
        try:  # the storage gave up retrying; Optuna's loop then failed on something else
            raise hpo.StorageUnavailableError(["storage: the database is gone"])
        except hpo.StorageUnavailableError:
            raise RuntimeError("tell failed") from None

    try:
        lose_the_database()
    except hpo.HpoError as exc:
        assert isinstance(exc, hpo.StorageUnavailableError)
    else:  # pragma: no cover - the test fails below
        raise AssertionError("the outage was not translated")


def test_reading_a_study_that_never_ran_creates_no_file(tmp_path: Path) -> None:
    """``read_confirmation`` and ``open_study(create=False)`` made an empty database."""
    import pytest

    from tests.conftest import analytic_study

    cfg = hpo.validate_study_data(analytic_study(storage=f"sqlite:///{tmp_path / 'never.db'}"))
    assert hpo.read_confirmation(cfg) is None
    with pytest.raises(hpo.ConfigError, match="study 'analytic' not found"):
        hpo.open_study(cfg, create=False)
    assert not (tmp_path / "never.db").exists()
    other = tmp_path / "other.db"
    optuna.create_study(study_name="someone-else", storage=f"sqlite:///{other}")
    cfg = hpo.validate_study_data(analytic_study(storage=f"sqlite:///{other}"))
    with pytest.raises(hpo.ConfigError, match="not found"):  # was a raw KeyError
        hpo.open_study(cfg, create=False)


def test_a_study_from_text_or_a_mapping_takes_overrides() -> None:
    from tests.conftest import analytic_study

    data = analytic_study()
    from_mapping = hpo.load_study_config(data, ["budget.n_trials=3"])
    assert from_mapping.budget.n_trials == 3
    assert data["budget"] == {"n_trials": 12}, "the caller's mapping is left as it was"
    import yaml

    text = yaml.safe_dump(data)  # no is_text: a line break means text, not a file name
    assert hpo.load_study_config(text, ["budget.n_trials=4"]).budget.n_trials == 4


def test_a_config_a_script_built_is_held_to_the_files_rules(tmp_path: Path) -> None:
    """A bad copy ran its whole budget into failed trials (6 of 6), or a low > high space."""
    import pytest

    from tests.conftest import analytic_study

    cfg = hpo.validate_study_data(analytic_study(storage=f"sqlite:///{tmp_path / 'a.db'}"))
    trainer = cfg.trainer.model_copy(update={"params": {"epochs": 2, "bogus": 1}})
    with pytest.raises(hpo.ConfigError, match=r"trainer\.params\.bogus: unknown parameter"):
        hpo.run_study(cfg.model_copy(update={"trainer": trainer}))
    flipped = cfg.space["x"].model_copy(update={"low": 2.0, "high": -2.0})
    with pytest.raises(hpo.ConfigError, match=r"space\.x: low \(2\.0\) must be <= high"):
        hpo.run_study(cfg.model_copy(update={"space": {**cfg.space, "x": flipped}}))
    assert not (tmp_path / "a.db").exists() or not optuna.get_all_study_names(
        f"sqlite:///{tmp_path / 'a.db'}"
    )
