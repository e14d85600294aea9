"""`engine explain` and `engine plan` on SPEC §11's experiments and policies, through the tick with
a fixed clock: which rule (quiet hours, send days, a frequency cap) moved or skipped a step, from
when and until when; the holdout; the path of a split and the variant of a step; and what a
changed holdout or split means for the enrollments in flight. Hashes are worked out here with
the SPEC's formula (tests/engine/test_policies.py), not with the engine's code; every time is
worked out by hand beside it. Each test runs on both stores (see conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli import main
from engine.explain import render_text
from tests.engine.test_policies import POLICIES, spec_hash, spec_pick
from tests.engine.test_tick import (campaign, email, partner, partners_csv, sent, set_campaign, set_partners, steps_of,
                                    wait, workspace)

CAP = "policies:\n  frequency:\n    email: {max: 1, per: 1d}\n"
AT = "2026-07-01T10:00:00Z"
HEAD = "policies (experiments and sending rules of the message steps):"


def policy_text(result: dict) -> list[str]:
    """The lines of the explanation's policies part."""
    lines = render_text(result).splitlines()
    return lines[lines.index(HEAD):]


def part_lines(result: dict, head: str) -> list[str]:
    """The lines of one flow part: from its head line to the next part's."""
    lines = render_text(result).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(head))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines))
    return lines[start:end]


