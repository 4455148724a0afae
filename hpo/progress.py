"""Live terminal progress for a running study (rich), fed by an Optuna callback."""

from __future__ import annotations

import time
from types import TracebackType

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from hpo.config import StudyConfig
from hpo.console import BestEffortConsole, display_line, display_write
from hpo.objective import FAIL_MESSAGE, FAIL_REASON, PRUNED_AT_ATTR
from hpo.workers.budget import SURPLUS_ATTR, BudgetTracker


def describe_trial(trial: FrozenTrial) -> str:
    """``complete 0.91``, ``pruned at step 4``, ``fail (nan)``: a finished trial in a line.

    A multi-objective trial keeps no curve of its own (its pruning companion does), so
    its step comes from the ``pruned_at_step`` attribute the objective writes.
    """
    state = trial.state.name.lower()
    if trial.state == TrialState.COMPLETE and trial.values:
        state += " " + ", ".join(f"{v:.4g}" for v in trial.values)
    elif trial.state == TrialState.PRUNED:
        step = (
            trial.last_step if trial.last_step is not None else trial.user_attrs.get(PRUNED_AT_ATTR)
        )
        state += f" at step {step}" if step is not None else ""
    reason = trial.user_attrs.get(FAIL_REASON)
    if not reason:
        return state
    message = str(trial.user_attrs.get(FAIL_MESSAGE) or "").strip().splitlines()
    # the first line says what went wrong; the rest (and -v's log) is detail
    why = f": {_clip(message[0], 160)}" if message and trial.state == TrialState.FAIL else ""
    return f"{state} ({reason}){why}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt_seconds(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressDisplay:
    """One line of live status: trials done/pruned/failed, best so far, elapsed and ETA."""

    def __init__(self, cfg: StudyConfig, console: Console | None = None) -> None:
        self.cfg = cfg
        self.console = console or BestEffortConsole(stderr=True)
        self.started = time.perf_counter()
        self.counts = {"complete": 0, "pruned": 0, "failed": 0}
        self.done_here = 0
        self.total_done = 0
        self.best: str = "-"
        self._live: Live | None = None
        self._tracker = BudgetTracker()
        self._best_at = -1  # COMPLETE trials seen when ``best`` was last looked up

    def __enter__(self) -> ProgressDisplay:
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

    def _render(self) -> Text:
        n_total = self.cfg.budget.n_trials
        elapsed = time.perf_counter() - self.started
        total = f"{self.total_done}/{n_total}" if n_total else str(self.total_done)
        eta = "-"
        if n_total and self.done_here:
            per_trial = elapsed / self.done_here
            eta = _fmt_seconds(per_trial * max(n_total - self.total_done, 0))
        elif self.cfg.budget.timeout:
            eta = _fmt_seconds(self.cfg.budget.timeout - elapsed)
        return Text.assemble(
            ("trials ", "bold"),
            total,
            "  complete ",
            (str(self.counts["complete"]), "green"),
            "  pruned ",
            (str(self.counts["pruned"]), "yellow"),
            "  failed ",
            (str(self.counts["failed"]), "red"),
            "  best ",
            (self.best, "bold cyan"),
            f"  elapsed {_fmt_seconds(elapsed)}  eta {eta}",
        )

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Optuna callback: refresh counts after each finished trial of this worker.

        A surplus start (it began after the budget was claimed and never ran) is neither
        shown nor counted, as the supervisor's display hides it. Writing is best effort:
        a broken pipe or a full disk turns the display off, never the study.
        """
        if trial.system_attrs.get(SURPLUS_ATTR):
            return
        self.done_here += 1
        tracker = self._tracker.update(study.get_trials(deepcopy=False))
        counts = tracker.finished_counts()
        self.counts = {
            "complete": counts[TrialState.COMPLETE],
            "pruned": counts[TrialState.PRUNED],
            "failed": counts[TrialState.FAIL],
        }
        self.total_done = sum(self.counts.values())
        if self.counts["complete"] and tracker.n_complete_seen != self._best_at:
            # The best trial can only change when a trial completes.
            self._best_at = tracker.n_complete_seen
            if len(study.directions) == 1:
                best = study.best_trial
                self.best = f"{best.values[0]:.4g} (#{best.number})"
            else:
                self.best = f"{len(study.best_trials)} on the Pareto front"
        if self._live is not None:
            self._live.update(self._render())  # drawn by Live's thread, guarded by the console
        else:
            display_line(
                self.console,
                f"trial {trial.number} {describe_trial(trial)}  [{self.total_done}"
                f"{'/' + str(self.cfg.budget.n_trials) if self.cfg.budget.n_trials else ''}, "
                f"best {self.best}]",
            )


def summary_table(title: str, rows: dict[str, object]) -> Table:
    """Two-column table used for the final summary and ``hpo status``."""
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("key", style="bold")
    table.add_column("value")
    for key, value in rows.items():  # Text, not markup: names and values are user text
        table.add_row(Text(key), Text(str(value)))
    return table
