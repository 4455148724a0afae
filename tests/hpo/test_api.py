"""The public surface of ``hpo``: what a script needs for every CLI command, imported lazily."""

from __future__ import annotations

import subprocess
import sys

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
