"""The Markdown note each trial leaves in optuna-dashboard: enough to reproduce or explain it.

A note answers the questions asked of a trial weeks later: which parameters and seed,
which code (git commit), which device, how long, and why it was pruned or failed.
"""

from __future__ import annotations

import functools
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo.objective import PRUNED_AT_ATTR
from hpo.storages import mask_url

_HIDDEN_PARAMS = {"artifact_dir"}
_MAX_MESSAGE_CHARS = 1200


_GIT = (
    "git",
    "--no-pager",
    "--no-optional-locks",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
)
"""git as the note runs it in a folder it did not make (a downloaded study may hold a
``.git``): no fsmonitor program, no hooks, no index written back."""
_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "GIT_NO_LAZY_FETCH": "1", "GIT_OPTIONAL_LOCKS": "0"}
_TRUSTED_SCOPES = frozenset({"system", "global", "command"})
"""Config scopes the user wrote; ``local`` and ``worktree`` (and their includes) came with
the repository."""
_PROGRAM_KEYS = r"^(filter\..*|extensions\.partialclone|remote\..*\.promisor)$"
"""Repository config that would make reading the work tree run a program: a clean filter
(``.gitattributes`` picks it per file), or a lazy fetch of a partial clone's objects
(which may run ``core.sshCommand``)."""


def _git(directory: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*_GIT, *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=5,
        env={**os.environ, **_GIT_ENV},
    )


@functools.lru_cache(maxsize=16)
def git_commit(directory: str) -> str | None:
    """``HEAD`` of the repository holding ``directory`` (``+dirty`` when tracked files differ
    from it, ``+unchecked`` when that could not be checked safely), or ``None`` outside git;
    computed once per folder and process.

    The folder is the study file's, which may come from anyone: git must run nothing that
    its ``.git/config``, hooks or ``.gitattributes`` name. ``git status`` ran
    ``core.fsmonitor`` (arbitrary code). So: ``rev-parse HEAD`` reads refs only; the
    dirty check is ``git diff --quiet HEAD`` with fsmonitor and hooks off (``-c`` beats the
    repository's config), no index write (``--no-optional-locks``), no external diff or
    textconv, no submodule recursion (a submodule's own config is just as foreign). Clean
    filters cannot be turned off per call, so when the repository's own config defines any
    (or is a partial clone, whose missing objects a fetch would get) the check is skipped.
    System and global config are the user's and stay in force.
    """
    try:
        rev = _git(directory, "rev-parse", "--verify", "--quiet", "HEAD")
    except (OSError, subprocess.SubprocessError):  # no git here, or it hung
        return None
    head = rev.stdout.strip() if rev.returncode == 0 else ""
    if not head:
        return None
    try:
        if _runs_programs(directory):
            return f"{head}+unchecked"
        diff = _git(
            directory,
            "diff",
            "--quiet",
            "--no-ext-diff",
            "--no-textconv",
            "--ignore-submodules=all",
            "HEAD",
            "--",
        )
    except (OSError, subprocess.SubprocessError):  # a huge work tree past the timeout
        return f"{head}+unchecked"
    if diff.returncode == 0:
        return head
    return f"{head}+dirty" if diff.returncode == 1 else f"{head}+unchecked"


def _runs_programs(directory: str) -> bool:
    """Whether the repository's own config could make reading its files run a program
    (True when that cannot be told: a git without ``--show-scope``, a broken config)."""
    found = _git(directory, "config", "--show-scope", "--get-regexp", _PROGRAM_KEYS)
    if found.returncode not in (0, 1):  # 1: no such key
        return True
    scopes = {line.split("\t", 1)[0] for line in found.stdout.splitlines() if line.strip()}
    return not scopes <= _TRUSTED_SCOPES


