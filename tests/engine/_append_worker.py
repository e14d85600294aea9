"""Worker for test_file_channel: delivers records START..STOP-1 like the engine will.

    python _append_worker.py json|csv OUT STORE START STOP SEED

Its "store" is a JSON file holding how many of its records are marked delivered (they go in
order). Each round takes the next 1..12 undelivered records, delivers them with the file
transport, and only then marks the whole batch delivered (atomic replace). Prints "ready" once imported and "done" at the end.
With KILL_AFTER_CALL=k set, it SIGKILLs itself after the k-th delivery returns, before marking.
"""

import json
import os
import random
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.channels.file import append_once, append_rows_once  # noqa: E402

COLUMNS = ["id", "name", "address"]


def record(i: int) -> dict:
    """Records of varying length, with unicode and (for CSV) quoted newlines."""
    name, address = "Päivi ✓ " * (i % 4), "Katu 1\nHelsinki" * (i % 3)
    return {"id": f"m{i:05d}", "name": name, "address": address, "n": i}


def load(store: Path) -> int:
    try:
        return json.loads(store.read_text())["delivered"]
    except FileNotFoundError:
        return 0


def save(store: Path, delivered: int) -> None:
    tmp = store.with_suffix(".tmp")
    tmp.write_text(json.dumps({"delivered": delivered}))
    os.replace(tmp, store)


def main() -> None:
    mode, out, store, start, stop, seed = sys.argv[1:7]
    out, store, rng = Path(out), Path(store), random.Random(int(seed))
    kill_after = int(os.environ.get("KILL_AFTER_CALL", "0"))
    print("ready", flush=True)
    delivered, stop = load(store), int(stop)
    calls = 0
    while int(start) + delivered < stop:
        first = int(start) + delivered
        batch = [record(i) for i in range(first, min(stop, first + rng.randint(1, 12)))]
        if mode == "json":
            append_once(out, batch)
        else:
            append_rows_once(out, COLUMNS, batch)
        calls += 1
        if calls == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        delivered += len(batch)
        save(store, delivered)
    print("done", flush=True)


if __name__ == "__main__":
    main()
