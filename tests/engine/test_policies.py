"""Experiments and policies (SPEC §11, second half) through the tick with a fixed clock: splits,
variants, the holdout, goals, frequency caps, quiet hours, send days, priority and transactional
campaigns. Assignments are recomputed here from the SPEC's formula (not with the engine's code);
every expected time is worked out by hand beside it."""

from __future__ import annotations

import json

from tests.engine.test_tick import (
    campaign,
    email,
    partner,
    partners_csv,
    sent,
    set_partners,
    steps_of,
    wait,
    workspace,
)
from tests.spec_assignment import spec_hash, spec_pick

PEOPLE = [f"p{i:02d}" for i in range(40)]
AT = "2026-07-01T10:00:00Z"


def everyone(**values) -> str:
    return partners_csv(*(partner(pid, **values) for pid in PEOPLE))


# --- splits and variants ------------------------------------------------------------------------


def test_a_split_sends_each_partner_down_the_path_the_spec_s_hash_gives(tmp_path, make_engine):
    steps = ("  - id: path\n    split:\n      call-first: {weight: 30, goto: late}\n      email-first: {weight: 70}\n"
             + email("early") + email("late"))
    engine = make_engine(workspace(tmp_path, {"s": campaign(steps=steps)}, everyone()), at=AT)
    engine.tick(AT)

    expected = {pid: spec_pick("s", "path", pid, [("call-first", 30), ("email-first", 70)]) for pid in PEOPLE}
    assert {"call-first", "email-first"} == set(expected.values())
    for pid, path in expected.items():
        runs = steps_of(engine, "s", pid)
        assert runs["early"] == (("skipped", "split", AT) if path == "call-first" else ("executed", None, AT))
        assert runs["late"] == ("executed", None, AT)
    early = {p for p, step, _ in sent(engine, "email") if step == "early"}
    assert early == {pid for pid, path in expected.items() if path == "email-first"}


def test_variants_give_each_partner_the_subject_of_the_variant_the_hash_picks(tmp_path, make_engine):
    steps = ('  - id: welcome\n    email:\n      subject: "Default"\n      body: "Hello"\n      variants:\n'
             '        short: {weight: 50, subject: "Welcome!"}\n'
             '        long: {weight: 50, subject: "Welcome to the programme, {{ partner.name }}"}\n')
    engine = make_engine(workspace(tmp_path, {"v": campaign(steps=steps)}, everyone()), at=AT)
    engine.tick(AT)

    messages = {m["partner"]: m for m in engine.outbox("email")}
    assert set(messages) == set(PEOPLE)
    for pid in PEOPLE:
        variant = spec_pick("v", "welcome", pid, [("short", 50), ("long", 50)])
        assert messages[pid]["variant"] == variant
        assert messages[pid]["subject"] == ("Welcome!" if variant == "short" else f"Welcome to the programme, {pid.upper()}")
    assert {m["variant"] for m in messages.values()} == {"short", "long"}


def test_the_holdout_is_enrolled_but_every_message_step_is_skipped(tmp_path, make_engine):
    engine = make_engine(workspace(tmp_path, {"h": campaign(steps=email("hello"), extra="holdout: 25%\n")},
                                   everyone()), at=AT)
    engine.tick(AT)

    held = {pid for pid in PEOPLE if spec_hash("h", "holdout", pid, 10_000) < 2500}
    assert 0 < len(held) < len(PEOPLE)
    assert {p for p, _, _ in sent(engine, "email")} == set(PEOPLE) - held
    for pid in held:
        assert steps_of(engine, "h", pid)["hello"] == ("skipped", "holdout", AT)


# --- quiet hours and send days ----------------------------------------------------------------------


POLICIES = "policies:\n  quiet_hours: {from: \"21:00\", to: \"08:00\"}\n"


def test_quiet_hours_are_overnight_in_the_partner_s_own_timezone(tmp_path, make_engine):
    steps = email("first") + wait("12h") + email("second")
    root = workspace(tmp_path, {"q": campaign(steps=steps)},
                     partners_csv(partner("hel", role="Europe/Helsinki"), partner("ny", role="America/New_York")),
                     POLICIES)
    (root / "engine.yaml").write_text((root / "engine.yaml").read_text().replace(
        "  id: id\n", "  id: id\n  timezone_field: role\n"))
    engine = make_engine(root, at="2026-07-01T12:00Z")
    engine.tick("2026-07-01T12:00Z")  # 15:00 Helsinki, 08:00 New York: both go now
    engine.tick("2026-07-03T00:00Z")

    second = {p: at for p, step, at in sent(engine, "email") if step == "second"}
    # due 00:00Z on 07-02: 03:00 in Helsinki (quiet until 08:00 = 05:00Z); 20:00 in New York (not quiet)
    assert second == {"hel": "2026-07-02T05:00:00Z", "ny": "2026-07-02T00:00:00Z"}
    held = steps_of(engine, "q", "hel")
    assert held["second"] == ("executed", None, "2026-07-02T05:00:00Z")
    run = next(s for s in engine.steps("q", "hel")["steps"] if s["step"] == "second")
    assert run["detail"]["held"] == {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00",
                                     "from": "2026-07-02T00:00:00Z", "until": "2026-07-02T05:00:00Z"}


