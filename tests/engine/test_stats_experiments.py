"""`engine stats` of experiments (SPEC §11; engine.stats): step rows per variant, and the goal
block (treated and holdout, by variant, lift, the z-test, the plain-words summary), in JSON and
as text; and `engine simulate`'s goal block.

The tick does not write what these read yet (variants and conversions are being built beside
this), so each test writes the store's rows itself, as the tick will: enrollments, executed
step runs whose detail names the variant, outbox messages and pop-ups that carry it, engagement
events and conversions. Expected numbers are worked out by hand in the comments; the holdout's
members are computed here independently from the SPEC's hash.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from engine.api import Engine
from engine.cli import main
from tests.engine.test_tick import partner, partners_csv, workspace
from tests.spec_assignment import spec_held_out

T0 = datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc)
AT = "2026-07-01T10:00:00Z"
SPEC_ROW_KEYS = ["step", "channel", "language", "sent", "opens", "unique_opens", "clicks", "unique_clicks",
                 "bounces", "read", "unread"]
CHANCE = "; not significant yet (the difference may be chance)"
SPEC_GOAL_KEYS = ["enrolled", "converted", "conversion_pct", "by_variant", "holdout", "lift_pct", "p_value"]

EXP = """\
name: Experiment
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
holdout: 20%
goal:
  when: partner.paid == true
  within: 30d
steps:
  - id: welcome
    email:
      subject: "Hi"
      body: "B {{ unsubscribe_url }}"
      variants:
        short: {weight: 50, subject: "Hi!"}
        long: {weight: 50, subject: "Welcome to the programme"}
  - id: note
    popup:
      pages: [home]
      title: "T"
      body: "B"
      variants:
        plain: {weight: 1}
        bold: {weight: 1, title: "T!"}
  - id: reminder
    sms: {text: "R"}
"""

PLAIN = """\
name: Plain
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email: {subject: "Hi", body: "B {{ unsubscribe_url }}"}
"""

NO_HOLDOUT = """\
name: Twice
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
goal:
  event: invoice.paid
  within: 14d
steps:
  - id: first
    email:
      subject: "Hi"
      body: "B {{ unsubscribe_url }}"
      variants:
        short: {weight: 1}
        long: {weight: 1, subject: "Hello there"}
  - id: second
    sms:
      text: "R"
      variants:
        short: {weight: 1}
        formal: {weight: 1, text: "Dear partner"}
