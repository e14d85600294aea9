"""`engine test` as a library: the dry run of a campaign for some partners, on the examples, and
the passes it records in campaigns/.tested.json. (``tested_hash`` is used through its module: imported
by name, pytest would collect it as a test.)"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from dsl.diagnostics import SourceError
from engine.clock import parse_time
from engine import dryrun
from engine.dryrun import dry_run, record_pass
from engine.errors import UnknownName
from engine.testing import copy_workspace

pytestmark = pytest.mark.no_store  # dry runs never open the store (the one test that ticks too: on SQLite)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HELSINKI = ZoneInfo("Europe/Helsinki")
ONBOARDING = "partner-onboarding"


def local(text: str) -> datetime:
    return parse_time(text, HELSINKI)


JULY_1 = local("2026-07-01T00:00")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def file_hash(root: Path, campaign: str) -> str:
    return hashlib.sha256((root / "campaigns" / f"{campaign}.yaml").read_bytes()).hexdigest()


def by_partner(result: dict) -> dict[str, dict]:
    return {p["partner"]: p for p in result["partners"]}


def unsigned(text: str) -> str:
    """A body with the MAC of each signed link masked (the payload, naming the message, kept)."""
    return re.sub(r"(/[upoc]/[A-Za-z0-9_-]+)\.[A-Za-z0-9_-]+", r"\1.MAC", text)


def by_step(partner: dict) -> dict[str, dict]:
    return {s["step"]: s for s in partner["steps"]}


def write_campaign(root: Path, name: str, text: str) -> Path:
    path = root / "campaigns" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- partner-onboarding on the examples -----------------------------------------------------------


def test_p001_gets_every_step_of_onboarding_in_finnish(root: Path) -> None:
    result = dry_run(root, ONBOARDING, ["p001"], None, JULY_1)
    assert result["campaign"] == ONBOARDING
    assert result["at"] == "2026-06-30T21:00:00Z"
    assert result["content_hash"] == file_hash(root, ONBOARDING)
    assert result["passed"] is True
    (p001,) = result["partners"]
    assert p001["partner"] == "p001"
    assert p001["rulesets"] == ["gold-fi", "big-spenders"]  # gold in FI, revenue 125000
    assert p001["groups"] == ["summit-2026"]
    assert p001["excluded_by"] is None
    assert p001["enrolls"] is True
    assert [(s["step"], s["kind"], s["at"], s["status"]) for s in p001["steps"]] == [
        ("welcome", "email", "2026-06-30T21:00:00Z", "would_execute"),  # at `at`: Helsinki midnight
        ("welcome-nudge", "sms", "2026-07-03T21:00:00Z", "would_execute"),  # + 3d; opened() is false
        ("intro-call", "activity", "2026-07-04T06:00:00Z", "would_execute"),  # the next 09:00 Helsinki
        ("portal-note", "popup", "2026-07-11T06:00:00Z", "would_execute"),  # + 1w; no response
        ("welcome-letter", "letter", "2026-07-11T06:00:00Z", "would_execute"),
    ]
    assert p001["finished"] == {"reason": "completed", "at": "2026-07-11T06:00:00Z"}
    steps = by_step(p001)
    welcome = steps["welcome"]["message"]
    assert welcome["channel"] == "email" and welcome["to"] == "aino.korhonen@lumiverkko.fi"
    assert welcome["subject"] == "Tervetuloa kumppaniohjelmaan, Aino Korhonen"
    assert welcome["language"] == "fi" and welcome["html"] is True
    assert "<p>Hei Aino Korhonen,</p>" in welcome["body"] and "<strong>Gold</strong>" in welcome["body"]
    assert steps["welcome-nudge"]["message"] == {
        "channel": "sms", "to": "+358401110001", "language": "default",
        "text": "Hi Aino Korhonen, your partner welcome pack is in your inbox and on the portal."}
    call = steps["intro-call"]["message"]
    assert call["channel"] == "activity" and call["kind"] == "call"
    assert call["assignee"] == "anna.virtanen@example.com" and call["subject"] == "Intro call with Lumiverkko Oy"
    assert call["responses"]["interested"] == {"result": "successful", "follow_up": "demo-invite"}
    popup = steps["portal-note"]["message"]
    assert popup["pages"] == ["dashboard", "deals"] and popup["title"] == "Let's get you started"
    assert popup["body"] == "Book your intro call with anna.virtanen@example.com from the Contacts page."
    letter = steps["welcome-letter"]["message"]
    assert letter["channel"] == "letter" and "Helsinki, 11.07.2026" in letter["body"]
    assert "Ref. partner-onboarding/welcome-letter" in letter["body"]
    for step in p001["steps"]:
        assert step["reason"] is None and step["error"] is None


def test_the_store_is_never_created_and_the_pass_is_recorded(root: Path) -> None:
    dry_run(root, ONBOARDING, ["p001", "p002"], None, JULY_1)
    assert not (root / ".engine").exists()  # no store, no outbox, nothing of one clone's own
    recorded = json.loads((root / "campaigns" / ".tested.json").read_text())
    assert recorded == {ONBOARDING: {"hash": file_hash(root, ONBOARDING)}}
    assert dryrun.tested_hash(root, ONBOARDING) == file_hash(root, ONBOARDING)
    assert dryrun.tested_hash(root, "nurture") is None


def test_skips_and_exclusions_say_why(root: Path) -> None:
    result = dry_run(root, ONBOARDING, ["p002", "p005", "p016", "p008", "p038", "p003", "p040"], None, JULY_1)
    partners = by_partner(result)
    # p002: no SMS consent (sms_opt_in false)
    nudge = by_step(partners["p002"])["welcome-nudge"]
    assert (nudge["status"], nudge["reason"], nudge["message"]) == ("skipped", "no_consent", None)
    # p005: only in the summit group; Swedish (an inline translation); no SMS consent
    p005 = partners["p005"]
    assert (p005["rulesets"], p005["groups"], p005["enrolls"]) == ([], ["summit-2026"], True)
    welcome = by_step(p005)["welcome"]["message"]
    assert welcome["language"] == "sv" and welcome["html"] is False
    assert welcome["subject"] == "Välkommen till partnerprogrammet, Elina Heikkinen"
    assert welcome["body"].startswith("Hej Elina Heikkinen,")
    assert by_step(p005)["welcome-nudge"]["reason"] == "no_consent"
    # p016 shares p015's mailbox: dedupe by email keeps the older partner
    assert partners["p016"]["rulesets"] == ["big-spenders"]
    assert partners["p016"]["excluded_by"] == "dedupe (email): duplicate of p015"
    assert partners["p016"]["enrolls"] is False and partners["p016"]["steps"] == []
    assert partners["p016"]["finished"] is None
    # p008 is deactivated, p038 a sales rep
    assert (partners["p008"]["rulesets"], partners["p008"]["excluded_by"]) == (["gold-fi"], "audience.exclude")
    assert partners["p038"]["excluded_by"] == "exclude (engine.yaml)" and not partners["p038"]["enrolls"]
    # p003 matches nothing; p040 (a test contact) is included here
    assert partners["p003"] == {"partner": "p003", "rulesets": [], "groups": [], "excluded_by": None,
                                "enrolls": False, "by_itself": False, "note": None, "finished": None, "steps": []}
    assert partners["p040"]["enrolls"] is True


def test_without_partners_the_first_five_of_the_audience(root: Path) -> None:
    result = dry_run(root, ONBOARDING, None, None, JULY_1)
    # p003 does not match; p016 would be a duplicate, but comes later anyway
    assert [p["partner"] for p in result["partners"]] == ["p001", "p002", "p004", "p005", "p006"]
    assert all(p["enrolls"] for p in result["partners"])


def test_the_dry_run_shows_what_the_tick_sends(root: Path, make_engine) -> None:
    """Same times, same rendered texts: the dry run and the engine decide and render alike."""
    engine = make_engine(EXAMPLES, at="2026-07-01T00:00")
    engine.tick()
    engine.tick("2026-07-12T00:00")
    result = by_partner(dry_run(root, ONBOARDING, ["p001", "p002", "p005"], None, JULY_1))
    for pid, dry in result.items():
        steps = by_step(dry)
        sent = {m["step"]: m for m in engine.outbox(campaign=ONBOARDING, partner=pid)}
        for step_id, message in sent.items():
            predicted = steps[step_id]
            assert predicted["status"] == "would_execute" and predicted["at"] == message["at"]
            assert predicted["message"]["language"] == message["language"]
            predicted_body = predicted["message"].get("text", predicted["message"].get("body"))
            assert unsigned(predicted_body) == unsigned(message["body"])  # the dry run signs with a placeholder key
            if message["channel"] == "email":
                assert predicted["message"]["subject"] == message["subject"]
                assert predicted["message"]["to"] == message["to"]
        would_send = {s["step"] for s in dry["steps"] if s["status"] == "would_execute" and s["kind"] in ("email", "sms", "letter")}
        assert would_send == set(sent)
        (activity,) = engine.activities(campaign=ONBOARDING, partner=pid)
        assert steps["intro-call"]["message"]["subject"] == activity["subject"]
        assert steps["intro-call"]["at"] == activity["created_at"]
        (popup,) = [p for p in engine.popups(pid) if p["campaign"] == ONBOARDING]
        assert steps["portal-note"]["message"]["title"] == popup["title"]
        assert steps["portal-note"]["at"] == popup["created_at"]
        skipped = {s["step"]: s["reason"] for s in dry["steps"] if s["status"] == "skipped"}
        view = engine.steps(ONBOARDING, pid)
        assert skipped == {s["step"]: s["reason"] for s in view["steps"] if s["status"] == "skipped"}


# --- samples --------------------------------------------------------------------------------------

SAMPLE = [
    {"id": "s1", "name": "Sven Sample", "email": "sven@sample.se", "language": "sv", "country": "SE",
     "company": "Sample AB", "tier": "gold", "revenue": 150000, "supplier_emails": True, "sms_opt_in": True,
     "role": "partner_admin", "active": True},
    {"id": "s2", "name": "Fiona Sample", "email": "fiona@sample.fi", "language": "fi", "country": "FI",
     "company": "Sample Oy", "tier": "platinum", "revenue": 5000, "supplier_emails": False, "sms_opt_in": True,
     "phone": "+358400000099", "role": "partner_user", "active": True},
]


def write_sample(tmp_path: Path, records: list[dict], name: str = "sample.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def test_a_jsonl_sample_of_two_records(root: Path, tmp_path: Path) -> None:
    sample = write_sample(tmp_path, SAMPLE)
    result = dry_run(root, ONBOARDING, None, sample, JULY_1)
    partners = by_partner(result)
    assert list(partners) == ["s1", "s2"]  # the sample's records, not the workspace's
    s1, s2 = partners["s1"], partners["s2"]
    assert s1["rulesets"] == ["big-spenders"] and s2["rulesets"] == ["gold-fi"]
    welcome = by_step(s1)["welcome"]["message"]
    assert welcome["language"] == "sv" and welcome["subject"] == "Välkommen till partnerprogrammet, Sven Sample"
    assert "på partnerdesken" in welcome["body"]  # no account manager in the sample
    nudge = by_step(s1)["welcome-nudge"]
    assert (nudge["status"], nudge["reason"]) == ("skipped", "no_address")  # SMS consent, but no phone
    assert by_step(s2)["welcome"]["reason"] == "no_consent"  # supplier_emails false
    assert by_step(s2)["welcome-nudge"]["message"]["to"] == "+358400000099"
    assert by_step(s2)["intro-call"]["message"]["assignee"] == "partner-desk@example.com"
    assert not (root / ".engine" / "state.db").exists()
    # and one record of it, by id
    only = dry_run(root, ONBOARDING, ["s2"], sample, JULY_1)
    assert [p["partner"] for p in only["partners"]] == ["s2"]


def test_a_csv_sample(root: Path, tmp_path: Path) -> None:
    sample = tmp_path / "sample.csv"
    sample.write_text("id,name,email,language,country,tier,revenue,supplier_emails,active\n"
                      "c1,Carl Csv,carl@csv.fi,fi,FI,gold,10,yes,true\n", encoding="utf-8")
    (c1,) = dry_run(root, ONBOARDING, None, sample, JULY_1)["partners"]
    assert c1["rulesets"] == ["gold-fi"]
    assert by_step(c1)["welcome"]["message"]["subject"] == "Tervetuloa kumppaniohjelmaan, Carl Csv"


def test_sample_errors_are_source_errors(root: Path, tmp_path: Path) -> None:
    bad = write_sample(tmp_path, [SAMPLE[0], {**SAMPLE[1], "revenue": "lots"}], name="bad.jsonl")
    with pytest.raises(SourceError) as caught:
        dry_run(root, ONBOARDING, None, bad, JULY_1)
    (problem,) = caught.value.diagnostics
    assert problem.span.path == str(bad) and problem.span.line == 2 and problem.severity == "error"
    assert not (root / "campaigns" / ".tested.json").exists()  # nothing recorded
    with pytest.raises(SourceError, match="not found"):
        dry_run(root, ONBOARDING, None, tmp_path / "missing.jsonl", JULY_1)
    text = tmp_path / "sample.txt"
    text.write_text("id\ns1\n")
    with pytest.raises(SourceError, match="use a .csv or .jsonl file"):
        dry_run(root, ONBOARDING, None, text, JULY_1)


def test_a_broken_partner_source_is_refused(root: Path) -> None:
    source = root / "partners.csv"
    source.write_text(source.read_text().replace("p003,Sanna Mäkinen,sanna@kotisiivous.fi,fi,FI,Kotisiivous Mäkinen,silver,4200",
                                                 "p003,Sanna Mäkinen,sanna@kotisiivous.fi,fi,FI,Kotisiivous Mäkinen,silver,many"))
    with pytest.raises(SourceError) as caught:
        dry_run(root, ONBOARDING, ["p001"], None, JULY_1)
    assert [(Path(d.span.path).name, d.span.line) for d in caught.value.diagnostics] == [("partners.csv", 4)]


# --- unknown names --------------------------------------------------------------------------------


def test_unknown_campaign_and_partner(root: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownName, match="unknown campaign 'partner-onbording'; did you mean 'partner-onboarding'"):
        dry_run(root, "partner-onbording", None, None, JULY_1)
    with pytest.raises(UnknownName, match="unknown partner 'p0001'.*did you mean 'p001'"):
        dry_run(root, ONBOARDING, ["p001", "p0001"], None, JULY_1)
    with pytest.raises(UnknownName, match="unknown partner 'p001' \\(not in sample"):
        dry_run(root, ONBOARDING, ["p001"], write_sample(tmp_path, SAMPLE), JULY_1)
    assert not (root / "campaigns" / ".tested.json").exists()


def test_a_campaign_with_errors_is_reported_not_run(root: Path) -> None:
    path = root / "campaigns" / f"{ONBOARDING}.yaml"
    path.write_text(path.read_text().replace('partner.country == "FI"', 'partner.countyr == "FI"'))
    with pytest.raises(SourceError) as caught:
        dry_run(root, ONBOARDING, ["p001"], None, JULY_1)
    assert any("did you mean 'country'" in d.message for d in caught.value.diagnostics)


# --- time: the window, waits, exits ---------------------------------------------------------------


def test_before_the_window_the_steps_wait_for_its_start(root: Path) -> None:
    (p001,) = dry_run(root, ONBOARDING, ["p001"], None, local("2026-06-20T15:00"))["partners"]
    assert [s["at"] for s in p001["steps"]][:3] == [
        "2026-06-30T21:00:00Z", "2026-07-03T21:00:00Z", "2026-07-04T06:00:00Z"]


def test_after_the_window_the_enrollment_closes(root: Path) -> None:
    result = dry_run(root, ONBOARDING, ["p001"], None, local("2027-01-10T12:00"))
    (p001,) = result["partners"]
    assert p001["enrolls"] is True
    assert p001["steps"] == [{"step": "welcome", "kind": "email", "at": "2027-01-10T10:00:00Z",
                              "status": "window_closed", "reason": None, "error": None, "message": None}]
    assert p001["finished"] == {"reason": "window_closed", "at": "2027-01-10T10:00:00Z"}
    assert result["passed"] is True


def test_the_window_closes_between_steps(root: Path) -> None:
    (p001,) = dry_run(root, ONBOARDING, ["p001"], None, local("2026-12-30T12:00"))["partners"]
    assert [(s["step"], s["status"]) for s in p001["steps"]] == [
        ("welcome", "would_execute"), ("welcome-nudge", "window_closed")]
    assert p001["finished"]["reason"] == "window_closed"


def test_exit_when_is_asked_at_each_step(root: Path) -> None:
    """payment-failed exits when the invoice is paid: p002 has paid it."""
    partners = by_partner(dry_run(root, "payment-failed", ["p002", "p001"], None, JULY_1))
    assert partners["p002"]["enrolls"] is True
    assert [(s["step"], s["status"]) for s in partners["p002"]["steps"]] == [("notice", "exit")]
    assert partners["p002"]["finished"] == {"reason": "exit", "at": "2026-06-30T21:00:00Z"}
    assert [(s["step"], s["at"], s["status"]) for s in partners["p001"]["steps"]] == [
        ("notice", "2026-06-30T21:00:00Z", "would_execute"),
        ("notice-sms", "2026-07-01T09:00:00Z", "would_execute"),  # + 12h
        ("billing-check", "2026-07-03T09:00:00Z", "would_execute"),  # + 2d
    ]
    assert by_step(partners["p001"])["notice"]["message"]["subject"] == "Toimenpiteitä tarvitaan: laskun maksu epäonnistui"


def test_groups_conditions_and_test_contacts_in_the_webinar(root: Path) -> None:
    partners = by_partner(dry_run(root, "summer-webinar", ["p001", "p040", "p019"], None, JULY_1))
    p001 = partners["p001"]
    assert p001["rulesets"] == ["summit-alumni"]  # in_group() reads groups/ in a dry run
    assert p001["groups"] == []
    assert partners["p040"]["excluded_by"] == "test contact"  # include_test: false
    p019 = partners["p019"]
    assert p019["rulesets"] == ["english-speakers"]
    assert [(s["step"], s["at"], s["status"], s["reason"]) for s in p019["steps"]] == [
        ("invite-popup", "2026-08-20T07:00:00Z", "would_execute", None),  # at its `at`: 2026-08-20T10:00 Helsinki
        ("invite", "2026-08-20T07:00:00Z", "would_execute", None),
        ("reminder", "2026-08-27T07:00:00Z", "would_execute", None),  # not clicked("invite")
        ("feedback-survey", "2026-09-11T06:00:00Z", "skipped", "condition"),  # nothing clicked
    ]


def test_a_draft_can_be_tested(root: Path) -> None:
    path = root / "campaigns" / f"{ONBOARDING}.yaml"
    path.write_text(path.read_text().replace("active: true ", "active: false"))
    result = dry_run(root, ONBOARDING, ["p001"], None, JULY_1)
    assert result["partners"][0]["enrolls"] is True
    assert dryrun.tested_hash(root, ONBOARDING) == file_hash(root, ONBOARDING)


# --- failures and passes --------------------------------------------------------------------------

FAILING = """\
name: Failing
description: A template that divides by zero for partners without revenue.
audience:
  rulesets:
    everyone: partner.active != false
