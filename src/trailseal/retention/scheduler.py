"""Retention on a schedule inside ``trailseal serve``: one background thread, off by default."""

from __future__ import annotations

import logging
import threading

from trailseal.retention.service import Retention

_log = logging.getLogger("trailseal.retention")


class RetentionScheduler:
    """Runs :meth:`Retention.apply_all` every ``interval`` seconds until stopped.

    The first run starts one interval after :meth:`start`. A failing run is logged and retried
    at the next tick; runs are journalled, so one cut short by shutdown resumes then.
    """

    def __init__(self, retention: Retention, interval: float, *, actor: str = "trailseal-scheduler") -> None:
        if interval <= 0:
            raise ValueError(f"retention interval must be positive, got {interval}")
        self.retention = retention
        self.interval = interval
        self.actor = actor
        self.runs = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="retention-scheduler", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Ask the thread to stop and wait for a run in progress to finish."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.retention.apply_all(actor=self.actor)
                self.last_error = None
            except Exception as exc:
                self.last_error = str(exc)
                _log.exception("scheduled retention run failed")
            self.runs += 1
