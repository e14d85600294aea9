"""What no single bad input or extra process may do to delivery (issue 18): a simulation never
reaches a real transport, one message's failure is that message's outcome (recorded before the
next hand-over), claims keep two processes from handing one message over twice, a store file
that is not a store is refused, a campaign that fails at run time fails alone, a tick far in the
future is refused without --force, and a busy or full store is one clear line.

Transports are real servers on 127.0.0.1 (the fixtures of test_transports); commands run
through the CLI (``engine.cli.main``) unless a test needs the engine's own objects.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl import ids
from engine import advance as advance_module
from engine.api import Engine
from engine.channels import FAILED, RETRY, SENT, Outcome, Outgoing
from engine.cli import main
from engine.delivery import hand_over
from engine.errors import StoreContention
from engine.steps import message_id, message_parts
from engine.store import sqlite as sqlite_store
from engine.testing import copy_workspace
from tests.engine.test_transports import (NOTE, TEXTS, TWO_EMAILS, hook_server, partners_csv,  # noqa: F401
                                          smtp_server, workspace)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
T0 = "2026-07-01T10:00:00Z"
PARTNERS = partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi"), ("p3", "Maria", "en"))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- 1. a simulation never reaches a real transport ----------------------------------------------


def test_simulate_and_test_never_reach_the_configured_smtp_server_or_webhook(
        tmp_path, smtp_server, hook_server, capsys):
    root = workspace(tmp_path, {"note": NOTE, "texts": TEXTS}, PARTNERS, smtp_port=smtp_server.port,
                     hook_url=hook_server.url)
    smtp_server.start()
    hook_server.start()
    code, out, err = run(capsys, "-w", str(root), "simulate", "--from", T0, "--until", "2026-07-01T12:00:00Z", "--json")
    assert code == 0, err
    simulated = json.loads(out)
    assert sorted((m["channel"], m["partner"]) for m in simulated["messages"]) == [
        ("email", "p1"), ("email", "p2"), ("email", "p3"), ("sms", "p1"), ("sms", "p2"), ("sms", "p3")]
    assert {m["status"] for m in simulated["messages"]} == {"sent"}  # to the copy's own files
    code, out, err = run(capsys, "-w", str(root), "test", "note", "--partner", "p1", "--json")
    assert code == 0, err
    assert smtp_server.mailbox.received == [] and hook_server.received == []
    assert not (root / ".engine" / "state.db").exists()  # nor the workspace's state


# --- 2. one message's failure is that message's outcome ------------------------------------------


class Scripted:
    """A transport that raises for the messages named in ``bad`` and takes the others."""

    idempotent, external = False, True

    def __init__(self, bad: set[str], error: Exception):
        self.bad, self.error, self.handed = bad, error, []

    def send(self, batch):
        for message in batch:
            self.handed.append(message.id)
            if message.id in self.bad:
                raise self.error
            yield Outcome(message.id, SENT)


@pytest.mark.no_store
@pytest.mark.parametrize("error, status", [(ValueError("Invalid header value b'p8\\r\\nX'"), FAILED),
                                           (ConnectionResetError("reset by peer"), RETRY)])
def test_what_a_transport_raises_is_the_outcome_of_that_message_alone(error, status):
    batch = [Outgoing(f"m{i}", "sms", {"to": "+358"}) for i in range(5)]
    transport = Scripted({"m1", "m3"}, error)
    outcomes = list(hand_over(transport, batch))
    assert [(o.id, o.status) for o in outcomes] == [("m0", SENT), ("m1", status), ("m2", SENT), ("m3", status),
                                                    ("m4", SENT)]
    assert transport.handed == ["m0", "m1", "m2", "m3", "m4"]  # each handed over once
    assert type(error).__name__ in outcomes[1].error


@pytest.mark.no_store
def test_a_file_batch_that_cannot_be_written_is_retried_message_by_message():
    class Picky:
        idempotent, external = True, False

        def send(self, batch):
            if any(m.id == "poison" for m in batch):
                raise TypeError("not JSON serializable")
            return iter([Outcome(m.id, SENT) for m in batch])

    outcomes = list(hand_over(Picky(), [Outgoing(i, "email", {}) for i in ("a", "poison", "b")]))
    assert [(o.id, o.status) for o in outcomes] == [("a", SENT), ("poison", FAILED), ("b", SENT)]


def test_a_webhook_message_id_with_a_line_break_or_non_latin_text_is_one_header_line(
        tmp_path, make_engine, hook_server):
    """Message ids reach the Idempotency-Key header, which is one line of Latin-1; partner ids
    may be any readable text (and a line break once got through): the key is the id
    percent-encoded, the JSON body has the id as it is, and each message goes once."""
    root = workspace(tmp_path, {"texts": TEXTS}, PARTNERS, hook_url=hook_server.url)
    hook_server.start()
    engine = make_engine(root, at=T0)
    odd = {"bad\r\nX-Injected: 1": "bad%0D%0AX-Injected:%201", "texts:名前:1:nudge:1": "texts:%E5%90%8D%E5%89%8D:1:nudge:1"}
    with engine.store.transaction():
        for mid in odd:
            engine.store.add_message({"id": mid, "channel": "sms", "campaign": "texts", "step": "nudge",
                                      "partner": "p1", "to": "+358", "body": "x", "at": "2026-07-01T09:00:00Z"}, 1)
    engine.tick(T0)
    engine.tick("2026-07-02T11:00:00Z")
    assert {(m["status"], m["attempts"]) for m in engine.outbox("sms")} == {("sent", 1)}
    received = {headers["idempotency-key"]: body["id"] for headers, body in hook_server.received}
    assert len(hook_server.received) == 5 and "x-injected" not in {k for h, _ in hook_server.received for k in h}
    assert {key: received[key] for key in odd.values()} == {key: mid for mid, key in odd.items()}


def test_outbox_forgets_the_last_error_of_a_message_once_it_is_sent(tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"note": NOTE}, PARTNERS, smtp_port=smtp_server.port)
    engine = make_engine(root, at=T0)
    engine.tick(T0)  # the server is down
    assert {m["last_error"] for m in engine.outbox("email")} == {"connection refused"}
    smtp_server.start()
    engine.tick("2026-07-01T11:00:00Z")
    assert {(m["status"], m["last_error"], m["attempts"]) for m in engine.outbox("email")} == {("sent", None, 2)}


# --- 4. claims: two processes never hand one message over at once ---------------------------------


def test_a_claimed_message_is_not_claimed_again_until_its_claimer_dies(tmp_path, make_engine):
    root = workspace(tmp_path, {"note": NOTE}, PARTNERS)
    engine = make_engine(root, at=T0)
    store = engine.store
    with store.transaction():
        for i in range(3):
            store.add_message({"id": f"m{i}", "channel": "email", "campaign": "note", "step": "memo",
                               "partner": f"p{i}", "at": "2026-07-01T09:00:00Z"}, 1)
    due = engine.time(T0)
    first = store.claim_messages(due, ["email"], 2)
    assert [m.id for m in first] == ["m0", "m1"]
    assert [m.id for m in store.claim_messages(due, ["email"], 10)] == ["m2"]
    assert store.claim_messages(due, ["email"], 10) == []
    assert store.reclaim_abandoned(due) == 0  # we are alive
    store.release_claims(["m1"])
    assert [m.id for m in store.claim_messages(due, ["email"], 10)] == ["m1"]


@pytest.mark.sqlite_only("claims of a process that is gone: SQLite names processes (PostgreSQL: test_postgres_store)")
def test_the_claims_of_a_killed_process_are_taken_back_and_logged(tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"note": NOTE}, PARTNERS, smtp_port=smtp_server.port)
    smtp_server.start()
    engine = make_engine(root, at=T0)
    with engine.store.transaction():
        engine.store.add_message({"id": "m0", "channel": "email", "campaign": "note", "step": "memo",
                                  "partner": "p1", "to": "p1@example.com", "subject": "s", "body": "b",
                                  "at": "2026-07-01T09:00:00Z"}, 1)
    script = ("import sys; sys.path.insert(0, sys.argv[2]); from pathlib import Path; "
              "from engine.store.sqlite import SQLiteStore; from engine.clock import from_iso; "
              "s = SQLiteStore(Path(sys.argv[1])); print(len(s.claim_messages(from_iso('2026-07-02T00:00:00Z'), ['email'], 5)))")
    done = subprocess.run([sys.executable, "-c", script, str(engine.store.path), str(Path(__file__).parents[2])],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "1", done.stderr  # claimed, then the process ended without an outcome
    assert engine.store.claim_messages(engine.time(T0), ["email"], 5) == []
    report = engine.tick(T0)
    assert report.delivered == 4  # the note to p1..p3, and m0 again
    assert sorted(smtp_server.mailbox.ids().values()) == [1, 1, 1, 1]
    assert [e["detail"]["count"] for e in engine.log() if e["action"] == "delivery.reclaimed"] == [1]


# --- 3. a store file that is not a store ----------------------------------------------------------


@pytest.mark.sqlite_only("the SQLite store's file")
@pytest.mark.parametrize("content, problem", [
    (b"", "is not an engine store: the file is empty"),
    (b"hello, world\n" * 20, "is not an engine store: it is not a SQLite database"),
], ids=["empty", "text"])
def test_a_store_file_that_is_not_a_store_is_refused_and_left_alone(tmp_path, capsys, content, problem):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    state = root / ".engine" / "state.db"
    state.parent.mkdir()
    state.write_bytes(content)
    for argv in (["tick", "--at", "2026-07-01T00:00"], ["status"], ["start", "demo-invite", "--partner", "p001"]):
        code, out, err = run(capsys, "-w", str(root), *argv)
        assert (code, out) == (1, ""), err
        assert err.startswith(f"engine: error: {state} {problem}") and len(err.splitlines()) == 1
    assert state.read_bytes() == content
    assert not (root / ".engine" / "outbox").exists()


@pytest.mark.sqlite_only("the SQLite store's file")
def test_a_truncated_or_foreign_database_is_refused(tmp_path, capsys):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    assert run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00")[0] == 0
    state = root / ".engine" / "state.db"
    data = state.read_bytes()
    state.write_bytes(data[:len(data) // 3])
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-02T00:00")
    assert code == 1 and err.startswith(f"engine: error: the store {state} is damaged") and len(err.splitlines()) == 1
    foreign = tmp_path / "other.db"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()
    code, out, err = run(capsys, "-w", str(root), "status", "--store", f"sqlite:///{foreign}")
    assert code == 1 and err == f"engine: error: {foreign} is not an engine store: a SQLite database with other tables (invoices)\n"


@pytest.mark.sqlite_only("the SQLite store's file")
def test_a_new_store_appears_whole(tmp_path, capsys):
    """Created under another name and renamed into place: a kill while creating it leaves no
    empty state.db behind (which would now be refused)."""
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    assert run(capsys, "-w", str(root), "status")[0] == 0
    names = sorted(p.name for p in (root / ".engine").iterdir())
    assert "state.db" in names and not [n for n in names if ".new-" in n]


# --- 5. a campaign that fails at run time fails alone -------------------------------------------------


def test_a_campaign_that_fails_at_run_time_stops_alone_and_the_others_deliver(tmp_path, capsys, monkeypatch):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    real = advance_module.Advance.advance

    def broken(self, e, *args, **kwargs):
        if e.campaign == "partner-onboarding":
            raise OverflowError("date value out of range")
        return real(self, e, *args, **kwargs)

    monkeypatch.setattr(advance_module.Advance, "advance", broken)
    code, out, err = run(capsys, "-w", str(root), "run", "--from", "2026-07-01T00:00", "--until", "2026-07-07T00:00",
                         "--every", "6h", "--json")
    report = json.loads(out)
    assert code == 1
    assert [e["message"] for e in report["errors"]] == [
        "campaign 'partner-onboarding' failed at run time and stopped for this tick (OverflowError: date value "
        "out of range); the other campaigns ran, and it tries again at the next tick"]
    assert report["errors"][0]["path"].endswith("partner-onboarding.yaml")
    with Engine.open(root) as engine:
        assert {m["campaign"] for m in engine.outbox()} == {"renewal-reminder"}  # the others ran
        failures = [e["campaign"] for e in engine.log() if e["action"] == "campaign.failed"]
        assert set(failures) == {"partner-onboarding"} and len(failures) == 25  # each tick, once
    monkeypatch.undo()  # fixed: it catches up at the next tick
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-07T01:00", "--json")
    assert code == 0, err
    with Engine.open(root) as engine:
        assert any(m["campaign"] == "partner-onboarding" for m in engine.outbox())


def test_a_deadlock_is_retried_and_the_tick_counts_each_step_once(tmp_path, make_engine, monkeypatch):
    """A server store rolls a transaction back when workers deadlock (StoreContention): the
    tick runs again and ends as if it had not happened."""
    alone = make_engine(EXAMPLES, at="2026-07-01T00:00", name="alone").tick()
    engine = make_engine(EXAMPLES, at="2026-07-01T00:00", name="contended")
    real, calls = engine.store.record_steps, []

    def deadlocked_once(rows):
        calls.append(len(rows))
        if len(calls) == 1:
            raise StoreContention("the PostgreSQL store rolled a transaction back: deadlock detected")
        return real(rows)

    monkeypatch.setattr(engine.store, "record_steps", deadlocked_once)
    report = engine.tick()
    assert len(calls) == 2
    assert report.to_json() == alone.to_json()
    assert len(engine.outbox()) == alone.executed


# --- 12. a tick far in the future ---------------------------------------------------------------------


def test_a_tick_years_ahead_is_refused_without_force_and_changes_nothing(tmp_path, capsys):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    assert run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00")[0] == 0
    with Engine.open(root) as engine:
        before = (len(engine.outbox()), len(engine.log()))
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2031-01-01T00:00:00Z")
    assert (code, out) == (3, "")
    assert err.startswith("engine: refused: a tick at 2031-01-01T00:00:00Z would run ") and "--force" in err
    with Engine.open(root) as engine:
        assert (len(engine.outbox()), len(engine.log())) == before
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2029-01-01T00:00", "--force")
    assert code == 0, err


def test_a_tick_that_would_fire_a_cron_trigger_thousands_of_times_is_refused(tmp_path, capsys):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    (root / "campaigns" / "every-minute.yaml").write_text(
        'name: Every minute\naudience:\n  rulesets:\n    none: "false"\ntrigger:\n  cron: "* * * * *"\n'
        "steps:\n  - id: hi\n    letter: {template: letter.txt.j2}\n", encoding="utf-8")
    assert run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00")[0] == 0
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-03T00:00")
    assert code == 3 and "would fire the cron trigger of every-minute more than 1000 times" in err
    code, out, err = run(capsys, "-w", str(root), "run", "--until", "2026-07-03T00:00", "--every", "6h")
    assert code == 0, err


# --- 18. a busy or full store -------------------------------------------------------------------------


@pytest.mark.sqlite_only("SQLite's write lock and page limit")
def test_a_store_locked_by_another_process_is_busy_exit_3(tmp_path, capsys, monkeypatch):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    assert run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00")[0] == 0
    holder = sqlite3.connect(root / ".engine" / "state.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT", 0.2)  # seconds (60 in real life)
    try:
        code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T01:00")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert code == 3 and err.startswith("engine: refused: ") and "busy" in err and len(err.splitlines()) == 1


@pytest.mark.sqlite_only("SQLite's write lock and page limit")
def test_a_full_disk_is_one_clear_line(tmp_path, capsys, monkeypatch):
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    assert run(capsys, "-w", str(root), "status")[0] == 0
    real_init = sqlite_store.SQLiteStore.__init__

    def tiny(self, path):
        real_init(self, path)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages}")  # no room to grow: "database or disk is full"

    monkeypatch.setattr(sqlite_store.SQLiteStore, "__init__", tiny)
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00")
    assert code == 1 and err.startswith("engine: error: the store cannot be written: database or disk is full")
    assert "Traceback" not in err and len(err.splitlines()) == 1


RUNAWAY = """\
name: Runaway
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email:
      subject: Hello
      body: "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}"