"""

PARTNERS = [f"p{i:02d}" for i in range(1, 23)]


def reference_p(a: int, n: int, b: int, m: int) -> float:
    pooled = (a + b) / (n + m)
    z = (a / n - b / m) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    return math.erfc(abs(z) / math.sqrt(2))


@pytest.fixture
def engine(tmp_path, make_engine):
    root = workspace(tmp_path, {"exp": EXP, "plain": PLAIN, "twice": NO_HOLDOUT},
                     partners_csv(*(partner(p) for p in PARTNERS)))
    return make_engine(root, at=AT)


# --- writing the store as the tick will ----------------------------------------------------------


def enroll(store, campaign: str, partner_id: str, status: str = "active") -> int:
    eid = store.add_enrollment(campaign, partner_id, status=status, origin="trigger", source=None,
                               created_at=T0, started_at=T0, next_step=None, due_at=None)
    assert eid is not None
    return eid


def received(store, eid: int, step: str, variant: str | None, run: int = 1, status: str = "executed",
             reason: str | None = None) -> None:
    store.record_step(eid, step, run, status, reason, T0, T0, {"variant": variant} if variant else None)


def message(store, eid: int, campaign: str, step: str, partner_id: str, channel: str, language: str,
            variant: str | None, status: str = "sent") -> str:
    mid = f"{campaign}:{partner_id}:{eid}:{step}:1"
    record = {"id": mid, "channel": channel, "campaign": campaign, "step": step, "partner": partner_id,
              "at": AT, "to": f"{partner_id}@example.com", "body": "B", "language": language}
    if variant is not None:
        record["variant"] = variant
    store.add_message(record, eid)
    store.db.execute("UPDATE outbox SET status = ? WHERE id = ?", (status, mid))
    return mid


def popup(store, eid: int, campaign: str, step: str, partner_id: str, variant: str, read: bool) -> None:
    pid = f"{campaign}:{partner_id}:{eid}:{step}:1"
    store.add_popup({"id": pid, "enrollment": eid, "campaign": campaign, "step": step, "partner": partner_id,
                     "pages": ["home"], "title": "T", "body": "B", "language": "en", "at": AT})
    store.db.execute("UPDATE popups SET variant = ?, read_at = ? WHERE id = ?",
                     (variant, AT if read else None, pid))


def event(store, n: int, kind: str, partner_id: str, campaign: str, step: str) -> None:
    store.add_event(SimpleNamespace(id=f"ev{n}", type=kind, at=T0, partner=partner_id, data={}, message=None,
                                    campaign=campaign, step=step), False, T0)


def fill_experiment(store) -> None:
    """Campaign exp (holdout 20 %): p01–p20 counted (p03 paused, p05 and p10 finished, the rest
    active), p21 scheduled and p22 removed (neither counted).

    - held out (the hash): p10, p11, p17, p20; treated: the 16 others of p01–p20.
    - welcome, run 1: short to p01–p08, long to p09, p12–p16, p18, p19 (and to p22, removed);
      p01's run 2 got long (not counted: the first run decides); p10's run was skipped (holdout).
    - note, run 1: plain to p01–p04, bold to p05, p06.
    - converted: p01, p02 (short, plain), p09, p12–p15 (long), p10 (held out), p22 (removed).
    """
    ids = {}
    with store.transaction():
        for pid in PARTNERS:
            status = {"p03": "paused", "p05": "finished", "p10": "finished", "p21": "scheduled",
                      "p22": "removed"}.get(pid, "active")
            ids[pid] = enroll(store, "exp", pid, status)
        for pid in ("p01", "p02", "p03", "p04", "p05", "p06", "p07", "p08"):
            received(store, ids[pid], "welcome", "short")
        for pid in ("p09", "p12", "p13", "p14", "p15", "p16", "p18", "p19", "p22"):
            received(store, ids[pid], "welcome", "long")
        received(store, ids["p01"], "welcome", "long", run=2)
        received(store, ids["p10"], "welcome", None, status="skipped", reason="holdout")
        for pid in ("p01", "p02", "p03", "p04"):
            received(store, ids[pid], "note", "plain")
        for pid in ("p05", "p06"):
            received(store, ids[pid], "note", "bold")
        for pid in ("p01", "p02", "p09", "p12", "p13", "p14", "p15", "p10", "p22"):
            assert store.add_conversion(ids[pid], "exp", pid, T0, "when")

        # messages: short en p01 (sent), p03 (queued); short fi p02; long en p09, p12 (sent), p13 (failed)
        message(store, ids["p01"], "exp", "welcome", "p01", "email", "en", "short")
        message(store, ids["p03"], "exp", "welcome", "p03", "email", "en", "short", status="queued")
        message(store, ids["p02"], "exp", "welcome", "p02", "email", "fi", "short")
        message(store, ids["p09"], "exp", "welcome", "p09", "email", "en", "long")
        message(store, ids["p12"], "exp", "welcome", "p12", "email", "en", "long")
        message(store, ids["p13"], "exp", "welcome", "p13", "email", "en", "long", status="failed")
        message(store, ids["p01"], "exp", "reminder", "p01", "sms", "en", None)
        popup(store, ids["p01"], "exp", "note", "p01", "plain", read=True)
        popup(store, ids["p02"], "exp", "note", "p02", "plain", read=False)
        popup(store, ids["p05"], "exp", "note", "p05", "bold", read=False)
        # p09 opened twice and clicked, p01 opened once; p13's open is about a message never sent
        event(store, 1, "opened", "p09", "exp", "welcome")
        event(store, 2, "opened", "p09", "exp", "welcome")
        event(store, 3, "clicked", "p09", "exp", "welcome")
        event(store, 4, "opened", "p01", "exp", "welcome")
        event(store, 5, "opened", "p13", "exp", "welcome")


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.no_store
def test_the_holdout_of_these_partners_is_the_spec_hash():
    from campaigns.policy import held_out

    held = [p for p in PARTNERS if spec_held_out("exp", p, 20.0)]
    assert held == ["p10", "p11", "p17", "p20"]
    assert [p for p in PARTNERS if held_out("exp", p, 20.0)] == held


def test_goal_block_counts_treated_holdout_and_variants_exactly(engine):
    fill_experiment(engine.store)
    stats = engine.stats("exp")
    assert list(stats) == ["campaign", "in_campaign_pct", "steps", "goal", "in_campaign", "activities",
                           "mailing_responses"]
    goal = stats["goal"]
    assert list(goal) == SPEC_GOAL_KEYS + ["summary"]
    # treated: 16 (p01–p09, p12–p16, p18, p19); converted 7 (p01, p02, p09, p12–p15): 43.75 → 43.8
    assert (goal["enrolled"], goal["converted"], goal["conversion_pct"]) == (16, 7, 43.8)
    # held out: p10, p11, p17, p20; p10 converted: 1 of 4 = 25.0 %
    assert goal["holdout"] == {"enrolled": 4, "converted": 1, "conversion_pct": 25.0}
    # lift (43.75 − 25) / 25 = 75.0 %
    assert goal["lift_pct"] == 75.0
    # pooled 8/20 = 0.4; z = 0.1875 / √(0.4 · 0.6 · (1/16 + 1/4)) = 0.68465; p = erfc(z/√2) = 0.49356
    assert goal["p_value"] == pytest.approx(0.49356, abs=1e-5)
    assert goal["p_value"] == pytest.approx(reference_p(7, 16, 1, 4), rel=1e-9)
    # p22 (removed) is not counted, p01's second run does not move it to long
    assert goal["by_variant"] == {
        "short": {"enrolled": 8, "converted": 2, "conversion_pct": 25.0},
        "long": {"enrolled": 8, "converted": 5, "conversion_pct": 62.5},
        "plain": {"enrolled": 4, "converted": 2, "conversion_pct": 50.0},
        "bold": {"enrolled": 2, "converted": 0, "conversion_pct": 0.0},
    }
    # long against short: 37.5 points; pooled 7/16, z = 0.375 / √(0.4375 · 0.5625 · 0.25) = 1.5119, p = 0.1306
    # plain against bold: 50.0 points; pooled 2/6, z = 0.5 / √(1/3 · 2/3 · 0.75) = 1.2247, p = 0.2207
    # the campaign against its holdout: 18.75 → 18.8 points, lift 75.0 %, p = 0.4936
    assert reference_p(5, 8, 2, 8) == pytest.approx(0.1306, abs=0.0001)
    assert reference_p(2, 4, 0, 2) == pytest.approx(0.2207, abs=0.0001)
    assert goal["summary"] == [
        "variant long converts 37.5 points better than short; p = 0.13, n = 16" + CHANCE,
        "variant plain converts 50.0 points better than bold; p = 0.22, n = 6" + CHANCE,
        "the campaign converts 18.8 points better than its holdout (lift 75.0 %); p = 0.49, n = 20" + CHANCE,
    ]


def test_step_rows_are_per_step_variant_and_language_with_the_variant_after_the_spec_keys(engine):
    fill_experiment(engine.store)
    steps = engine.stats("exp")["steps"]
    assert [list(r) for r in steps] == [SPEC_ROW_KEYS + ["variant"]] * 6
    keys = ("step", "channel", "language", "variant", "sent", "opens", "unique_opens", "clicks",
            "unique_clicks", "bounces", "read", "unread")
    assert [tuple(r[k] for k in keys) for r in steps] == [
        # short: p01 en sent (p03's is queued), opened once; p02 fi sent
        ("welcome", "email", "en", "short", 1, 1, 1, 0, 0, 0, 0, 0),
        ("welcome", "email", "fi", "short", 1, 0, 0, 0, 0, 0, 0, 0),
        # long: p09 and p12 sent (p13's failed: its open does not count); p09 opened twice, clicked once
        ("welcome", "email", "en", "long", 2, 2, 1, 1, 1, 0, 0, 0),
        # pop-ups: plain shown to p01 (read) and p02; bold to p05
        ("note", "popup", "en", "plain", 2, 0, 0, 0, 0, 0, 1, 1),
        ("note", "popup", "en", "bold", 1, 0, 0, 0, 0, 0, 0, 1),
        ("reminder", "sms", "en", None, 1, 0, 0, 0, 0, 0, 0, 0),
    ]


def test_a_store_from_before_the_outbox_labels_counts_its_messages_as_before(engine, store_url):
    """An older store indexed the payload's JSON for these counts; opened now, it copies each
    message's language and variant into their columns (once) and drops that index."""
    fill_experiment(engine.store)
    expected = engine.stats("exp")["steps"]
    old_index = ("json_extract(payload, '$.language'), json_extract(payload, '$.variant')"
                 if engine.store.dialect == "sqlite" else "(payload::jsonb ->> 'language'), (payload::jsonb ->> 'variant')")
    with engine.store.transaction():  # as an earlier version of the engine left it
        engine.store.db.execute("DROP INDEX outbox_tally")
        engine.store.db.execute("UPDATE outbox SET language = NULL, variant = NULL")
        engine.store.db.execute(f"CREATE INDEX outbox_counts ON outbox (campaign, step, channel, {old_index}, status)")
        if engine.store.dialect == "postgresql":
            engine.store.set_meta("schema.postgresql", "an earlier schema")
    assert engine.stats("exp")["steps"] != expected  # (the columns are what is counted)
    with Engine.open(engine.root, store=store_url) as reopened:
        assert reopened.stats("exp")["steps"] == expected
        indexes = {name for (name,) in reopened.store.db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'" if reopened.store.dialect == "sqlite"
            else "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")}
        assert "outbox_tally" in indexes and "outbox_counts" not in indexes


