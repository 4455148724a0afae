"""Heartbeats for storages where Optuna has none (the gRPC proxy, journal files).

Optuna's heartbeat lives in RDB tables that a ``grpc://`` client cannot reach, yet a
fleet behind the proxy is exactly where machines vanish. So for those storages each
running trial carries a ``hpo:heartbeat`` system attribute (wall-clock seconds), renewed
every ``heartbeat_interval`` by a thread; any worker that finds one older than the grace
period fails the trial and queues it again, as Optuna's own mechanism would.
Clocks of the machines must agree to well within the grace period (NTP does that).
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from hpo.workers.recovery import HEARTBEAT_ATTR, STALE, recover_trials

__all__ = ["HEARTBEAT_ATTR", "TrialHeartbeat", "needs_own_heartbeat", "recover_stale"]

logger = logging.getLogger(__name__)


def needs_own_heartbeat(storage: BaseStorage) -> bool:
    """True for storages without Optuna's heartbeat (gRPC proxy, journal)."""
    interval = getattr(storage, "get_heartbeat_interval", None)
    return interval is None or interval() is None


class TrialHeartbeat:
    """Context manager: renew the trial's ``hpo:heartbeat`` every ``interval`` seconds."""

    def __init__(self, storage: BaseStorage, trial_id: int, interval: float) -> None:
        self.storage = storage
        self.trial_id = trial_id
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self) -> bool:
        """Record one heartbeat; False once the trial is finished (nothing left to keep alive)."""
        try:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        except Exception as exc:  # a dropped connection: try again next time
            logger.debug("heartbeat failed: %s", exc)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            if not self.beat():
                return

    def __enter__(self) -> TrialHeartbeat:
        self.beat()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)


def recover_stale(study: optuna.Study, *, grace_period: float, max_retries: int) -> list[int]:
    """Fail and re-queue RUNNING trials whose ``hpo:heartbeat`` is older than ``grace_period``."""
    now = time.time()
    stale = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        beat = trial.system_attrs.get(HEARTBEAT_ATTR)
        if isinstance(beat, int | float) and now - beat > grace_period:
            stale.append(trial)
    return recover_trials(study, stale, STALE, max_retries=max_retries)
