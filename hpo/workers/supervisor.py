"""The parent of a machine's worker processes: start, watch, restart, stop, summarize.

Each slot of a :class:`~hpo.workers.gpus.WorkerPlan` runs ``python -m
hpo.workers.worker_main`` with its own ``CUDA_VISIBLE_DEVICES``. The supervisor never
runs trials; it

- fails and re-queues the RUNNING trials of a worker that dies (at once, by pid, so
  SQLite studies need no heartbeat) and restarts it, at most ``workers.max_restarts``
  times per slot. A worker that exits 0 with a trial still RUNNING, or with the budget
  unfinished while nobody asked it to stop (a trainer's ``os._exit(0)``), died too;
- forwards the first Ctrl-C / SIGTERM to every worker as SIGTERM (each records its
  trial as interrupted and queues it again), and SIGKILLs whatever is left after
  ``stop_grace`` seconds or a second signal, recovering those trials itself;
- polls the storage about once a second for one combined progress display.

The supervisor's own storage calls ride out a database restart like the workers' do
(see :mod:`hpo.storages`); a worker that gave up on an unreachable database (exit
status 75) is restarted with the same backoff, and its trial is queued again as
``storage_lost`` (not counted as a crash). Recovery that cannot reach the database yet
is retried on every refresh until it can.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.console import Console

from hpo.config import StudyConfig
from hpo.console import BestEffortConsole
from hpo.cuda_errors import CUDA_BROKEN_EXIT
from hpo.runner import RunSummary, grace_period, open_study, summarize
from hpo.samplers import SAMPLERS_THAT_STOP
from hpo.storages import (
    STORAGE_UNAVAILABLE_EXIT,
    mask_url,
    storage_retry_seconds,
    storage_url,
)
from hpo.workers.budget import SURPLUS_ATTR, budget_state
from hpo.workers.display import SupervisorDisplay, WorkerRow
from hpo.workers.gpus import WorkerPlan, WorkerSlot, slot_env, threads_per_worker
from hpo.workers.identity import MACHINE_ATTR, machine_token, owner_key
from hpo.workers.recovery import (
    INTERRUPTED,
    STORAGE_LOST,
    WORKER_DIED,
    recover_orphans,
    recover_worker,
    requeue_lost_retries,
)
from hpo.workers.unowned import recover_abandoned_unowned, single_machine_storage
from hpo.workers.worker_main import DEADLINE_ENV, SUPERVISOR_ENV

logger = logging.getLogger(__name__)


@dataclass
class WorkerProcess:
    """One slot's current process and its history."""

    slot: WorkerSlot
    proc: subprocess.Popen[str] | None = None
    restarts: int = 0
    state: str = "starting"
    exit_codes: list[int] = field(default_factory=list)
    reader: threading.Thread | None = None
    restart_at: float | None = None
    held_since: float | None = None
    """When this worker's restart was first held back for a pending recovery."""

    @property
    def pid(self) -> int | None:
        """Pid of the current (or last) process."""
        return self.proc.pid if self.proc is not None else None


@dataclass
class SupervisorResult:
    """What a supervised run did."""

    summary: RunSummary
    interrupted: bool
    restarts: int
    recovered: list[int]
    notes: list[str]
    exit_codes: dict[int, list[int]]
    unfinished: bool = False
    """Workers kept dying and the budget was not reached in the time given."""