def run_cli(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --- quiet hours and send days: which rule moved the step, from when, until when -------------------


def helsinki_workspace(tmp_path: Path) -> Path:
    """SPEC §11's quiet hours 21:00–08:00, partners in their own timezone (engine.yaml's
    timezone_field): first at 12:00Z, then 12h later, 00:00Z on July 2nd."""
    root = workspace(tmp_path, {"q": campaign(steps=email("first") + wait("12h") + email("second"))},
                     partners_csv(partner("hel", role="Europe/Helsinki"), partner("ny", role="America/New_York")),
                     POLICIES)
    (root / "engine.yaml").write_text((root / "engine.yaml").read_text().replace(
        "  id: id\n", "  id: id\n  timezone_field: role\n"))
    return root


def test_a_step_moved_by_quiet_hours_says_the_rule_from_when_and_until_when(tmp_path, make_engine, capsys):
    engine = make_engine(helsinki_workspace(tmp_path), at="2026-07-01T12:00Z")
    engine.tick("2026-07-01T12:00Z")  # 15:00 in Helsinki: first goes
    engine.tick("2026-07-02T01:00Z")  # second, due 00:00Z = 03:00 in Helsinki: quiet until 08:00 = 05:00Z

    result = engine.explain("q", "hel", "2026-07-02T01:00Z")
    policies = result["policies"]
    held = {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00",
            "from": "2026-07-02T00:00:00Z", "until": "2026-07-02T05:00:00Z"}
    assert policies == {
        "transactional": False, "holdout": None,
        "quiet_hours": {"from": "21:00", "to": "08:00", "by": "engine.yaml"}, "send_days": None,
        # 01:00Z is 04:00 in Helsinki: a message due now would wait for 08:00 there too
        "now": {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00", "until": "2026-07-02T05:00:00Z"},
        "frequency": {}, "on_cap": "skip", "enrollment": 1,
        "steps": [
            {"step": "first", "kind": "email", "variant": None, "variants": None, "due_at": None, "held": None,
             "run": {"at": "2026-07-01T12:00:00Z", "status": "executed", "reason": None, "variant": None,
                     "held": None, "rule": None}},
            {"step": "second", "kind": "email", "variant": None, "variants": None,
             "due_at": "2026-07-02T05:00:00Z", "held": held, "run": None},
        ],
    }
    # what engine steps shows of the pending step is what explain says
    pending = next(s for s in engine.steps("q", "hel")["steps"] if s["step"] == "second")
    assert (pending["due_at"], pending["held"]) == ("2026-07-02T05:00:00Z", held)
    assert policy_text(result) == [
        HEAD,
        "  quiet hours 21:00–08:00 (engine.yaml): a message due now waits until 2026-07-02T05:00:00Z "
        "(quiet_hours 21:00–08:00)",
        "  first (email)",
        "    enrollment 1: executed at 2026-07-01T12:00:00Z",
        "  second (email)",
        "    enrollment 1 is due here at 2026-07-02T05:00:00Z: moved from 2026-07-02T00:00:00Z by quiet_hours "
        "21:00–08:00",
    ]
    # New York's 20:00 was not quiet: its second went at its due time, held by nothing
    ny = engine.explain("q", "ny", "2026-07-02T01:00Z")["policies"]
    # 01:00Z is 21:00 in New York: quiet there from now until 08:00 (12:00Z)
    assert ny["now"] == {"rule": "quiet_hours", "detail": "quiet_hours 21:00–08:00", "until": "2026-07-02T12:00:00Z"}
    assert ny["steps"][1]["run"] == {"at": "2026-07-02T00:00:00Z", "status": "executed", "reason": None,
                                     "variant": None, "held": None, "rule": None}

    # the CLI: the same text, and the JSON with the new key beside the old ones
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "q", "--partner", "hel", "--at",
                        "2026-07-02T01:00Z")
    assert code == 0 and out.rstrip("\n").splitlines()[-1] == (
        "    enrollment 1 is due here at 2026-07-02T05:00:00Z: moved from 2026-07-02T00:00:00Z by quiet_hours "
        "21:00–08:00")
    code, out = run_cli(capsys, "-w", str(engine.root), "explain", "q", "--partner", "hel", "--at",
                        "2026-07-02T01:00Z", "--json")
    assert code == 0
    found = json.loads(out)
    assert set(found) == {"campaign", "partner", "eligible", "rulesets", "groups", "exclude", "consent", "trigger",
                          "policies"}
    assert found["policies"] == policies

    # once it went, its run says it had been moved, and by what
    engine.tick("2026-07-02T06:00Z")
    after = engine.explain("q", "hel", "2026-07-02T06:00Z")
    assert after["policies"]["steps"][1]["run"] == {
        "at": "2026-07-02T05:00:00Z", "status": "executed", "reason": None, "variant": None, "held": held,
        "rule": None}
    assert after["policies"]["now"] is None  # 09:00 in Helsinki
    assert policy_text(after)[1:] == [
        "  quiet hours 21:00–08:00 (engine.yaml): a message due now goes",
        "  first (email)",
        "    enrollment 1: executed at 2026-07-01T12:00:00Z",
        "  second (email)",
        "    enrollment 1: executed at 2026-07-02T05:00:00Z (moved from 2026-07-02T00:00:00Z to "
        "2026-07-02T05:00:00Z by quiet_hours 21:00–08:00)",
    ]


def test_a_step_moved_by_the_campaign_s_send_days_then_quiet_hours(tmp_path, make_engine):
    own_days = campaign(steps=email("hello"), extra="send_days: [mon, tue, wed, thu, fri]\n")
    root = workspace(tmp_path, {"d": own_days}, partners_csv(partner("p1")), POLICIES)
    engine = make_engine(root, at="2026-07-04T12:00Z")  # a Saturday
    engine.tick("2026-07-04T12:00Z")

    result = engine.explain("d", "p1", "2026-07-05T12:00Z")  # Sunday
    held = {"rule": "send_days", "detail": "send_days mon, tue, wed, thu, fri",
            "from": "2026-07-04T12:00:00Z", "until": "2026-07-06T08:00:00Z"}  # Monday 00:00 is quiet until 08:00
    step = result["policies"]["steps"][0]
    assert (step["due_at"], step["held"], step["run"]) == ("2026-07-06T08:00:00Z", held, None)
    assert result["policies"]["send_days"] == {"days": ["mon", "tue", "wed", "thu", "fri"], "by": "campaign"}
    assert result["policies"]["now"] == {"rule": "send_days", "detail": "send_days mon, tue, wed, thu, fri",
                                         "until": "2026-07-06T08:00:00Z"}
    assert policy_text(result) == [
        HEAD,
        "  quiet hours 21:00–08:00 (engine.yaml); send days mon, tue, wed, thu, fri (campaign): a message due now "
        "waits until 2026-07-06T08:00:00Z (send_days mon, tue, wed, thu, fri)",
        "  hello (email)",
        "    enrollment 1 is due here at 2026-07-06T08:00:00Z: moved from 2026-07-04T12:00:00Z by send_days mon, "
        "tue, wed, thu, fri",
    ]
    engine.tick("2026-07-06T09:00Z")
    assert sent(engine, "email") == [("p1", "hello", "2026-07-06T08:00:00Z")]


# --- frequency caps: the rule that skipped or deferred the step -----------------------------------


def test_a_step_skipped_by_a_frequency_cap_names_the_rule(tmp_path, make_engine):
    root = workspace(tmp_path, {"a-low": campaign(steps=email("a")),
                                "b-high": campaign(steps=email("b"), extra="priority: 5\n")},
                     partners_csv(partner("p1")), CAP)
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    assert sent(engine, "email") == [("p1", "b", AT)]  # the higher priority took the one place

    result = engine.explain("a-low", "p1", "2026-07-01T11:00Z")
    assert result["policies"]["frequency"] == {"email": {"max": 1, "per": "1d", "rule": "frequency_cap email 1 per 1d",
                                                         "sends": 1, "match": False}}
    assert result["policies"]["steps"][0]["run"] == {
        "at": AT, "status": "skipped", "reason": "frequency_cap", "variant": None, "held": None,
        "rule": "frequency_cap email 1 per 1d"}
    assert policy_text(result) == [
        HEAD,
        "  ✗ frequency_cap email 1 per 1d: 1 sent in the last 1d; one more now is skipped (on_cap: skip)",
        "  a (email)",
        "    enrollment 1: skipped at 2026-07-01T10:00:00Z (frequency_cap email 1 per 1d)",
    ]
    # a day later the send has left the window
    later = engine.explain("a-low", "p1", "2026-07-02T10:00Z")["policies"]["frequency"]["email"]
    assert (later["sends"], later["match"]) == (0, True)
    assert "  ✓ frequency_cap email 1 per 1d: 0 sent in the last 1d; one more goes now" in policy_text(
        engine.explain("a-low", "p1", "2026-07-02T10:00Z"))


def test_a_step_deferred_by_a_cap_says_until_when(tmp_path, make_engine):
    root = workspace(tmp_path, {"a": campaign(steps=email("a")), "b": campaign(steps=email("b"))},
                     partners_csv(partner("p1")), CAP + "  on_cap: defer\n")
    engine = make_engine(root, at=AT)
    engine.tick(AT)

    result = engine.explain("b", "p1", "2026-07-01T12:00Z")
    step = result["policies"]["steps"][0]
    assert (step["due_at"], step["held"]) == ("2026-07-02T10:00:00Z", {
        "rule": "frequency_cap", "detail": "frequency_cap email 1 per 1d", "from": AT,
        "until": "2026-07-02T10:00:00Z"})
    assert policy_text(result) == [
        HEAD,
        "  ✗ frequency_cap email 1 per 1d: 1 sent in the last 1d; one more now waits until a slot frees (on_cap: "
        "defer)",
        "  b (email)",
        "    enrollment 1 is due here at 2026-07-02T10:00:00Z: moved from 2026-07-01T10:00:00Z by frequency_cap "
        "email 1 per 1d",
    ]


def test_a_transactional_campaign_says_no_rule_applies(tmp_path, make_engine):
    root = workspace(tmp_path, {"t": campaign(steps=email("receipt"), extra="transactional: true\n")},
                     partners_csv(partner("p1")), CAP + '  quiet_hours: {from: "00:00", to: "23:59"}\n')
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    result = engine.explain("t", "p1", AT)
    assert {k: result["policies"][k] for k in ("transactional", "quiet_hours", "send_days", "now", "frequency")} == {
        "transactional": True, "quiet_hours": None, "send_days": None, "now": None, "frequency": {}}
    assert policy_text(result) == [
        HEAD,
        "  transactional: no consent, frequency caps, quiet hours or send days apply",
        "  receipt (email)",
        "    enrollment 1: executed at 2026-07-01T10:00:00Z",
    ]


def test_without_experiments_or_rules_the_explanation_is_as_it_was(tmp_path, make_engine):
    root = workspace(tmp_path, {"plain": campaign(steps=email("hello"))}, partners_csv(partner("p1")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    result = engine.explain("plain", "p1", AT)
    assert "policies" not in result and "flow" not in result
    assert HEAD not in render_text(result)


# --- the holdout, splits and variants ------------------------------------------------------------------

PEOPLE = [f"p{i:02d}" for i in range(40)]


def test_the_holdout_says_whether_the_partner_is_in_it_and_why(tmp_path, make_engine):
    root = workspace(tmp_path, {"h": campaign(steps=email("hello"), extra="holdout: 25%\n")},
                     partners_csv(*(partner(pid) for pid in PEOPLE)))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    inside = next(pid for pid in PEOPLE if spec_hash("h", "holdout", pid, 10_000) < 2500)
    outside = next(pid for pid in PEOPLE if spec_hash("h", "holdout", pid, 10_000) >= 2500)
    h_in, h_out = spec_hash("h", "holdout", inside, 10_000), spec_hash("h", "holdout", outside, 10_000)

    held = engine.explain("h", inside, AT)
    assert held["policies"]["holdout"] == {"pct": 25.0, "match": True, "hash": h_in, "of": 10_000}
    assert policy_text(held) == [
        HEAD,
        f"  holdout 25%: ✓ the partner is in the holdout (hash {h_in} of 10000, below 2500): every message step is "
        "skipped (reason holdout)",
        "  hello (email)",
        "    enrollment 1: skipped at 2026-07-01T10:00:00Z (the partner is in the holdout)",
    ]
    treated = engine.explain("h", outside, AT)
    assert treated["policies"]["holdout"] == {"pct": 25.0, "match": False, "hash": h_out, "of": 10_000}
    assert policy_text(treated)[1] == f"  holdout 25%: ✗ the partner is not in the holdout (hash {h_out} of 10000, " \
                                      "not below 2500)"
    assert steps_of(engine, "h", inside)["hello"] == ("skipped", "holdout", AT)


SPLIT = ("  - id: path\n    split:\n      call-first: {weight: 30, goto: late}\n      email-first: {weight: 70}\n"
         + email("early") + wait("1d") + email("late"))
VARIANTS = ('  - id: welcome\n    email:\n      subject: "Default"\n      body: "Hello"\n      variants:\n'
            '        short: {weight: 50, subject: "Welcome!"}\n        long: {weight: 50, subject: "Welcome, friend"}\n')


def test_a_split_says_which_path_and_why_and_a_variant_which_one(tmp_path, make_engine):
    root = workspace(tmp_path, {"s": campaign(steps=VARIANTS + SPLIT)}, partners_csv(*(partner(p) for p in PEOPLE)))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    weights = [("call-first", 30), ("email-first", 70)]
    caller = next(p for p in PEOPLE if spec_pick("s", "path", p, weights) == "call-first")
    mailer = next(p for p in PEOPLE if spec_pick("s", "path", p, weights) == "email-first")

    for pid, path, goto, went in ((caller, "call-first", "late", "call-first → late"),
                                  (mailer, "email-first", None, "email-first → next step (early)")):
        h = spec_hash("s", "path", pid, 100)
        variant = spec_pick("s", "welcome", pid, [("short", 50), ("long", 50)])
        result = engine.explain("s", pid, "2026-07-01T12:00Z")
        [part] = result["flow"]
        assert part == {
            "step": "path", "kind": "split", "file": "campaigns/s.yaml", "hash": h, "of": 100, "path": path,
            "goto": goto, "next": "early",
            "paths": [{"path": "call-first", "weight": 30, "goto": "late", "match": path == "call-first"},
                      {"path": "email-first", "weight": 70, "goto": None, "match": path == "email-first"}],
            "enrollment": 1, "due_at": None,
            "run": {"at": AT, "status": "executed", "reason": None, "path": path, "goto": goto},
        }
        assert part_lines(result, "  path (split)") == [
            f"  path (split): {went} (hash {h} of 100, weights in file order)",
            f"    {'✓' if path == 'call-first' else '✗'} call-first: weight 30 → late",
            f"    {'✓' if path == 'email-first' else '✗'} email-first: weight 70 → next step",
            f"    enrollment 1 passed it at 2026-07-01T10:00:00Z, the tick chose: {went}",
        ]
        assert "flow (each branch, split and wait-for, as a tick at this time would take it):" in render_text(result)
        welcome = result["policies"]["steps"][0]
        assert (welcome["variant"], welcome["variants"], welcome["run"]["variant"]) == (
            variant, {"short": 50, "long": 50}, variant)
        early = part_lines(result, "  early (email)")
        if path == "call-first":  # the split jumped over it
            assert early == ["  early (email)", "    enrollment 1: skipped at 2026-07-01T10:00:00Z (jumped over by a "
                                                "split)"]
        else:
            assert early == ["  early (email)", "    enrollment 1: executed at 2026-07-01T10:00:00Z"]
        assert part_lines(result, "  welcome (email)") == [
            f"  welcome (email): variant {variant} (weights short 50, long 50)",
            f"    enrollment 1: executed at 2026-07-01T10:00:00Z (variant {variant})",
        ]
        assert part_lines(result, "  late (email)") == ["  late (email)", (
            "    enrollment 1: executed at 2026-07-01T10:00:00Z" if path == "call-first"  # the jump: due at once
            else "    enrollment 1 is due here at 2026-07-02T10:00:00Z")]


def test_before_the_split_the_path_is_the_one_the_tick_will_take(tmp_path, make_engine):
    steps = email("first") + wait("1d") + SPLIT
    root = workspace(tmp_path, {"s": campaign(steps=steps)}, partners_csv(partner("p01")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    before = engine.explain("s", "p01", AT)["flow"][0]
    assert (before["run"], before["due_at"]) == (None, "2026-07-02T10:00:00Z")
    assert part_lines(engine.explain("s", "p01", AT), "  path (split)")[-1] == \
        "    enrollment 1 is due here at 2026-07-02T10:00:00Z"
    engine.tick("2026-07-02T10:00Z")
    after = engine.explain("s", "p01", "2026-07-02T10:00Z")["flow"][0]
    assert (after["run"]["path"], after["run"]["goto"]) == (before["path"], before["goto"])


# --- engine plan -----------------------------------------------------------------------------------------


def plan(capsys, root: Path) -> tuple[int, dict]:
    code = main(["-w", str(root), "plan", "--json"])
    return code, json.loads(capsys.readouterr().out)


def entry(result: dict, cid: str) -> dict:
    [found] = [c for c in result["campaigns"] if c["campaign"] == cid]
    return found


def experiment(holdout: str, weights: tuple[int, int]) -> str:
    split = (f"  - id: path\n    split:\n      call-first: {{weight: {weights[0]}, goto: late}}\n"
             f"      email-first: {{weight: {weights[1]}}}\n")
    return campaign(steps=VARIANTS + wait("1d") + split + email("early") + wait("1d") + email("late"),
                    extra=f"holdout: {holdout}\n")


def test_plan_says_what_a_changed_holdout_or_split_does_to_the_enrollments_in_flight(tmp_path, make_engine, capsys):
    root = workspace(tmp_path, {"x": experiment("25%", (30, 70))}, partners_csv(*(partner(p) for p in PEOPLE)),
                     POLICIES)
    engine = make_engine(root, at=AT)
    engine.tick(AT)  # welcome ran (or was skipped for the holdout); everyone waits a day for the split
    out_25 = {p for p in PEOPLE if spec_hash("x", "holdout", p, 10_000) < 2500}
    variants = [("short", 50), ("long", 50)]

    code, result = plan(capsys, engine.root)
    assert (code, result["changes"]) == (0, 0)
    treated = [p for p in PEOPLE if p not in out_25]
    ahead = {key: n for key in ("call-first", "email-first")
             if (n := sum(spec_pick("x", "path", p, [("call-first", 30), ("email-first", 70)]) == key
                          for p in PEOPLE))}
    assert entry(result, "x")["experiments"] == {
        "holdout": {"pct": 25.0, "enrollments": 40, "held_out": len(out_25), "now_held_out": 0, "now_treated": 0},
        "steps": {
            "welcome": {"kind": "variants", "weights": {"short": 50, "long": 50}, "passed": len(treated),
                        "changed": 0, "ahead": {}},
            "path": {"kind": "split", "weights": {"call-first": 30, "email-first": 70}, "passed": 0, "changed": 0,
                     "ahead": ahead},
        },
    }

    # the holdout grows to 50% and the weights of the split and the variants change
    set_campaign(engine, "x", experiment("50%", (50, 50)).replace("short: {weight: 50", "short: {weight: 90"))
    out_50 = {p for p in PEOPLE if spec_hash("x", "holdout", p, 10_000) < 5000}
    moved = out_50 - out_25  # received welcome, now held out: their next message steps are skipped
    changed = sum(spec_pick("x", "welcome", p, variants) != spec_pick("x", "welcome", p, [("short", 90), ("long", 50)])
                  for p in treated)
    assert moved and changed
    code, result = plan(capsys, engine.root)
    assert (code, result["changes"]) == (4, 1)
    found = entry(result, "x")["experiments"]
    assert found["holdout"] == {"pct": 50.0, "enrollments": 40, "held_out": len(out_50), "now_held_out": len(moved),
                                "now_treated": 0}
    assert found["steps"]["welcome"] == {"kind": "variants", "weights": {"short": 90, "long": 50},
                                         "passed": len(treated), "changed": changed, "ahead": {}}
    new_ahead = {key: n for key in ("call-first", "email-first")
                 if (n := sum(spec_pick("x", "path", p, [("call-first", 50), ("email-first", 50)]) == key
                              for p in PEOPLE))}
    assert found["steps"]["path"] == {"kind": "split", "weights": {"call-first": 50, "email-first": 50},
                                      "passed": 0, "changed": 0, "ahead": new_ahead}
    code = main(["-w", str(engine.root), "plan"])
    text = capsys.readouterr().out.splitlines()
    assert code == 4
    assert text[text.index("x:") + 1:] == [
        f"  holdout 50%: {len(moved)} enrollments that received messages are now in the holdout: their next message "
        "steps are skipped (reason holdout)",
        f"  variants of welcome (short 90, long 50): {changed} of the {len(treated)} enrollments that received a "
        "variant would get another one now (the weights, their order or the keys changed): they keep theirs",
        "1 campaigns would change",
    ]

    # the tick agrees: the split goes by the new weights, the newly held out get no more messages
    engine.tick("2026-07-02T10:00Z")
    in_flight = []
    for p in PEOPLE:
        path = spec_pick("x", "path", p, [("call-first", 50), ("email-first", 50)])
        runs = steps_of(engine, "x", p)
        assert runs["path"] == ("executed", None, "2026-07-02T10:00:00Z")
        if path == "email-first":  # the others jumped to late and finished
            in_flight.append(p)
            assert runs["early"] == (("skipped", "holdout", "2026-07-02T10:00:00Z") if p in out_50
                                     else ("executed", None, "2026-07-02T10:00:00Z"))
        else:
            assert runs["late"] == (("skipped", "holdout", "2026-07-02T10:00:00Z") if p in out_50
                                    else ("executed", None, "2026-07-02T10:00:00Z"))
    code, result = plan(capsys, engine.root)
    passed = entry(result, "x")["experiments"]["steps"]["path"]
    assert (passed["passed"], passed["changed"], passed["ahead"]) == (len(in_flight), 0, {})
    # the paths swapped (the order of the weights is part of the assignment): those who passed the
    # split keep their path (all of them email-first, some of whom it would now send to call-first)
    swapped = experiment("50%", (50, 50)).replace("short: {weight: 50", "short: {weight: 90").replace(
        "      call-first: {weight: 50, goto: late}\n      email-first: {weight: 50}\n",
        "      email-first: {weight: 50}\n      call-first: {weight: 50, goto: late}\n")
    set_campaign(engine, "x", swapped)
    split_changed = sum(spec_pick("x", "path", p, [("email-first", 50), ("call-first", 50)]) == "call-first"
                        for p in in_flight)
    assert split_changed > 0
    code, result = plan(capsys, engine.root)
    assert entry(result, "x")["experiments"]["steps"]["path"] == {
        "kind": "split", "weights": {"email-first": 50, "call-first": 50}, "passed": len(in_flight),
        "changed": split_changed, "ahead": {}}
    main(["-w", str(engine.root), "plan"])
    assert (f"  split path (email-first 50, call-first 50): {split_changed} of the {len(in_flight)} enrollments "
            "that went down a path would get another one now (the weights, their order or the keys changed): "
            "they keep theirs") in capsys.readouterr().out.splitlines()


def test_plan_on_campaigns_with_policies_only_reports_no_experiments(tmp_path, make_engine, capsys):
    root = workspace(tmp_path, {"q": campaign(steps=email("first") + wait("12h") + email("second"))},
                     partners_csv(partner("p1")), POLICIES + "  frequency:\n    email: {max: 1, per: 1d}\n")
    engine = make_engine(root, at="2026-07-01T12:00Z")
    engine.tick("2026-07-01T12:00Z")
    engine.tick("2026-07-02T01:00Z")  # second is held until 08:00
    code, result = plan(capsys, engine.root)
    assert (code, result["changes"]) == (0, 0)
    assert entry(result, "q")["experiments"] is None
    assert entry(result, "q")["removed_steps"] == {"enrollments": 0, "steps": {}}


def test_plan_names_a_new_split_as_a_split(tmp_path, make_engine, capsys):
    steps = email("first") + wait("1d") + email("early") + wait("2d") + email("late")
    root = workspace(tmp_path, {"n": campaign(steps=steps)}, partners_csv(partner("p1")))
    engine = make_engine(root, at=AT)
    engine.tick(AT)
    engine.tick("2026-07-02T10:00Z")  # p1 ran early: it waits for late
    set_partners(engine, partner("p1"), partner("p2"))
    engine.tick("2026-07-02T11:00Z")  # p2 ran first: it waits for early
    split = "  - id: path\n    split:\n      a: {weight: 1, goto: late}\n      b: {weight: 1}\n"
    set_campaign(engine, "n", campaign(steps=email("first") + wait("1d") + email("early") + split + wait("2d")
                                       + email("late")))
    code, result = plan(capsys, engine.root)
    assert (code, entry(result, "n")["new_steps"]) == (4, {"enrollments": 2, "steps": {
        "path": {"kind": "split", "will_run": 1, "will_not_run": 1}}})
    assert entry(result, "n")["experiments"] == {"holdout": None, "steps": {
        "path": {"kind": "split", "weights": {"a": 1, "b": 1}, "passed": 0, "changed": 0,
                 "ahead": {spec_pick("n", "path", "p2", [("a", 1), ("b", 1)]): 1}}}}
    main(["-w", str(engine.root), "plan"])
    assert capsys.readouterr().out.splitlines()[1:3] == [
        "  split path is new before the position of 1 enrollments: it will not run for them",
        "  split path is new after the position of 1 enrollments: it will choose their paths when they reach it",
    ]
