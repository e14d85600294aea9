"""Worker for test_delivery_kills: the example month, delivered over SMTP and a webhook.

    python _delivery_worker.py WORKSPACE EVERY MODE SLOW [BARRIER]

WORKSPACE is a copy of examples/ whose engine.yaml the test has rewritten so that email goes to
its SMTP server and SMS to its webhook receiver (see _receivers.route_to). The worker imports
WORKSPACE/events.jsonl (at the month's start) and ticks every EVERY from START up to UNTIL (July
2026, Helsinki time), as _tick_worker.py does:

* MODE ``replay``: from START every time (ticks already done do nothing again);
* MODE ``resume``: from the tick after the last one the store completed (START if none).

Marker lines on stdout (flushed at once): ``ready`` once Python's imports are done (before the
store is opened), ``from T`` before the first tick, ``handing ID`` immediately before the SMTP
transport's or the webhook's hand-over of message ID (``SmtpTransport._one``,
``WebhookTransport._post``), ``handed ID STATUS`` once the transport has its answer (before the
delivery loop records it), ``tick T`` after each tick (T in UTC, as the store writes it), and at
the end ``done`` and one JSON line of the run's totals. With BARRIER (a path) it waits after
``ready`` until that file exists: a test starts workers ahead and releases them at an instant.

SLOW (seconds, 0: none) widens the window a kill should hit: a sleep after each ``handed`` line,
where the server has the message and the store has not recorded it yet (the message is "in
doubt"), and half of it before each hand-over (after ``handing``: nothing sent yet). Timing
only: the engine's own code runs unchanged.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.api import LAST_TICK, Engine
from engine.channels.smtp import SmtpTransport
from engine.channels.webhook import WebhookTransport
from engine.clock import from_iso, iso, parse_every

START, UNTIL = "2026-07-01T00:00", "2026-08-01T00:00"


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def watch_hand_overs(slow: float) -> None:
    """``handing``/``handed`` around each message's hand-over, with the SLOW sleeps."""

    def wrap(cls, name: str) -> None:
        real = getattr(cls, name)

        def around(self, *args, _real=real):
            message = args[-1]  # _one(server, message), _post(message)
            say(f"handing {message.id}")
            if slow:
                time.sleep(slow / 2)
            outcome = _real(self, *args)
            say(f"handed {message.id} {outcome.status}")
            if slow:
                time.sleep(slow)
            return outcome

        setattr(cls, name, around)

    wrap(SmtpTransport, "_one")
    wrap(WebhookTransport, "_post")


def main() -> None:
    workspace, every, mode, slow = sys.argv[1:5]
    barrier = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    if mode not in ("resume", "replay"):
        raise SystemExit(f"unknown mode {mode!r}")
    root = Path(workspace)
    watch_hand_overs(float(slow))
    say("ready")
    while barrier is not None and not barrier.exists():
        time.sleep(0.001)
    with Engine.open(root) as eng:
        start = eng.time(START)
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
