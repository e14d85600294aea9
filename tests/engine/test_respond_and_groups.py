"""`engine respond`, `engine activities` and `engine group` through the real argument parser, and
the target-group summary of `engine status --campaign` (SPEC §7; issue 4).

Every refused (exit 3) or failed (exit 1) command is checked to leave the store as it was: each
table of the store (engine.testing.dump_store) is dumped before and after and compared.

The workspace (UTC, users alice = marketing and bob = viewer, consent ``partner.supplier_emails``,
engine.yaml's ``exclude`` of sales reps and default lead owners) has a campaign ``calls`` (no
trigger) whose steps are a call, an email with responses, a survey and an email without
responses; ``demo`` is the follow-up; ``promo`` and ``other`` (no triggers) take target-group
members; ``groups/vip.csv`` lists p10, p1, p3 and an unknown p99.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.testing import dump_store

T0 = "2026-07-01T00:00Z"
RESPONDED = "2026-07-02T00:00Z"

ENGINE_YAML = """\
timezone: UTC
store: sqlite:///.engine/state.db
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    company: string
    tier: {enum: [silver, gold, platinum]}
    supplier_emails: bool
    role: string
    active: bool
    test: bool
    manager: string
consent:
  email: partner.supplier_emails
exclude: partner.role in ["sales_rep", "default_lead_owner"]
channels:
  email: {transport: file}
users:
  alice: {roles: [marketing]}
  bob: {roles: [viewer]}
"""

CALLS = """\
name: Calls
audience: {}
steps:
  - id: call
    activity:
      kind: call
      assignee: "{{ partner.manager }}"
      subject: "Call {{ partner.name }}"
      responses:
        interested: {result: successful, follow_up: demo}
        declined: {result: unsuccessful}
  - id: mail
    email:
      subject: "Shall we talk, {{ partner.name }}?"
      body: "Reply yes or no."
      responses:
        "yes": {result: successful, follow_up: demo}
        "no": {result: unsuccessful}
  - id: survey
    activity:
      kind: survey
      assignee: "{{ partner.manager }}"
      subject: "Survey {{ partner.name }}"
      questions:
        - {id: size, text: "How big is the team?", answers: [small, large]}
        - {id: note, text: "Anything else?"}
      responses:
        done: {result: successful}
        refused: {result: unsuccessful}
  - id: plain
    email: {subject: "News", body: "Just news."}
"""

DEMO = """\
name: Demo
audience: {}
steps:
  - id: confirm
    email: {subject: "Your demo", body: "See you."}
"""

PROMO = """\
name: Promo
audience: {}
steps:
  - id: hello
    email: {subject: "Hello {{ partner.name }}", body: "Hi."}
  - wait: 5d
  - id: bye
    email: {subject: "Bye {{ partner.name }}", body: "Bye."}
