"""``python -m hpo.workers.worker_main STUDY [--set K=V ...]``: the process a supervisor starts.

Exit status: 0 when the study needs nothing more from this worker, 130 when stopped by
a signal (its trial recorded and queued again), 2 for a problem the user must fix, 75
when the database stayed unreachable past the retry budget (``HPO_STORAGE_RETRY_SECONDS``;
the supervisor restarts the worker and queues its trial again).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

SUPERVISOR_ENV = "HPO_SUPERVISOR_PID"
"""The supervisor's pid: a worker whose supervisor vanished stops itself."""
DEADLINE_ENV = "HPO_DEADLINE"
"""When the supervisor's ``budget.timeout`` ends, as wall-clock epoch seconds: every worker
and restart stops starting trials then, however late it got going."""


def deadline_from_env() -> float | None:
    """The supervisor's deadline (epoch seconds), if it gave one."""
    value = os.environ.get(DEADLINE_ENV)
    try:
        return float(value) if value else None
    except ValueError:
        return None


def watch_parent(parent_pid: int, interval: float = 1.0) -> threading.Thread:
    """Send ourselves SIGTERM once ``parent_pid`` is no longer our parent (it died)."""

    def _watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=_watch, name="hpo-parent-watch", daemon=True)
    thread.start()
    return thread


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hpo.workers.worker_main")
    parser.add_argument("study")
    parser.add_argument("--set", "-s", dest="overrides", action="append", default=[])
    parser.add_argument("--force", action="store_true")
    parser.add_argument("--verbose", "-v", action="count", default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run one worker; returns the exit status."""
    args = _parse(argv)
    import optuna

    from hpo.config import load_study_config
    from hpo.errors import HpoError
    from hpo.storages import mask_url, storage_outage
    from hpo.workers.worker import run_worker

    level = logging.WARNING if args.verbose == 0 else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    optuna.logging.set_verbosity(optuna.logging.ERROR if args.verbose < 2 else optuna.logging.INFO)
    parent = os.environ.get(SUPERVISOR_ENV)
    if parent and parent.isdigit():
        watch_parent(int(parent))
    try:
        cfg = load_study_config(args.study, args.overrides)
        summary = run_worker(cfg, force=args.force, deadline_at=deadline_from_env())
    except HpoError as exc:
        for line in exc.problems:
            print(f"error: {mask_url(line)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        outage = storage_outage(exc)
        if outage is None:
            raise
        for line in outage.problems:
            print(f"error: {mask_url(line)}", file=sys.stderr)
        return outage.exit_code
    logging.getLogger("hpo.worker").info(
        "worker done: %d trials run here; study complete %d, pruned %d, failed %d",
        summary.trials_run,
        summary.n_complete,
        summary.n_pruned,
        summary.n_failed,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
