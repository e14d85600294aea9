"""Worker for test_exactly_once: simulates the example month on a workspace like `engine run` does.

    python _tick_worker.py WORKSPACE EVERY MODE SLOW [BARRIER]

It imports WORKSPACE/events.jsonl (at the month's start), then ticks every EVERY from START up to
UNTIL (the month of July 2026, Helsinki time):

* MODE ``replay``: from START every time, so after a restart the ticks already done run again
  (ticks are idempotent: they must do nothing);
* MODE ``resume``: from the tick after the last one the store completed, START if none (what
  `engine run` without ``--from`` does); a tick killed half-way runs again;
* MODE ``tick``: no event import, one tick at START (what `engine tick --at` does).

It prints ``ready`` once Python's imports are done (before the store is opened), ``from T``
before the first tick, ``tick T`` after each tick (T in UTC, as the store writes it) and at the
end ``done`` and one JSON line of the run's totals. With BARRIER (a path) it waits after
``ready`` until that file exists: a test starts workers ahead and releases them at an instant.

SLOW makes the windows a kill (or another process) should hit wider and visible: a marker line,
then a sleep, where the engine is inside its store transactions: an event import (``event``), a
partner import (``partners``), the campaign rows a tick adds (``campaign``), an enrollment or a
firing's enrollments (``enroll``), a batch's step runs (``step``), marking messages delivered
or ending a handover (``mark``: before the commit);
and around each file delivery: ``append`` (the messages are committed, not yet in the file),
``appended`` (in the file, not yet marked delivered). SLOW is seconds (0: none): S for the
imports, deliveries and marking, S/4 for each campaign, enrollment and step batch; or MARKER=S,... for
those markers only. Timing only: the engine's own code runs unchanged.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import engine.channels.file  # noqa: E402
from engine.api import LAST_TICK, Engine  # noqa: E402
from engine.clock import from_iso, iso, parse_every  # noqa: E402
from engine.store.sqlite import SQLiteStore  # noqa: E402

START, UNTIL = "2026-07-01T00:00", "2026-08-01T00:00"
MARKERS = {  # marker: (the store methods, share of SLOW)
    "event": (("add_event",), 1 / 4),
    "partners": (("upsert_partners",), 1),
    "campaign": (("add_campaign",), 1 / 4),
    "enroll": (("add_enrollment", "add_enrollments"), 1 / 4),  # one, or a firing's
    "step": (("record_steps",), 1 / 4),  # a batch's step runs (record_step is one of them)
    "mark": (("record_outcomes", "end_handover"), 1),  # a delivery's outcomes, or a handover's end
}


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def pauses(slow: str) -> dict[str, float]:
    if "=" not in slow:
        seconds = float(slow)
        found = {marker: seconds * share for marker, (_, share) in MARKERS.items()}
        return {**found, "append": seconds, "appended": seconds} if seconds > 0 else {}
    found = {}
    for item in slow.split(","):
        marker, _, seconds = item.partition("=")
        if marker not in MARKERS and marker not in ("append", "appended"):
            raise SystemExit(f"unknown marker {marker!r}")
        found[marker] = float(seconds)
    return found


def stores() -> list[type]:
    """The store classes whose methods get markers (PostgreSQL's writes some its own way)."""
    try:
        from engine.store.postgres import PostgresStore
    except ImportError:  # no psycopg: SQLite only
        return [SQLiteStore]
    return [SQLiteStore, PostgresStore]


def slow_down(pause: dict[str, float]) -> None:
    """Marker + sleep at the places where a kill is most interesting (see the docstring)."""
    for marker, (names, _) in MARKERS.items():
        if marker not in pause:
            continue
        for store in stores():
            for name in names:
                if store is not SQLiteStore and name not in vars(store):
                    continue  # PostgreSQL's inherits SQLite's, marked already
                real = getattr(store, name)

                def inside(*args, _real=real, _marker=marker, **kwargs):
                    say(_marker)
                    result = _real(*args, **kwargs)
                    time.sleep(pause[_marker])  # after the write, before the caller's commit
                    return result

                setattr(store, name, inside)
    if "append" in pause or "appended" in pause:
        for name in ("append_once", "append_encoded_once", "append_rows_once"):
            real = getattr(engine.channels.file, name)  # FileTransport looks the name up at each call

            def around(*args, _real=real, **kwargs):
                say("append")
                time.sleep(pause.get("append", 0))
                result = _real(*args, **kwargs)
                say("appended")
                time.sleep(pause.get("appended", 0))
                return result

            setattr(engine.channels.file, name, around)


def main() -> None:
    workspace, every, mode, slow = sys.argv[1:5]
    barrier = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    if mode not in ("resume", "replay", "tick"):
        raise SystemExit(f"unknown mode {mode!r}")
    root = Path(workspace)
    slow_down(pauses(slow))
    say("ready")
    while barrier is not None and not barrier.exists():
        time.sleep(0.001)
    with Engine.open(root) as eng:
        start = eng.time(START)
        if mode == "tick":
            say(f"from {iso(start)}")
            report = eng.tick(start)
            say(f"tick {iso(start)}")
        else:
            eng.import_events(root / "events.jsonl", at=START)
            last = eng.store.meta(LAST_TICK)
            if mode == "resume" and last is not None:
                start = min(from_iso(last) + parse_every(every), eng.time(UNTIL))
            say(f"from {iso(start)}")
            report = eng.run(until=UNTIL, every=every, start=start,
                             progress=lambda i, n, r: say(f"tick {iso(r.at)}"))
    say("done")
    say(json.dumps({k: v for k, v in report.to_json().items() if k != "at"}))


if __name__ == "__main__":
    main()
