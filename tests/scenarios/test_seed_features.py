"""One scenario per seed feature of issue 4 ("What it must show"), each on a small workspace built
for it (SPEC §1, §3, §7; README "Decisions where SPEC is silent"):

a. a call answered ``interested`` enrolls the partner in the follow-up campaign at once;
b. duplicates pruned by email keep exactly one partner per address, the oldest by id;
c. an opted-out partner gets the pop-up but not the email; the consent ledger;
d. a sales representative gets nothing;
e. the campaign-edit rule: partners added before the campaign had an email get none, those
   added after do; inserted and removed steps;
f. a window that closes mid-campaign.

Every workspace has the same engine.yaml (UTC; consent ``partner.supplier_emails`` with
``terms_opt_in: [email]``; the seed's role exclusion; users alice = marketing, bob = viewer);
campaigns and partners differ per test. Results are read back through the ``Engine`` API (and
the CLI where the feature is a command) and compared as exact values.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.cli import main
from engine.testing import dump_store, rewrite

T0 = "2026-07-01T00:00Z"

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
  terms_opt_in: [email]
exclude: partner.role in ["sales_rep", "default_lead_owner"]
channels:
  email: {transport: file}
users:
  alice: {roles: [marketing]}
  bob: {roles: [viewer]}
"""

COLUMNS = ("id", "name", "email", "company", "tier", "supplier_emails", "role", "active", "test", "manager")


@pytest.fixture(autouse=True)
def _no_engine_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_USER", raising=False)


# --- building workspaces ------------------------------------------------------------------------


def partner(pid: str, **values: Any) -> dict[str, str]:
    """One partners.csv row: an active, opted-in gold partner_user unless told (None: empty cell)."""
    row = {"id": pid, "name": pid.upper(), "email": f"{pid}@example.com", "company": f"{pid.upper()} Oy",
           "tier": "gold", "supplier_emails": "true", "role": "partner_user", "active": "true", "test": "false",
           "manager": "am@example.com"}
    row.update({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()})
    return row


