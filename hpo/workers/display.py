"""The supervisor's combined progress: study counts from the storage plus one line per worker.

Workers never draw anything themselves; the supervisor polls the shared storage about
once a second and redraws (a live table on a terminal, plain lines in a log). Drawing is
best effort: a broken pipe or a full disk turns the display off, never the supervisor
(whose workers it would otherwise kill mid-trial).
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
from hpo.console import display_line, display_write
from hpo.progress import _fmt_seconds, describe_trial
from hpo.workers.budget import SURPLUS_ATTR, budget_state, is_replaced, replaced_numbers
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
        if self.console.is_terminal and not self.console.quiet:
            live = Live(self._render(), console=self.console, refresh_per_second=2)
            self._live = live
            display_write(self.console, live.__enter__)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.update(self._render())
            display_write(self.console, lambda: live.__exit__(exc_type, exc, tb))

    def prime(self, trials: list[FrozenTrial]) -> None:
        """Trials that were finished before this run: not printed again."""
        self._seen.update(t.number for t in trials if t.state.is_finished())
        self.trials = trials

    def event(self, message: str) -> None:
        """A line about a worker (started, died, restarted), printed above the live view.

        Also called by the threads relaying workers' output: it must never raise, or a
        relay would stop reading and its worker block on a full pipe.
        """
        display_line(self.console, message)

    def update(self, trials: list[FrozenTrial], workers: list[WorkerRow]) -> None:
        """Refresh with the study's trials and the workers' states."""
        self.trials = trials
        self.workers = workers
        if self._live is not None:
            self._live.update(self._render())  # drawn by Live's thread
            return
        for trial in trials:
            if trial.number in self._seen or not trial.state.is_finished():
                continue
            self._seen.add(trial.number)
            if trial.system_attrs.get(SURPLUS_ATTR) or self.console.quiet:
                continue  # a surplus start never ran; a lost display prints nothing
            slot = trial.user_attrs.get(SLOT_ATTR)
            who = f" [worker {slot}]" if slot is not None else ""
            display_line(
                self.console,
                f"trial {trial.number} {describe_trial(trial)}{who}  {self.headline()}",
            )

    def headline(self) -> str:
        """``12/40 done: 9 complete, 2 pruned, 1 failed, 4 running, 0 queued, 1 retried``.

        Retried and surplus trials are told apart as in the run's summary (``retried /
        surplus``): a surplus start is no retry. Surplus is shown only when there is some.
        """
        st = budget_state(self.trials)
        replaced = replaced_numbers(self.trials)
        kept = [t for t in self.trials if not is_replaced(t, replaced)]
        counts = {
            s: sum(1 for t in kept if t.state == s)
            for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        }
        surplus = sum(1 for t in self.trials if t.system_attrs.get(SURPLUS_ATTR))
        total = self.cfg.budget.n_trials
        done = f"{st.finished}/{total}" if total else str(st.finished)
        return (
            f"{done} done: {counts[TrialState.COMPLETE]} complete, "
            f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed, "
            f"{st.running} running, {st.waiting} queued, {st.replaced - surplus} retried"
            + (f", {surplus} surplus" if surplus else "")
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
