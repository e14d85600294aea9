"""Exactly-once effects of the tick engine under SIGKILL and concurrent ticks (SPEC §6, §10), with
real processes.

tests/engine/_tick_worker.py simulates the example workspace's month (July 2026, Helsinki time:
124 messages by email, SMS and letter) on a copy of examples/; the outcome is compared with an
uninterrupted run of the same month on the same tick grid, run in this process: the message
files (every id once, every line valid, the same content per message) and the store (every
message delivered, the same enrollments, step runs, activities and pop-ups).

The workers use the test's store (SQLite, or PostgreSQL: ``ENGINE_STORE``, see engine.testing);
the uninterrupted runs always use SQLite, so on PostgreSQL the comparison is across stores too.
"""

import csv
import io
import json
import os
import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from engine.api import Engine
from engine.channels.file import read_lines, read_rows
from engine.clock import from_iso
from engine.steps import LETTER_COLUMNS
from engine.testing import copy_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
WORKER = Path(__file__).with_name("_tick_worker.py")
START, UNTIL = "2026-07-01T00:00", "2026-08-01T00:00"  # as in the worker
COUNTS = ("enrolled", "executed", "skipped", "finished", "failed", "delivered")
MESSAGE_KEYS = {"id", "campaign", "step", "partner", "channel", "to", "body", "language", "at"}
SLOW = 0.02  # the worker's SLOW in the kill test: the windows it widens (see _tick_worker.py)
REFERENCE_STORE = "sqlite:///.engine/state.db"  # the uninterrupted runs', whatever the workers use


# --- what a run left behind ----------------------------------------------------------------


def jsonl_records(path: Path, channel: str) -> list[dict]:
    """The lines of .engine/outbox/<channel>.jsonl; every line must be a whole, valid message."""
    data = path.read_bytes() if path.exists() else b""
    assert data == b"" or data.endswith(b"\n"), f"{path}: a torn last line was left behind"
    records = []
    for n, line in enumerate(data.split(b"\n")[:-1], 1):
        record = json.loads(line)
        assert isinstance(record, dict) and MESSAGE_KEYS <= record.keys(), (path, n, line[:300])
        assert record["channel"] == channel and (channel != "email" or "subject" in record), (path, n)
        records.append(record)
    assert records == read_lines(path)
    return records


def letter_records(path: Path) -> list[dict]:
    """The rows of .engine/letters/<campaign>/<step>.csv, parsed strictly."""
    data = path.read_bytes()
    assert data.endswith(b"\n"), f"{path}: a torn last record was left behind"
    rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    header, body = rows[0], rows[1:]
    assert header == list(LETTER_COLUMNS) and all(len(row) == len(header) for row in body), (path, header)
    records = [dict(zip(header, row)) for row in body]
    assert records == read_rows(path)
    campaign, step = path.parent.name, path.stem
    assert all(r["campaign"] == campaign and r["step"] == step and r["id"] for r in records), path
    return records


def outputs(root: Path) -> list[tuple[str, dict]]:
    """(file, record) for every message the file transport wrote, in file order."""
    found = []
    for channel in ("email", "sms"):
        path = root / ".engine" / "outbox" / f"{channel}.jsonl"
        found += [(path.name, r) for r in jsonl_records(path, channel)]
    for path in sorted((root / ".engine" / "letters").glob("*/*.csv")):
        found += [(f"letters/{path.parent.name}/{path.name}", r) for r in letter_records(path)]
    return found


def file_ids(root: Path) -> Counter:
    """Ids in the message files as a reader sees them now (a torn last line is not counted)."""
    ids = Counter()
    for channel in ("email", "sms"):
        ids.update(r["id"] for r in read_lines(root / ".engine" / "outbox" / f"{channel}.jsonl"))
    for path in (root / ".engine" / "letters").glob("*/*.csv"):
        ids.update(r["id"] for r in read_rows(path))
    return ids


def torn(root: Path) -> list[str]:
    paths = [root / ".engine" / "outbox" / f"{c}.jsonl" for c in ("email", "sms")]
    paths += list((root / ".engine" / "letters").glob("*/*.csv"))
    return [p.name for p in paths if p.exists() and p.stat().st_size and not p.read_bytes().endswith(b"\n")]