def _signal_name(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    if returncode == CUDA_BROKEN_EXIT:
        return f"CUDA error, exit status {returncode}"
    return f"exit status {returncode}"


class Supervisor:
    """Runs a :class:`WorkerPlan` against one study until its budget or timeout is used."""

    def __init__(
        self,
        cfg: StudyConfig,
        study_file: str | Path,
        plan: WorkerPlan,
        *,
        overrides: Sequence[str] = (),
        force: bool = False,
        console: Console | None = None,
        stop_grace: float = 20.0,
        poll_interval: float = 0.2,
        refresh_interval: float = 1.0,
        verbose: int = 0,
    ) -> None:
        self.cfg = cfg
        self.study_file = Path(study_file).resolve()
        self.plan = plan
        self.overrides = list(overrides)
        self.force = force
        self.console = console or BestEffortConsole(stderr=True)
        self.stop_grace = stop_grace
        self.poll_interval = poll_interval
        self.refresh_interval = refresh_interval
        self.verbose = verbose
        self.workers = [WorkerProcess(slot) for slot in plan.slots]
        self.stopping = False
        self.stop_signal: str | None = None
        self._kill_at: float | None = None
        self._signals = 0
        self.recovered: list[int] = []
        self.worker_keys: set[str] = set()
        """``host:pid`` of every worker process spawned, restarts included."""
        self._pending: list[tuple[int, str, str]] = []
        """``(slot, host:pid, reason)`` of dead workers whose trials are still to recover."""
        self.notes: list[str] = list(plan.notes)
        self.display = SupervisorDisplay(cfg, self.console)
        self.host = socket.gethostname()
        self._deadline_at: float | None = None
        """``budget.timeout``'s end as wall-clock epoch seconds, passed to every worker."""

    # -- process management -------------------------------------------------------------

    def _command(self) -> list[str]:
        cmd = [sys.executable, "-m", "hpo.workers.worker_main", str(self.study_file)]
        for item in self.overrides:
            cmd += ["--set", item]
        if self.force:
            cmd.append("--force")
        cmd += ["-v"] * self.verbose
        return cmd

    def _trials_run(self, trials: Sequence[optuna.trial.FrozenTrial]) -> int:
        """Trials this run's workers ran: not another run's, not queued retries, not surplus."""
        return sum(
            1
            for t in trials
            if owner_key(t) in self.worker_keys
            and t.state != TrialState.WAITING
            and not t.system_attrs.get(SURPLUS_ATTR)
        )

    def _spawn(self, worker: WorkerProcess) -> None:
        env = slot_env(worker.slot, threads=threads_per_worker(len(self.plan.slots)))
        env[SUPERVISOR_ENV] = str(os.getpid())
        if self._deadline_at is not None:  # one deadline for every worker and restart
            env[DEADLINE_ENV] = repr(self._deadline_at)
        worker.proc = subprocess.Popen(
            self._command(),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # our signals reach workers only when we forward them
        )
        worker.state = "running"
        self.worker_keys.add(f"{socket.gethostname()}:{worker.proc.pid}")
        worker.reader = threading.Thread(
            target=self._relay, args=(worker, worker.proc), name=f"hpo-worker-{worker.slot.index}"
        )
        worker.reader.daemon = True
        worker.reader.start()
        self.display.event(
            f"worker {worker.slot.index} ({worker.slot.label}) started, pid {worker.proc.pid}"
        )

    def _relay(self, worker: WorkerProcess, proc: subprocess.Popen[str]) -> None:
        """Print a worker's output prefixed with its slot."""
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                self.display.event(f"[worker {worker.slot.index}] {line}")

    def _send(self, sig: signal.Signals) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            self.stopping = True
            self.stop_signal = signal.Signals(signum).name
            self._kill_at = time.monotonic() + self.stop_grace
            self.display.event(
                f"{self.stop_signal}: stopping workers (running trials are recorded and "
                f"queued again; again to kill them now)"
            )
            self._send(signal.SIGTERM)
        else:
            self._kill_at = time.monotonic()

    # -- study bookkeeping ----------------------------------------------------------------

    def _budget_finished(self, study: optuna.Study) -> bool:
        n_trials = self.cfg.budget.n_trials
        if n_trials is None:
            return False
        try:
            return budget_state(study.get_trials(deepcopy=False)).finished >= n_trials
        except Exception as exc:  # database unreachable: assume there is work left
            logger.debug("budget check failed: %s", mask_url(str(exc)))
            return False

    def _recover(self, study: optuna.Study, slot: int, key: str, reason: str) -> list[int]:
        """Recover a dead worker's trials; when the database is unreachable, try again later."""
        try:
            return recover_worker(
                study, key, reason=reason, max_retries=self.cfg.workers.max_retries
            )
        except Exception as exc:
            if (slot, key, reason) not in self._pending:
                self._pending.append((slot, key, reason))
                self.display.event(
                    f"worker {slot}: its trials cannot be recovered yet "
                    f"({mask_url(str(exc)).splitlines()[0]}); trying again"
                )
            return []

    def _retry_pending(self, study: optuna.Study) -> None:
        for slot, key, reason in list(self._pending):
            try:
                recovered = recover_worker(
                    study, key, reason=reason, max_retries=self.cfg.workers.max_retries
                )
            except Exception as exc:
                logger.debug("recovery of %s deferred: %s", key, mask_url(str(exc)))
                continue
            self._pending.remove((slot, key, reason))
            if recovered:
                self.recovered += recovered
                self.display.event(
                    f"worker {slot}: trial{'s' if len(recovered) != 1 else ''} "
                    f"{', '.join(map(str, recovered))} queued again"
                )

    def _time_left(self, started: float) -> float | None:
        if not self.cfg.budget.timeout:
            return None
        return self.cfg.budget.timeout - (time.monotonic() - started)

    def _on_exit(
        self, worker: WorkerProcess, returncode: int, study: optuna.Study, started: float
    ) -> None:
        assert worker.proc is not None
        if worker.reader is not None:
            worker.reader.join(timeout=5)
        worker.exit_codes.append(returncode)
        key = f"{self.host}:{worker.proc.pid}"
        if self.stopping:
            reason = INTERRUPTED
        elif returncode == STORAGE_UNAVAILABLE_EXIT:
            reason = STORAGE_LOST
        else:
            reason = WORKER_DIED
        # Exit status 0 too: a trainer's os._exit(0) ends the worker mid-trial with status
        # 0 (its sys.exit is a failed trial), and its trial would stay RUNNING for good.
        early = returncode == 0 and self._exited_early(study, key, started)
        recovered = self._recover(study, worker.slot.index, key, reason)
        self.recovered += recovered
        what = f"trial{'s' if len(recovered) != 1 else ''} {', '.join(map(str, recovered))}"
        lost = f"; {what} queued again" if recovered else ""
        if returncode == 0 and not early:
            worker.state = "done"
            return
        if self.stopping:
            worker.state = "stopped"
            if returncode not in (130, -signal.SIGTERM, 128 + signal.SIGTERM):
                self.display.event(
                    f"worker {worker.slot.index} stopped ({_signal_name(returncode)}){lost}"
                )
            return
        how = _signal_name(returncode)
        if returncode == 0:
            how += " before the study was finished"
        self.display.event(f"worker {worker.slot.index} (pid {worker.proc.pid}) died ({how}){lost}")
        left = self._time_left(started)
        if self._budget_finished(study) or (left is not None and left <= 0):
            worker.state = "done"
            return
        if worker.restarts >= self.cfg.workers.max_restarts:
            worker.state = "failed"
            self.notes.append(
                f"worker {worker.slot.index} died {len(worker.exit_codes)} times; not restarted "
                f"(workers.max_restarts={self.cfg.workers.max_restarts})"
            )
            return
        worker.restarts += 1
        # Back off (1 s, 2 s, 4 s ... 30 s): a database that is briefly down must not use
        # up every restart in a second.
        delay = min(2.0 ** (worker.restarts - 1), 30.0)
        worker.state = "restarting"
        worker.restart_at = time.monotonic() + delay

    def _exited_early(self, study: optuna.Study, key: str, started: float) -> bool:
        """Whether a worker that exited 0 left its work undone, so the exit is a death.

        A worker exits 0 only once the budget is finished (or time is up), so status 0
        with its trial still RUNNING, or with the budget unfinished while nobody asked it
        to stop, means something inside it quit (a trainer's ``os._exit(0)``). Trusted,
        the slot was lost for the rest of the run and its trial stayed RUNNING. A database
        that cannot say counts as early: a restart is bounded, a lost slot is not.
        """
        if self.stopping:
            return self._owns_running(study, key)
        left = self._time_left(started)
        if left is not None and left <= 0:
            return self._owns_running(study, key)
        if self._owns_running(study, key):
            return True
        n_trials = self.cfg.budget.n_trials
        if n_trials is None or self.cfg.sampler.name in SAMPLERS_THAT_STOP:
            return False  # no budget to check, or one the sampler may end before (a grid)
        try:
            return budget_state(study.get_trials(deepcopy=False)).finished < n_trials
        except Exception as exc:
            logger.debug("budget check failed: %s", mask_url(str(exc)))
            return True

    def _owns_running(self, study: optuna.Study, key: str) -> bool:
        """Whether this machine's worker ``key`` left a RUNNING trial (True if unknown)."""
        machine = machine_token()
        try:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except Exception as exc:
            logger.debug("running trials unreadable: %s", mask_url(str(exc)))
            return True
        return any(
            owner_key(t) == key and t.user_attrs.get(MACHINE_ATTR, machine) == machine
            for t in running
        )

    def _rows(self) -> list[WorkerRow]:
        return [
            WorkerRow(w.slot.index, w.slot.label, w.pid, w.state, w.restarts) for w in self.workers
        ]

    def _single_machine_storage(self) -> bool:
        """True when no process on another machine can be running trials of the study."""
        return single_machine_storage(storage_url(self.cfg))

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> SupervisorResult:
        """Start every slot and supervise until all workers are done; then summarize."""
        study = open_study(self.cfg, force=self.force)
        max_retries = self.cfg.workers.max_retries
        self.recovered += recover_orphans(study, max_retries=max_retries)
        self.recovered += requeue_lost_retries(study)
        if self._single_machine_storage():
            self.recovered += recover_abandoned_unowned(
                study, grace_period=grace_period(self.cfg), max_retries=max_retries
            )
        existing = study.get_trials(deepcopy=False)
        self.display.prime(existing)
        started = time.monotonic()
        timeout = self.cfg.budget.timeout
        self._deadline_at = time.time() + timeout if timeout else None
        previous: dict[signal.Signals, Any] = {}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            with self.display:
                for worker in self.workers:
                    self._spawn(worker)
                self._supervise(study, started)
                self._retry_pending(study)
                self.recovered += recover_orphans(
                    study,
                    max_retries=max_retries,
                    include_unowned=self._single_machine_storage(),
                )
                self.display.update(study.get_trials(deepcopy=False), self._rows())
        finally:
            if self.stopping or any(w.state == "running" for w in self.workers):
                self._send(signal.SIGKILL)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        elapsed = time.monotonic() - started
        trials = study.get_trials(deepcopy=False)
        summary = summarize(study, self.cfg, self._trials_run(trials), elapsed)
        st = budget_state(trials)
        n_trials = self.cfg.budget.n_trials
        left = self._time_left(started)
        unfinished = (
            n_trials is not None
            and self.cfg.sampler.name not in SAMPLERS_THAT_STOP  # a grid may end before
            and st.finished < n_trials
            and not self.stopping
            and (left is None or left > 0)
        )
        if unfinished:
            self.notes.append(
                f"study has {st.finished} of {n_trials} trials finished "
                f"({st.waiting} queued); run again to continue"
            )
        return SupervisorResult(
            summary=summary,
            interrupted=self.stopping,
            restarts=sum(w.restarts for w in self.workers),
            recovered=sorted(set(self.recovered)),
            notes=self.notes,
            exit_codes={w.slot.index: w.exit_codes for w in self.workers},
            unfinished=unfinished,
        )

    def _supervise(self, study: optuna.Study, started: float) -> None:
        next_refresh = 0.0
        while True:
            alive = False
            for worker in self.workers:
                if worker.state == "restarting" and worker.restart_at is not None:
                    alive = True
                    left = self._time_left(started)
                    if self.stopping:
                        worker.state = "stopped"
                    elif left is not None and left <= 0:
                        worker.state = "done"  # the timeout passed during its backoff
                    elif time.monotonic() >= worker.restart_at:
                        if self._pending:
                            self._retry_pending(study)
                        now = time.monotonic()
                        held = worker.held_since if worker.held_since is not None else now
                        if self._pending and now - held < max(storage_retry_seconds(), 5.0):
                            # Recover first: a new worker would otherwise find the dead
                            # one's trials itself and record them as crashes. Bounded:
                            # past the storage's own retry budget, restart anyway.
                            worker.held_since = held
                            worker.restart_at = now + 1.0
                        else:
                            worker.held_since = worker.restart_at = None
                            self._spawn(worker)
                    continue
                if worker.proc is None or worker.state != "running":
                    continue
                returncode = worker.proc.poll()
                if returncode is None:
                    alive = True
                    continue
                self._on_exit(worker, returncode, study, started)
                alive = alive or worker.state in ("running", "restarting")
            if self._kill_at is not None and time.monotonic() >= self._kill_at:
                self._send(signal.SIGKILL)
                self._kill_at = None
            now = time.monotonic()
            if self._pending and now >= next_refresh:
                self._retry_pending(study)
            if now >= next_refresh or not alive:
                try:
                    self.display.update(study.get_trials(deepcopy=False), self._rows())
                except Exception as exc:  # a slow or briefly unreachable database
                    logger.debug("progress refresh failed: %s", exc)
                next_refresh = now + self.refresh_interval
            if not alive:
                return
            time.sleep(self.poll_interval)
