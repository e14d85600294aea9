"""The PostgreSQL store (engine/store/postgres.py; issue 7): several `engine tick` workers on one
store split the due steps and never execute one twice, also when one is killed; the claims that
split the work, one by one; the adapter that runs SQLiteStore's SQL; the schema, which must be
SQLite's in PostgreSQL's words; and store URLs that cannot be used (one line, exit 1).

The rest of the suite runs on PostgreSQL as well (engine.testing); these are the tests of what
only a server store does. They need ``ENGINE_TEST_POSTGRES`` (skipped without it), except those
of the adapter's translations and of URL errors.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

psycopg = pytest.importorskip("psycopg")

from engine.api import Engine  # noqa: E402
from engine.channels.file import read_lines  # noqa: E402
from engine.cli import main  # noqa: E402
from engine.errors import StoreContention  # noqa: E402
from engine.store import Conflict  # noqa: E402
from engine.store.postgres import PostgresStore, _translate  # noqa: E402
from engine.store.sqlite import SCHEMA as SQLITE_SCHEMA  # noqa: E402
from engine.testing import dump_store, postgres_store  # noqa: E402
from tests.engine.test_tick import EMAIL, campaign, partner, partners_csv, workspace  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc
T0, T1 = "2026-07-01T00:00Z", "2026-07-02T00:00Z"
PARTNERS = 1200
STEPS = ("first", "second")  # two emails a day after the enrollment: 2,400 due at T1
MAILING = campaign(steps="  - wait: 1d\n" + EMAIL.format(id="first") + EMAIL.format(id="second"))
SERVER = pytest.mark.postgres_only("several workers and row locks: what a server store does")

# A worker: `engine ARGS...` once the file BARRIER exists (Python's imports are done before, so
# that the workers of a test start ticking together).
WORKER = """\
import os, sys, time
from engine.cli import main
from engine import commands, tick  # noqa: F401  (imported before the start, not after)
print("ready", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.005)
sys.exit(main(sys.argv[2:]))
"""


def mailing(tmp_path: Path) -> Path:
    """A workspace whose one tick at T0 enrolls PARTNERS partners, each with two emails due at T1 (batches of 500: several for the workers to share)."""
    rows = [partner(f"p{i:04d}") for i in range(PARTNERS)]
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(*rows))
    assert main(["-w", str(root), "tick", "--at", T0]) == 0
    return root


def start_workers(root: Path, n: int, barrier: Path) -> list[subprocess.Popen]:
    workers = []
    for i in range(n):
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(barrier), "-w", str(root), "tick", "--at", T1,
                                 "--json"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers.append(proc)
    for proc in workers:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    barrier.touch()
    return workers


def count(root: Path, sql: str) -> int:
    with Engine.open(root) as engine:
        return engine.store.db.execute(sql).fetchone()[0]


def assert_each_step_once(root: Path) -> None:
    """Every enrollment executed both steps exactly once; every message is in the outbox once,
    delivered, and in the email file once."""
    with Engine.open(root) as engine:
        db = engine.store.db
        runs = db.execute("SELECT enrollment, step, status FROM step_runs").fetchall()
        outbox = db.execute("SELECT id, delivered_at FROM outbox").fetchall()
        statuses = Counter(status for (status,) in db.execute("SELECT status FROM enrollments").fetchall())
    assert Counter((step, status) for _, step, status in runs) == {(step, "executed"): PARTNERS for step in STEPS}
    assert len({(e, step) for e, step, _ in runs}) == len(runs) == PARTNERS * len(STEPS)
    assert statuses == {"finished": PARTNERS}
    assert len(outbox) == PARTNERS * len(STEPS) and all(delivered for _, delivered in outbox)
    written = Counter(record["id"] for record in read_lines(root / ".engine" / "outbox" / "email.jsonl"))
    assert written == Counter(mid for mid, _ in outbox), "each message once in the file, and only those"


# --- several workers ---------------------------------------------------------------------------------


@SERVER
@pytest.mark.parametrize("workers", [2, 4])
def test_workers_at_the_same_time_split_the_due_steps_and_execute_each_once(tmp_path, workers):
    root = mailing(tmp_path)
    procs = start_workers(root, workers, tmp_path / "go")
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0 and "Traceback" not in err, err
        reports.append(json.loads(out))
    executed = [report["executed"] for report in reports]
    assert sum(executed) == PARTNERS * len(STEPS), executed  # none twice, none left out
    assert sum(report["finished"] for report in reports) == PARTNERS, reports
    assert sum(report["delivered"] for report in reports) == PARTNERS * len(STEPS), reports
    assert_each_step_once(root)
    print(f"\n{workers} workers executed {executed}")  # the split (pytest -s shows it)


@SERVER
def test_a_worker_killed_while_ticking_loses_nothing_and_a_tick_after_it_repeats_nothing(tmp_path):
    root = mailing(tmp_path)
    victim, other = start_workers(root, 2, tmp_path / "go")
    while victim.poll() is None and count(root, "SELECT count(*) FROM step_runs") == 0:
        pass  # until the store shows steps executed (or the victim finished first)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    out, err = other.communicate(timeout=600)
    assert other.returncode == 0, err
    assert main(["-w", str(root), "tick", "--at", T1]) == 0  # picks up whatever the victim held
    assert_each_step_once(root)


# --- the claims, one by one ------------------------------------------------------------------------


@pytest.fixture
def two(store_url):
    """Two connections (two workers) to the test's store, with 20 active enrollments due at T0."""
    a, b = PostgresStore(store_url), PostgresStore(store_url)
    due = datetime(2026, 7, 1, tzinfo=UTC)
    with a.transaction():
        for i in range(20):
            a.add_enrollment("c", f"p{i:02d}", status="active", origin="trigger", source=None, created_at=due,
                             started_at=due, next_step="s", due_at=due)
    yield a, b, due
    a.close()
    b.close()