def test_a_variant_nothing_was_sent_for_has_its_row(engine):
    steps = engine.stats("exp")["steps"]
    assert [(r["step"], r["language"], r["variant"], r["sent"]) for r in steps] == [
        ("welcome", "default", "short", 0), ("welcome", "default", "long", 0),
        ("note", "default", "plain", 0), ("note", "default", "bold", 0), ("reminder", "default", None, 0)]


def test_a_campaign_without_a_goal_has_goal_null_and_rows_without_variant(engine):
    with engine.store.transaction():
        eid = enroll(engine.store, "plain", "p01", "finished")
        message(engine.store, eid, "plain", "hello", "p01", "email", "en", None)
    stats = engine.stats("plain")
    assert list(stats) == ["campaign", "in_campaign_pct", "steps", "goal", "in_campaign", "activities",
                           "mailing_responses"]
    assert stats["goal"] is None
    assert [(r["step"], r["language"], r["variant"], r["sent"]) for r in stats["steps"]] == [
        ("hello", "en", None, 1)]


def test_without_a_holdout_lift_and_p_are_null_and_shared_variant_keys_are_named_by_step(engine):
    """twice: no holdout, two steps that both have a variant 'short'; p01–p06 enrolled."""
    store = engine.store
    with store.transaction():
        ids = {pid: enroll(store, "twice", pid) for pid in ("p01", "p02", "p03", "p04", "p05", "p06")}
        for pid in ("p01", "p02", "p03"):
            received(store, ids[pid], "first", "short")
        for pid in ("p04", "p05", "p06"):
            received(store, ids[pid], "first", "long")
        for pid in ("p01", "p04"):
            received(store, ids[pid], "second", "short")
        received(store, ids["p02"], "second", "formal")
        for pid in ("p01", "p04", "p05"):
            store.add_conversion(ids[pid], "twice", pid, T0, "event:e1")
    goal = engine.stats("twice")["goal"]
    # everyone is treated: 3 of 6 = 50.0 %; the holdout is 0 of 0, so no lift and no p-value
    assert goal == {
        "enrolled": 6, "converted": 3, "conversion_pct": 50.0,
        "by_variant": {
            "first/short": {"enrolled": 3, "converted": 1, "conversion_pct": 33.3},  # p01
            "first/long": {"enrolled": 3, "converted": 2, "conversion_pct": 66.7},  # p04, p05
            "second/short": {"enrolled": 2, "converted": 2, "conversion_pct": 100.0},  # p01, p04
            "second/formal": {"enrolled": 1, "converted": 0, "conversion_pct": 0.0},
        },
        "holdout": {"enrolled": 0, "converted": 0, "conversion_pct": None},
        "lift_pct": None, "p_value": None,
        # first: long 2/3 against short 1/3, 33.3 points; pooled 1/2, z = (1/3) / √(1/4 · 2/3) = 0.8165,
        # p = 0.4142; second: short 2/2 against formal 0/1, pooled 2/3, z = 1 / √(2/9 · 1.5) = 1.7321,
        # p = 0.0833; no holdout: no holdout line
        "summary": [
            "variant first/long converts 33.3 points better than first/short; p = 0.41, n = 6" + CHANCE,
            "variant second/short converts 100.0 points better than second/formal; p = 0.08, n = 3" + CHANCE,
        ],
    }
    assert reference_p(2, 3, 1, 3) == pytest.approx(0.4142, abs=0.0001)
    assert reference_p(2, 2, 0, 1) == pytest.approx(0.0833, abs=0.0001)


