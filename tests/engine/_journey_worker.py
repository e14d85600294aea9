"""Worker for test_journeys_exactly_once: a journey workspace driven by a script, or one `engine`
command, in a process a test can start ahead, release at an instant and SIGKILL.

    python _journey_worker.py WORKSPACE PLAN MODE SLOW [BARRIER]

PLAN is a JSON file:

* MODE ``resume``: a list of actions, run in order: ``{"partners": TEXT}`` (partners.csv is
  rewritten to TEXT unless it holds it already), ``{"respond": ID, "key": KEY, "at": T}`` (the
  activity ID is answered, unless it was answered already) and ``{"tick": T}``. After a restart
  the script goes on after the last tick the store completed (``tick.last``); the rewrites and
  responses after it are done again when they are not done yet, and a tick killed half-way runs
  again (ticks are idempotent). What `engine run` does for ticks, with the files and the people
  of the journey in between.
* MODE ``cli``: the arguments of one `engine` command (``["-w", WORKSPACE, "tick", "--at", T]``),
  run through engine.cli.main in this process.

It prints what tests/engine/_tick_worker.py prints (``ready``, ``from T``, ``tick T`` after each
tick, ``done`` and one JSON line: the totals of the ticks, or ``{"exit": CODE}`` of the command),
and in mode ``resume`` ``responded ID`` after each response it made. SLOW widens the windows a
kill or the other process should hit, as in _tick_worker.py (its markers, seconds or
MARKER=S,...), with six more: ``steps`` (a batch's step runs written, before its commit; S/4),
``respond`` (a response recorded, before the operation's commit), ``waits`` (a wait-for's
condition asked, in a batch or in the transaction that makes the waits that hold due, before
its commit; S/4), ``rewrite`` (partners.csv rewritten by the script, before the next action),
``batched`` (a transaction that recorded step runs committed: between two step batches of a
tick, outside any transaction) and ``exits`` (a tick's partner import committed, its exit checks
of the partners it changed not begun). Timing only: the engine's own code runs unchanged.
"""

import importlib
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.api import LAST_TICK, Engine
from engine.cli import main as engine_main
from engine.clock import iso
from engine.store.sqlite import SQLiteStore
from engine.testing import rewrite
from tests.engine._tick_worker import MARKERS as TICK_MARKERS
from tests.engine._tick_worker import say, slow_down

COUNTS = ("enrolled", "executed", "skipped", "finished", "failed", "delivered")


def method(*places: tuple[str, str, str]) -> tuple[type, str]:
    """(class, method name) of the first of these (module, class, method) that exists: where the
    engine keeps a method it is moving between modules."""
    for module, name, attribute in places:
        try:
            owner = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        if hasattr(owner, attribute):
            return owner, attribute
    raise SystemExit(f"none of {places} exists")


ASK_WAIT = (("engine.advance", "Advance", "holds"), ("engine.tick", "Tick", "_holds"))  # a wait-for's condition
CHECK_EXITS = (("engine.exits", "Exits", "check"), ("engine.tick", "Tick", "_check_exits"),
               ("engine.advance", "Advance", "check_exits"))
OWN = {"steps": ((SQLiteStore, "record_steps"), 1 / 4), "respond": ((SQLiteStore, "add_response"), 1),
       "waits": (ASK_WAIT, 1 / 4)}
ALL = {**{m: share for m, (_, share) in TICK_MARKERS.items()}, "append": 1, "appended": 1,
       **{m: share for m, (_, share) in OWN.items()}, "rewrite": 1, "batched": 1, "exits": 1}


def pauses(slow: str) -> dict[str, float]:
    if "=" not in slow:
        seconds = float(slow)
        return {marker: seconds * share for marker, share in ALL.items()} if seconds > 0 else {}
    found = {}
    for item in slow.split(","):
        marker, _, seconds = item.partition("=")
        if marker not in ALL:
            raise SystemExit(f"unknown marker {marker!r}")
        found[marker] = float(seconds)
    return found