def waiting_for_a_lock(url: str, pid: int) -> bool:
    """Whether the server session ``pid`` waits for a lock now."""
    with psycopg.connect(url, autocommit=True) as watcher:
        row = watcher.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


@SERVER
def test_batches_of_two_workers_claim_different_enrollments_without_waiting(two):
    a, b, due = two
    with a.transaction(exclusive=False):
        mine = a.due(due, ["c"], 12)
        with b.transaction(exclusive=False):
            theirs = b.due(due, ["c"], 12)  # the 8 that a did not claim, at once
    assert len(mine) == 12 and len(theirs) == 8
    assert {e.id for e in mine}.isdisjoint(e.id for e in theirs)
    assert sorted(e.partner for e in mine + theirs) == [f"p{i:02d}" for i in range(20)]


@SERVER
def test_when_every_due_step_is_claimed_a_worker_waits_and_then_sees_what_is_still_due(two):
    """A worker must not take "nothing unclaimed" for "nothing due": later trigger occurrences and
    the end of its tick come after those steps. It waits for them, then takes what is still due."""
    a, b, due = two
    found: list = []
    with a.transaction(exclusive=False):
        claimed = a.due(due, ["c"], 50)
        assert len(claimed) == 20
        for e in claimed[5:]:  # a moves 15 past the due time; 5 stay due (as a step without a wait)
            a.update_enrollment(e, due_at=due + timedelta(days=1))

        def other_worker():
            with b.transaction(exclusive=False):
                found.extend(b.due(due, ["c"], 50))

        pid = b.conn.info.backend_pid
        thread = threading.Thread(target=other_worker)
        thread.start()
        while not waiting_for_a_lock(b.url, pid):
            assert thread.is_alive(), "b did not wait for a's claims"
    thread.join(timeout=60)
    assert sorted(e.partner for e in found) == [e.partner for e in claimed[:5]]


@SERVER
def test_an_exclusive_transaction_waits_for_batches_and_they_for_it(two):
    a, b, due = two
    with a.transaction(exclusive=False):
        [e] = a.due(due, ["c"], 1)
        done = threading.Event()

        def operation():  # a pause, say: exclusive
            with b.transaction():
                b.update_enrollment(b.enrollment(e.id), status="paused")
            done.set()

        pid = b.conn.info.backend_pid
        thread = threading.Thread(target=operation)
        thread.start()
        while not waiting_for_a_lock(b.url, pid):
            assert not done.is_set(), "the exclusive transaction ran beside a batch"
        a.update_enrollment(e, due_at=due + timedelta(hours=1))  # the batch's own change commits first
    thread.join(timeout=60)
    assert done.is_set() and a.enrollment(e.id).status == "paused"


