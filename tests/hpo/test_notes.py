"""The git commit a trial note records, read from folders that may come from anyone.

Real git repositories whose own config names programs: the note must run none of them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from hpo.notes import git_commit

SETUP = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "core.fsmonitor=false"]


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A committed repository (``f.txt``) and its HEAD, with this machine's git config out."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    folder = tmp_path / "downloaded-study"
    subprocess.run([*SETUP, "init", "-q", str(folder)], check=True)
    (folder / "f.txt").write_text("x\n")
    subprocess.run([*SETUP, "add", "f.txt"], cwd=folder, check=True)
    subprocess.run([*SETUP, "commit", "-qm", "c"], cwd=folder, check=True)
    head = subprocess.run(
        [*SETUP, "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
    ).stdout.strip()
    return folder, head


def _commit(folder: Path) -> str | None:
    """:func:`git_commit` now, not what it cached for the folder earlier in the test."""
    git_commit.cache_clear()
    return git_commit(str(folder))


def _config(folder: Path, key: str, value: str) -> None:
    subprocess.run(["git", "config", key, value], cwd=folder, check=True)


def test_a_repository_fsmonitor_is_not_run(repo: tuple[Path, str], tmp_path: Path) -> None:
    """``git status`` ran core.fsmonitor from the study folder's .git/config: any code."""
    folder, head = repo
    marker = tmp_path / "PWNED"
    _config(folder, "core.fsmonitor", f"touch {marker}; false")
    assert _commit(folder) == head
    (folder / "f.txt").write_text("changed\n")
    assert _commit(folder) == f"{head}+dirty"
    assert not marker.exists(), "the repository's fsmonitor program ran"


def test_a_repository_clean_filter_is_not_run(repo: tuple[Path, str], tmp_path: Path) -> None:
    """A clean filter runs when git hashes a changed file: the check is skipped instead."""
    folder, head = repo
    marker = tmp_path / "FILTERED"
    (folder / ".git" / "info").mkdir(exist_ok=True)
    (folder / ".git" / "info" / "attributes").write_text("* filter=evil\n")
    _config(folder, "filter.evil.clean", f"touch {marker}; cat")
    (folder / "f.txt").write_text("y\n")  # the same size: only hashing it tells
    commit = _commit(folder)
    assert not marker.exists(), "the repository's clean filter ran"
    assert commit == f"{head}+unchecked"


def test_a_repository_hook_is_not_run(repo: tuple[Path, str], tmp_path: Path) -> None:
    """Refreshing the index wrote it and ran the repository's post-index-change hook."""
    folder, head = repo
    marker = tmp_path / "HOOKED"
    hook = folder / ".git" / "hooks" / "post-index-change"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    (folder / "f.txt").write_text("x\n")  # same content, new mtime: the index is stale
    commit = _commit(folder)
    assert not marker.exists(), "the repository's hook ran"
    assert commit == head


def test_clean_and_dirty_work_trees(repo: tuple[Path, str]) -> None:
    folder, head = repo
    assert _commit(folder) == head
    (folder / "untracked.txt").write_text("not part of the commit's code\n")
    assert _commit(folder) == head, "untracked files do not make it dirty"
    (folder / "f.txt").write_text("changed\n")
    assert _commit(folder) == f"{head}+dirty"