def test_a_step_waiting_for_quiet_hours_to_end_shows_the_rule_and_until_when(tmp_path, make_engine):
    root = workspace(tmp_path, {"q": campaign(steps=email("late"))}, partners_csv(partner("p1")), POLICIES)
    engine = make_engine(root, at="2026-07-01T22:30Z")
    report = engine.tick("2026-07-01T22:30Z")

    assert sent(engine, "email") == [] and report.deferred == 1
    pending = next(s for s in engine.steps("q", "p1")["steps"] if s["step"] == "late")
    assert pending["status"] == "pending"
    assert pending["held"] == {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00",
                               "from": "2026-07-01T22:30:00Z", "until": "2026-07-02T08:00:00Z"}
    engine.tick("2026-07-02T09:00Z")
    assert sent(engine, "email") == [("p1", "late", "2026-07-02T08:00:00Z")]


def test_send_days_move_a_weekend_message_to_monday_after_quiet_hours(tmp_path, make_engine):
    settings = POLICIES + "  send_days: [mon, tue, wed, thu, fri]\n"
    root = workspace(tmp_path, {"d": campaign(steps=email("hello"))}, partners_csv(partner("p1")), settings)
    engine = make_engine(root, at="2026-07-04T12:00Z")  # a Saturday
    engine.tick("2026-07-04T12:00Z")
    engine.tick("2026-07-07T00:00Z")
    # Saturday 12:00 is not a send day; Monday 00:00 is in quiet hours until 08:00
    assert sent(engine, "email") == [("p1", "hello", "2026-07-06T08:00:00Z")]


def test_a_campaign_s_own_quiet_hours_replace_the_workspace_s(tmp_path, make_engine):
    own = campaign(steps=email("hello"), extra='quiet_hours: {from: "22:00", to: "23:00"}\n')
    root = workspace(tmp_path, {"own": own, "ws": campaign(steps=email("hello"))}, partners_csv(partner("p1")), POLICIES)
    engine = make_engine(root, at="2026-07-01T21:30Z")
    engine.tick("2026-07-01T21:30Z")
    engine.tick("2026-07-02T12:00Z")
    assert sorted(sent(engine, "email")) == [("p1", "hello", "2026-07-01T21:30:00Z"),
                                             ("p1", "hello", "2026-07-02T08:00:00Z")]


# --- frequency caps -----------------------------------------------------------------------------


CAP = "policies:\n  frequency:\n    email: {max: 1, per: 1d}\n"


def test_a_cap_across_campaigns_lets_the_higher_priority_go_first_and_skips_the_other(tmp_path, make_engine):
    root = workspace(tmp_path, {"a-low": campaign(steps=email("a")),
                                "b-high": campaign(steps=email("b"), extra="priority: 5\n"),
                                "c-mid": campaign(steps=email("c"), extra="priority: 1\n")},
                     partners_csv(partner("p1")), CAP)
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    assert sent(engine, "email") == [("p1", "b", AT)]
    assert steps_of(engine, "a-low", "p1")["a"] == ("skipped", "frequency_cap", AT)
    run = next(s for s in engine.steps("c-mid", "p1")["steps"] if s["step"] == "c")
    assert run["detail"] == {"rule": "frequency_cap email 1 per 1d"}


def test_a_cap_counts_sends_of_the_window_only_and_ties_go_by_campaign_id(tmp_path, make_engine):
    daily = campaign(trigger="cron: \"0 9 * * *\"", steps=email("daily"), extra="reenroll: after_exit\n")
    root = workspace(tmp_path, {"a": daily, "b": daily}, partners_csv(partner("p1")), CAP.replace("1d", "2d"))
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    engine.tick("2026-07-06T00:00Z")
    # equal priority: a before b at each 09:00; 2 days per message: 07-01, 07-03, 07-05 only
    assert [(step, at) for _, step, at in sent(engine, "email")] == [
        ("daily", "2026-07-01T09:00:00Z"), ("daily", "2026-07-03T09:00:00Z"), ("daily", "2026-07-05T09:00:00Z")]
    assert [m["campaign"] for m in engine.outbox("email")] == ["a", "a", "a"]