def queue_six_messages(store: PostgresStore) -> None:
    """m0 … m5, waiting for the email transport."""
    with store.transaction():
        for i in range(6):
            store.add_message({"id": f"m{i}", "channel": "email", "campaign": "c", "step": "s",
                               "partner": f"p{i:02d}", "at": "2026-07-01T00:00:00Z"}, 1)


@SERVER
def test_two_workers_delivering_claim_different_messages(two):
    a, b, due = two
    queue_six_messages(a)
    mine = a.claim_messages(due, ["email"], 4)
    theirs = b.claim_messages(due, ["email"], 10)
    assert [m.id for m in mine] == ["m0", "m1", "m2", "m3"] and [m.id for m in theirs] == ["m4", "m5"]
    assert a.claimer() != b.claimer() and a.claimer_alive(b.claimer()) and b.claimer_alive(a.claimer())
    gone = b.claimer()
    b.close()  # a worker gone: its claims are taken back by the next delivery that looks
    for _ in range(100):  # the server ends the session a moment after the client left
        if not a.claimer_alive(gone):
            break
        time.sleep(0.05)
    assert a.reclaim_abandoned(due) == 2
    assert [m.id for m in a.claim_messages(due, ["email"], 10)] == ["m4", "m5"]


@SERVER
def test_a_refused_insert_leaves_the_transaction_usable(store_url):
    """SQLite's code catches IntegrityError and goes on; on PostgreSQL a unique violation would
    abort the whole transaction, so the adapter never lets one happen (ON CONFLICT DO NOTHING)."""
    store = PostgresStore(store_url)
    at = datetime(2026, 7, 1, tzinfo=UTC)
    try:
        with store.transaction():
            first = store.add_enrollment("c", "p1", status="active", origin="trigger", source=None, created_at=at,
                                         started_at=at, next_step="s", due_at=at)
            second = store.add_enrollment("c", "p1", status="active", origin="trigger", source=None, created_at=at,
                                          started_at=at, next_step="s", due_at=at)
            alert = store.raise_alert("c", at, 50.0, 90.0)
            again = store.raise_alert("c", at, 40.0, 90.0)
            store.set_meta("after", "yes")  # the transaction goes on
        assert (first, second, alert, again) == (1, None, 1, None)
        assert store.meta("after") == "yes" and len(store.enrollments_of("p1")) == 1
        with pytest.raises(Conflict):
            e = store.enrollment(first)
            store.update_enrollment(e, status="paused")
            store.update_enrollment(e, status="active")  # the old version: lost
    finally:
        store.close()


# --- a batch's statements (issue 17) -----------------------------------------------------------------


def statements(store: PostgresStore) -> list[str]:
    """The statements the store's connection runs from now on (their first three words)."""
    seen: list[str] = []

    class Counting(psycopg.Cursor):
        def execute(self, query, *args, **kwargs):
            seen.append(" ".join(str(query).split()[:3]))
            return super().execute(query, *args, **kwargs)

        def copy(self, statement, *args, **kwargs):
            seen.append(" ".join(str(statement).split()[:3]))
            return super().copy(statement, *args, **kwargs)

    store.conn.cursor_factory = Counting
    return seen


def count_rows(store: PostgresStore, table: str, where: str = "true") -> int:
    return store.db.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchone()[0]


@SERVER
def test_a_batchs_compare_and_sets_are_one_statement_that_reads_and_the_commit_see(two):
    a, _, due = two
    later = due + timedelta(days=1)
    seen = statements(a)
    with a.transaction(exclusive=False):
        claimed = a.due(due, ["c"], 20)
        del seen[:]
        moved = [a.update_enrollment(e, next_step="t", due_at=later) for e in claimed]
        moved[0] = a.update_enrollment(moved[0], status="paused")  # the same row again: one change
        with pytest.raises(Conflict):
            a.update_enrollment(claimed[1], due_at=due)  # an old version, as a row would refuse it
        assert seen == []  # held back until the next statement...
        assert a.enrollment(claimed[0].id).status == "paused"  # ...which sees them
        assert [s for s in seen if s.startswith("UPDATE")] == ["UPDATE enrollments SET"] * 2  # two shapes
        assert moved[1].version == claimed[1].version + 1
    rows = {e.id: e for e in a.enrollments_in("c")}
    assert all(rows[e.id].due_at == later and rows[e.id].version == e.version for e in moved)
    assert rows[claimed[0].id].status == "paused" and rows[claimed[0].id].next_step == "t"