"""

OTHER = PROMO.replace("Promo", "Other")

COLUMNS = ("id", "name", "email", "company", "tier", "supplier_emails", "role", "active", "test", "manager")


def partner(pid: str, **values: Any) -> dict[str, str]:
    row = {"id": pid, "name": pid.upper(), "email": f"{pid}@example.com", "company": f"{pid.upper()} Oy",
           "tier": "gold", "supplier_emails": "true", "role": "partner_user", "active": "true", "test": "false",
           "manager": "anna@example.com"}
    row.update({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()})
    return row


def partners_csv(*rows: dict[str, str]) -> str:
    return "\n".join([",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]) + "\n"


PARTNERS = (
    partner("p1", email="a@example.com", company="Acme"),
    partner("p2", email="b@example.com", company="Acme", manager="ben@example.com"),
    partner("p3", email="a@example.com", company="Beta"),           # p1's address
    partner("p4", email="d@example.com", company="Delta", supplier_emails=False),
    partner("p5", email="e@example.com", company="Echo", role="sales_rep"),
    partner("p6", email="f@example.com", company="Foxtrot", test=True),
    partner("p10", email="B@example.com", company="Golf"),          # p2's address
)


def build(root: Path, campaigns: dict[str, str], rows=PARTNERS, groups: dict[str, list[str]] | None = None) -> Path:
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML, encoding="utf-8")
    (root / "partners.csv").write_text(partners_csv(*rows), encoding="utf-8")
    for cid, text in campaigns.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    (root / "groups").mkdir()
    for name, ids in (groups if groups is not None else {"vip": ["p10", "p1", "p3", "p99"]}).items():
        (root / "groups" / f"{name}.csv").write_text("id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _no_engine_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_USER", raising=False)


@pytest.fixture
def engine(tmp_path: Path, make_engine):
    """Every campaign loaded; the partners imported by a first tick at T0."""
    root = build(tmp_path / "src", {"calls": CALLS, "demo": DEMO, "promo": PROMO, "other": OTHER})
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    return engine


@pytest.fixture
def called(engine):
    """p1, p2 and p3 started in ``calls`` by alice at T0; the tick at 01:00 ran all its steps."""
    for pid in ("p1", "p2", "p3"):
        engine.start("calls", pid, user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    return engine


def run(capsys, engine, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(engine.root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def dump(engine) -> dict[str, list]:
    """Every row of every table of the store."""
    return dump_store(engine.root)


def unchanged(capsys, engine, *argv: str) -> tuple[int, str]:
    """Run a command that must fail; the exit code and stderr, once the store is known unchanged."""
    before = dump(engine)
    code, out, err = run(capsys, engine, *argv)
    assert dump(engine) == before, f"{argv} changed the store"
    return code, err


def activity_id(engine, pid: str, step: str) -> str:
    [found] = [a["id"] for a in engine.activities(campaign="calls", partner=pid) if a["step"] == step]
    return found


def message_id(engine, pid: str, step: str) -> str:
    [found] = [m["id"] for m in engine.outbox("email", campaign="calls", partner=pid) if m["step"] == step]
    return found


# --- engine respond ---------------------------------------------------------------------------------


def test_respond_to_an_activity_records_the_result_starts_the_follow_up_and_a_second_answer_is_refused(capsys, called):
    call = activity_id(called, "p1", "call")
    code, out, err = run(capsys, called, "respond", call, "interested", "--as", "alice", "--at", RESPONDED)
    assert code == 0, err
    assert out == (f"interested (successful): activity {call} of partner p1 in calls\n"
                   "follow-up: partner p1 enrolled in demo (enrollment 1), from 2026-07-02T00:00:00Z\n")
    [response] = called.responses(partner="p1")
    assert (response["target"], response["kind"], response["response"], response["result"], response["follow_up"],
            response["user"], response["at"]) == (call, "activity", "interested", "successful", "demo", "alice",
                                                   "2026-07-02T00:00:00Z")
    [e] = called.status(partner="p1", campaign="demo")["enrollments"]
    assert (e["origin"], e["source"], e["started_at"], e["due_at"]) == (
        "follow_up", f"response:{call}:interested", "2026-07-02T00:00:00Z", "2026-07-02T00:00:00Z")

    code, err = unchanged(capsys, called, "respond", call, "declined", "--as", "alice", "--at", "2026-07-02T01:00Z")
    assert code == 3
    assert err == (f"engine: refused: the activity {call} was already answered 'interested' by alice at "
                   "2026-07-02T00:00:00Z; responses are final\n")
    code, err = unchanged(capsys, called, "respond", call, "interested", "--as", "alice", "--at", "2026-07-02T01:00Z")
    assert code == 3 and "already answered" in err


def test_respond_to_a_mailing_and_a_second_time_is_refused(capsys, called):
    mail = message_id(called, "p2", "mail")
    code, out, err = run(capsys, called, "respond", mail, "yes", "--as", "alice", "--at", RESPONDED)
    assert code == 0, err
    assert out.startswith(f"yes (successful): mailing {mail} of partner p2 in calls\nfollow-up: partner p2 enrolled in demo")
    assert [(r["target"], r["kind"], r["step"], r["response"], r["result"]) for r in called.responses()] == [
        (mail, "mailing", "mail", "yes", "successful")]
    code, err = unchanged(capsys, called, "respond", mail, "no", "--as", "alice", "--at", "2026-07-02T01:00Z")
    assert code == 3 and "already answered 'yes'" in err


@pytest.mark.parametrize("kind,step,valid", [("activity", "call", "interested, declined"), ("mailing", "mail", "yes, no")])
def test_an_unknown_response_key_is_refused_with_the_valid_ones(capsys, called, kind, step, valid):
    target = activity_id(called, "p1", step) if kind == "activity" else message_id(called, "p1", step)
    code, err = unchanged(capsys, called, "respond", target, "maybe", "--as", "alice", "--at", RESPONDED)
    assert code == 3
    assert err.startswith(f"engine: refused: unknown response 'maybe' for step {step} of calls (valid responses: {valid})")
    assert called.responses() == []


def test_respond_to_an_email_without_responses_is_refused(capsys, called):
    code, err = unchanged(capsys, called, "respond", message_id(called, "p1", "plain"), "yes", "--as", "alice",
                          "--at", RESPONDED)
    assert code == 3 and "takes no responses" in err


def test_respond_to_an_unknown_id_exits_1(capsys, called):
    code, err = unchanged(capsys, called, "respond", "calls:p9:1:call:1", "interested", "--as", "alice", "--at", RESPONDED)
    assert code == 1
    assert err == "engine: error: no activity or mailing with id 'calls:p9:1:call:1' (see engine activities, engine log)\n"


def test_respond_needs_a_marketing_user(capsys, called):
    call = activity_id(called, "p1", "call")
    code, err = unchanged(capsys, called, "respond", call, "interested", "--as", "bob", "--at", RESPONDED)
    assert code == 3 and "user 'bob' may not operate campaigns: that needs the marketing role" in err
    code, err = unchanged(capsys, called, "respond", call, "interested", "--at", RESPONDED)
    assert code == 3 and "--as USER" in err
    assert [a["status"] for a in called.activities(partner="p1")] == ["open", "open"]


def test_a_survey_records_answers_and_duration(capsys, called):
    survey = activity_id(called, "p1", "survey")
    code, out, err = run(capsys, called, "respond", survey, "done", "--answer", "size=large", "--answer",
                         "note=call back in May", "--duration", "15m", "--as", "alice", "--at", RESPONDED)
    assert code == 0, err
    [response] = called.responses()
    assert (response["answers"], response["duration"], response["result"]) == (
        {"size": "large", "note": "call back in May"}, 900, "successful")
    done = [a for a in called.activities(partner="p1") if a["id"] == survey][0]
    assert (done["status"], done["response"], done["answers"], done["duration"]) == (
        "completed", "done", {"size": "large", "note": "call back in May"}, 900)


@pytest.mark.parametrize("answer,fragment", [
    ("colour=red", "unknown question 'colour' for step survey of calls"),
    ("size=huge", "'huge' is not an answer to question size of step survey of calls; valid answers: small, large"),
])
def test_survey_answers_are_checked_against_the_step(capsys, called, answer, fragment):
    survey = activity_id(called, "p1", "survey")
    code, err = unchanged(capsys, called, "respond", survey, "done", "--answer", answer, "--duration", "15m",
                          "--as", "alice", "--at", RESPONDED)
    assert code == 3 and fragment in err
    assert [a["status"] for a in called.activities(partner="p1") if a["id"] == survey] == ["open"]


def test_answers_to_an_activity_without_questions_are_refused(capsys, called):
    code, err = unchanged(capsys, called, "respond", activity_id(called, "p1", "call"), "declined", "--answer", "size=small",
                          "--as", "alice", "--at", RESPONDED)
    assert code == 3 and "it asks no questions" in err


@pytest.mark.parametrize("extra", [["--answer", "size"], ["--duration", "a while"]])
def test_malformed_answer_or_duration_is_a_usage_error(capsys, called, extra):
    code, err = unchanged(capsys, called, "respond", activity_id(called, "p1", "survey"), "done", *extra,
                          "--as", "alice", "--at", RESPONDED)
    assert code == 2 and err.startswith("engine: error: ")


def test_api_respond_takes_a_duration_text(called):
    called.respond(activity_id(called, "p3", "survey"), "refused", answers={"size": "small"}, duration="1h",
                   user="alice", at=RESPONDED)
    [response] = called.responses(partner="p3")
    assert (response["response"], response["result"], response["answers"], response["duration"]) == (
        "refused", "unsuccessful", {"size": "small"}, 3600)


# --- engine activities ----------------------------------------------------------------------------


def test_activities_filter_by_campaign_assignee_and_status(capsys, called):
    def listed(*argv: str) -> list[tuple[str, str, str]]:
        code, out, err = run(capsys, called, "activities", *argv, "--json")
        assert code == 0, err
        return sorted((a["partner"], a["step"], a["status"]) for a in json.loads(out))

    anna = ["--campaign", "calls", "--assignee", "anna@example.com"]
    assert listed(*anna, "--status", "open") == [
        ("p1", "call", "open"), ("p1", "survey", "open"), ("p3", "call", "open"), ("p3", "survey", "open")]
    called.respond(activity_id(called, "p1", "call"), "declined", user="alice", at=RESPONDED)
    assert listed(*anna, "--status", "open") == [("p1", "survey", "open"), ("p3", "call", "open"), ("p3", "survey", "open")]
    assert listed(*anna, "--status", "completed") == [("p1", "call", "completed")]
    assert listed("--campaign", "calls", "--assignee", "ben@example.com", "--status", "open") == [
        ("p2", "call", "open"), ("p2", "survey", "open")]
    assert listed("--campaign", "demo") == []
    assert listed("--assignee", "nobody@example.com") == []
    assert len(listed()) == 6
    code, out, _ = run(capsys, called, "activities", "--campaign", "calls", "--assignee", "anna@example.com",
                       "--status", "completed")
    assert code == 0 and "p1" in out and "declined" in out


# --- engine group -----------------------------------------------------------------------------------


def group(capsys, engine, *argv: str, at: str = "2026-07-01T01:00Z") -> dict:
    code, out, err = run(capsys, engine, "group", "promo", *argv, "--as", "alice", "--at", at, "--json")
    assert code == 0, err
    return json.loads(out)


def changed(result: dict) -> tuple[list[str], list[str], int]:
    return result["added"], result["removed"], result["members"]


def test_group_actions_add_and_remove_exactly_whom_they_say(capsys, engine):
    engine.start("other", "p6", user="alice", at=T0)
    engine.start("other", "p2", user="alice", at=T0)
    engine.remove("other", "p2", user="alice", at=T0)  # removed: not copied
    engine.group("other", "add", "p4", user="alice", at=T0)

    assert changed(group(capsys, engine, "add-group", "vip")) == (["p1", "p3", "p10"], [], 3)  # p99: not a partner
    assert changed(group(capsys, engine, "add-group", "vip")) == ([], [], 3)
    assert changed(group(capsys, engine, "add", "p2")) == (["p2"], [], 4)
    assert changed(group(capsys, engine, "add", "p5")) == (["p5"], [], 5)

    before = dump(engine)
    assert group(capsys, engine, "dedupe", "email", "--dry-run") == {
        "campaign": "promo", "action": "dedupe", "dry_run": True, "added": [], "removed": ["p3", "p10"], "ended": [],
        "members": 3}
    assert group(capsys, engine, "dedupe", "company", "--dry-run")["removed"] == ["p2"]  # Acme: p1 is older
    assert group(capsys, engine, "add-filter", 'partner.company == "Delta"', "--dry-run")["added"] == ["p4"]
    assert dump(engine) == before

    assert changed(group(capsys, engine, "dedupe", "email")) == ([], ["p3", "p10"], 3)
    assert changed(group(capsys, engine, "add", "p4")) == (["p4"], [], 4)
    assert changed(group(capsys, engine, "dedupe", "opt-outs")) == ([], ["p4"], 3)
    assert changed(group(capsys, engine, "add-filter", 'partner.company in ["Delta", "Foxtrot"]')) == (["p4", "p6"], [], 5)
    assert changed(group(capsys, engine, "keep-filter", "partner.test != true and partner.supplier_emails == true")) == (
        [], ["p4", "p6"], 3)
    assert changed(group(capsys, engine, "remove", "p5")) == ([], ["p5"], 2)
    assert changed(group(capsys, engine, "copy-campaign", "other")) == (["p4", "p6"], [], 4)
    assert changed(group(capsys, engine, "remove-group", "vip")) == ([], ["p1"], 3)
    assert engine.store.members("promo") == {"p2": "partner", "p4": "campaign:other", "p6": "campaign:other"}

    code, out, _ = run(capsys, engine, "group", "promo", "add", "p1", "--as", "alice", "--at", "2026-07-01T02:00Z")
    assert (code, out) == (0, "promo add: 1 added, 0 removed, 4 members now\n  + p1\n")
    code, out, _ = run(capsys, engine, "group", "promo", "dedupe", "company", "--dry-run", "--as", "alice",
                       "--at", "2026-07-01T02:00Z")
    assert (code, out) == (0, "promo dedupe (dry run): 0 would be added, 1 would go, leaving 3 members; "
                          "0 of them would leave the campaign too\n  - p2\n")

    logged = [(e["user"], e["action"], e["detail"]["added"], e["detail"]["removed"]) for e in engine.log("promo")
              if e["action"].startswith("group.")]
    assert logged[:3] == [("alice", "group.add-group", 3, 0), ("alice", "group.add-group", 0, 0),
                          ("alice", "group.add", 1, 0)]
    assert not any(e["detail"].get("dry_run") for e in engine.log("promo"))  # dry runs are not logged
    assert len(logged) == 13


@pytest.mark.parametrize("argv,code,message", [
    (["promo", "add-filter", 'partner.tierr == "gold"'], 1,
     "<filter>:1:9: error: unknown field 'tierr' of partner; did you mean 'tier'?"),
    (["promo", "add-filter", "partner.tier =="], 1, "<filter>:1:16: error: syntax error"),
    (["promo", "keep-filter", 'partner.tier == "gld"'], 1, "<filter>:1:17: error: 'gld' is not a value of partner.tier"),
    (["promo", "add-group", "nope"], 1, "engine: error: unknown group 'nope'"),
    (["promo", "remove-group", "nope"], 1, "engine: error: unknown group 'nope'"),
    (["promo", "add", "p99"], 1, "engine: error: unknown partner 'p99'"),
    (["promo", "remove", "p2"], 1, "engine: error: partner 'p2' is not a member of promo's target group"),
    (["promo", "copy-campaign", "nope"], 1, "engine: error: unknown campaign 'nope'"),
    (["promo", "dedupe", "phone"], 1, "engine: error: dedupe takes one of email, company, opt-outs, not 'phone'"),
    (["nope", "add", "p1"], 1, "engine: error: unknown campaign 'nope'"),
])
def test_bad_group_arguments_exit_1_and_change_nothing(capsys, engine, argv, code, message):
    engine.group("promo", "add", "p1", user="alice", at=T0)
    got, err = unchanged(capsys, engine, "group", *argv, "--as", "alice", "--at", "2026-07-01T01:00Z")
    assert got == code
    assert err.startswith(message), err


@pytest.mark.parametrize("user", [["--as", "bob"], []])
def test_group_needs_a_marketing_user(capsys, engine, user):
    for argv in (["add", "p1"], ["add-group", "vip"], ["dedupe", "email", "--dry-run"]):
        code, err = unchanged(capsys, engine, "group", "promo", *argv, *user, "--at", "2026-07-01T01:00Z")
        assert code == 3 and err.startswith("engine: refused: ")
    assert engine.store.members("promo") == {}


def test_the_next_tick_enrolls_new_members_once(engine):
    engine.group("promo", "add", "p1", user="alice", at="2026-07-01T01:00Z")
    engine.group("promo", "add", "p2", user="alice", at="2026-07-01T01:00Z")
    engine.group("promo", "add", "p5", user="alice", at="2026-07-01T01:00Z")  # a sales rep: never enrolled
    report = engine.tick("2026-07-01T02:00Z")
    assert report.enrolled == 2
    for pid in ("p1", "p2"):
        [e] = engine.status(partner=pid, campaign="promo")["enrollments"]
        assert (e["origin"], e["started"], e["status"], e["started_at"]) == (
            "manual", "group", "active", "2026-07-01T02:00:00Z")
    assert engine.status(partner="p5")["enrollments"] == []
    assert [(m["partner"], m["step"], m["at"]) for m in engine.outbox("email", campaign="promo")] == [
        ("p1", "hello", "2026-07-01T02:00:00Z"), ("p2", "hello", "2026-07-01T02:00:00Z")]

    assert engine.tick("2026-07-01T03:00Z").enrolled == 0

    # removing the enrollment is a reset: the member is enrolled again, once
    engine.remove("promo", "p1", user="alice", at="2026-07-01T04:00Z")
    assert engine.tick("2026-07-01T05:00Z").enrolled == 1
    assert engine.tick("2026-07-01T06:00Z").enrolled == 0
    assert [(e["number"], e["status"], e["origin"], e["started_at"])
            for e in engine.status(partner="p1", campaign="promo")["enrollments"]] == [
        (1, "removed", "manual", "2026-07-01T02:00:00Z"), (2, "active", "manual", "2026-07-01T05:00:00Z")]

    engine.tick("2026-07-10T00:00Z")  # both finish; members are not enrolled again
    assert engine.tick("2026-07-11T00:00Z").enrolled == 0
    assert [e["status"] for e in engine.status(partner="p2", campaign="promo")["enrollments"]] == ["finished"]
    assert [(m["partner"], m["step"], m["at"]) for m in engine.outbox("email", campaign="promo")] == [
        ("p1", "hello", "2026-07-01T02:00:00Z"), ("p2", "hello", "2026-07-01T02:00:00Z"),
        ("p1", "hello", "2026-07-01T05:00:00Z"), ("p2", "bye", "2026-07-06T02:00:00Z"),
        ("p1", "bye", "2026-07-06T05:00:00Z")]

    # removed from the group and added again: a new membership, enrolled once more
    engine.group("promo", "remove", "p2", user="alice", at="2026-07-12T00:00Z")
    assert engine.tick("2026-07-12T01:00Z").enrolled == 0
    engine.group("promo", "add", "p2", user="alice", at="2026-07-12T02:00Z")
    assert engine.tick("2026-07-12T03:00Z").enrolled == 1
    assert [e["number"] for e in engine.status(partner="p2", campaign="promo")["enrollments"]] == [1, 2]


def test_removing_a_member_ends_the_enrollment_the_membership_started(engine):
    engine.group("promo", "add", "p1", user="alice", at="2026-07-01T01:00Z")
    engine.tick("2026-07-01T02:00Z")
    engine.group("promo", "remove", "p1", user="alice", at="2026-07-02T00:00Z")
    engine.tick("2026-07-10T00:00Z")
    assert [(m["partner"], m["step"]) for m in engine.outbox("email", campaign="promo")] == [("p1", "hello")]
    [e] = engine.status(partner="p1", campaign="promo")["enrollments"]
    assert (e["status"], e["reason"], e["finished_at"]) == ("removed", "target_group", "2026-07-02T00:00:00Z")


# --- the target-group summary ------------------------------------------------------------------------

SUMMARY = """\
name: Summary
audience:
  rulesets:
    gold: partner.tier == "gold"
  exclude: partner.active == false
  dedupe: [email]
  include_test: false
