"""The public surface of ``hpo``: what a script needs for every CLI command, imported lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

import hpo
from hpo.storages import open_storage


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


def test_a_config_loaded_from_a_relative_path_keeps_its_storage_after_chdir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the path was resolved at each use: after ``os.chdir`` a second study began
    in a new database beside the new folder."""
    from tests.conftest import analytic_study

    (tmp_path / "studies").mkdir()
    (tmp_path / "elsewhere").mkdir()
    data = analytic_study(budget={"n_trials": 1})
    (tmp_path / "studies" / "s.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    cfg = hpo.load_study_config("studies/s.yaml")
    hpo.run_study(cfg)
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert hpo.study_status(cfg).counts.get("complete") == 1
    assert not (tmp_path / "elsewhere" / "studies").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-5", "x"])
def test_a_retry_budget_that_is_no_finite_number_is_the_default_or_none(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """``nan`` retried forever ("retrying for up to nan s")."""
    from hpo.storages._outages import DEFAULT_STORAGE_RETRY_S, storage_retry_seconds

    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", value)
    assert storage_retry_seconds() == (0.0 if value == "-5" else DEFAULT_STORAGE_RETRY_S)


def test_braces_in_a_storage_url_are_taken_literally(tmp_path: Path) -> None:
    """Optuna ``str.format``s the URL: ``b{x}`` was ``KeyError: 'x'``, a traceback."""
    folder = tmp_path / "b{x}"
    folder.mkdir()
    storage = open_storage(f"sqlite:///{folder / 'hpo.db'}")
    assert storage.get_all_studies() == []
    assert (folder / "hpo.db").is_file()


def test_a_driver_refusing_the_urls_options_is_one_line(tmp_path: Path) -> None:
    """pymysql's ``TypeError`` for ``?ssl_mode=`` was a traceback (``hpo validate`` passed)."""
    pytest.importorskip("pymysql")
    with pytest.raises(hpo.StorageError) as info:
        open_storage("mysql+pymysql://root@127.0.0.1:1/test?ssl_mode=REQUIRED")
    (line,) = info.value.problems
    assert line.startswith("storage: cannot open mysql+pymysql://root@127.0.0.1:1/test?")
    assert "ssl_mode" in line
