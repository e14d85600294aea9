"""The background tick of ``engine serve``: every ``every`` on the wall clock (the site's
clock), with an engine and a store connection of its own, so requests go on while it works.

Stopping waits for the tick in progress to finish (SIGTERM never cuts a tick short; a tick
killed anyway loses nothing, SPEC §10). A tick that fails is reported on stderr and the next
one runs on time: the failures a tick can have (a store that is busy or unreachable) pass.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path

from ..api import Engine
from ..clock import Clock

log = logging.getLogger("engine.serve")


class Ticker:
    def __init__(self, workspace: Path, store: str | None, clock: Clock, every: timedelta):
        self.workspace, self.store, self.clock, self.every = workspace, store, clock, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="engine-tick", daemon=True)
        self.ticks = 0
        self.ticking = threading.Event()  # set while a tick runs

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask the loop to end, and wait for the tick in progress."""
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        with Engine.open(self.workspace, store=self.store, clock=self.clock) as engine:
            while not self._stop.is_set():
                self.ticking.set()
                try:
                    report = engine.tick()
                    self.ticks += 1
                    log.info("tick %s: %d enrolled, %d executed, %d failed", report.at.isoformat(),
                             report.enrolled, report.executed, report.failed)
                except Exception as exc:  # noqa: BLE001 - reported; the next tick runs on time
                    log.error("tick failed: %s: %s", type(exc).__name__, exc)
                finally:
                    self.ticking.clear()
                self._stop.wait(self.every.total_seconds())