"""


def test_a_template_that_always_runs_out_of_time_costs_seconds_a_tick_not_hours(tmp_path, capsys):
    """Each render has 2 s of CPU; a campaign whose failing steps spend more than 5 s in one
    tick stops for the rest of it (those steps stay failed, the others wait) and the other
    campaigns send."""
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    (root / "campaigns" / "runaway.yaml").write_text(RUNAWAY, encoding="utf-8")
    code, out, err = run(capsys, "-w", str(root), "tick", "--at", "2026-07-01T00:00", "--json")
    report = json.loads(out)
    assert code == 1
    [problem] = [e["message"] for e in report["errors"]]
    assert problem.startswith("campaign 'runaway' failed at run time and stopped for this tick (RuntimeError: its "
                              "failing steps took ") and "took longer than 2 s" in problem
    with Engine.open(root) as engine:
        assert {m["campaign"] for m in engine.outbox()} == {"partner-onboarding"}
        failed = [e for e in engine.log() if e["action"] == "step.failed" and e["campaign"] == "runaway"]
        assert sum(e["detail"]["count"] for e in failed) == 3  # 3 × 2 s > 5 s: then it stopped
        summary = engine.status(campaign="runaway")
        # those whose one step ran (failed, or skipped before the stop) are past it and completed at
        # once; the others wait before it
        ran = sum(e["detail"]["count"] for e in engine.log() if e["action"].startswith("step.") and e["campaign"] == "runaway")
        assert (summary["enrollments"]["finished"], summary["enrollments"]["active"]) == (ran, summary["total"] - ran)


# --- 2. message ids that cannot collide -------------------------------------------------------------

slugs = st.from_regex(ids.SLUG, fullmatch=True).filter(ids.is_slug)
partner_ids = st.text(min_size=1, max_size=40).filter(lambda text: ids.check_partner_id(text) is None)


@pytest.mark.no_store
@settings(max_examples=500, deadline=None)
@given(slugs, partner_ids, st.integers(1, 10**6), slugs, st.integers(1, 10**6))
def test_a_message_id_splits_back_into_its_parts_so_two_messages_never_share_one(campaign, partner, n, step, run):
    """Partner ids may hold ':' (and anything readable); campaign and step ids never do."""
    assert message_parts(message_id(campaign, partner, n, step, run)) == (campaign, partner, n, step, run)


# --- 4. two `engine tick` processes on one store ------------------------------------------------------


def test_two_engine_tick_processes_on_one_store_send_each_message_once(tmp_path, smtp_server, hook_server):
    """The reproduction of the issue, through the CLI: two `engine tick` processes started
    together on one store, email over SMTP and SMS over the webhook (first down, so that both
    processes find every message waiting), four ticks each: every message reaches its server
    exactly once, and the store agrees."""
    partners = partners_csv(*[(f"p{i:02d}", f"Name {i}", "fi" if i % 3 else "en") for i in range(40)])
    root = workspace(tmp_path, {"note": NOTE, "texts": TEXTS}, partners, smtp_port=smtp_server.port,
                     hook_url=hook_server.url)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    engine_cli = [sys.executable, "-m", "engine", "-w", str(root)]
    queued = subprocess.run([*engine_cli, "tick", "--at", T0], env=env, capture_output=True, text=True, timeout=120)
    assert queued.returncode == 0, queued.stderr  # committed; both servers down: all 80 wait
    smtp_server.start()
    hook_server.start()
    times = ["2026-07-01T11:00:00Z", "2026-07-01T12:00:00Z", "2026-07-01T13:00:00Z", "2026-07-01T14:00:00Z"]
    script = "; ".join(f"engine -w {root} tick --at {at}" for at in times)
    ticking = [subprocess.Popen(["sh", "-c", script.replace("engine ", f"{sys.executable} -m engine ")], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for process in ticking:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
    assert sorted(smtp_server.mailbox.ids().values()) == [1] * 40
    assert sorted(hook_server.keys().values()) == [1] * 40
    with Engine.open(root) as engine:
        assert {(m["status"], m["attempts"]) for m in engine.outbox()} == {("sent", 2)}  # down once, then sent once
        assert engine.store.claim_messages(engine.time("2026-07-02T00:00"), ["email", "sms"], 100) == []
