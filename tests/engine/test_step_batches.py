"""A batch of due steps asks the store about all its steps at once (consent ledger, hard
bounces, runs a user skipped ahead) and writes their step runs and messages at once: each step
still sees the store as of its own due time, exactly as if it were asked about alone."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from engine.api import Engine
from engine.clock import FixedClock
from engine.store import SQLiteStore

ENGINE_YAML = """\
timezone: UTC
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    ok: bool
consent:
  email: partner.ok
"""

# each partner's email is due a day after their order; then a month's wait keeps the batch whole
FLOW = """\
name: Flow
active: true
audience:
  rulesets:
    everyone: partner.ok or not partner.ok
trigger:
  event: order.placed
steps:
  - wait: 1d
  - id: hello
    email:
      subject: "Hello {{ partner.name }}"
      body: "Thanks for your order, {{ partner.name }}."
  - wait: 30d
"""

PARTNERS = ["p1", "p2", "p3", "p4", "p5"]


def workspace(root: Path) -> Path:
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML)
    (root / "campaigns" / "flow.yaml").write_text(FLOW)
    rows = ["id,name,email,ok"] + [f"{pid},Name {pid},{pid}@example.com,true" for pid in PARTNERS]
    (root / "partners.csv").write_text("\n".join(rows) + "\n")
    return root


def events(path: Path, lines: list[dict]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_one_batch_of_steps_due_at_different_times_sees_each_consent_change_as_of_its_own_time(tmp_path):
    engine = Engine.open(workspace(tmp_path / "ws"), clock=FixedClock("2026-06-30T00:00Z"))
    engine.tick("2026-06-30T00:00Z")  # the campaign is active from here on
    orders = [{"type": "order.placed", "at": f"2026-07-01T{hour:02d}:00:00Z", "partner": pid, "id": f"order-{pid}"}
              for pid, hour in zip(PARTNERS, (0, 4, 8, 12, 16))]
    # everyone unsubscribes at 07-02T10:00: after p1's, p2's and p3's emails were due, before p4's and p5's;
    # p2 had unsubscribed before and opts in again before its email is due
    ledger = [{"type": "unsubscribed", "at": "2026-07-02T10:00:00Z", "partner": pid, "id": f"unsub-{pid}",
               "data": {"channel": "email"}} for pid in PARTNERS]
    ledger += [{"type": "unsubscribed", "at": "2026-07-01T01:00:00Z", "partner": "p2", "id": "unsub-early",
                "data": {"channel": "email"}},
               {"type": "opted_in", "at": "2026-07-02T03:00:00Z", "partner": "p2", "id": "back-p2",
                "data": {"channel": "email"}}]
    imported = engine.import_events(events(tmp_path / "events.jsonl", orders + ledger), at="2026-06-30T00:00Z")
    assert imported.diagnostics == []

    report = engine.tick("2026-07-03T00:00Z")
    assert (report.enrolled, report.executed, report.skipped, report.failed) == (5, 3, 2, 0)
    assert sorted((m["partner"], m["at"], m["subject"]) for m in engine.sent("email")) == [
        ("p1", "2026-07-02T00:00:00Z", "Hello Name p1"),
        ("p2", "2026-07-02T04:00:00Z", "Hello Name p2"),
        ("p3", "2026-07-02T08:00:00Z", "Hello Name p3"),
    ]
    for pid in ("p4", "p5"):
        hello = engine.steps("flow", pid)
        assert hello is not None
        assert [(s["step"], s["status"], s["reason"]) for s in hello["steps"]] == [("hello", "skipped", "no_consent")]
    # one log line per batch and outcome, counting its steps
    lines = [(entry["action"], entry["detail"]["count"]) for entry in engine.log("flow")
             if entry["action"].startswith("step.")]
    assert sorted(lines) == [("step.executed", 3), ("step.skipped", 2)]
    engine.close()


@pytest.mark.no_store
@pytest.mark.parametrize("campaigns", [["c"], ["c", "d"]])
def test_the_due_steps_are_read_from_the_due_index_in_its_order_without_a_sort(tmp_path, campaigns):
    """Whatever the number of enrollments due at one instant, a batch reads its first rows of
    the due index: SQLite reads ``campaign IN (?)`` of one campaign as an equality, and with it
    sorted every row due at that instant for each batch (quadratic in a firing's size)."""
    store = SQLiteStore(tmp_path / "state.db")
    at = datetime(2026, 7, 1, tzinfo=timezone.utc)
    with store.transaction():
        for i in range(3):
            store.add_enrollment("c", f"p{i}", status="active", origin="trigger", source=None, created_at=at,
                                 started_at=at, next_step="s", due_at=at)
    seen: list[str] = []
    store.db.set_trace_callback(seen.append)  # (the statements with their values written in)
    found = store.due(at, campaigns, 2)
    store.db.set_trace_callback(None)
    [query] = [statement for statement in seen if "enrollments_due_order" in statement]
    plan = " ".join(row[3] for row in store.db.execute("EXPLAIN QUERY PLAN " + query))
    assert "USING INDEX enrollments_due_order" in plan and "TEMP B-TREE" not in plan, plan
    assert [e.partner for e in found] == ["p0", "p1"]
    store.close()