def partners_csv(*rows: dict[str, str]) -> str:
    return "\n".join([",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]) + "\n"


def workspace(tmp_path: Path, campaigns: dict[str, str], *rows: dict[str, str], groups: dict[str, list[str]] | None = None) -> Path:
    root = tmp_path / "src"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML, encoding="utf-8")
    (root / "partners.csv").write_text(partners_csv(*rows), encoding="utf-8")
    for cid, text in campaigns.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    if groups:
        (root / "groups").mkdir()
        for name, ids in groups.items():
            (root / "groups" / f"{name}.csv").write_text("id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return root


def campaign(steps: str, *, trigger: str | None = "audience: true", rulesets: str = 'all: "true"',
             audience_extra: str = "", extra: str = "") -> str:
    rules = "\n".join(f"    {line}" for line in rulesets.splitlines()) if rulesets else ""
    body = (f"  rulesets:\n{rules}\n" if rules else "") + audience_extra
    audience = f"audience:\n{body}" if body else "audience: {}\n"
    trigger_yaml = f"trigger:\n  {trigger}\n" if trigger else ""
    return f"name: Test\n{audience}{trigger_yaml}{extra}steps:\n{steps}"


def email(step_id: str) -> str:
    return (f"  - id: {step_id}\n"
            f"    email: {{subject: \"{step_id} for {{{{ partner.name }}}}\", body: \"Hi {{{{ partner.name }}}}\"}}\n")


def popup(step_id: str) -> str:
    return (f"  - id: {step_id}\n"
            f"    popup: {{pages: [dashboard], title: \"{step_id}\", body: \"Hello {{{{ partner.name }}}}\"}}\n")


def wait(value: str) -> str:
    return f"  - wait: {value}\n"


# --- reading results ----------------------------------------------------------------------------


def sent(engine, channel: str = "email", **filters: str) -> list[tuple[str, str, str]]:
    """(partner, step, at) of the committed messages of a channel, in time order."""
    return [(m["partner"], m["step"], m["at"]) for m in engine.outbox(channel, **filters)]


def written(engine, channel: str = "email") -> list[tuple[str, str, str, str]]:
    """(partner, step, to, at) of what the file transport wrote."""
    return [(m["partner"], m["step"], m["to"], m["at"]) for m in engine.sent(channel)]


def steps_of(engine, campaign_id: str, pid: str) -> dict[str, tuple]:
    found = engine.steps(campaign_id, pid)
    assert found is not None, f"{pid} has no enrollment in {campaign_id}"
    return {s["step"]: (s["status"], s["reason"], s["at"]) for s in found["steps"]}


def enrollments(engine, pid: str, campaign_id: str | None = None) -> list[tuple]:
    """(campaign, number, status, reason, started_at, finished_at, origin) of each enrollment."""
    return [(e["campaign"], e["number"], e["status"], e["reason"], e["started_at"], e["finished_at"], e["origin"])
            for e in engine.status(partner=pid, campaign=campaign_id)["enrollments"]]


def enrolled_partners(engine, campaign_id: str, pids) -> list[str]:
    return [p for p in pids if engine.status(partner=p, campaign=campaign_id)["enrollments"]]


def dump(root: Path) -> dict[str, list]:
    """Every row of every table of the workspace's store."""
    return dump_store(root)


def cli(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


# --- a. a call answered "interested" starts the follow-up at once --------------------------------

ONBOARD = campaign("""\
  - id: intro-call
    activity:
      kind: call
      assignee: "{{ partner.manager }}"
      subject: "Intro call with {{ partner.company }}"
      responses:
        interested: {result: successful, follow_up: demo}
        not-now: {result: postponed}
        declined: {result: unsuccessful}
""")

# The follow-up campaign has no trigger and an audience p1 does not match: a follow-up enrolls
# "whatever that campaign's trigger" (SPEC §7).
DEMO = campaign(email("confirm") + wait("2d") + email("recap"), trigger=None,
                rulesets='platinum: partner.tier == "platinum"')


def test_a_call_answered_interested_enrolls_the_partner_in_the_follow_up_at_once(tmp_path, make_engine):
    root = workspace(tmp_path, {"onboard": ONBOARD, "demo": DEMO},
                     partner("p1", manager="anna@example.com"), partner("p2", manager="ben@example.com"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    calls = {a["partner"]: a for a in engine.activities(campaign="onboard")}
    assert sorted(calls) == ["p1", "p2"]
    call = calls["p1"]
    assert (call["kind"], call["status"], call["assignee"], call["subject"]) == (
        "call", "open", "anna@example.com", "Intro call with P1 Oy")
    assert enrollments(engine, "p1", "onboard")[0][2:4] == ("finished", "completed")  # the call outlives the run

    responded_at = "2026-07-02T10:17:00Z"  # not a tick time
    answered = engine.respond(call["id"], "interested", user="alice", at=responded_at)
    follow_up = answered.follow_up_enrollment
    assert (answered.kind, answered.campaign, answered.step, answered.partner, answered.response, answered.result,
            answered.follow_up, answered.follow_up_note) == (
        "activity", "onboard", "intro-call", "p1", "interested", "successful", "demo", None)
    assert follow_up is not None

    # enrolled at once, before any tick: origin follow_up, first step due at the response time
    [e] = engine.status(partner="p1", campaign="demo")["enrollments"]
    assert (e["status"], e["origin"], e["started"], e["started_at"], e["next_step"], e["due_at"]) == (
        "active", "follow_up", "follow_up", responded_at, "confirm", responded_at)
    assert e["source"] == f"response:{call['id']}:interested"  # the link to the response

    # the response, with its result and the enrollment it started
    assert engine.responses(partner="p1") == [{
        "seq": 1, "target": call["id"], "kind": "activity", "campaign": "onboard", "step": "intro-call",
        "partner": "p1", "response": "interested", "result": "successful", "follow_up": "demo",
        "follow_up_enrollment": follow_up.id, "answers": {}, "duration": None, "at": responded_at, "user": "alice"}]

    # the activity is completed with the response
    done = {a["partner"]: a for a in engine.activities(campaign="onboard")}["p1"]
    assert (done["status"], done["response"], done["result"], done["responded_at"]) == (
        "completed", "interested", "successful", responded_at)
    assert {a["partner"]: a["status"] for a in engine.activities(campaign="onboard")} == {"p1": "completed", "p2": "open"}

    [entry] = [x for x in engine.log() if x["action"] == "respond"]
    assert (entry["user"], entry["at"], entry["campaign"], entry["partner"]) == ("alice", responded_at, "onboard", "p1")
    assert (entry["detail"]["response"], entry["detail"]["follow_up"]) == ("interested", "demo")

    # the next tick sends the first email as of the response, the next one two days later
    engine.tick("2026-07-05T00:00Z")
    assert sent(engine, campaign="demo") == [("p1", "confirm", responded_at), ("p1", "recap", "2026-07-04T10:17:00Z")]
    assert [(m["partner"], m["step"], m["at"]) for m in engine.sent("email")] == [
        ("p1", "confirm", responded_at), ("p1", "recap", "2026-07-04T10:17:00Z")]
    assert enrollments(engine, "p1", "demo") == [
        ("demo", 1, "finished", "completed", responded_at, "2026-07-04T10:17:00Z", "follow_up")]

    # a response without follow_up records its result and starts nothing
    declined = engine.respond(calls["p2"]["id"], "declined", user="alice", at="2026-07-05T08:00:00Z")
    assert (declined.result, declined.follow_up, declined.follow_up_enrollment) == ("unsuccessful", None, None)
    assert enrollments(engine, "p2", "demo") == []
    assert [(r["partner"], r["response"], r["result"], r["follow_up"]) for r in engine.responses()] == [
        ("p1", "interested", "successful", "demo"), ("p2", "declined", "unsuccessful", None)]


# --- b. duplicates by email: one partner per address, the oldest by id ---------------------------

DEDUPE_PARTNERS = (
    # file order is not id order, and plain text order would put p10 before p2
    partner("p10", email="shared@example.com"),
    partner("p1", email="one@example.com"),
    partner("p11", email="THREE@example.com"),
    partner("p2", email="Shared@Example.com"),
    partner("p3", email="three@example.com"),
)


def test_audience_dedupe_by_email_keeps_the_oldest_partner_by_id(tmp_path, make_engine):
    root = workspace(tmp_path, {"news": campaign(email("hello"), audience_extra="  dedupe: [email]\n")},
                     *DEDUPE_PARTNERS)
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    everyone = ["p1", "p2", "p3", "p10", "p11"]
    assert enrolled_partners(engine, "news", everyone) == ["p1", "p2", "p3"]
    assert sorted(written(engine)) == [
        ("p1", "hello", "one@example.com", "2026-07-01T00:00:00Z"),
        ("p2", "hello", "Shared@Example.com", "2026-07-01T00:00:00Z"),
        ("p3", "hello", "three@example.com", "2026-07-01T00:00:00Z"),
    ]
    addresses = [m["to"].casefold() for m in engine.sent("email")]
    assert len(addresses) == len(set(addresses))

    # later ticks keep it that way
    engine.tick("2026-07-02T00:00Z")
    assert enrolled_partners(engine, "news", everyone) == ["p1", "p2", "p3"]
    assert len(engine.sent("email")) == 3
    assert engine.status(campaign="news")["target_group"]["excluded"]["duplicates"] == 2


def test_audience_dedupe_skips_an_excluded_oldest_partner(tmp_path, make_engine):
    """README/audience.py: dedupe runs over the partners that match, so when the oldest partner
    with an address is kept out, the next one by id gets the message."""
    root = workspace(tmp_path, {"news": campaign(email("hello"), audience_extra="  dedupe: [email]\n")},
                     partner("p2", email="shared@example.com", role="sales_rep"),
                     partner("p10", email="shared@example.com"), partner("p11", email="shared@example.com"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    assert written(engine) == [("p10", "hello", "shared@example.com", "2026-07-01T00:00:00Z")]


def test_audience_dedupe_keeps_one_partner_per_address_over_time(tmp_path, make_engine):
    """One welcome per mailbox, even when the older partner with the same address only starts
    matching after the younger one was enrolled: the mailbox already has its partner."""
    dedupe = "  dedupe: [email]\n  exclude: partner.active == false\n"
    root = workspace(tmp_path, {"news": campaign(email("hello"), audience_extra=dedupe)},
                     partner("p2", email="shared@example.com", active=False), partner("p10", email="shared@example.com"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    assert written(engine) == [("p10", "hello", "shared@example.com", "2026-07-01T00:00:00Z")]
    rewrite(engine.root / "partners.csv", partners_csv(partner("p2", email="shared@example.com"),
                                                       partner("p10", email="shared@example.com")))
    engine.tick("2026-07-02T00:00Z")
    assert enrolled_partners(engine, "news", ["p2", "p10"]) == ["p10"]
    assert [m["to"] for m in engine.sent("email")] == ["shared@example.com"]


def test_group_dedupe_email_keeps_the_oldest_member_per_address(tmp_path, make_engine, capsys):
    root = workspace(tmp_path, {"mailing": campaign(email("hello"), trigger=None, rulesets="")}, *DEDUPE_PARTNERS)
    engine = make_engine(root, at=T0)
    engine.tick(T0)  # imports the partners
    code, out, err = cli(capsys, engine.root, "group", "mailing", "add-filter", "partner.email != null", "--as", "alice",
                         "--at", "2026-07-01T01:00Z", "--json")
    assert code == 0, err
    assert json.loads(out)["added"] == ["p1", "p2", "p3", "p10", "p11"]

    code, out, err = cli(capsys, engine.root, "group", "mailing", "dedupe", "email", "--as", "alice",
                         "--at", "2026-07-01T02:00Z", "--json")
    assert code == 0, err
    assert json.loads(out) == {"campaign": "mailing", "action": "dedupe", "dry_run": False, "added": [],
                               "removed": ["p10", "p11"], "ended": [], "members": 3}

    engine.tick("2026-07-01T03:00Z")
    assert enrolled_partners(engine, "mailing", ["p1", "p2", "p3", "p10", "p11"]) == ["p1", "p2", "p3"]
    assert sorted((m["partner"], m["to"]) for m in engine.sent("email")) == [
        ("p1", "one@example.com"), ("p2", "Shared@Example.com"), ("p3", "three@example.com")]


# --- c. consent: the pop-up goes, the email does not; the ledger ----------------------------------

CONSENT_CAMPAIGN = campaign(popup("note") + wait("1d") + email("news"))


def events_file(tmp_path: Path, *events: dict) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def test_an_opted_out_partner_gets_the_pop_up_but_not_the_email(tmp_path, make_engine):
    root = workspace(tmp_path, {"news": CONSENT_CAMPAIGN},
                     partner("p1"),                         # opted in
                     partner("p2", supplier_emails=False),  # opted out
                     partner("p3", supplier_emails=None),   # new: no opt-in field at all
                     partner("p4", supplier_emails=False))  # accepts the terms before the email
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    events = events_file(tmp_path, {"id": "terms-p4", "type": "terms.accepted", "at": "2026-07-01T02:00:00Z",
                                    "partner": "p4"})
    imported = engine.import_events(events, at="2026-07-01T01:00Z")
    assert (imported.imported, imported.diagnostics) == (1, [])

    engine.tick("2026-07-04T00:00Z")  # the email is due 2026-07-02T00:00Z

    assert sorted(p["partner"] for p in engine.popups()) == ["p1", "p2", "p3", "p4"]  # pop-ups need no consent
    assert sent(engine) == [("p1", "news", "2026-07-02T00:00:00Z"), ("p4", "news", "2026-07-02T00:00:00Z")]
    assert [m["partner"] for m in engine.sent("email")] == ["p1", "p4"]
    for pid in ("p2", "p3"):
        assert steps_of(engine, "news", pid) == {
            "note": ("executed", None, "2026-07-01T00:00:00Z"),
            "news": ("skipped", "no_consent", "2026-07-02T00:00:00Z")}, pid
        assert enrollments(engine, pid, "news")[0][2:4] == ("finished", "completed")

    # the ledger: proof of consent, and what it means at a given time
    p4 = engine.consent("p4", at="2026-07-04T00:00Z")
    assert p4["ledger"] == [{"channel": "email", "granted": True, "at": "2026-07-01T02:00:00Z", "source": "event:terms-p4"}]
    assert p4["channels"]["email"] == {"consent": True, "by": "ledger"}
    assert engine.consent("p4", at="2026-07-01T01:00Z")["channels"]["email"] == {
        "consent": False, "by": "expression: partner.supplier_emails"}
    p3 = engine.consent("p3", at="2026-07-04T00:00Z")
    assert (p3["ledger"], p3["channels"]["email"]) == ([], {"consent": False, "by": "expression: partner.supplier_emails"})


def test_unsubscribed_and_opted_in_events_with_a_channel_decide_as_of_the_email_step(tmp_path, make_engine):
    root = workspace(tmp_path, {"news": CONSENT_CAMPAIGN},
                     partner("p5"),                         # unsubscribes before the email
                     partner("p6"),                         # unsubscribes after the email
                     partner("p7", supplier_emails=False))  # opts in before the email
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    events = events_file(
        tmp_path,
        {"id": "unsub-p5", "type": "unsubscribed", "at": "2026-07-01T03:00:00Z", "partner": "p5",
         "data": {"channel": "email"}},
        {"id": "unsub-p6", "type": "unsubscribed", "at": "2026-07-02T12:00:00Z", "partner": "p6",
         "data": {"channel": "email"}},
        {"id": "in-p7", "type": "opted_in", "at": "2026-07-01T04:00:00Z", "partner": "p7",
         "data": {"channel": "email"}},
    )
    imported = engine.import_events(events, at="2026-07-01T01:00Z")
    assert (imported.imported, imported.diagnostics) == (3, [])

    assert engine.consent("p5", at="2026-07-04T00:00Z")["ledger"] == [
        {"channel": "email", "granted": False, "at": "2026-07-01T03:00:00Z", "source": "event:unsub-p5"}]
    assert engine.consent("p7", at="2026-07-04T00:00Z")["ledger"] == [
        {"channel": "email", "granted": True, "at": "2026-07-01T04:00:00Z", "source": "event:in-p7"}]

    engine.tick("2026-07-04T00:00Z")  # the email is due 2026-07-02T00:00Z
    assert sorted(p["partner"] for p in engine.popups()) == ["p5", "p6", "p7"]
    assert sent(engine) == [("p6", "news", "2026-07-02T00:00:00Z"), ("p7", "news", "2026-07-02T00:00:00Z")]
    assert steps_of(engine, "news", "p5")["news"] == ("skipped", "no_consent", "2026-07-02T00:00:00Z")
    assert engine.consent("p5", at="2026-07-04T00:00Z")["channels"]["email"] == {"consent": False, "by": "ledger"}
    assert engine.consent("p6", at="2026-07-02T00:00Z")["channels"]["email"]["consent"] is True
    assert engine.consent("p6", at="2026-07-04T00:00Z")["channels"]["email"] == {"consent": False, "by": "ledger"}


def test_a_new_partner_without_the_opt_in_field_is_opted_out(tmp_path, make_engine, capsys):
    root = workspace(tmp_path, {"news": campaign(email("news"))}, partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    # p2 arrives later, exported without the opt-in column's value
    rewrite(engine.root / "partners.csv", partners_csv(partner("p1"), partner("p2", supplier_emails=None)))
    engine.tick("2026-07-02T00:00Z")
    assert enrollments(engine, "p2", "news") == [
        ("news", 1, "finished", "completed", "2026-07-02T00:00:00Z", "2026-07-02T00:00:00Z", "trigger")]
    assert steps_of(engine, "news", "p2") == {"news": ("skipped", "no_consent", "2026-07-02T00:00:00Z")}
    assert [m["partner"] for m in engine.sent("email")] == ["p1"]
    code, out, _ = cli(capsys, engine.root, "consent", "--partner", "p2", "--at", "2026-07-02T00:00Z", "--json")
    assert code == 0
    assert json.loads(out)["channels"]["email"] == {"consent": False, "by": "expression: partner.supplier_emails"}


# --- d. a sales representative gets nothing ------------------------------------------------------

def test_a_sales_representative_gets_nothing(tmp_path, make_engine, capsys):
    everything = email("hello") + popup("note") + """\
  - id: call
    activity: {kind: call, assignee: "{{ partner.manager }}", subject: Call}
"""
    root = workspace(tmp_path, {"news": campaign(everything), "manual": campaign(email("hello"), trigger=None, rulesets="")},
                     partner("p1", role="sales_rep"), partner("p2", role="default_lead_owner"), partner("p3"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    # not enrolled by the audience
    assert enrolled_partners(engine, "news", ["p1", "p2", "p3"]) == ["p3"]

    # not enrolled as a target-group member
    added = engine.group("manual", "add", "p1", user="alice", at="2026-07-01T01:00Z")
    assert added.added == ["p1"]
    report = engine.tick("2026-07-01T02:00Z")
    assert report.enrolled == 0
    assert enrollments(engine, "p1") == [] and enrollments(engine, "p2") == []

    # refused on a manual start, and the store does not change
    before = dump(engine.root)
    code, _, err = cli(capsys, engine.root, "start", "manual", "--partner", "p1", "--as", "alice", "--at", "2026-07-01T03:00Z")
    assert code == 3
    assert err == "engine: refused: partner p1 is excluded from every campaign by engine.yaml's exclude\n"
    assert dump(engine.root) == before

    engine.tick("2026-07-10T00:00Z")
    for pid in ("p1", "p2"):
        assert engine.outbox(partner=pid) == [] and engine.popups(pid) == [] and engine.activities(partner=pid) == []
    assert [m["partner"] for m in engine.sent("email")] == ["p3"]

    # the summary counts them, by role
    news = engine.status(campaign="news")["target_group"]
    assert (news["candidates"], news["excluded"]["engine_exclude"], news["excluded_by_role"], news["eligible"]) == (
        3, 2, {"sales_rep": 1, "default_lead_owner": 1}, 1)
    manual = engine.status(campaign="manual")["target_group"]
    assert (manual["members"], manual["excluded"]["engine_exclude"], manual["excluded_by_role"], manual["eligible"]) == (
        1, 1, {"sales_rep": 1}, 0)
    code, out, _ = cli(capsys, engine.root, "status", "--campaign", "news")
    assert code == 0 and "2 engine exclude" in out and "1 sales_rep" in out and "1 default_lead_owner" in out


def test_a_partner_who_becomes_a_sales_representative_gets_no_further_steps(tmp_path, make_engine):
    root = workspace(tmp_path, {"news": campaign(email("first") + wait("1d") + email("second"))}, partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    rewrite(engine.root / "partners.csv", partners_csv(partner("p1", role="sales_rep")))
    engine.tick("2026-07-03T00:00Z")
    assert steps_of(engine, "news", "p1") == {
        "first": ("executed", None, "2026-07-01T00:00:00Z"),
        "second": ("skipped", "excluded", "2026-07-02T00:00:00Z")}
    assert [m["step"] for m in engine.sent("email")] == ["first"]


# --- e. editing a running campaign ------------------------------------------------------------------

NO_EMAIL = campaign(popup("note"), trigger=None, rulesets="")
WITH_EMAIL = campaign(popup("note") + email("news"), trigger=None, rulesets="")


def test_members_added_before_the_campaign_had_an_email_get_none_those_added_after_do(tmp_path, make_engine):
    root = workspace(tmp_path, {"launch": NO_EMAIL}, partner("p1"), partner("p2"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    engine.group("launch", "add", "p1", user="alice", at="2026-07-01T01:00Z")
    engine.tick("2026-07-01T02:00Z")
    assert enrollments(engine, "p1", "launch") == [
        ("launch", 1, "finished", "completed", "2026-07-01T02:00:00Z", "2026-07-01T02:00:00Z", "manual")]

    rewrite(engine.root / "campaigns" / "launch.yaml", WITH_EMAIL)  # the campaign gets an email
    engine.tick("2026-07-02T00:00Z")
    engine.group("launch", "add", "p2", user="alice", at="2026-07-02T01:00Z")
    engine.tick("2026-07-02T02:00Z")
    engine.tick("2026-07-10T00:00Z")

    assert sent(engine) == [("p2", "news", "2026-07-02T02:00:00Z")]
    assert [m["partner"] for m in engine.sent("email")] == ["p2"]
    assert sorted(p["partner"] for p in engine.popups()) == ["p1", "p2"]
    assert steps_of(engine, "launch", "p1") == {"note": ("executed", None, "2026-07-01T02:00:00Z"),
                                                "news": ("not_run", None, None)}
    assert enrollments(engine, "p1", "launch")[0][2:4] == ("finished", "completed")


def test_audience_partners_before_the_campaign_had_an_email_get_none_those_after_do(tmp_path, make_engine):
    gold = 'gold: partner.tier == "gold"'
    root = workspace(tmp_path, {"launch": campaign(popup("note"), rulesets=gold)},
                     partner("p1"), partner("p2", tier="silver"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    rewrite(engine.root / "campaigns" / "launch.yaml", campaign(popup("note") + email("news"), rulesets=gold))
    engine.tick("2026-07-02T00:00Z")
    rewrite(engine.root / "partners.csv", partners_csv(partner("p1"), partner("p2", tier="gold")))
    engine.tick("2026-07-03T00:00Z")
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine) == [("p2", "news", "2026-07-03T00:00:00Z")]
    assert sorted(p["partner"] for p in engine.popups()) == ["p1", "p2"]
    assert steps_of(engine, "launch", "p1")["news"] == ("not_run", None, None)


DRIP = campaign(email("a") + wait("1d") + email("b") + wait("1d") + email("c"))
# x is inserted before b (where p1 waits), y after it
DRIP_INSERTED = campaign(email("a") + wait("1d") + email("x") + email("b") + email("y") + wait("1d") + email("c"))
DRIP_WITHOUT_B = campaign(email("a") + wait("1d") + wait("1d") + email("c"))


def test_a_step_inserted_before_the_enrollments_position_is_not_run_one_after_it_is(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": DRIP}, partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    engine.tick("2026-07-01T12:00Z")
    assert engine.status(partner="p1", campaign="drip")["enrollments"][0]["next_step"] == "b"

    rewrite(engine.root / "campaigns" / "drip.yaml", DRIP_INSERTED)
    rewrite(engine.root / "partners.csv", partners_csv(partner("p1"), partner("p2")))  # p2 comes after the edit
    engine.tick("2026-07-01T18:00Z")
    engine.tick("2026-07-05T00:00Z")

    assert sent(engine, partner="p1") == [("p1", "a", "2026-07-01T00:00:00Z"), ("p1", "b", "2026-07-02T00:00:00Z"),
                                          ("p1", "y", "2026-07-02T00:00:00Z"), ("p1", "c", "2026-07-03T00:00:00Z")]
    assert steps_of(engine, "drip", "p1")["x"] == ("not_run", None, None)
    assert enrollments(engine, "p1", "drip")[0][2:4] == ("finished", "completed")
    # a partner enrolled after the edit gets every step
    assert [s for _, s, _ in sent(engine, partner="p2")] == ["a", "x", "b", "y", "c"]


def test_a_step_appended_while_the_enrollment_waits_after_its_last_step_is_run(tmp_path, make_engine):
    """Still active in its trailing wait: the new step is after its position, so it runs; a
    partner whose enrollment had finished before the edit does not get it."""
    root = workspace(tmp_path, {"drip": campaign(email("a") + wait("3d")), "once": campaign(email("a"))},
                     partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    assert [(e[0], e[2]) for e in enrollments(engine, "p1")] == [("drip", "active"), ("once", "finished")]
    rewrite(engine.root / "campaigns" / "drip.yaml", campaign(email("a") + wait("3d") + email("b")))
    rewrite(engine.root / "campaigns" / "once.yaml", campaign(email("a") + email("b")))
    engine.tick("2026-07-10T00:00Z")
    assert sent(engine, campaign="drip") == [("p1", "a", "2026-07-01T00:00:00Z"), ("p1", "b", "2026-07-04T00:00:00Z")]
    assert sent(engine, campaign="once") == [("p1", "a", "2026-07-01T00:00:00Z")]


def test_a_removed_step_is_closed_with_step_removed(tmp_path, make_engine):
    root = workspace(tmp_path, {"drip": DRIP}, partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    engine.tick("2026-07-01T12:00Z")  # p1 waits for b, due 2026-07-02T00:00Z
    rewrite(engine.root / "campaigns" / "drip.yaml", DRIP_WITHOUT_B)
    engine.tick("2026-07-05T00:00Z")
    steps = steps_of(engine, "drip", "p1")
    assert steps["b"] == ("skipped", "step_removed", "2026-07-02T00:00:00Z")
    assert steps["a"] == ("executed", None, "2026-07-01T00:00:00Z")
    assert [s for _, s, _ in sent(engine, partner="p1")] == ["a", "c"]
    assert "b" not in [m["step"] for m in engine.sent("email")]


# --- f. a window that closes mid-campaign -----------------------------------------------------------

WINDOWED = campaign(email("e1") + wait("1d") + email("e2") + wait("1d") + email("e3") + wait("1d") + email("e4")
                    + wait("1d") + email("e5"),
                    extra="window: {start: 2026-07-01, end: 2026-07-03}\n")


def test_a_window_that_closes_mid_campaign_finishes_the_enrollment(tmp_path, make_engine):
    root = workspace(tmp_path, {"short": WINDOWED}, partner("p1"))
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    engine.tick("2026-07-10T00:00Z")
    # the window ends with 2026-07-03: e4, due at 2026-07-04T00:00Z, finishes the enrollment
    assert sent(engine) == [("p1", "e1", "2026-07-01T00:00:00Z"), ("p1", "e2", "2026-07-02T00:00:00Z"),
                            ("p1", "e3", "2026-07-03T00:00:00Z")]
    assert enrollments(engine, "p1", "short") == [
        ("short", 1, "finished", "window_closed", "2026-07-01T00:00:00Z", "2026-07-04T00:00:00Z", "trigger")]
    steps = steps_of(engine, "short", "p1")
    assert (steps["e4"], steps["e5"]) == (("not_run", None, None), ("not_run", None, None))

    # nothing more is sent, and nobody new is enrolled after the end
    rewrite(engine.root / "partners.csv", partners_csv(partner("p1"), partner("p2")))
    report = engine.tick("2026-07-20T00:00Z")
    assert (report.enrolled, report.executed) == (0, 0)
    assert enrollments(engine, "p2") == []
    assert len(engine.sent("email")) == 3


def test_hourly_ticks_and_one_tick_close_the_window_the_same_way(tmp_path, make_engine):
    root = workspace(tmp_path, {"short": WINDOWED}, partner("p1"))
    hourly = make_engine(root, at=T0, name="hourly")
    hourly.run(until="2026-07-06T00:00Z", every="1h", start=T0)
    once = make_engine(root, at=T0, name="once")
    once.tick(T0)
    once.tick("2026-07-06T00:00Z")
    assert sent(hourly) == sent(once)
    assert enrollments(hourly, "p1") == enrollments(once, "p1")
