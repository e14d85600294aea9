"""Who is in a campaign's audience (rulesets ∪ groups − exclusions, test contacts, dedupe),
who may be contacted on which channel, and a run over every example campaign."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.audience import compile_audience, dedupe, natural_key
from campaigns.model import Campaign, Settings
from campaigns.workspace import load_workspace
from dsl.runtime import Context

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
UTC = timezone.utc


def ctx() -> Context:
    return Context(now=datetime(2026, 7, 1, 9, tzinfo=UTC), tz=UTC)


SETTINGS = Settings.model_validate({
    "exclude": 'partner.role in ["sales_rep", "default_lead_owner"]',
    "consent": {"email": "partner.supplier_emails", "sms": "partner.sms_opt_in"},
})

PARTNERS: list[dict[str, Any]] = [
    {"id": "p1", "tier": "gold", "revenue": 50, "email": "a@x.fi", "company": "X Oy"},
    {"id": "p2", "tier": "silver", "revenue": 200, "email": "b@y.fi", "company": "Y Oy"},
    {"id": "p3", "tier": "silver", "revenue": 5, "email": "c@z.fi", "company": "Z Oy"},  # only in the group
    {"id": "p4", "tier": "gold", "role": "sales_rep", "email": "d@x.fi"},  # excluded everywhere
    {"id": "p5", "tier": "gold", "active": False, "email": "e@x.fi"},  # excluded by the campaign
    {"id": "p6", "tier": "gold", "test": True, "email": "test@example.com"},  # test contact
    {"id": "p7", "tier": "silver", "revenue": 1},  # matches nothing
    {"id": "p8", "tier": None, "revenue": "lots"},  # wrong types: no match, no exception
]
GROUPS = {"summit": frozenset({"p3", "p4", "p99"}), "other": frozenset({"p7"})}


def audience(include_test: bool = True, dedupe: list[str] | None = None, settings: Settings = SETTINGS):
    campaign = Campaign.model_validate({"audience": {
        "rulesets": {"gold": 'partner.tier == "gold"', "big": "partner.revenue >= 100"},
        "groups": ["summit"],
        "exclude": "partner.active == false",
        "include_test": include_test,
        "dedupe": dedupe or [],
    }})
    return compile_audience(campaign, settings)


def test_rulesets_union_groups_minus_exclusions() -> None:
    assert audience().select(PARTNERS, ctx(), GROUPS) == ["p1", "p2", "p3", "p6"]


def test_test_contacts_only_when_included() -> None:
    assert audience(include_test=False).select(PARTNERS, ctx(), GROUPS) == ["p1", "p2", "p3"]


def test_without_groups_loaded_only_the_rulesets_count() -> None:
    assert audience().select(PARTNERS, ctx()) == ["p1", "p2", "p6"]


def test_without_a_global_exclude_only_the_campaign_excludes() -> None:
    assert audience(settings=Settings()).select(PARTNERS, ctx(), GROUPS) == ["p1", "p2", "p3", "p4", "p6"]


@pytest.mark.parametrize("partner, rulesets, groups, excluded_by", [
    (PARTNERS[0], ("gold",), (), None),
    ({"id": "p9", "tier": "gold", "revenue": 500}, ("gold", "big"), (), None),
    (PARTNERS[2], (), ("summit",), None),
    (PARTNERS[3], ("gold",), ("summit",), "exclude (engine.yaml)"),
    (PARTNERS[4], ("gold",), (), "audience.exclude"),
    (PARTNERS[6], (), (), None),
])
def test_explain_says_which_rulesets_and_groups_match_and_what_excludes(partner, rulesets, groups, excluded_by) -> None:
    match = audience().explain(partner, ctx(), GROUPS)
    assert (match.rulesets, match.groups, match.excluded_by) == (rulesets, groups, excluded_by)
    assert match.matches == audience().matches(partner, ctx(), GROUPS)
    assert audience().matching_rulesets(partner, ctx()) == list(rulesets)


def test_a_test_contact_is_explained() -> None:
    assert audience(include_test=False).explain(PARTNERS[5], ctx()).excluded_by == "test contact"


def test_bad_data_is_a_warning_not_an_exception() -> None:
    context = ctx()
    assert not audience().matches(PARTNERS[7], context)
    assert context.warnings


# --- Dedupe ---------------------------------------------------------------------------------------

SHARED = [
    {"id": "p10", "email": "Info@Lumi.fi ", "company": "Lumi"},
    {"id": "p2", "email": "info@lumi.fi", "company": "lumi "},
    {"id": "p3", "email": "sales@lumi.fi", "company": "Lumi"},
    {"id": "p4", "company": "Other"},
    {"id": "p5", "company": "Other"},
    {"id": "p6", "email": "  "},
    {"id": "p7", "email": "  "},
]


@pytest.mark.parametrize("keys, kept", [
    ([], ["p10", "p2", "p3", "p4", "p5", "p6", "p7"]),
    (["email"], ["p2", "p3", "p4", "p5", "p6", "p7"]),  # p2 is older than p10; no email is no duplicate
    (["company"], ["p2", "p4", "p6", "p7"]),
    (["email", "company"], ["p2", "p4", "p6", "p7"]),
])
def test_dedupe_keeps_the_oldest_partner_by_natural_id(keys: list[str], kept: list[str]) -> None:
    assert sorted(p["id"] for p in dedupe(SHARED, keys)) == sorted(kept)


def test_dedupe_in_select_runs_over_the_matching_partners_in_their_order() -> None:
    partners = [
        {"id": "p10", "tier": "gold", "email": "shared@x.fi"},
        {"id": "p2", "tier": "gold", "email": "SHARED@x.fi", "active": False},  # older but excluded
        {"id": "p11", "tier": "gold", "email": "shared@x.fi"},
        {"id": "p1", "tier": "gold", "email": "own@x.fi"},
    ]
    assert audience(dedupe=["email"]).select(partners, ctx()) == ["p10", "p1"]


def test_natural_order_of_ids() -> None:
    ids = ["p10", "p2", "p1", "a", "p01", "10", "9"]
    assert sorted(ids, key=natural_key) == ["9", "10", "a", "p01", "p1", "p2", "p10"]


def _readable(partner_id: str) -> tuple:
    """Natural order as people read it: each run of digits a number, the text between them
    text; the id itself breaks ties."""
    parts = re.split(r"(\d+)", partner_id)
    return tuple(int(part) if i % 2 else part for i, part in enumerate(parts)), partner_id


partner_ids = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\u2028\u2029"),
                      min_size=1, max_size=12) \
    | st.from_regex(r"[a-z]{0,2}0*[0-9]{0,4}[a-z٣]?[0-9]{0,3}", fullmatch=True).filter(bool)


@given(st.lists(partner_ids, max_size=25))
def test_the_natural_key_is_a_text_that_sorts_as_people_read_ids(ids: list[str]) -> None:
    """The key is a text so that SQL orders by it (SQLite: its UTF-8 bytes; PostgreSQL:
    COLLATE "C"): sorting by it, by its bytes, and by the readable tuple agree."""
    expected = sorted(ids, key=_readable)
    assert sorted(ids, key=natural_key) == expected
    assert sorted(ids, key=lambda pid: natural_key(pid).encode("utf-8")) == expected


# --- Consent --------------------------------------------------------------------------------------


@pytest.mark.parametrize("channel, partner, ledger, consents", [
    ("email", {"supplier_emails": True}, None, True),  # the record, without a ledger entry
    ("email", {"supplier_emails": False}, None, False),
    ("email", {}, None, False),  # a missing field is opted out
    ("email", {"supplier_emails": "yes"}, None, False),  # a wrong type is not a yes
    ("email", {"supplier_emails": False}, True, True),  # the ledger wins over the record
    ("email", {"supplier_emails": True}, False, False),
    ("sms", {"sms_opt_in": True, "supplier_emails": False}, None, True),
    ("sms", {"supplier_emails": True}, None, False),
    ("popup", {}, None, True),  # only email and SMS are gated
    ("activity", {}, False, True),
    ("letter", {}, None, True),
])
def test_consent_precedence(channel: str, partner: dict, ledger: bool | None, consents: bool) -> None:
    assert audience().consents(channel, partner, ledger, ctx()) is consents


def test_without_a_consent_expression_only_the_ledger_opts_in() -> None:
    bare = audience(settings=Settings())
    assert not bare.consents("email", {"supplier_emails": True}, None, ctx())
    assert bare.consents("email", {}, True, ctx())


# --- The examples ---------------------------------------------------------------------------------


def test_every_example_campaign_selects_over_the_example_partners() -> None:
    workspace = load_workspace(EXAMPLES)
    groups = {name: frozenset(line.strip() for line in path.read_text().splitlines()[1:] if line.strip())
              for name, path in workspace.groups.items()}
    partners = workspace.partners.records
    context = Context(now=datetime(2026, 7, 1, 9, tzinfo=UTC), tz=workspace.tz)
    selected = {}
    for campaign_id, campaign in workspace.campaigns.items():
        compiled = compile_audience(campaign, workspace.settings)
        selected[campaign_id] = compiled.select(partners, context, groups)
        for partner in partners:
            compiled.explain(partner, context, groups)
            compiled.consents("email", partner, None, context)
    onboarding = selected["partner-onboarding"]
    assert "p001" in onboarding and "p040" in onboarding  # p040 is the test contact, included there
    assert len(onboarding) == len(set(onboarding))
    by_id = {p["id"]: p for p in partners}
    assert not any(by_id[i].get("role") in ("sales_rep", "default_lead_owner") for ids in selected.values() for i in ids)