@SERVER
def test_a_held_back_change_to_a_row_changed_meanwhile_rolls_the_batch_back(two):
    a, _, due = two
    with pytest.raises(StoreContention), a.transaction(exclusive=False):
        [e] = a.due(due, ["c"], 1)
        a.update_enrollment(e, due_at=due + timedelta(days=1))
        a.conn.execute("UPDATE enrollments SET version = version + 1 WHERE id = %s", (e.id,))  # behind its back
    assert a.enrollment(e.id).due_at == due  # nothing of the batch committed


@SERVER
def test_a_batchs_rows_are_one_copy_or_insert_and_a_taken_key_refuses_them(two):
    a, _, due = two
    seen = statements(a)
    rows = [(i, "s", 1, "executed", None, due, due, None) for i in range(1, 6)]
    with a.transaction():
        a.record_steps(rows)
        a.record_sends([(f"p{i}", "email", due, i, "s", 1) for i in (1, 2)])
    assert [s for s in seen if s.startswith(("INSERT", "COPY"))] == ["COPY step_runs (enrollment,", "COPY sends (partner,"]
    assert count_rows(a, "step_runs") == 5 and count_rows(a, "sends") == 2
    with pytest.raises(sqlite3.IntegrityError), a.transaction():  # a send is a step run's: never twice
        a.record_sends([(f"p{i}", "email", due, i, "s", 1) for i in (3, 1)])
    assert count_rows(a, "sends") == 2
    with pytest.raises(sqlite3.IntegrityError), a.transaction():
        a.record_steps([(9, "s", 1, "executed", None, due, due, None), rows[0]])
    assert count_rows(a, "step_runs") == 5  # neither row: the batch did not commit
    with a.transaction():  # refused, the transaction goes on, as on SQLite
        with pytest.raises(sqlite3.IntegrityError):
            a.record_steps([(9, "s", 1, "executed", None, due, due, None), rows[0]])
        a.record_steps([(10, "s", 1, "executed", None, due, due, None)])
    assert count_rows(a, "step_runs") == 6


@SERVER
def test_idempotent_deliveries_claim_messages_by_row_locks_for_their_transaction(two):
    a, b, due = two
    queue_six_messages(a)
    with a.delivering():
        mine = a.lock_messages(due, ["email"], 4)
        with b.delivering():
            theirs = b.lock_messages(due, ["email"], 10)
            b.record_outcomes([(m.id, "sent", None, due) for m in theirs], due)
        assert [m.id for m in mine] == ["m0", "m1", "m2", "m3"] and [m.id for m in theirs] == ["m4", "m5"]
    with pytest.raises(RuntimeError), a.delivering():
        assert [m.id for m in a.lock_messages(due, ["email"], 10)] == ["m0", "m1", "m2", "m3"]
        raise RuntimeError("a worker dies before recording its outcomes")
    with b.delivering():  # the rows are free again, and nothing claims them in the table
        assert [m.id for m in b.lock_messages(due, ["email"], 10)] == ["m0", "m1", "m2", "m3"]
    assert count_rows(a, "outbox", "claimed_by IS NOT NULL") == 0


@pytest.mark.no_store
def test_a_long_in_list_is_one_array_unless_its_values_are_of_mixed_kinds():
    query = _translate(f"SELECT a FROM t WHERE id IN ({', '.join('?' * 20)}) AND b NOT IN ({', '.join('?' * 16)}) "
                       "AND c IN (?, ?)", "")
    assert query.sql == "SELECT a FROM t WHERE id = ANY(%b) AND b <> ALL(%b) AND c IN (%s, %s)"
    sql, params = query.bind([*range(20), *"abcdefghijklmnop", "x", "y"])
    assert sql == query.sql and params == [list(range(20)), list("abcdefghijklmnop"), "x", "y"]
    sql, params = query.bind([*range(19), 1.5, *"abcdefghijklmnop", "x", "y"])  # an int and a float: as written
    assert sql.startswith("SELECT a FROM t WHERE id IN (%s, %s") and len(params) == 38


