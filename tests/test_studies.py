"""Every ready study in ``studies/`` validates, and the runnable ones pass a shortened run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpo import load_study_config

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"))
HPO = [sys.executable, "-m", "hpo.cli"]

# Studies that need something produced by another study first (a pretrained checkpoint).
NEEDS_INPUT = {"ssl_finetune"}


def test_studies_exist() -> None:
    names = {p.stem for p in STUDIES}
    assert {"quickstart", "crossformer_har", "regularization"} <= names


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_validates(study: Path) -> None:
    result = subprocess.run([*HPO, "validate", str(study)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = study.read_text()
    assert text.startswith("#"), "each study starts with a header comment saying what it answers"
    assert "Runtime" in text or "runtime" in text


@pytest.mark.slow
@pytest.mark.parametrize(
    "study", [s for s in STUDIES if s.stem not in NEEDS_INPUT], ids=lambda p: p.stem
)
def test_study_shortened_run(study: Path, tmp_path: Path) -> None:
    """The CI smoke run: 2 trials x 2 epochs, storage in a temp folder.

    Synthetic HAR is shrunk too so the smoke run stays within CI's time on 2 cores.
    """
    copy = tmp_path / study.name
    shutil.copy(study, copy)
    cfg = load_study_config(copy)
    sets = ["budget.n_trials=2", "trainer.params.epochs=2"]
    if cfg.trainer.params.get("dataset", "BasicMotions") == "synthetic_har":
        sets += ["trainer.params.synthetic_n_train=400", "trainer.params.synthetic_n_test=120"]
    args = [arg for s in sets for arg in ("--set", s)]
    result = subprocess.run(
        [*HPO, "run", str(copy), *args], capture_output=True, text=True, cwd=tmp_path, timeout=600
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "hpo.db").exists()
