"""Handovers (engine.delivery): the messages a batch of due steps makes for the files are
recorded sent in the batch's own transaction, with a handover that lists them, and written to
their files as the batch commits. What a killed process left listed is written by the next
delivery; messages the files cannot take are queued again, as their first attempt. Every
message reaches its file once, and is counted delivered once.

The workspace is test_transports' with no channels configured: every channel goes to the files.
"""

from __future__ import annotations

import json
from datetime import timedelta

from engine import tick as tick_module
from engine.delivery import deliver, hand_over_committed
from engine.testing import rewrite
from tests.engine.test_transports import ENGINE_YAML, NOTE, partners_csv, workspace

T0 = "2026-07-01T10:00:00Z"
PARTNERS = partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi"), ("p3", "Maria", "en"))
FILES_ONLY = ENGINE_YAML.split("channels:")[0]


def files_workspace(tmp_path):
    root = workspace(tmp_path, {"note": NOTE}, PARTNERS)
    rewrite(root / "engine.yaml", FILES_ONLY)
    return root


def handovers(engine) -> list[list[str]]:
    return [json.loads(ids) for (ids,) in engine.store.db.execute("SELECT messages FROM handovers ORDER BY id")]


def payloads(engine) -> dict[str, str]:
    return dict(engine.store.db.execute("SELECT id, payload FROM outbox").fetchall())


def file_lines(engine) -> list[str]:
    path = engine.root / ".engine" / "outbox" / "email.jsonl"
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def left_behind(monkeypatch):
    """Batches commit, then their process 'dies' before writing the files (nor does it reach
    the delivery at the end of its tick): the handovers stay listed. The handovers it had."""
    kept = []
    nothing = tick_module.Delivery
    monkeypatch.setattr(tick_module, "hand_over_committed", lambda store, using, handover, at: kept.append(handover)
                        or nothing())
    monkeypatch.setattr(tick_module, "deliver", lambda *args: nothing())
    return kept


def test_a_batch_records_its_messages_sent_and_writes_them_to_the_file_as_it_commits(tmp_path, make_engine):
    engine = make_engine(files_workspace(tmp_path), at=T0)
    report = engine.tick(T0)
    assert (report.executed, report.delivered) == (3, 3)
    messages = engine.outbox("email")
    assert {(m["status"], m["attempts"], m["delivered_at"]) for m in messages} == {("sent", 1, T0)}
    assert handovers(engine) == []
    lines = file_lines(engine)
    assert sorted(lines) == sorted(payloads(engine).values())  # the stored text is the line, encoded once
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(m["id"] for m in messages)


def test_a_handover_left_by_a_killed_process_is_written_by_the_next_delivery(tmp_path, make_engine, monkeypatch):
    engine = make_engine(files_workspace(tmp_path), at=T0)
    kept = left_behind(monkeypatch)
    first = engine.tick(T0)
    assert (first.executed, first.delivered) == (3, 0)
    assert {m["status"] for m in engine.outbox("email")} == {"sent"}  # recorded sent with the steps ...
    assert file_lines(engine) == [] and len(handovers(engine)) == 1  # ... and listed until in the file
    monkeypatch.undo()
    again = engine.tick(T0)  # the same time: no step runs again, the handover is finished
    assert (again.executed, again.delivered) == (0, 3)
    assert handovers(engine) == []
    assert sorted(file_lines(engine)) == sorted(payloads(engine).values())
    assert [e["detail"]["count"] for e in engine.log() if e["action"] == "delivery.handover"] == [3]
    # the process that 'died' comes back to its handover: already ended, nothing written or counted twice
    late = hand_over_committed(engine.store, tick_module.transports(engine.plan), kept[0], engine.time(T0))
    assert late.sent == 0 and len(file_lines(engine)) == 3


def test_a_handover_goes_to_the_files_even_if_the_channel_has_another_transport_now(
        tmp_path, make_engine, monkeypatch):
    """Its messages were recorded sent to the files: that is where they go, never to a mail
    server configured since."""
    engine = make_engine(files_workspace(tmp_path), at=T0)
    left_behind(monkeypatch)
    engine.tick(T0)
    monkeypatch.undo()

    class MailServer:
        idempotent, external = False, True

        def send(self, batch):
            raise AssertionError(f"a handover reached a mail server: {[m.id for m in batch]}")

    done = deliver(engine.store, engine.plan, engine.time(T0), {"email": MailServer(), "sms": None, "letter": None})
    assert (done.sent, done.retry, done.failed) == (3, 0, 0)
    assert len(file_lines(engine)) == 3 and handovers(engine) == []


def test_messages_the_files_cannot_take_are_queued_again_as_their_first_attempt(tmp_path, make_engine):
    engine = make_engine(files_workspace(tmp_path), at=T0)
    outbox = engine.root / ".engine" / "outbox"
    outbox.parent.mkdir(exist_ok=True)
    outbox.write_text("not a directory")  # every write to the files fails (a temporary failure)
    report = engine.tick(T0)
    assert (report.executed, report.delivered, report.retried) == (3, 0, 3)
    retry_at = (engine.time(T0) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert {(m["status"], m["attempts"], m["next_attempt"], m["delivered_at"]) for m in engine.outbox("email")} == {
        ("queued", 1, retry_at, None)}
    assert all("could not hand it over" in m["last_error"] for m in engine.outbox("email"))
    assert handovers(engine) == []
    outbox.unlink()
    later = engine.tick(retry_at)
    assert later.delivered == 3
    assert {(m["status"], m["attempts"]) for m in engine.outbox("email")} == {("sent", 2)}
    assert len(file_lines(engine)) == 3
