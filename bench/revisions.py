"""Another git revision of this repository, checked out beside it for a benchmark that measures
both in one run (``--compare REV``): the same machine, the same load, interleaved runs."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def trees(compare: str | None) -> Iterator[dict[str, Path]]:
    """``{"this tree": ROOT}``, and ``{REV: a temporary worktree}`` with ``compare``; the
    worktree is removed afterwards."""
    found = {"this tree": ROOT}
    worktree = None
    if compare:
        worktree = Path(tempfile.mkdtemp(prefix="bench-rev-")) / "tree"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), compare],
                       check=True, capture_output=True)
        found[compare] = worktree
    try:
        yield found
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)], check=False,
                           capture_output=True)
