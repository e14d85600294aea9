"""Who holds a claim on an outbox message, and whether that process still lives.

A SQLite store is a file on this machine (its WAL mode needs shared memory, so every process
using it runs here), and a process is named by host, pid and start time: a pid the system gave
to a new process since is not mistaken for the old one. A PostgreSQL store names the claiming
*connection* instead (see :meth:`engine.store.postgres.PostgresStore.claimer_alive`).
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache


@lru_cache(maxsize=1)
def _host() -> str:
    return socket.gethostname()


def _stat(pid: int) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (Linux; None elsewhere or when gone):
    [0] is the state (field 3 of the file), [19] the start time in clock ticks since boot."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19].decode() if fields and len(fields) > 19 else None


def this_process() -> str:
    """``host:pid:start`` of the running process (asked by pid: a forked child is another)."""
    return _token(os.getpid())


@lru_cache(maxsize=4)
def _token(pid: int) -> str:
    """A living process's start time never changes: read once per pid, not at every delivery."""
    return f"{_host()}:{pid}:{_started(pid) or ''}"


def process_alive(token: str) -> bool:
    """Whether the process a :func:`this_process` token names is still running. A process on
    another host cannot be asked: it counts as alive."""
    parts = token.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return False  # not a token of ours: nobody holds it
    host, pid_text, started = parts
    if host != _host():
        return True
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process: it exists
    fields = _stat(pid)
    if fields is None:
        return True  # no /proc to ask: it answered the signal
    if fields[0] in (b"Z", b"X"):
        return False  # killed, not yet reaped by its parent
    return not started or len(fields) <= 19 or fields[19].decode() == started