steps:
  - id: hello
    email: {subject: "Hello", body: "Hi."}
"""

SUMMARY_PARTNERS = (
    partner("p1", email="a@example.com"),                       # eligible
    partner("p2", email="b@example.com", supplier_emails=False),  # eligible, but no email consent
    partner("p3", email="A@example.com"),                       # p1's address: a duplicate
    partner("p4", role="sales_rep"),
    partner("p5", role="default_lead_owner"),
    partner("p6", active=False),                                # audience.exclude
    partner("p7", test=True),                                   # include_test: false
    partner("p8", tier="silver"),                               # member (add)
    partner("p9", tier="silver", role="sales_rep"),             # member (add), excluded by role
    partner("p10", tier="silver"),                              # neither
    partner("p11", tier="silver"),                              # member (vip group)
)


def test_status_shows_the_target_group_summary(capsys, tmp_path, make_engine):
    root = build(tmp_path / "src", {"summary": SUMMARY}, SUMMARY_PARTNERS, groups={"vip": ["p1", "p11"]})
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    engine.group("summary", "add-group", "vip", user="alice", at="2026-07-01T01:00Z")
    engine.group("summary", "add", "p8", user="alice", at="2026-07-01T01:00Z")
    engine.group("summary", "add", "p9", user="alice", at="2026-07-01T01:00Z")

    code, out, err = run(capsys, engine, "status", "--campaign", "summary", "--json")
    assert code == 0, err
    assert json.loads(out)["target_group"] == {
        "members": 4,                                   # p1, p11 (vip), p8, p9
        "members_by_origin": {"group": 2, "partner": 2},
        "audience": 7,                                  # p1..p7 are gold
        "candidates": 10,                               # p1..p7, p8, p9, p11
        "excluded": {"engine_exclude": 3,               # p4, p5, p9
                     "campaign_exclude": 1,             # p6 (inactive too, but audience.exclude comes first)
                     "inactive": 0,
                     "test": 1,                         # p7
                     "duplicates": 1},                  # p3
        "excluded_by_role": {"sales_rep": 2, "default_lead_owner": 1},
        "eligible": 4,                                  # p1, p2, p8, p11
        "without_email_consent": 1,                     # p2
    }
    code, out, _ = run(capsys, engine, "status", "--campaign", "summary")
    assert code == 0
    assert "target group: 7 in the audience, 4 members (2 by group, 2 by partner)" in out
    assert ("excluded: 3 engine exclude, 1 campaign exclude, 1 test, 1 duplicates; "
            "by role: 2 sales_rep, 1 default_lead_owner") in out
    assert "eligible: 4 (1 of them without email consent)" in out