def test_nobody_enrolled_yet_gives_zeros_and_nulls(engine):
    goal = engine.stats("exp")["goal"]
    assert {k: goal[k] for k in SPEC_GOAL_KEYS if k != "by_variant"} == {
        "enrolled": 0, "converted": 0, "conversion_pct": None,
        "holdout": {"enrolled": 0, "converted": 0, "conversion_pct": None}, "lift_pct": None, "p_value": None}
    assert goal["by_variant"]["short"] == {"enrolled": 0, "converted": 0, "conversion_pct": None}
    assert goal["summary"][-1] == "the holdout has no partners yet: no lift to measure"


def test_engine_stats_prints_the_variant_column_and_the_goal_block(engine, capsys):
    fill_experiment(engine.store)
    assert main(["-w", str(engine.root), "stats", "exp"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(line for line in out if line.startswith("step"))
    assert header.split() == ["step", "channel", "language", "variant", "sent", "opens", "unique", "clicks",
                              "unique", "bounces", "read", "unread"]
    first = out.index(header) + 1
    assert out[first].split() == ["welcome", "email", "en", "short", "1", "1", "1", "0", "0", "0", "0", "0"]
    assert out[first + 5].split() == ["reminder", "sms", "en", "-", "1", "0", "0", "0", "0", "0", "0", "0"]
    start = out.index("goal: 7 of 16 converted (43.8 %); holdout 1 of 4 (25.0 %); lift 75.0 %, p = 0.49")
    assert out[start - 1] == ""
    assert out[start + 1:start + 8] == [
        "  variant short: 2 of 8 converted (25.0 %)",
        "  variant long: 5 of 8 converted (62.5 %)",
        "  variant plain: 2 of 4 converted (50.0 %)",
        "  variant bold: 0 of 2 converted (0.0 %)",
        "variant long converts 37.5 points better than short; p = 0.13, n = 16" + CHANCE,
        "variant plain converts 50.0 points better than bold; p = 0.22, n = 6" + CHANCE,
        "the campaign converts 18.8 points better than its holdout (lift 75.0 %); p = 0.49, n = 20" + CHANCE,
    ]

    assert main(["-w", str(engine.root), "stats", "exp", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["goal"]["holdout"] == {"enrolled": 4, "converted": 1,
                                                                      "conversion_pct": 25.0}


def test_engine_stats_without_variants_or_goal_prints_as_before(engine, capsys):
    with engine.store.transaction():
        eid = enroll(engine.store, "plain", "p01", "finished")
        message(engine.store, eid, "plain", "hello", "p01", "email", "en", None)
    assert main(["-w", str(engine.root), "stats", "plain"]) == 0
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(out) if line.startswith("step"))
    assert out[header].split() == ["step", "channel", "language", "sent", "opens", "unique", "clicks",
                                   "unique", "bounces", "read", "unread"]
    assert out[header + 1].split() == ["hello", "email", "en", "1", "0", "0", "0", "0", "0", "0", "0"]
    assert not any(line.startswith("goal") for line in out)


def test_engine_simulate_prints_the_goal_block_of_each_campaign_with_a_goal(tmp_path, capsys):
    root = workspace(tmp_path, {"exp": EXP, "plain": PLAIN, "twice": NO_HOLDOUT},
                     partners_csv(*(partner(p) for p in PARTNERS)))
    argv = ["-w", str(root), "simulate", "--from", "2026-07-01T10:00Z", "--until", "2026-07-01T12:00Z"]
    assert main(argv + ["--json"]) == 0
    simulated = json.loads(capsys.readouterr().out)
    assert list(simulated["goals"]) == ["exp", "twice"]
    assert list(simulated["goals"]["exp"]) == SPEC_GOAL_KEYS + ["summary"]
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in out if " goal: " in line] == ["exp goal", "twice goal"]
