"""The supervisor's combined progress: study counts from the storage plus one line per worker.

Workers never draw anything themselves; the supervisor polls the shared storage about
once a second and redraws (a live table on a terminal, plain lines in a log).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType

from optuna.trial import FrozenTrial, TrialState
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpo.config import StudyConfig
from hpo.progress import _fmt_seconds, describe_trial
from hpo.workers.budget import budget_state, is_replaced, replaced_numbers
from hpo.workers.identity import SLOT_ATTR, owner_key


@dataclass
class WorkerRow:
    """What the display shows for one worker slot."""

    slot: int
    label: str
    pid: int | None
    state: str
    restarts: int


class SupervisorDisplay:
    """Renders the study and its workers; ``update`` is called with fresh trials."""

    def __init__(self, cfg: StudyConfig, console: Console) -> None:
        self.cfg = cfg
        self.console = console
        self.started = time.perf_counter()
        self.trials: list[FrozenTrial] = []
        self.workers: list[WorkerRow] = []
        self._seen: set[int] = set()
        self._live: Live | None = None

    def __enter__(self) -> SupervisorDisplay:
        if self.console.is_terminal:
            self._live = Live(self._render(), console=self.console, refresh_per_second=2)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.update(self._render())
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def prime(self, trials: list[FrozenTrial]) -> None:
        """Trials that were finished before this run: not printed again."""
        self._seen.update(t.number for t in trials if t.state.is_finished())
        self.trials = trials

    def event(self, message: str) -> None:
        """A line about a worker (started, died, restarted), printed above the live view."""
        self.console.print(message, highlight=False, markup=False, soft_wrap=True)

    def update(self, trials: list[FrozenTrial], workers: list[WorkerRow]) -> None:
        """Refresh with the study's trials and the workers' states."""
        self.trials = trials
        self.workers = workers
        if self._live is not None:
            self._live.update(self._render())
            return
        replaced = replaced_numbers(trials)
        for trial in trials:
            if trial.number in self._seen or not trial.state.is_finished():
                continue
            self._seen.add(trial.number)
            if is_replaced(trial, replaced) and trial.user_attrs.get("fail_reason") == "surplus":
                continue
            slot = trial.user_attrs.get(SLOT_ATTR)
            who = f" [worker {slot}]" if slot is not None else ""
            self.console.print(
                f"trial {trial.number} {describe_trial(trial)}{who}  {self.headline()}",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    def headline(self) -> str:
        """``12/40 done: 9 complete, 2 pruned, 1 failed, 4 running``."""
        st = budget_state(self.trials)
        replaced = replaced_numbers(self.trials)
        kept = [t for t in self.trials if not is_replaced(t, replaced)]
        counts = {
            s: sum(1 for t in kept if t.state == s)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        total = self.cfg.budget.n_trials
        done = f"{st.finished}/{total}" if total else str(st.finished)
        return (
            f"{done} done: {counts[TrialState.COMPLETE]} complete, "
            f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
            f"{st.running} running, {st.waiting} queued, {st.replaced} retried"
        )

    def _best(self) -> str:
        complete = [t for t in self.trials if t.state == TrialState.COMPLETE and t.values]
        if not complete:
            return "-"
        if len(self.cfg.objective.names) > 1:
            return f"{len(complete)} complete (multi-objective)"
        sign = -1.0 if self.cfg.objective.study_directions[0] == "minimize" else 1.0
        best = max(complete, key=lambda t: sign * t.values[0])
        return f"{best.values[0]:.4g} (#{best.number})"

    def _render(self) -> Group:
        elapsed = _fmt_seconds(time.perf_counter() - self.started)
        head = Text.assemble(
            ("trials ", "bold"),
            self.headline(),
            "  best ",
            (self._best(), "bold cyan"),
            f"  elapsed {elapsed}",
        )
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("worker", "device", "pid", "state", "restarts", "trial"):
            table.add_column(column)
        running = {
            owner_key(t): t for t in self.trials if t.state == TrialState.RUNNING and owner_key(t)
        }
        for row in self.workers:
            trial = next(
                (t for k, t in running.items() if k and k.endswith(f":{row.pid}")),
                None,
            )
            current = "-"
            if trial is not None:
                current = (
                    f"#{trial.number} step {trial.last_step if trial.last_step is not None else 0}"
                )
            table.add_row(
                str(row.slot),
                row.label,
                str(row.pid or "-"),
                row.state,
                str(row.restarts),
                current,
            )
        return Group(head, table)