steps:
  - id: first
    popup: {pages: [dashboard], title: "Hello {{ partner.name }}", body: "{{ 100 / (partner.revenue or 0) }} per cent"}
  - wait: 1d
  - id: second
    popup: {pages: [dashboard], title: "Still here, {{ partner.name }}", body: "Bye"}
"""


def test_a_failed_step_is_shown_and_records_no_pass(root: Path) -> None:
    write_campaign(root, "failing", FAILING)
    result = dry_run(root, "failing", ["p001", "p030"], None, JULY_1)
    partners = by_partner(result)
    assert by_step(partners["p001"])["first"]["status"] == "would_execute"  # revenue 125000
    first, second = partners["p030"]["steps"]  # no revenue
    assert (first["status"], first["reason"], first["message"]) == ("failed", "template_error", None)
    assert first["error"]
    assert (second["status"], second["at"]) == ("would_execute", "2026-07-01T21:00:00Z")  # the enrollment goes on
    assert result["passed"] is False
    assert dryrun.tested_hash(root, "failing") is None
    assert not (root / "campaigns" / ".tested.json").exists()
    # fixed for the partner: passes now, for this content
    assert dry_run(root, "failing", ["p001"], None, JULY_1)["passed"] is True
    assert dryrun.tested_hash(root, "failing") == file_hash(root, "failing")


def campaign_files(root: Path, *names: str) -> Path:
    (root / "campaigns").mkdir(parents=True)
    for name in names:
        (root / "campaigns" / f"{name}.yaml").write_text("name: x\n")
    return root


def test_record_pass_keeps_the_other_campaigns(tmp_path: Path) -> None:
    root = campaign_files(tmp_path / "ws", "a", "b")
    assert dryrun.tested_hash(root, "a") is None  # no campaigns/.tested.json yet
    record_pass(root, "a", "h1")
    record_pass(root, "b", "h2")
    record_pass(root, "a", "h3")
    assert dryrun.tested_hashes(root) == {"a": "h3", "b": "h2"}
    assert (root / "campaigns" / ".tested.json").read_text() == (
        '{\n  "a": {\n    "hash": "h3"\n  },\n  "b": {\n    "hash": "h2"\n  }\n}\n')
    assert sorted(p.name for p in (root / "campaigns").iterdir()) == [".tested.json", "a.yaml", "b.yaml"]  # no temporary files


def test_a_damaged_tested_file_counts_as_no_passes(tmp_path: Path) -> None:
    root = campaign_files(tmp_path, "a", "b", "c")
    (root / "campaigns" / ".tested.json").write_text("{not json")
    assert dryrun.tested_hash(root, "a") is None
    record_pass(root, "a", "h1")
    assert dryrun.tested_hashes(root) == {"a": "h1"}
    (root / "campaigns" / ".tested.json").write_text('{"a": "h1", "b": {"hash": 3}, "c": {"hash": "h"}}')
    assert dryrun.tested_hashes(root) == {"c": "h"}


def test_a_naive_time_is_refused(root: Path) -> None:
    with pytest.raises(ValueError, match="no timezone"):
        dry_run(root, ONBOARDING, ["p001"], None, datetime(2026, 7, 1))