@contextmanager
def opened_store(root: Path, store: str | None = None):
    """(connection, table names) of the workspace's store: the workers' one (``ENGINE_STORE``,
    else the SQLite file), or ``store``. The connection takes SQL with ``?`` parameters on both
    stores. (None, set()) for a SQLite store not created yet."""
    url = store or os.environ.get("ENGINE_STORE")
    if url is None or url.startswith("sqlite:"):
        path = root / ".engine" / "state.db"
        if not path.exists():
            yield None, set()
            return
        db = sqlite3.connect(path, timeout=60)
        try:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            yield db, {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            db.close()
        return
    with Engine.open(root, store=url) as engine:
        db = engine.store.db
        yield db, {name for (name,) in db.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()")}


def store_state(root: Path, store: str | None = None) -> dict[str, list]:
    """The store's invariants, checked; and its tables without ids or versions, for comparing."""
    with opened_store(root, store) as (db, _):
        assert db is not None, "no store"
        twice = db.execute("SELECT enrollment, step, run, count(*) FROM step_runs "
                           "GROUP BY enrollment, step, run HAVING count(*) > 1").fetchall()
        assert twice == [], f"steps executed more than once: {twice}"
        current = db.execute("SELECT campaign, partner, count(*) FROM enrollments "
                             "WHERE status IN ('scheduled', 'active', 'paused') GROUP BY campaign, partner "
                             "HAVING count(*) > 1").fetchall()
        assert current == [], f"more than one current enrollment: {current}"
        orphans = db.execute("SELECT count(*) FROM step_runs "
                             "WHERE enrollment NOT IN (SELECT id FROM enrollments)").fetchone()
        assert orphans == (0,)
        undelivered = db.execute("SELECT id FROM outbox WHERE delivered_at IS NULL").fetchall()
        assert undelivered == [], f"committed but never delivered: {undelivered}"

        def rows(sql: str) -> list:
            return sorted(db.execute(sql).fetchall(), key=repr)

        return {
            "outbox": rows("SELECT id, channel, campaign, step, partner, at, payload FROM outbox"),
            "enrollments": rows("SELECT campaign, partner, number, status, reason, origin, source, "
                                "created_at, started_at, finished_at, after_step, next_step, due_at, "
                                "paused_at FROM enrollments"),
            "step_runs": rows("SELECT e.campaign, e.partner, e.number, s.step, s.run, s.status, s.reason, "
                              "s.due_at, s.at, s.detail FROM step_runs s "
                              "JOIN enrollments e ON e.id = s.enrollment"),
            "activities": rows("SELECT id, campaign, step, partner, kind, assignee, subject, responses, "
                               "status, created_at FROM activities"),
            "popups": rows("SELECT id, campaign, step, partner, pages, title, body, language, created_at "
                           "FROM popups"),
            "firings": rows("SELECT campaign, occurrence, at, enrolled FROM firings"),
            "events": rows("SELECT id, type, at, partner, processed FROM events"),
            "campaigns": rows("SELECT id, number, first_seen_at, active, active_since FROM campaigns"),
            "partners": rows("SELECT id, hash, updated_at, removed_at FROM partners"),
        }


def assert_same_messages(got: list[tuple[str, dict]], want: list[tuple[str, dict]]) -> None:
    ids, wanted = Counter(r["id"] for _, r in got), Counter(r["id"] for _, r in want)
    assert {i: n for i, n in ids.items() if n > 1} == {}, "messages written more than once"
    assert (sorted(wanted - ids), sorted(ids - wanted)) == ([], []), "(lost, unexpected) messages"
    assert ids == wanted
    mine = {r["id"]: (where, r) for where, r in got}
    for where, record in want:
        assert mine[record["id"]] == (where, record), f"message {record['id']} differs"


def assert_same_state(got: dict[str, list], want: dict[str, list]) -> None:
    for table in want:
        assert got[table] == want[table], f"table {table} differs from the uninterrupted run"


# --- the uninterrupted runs ----------------------------------------------------------------


@dataclass
class Run:
    messages: list[tuple[str, dict]]
    state: dict[str, list]
    totals: dict[str, int]
    busy: list[tuple[datetime, dict[str, int]]]  # the ticks that did something, and what


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(every)``: the month run once, uninterrupted, in this process (cached)."""
    runs: dict[str, Run] = {}

    def get(every: str) -> Run:
        if every not in runs:
            root = copy_workspace(EXAMPLES, tmp_path_factory.mktemp(f"reference-{every}") / "ws")
            busy = []

            def note(i, n, report):
                counts = {k: getattr(report, k) for k in COUNTS}
                if any(counts.values()):
                    busy.append((report.at, counts))

            with Engine.open(root, store=REFERENCE_STORE) as engine:
                engine.import_events(root / "events.jsonl", at=START)
                total = engine.run(until=UNTIL, every=every, start=START, progress=note)
                assert len(engine.outbox()) == 124
            messages = outputs(root)
            assert len(messages) == 124
            assert {where.split("/")[0] for where, _ in messages} == {"email.jsonl", "sms.jsonl", "letters"}
            runs[every] = Run(messages, store_state(root, REFERENCE_STORE), {k: getattr(total, k) for k in COUNTS},
                              busy)
        return runs[every]

    return get


# --- worker processes ----------------------------------------------------------------------


class Worker:
    """One `_tick_worker.py` process; its stdout lines arrive on a queue as they are printed. With
    a barrier it is started ahead (Python's imports take most of a second) and released by
    :meth:`go`."""

    def __init__(self, root: Path, every: str, mode: str, slow: float | str = 0, barrier: Path | None = None,
                 name: str = "worker", *, script: Path = WORKER, env: dict[str, str] | None = None):
        args = [sys.executable, str(script), str(root), every, mode, str(slow)]
        args += [str(barrier)] if barrier else []
        self.barrier, self.stderr_path = barrier, root.parent / f"{name}.stderr"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, env=env)
        self.lines: queue.Queue = queue.Queue()
        self.seen: list[str] = []
        self.ended = False
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for raw in self.proc.stdout:
            self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put(None)

    def line(self, timeout: float = 60) -> str | None:
        """The next line; None at the end of the output (and ever after)."""
        if self.ended:
            return None
        text = self.lines.get(timeout=timeout)
        if text is None:
            self.ended = True
        else:
            self.seen.append(text)
        return text

    def ready(self) -> None:
        assert self.line() == "ready", self.stderr_path.read_text(errors="replace")

    def go(self) -> None:
        self.ready()
        if self.barrier is not None:
            self.barrier.touch()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)

    def finish(self, timeout: float = 120) -> tuple[int, list[str], str]:
        code = self.proc.wait(timeout=timeout)
        while self.line(timeout) is not None:
            pass
        return code, self.seen, self.stderr_path.read_text(errors="replace")


@pytest.fixture
def processes():
    """``processes(worker)``: registers a worker, killed if the test ends before it did."""
    started: list[Worker] = []
    yield lambda worker: started.append(worker) or worker
    for worker in started:
        worker.kill()
        worker.proc.wait(timeout=60)


# --- SIGKILL at random moments -------------------------------------------------------------


@dataclass
class Kill:
    """When to kill an attempt: once the worker is past the busy tick ``after`` (None: at once),
    at the first ``phase`` marker line (None: at once), after a random delay below ``within``.
    If the busy tick ``by`` ends without the marker, kill at once (``missed``)."""

    mode: str
    within: float
    after: datetime | None = None
    by: datetime | None = None
    phase: str | None = None


@dataclass
class Landing:
    """Where a kill left the store and the files."""

    kill: Kill
    last_tick: str | None
    killed: bool
    missed: bool = False
    last_marker: str | None = None  # the worker's last marker line: what it was doing
    committed: int = 0  # messages in the store's outbox
    not_in_file: list[str] = field(default_factory=list)  # committed, not (yet) in a file
    unmarked: list[str] = field(default_factory=list)  # in a file, not marked delivered (or its handover not ended)
    torn: list[str] = field(default_factory=list)  # files ending with a partial record

    def kind(self) -> str:
        if not self.killed:
            return "finished before the kill"
        if self.torn:
            return "torn write"
        if self.unmarked:
            return "in a file, not marked delivered"
        if self.not_in_file:
            return "committed, not in a file"
        if self.last_tick is None:
            return "before the first tick completed"
        return "no message in flight"


def kill_plan(rng: random.Random, busy: list[tuple[datetime, dict[str, int]]]) -> list[Kill]:
    """Kills spread over the month: during the event and partner imports and the first tick, in
    the busy ticks (enrolling, running steps, before, during and after deliveries), anywhere in
    between, and while a replay re-runs ticks that were done already."""
    plan = [Kill("resume", SLOW / 4, by=busy[0][0], phase="event"),
            Kill("resume", SLOW, by=busy[0][0], phase="partners"),
            Kill("resume", 0.15), Kill("resume", 0.15)]
    order = ("enroll", "step", "append", "appended", "mark")
    for (when, counts), before in zip(busy, [None] + [t for t, _ in busy]):
        phases = {"enroll": counts["enrolled"] * SLOW / 4,
                  "step": (counts["executed"] + counts["skipped"]) * SLOW / 4,
                  "append": SLOW, "appended": SLOW, "mark": SLOW}
        possible = [p for p in order if (p == "enroll" and counts["enrolled"]) or
                    (p == "step" and counts["executed"] + counts["skipped"]) or
                    (p in ("append", "appended", "mark") and counts["delivered"])]
        chosen = rng.sample(possible, min(2, len(possible))) if possible else []
        plan += [Kill("resume", phases[p], after=before, by=when, phase=p)
                 for p in sorted(chosen, key=order.index)]
    anywhere = [Kill("resume", 0.4) for _ in range(2)]  # wherever the month is by then
    replays = [Kill("replay", rng.uniform(0.3, 1.5)) for _ in range(2)]
    for extra in anywhere + replays:  # at random places after the start
        plan.insert(rng.randrange(5, len(plan) + 1), extra)
    return plan


def attempt(root: Path, worker: Worker, kill: Kill, rng: random.Random, n: int) -> Landing:
    """Release a started worker, kill it as the plan says, and look at what it left."""
    worker.go()
    armed, missed = kill.after is None, False
    if armed and kill.phase is None:  # a moment after the release, whatever the worker is doing
        time.sleep(rng.uniform(0, kill.within))
        worker.kill()
    while worker.proc.poll() is None:
        line = worker.line()
        if line is None or line == "done":
            break
        word, _, value = line.partition(" ")
        if not armed and ((word == "from" and from_iso(value) > kill.after) or
                          (word == "tick" and from_iso(value) >= kill.after)):
            armed = True
            continue
        if armed and kill.by is not None and word == "tick" and from_iso(value) >= kill.by:
            missed = True  # the marker did not come in its tick: kill here, between ticks
            worker.kill()
            break
        if armed and (kill.phase is None or word == kill.phase):
            time.sleep(rng.uniform(0, kill.within))
            worker.kill()
            break
    code, lines, stderr = worker.finish()
    assert code in (0, -signal.SIGKILL), (n, code, stderr, lines[-5:])
    killed = code == -signal.SIGKILL
    if not killed:
        assert lines[-2:-1] == ["done"], (n, lines[-5:], stderr)
    markers = [line for line in lines if " " not in line and line not in ("ready", "done")]
    landing = Landing(kill, None, killed, missed, markers[-1] if markers else None, torn=torn(root))
    with opened_store(root) as (db, tables):
        if {"meta", "outbox"} <= tables:
            last = db.execute("SELECT value FROM meta WHERE key = 'tick.last'").fetchone()
            landing.last_tick = last[0] if last else None
            outbox = dict(db.execute("SELECT id, delivered_at FROM outbox").fetchall())
            handed = {mid for (ids,) in db.execute("SELECT messages FROM handovers") for mid in json.loads(ids)} \
                if "handovers" in tables else set()  # recorded sent, maybe not in their files yet
            written = file_ids(root)
            landing.committed = len(outbox)
            landing.not_in_file = sorted(set(outbox) - set(written))
            landing.unmarked = sorted(i for i in written if outbox.get(i, "") is None or i in handed)
            assert set(written) <= set(outbox), "a file holds a message the store never committed"
            assert max(written.values(), default=1) == 1, f"written twice: {written.most_common(3)}"
    return landing


def run_attempts(root: Path, plan: list, start, rng: random.Random) -> list:
    """Each attempt of ``plan`` (``start(n)`` makes the n-th worker, which imports while the one
    before runs), killed as planned; then one last attempt runs to the end. The landings."""
    landings, upcoming = [], start(0)
    for n, kill in enumerate(plan):
        worker, upcoming = upcoming, start(n + 1)
        landings.append(attempt(root, worker, kill, rng, n))
    upcoming.go()
    code, lines, stderr = upcoming.finish()
    assert (code, lines[-2:-1]) == (0, ["done"]), stderr
    return landings


def test_sigkill_at_random_moments_sends_every_message_exactly_once(tmp_path, reference, processes):
    """Kill the month's hourly ticks (SIGKILL) at ~25 moments, restart each time, then let it
    finish: the files and the store hold exactly what an uninterrupted run produces."""
    want = reference("1h")
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    rng = random.Random(20260701)
    plan = kill_plan(rng, want.busy)
    modes = [kill.mode for kill in plan] + ["replay"]  # the last run re-runs every tick of the month

    def start(n: int) -> Worker:
        slow = SLOW if n < len(plan) else 0
        worker = Worker(root, "1h", modes[n], slow, barrier=tmp_path / f"go-{n}", name=f"attempt-{n}")
        return processes(worker)

    landings = run_attempts(root, plan, start, rng)

    kinds = Counter(landing.kind() for landing in landings)
    summary = "\n".join(f"{l.kind():32} {l.kill.mode:6} target {l.kill.phase or '-':8} last marker "
                        f"{l.last_marker or '-':8} missed={l.missed!s:5} last tick {l.last_tick} "
                        f"committed {l.committed}" for l in landings)
    print(f"\n{summary}\n{dict(kinds)}")
    assert sum(landing.killed for landing in landings) >= 20, summary
    assert len({landing.last_tick for landing in landings}) >= 8, summary  # spread over the month
    for kind in ("before the first tick completed", "committed, not in a file",
                 "in a file, not marked delivered"):
        assert kinds[kind] >= 1, f"no kill landed {kind}:\n{summary}"
    doing = Counter(landing.last_marker for landing in landings if landing.killed)
    for during in (("event", "partners"), ("enroll", "step"), ("append", "appended", "mark")):
        assert sum(doing[m] for m in during) >= 2, f"too few kills landed after {during}:\n{summary}"

    assert_same_messages(outputs(root), want.messages)
    assert_same_state(store_state(root), want.state)
    with Engine.open(root) as engine:
        assert all(m["delivered_at"] for m in engine.outbox()) and len(engine.outbox()) == 124


# --- two ticks at once -----------------------------------------------------------------------


@pytest.mark.parametrize("grids", [("1h", "1h"), ("5h", "5h"), ("1h", "5h")], ids="-".join)
def test_two_processes_ticking_one_store_execute_each_step_once(tmp_path, reference, processes, grids):
    """Two workers start at the same instant on one workspace and store and both run the whole
    month: no step runs twice, nothing is lost, neither crashes (a busy store waits)."""
    want = reference(grids[0])
    if grids[1] != grids[0]:  # granularity invariance (SPEC §6): the two grids make the same month
        other = reference(grids[1])
        assert (other.messages, other.state) == (want.messages, want.state)
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    barrier = tmp_path / "go"
    workers = [processes(Worker(root, every, "replay", barrier=barrier, name=f"worker-{i}"))
               for i, every in enumerate(grids)]
    for worker in workers:
        assert worker.line() == "ready"
    barrier.touch()
    results = [worker.finish() for worker in workers]
    for code, lines, stderr in results:
        assert "database is locked" not in stderr, stderr
        assert (code, lines[-2:-1]) == (0, ["done"]), stderr

    totals = [json.loads(lines[-1]) for _, lines, _ in results]
    for count in ("enrolled", "executed", "skipped", "finished", "failed"):
        assert sum(t[count] for t in totals) == want.totals[count], (count, totals, want.totals)
    assert_same_messages(outputs(root), want.messages)
    assert_same_state(store_state(root), want.state)


def test_a_tick_starting_while_another_records_new_campaigns_waits_for_it(tmp_path, processes):
    """The first tick that sees a campaign file adds its row to the store. A second `engine tick`
    that starts meanwhile (here: while the first is inside that transaction, widened to ~0.1 s a
    campaign) must wait for it and go on, not crash; then each step ran once, as if alone."""
    alone = copy_workspace(EXAMPLES, tmp_path / "alone")
    with Engine.open(alone, store=REFERENCE_STORE) as engine:
        executed = engine.tick(START).executed
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    first = processes(Worker(root, "1h", "tick", "campaign=0.1", name="first"))
    second = processes(Worker(root, "1h", "tick", barrier=tmp_path / "go", name="second"))
    first.go()
    assert second.line() == "ready"
    while (line := first.line()) != "campaign":
        assert line is not None, first.finish()
    (tmp_path / "go").touch()  # the second opens the store and ticks while the first holds it
    results = [first.finish(), second.finish()]
    for code, lines, stderr in results:
        assert (code, lines[-2:-1]) == (0, ["done"]), stderr
    totals = [json.loads(lines[-1]) for _, lines, _ in results]
    assert sum(t["executed"] for t in totals) == executed, totals
    assert_same_messages(outputs(root), outputs(alone))
    assert_same_state(store_state(root), store_state(alone, REFERENCE_STORE))
