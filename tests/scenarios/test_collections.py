"""The collections campaign of the example workspace (examples/campaigns/collections.yaml) through
hourly ticks, with the collectors' answers, worked out by hand:

- 6 July 07:00Z: invoices of p003 and p024 are overdue (events.jsonl); 8 July 07:00Z: p034's.
  Each gets the collector call at once (assigned to their account manager).
- p003 promises to pay on 6 July at 12:00Z: the goto moves them to `promise-check` at once (the
  wait-for and the reminder are skipped, reason response); a week later, 13 July 12:00Z, the
  branch finds the promise, so the account manager gets the broken-promise task, and the flow
  ends there (the final notice and the dispute steps are skipped, reason branch).
- p024 disputes on 7 July at 09:00Z: the dispute letter and billing's work order at once; every
  step in between is skipped (reason response).
- p034 answers "no-answer" on 9 July at 10:00Z, which has no goto: the wait-for sees the
  response at the next tick, 11:00Z, so the reminder email goes then; a week later, 16 July
  11:00Z, no promise: the final notice letter (the promise steps jumped over, reason branch).
- Everyone else: no overdue invoice, no collections.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parents[2] / "examples"

SKIPPED_BY_PROMISE = {"wait-answer", "reminder"}
AFTER_BROKEN_PROMISE = {"final-notice", "after-notice", "dispute-letter", "dispute-review"}
SKIPPED_BY_DISPUTE = {"wait-answer", "reminder", "still-open", "broken-promise", "after-promise", "final-notice",
                      "after-notice"}


def steps(engine, pid: str) -> dict[str, tuple[str, str | None, str | None]]:
    return {s["step"]: (s["status"], s["reason"], s["at"]) for s in engine.steps("collections", pid)["steps"]}


def test_the_collections_flow_sends_calls_letters_and_tasks_as_worked_out_by_hand(make_engine):
    engine = make_engine(EXAMPLES, at="2026-07-01T00:00")
    engine.import_events(EXAMPLES / "events.jsonl")
    engine.tick()
    engine.run("2026-07-06T12:00Z", every="1h")
    calls = {a["partner"]: a["id"] for a in engine.activities(campaign="collections")}
    assert sorted(calls) == ["p003", "p024"]
    engine.respond(calls["p003"], "promised", at="2026-07-06T12:00Z", user="alice")
    engine.run("2026-07-07T09:00Z", every="1h")
    engine.respond(calls["p024"], "disputed", at="2026-07-07T09:00Z", user="alice")
    engine.run("2026-07-09T10:00Z", every="1h")
    calls = {a["partner"]: a["id"] for a in engine.activities(campaign="collections")}
    engine.respond(calls["p034"], "no-answer", at="2026-07-09T10:00Z", user="alice")
    engine.run("2026-08-01T00:00Z", every="1h")

    activities = sorted((a["partner"], a["step"], a["kind"], a["assignee"], a["created_at"])
                        for a in engine.activities(campaign="collections"))
    assert activities == [
        ("p003", "broken-promise", "task", "anna.virtanen@example.com", "2026-07-13T12:00:00Z"),
        ("p003", "collector-call", "call", "anna.virtanen@example.com", "2026-07-06T07:00:00Z"),
        ("p024", "collector-call", "call", "sarah.mills@example.com", "2026-07-06T07:00:00Z"),
        ("p024", "dispute-review", "work_order", "billing@example.com", "2026-07-07T09:00:00Z"),
        ("p034", "collector-call", "call", "erik.lindqvist@example.com", "2026-07-08T07:00:00Z"),
    ]
    emails = [(m["partner"], m["step"], m["at"]) for m in engine.sent("email") if m["campaign"] == "collections"]
    assert emails == [("p034", "reminder", "2026-07-09T11:00:00Z")]
    letters = {step: [(row["partner"], row["at"]) for row in engine.letters("collections", step)]
               for step in ("final-notice", "dispute-letter")}
    assert letters == {"final-notice": [("p034", "2026-07-16T11:00:00Z")],
                       "dispute-letter": [("p024", "2026-07-07T09:00:00Z")]}

    p003 = steps(engine, "p003")
    assert {s for s, (status, reason, _) in p003.items() if reason == "response"} == SKIPPED_BY_PROMISE
    assert {s for s, (status, reason, _) in p003.items() if reason == "branch"} == AFTER_BROKEN_PROMISE
    assert p003["still-open"] == ("executed", None, "2026-07-13T12:00:00Z")
    p024 = steps(engine, "p024")
    assert {s for s, (status, reason, _) in p024.items() if reason == "response"} == SKIPPED_BY_DISPUTE
    p034 = steps(engine, "p034")
    assert p034["wait-answer"] == ("executed", None, "2026-07-09T11:00:00Z")
    # the else case jumps over the promise steps, `end` over the dispute steps
    assert {s for s, (_, reason, _) in p034.items() if reason is not None} == {
        "broken-promise", "after-promise", "dispute-letter", "dispute-review"}

    finished = {pid: next((e["status"], e["reason"], e["finished_at"])
                          for e in engine.status(partner=pid)["enrollments"] if e["campaign"] == "collections")
                for pid in ("p003", "p024", "p034")}
    assert finished == {"p003": ("finished", "completed", "2026-07-13T12:00:00Z"),
                        "p024": ("finished", "completed", "2026-07-07T09:00:00Z"),
                        "p034": ("finished", "completed", "2026-07-16T11:00:00Z")}
