"""What every route shares: the workspace's :class:`~engine.api.Engine`, its signer and clock.

The engine is used from one thread of its own: a SQLite connection belongs to the thread that
made it, and one writer at a time is what SQLite does anyway. Routes ``await site.call(...)``;
the event loop stays free for other requests while the store works. The background tick has an
engine (and a connection) of its own (:mod:`engine.web.ticker`).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ..api import Engine
from ..clock import Clock, aware
from ..links import Signer

T = TypeVar("T")
RECHECK_SECONDS = 1.0  # a campaign file edited while serving is seen within a second


class Site:
    def __init__(self, workspace: Path, store: str | None, signer: Signer, clock: Clock):
        self.workspace, self.store_url, self.signer, self.clock = workspace, store, signer, clock
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine-store")
        self._engine: Engine | None = None

    def now(self) -> datetime:
        return aware(self.clock.now())

    async def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``work(engine, *args, **kwargs)`` on the store's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, functools.partial(self._run, work, *args, **kwargs))

    def _run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._engine is None:
            self._engine = Engine.open(self.workspace, store=self.store_url, clock=self.clock)
            self._engine.recheck_seconds = RECHECK_SECONDS
        return work(self._engine, *args, **kwargs)

    def close(self) -> None:
        def close(engine: Engine) -> None:
            engine.close()

        if self._engine is not None:
            self._thread.submit(close, self._engine).result()
        self._thread.shutdown(wait=True)