def test_on_cap_defer_sends_when_a_slot_frees(tmp_path, make_engine):
    settings = CAP + "  on_cap: defer\n"
    root = workspace(tmp_path, {"a": campaign(steps=email("a")), "b": campaign(steps=email("b"))},
                     partners_csv(partner("p1")), settings)
    engine = make_engine(root, at=AT)
    report = engine.tick(AT)
    assert report.deferred == 1
    pending = next(s for s in engine.steps("b", "p1")["steps"] if s["step"] == "b")
    assert pending["held"]["rule"] == "frequency_cap" and pending["held"]["until"] == "2026-07-02T10:00:00Z"
    engine.tick("2026-07-03T00:00Z")
    assert sent(engine, "email") == [("p1", "a", AT), ("p1", "b", "2026-07-02T10:00:00Z")]


def test_a_transactional_campaign_ignores_caps_quiet_hours_and_consent_and_has_no_unsubscribe(tmp_path, make_engine,
                                                                                             monkeypatch):
    monkeypatch.setenv("ENGINE_SECRET", "s" * 32)
    settings = CAP + "  quiet_hours: {from: \"00:00\", to: \"23:59\"}\nweb:\n  base_url: https://c.example.com\n"
    root = workspace(tmp_path, {"a": campaign(steps=email("receipt"), extra="transactional: true\n"),
                                "b": campaign(steps=email("receipt"), extra="transactional: true\n")},
                     partners_csv(partner("p1", ok=False)), settings)
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    messages = engine.outbox("email")
    assert [(m["campaign"], m["at"]) for m in messages] == [("a", AT), ("b", AT)]
    assert all("headers" not in m or "List-Unsubscribe" not in m["headers"] for m in messages)


# --- goals ----------------------------------------------------------------------------------------


