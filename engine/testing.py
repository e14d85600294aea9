"""pytest fixtures for testing campaigns: an engine on a temporary copy of a workspace, with a
clock that only moves when the test says so. Enable them in a ``conftest.py``::

    pytest_plugins = ["engine.testing"]

    def test_welcome_goes_out(make_engine):
        engine = make_engine("path/to/workspace", at="2026-07-01T00:00")
        engine.tick()
        assert [m["partner"] for m in engine.outbox("email")] == ["p001"]

    @pytest.mark.workspace("path/to/workspace", at="2026-07-01T00:00")
    def test_same_with_a_marker(engine):
        engine.clock.advance(timedelta(days=3)); engine.tick()

The copy leaves out ``.engine/`` (state never leaks between tests) and is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .api import Engine
from .clock import FixedClock, parse_time

DEFAULT_START = "2026-07-01T00:00"


def copy_workspace(source: str | Path, target: Path) -> Path:
    """A copy of the workspace without its runtime state."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".engine", "__pycache__"))
    return target


def rewrite(path: Path, text: str) -> None:
    """Replace a workspace file (a campaign edited between two ticks) and move its modification
    time at least a second forward, so the engine sees the change even when the file system's
    clock has not moved since the last write."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    later = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(later, later))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "workspace(path, at=...): the workspace and start time of the `engine` fixture")


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., Engine]]:
    """``make_engine(workspace, at=...)``: an Engine on a fresh copy, its clock fixed at ``at``
    (read in the workspace's timezone unless it carries an offset)."""
    engines: list[Engine] = []

    def make(workspace: str | Path, at: str = DEFAULT_START, *, name: str | None = None) -> Engine:
        root = copy_workspace(workspace, tmp_path / (name or f"workspace-{len(engines)}"))
        engine = Engine.open(root, clock=FixedClock("1970-01-01T00:00Z"))
        engine.clock.set(parse_time(at, engine.plan.tz))  # type: ignore[attr-defined]
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def engine(request: pytest.FixtureRequest, make_engine: Callable[..., Engine]) -> Engine:
    """An Engine on a copy of the workspace named by ``@pytest.mark.workspace``."""
    marker = request.node.get_closest_marker("workspace")
    if marker is None or not marker.args:
        raise pytest.UsageError("the engine fixture needs @pytest.mark.workspace(PATH, at=...)")
    return make_engine(marker.args[0], marker.kwargs.get("at", DEFAULT_START))