@pytest.mark.no_store
def test_a_long_in_list_gets_its_own_parameters_after_quoted_text_and_short_lists():
    """The parameters before a long list are counted across quoted text and short lists (the
    due query: ``status = 'active' AND due_at <= ? AND campaign || '' IN (...)``)."""
    long = ", ".join("?" * 16)
    query = _translate(f"SELECT a FROM t WHERE s = 'x' AND b <= ? AND c || '' IN (?, ?) AND d IN ({long}) "
                       f"AND e IN (?) AND f IN ({long}) LIMIT ?", "")
    ids, names = [f"i{n}" for n in range(16)], [f"n{n}" for n in range(16)]
    sql, params = query.bind(["b", "c1", "c2", *ids, "e", *names, 9])
    assert sql.count("= ANY(%b)") == 2 and params == ["b", "c1", "c2", ids, "e", names, 9]


# --- opening and the schema --------------------------------------------------------------------------


@SERVER
def test_processes_opening_a_fresh_store_together_all_get_it(tmp_path):
    with postgres_store() as url:
        with psycopg.connect(url, autocommit=True) as admin:
            schema = admin.execute("SELECT current_schema()").fetchone()[0]
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')  # from scratch: no tables at all
            admin.execute(f'CREATE SCHEMA "{schema}"')
        opener = "import sys\nfrom engine.store.postgres import PostgresStore\nPostgresStore(sys.argv[1]).close()\n"
        procs = [subprocess.Popen([sys.executable, "-c", opener, url], cwd=ROOT, stderr=subprocess.PIPE, text=True)
                 for _ in range(4)]
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        store = PostgresStore(url)
        try:
            assert store.partner_count() == 0 and store.meta("schema.postgresql")
        finally:
            store.close()


@SERVER
def test_the_schema_has_the_tables_columns_and_indexes_of_sqlites(store_url):
    lite = sqlite3.connect(":memory:")
    lite.executescript(SQLITE_SCHEMA)
    want = {t: {row[1] for row in lite.execute(f"PRAGMA table_info({t})")}
            for (t,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    want_indexes = {name for (name,) in lite.execute("SELECT name FROM sqlite_master WHERE type = 'index' "
                                                     "AND name NOT LIKE 'sqlite_autoindex%'")}
    store = PostgresStore(store_url)
    try:
        got: dict[str, set[str]] = {}
        for table, column in store.db.execute("SELECT table_name, column_name FROM information_schema.columns "
                                              "WHERE table_schema = current_schema()").fetchall():
            got.setdefault(table, set()).add(column)
        got_indexes = {name for (name,) in store.db.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND indexname NOT LIKE '%pkey' "
            "AND indexname NOT LIKE '%key'").fetchall()}
        [(data_type,)] = store.db.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = "
                                          "current_schema() AND table_name = 'partners' AND column_name = 'data'")
    finally:
        store.close()
    got["outbox"].discard("rowid")  # SQLite's is implicit
    got.pop("partner_columns", None)  # made by the partner import, of engine.yaml's fields (a reused store has one)
    got_indexes = {name for name in got_indexes if not name.startswith("partner_columns_")}
    assert got == want
    assert got_indexes == want_indexes
    assert data_type == "jsonb"


@SERVER
def test_partner_records_are_jsonb_and_read_back_as_the_json_text_sqlite_holds(make_engine, tmp_path):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1", name="Äinö ☃")))
    engine = make_engine(root, at=T0)
    engine.tick()
    [(pid, data, present)] = list(engine.store.partner_rows())
    assert (pid, present) == ("p1", True) and json.loads(data)["name"] == "Äinö ☃"
    assert engine.store.db.execute("SELECT data ->> 'name' FROM partners").fetchone() == ("Äinö ☃",)