def test_a_when_goal_converts_at_the_tick_that_sees_it_and_exits(tmp_path, make_engine):
    goal = "goal:\n  when: partner.paid == true\n  within: 30d\n"
    steps = email("first") + wait("2d") + email("reminder")
    root = workspace(tmp_path, {"g": campaign(steps=steps, extra=goal)},
                     partners_csv(partner("payer"), partner("other")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    set_partners(engine, partner("payer", paid=True), partner("other"))
    report = engine.tick("2026-07-02T10:00Z")
    assert report.converted == 1
    engine.tick("2026-07-04T10:00Z")
    reminders = [p for p, step, _ in sent(engine, "email") if step == "reminder"]
    assert reminders == ["other"]
    status = engine.status(partner="payer", campaign="g")["enrollments"][0]
    assert (status["status"], status["reason"], status["finished_at"]) == ("finished", "goal", "2026-07-02T10:00:00Z")


def test_an_event_goal_converts_at_the_event_s_time_within_its_window(tmp_path, make_engine):
    goal = "goal:\n  event: invoice.paid\n  where: event.amount > 100\n  within: 3d\n  exit: false\n"
    root = workspace(tmp_path, {"g": campaign(steps=email("first") + wait("10d") + email("later"), extra=goal)},
                     partners_csv(partner("p1"), partner("p2"), partner("p3")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join(json.dumps(e) for e in [
        {"type": "invoice.paid", "at": "2026-07-02T08:00:00Z", "partner": "p1", "data": {"amount": 500}},
        {"type": "invoice.paid", "at": "2026-07-02T09:00:00Z", "partner": "p2", "data": {"amount": 50}},
        {"type": "invoice.paid", "at": "2026-07-05T09:00:00Z", "partner": "p3", "data": {"amount": 500}},
    ]) + "\n")
    engine.import_events(events)
    report = engine.tick("2026-07-06T00:00Z")
    assert report.converted == 1
    stats = engine.stats("g")["goal"]
    assert (stats["enrolled"], stats["converted"]) == (3, 1)
    assert engine.status(partner="p1", campaign="g")["enrollments"][0]["status"] == "active"  # exit: false


# --- engine test (a dry run) ------------------------------------------------------------------------


def test_a_dry_run_follows_the_split_shows_the_variant_the_holdout_and_quiet_hours(tmp_path):
    from engine.clock import from_iso
    from engine.dryrun import dry_run

    steps = ("  - id: route\n    split:\n      fast: {weight: 1, goto: second}\n      slow: {weight: 1}\n"
             '  - id: first\n    email:\n      subject: Hello\n      body: Hi\n      variants:\n'
             '        short: {weight: 1, subject: "Hi!"}\n        long: {weight: 1, subject: Hello there}\n'
             "  - id: second\n    when: variant(\"first\") == \"long\"\n    email: {subject: Again, body: Again}\n")
    root = workspace(tmp_path, {"d": campaign(steps=steps, extra="holdout: 30%\n")}, everyone(), POLICIES)
    result = dry_run(root, "d", None, None, from_iso("2026-07-01T22:00:00Z"))
    shown: set[str] = set()
    for entry in result["partners"]:
        pid = entry["partner"]
        runs = {s["step"]: s for s in entry["steps"]}
        path = spec_pick("d", "route", pid, [("fast", 1), ("slow", 1)])
        assert runs["route"]["path"] == path
        if spec_hash("d", "holdout", pid, 10_000) < 3000:
            assert runs["second"]["status"] == "skipped" and runs["second"]["reason"] == "holdout"
            continue
        # 22:00 is in quiet hours (UTC): the path's first message waits until 08:00 the next
        # morning, and what follows it at once goes then too
        sent = [s for s in entry["steps"] if s["status"] == "would_execute" and s["kind"] == "email"]
        assert all(s["at"] == "2026-07-02T08:00:00Z" for s in sent)
        if path == "fast":  # the split skipped `first`, so variant("first") is null: nothing is sent
            assert sent == [] and runs["second"]["reason"] == "condition"
            continue
        assert sent[0]["held"] == {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00",
                                   "from": "2026-07-01T22:00:00Z", "until": "2026-07-02T08:00:00Z"}
        if path == "slow":
            shown.add(path)
            variant = spec_pick("d", "first", pid, [("short", 1), ("long", 1)])
            assert runs["first"]["message"]["variant"] == variant
            # variant("first") sees the variant the dry run gave
            assert runs["second"]["status"] == ("would_execute" if variant == "long" else "skipped")
    assert shown == {"slow"}  # the sample (the first five of the audience) took the slow path at least once


def test_a_dry_run_caps_the_path_s_own_messages_and_defers_them_when_told(tmp_path):
    from engine.clock import from_iso
    from engine.dryrun import dry_run

    steps = email("one") + wait("1d") + email("two") + wait("1d") + email("three")
    cap = "policies:\n  frequency:\n    email: {max: 2, per: 7d}\n"
    for on_cap, three in (("skip", ("skipped", "frequency_cap", "2026-07-03T10:00:00Z", None)),
                          ("defer", ("would_execute", None, "2026-07-08T10:00:00Z", "2026-07-08T10:00:00Z"))):
        root = workspace(tmp_path / on_cap, {"d": campaign(steps=steps)}, partners_csv(partner("p1")),
                         cap + f"  on_cap: {on_cap}\n")
        result = dry_run(root, "d", ["p1"], None, from_iso(AT))
        runs = {s["step"]: s for s in result["partners"][0]["steps"]}
        assert [runs[s]["status"] for s in ("one", "two")] == ["would_execute", "would_execute"]
        third = runs["three"]
        # two emails on 07-01 and 07-02: the third (07-03) is a third in 7 days; the first leaves
        # the window 7 days after it was sent
        assert (third["status"], third["reason"], third["at"], (third.get("held") or {}).get("until")) == three


def test_two_crons_firing_at_one_instant_send_in_priority_order_under_a_cap(tmp_path, make_engine):
    daily = 'trigger:\n  cron: "0 9 * * *"\n'
    root = workspace(tmp_path, {"a-low": campaign(trigger="", steps=email("a"), extra=daily),
                                "b-high": campaign(trigger="", steps=email("b"), extra=daily + "priority: 3\n")},
                     partners_csv(partner("p1")), CAP)
    engine = make_engine(root, at="2026-07-01T00:00Z")
    engine.tick("2026-07-01T00:00Z")
    engine.tick("2026-07-01T12:00Z")
    # both enroll at 09:00; b-high's email goes first and takes the day's one slot
    assert sent(engine, "email") == [("p1", "b", "2026-07-01T09:00:00Z")]
    assert steps_of(engine, "a-low", "p1")["a"] == ("skipped", "frequency_cap", "2026-07-01T09:00:00Z")


def test_a_goal_without_within_converts_at_any_time(tmp_path, make_engine):
    goal = "goal:\n  event: invoice.paid\n"
    root = workspace(tmp_path, {"g": campaign(steps=email("first"), extra=goal)}, partners_csv(partner("p1")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"type": "invoice.paid", "at": "2027-07-01T08:00:00Z", "partner": "p1"}) + "\n")
    engine.import_events(events)
    assert engine.tick("2027-07-02T00:00Z", force=True).converted == 1
