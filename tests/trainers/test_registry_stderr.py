"""A trainer loads whatever stderr is: closed (``2>&-``) or full (``2>/dev/full``).

What a trainer module prints while importing is passed on to stderr; writing it must not
turn a trainer that imported into "cannot load trainer" for every command.
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import analytic_study
from tests.hpo.test_workers import HPO, hpo_env
from trainers.registry import resolve_trainer

NEEDS_DEV_FULL = pytest.mark.skipif(
    not Path("/dev/full").exists(), reason="needs Linux's /dev/full"
)


@pytest.fixture
def chatty_trainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh trainer module that prints to stderr when imported."""
    name = f"chatty_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(
        "import sys\n"
        "print('chatty: importing', file=sys.stderr)\n"
        "def train(params, reporter=None):\n"
        "    return {'score': 1.0}\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:train"
    sys.modules.pop(name, None)


def test_a_trainer_loads_with_stderr_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", None)  # what Python gives a process started 2>&-
    assert resolve_trainer("analytic").name == "analytic"


def test_a_chatty_trainer_loads_with_stderr_closed(
    chatty_trainer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stderr", None)
    assert resolve_trainer(chatty_trainer).fn({}, None) == {"score": 1.0}


@NEEDS_DEV_FULL
def test_a_chatty_trainer_loads_with_stderr_full(
    chatty_trainer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # write-through, as Python's stderr under PYTHONUNBUFFERED: every write fails at once
    with io.TextIOWrapper(io.FileIO("/dev/full", "w"), write_through=True) as full:
        monkeypatch.setattr(sys, "stderr", full)
        assert resolve_trainer(chatty_trainer).fn({}, None) == {"score": 1.0}


def _study(tmp_path: Path) -> Path:
    path = tmp_path / "a.yaml"
    path.write_text(yaml.safe_dump(analytic_study("a"), sort_keys=False), encoding="utf-8")
    return path


def test_validate_with_stderr_closed(tmp_path: Path) -> None:
    """``hpo validate a.yaml 2>&-`` exited 2 ("cannot load trainer", unseen)."""
    result = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh", *HPO, "validate", str(_study(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        env=hpo_env(),
    )
    assert result.returncode == 0
    assert "a: valid" in result.stdout


@NEEDS_DEV_FULL
def test_validate_with_stderr_full(tmp_path: Path) -> None:
    """``hpo validate a.yaml 2>/dev/full`` exited 1: an empty write to stderr failed."""
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [*HPO, "validate", str(_study(tmp_path))],
            stdout=subprocess.PIPE,
            stderr=full,
            text=True,
            timeout=120,
            env=hpo_env(),  # unbuffered, as the reviewer ran it: every write reaches the disk
        )
    assert result.returncode == 0
    assert "a: valid" in result.stdout
