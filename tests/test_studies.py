"""Every ready study in ``studies/`` validates, and the runnable ones pass a shortened run."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

STUDIES = sorted((Path(__file__).resolve().parent.parent / "studies").glob("*.yaml"))
HPO = [sys.executable, "-m", "hpo.cli"]


def _shortened(cfg_path: Path) -> list[str]:
    """``--set`` arguments for the CI smoke run: 1 trial x 2 epochs, small synthetic data."""
    # read, not validated: a study's input may exist only in the folder it runs in
    params = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))["trainer"].get("params", {})
    sets = ["budget.n_trials=1", "trainer.params.epochs=2"]
    if params.get("dataset", "BasicMotions") == "synthetic_har":
        sets += ["trainer.params.synthetic_n_train=400", "trainer.params.synthetic_n_test=120"]
    return [arg for s in sets for arg in ("--set", s)]


def _run(study: Path, workdir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    copy = workdir / study.name
    shutil.copy(study, copy)
    return subprocess.run(
        [*HPO, "run", str(copy), *_shortened(copy), *extra],
        capture_output=True,
        text=True,
        cwd=workdir,
        timeout=600,
    )


def _prepare_alignment_data(workdir: Path) -> list[str]:
    """loss_comparison reads an .npz its header says to make first: make a small one."""
    out = workdir / "data" / "align_har.npz"
    cmd = [sys.executable, "-m", "trainers.align", str(out), "--n-train", "300", "--n-test", "80"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    return []


def _prepare_pretrained_encoder(workdir: Path) -> list[str]:
    """ssl_finetune fine-tunes what ssl_pretrain_finetune saved: run that one first."""
    pretrain = STUDIES[0].parent / "ssl_pretrain_finetune.yaml"
    result = _run(pretrain, workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    encoders = sorted((workdir / "runs" / "ssl_pretrain_finetune").glob("*/encoder.pt"))
    assert encoders, "the pretraining study saved no encoder"
    return ["--set", f"trainer.params.init_from={encoders[0]}"]


# Studies whose header says to produce an input first; the smoke run does just that.
PREPARE = {"loss_comparison": _prepare_alignment_data, "ssl_finetune": _prepare_pretrained_encoder}


def test_studies_exist() -> None:
    names = {p.stem for p in STUDIES}
    assert {"quickstart", "crossformer_har", "regularization"} <= names


# Until that input is made, validation names it (a run would fail every trial).
MISSING_INPUT = {
    "loss_comparison": "error: trainer.params.dataset: mode: align: no file data/align_har.npz",
    "ssl_finetune": "error: trainer.params.init_from: no encoder checkpoint at runs/",
}


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_validates(study: Path, tmp_path: Path) -> None:
    text = study.read_text()
    assert text.startswith("#"), "each study starts with a header comment saying what it answers"
    assert "Runtime" in text or "runtime" in text
    result = subprocess.run(
        [*HPO, "validate", str(study)], capture_output=True, text=True, cwd=tmp_path
    )
    if study.stem in MISSING_INPUT:
        assert result.returncode == 2, result.stdout
        assert result.stderr.splitlines() == [
            line
            for line in result.stderr.splitlines()
            if line.startswith(MISSING_INPUT[study.stem])
        ]
        assert result.stderr.strip(), "nothing said"
        return
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_shortened_run(study: Path, tmp_path: Path) -> None:
    """The CI smoke run: 1 trial x 2 epochs, storage in a temp folder.

    Synthetic HAR is shrunk too so the smoke run stays within CI's time on 2 cores.
    """
    extra = PREPARE[study.stem](tmp_path) if study.stem in PREPARE else []
    result = _run(study, tmp_path, *extra)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "hpo.db").exists()