@SERVER
def test_simulate_never_touches_the_store_that_engine_store_names(tmp_path, capsys):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    before = dump_store(root)
    code = main(["-w", str(root), "simulate", "--from", "2026-07-01", "--until", "2026-07-03"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "mailing" in out and "2 email" in out
    assert dump_store(root) == before


# --- what the adapter says to PostgreSQL ------------------------------------------------------------


@pytest.mark.no_store
@pytest.mark.parametrize("sqlite, postgresql", [
    ("SELECT a FROM t WHERE b = ? AND c LIKE 'x?%'", "SELECT a FROM t WHERE b = %s AND c LIKE 'x?%%'"),
    ("INSERT OR IGNORE INTO locks (campaign) VALUES (?)",
     "INSERT INTO locks (campaign) VALUES (%s) ON CONFLICT DO NOTHING"),
    ("INSERT INTO outbox (id) VALUES (?)", "INSERT INTO outbox (id) VALUES (%s) ON CONFLICT DO NOTHING"),
    ("INSERT INTO log (at, user) VALUES (?, ?)",
     'INSERT INTO log (at, "user") VALUES (%s, %s) ON CONFLICT DO NOTHING RETURNING seq'),
    ("SELECT l.user, users, added_by FROM log l", 'SELECT l."user", users, added_by FROM log l'),
    ("SELECT x FROM enrollments INDEXED BY enrollments_due WHERE a = ?", "SELECT x FROM enrollments WHERE a = %s"),
    ("SELECT json_extract(o.payload, '$.language') FROM outbox o", "SELECT (o.payload::jsonb ->> 'language') FROM outbox o"),
    ("INSERT INTO u (a, at) VALUES (?, ?) ON CONFLICT (a) DO UPDATE SET at = min(at, excluded.at)",
     "INSERT INTO u (a, at) VALUES (%s, %s) ON CONFLICT (a) DO UPDATE SET at = least(u.at, excluded.at)"),
    ("INSERT INTO p (id) SELECT id FROM s WHERE true ON CONFLICT (id) DO NOTHING",
     "INSERT INTO p (id) SELECT id FROM s WHERE true ON CONFLICT (id) DO NOTHING"),
])
def test_sqlite_statements_in_postgresql_words(sqlite, postgresql):
    assert _translate(sqlite, "").sql == postgresql


@pytest.mark.no_store
def test_rows_are_claimed_by_selects_only():
    assert _translate("SELECT a FROM t ORDER BY a LIMIT ?", " FOR UPDATE SKIP LOCKED").sql == \
        "SELECT a FROM t ORDER BY a LIMIT %s FOR UPDATE SKIP LOCKED"
    assert _translate("UPDATE t SET a = ?", " FOR UPDATE SKIP LOCKED").sql == "UPDATE t SET a = %s"


# --- store URLs that cannot be used ----------------------------------------------------------------


@pytest.mark.no_store
def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path, capsys):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    code = main(["-w", str(root), "tick", "--store", "postgresql://engine@127.0.0.1:1/nothing?connect_timeout=5"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err.startswith("engine: error: cannot open the PostgreSQL store postgresql://engine@127.0.0.1:1/")
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.no_store
def test_a_password_in_the_url_is_not_shown(tmp_path, capsys):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    code = main(["-w", str(root), "status", "--store", "postgresql://engine:s3cret@127.0.0.1:1/nothing"])
    _, err = capsys.readouterr()
    assert code == 1 and "s3cret" not in err and "engine:***@127.0.0.1:1" in err


@pytest.mark.no_store
def test_without_psycopg_the_error_says_what_to_install(tmp_path, capsys, monkeypatch):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails, as when not installed
    monkeypatch.delitem(sys.modules, "engine.store.postgres")
    code = main(["-w", str(root), "tick", "--store", "postgresql:///engine_test"])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == ("engine: error: PostgreSQL stores need psycopg: pip install 'campaign-engine[postgresql]' "
                   "(or 'psycopg[binary]')\n")


@SERVER
def test_a_search_path_naming_no_schema_is_one_line(tmp_path, capsys):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    url = os.environ["ENGINE_TEST_POSTGRES"]
    missing = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3Dno_such_schema_here"
    code = main(["-w", str(root), "tick", "--store", missing])
    _, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1
    assert "has no schema to live in" in err


@pytest.mark.no_store
def test_engine_store_overrides_engine_yaml_and_the_store_option_overrides_it(tmp_path, capsys, monkeypatch):
    root = workspace(tmp_path, {"mailing": MAILING}, partners_csv(partner("p1")))
    monkeypatch.setenv("ENGINE_STORE", "sqlite:///elsewhere.db")
    assert main(["-w", str(root), "tick", "--at", T0]) == 0
    assert (root / "elsewhere.db").exists() and not (root / ".engine" / "state.db").exists()
    monkeypatch.setenv("ENGINE_STORE", "mysql://nowhere")  # not even a store: --store wins anyway
    assert main(["-w", str(root), "tick", "--at", T0, "--store", "sqlite:///third.db"]) == 0
    assert (root / "third.db").exists()
    assert main(["-w", str(root), "tick", "--at", T0]) == 2  # ENGINE_STORE alone: a usage error
    _, err = capsys.readouterr()
    assert "unsupported store URL 'mysql://nowhere'" in err