def slow_down_more(pause: dict[str, float]) -> None:
    """_tick_worker's markers, and this worker's own on the store's methods."""
    slow_down({m: s for m, s in pause.items() if m in TICK_MARKERS or m in ("append", "appended")})
    for marker, (where, _) in OWN.items():
        if marker in pause:
            owner, name = where if isinstance(where[0], type) else method(*where)
            real = getattr(owner, name)

            def inside(*args, _real=real, _marker=marker, **kwargs):
                result = _real(*args, **kwargs)
                say(_marker)
                time.sleep(pause[_marker])  # after the write (or the question), before the caller's commit
                return result

            setattr(owner, name, inside)
    if "exits" in pause:  # before the call: the tick's partner import has committed, its exit checks not begun
        owner, name = method(*CHECK_EXITS)
        real_check = getattr(owner, name)

        def check_exits(*args, _real=real_check, **kwargs):
            say("exits")
            time.sleep(pause["exits"])
            return _real(*args, **kwargs)

        setattr(owner, name, check_exits)
    if "batched" in pause:
        between_batches(pause["batched"])


def between_batches(seconds: float) -> None:
    """``batched``: after a transaction that wrote step runs committed (a batch of due steps, in
    the middle of a tick), outside any transaction: another process may take the store then."""
    from engine.store.postgres import PostgresStore
    for store in (SQLiteStore, PostgresStore):
        real_transaction, real_record = store.transaction, store.record_steps

        @contextmanager
        def transaction(self, exclusive=True, _real=real_transaction):
            outermost = not self._depth
            if outermost:
                self.wrote_steps = False
            with _real(self, exclusive):
                yield
            if outermost and self.wrote_steps:
                say("batched")
                time.sleep(seconds)

        def record_steps(self, rows, _real=real_record):
            self.wrote_steps = True
            return _real(self, rows)

        store.transaction, store.record_steps = transaction, record_steps


def answered(engine: Engine, activity_id: str) -> bool:
    found = engine.store.activity(activity_id)
    return found is not None and found["status"] == "completed"


def run_script(root: Path, actions: list[dict], mode: str = "resume", pause: dict[str, float] | None = None,
               store: str | None = None, progress=say) -> list[tuple[str, dict[str, int]]]:
    """The script's actions from where the store is (all of them on a fresh store); the time and
    counts of each tick run. The tests' uninterrupted control runs call it in their own process."""
    pause = pause or {}
    ticks = []
    with Engine.open(root, store=store) as engine:
        last = engine.store.meta(LAST_TICK)
        start = 0
        if mode == "resume" and last is not None:
            done = [i for i, a in enumerate(actions) if "tick" in a and iso(engine.time(a["tick"])) == last]
            assert done, f"the store's last tick {last} is not in the script"
            start = done[0] + 1
        upcoming = [engine.time(a["tick"]) for a in actions[start:] if "tick" in a]
        if upcoming:
            progress(f"from {iso(upcoming[0])}")
        for action in actions[start:]:
            if "partners" in action:
                path = root / "partners.csv"
                if not path.exists() or path.read_text(encoding="utf-8") != action["partners"]:
                    rewrite(path, action["partners"])
                    if "rewrite" in pause:
                        progress("rewrite")
                        time.sleep(pause["rewrite"])
            elif "respond" in action:
                if not answered(engine, action["respond"]):
                    engine.respond(action["respond"], action["key"], at=action["at"], user="tester")
                    progress(f"responded {action['respond']}")
            else:
                when = engine.time(action["tick"])
                report = engine.tick(when)
                ticks.append((iso(when), {count: getattr(report, count) for count in COUNTS}))
                progress(f"tick {iso(when)}")
    return ticks


def main() -> None:
    workspace, plan, mode, slow = sys.argv[1:5]
    barrier = Path(sys.argv[5]) if len(sys.argv) > 5 else None
    if mode not in ("resume", "cli"):
        raise SystemExit(f"unknown mode {mode!r}")
    pause = pauses(slow)
    slow_down_more(pause)
    script = json.loads(Path(plan).read_text(encoding="utf-8"))
    say("ready")
    while barrier is not None and not barrier.exists():
        time.sleep(0.001)
    if mode == "cli":
        code = engine_main(script)
        sys.stdout.flush()
        say("done")
        say(json.dumps({"exit": code}))
        return
    ticks = run_script(Path(workspace), script, mode, pause)
    say("done")
    say(json.dumps({count: sum(counts[count] for _, counts in ticks) for count in COUNTS}))


if __name__ == "__main__":
    main()
