"""engine explain (issue 6) on the example workspace: why a partner is or is not in a campaign,
ruleset by ruleset and sub-expression by sub-expression, with positions in the YAML files; and
that the explanation agrees with what the tick does.

(Not named tests/engine/test_explain.py: with no __init__.py under tests/, pytest's default import
mode cannot collect two test modules of the same name, and tests/dsl/test_explain.py exists.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.audience import GATED_CHANNELS
from dsl.runtime import Context
from engine.api import Engine
from engine.errors import UnknownName
from engine.explain import explain_partner, render_text
from engine.partners import import_partners
from engine.tick import StoreFacts

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
START = "2026-07-01T00:00"  # Helsinki time


@pytest.fixture
def engine(make_engine) -> Engine:
    engine = make_engine(EXAMPLES, at=START)
    engine.tick()  # imports the partners (and enrolls the audience of partner-onboarding)
    return engine


def explained(engine: Engine, campaign: str, partner: str, at: str | None = None) -> dict:
    return explain_partner(engine.store, engine.plan, engine.book, campaign, partner, engine.time(at))


def position(engine: Engine, path: str, marker: str, token: str) -> tuple[int, int]:
    """1-based line and column of ``token`` on the first line of the workspace file that holds
    ``marker`` (so the tests follow edits of the example files)."""
    text = (engine.root / path).read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        if marker in line:
            return number, line.index(token) + 1
    raise AssertionError(f"{marker!r} not in {path}")


def step(expression: str, value: object, at: tuple[int, int]) -> dict:
    return {"expression": expression, "value": value, "line": at[0], "col": at[1]}


ONBOARDING = "campaigns/partner-onboarding.yaml"
GOLD_FI = 'partner.tier in ["gold", "platinum"] and partner.country == "FI"'
ROLE_EXCLUDE = 'partner.role in ["sales_rep", "default_lead_owner"]'


def test_p038_is_excluded_by_engine_yaml_exactly(engine: Engine) -> None:
    result = explained(engine, "partner-onboarding", "p038")
    tier = position(engine, ONBOARDING, "gold-fi:", "partner.tier")
    country = position(engine, ONBOARDING, "gold-fi:", "partner.country")
    revenue = position(engine, ONBOARDING, "big-spenders:", "partner.revenue")
    role = position(engine, "engine.yaml", "exclude: partner.role", "partner.role")
    active = position(engine, ONBOARDING, "exclude: partner.active", "partner.active")
    supplier = position(engine, "engine.yaml", "email: partner.supplier_emails", "partner.supplier_emails")
    sms = position(engine, "engine.yaml", "sms: partner.sms_opt_in", "partner.sms_opt_in")
    role_trace = [step("partner.role", "sales_rep", role), step(ROLE_EXCLUDE, True, role)]
    active_trace = [step("partner.active", True, active), step("partner.active == false", False, active)]
    assert result == {
        "campaign": "partner-onboarding",
        "partner": "p038",
        "eligible": False,
        "rulesets": [
            {"name": "gold-fi", "expression": GOLD_FI, "match": True, "trace": [
                step("partner.tier", "gold", tier),
                step('partner.tier in ["gold", "platinum"]', True, tier),
                step("partner.country", "FI", country),
                step('partner.country == "FI"', True, country),
                step(GOLD_FI, True, tier)]},
            {"name": "big-spenders", "expression": "partner.revenue >= 100000", "match": False, "trace": [
                step("partner.revenue", None, revenue),
                step("partner.revenue >= 100000", False, revenue)]},
        ],
        "groups": {"match": False, "groups": [], "member": None, "trace": []},
        "exclude": {
            "match": True,
            "by": "exclude (engine.yaml)",
            "rules": [
                {"name": "exclude (engine.yaml)", "expression": ROLE_EXCLUDE, "file": "engine.yaml", "match": True,
                 "trace": role_trace},
                {"name": "audience.exclude", "expression": "partner.active == false", "file": ONBOARDING,
                 "match": False, "trace": active_trace},
                {"name": "inactive contact", "expression": "partner.active == false", "file": None, "match": False,
                 "trace": []},  # active contacts only: the schema has an `active` field
            ],
            "trace": role_trace + active_trace,
        },
        "consent": {
            "match": True,
            "channels": {
                "email": {"match": True, "by": "expression", "expression": "partner.supplier_emails",
                          "file": "engine.yaml", "trace": [step("partner.supplier_emails", True, supplier)]},
                "sms": {"match": True, "by": "expression", "expression": "partner.sms_opt_in", "file": "engine.yaml",
                        "trace": [step("partner.sms_opt_in", True, sms)]},
            },
            "trace": [step("partner.supplier_emails", True, supplier), step("partner.sms_opt_in", True, sms)],
        },
        "trigger": {"match": False, "kind": "audience", "reason": "excluded by exclude (engine.yaml)", "when": None,
                    "duplicate_of": None, "trace": []},
    }
    json.dumps(result)  # JSON-ready all the way down


def test_p001_gold_fi_matches(engine: Engine) -> None:
    result = explained(engine, "partner-onboarding", "p001")
    gold_fi = result["rulesets"][0]
    assert gold_fi["name"] == "gold-fi" and gold_fi["match"] is True
    assert [(s["expression"], s["value"]) for s in gold_fi["trace"]] == [
        ("partner.tier", "gold"), ('partner.tier in ["gold", "platinum"]', True), ("partner.country", "FI"),
        ('partner.country == "FI"', True), (GOLD_FI, True)]
    line, _ = position(engine, ONBOARDING, "gold-fi:", "partner.tier")
    assert {s["line"] for s in gold_fi["trace"]} == {line}
    assert result["rulesets"][1]["match"] is True  # big-spenders: revenue 125000
    assert result["groups"] == {"match": True, "groups": ["summit-2026"], "member": None, "trace": []}
    assert result["exclude"]["match"] is False and result["exclude"]["by"] is None
    assert result["consent"]["match"] is True
    # the first tick enrolled p001: the trigger would not enroll them again
    assert result["eligible"] is False
    assert result["trigger"]["match"] is False
    assert result["trigger"]["reason"] == "already active in partner-onboarding"


def test_p003_matches_no_ruleset(engine: Engine) -> None:
    result = explained(engine, "partner-onboarding", "p003")
    assert [(r["name"], r["match"]) for r in result["rulesets"]] == [("gold-fi", False), ("big-spenders", False)]
    # `and` stopped at the first false operand: partner.country was not evaluated
    assert [s["expression"] for s in result["rulesets"][0]["trace"]] == [
        "partner.tier", 'partner.tier in ["gold", "platinum"]', GOLD_FI]
    assert result["rulesets"][0]["trace"][0]["value"] == "silver"
    assert result["rulesets"][1]["trace"][0] == step(
        "partner.revenue", 4200, position(engine, ONBOARDING, "big-spenders:", "partner.revenue"))
    assert result["groups"]["match"] is False
    assert result["exclude"]["match"] is False
    assert result["consent"]["match"] is False  # supplier_emails false, sms_opt_in false
    assert result["consent"]["channels"]["email"]["trace"][0]["value"] is False
    assert result["eligible"] is False
    assert result["trigger"]["reason"] == "no ruleset matches and the partner is in none of the campaign's groups"


def test_a_duplicate_is_named(engine: Engine) -> None:
    """p015 and p016 share a mailbox; the campaign dedupes by email and keeps p015."""
    result = explained(engine, "partner-onboarding", "p016")
    assert result["eligible"] is False
    assert result["trigger"]["duplicate_of"] == "p015"
    assert result["trigger"]["reason"] == "a duplicate of partner p015, who has the same email (dedupe: email)"
    assert explained(engine, "partner-onboarding", "p015")["trigger"]["reason"] == \
        "already active in partner-onboarding"


def test_eligible_before_a_one_shot_and_the_test_contact_rule(engine: Engine) -> None:
    result = explained(engine, "summer-webinar", "p005")
    assert result["eligible"] is True and result["trigger"] == {
        "match": True, "kind": "at", "reason": None, "when": None, "duplicate_of": None, "trace": []}
    assert [r["name"] for r in result["exclude"]["rules"]] == ["exclude (engine.yaml)", "audience.exclude", "inactive contact",
                                                                   "test contact"]
    assert result["exclude"]["rules"][3] == {"name": "test contact", "expression": None, "file": None,
                                             "match": False, "trace": []}
    assert list(result["consent"]["channels"]) == ["email"]  # the webinar sends only email


def test_an_event_trigger_shows_its_when_without_a_trace(engine: Engine) -> None:
    result = explained(engine, "payment-failed", "p001")
    assert result["trigger"]["kind"] == "event"
    assert result["trigger"]["when"] == "event.amount > 100"
    assert result["trigger"]["trace"] == []


def test_a_campaign_without_trigger(engine: Engine) -> None:
    result = explained(engine, "demo-invite", "p001")
    assert result["trigger"]["kind"] is None and result["trigger"]["match"] is False
    assert "no trigger" in result["trigger"]["reason"]


def test_consent_from_the_ledger(engine: Engine, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"type": "unsubscribed", "at": "2026-07-01T06:00:00Z", "partner": "p001",
                                  "id": "unsub-1", "data": {"channel": "email"}}) + "\n")
    engine.import_events(events)
    result = explained(engine, "partner-onboarding", "p001", "2026-07-02T00:00")
    assert result["consent"]["channels"]["email"] == {"match": False, "by": "ledger", "expression": None,
                                                      "file": None, "trace": []}
    assert result["consent"]["channels"]["sms"]["by"] == "expression"
    assert result["consent"]["match"] is False
    before = explained(engine, "partner-onboarding", "p001", "2026-07-01T08:00")  # 05:00Z: before the unsubscribe
    assert before["consent"]["channels"]["email"]["by"] == "expression"


def test_unknown_names_suggest_the_closest(engine: Engine) -> None:
    with pytest.raises(UnknownName, match="unknown campaign 'partner-onbording'; did you mean 'partner-onboarding'"):
        explained(engine, "partner-onbording", "p001")
    with pytest.raises(UnknownName, match="unknown partner 'p0001'.*did you mean 'p00"):
        explained(engine, "partner-onboarding", "p0001")


def test_render_text(engine: Engine) -> None:
    text = render_text(explained(engine, "partner-onboarding", "p038"))
    line, col = position(engine, ONBOARDING, "gold-fi:", "partner.tier")
    role = position(engine, "engine.yaml", "exclude: partner.role", "partner.role")
    assert text.splitlines()[0] == "partner-onboarding: partner p038 is not eligible"
    assert f"  ✓ gold-fi: {GOLD_FI}" in text
    assert f'{line}:{col}  partner.tier = "gold"' in text
    assert f'{line}:{col}  partner.tier in ["gold", "platinum"] = true' in text
    assert "  ✗ big-spenders: partner.revenue >= 100000" in text
    assert "partner.revenue = null" in text
    assert "exclude: excluded by exclude (engine.yaml)" in text
    assert f'{role[0]}:{role[1]}  partner.role = "sales_rep"' in text
    assert "trigger (audience): ✗ would not enroll: excluded by exclude (engine.yaml)" in text


# --- agreement with the engine ------------------------------------------------------------------------


def test_agrees_with_the_compiled_audience_for_every_partner(engine: Engine) -> None:
    plan, at = engine.plan, engine.time(None)
    partners = engine.book.all()
    for cid, compiled in plan.campaigns.items():
        ctx = Context(now=at, tz=compiled.tz, facts=StoreFacts(engine.store, plan, cid, None, at))
        for partner in partners:
            pid = partner["id"]
            result = explained(engine, cid, pid)
            match = compiled.audience.explain(partner, ctx, plan.groups)
            assert [r["name"] for r in result["rulesets"] if r["match"]] == list(match.rulesets), (cid, pid)
            assert result["groups"]["groups"] == list(match.groups)
            assert result["exclude"]["by"] == match.excluded_by, (cid, pid)
            for channel in GATED_CHANNELS:
                if channel in result["consent"]["channels"]:
                    ledger = engine.store.consent_latest(pid, channel, at)
                    assert result["consent"]["channels"][channel]["match"] is \
                        compiled.audience.consents(channel, partner, ledger, ctx)


def test_eligible_partners_are_those_the_tick_enrolls(make_engine) -> None:
    engine = make_engine(EXAMPLES, at=START)
    at = engine.time(None)
    import_partners(engine.store, engine.plan, at)  # the partners, without a tick
    engine.book.refresh()
    ids = [p["id"] for p in engine.book.all()]
    eligible = {pid for pid in ids if explained(engine, "partner-onboarding", pid)["eligible"]}
    assert eligible
    engine.tick()
    enrolled = {e["partner"] for e in _enrollments(engine, "partner-onboarding")}
    assert eligible == enrolled
    assert all(not explained(engine, "partner-onboarding", pid)["eligible"] for pid in ids)


def _enrollments(engine: Engine, campaign: str) -> list[dict]:
    return [{"partner": e.partner} for e in engine.store.enrollments_in(campaign)]