def device_name(params: Mapping[str, Any]) -> str:
    """The GPU's name when this process has used CUDA, else the requested device or ``cpu``.

    torch is only consulted when the trainer already imported it, and only an initialised
    CUDA context is asked (asking would otherwise create one on a GPU nobody used).
    """
    requested = str(params.get("device") or "cpu")
    torch = sys.modules.get("torch")
    if torch is None:
        return requested
    try:
        cuda = torch.cuda
        if cuda.is_available() and cuda.is_initialized():
            return f"{cuda.get_device_name(cuda.current_device())} ({requested})"
    except Exception:  # a broken driver must not cost the note
        pass
    return requested


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines.extend("| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows)
    return lines


def render_note(
    *,
    number: int,
    state: str,
    params: Mapping[str, Any],
    sampled: Mapping[str, Any],
    result: Mapping[str, Any] | None,
    history: Sequence[tuple[int, Mapping[str, float]]],
    user_attrs: Mapping[str, Any],
    device: str,
    commit: str | None,
    checkpoint: str | None = None,
) -> str:
    """The note's Markdown body."""
    lines = [f"## Trial {number}: {state.lower()}", ""]
    outcome = _outcome(state, user_attrs)
    if outcome:
        lines += [*outcome, ""]
    rows = [
        (name, value, _source(name, sampled))
        for name, value in sorted(params.items())
        if name not in _HIDDEN_PARAMS
    ]
    lines += ["### Parameters", "", *_table(("parameter", "value", "source"), rows), ""]
    lines += _metrics_section(result, history)
    run_rows: list[tuple[str, Any]] = [("device", device)]
    if "wall_seconds" in user_attrs:
        run_rows.append(("wall time", f"{float(user_attrs['wall_seconds']):.1f} s"))
    run_rows.append(("seed", user_attrs.get("seed", params.get("seed", "?"))))
    run_rows.append(("epochs reported", len(history)))
    run_rows.append(("code", f"`{commit}`" if commit else "not in a git repository"))
    run_rows.append(("host", platform.node() or "?"))
    if checkpoint:
        run_rows.append(("checkpoint", checkpoint))
    lines += ["### Run", "", *_table(("item", "value"), run_rows), ""]
    return "\n".join(lines)


def _source(name: str, sampled: Mapping[str, Any]) -> str:
    if name in sampled:
        return "sampled"
    return "per-trial seed" if name == "seed" else "fixed"


def _outcome(state: str, user_attrs: Mapping[str, Any]) -> list[str]:
    if state == "PRUNED":
        step = user_attrs.get(PRUNED_AT_ATTR)
        reason = user_attrs.get("prune_reason", "pruned")
        return [f"**Pruned** at epoch {step}: {reason}"]
    if state == "FAIL":
        reason = user_attrs.get("fail_reason", "unknown")
        message = mask_url(str(user_attrs.get("fail_message", "")).strip())[-_MAX_MESSAGE_CHARS:]
        out = [f"**Failed** ({reason})"]
        if message:
            out += ["", "```text", message.replace("```", "'''"), "```"]
        hook_error = user_attrs.get("hook_error")
        if hook_error:
            out += ["", f"Hook error: {mask_url(str(hook_error))}"]
        return out
    return []


def _metrics_section(
    result: Mapping[str, Any] | None, history: Sequence[tuple[int, Mapping[str, float]]]
) -> list[str]:
    last = dict(history[-1][1]) if history else {}
    final = {k: v for k, v in (result or {}).items() if isinstance(v, int | float)}
    names = list(dict.fromkeys([*final, *last]))
    if not names:
        return ["### Metrics", "", "No metrics were reported.", ""]
    step = history[-1][0] if history else None
    rows = [(n, final.get(n, ""), last.get(n, "")) for n in names]
    header = (
        "metric",
        "final result",
        f"last epoch ({step})" if step is not None else "last epoch",
    )
    return ["### Metrics", "", *_table(header, rows), ""]


def note_directory(source: str | None) -> str:
    """Folder whose git commit describes the code: the study file's, else the working dir."""
    return str(Path(source).resolve().parent) if source else str(Path.cwd())
