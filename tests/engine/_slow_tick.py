"""Worker for test_policy_workers: the `engine` command, with each batch's step runs written
SLOW seconds late (inside the batch's transaction), so that several workers' batches overlap.

    python _slow_tick.py SLOW ENGINE-ARGUMENTS...

Timing only: the engine's own code runs unchanged.
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.cli import main  # noqa: E402
from engine.store.sqlite import SQLiteStore  # noqa: E402

SLOW = float(sys.argv[1])
_record_steps = SQLiteStore.record_steps


def _slowly(self, rows):
    time.sleep(SLOW)
    return _record_steps(self, rows)


SQLiteStore.record_steps = _slowly
sys.exit(main(sys.argv[2:]))
