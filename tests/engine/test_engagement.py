"""Engagement, statistics, pop-ups, translations, locks and drafts (SPEC §1, §7, §8; issue 5),
through the real argument parser (``engine.cli.main``), on small workspaces built in each test.

Every workspace is in UTC, lists the users alice (marketing) and bob (viewer), and takes email
and SMS consent from ``partner.ok``. Partners are English (``en``) unless a test makes them
Finnish (``fi``). Message ids are ``campaign:partner:enrollment:step:run`` (README), so a test
can name a message in an events file before the engine prints it.

Expected numbers are worked out by hand in the comments next to them; every comparison is with
an exact value written in the test, never with something the engine computed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.cli import main
from engine.testing import dump_store, rewrite

# --- building workspaces ------------------------------------------------------------------------

ENGINE_YAML = """\
timezone: UTC
store: sqlite:///.engine/state.db
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    phone: string
    language: string
    tier: {enum: [silver, gold, platinum]}
    ok: bool
consent:
  email: partner.ok
  sms: partner.ok
users:
  alice: {roles: [marketing]}
  bob: {roles: [viewer]}
"""

COLUMNS = ("id", "name", "email", "phone", "language", "tier", "ok")


def partner(pid: str, **values: Any) -> dict[str, str]:
    """One partners.csv row: a gold, consenting English partner with an email and a phone."""
    row = {"id": pid, "name": pid.upper(), "email": f"{pid}@example.com", "phone": f"+358-{pid}",
           "language": "en", "tier": "gold", "ok": "true"}
    row.update({k: ("" if v is None else str(v).lower() if isinstance(v, bool) else str(v)) for k, v in values.items()})
    return row


def partners_csv(*rows: dict[str, str]) -> str:
    return "\n".join([",".join(COLUMNS)] + [",".join(r[c] for c in COLUMNS) for r in rows]) + "\n"


def build(tmp_path: Path, campaigns: dict[str, str], *rows: dict[str, str]) -> Path:
    root = tmp_path / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML, encoding="utf-8")
    (root / "partners.csv").write_text(partners_csv(*rows), encoding="utf-8")
    for cid, text in campaigns.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    return root


def write_events(path: Path, lines: list[dict | str]) -> Path:
    """A JSONL events file: dicts are dumped, strings written as they are (bad or repeated lines)."""
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n",
                    encoding="utf-8")
    return path


# --- running commands ---------------------------------------------------------------------------


def run(capsys, root: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, root: Path, *argv: str) -> Any:
    code, out, err = run(capsys, root, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def tick(capsys, root: Path, at: str) -> dict:
    return run_json(capsys, root, "tick", "--at", at)


def steps_of(capsys, root: Path, campaign: str, pid: str) -> dict[str, tuple]:
    """step → (status, reason, at) of the partner's latest enrollment (first run of each step)."""
    found = run_json(capsys, root, "steps", campaign, "--partner", pid)
    result: dict[str, tuple] = {}
    for s in found["steps"]:
        result.setdefault(s["step"], (s["status"], s["reason"], s["at"]))
    return result


def outbox(root: Path, channel: str) -> list[dict]:
    path = root / ".engine" / "outbox" / f"{channel}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def dump(root: Path) -> dict[str, list]:
    """Every row of every table of the store."""
    return dump_store(root)


def refused(capsys, root: Path, *argv: str) -> str:
    """Run an operation that must be refused (exit 3) and leave the store exactly as it was; its stderr."""
    before = dump(root)
    code, _, err = run(capsys, root, *argv)
    assert code == 3, (argv, code, err)
    assert err.startswith("engine: refused: "), err
    assert dump(root) == before, f"{argv} changed the store"
    return err


# =================================================================================================
# 1. Stats from an imported events file equal counts written by hand
# =================================================================================================

NEWS = """\
name: News
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T09:00
steps:
  - id: mail
    email:
      subject: "News for {{ partner.name }}"
      body: "Hello {{ partner.name }}"
      translations:
        fi: {subject: "Uutisia {{ partner.name }}", body: "Hei {{ partner.name }}"}
  - id: text
    sms: {text: "Hi {{ partner.name }}"}
  - id: note
    popup:
      pages: [dashboard]
      title: "Note for {{ partner.name }}"
      body: "Read me"
      translations:
        fi: {title: "Viesti {{ partner.name }}", body: "Lue minut"}
  - wait: 30d
"""

NEWS_PARTNERS = (
    partner("p1"),                            # en
    partner("p2"),                            # en
    partner("p3", language="fi"),
    partner("p4", language="fi"),
    partner("p5", ok=False),                  # en, no consent: no email, no SMS, but the pop-up
    partner("p6", language="fi", phone=None),  # fi, no phone: no SMS (no_address)
)

# Sent, by hand (all steps due at the `at` time, 2026-07-01T09:00Z):
#   mail/default: p1, p2                 = 2   (p5: no_consent)
#   mail/fi:      p3, p4, p6             = 3
#   text/default: p1, p2, p3, p4         = 4   (p5: no_consent, p6: no_address; SMS has no fi text)
#   note/default: p1, p2, p5             = 3   (pop-ups need no consent)
#   note/fi:      p3, p4, p6             = 3
NEWS_EVENTS: list[dict | str] = [
    # line 1: p1 opens the default mail (by message id)
    {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "message": "news:p1:1:mail:1"},
    # line 2: p1 opens it again (by campaign + step, with an id of its own)
    {"type": "opened", "at": "2026-07-01T11:00:00Z", "partner": "p1", "campaign": "news", "step": "mail",
     "id": "p1-open-2"},
    # line 3: p1 clicks it
    {"type": "clicked", "at": "2026-07-01T11:05:00Z", "partner": "p1", "message": "news:p1:1:mail:1"},
    # line 4-5: p3 opens the fi mail twice, once by campaign + step, once by message id
    {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p3", "campaign": "news", "step": "mail"},
    {"type": "opened", "at": "2026-07-01T12:00:00Z", "partner": "p3", "message": "news:p3:1:mail:1"},
    # line 6-8: p4 opens the fi mail once and clicks it twice
    {"type": "opened", "at": "2026-07-01T10:30:00Z", "partner": "p4", "message": "news:p4:1:mail:1"},
    {"type": "clicked", "at": "2026-07-01T10:31:00Z", "partner": "p4", "campaign": "news", "step": "mail"},
    {"type": "clicked", "at": "2026-07-01T10:45:00Z", "partner": "p4", "campaign": "news", "step": "mail"},
    # line 9: p2's default mail bounces hard (by message id)
    {"type": "bounced", "at": "2026-07-01T09:01:00Z", "partner": "p2", "message": "news:p2:1:mail:1",
     "data": {"kind": "hard"}},
    # line 10: p6's fi mail bounces soft (by campaign + step)
    {"type": "bounced", "at": "2026-07-01T09:02:00Z", "partner": "p6", "campaign": "news", "step": "mail",
     "data": {"kind": "soft"}},
    # line 11: p2 clicks the link in the SMS
    {"type": "clicked", "at": "2026-07-01T09:30:00Z", "partner": "p2", "message": "news:p2:1:text:1"},
    # line 12: p1 reads the default pop-up (message id = pop-up id)
    {"type": "read", "at": "2026-07-01T13:00:00Z", "partner": "p1", "message": "news:p1:1:note:1"},
    # line 13: p3 reads the fi pop-up (by campaign + step)
    {"type": "read", "at": "2026-07-01T13:00:00Z", "partner": "p3", "campaign": "news", "step": "note"},
    # line 14: a bad line (a bare date is not a time): reported, skipped
    '{"type": "opened", "at": "2026-07-01", "partner": "p1", "campaign": "news", "step": "mail"}',
    # line 15: line 1 again: a duplicate, counted once
    json.dumps({"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "message": "news:p1:1:mail:1"}),
]

ZERO = {"opens": 0, "unique_opens": 0, "clicks": 0, "unique_clicks": 0, "bounces": 0, "read": 0, "unread": 0}

# By hand, from the lines above ("opens" counts opened events; a click is counted as a click):
#   mail/default: opens: p1 lines 1+2 = 2, unique 1 (p1); clicks: line 3 = 1, unique 1; bounces: line 9 = 1
#   mail/fi:      opens: p3 lines 4+5, p4 line 6 = 3, unique 2 (p3, p4); clicks: lines 7+8 = 2, unique 1 (p4);
#                 bounces: line 10 = 1
#   text/default: clicks: line 11 = 1, unique 1
#   note/default: 3 shown, read: p1 (line 12) = 1, unread 2 (p2, p5)
#   note/fi:      3 shown, read: p3 (line 13) = 1, unread 2 (p4, p6)
# In-Campaign %: p7 joins the partner source after the `at` fired. A one-shot can enroll nobody
# after its time, so p7 does not count (engine/monitor.py): the 6 partners in the campaign are all
# in an active enrollment (waiting out the trailing 30 days): 6/6 = 100.0.
NEWS_STATS = {
    "campaign": "news",
    "in_campaign_pct": 100.0,
    "steps": [
        {"step": "mail", "channel": "email", "language": "default", "sent": 2, **ZERO,
         "opens": 2, "unique_opens": 1, "clicks": 1, "unique_clicks": 1, "bounces": 1, "variant": None},
        {"step": "mail", "channel": "email", "language": "fi", "sent": 3, **ZERO,
         "opens": 3, "unique_opens": 2, "clicks": 2, "unique_clicks": 1, "bounces": 1, "variant": None},
        {"step": "text", "channel": "sms", "language": "default", "sent": 4, **ZERO,
         "clicks": 1, "unique_clicks": 1, "variant": None},
        {"step": "note", "channel": "popup", "language": "default", "sent": 3, **ZERO, "read": 1, "unread": 2,
         "variant": None},
        {"step": "note", "channel": "popup", "language": "fi", "sent": 3, **ZERO, "read": 1, "unread": 2,
         "variant": None},
    ],
    "goal": None,
    # beside SPEC §8's keys: the monitor's counts (the `at` fired: nobody waits for it), no activity
    # step, no mailing that lists responses
    "in_campaign": {"active": 6, "of": 6, "waiting": None, "dropped": [], "suggestion": None},
    "activities": [],
    "mailing_responses": [],
}


def test_stats_from_an_imported_events_file_equal_hand_counts(capsys, tmp_path):
    root = build(tmp_path, {"news": NEWS}, *NEWS_PARTNERS)
    report = tick(capsys, root, "2026-07-01T09:00Z")  # the `at` time: it fires
    # 6 enrolled; executed: mail 5 + text 4 + note 6 = 15; skipped: mail p5, text p5 + p6 = 3
    assert (report["enrolled"], report["executed"], report["skipped"], report["failed"]) == (6, 15, 3, 0)
    assert report["errors"] == []

    # the translations: fi partners got the fi subject, the others the default one
    subjects = {m["partner"]: (m["language"], m["subject"], m["at"]) for m in outbox(root, "email")}
    assert subjects == {
        "p1": ("default", "News for P1", "2026-07-01T09:00:00Z"),
        "p2": ("default", "News for P2", "2026-07-01T09:00:00Z"),
        "p3": ("fi", "Uutisia P3", "2026-07-01T09:00:00Z"),
        "p4": ("fi", "Uutisia P4", "2026-07-01T09:00:00Z"),
        "p6": ("fi", "Uutisia P6", "2026-07-01T09:00:00Z"),
    }

    # before any event: the sent counts only, and every pop-up unread
    before = run_json(capsys, root, "stats", "news")
    assert [(r["step"], r["language"], r["sent"], r["opens"], r["clicks"], r["bounces"], r["read"], r["unread"])
            for r in before["steps"]] == [
        ("mail", "default", 2, 0, 0, 0, 0, 0),
        ("mail", "fi", 3, 0, 0, 0, 0, 0),
        ("text", "default", 4, 0, 0, 0, 0, 0),
        ("note", "default", 3, 0, 0, 0, 0, 3),
        ("note", "fi", 3, 0, 0, 0, 0, 3),
    ]

    # p7 joins the partners after the one-shot fired: in the audience, not enrolled
    rewrite(root / "partners.csv", partners_csv(*NEWS_PARTNERS, partner("p7")))
    report = tick(capsys, root, "2026-07-01T14:00Z")
    assert (report["enrolled"], report["executed"]) == (0, 0)

    events = write_events(tmp_path / "events.jsonl", NEWS_EVENTS)
    code, out, err = run(capsys, root, "events", "import", str(events), "--as", "alice", "--at", "2026-07-01T15:00Z")
    assert code == 1  # the bad line
    assert out == "imported 13 events, 1 already known, 1 bad lines skipped\n"
    assert err.startswith(f"{events}:14:") and "error:" in err and err.count(f"{events}:") == 1, err

    assert run_json(capsys, root, "stats", "news") == NEWS_STATS

    # the same file again: nothing new, no count moves
    code, out, err = run(capsys, root, "events", "import", str(events), "--as", "alice", "--at", "2026-07-01T16:00Z")
    assert code == 1
    assert out == "imported 0 events, 14 already known, 1 bad lines skipped\n"
    assert run_json(capsys, root, "stats", "news") == NEWS_STATS


def test_engagement_events_that_name_no_message_sent_to_the_partner_are_bad_lines(capsys, tmp_path):
    """Engagement naming a campaign or step the workspace does not have, or another partner's
    message, is bad input: reported at its line and skipped (SPEC §10). An open of a step whose
    message the partner was not sent (yet) is kept, since feeds may run ahead of ticks, but the
    stats count only engagement with messages that were sent."""
    root = build(tmp_path, {"news": NEWS}, *NEWS_PARTNERS)
    tick(capsys, root, "2026-07-01T09:00Z")
    events = write_events(tmp_path / "events.jsonl", [
        # line 1: good
        {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "campaign": "news", "step": "mail"},
        # line 2: no step `mial` in news
        {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "campaign": "news", "step": "mial"},
        # line 3: no campaign `nwes`
        {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p1", "campaign": "nwes", "step": "mail"},
        # line 4: p1's message, but the event says p2
        {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p2", "message": "news:p1:1:mail:1"},
        # line 5: p5 was sent no `mail` (no consent): kept, not counted
        {"type": "opened", "at": "2026-07-01T10:00:00Z", "partner": "p5", "campaign": "news", "step": "mail"},
    ])
    code, out, err = run(capsys, root, "events", "import", str(events), "--as", "alice", "--at", "2026-07-01T11:00Z")
    assert (code, out) == (1, "imported 2 events, 0 already known, 3 bad lines skipped\n"), err
    assert [line.split(": error: ")[0].rsplit(":", 1)[0] for line in err.splitlines() if ": error: " in line] == [
        f"{events}:{n}" for n in (2, 3, 4)]  # path:line (the column is the importer's choice)
    # only line 1 counts: mail/default 1 open by 1 partner (of 2 sent); no row for `mial`
    rows = {(r["step"], r["language"]): (r["sent"], r["opens"], r["unique_opens"])
            for r in run_json(capsys, root, "stats", "news")["steps"]}
    assert rows == {("mail", "default"): (2, 1, 1), ("mail", "fi"): (3, 0, 0), ("text", "default"): (4, 0, 0),
                    ("note", "default"): (3, 0, 0), ("note", "fi"): (3, 0, 0)}


# =================================================================================================
# 2. Engagement effects: hard bounces, unsubscribes, and opened()/clicked()/bounced() as of the due time
# =================================================================================================

FLOW = """\
name: Flow
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T00:00
steps:
  - id: first
    email: {subject: "First", body: "1"}
  - wait: 2d
  - id: second
    email: {subject: "Second", body: "2"}
  - id: ping
    sms: {text: "Ping"}
  - wait: 2d
  - id: third
    email: {subject: "Third", body: "3"}
"""


def test_hard_bounces_and_unsubscribes_stop_later_email_from_their_time_on(capsys, tmp_path):
    root = build(tmp_path, {"flow": FLOW}, *(partner(f"p{i}") for i in range(1, 7)))
    report = tick(capsys, root, "2026-07-01T00:00Z")
    assert (report["enrolled"], report["executed"]) == (6, 6)  # `first` to everyone at 07-01T00:00

    # second and ping are due 07-03T00:00, third 07-05T00:00
    events = write_events(tmp_path / "events.jsonl", [
        # p1: hard bounce of `first` (by message id) -> p1@example.com undeliverable from 07-01T01:00
        {"type": "bounced", "at": "2026-07-01T01:00:00Z", "partner": "p1", "message": "flow:p1:1:first:1",
         "data": {"kind": "hard"}},
        # p2: soft bounce (by campaign + step): the address stays deliverable
        {"type": "bounced", "at": "2026-07-01T01:00:00Z", "partner": "p2", "campaign": "flow", "step": "first",
         "data": {"kind": "soft"}},
        # p3: unsubscribes from email (data.channel) on 07-02
        {"type": "unsubscribed", "at": "2026-07-02T00:00:00Z", "partner": "p3", "id": "unsub-p3",
         "data": {"channel": "email"}},
        # p4: unsubscribes through the link of the `first` email (by message id: the channel is email)
        {"type": "unsubscribed", "at": "2026-07-02T00:00:00Z", "partner": "p4", "id": "unsub-p4",
         "message": "flow:p4:1:first:1"},
        # p5: unsubscribes on 07-04: after `second` (07-03), before `third` (07-05)
        {"type": "unsubscribed", "at": "2026-07-04T00:00:00Z", "partner": "p5", "id": "unsub-p5",
         "data": {"channel": "email"}},
        # p6: hard bounce on 07-04 (by campaign + step): after `second`, before `third`
        {"type": "bounced", "at": "2026-07-04T00:00:00Z", "partner": "p6", "campaign": "flow", "step": "first",
         "data": {"kind": "hard"}},
    ])
    code, out, err = run(capsys, root, "events", "import", str(events), "--as", "alice", "--at", "2026-07-04T01:00Z")
    assert (code, out, err) == (0, "imported 6 events, 0 already known, 0 bad lines skipped\n", "")

    # one tick over both due times: each step sees the events up to its own due time only
    report = tick(capsys, root, "2026-07-05T12:00Z")
    assert report["errors"] == []
    executed = ("executed", None)
    expected = {
        # hard bounce: every later email skipped (undeliverable); the SMS still goes
        "p1": {"first": executed, "second": ("skipped", "undeliverable"), "ping": executed,
               "third": ("skipped", "undeliverable")},
        # soft bounce: nothing changes
        "p2": {"first": executed, "second": executed, "ping": executed, "third": executed},
        # unsubscribed from email before `second`: no more email; SMS consent is untouched
        "p3": {"first": executed, "second": ("skipped", "no_consent"), "ping": executed,
               "third": ("skipped", "no_consent")},
        "p4": {"first": executed, "second": ("skipped", "no_consent"), "ping": executed,
               "third": ("skipped", "no_consent")},
        # unsubscribed after `second` was due: `second` went out, `third` did not
        "p5": {"first": executed, "second": executed, "ping": executed, "third": ("skipped", "no_consent")},
        # hard bounce after `second` was due: `second` went out, `third` did not
        "p6": {"first": executed, "second": executed, "ping": executed, "third": ("skipped", "undeliverable")},
    }
    for pid, want in expected.items():
        got = {step: (status, reason) for step, (status, reason, _) in steps_of(capsys, root, "flow", pid).items()}
        assert got == want, pid

    assert sorted((m["partner"], m["step"], m["at"]) for m in outbox(root, "email") if m["step"] != "first") == [
        ("p2", "second", "2026-07-03T00:00:00Z"), ("p2", "third", "2026-07-05T00:00:00Z"),
        ("p5", "second", "2026-07-03T00:00:00Z"),
        ("p6", "second", "2026-07-03T00:00:00Z"),
    ]

    # the consent ledger shows each unsubscribe with its time and source
    for pid in ("p3", "p4"):
        assert run_json(capsys, root, "consent", "--partner", pid, "--at", "2026-07-06T00:00Z") == {
            "partner": pid,
            "known": True,
            "channels": {"email": {"consent": False, "by": "ledger"},
                         "sms": {"consent": True, "by": "expression: partner.ok"}},
            "ledger": [{"channel": "email", "granted": False, "at": "2026-07-02T00:00:00Z",
                        "source": f"event:unsub-{pid}"}],
        }
    consent = run_json(capsys, root, "consent", "--partner", "p5", "--at", "2026-07-06T00:00Z")
    assert consent["channels"]["email"] == {"consent": False, "by": "ledger"}
    assert consent["ledger"] == [{"channel": "email", "granted": False, "at": "2026-07-04T00:00:00Z",
                                  "source": "event:unsub-p5"}]
    # before the unsubscribe, the record's expression still decided
    consent = run_json(capsys, root, "consent", "--partner", "p5", "--at", "2026-07-03T00:00Z")
    assert consent["channels"]["email"] == {"consent": True, "by": "expression: partner.ok"}
    # a soft bounce and a hard bounce are not consent events
    assert run_json(capsys, root, "consent", "--partner", "p1", "--at", "2026-07-06T00:00Z")["ledger"] == []


COND = """\
name: Conditions
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T00:00
steps:
  - id: hello
    email: {subject: "Hello", body: "Hi"}
  - wait: 1d
  - id: if-opened
    when: opened("hello")
    popup: {pages: [dashboard], title: "Opened", body: "o"}
  - id: if-clicked
    when: clicked("hello")
    popup: {pages: [dashboard], title: "Clicked", body: "c"}
  - id: if-bounced
    when: bounced("hello")
    popup: {pages: [dashboard], title: "Bounced", body: "b"}
"""


def test_opened_clicked_bounced_in_when_see_events_up_to_the_due_time_only(capsys, tmp_path):
    root = build(tmp_path, {"cond": COND}, *(partner(f"p{i}") for i in range(1, 7)))
    tick(capsys, root, "2026-07-01T00:00Z")  # `hello` to everyone; the conditions are due 07-02T00:00

    def event(kind: str, pid: str, at: str, **extra: Any) -> dict:
        return {"type": kind, "at": at, "partner": pid, "campaign": "cond", "step": "hello", **extra}

    events = write_events(tmp_path / "events.jsonl", [
        event("opened", "p1", "2026-07-01T12:00:00Z"),                          # before the due time
        event("opened", "p2", "2026-07-02T01:00:00Z"),                          # all three after it
        event("clicked", "p2", "2026-07-02T02:00:00Z"),
        event("bounced", "p2", "2026-07-02T03:00:00Z", data={"kind": "soft"}),
        {"type": "clicked", "at": "2026-07-01T06:00:00Z", "partner": "p3",      # a click is an open too
         "message": "cond:p3:1:hello:1"},
        event("bounced", "p4", "2026-07-01T01:00:00Z", data={"kind": "soft"}),  # before the due time
        event("opened", "p5", "2026-07-02T00:00:00Z"),                          # at the due time: counts
    ])                                                                          # p6: nothing
    code, out, err = run(capsys, root, "events", "import", str(events), "--as", "alice", "--at", "2026-07-02T06:00Z")
    assert (code, err) == (0, "") and out.startswith("imported 7 events")

    tick(capsys, root, "2026-07-03T00:00Z")  # after every event: the steps still run as of 07-02T00:00
    done, no = ("executed", None), ("skipped", "condition")
    expected = {
        "p1": (done, no, no),
        "p2": (no, no, no),
        "p3": (done, done, no),
        "p4": (no, no, done),
        "p5": (done, no, no),
        "p6": (no, no, no),
    }
    for pid, want in expected.items():
        got = steps_of(capsys, root, "cond", pid)
        assert tuple(got[s][:2] for s in ("if-opened", "if-clicked", "if-bounced")) == want, pid
        assert all(got[s][2] == "2026-07-02T00:00:00Z" for s in ("if-opened", "if-clicked", "if-bounced")), pid


# =================================================================================================
# 3. Pop-ups: message center, pages, read, translations
# =================================================================================================

PORTAL = """\
name: Portal
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T00:00
steps:
  - id: promo
    popup:
      pages: [dashboard, deals]
      title: "Deal for {{ partner.name }}"
      body: "Hello {{ partner.name }}"
      translations:
        fi: {title: "Tarjous {{ partner.name }}", body: "Hei {{ partner.name }}"}
  - id: notice
    popup:
      pages: [settings]
      title: "Notice"
      body: "Check your settings"
"""


def popup(pid: str, step: str, title: str, body: str, pages: list[str], language: str = "default",
          read_at: str | None = None) -> dict:
    return {"id": f"portal:{pid}:1:{step}:1", "campaign": "portal", "step": step, "partner": pid, "pages": pages,
            "title": title, "body": body, "language": language, "created_at": "2026-07-01T00:00:00Z",
            "read_at": read_at}


def by_id(popups: list[dict]) -> list[dict]:
    return sorted(popups, key=lambda p: p["id"])


def test_popups_show_on_their_pages_until_read_and_stay_in_the_message_center(capsys, tmp_path):
    root = build(tmp_path, {"portal": PORTAL}, partner("p1"), partner("p2", language="fi"))
    report = tick(capsys, root, "2026-07-01T00:00Z")
    assert (report["enrolled"], report["executed"]) == (2, 4)

    promo1 = popup("p1", "promo", "Deal for P1", "Hello P1", ["dashboard", "deals"])
    notice1 = popup("p1", "notice", "Notice", "Check your settings", ["settings"])
    # the fi partner sees the fi text of the translated pop-up, the default text of the other one
    promo2 = popup("p2", "promo", "Tarjous P2", "Hei P2", ["dashboard", "deals"], language="fi")
    notice2 = popup("p2", "notice", "Notice", "Check your settings", ["settings"])

    assert by_id(run_json(capsys, root, "popups", "--partner", "p1")) == by_id([promo1, notice1])
    assert by_id(run_json(capsys, root, "popups", "--partner", "p2")) == by_id([promo2, notice2])
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "dashboard") == [promo1]
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "deals") == [promo1]
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "settings") == [notice1]
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "nowhere") == []

    code, out, err = run(capsys, root, "popup", "read", "--as", "alice", "portal:p1:1:promo:1", "--partner", "p1",
                         "--at", "2026-07-02T08:00Z")
    assert code == 0, err
    read1 = {**promo1, "read_at": "2026-07-02T08:00:00Z"}
    # no longer on its pages, still in the message center (read)
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "dashboard") == []
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "deals") == []
    assert by_id(run_json(capsys, root, "popups", "--partner", "p1")) == by_id([read1, notice1])
    assert run_json(capsys, root, "popups", "--partner", "p1", "--unread") == [notice1]
    # the other partner's copy is untouched
    assert run_json(capsys, root, "popups", "--partner", "p2", "--page", "dashboard") == [promo2]

    # reading again changes nothing (the first read time stays, nothing is logged again)
    before = dump(root)
    code, _, err = run(capsys, root, "popup", "read", "--as", "alice", "portal:p1:1:promo:1", "--partner", "p1",
                       "--at", "2026-07-03T08:00Z")
    assert code == 0, err
    assert dump(root) == before
    assert by_id(run_json(capsys, root, "popups", "--partner", "p1")) == by_id([read1, notice1])

    # someone else's pop-up, or an unknown one: exit 1, nothing changes
    for argv in (("portal:p1:1:notice:1", "--partner", "p2"), ("portal:p1:1:nope:1", "--partner", "p1")):
        code, out, err = run(capsys, root, "popup", "read", "--as", "alice", *argv, "--at", "2026-07-03T09:00Z")
        assert code == 1 and err.startswith("engine: error: "), (argv, code, err)
        assert dump(root) == before
    assert run_json(capsys, root, "popups", "--partner", "p1", "--page", "settings") == [notice1]

    # the stats count the read pop-up: promo/default 1 read of 1, promo/fi 0 of 1, notice 0 of 2
    rows = {(r["step"], r["language"]): (r["sent"], r["read"], r["unread"])
            for r in run_json(capsys, root, "stats", "portal")["steps"]}
    assert rows == {("promo", "default"): (1, 1, 0), ("promo", "fi"): (1, 0, 1), ("notice", "default"): (2, 0, 2)}


# =================================================================================================
# 4. Locks: a one-shot campaign that started sending
# =================================================================================================

LAUNCH = """\
name: Launch
description: First version
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T09:00
steps:
  - id: hello
    email:
      subject: "Hello {{ partner.name }}"
      body: "Hi"
  - wait: 2d
  - id: later
    email:
      subject: "Later"
      body: "Bye"
"""

OTHER = """\
name: Other
description: Another campaign
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: a
    email: {subject: "A", body: "a"}
  - wait: 1d
  - id: b
    email: {subject: "B", body: "b"}
"""

FUTURE = """\
name: Future
description: Not fired yet
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-08-01T09:00
steps:
  - id: soon
    email: {subject: "Soon", body: "s"}
"""


def check(capsys, root: Path) -> tuple[int, list[str]]:
    """`engine check`: the exit code and the headlines of the diagnostics (but the launch
    checklist's reminders to run `engine test`, and the warnings about unsubscribe links, which
    these test emails leave out)."""
    code, out, err = run(capsys, root, "check")
    return code, [line for line in out.splitlines() if (": error: " in line or ": warning: " in line)
                  and "engine test" not in line and "unsubscribe" not in line]


def test_a_one_shot_campaign_that_started_sending_is_locked(capsys, tmp_path):
    root = build(tmp_path, {"launch": LAUNCH, "other": OTHER, "future": FUTURE}, partner("p1"), partner("p2"))
    path = root / "campaigns" / "launch.yaml"

    # before it fired, a one-shot may change freely
    rewrite(path, LAUNCH.replace('"Later"', '"Later, draft"'))
    tick(capsys, root, "2026-07-01T08:00Z")  # the campaigns are seen; launch has not fired yet
    assert check(capsys, root) == (0, [])
    rewrite(path, LAUNCH)

    report = tick(capsys, root, "2026-07-01T10:00Z")  # launch fires at 09:00 (hello); other enrolled at 08:00
    assert report["errors"] == []
    assert sorted((m["partner"], m["step"], m["at"]) for m in outbox(root, "email")) == [
        ("p1", "a", "2026-07-01T08:00:00Z"), ("p1", "hello", "2026-07-01T09:00:00Z"),
        ("p2", "a", "2026-07-01T08:00:00Z"), ("p2", "hello", "2026-07-01T09:00:00Z"),
    ]
    assert check(capsys, root) == (0, [])

    def locked(line: int, col: int, part: str) -> str:
        return (f"{path}:{line}:{col}: error: campaign 'launch' is locked: it started sending at "
                f"2026-07-01T09:00:00Z, so its {part} cannot change; copy it to a new file (a new campaign) "
                "to change it, or undo this change")

    # a changed subject of a step: an error at the edited value (line 16, `subject: "Later"`)
    edited = LAUNCH.replace('subject: "Later"', 'subject: "Later!"')
    rewrite(path, edited)
    line = edited.splitlines()[15]
    assert line == '      subject: "Later!"'
    col = line.index('"Later!"') + 1  # 16
    code, headlines = check(capsys, root)
    assert (code, headlines) == (1, [locked(16, col, "steps")])

    # the tick reports the same error, holds launch's `later` (due 07-03T09:00) and runs `other`'s `b`
    # (due 07-02T08:00: `other` enrolled at the first tick, 07-01T08:00)
    code, out, err = run(capsys, root, "tick", "--at", "2026-07-03T10:00Z", "--json")
    assert code == 1
    assert json.loads(out)["errors"] == [{"path": str(path), "line": 16, "col": col, "severity": "error",
                                          "message": locked(16, col, "steps").split(": error: ", 1)[1]}]
    assert locked(16, col, "steps") in err.splitlines()
    assert steps_of(capsys, root, "launch", "p1")["later"][0] == "pending"
    assert steps_of(capsys, root, "other", "p1")["b"] == ("executed", None, "2026-07-02T08:00:00Z")
    assert not [m for m in outbox(root, "email") if m["step"] == "later"]

    # the audience: an error at the edited ruleset (line 5, `all: ...`)
    audience_edit = LAUNCH.replace('all: "true"', 'all: "partner.tier == \'gold\'"')
    rewrite(path, audience_edit)
    line = audience_edit.splitlines()[4]
    col = line.index('"partner') + 1  # 10
    assert check(capsys, root) == (1, [locked(5, col, "audience")])
    code, out, err = run(capsys, root, "tick", "--at", "2026-07-03T10:30Z")
    assert code == 1 and locked(5, col, "audience") in err.splitlines()
    assert steps_of(capsys, root, "launch", "p1")["later"][0] == "pending"

    # name and description may change: not locked, and the held step runs (as of its due time)
    rewrite(path, LAUNCH.replace("name: Launch", "name: Launch renamed")
            .replace("description: First version", "description: Second version"))
    assert check(capsys, root) == (0, [])
    code, out, err = run(capsys, root, "tick", "--at", "2026-07-03T11:00Z")
    assert code == 0, err
    assert steps_of(capsys, root, "launch", "p1")["later"] == ("executed", None, "2026-07-03T09:00:00Z")
    assert sorted((m["partner"], m["at"]) for m in outbox(root, "email") if m["step"] == "later") == [
        ("p1", "2026-07-03T09:00:00Z"), ("p2", "2026-07-03T09:00:00Z")]

    # undoing an edit unlocks it again
    rewrite(path, edited)
    assert check(capsys, root)[0] == 1
    rewrite(path, LAUNCH)
    assert check(capsys, root) == (0, [])
    code, _, err = run(capsys, root, "tick", "--at", "2026-07-03T12:00Z")
    assert code == 0, err

    # a one-shot that has not fired is not locked: `future` (2026-08-01) may change its steps
    rewrite(root / "campaigns" / "future.yaml", FUTURE.replace('"Soon"', '"Soon, edited"'))
    assert check(capsys, root) == (0, [])
    code, _, err = run(capsys, root, "tick", "--at", "2026-07-03T13:00Z")
    assert code == 0, err


# =================================================================================================
# 5. Drafts: a scheduled one-shot returns to draft until its file is edited
# =================================================================================================

WEBINAR = """\
name: Webinar
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-10T09:00
steps:
  - id: invite
    popup: {pages: [events], title: "Webinar", body: "Join us"}
  - id: mail
    email: {subject: "Webinar", body: "Join us"}
"""

FIRED = """\
name: Fired
audience:
  rulesets:
    all: "true"
trigger:
  at: 2026-07-01T00:00
steps:
  - id: hi
    email: {subject: "Hi", body: "hi"}
"""

NOBODY = FIRED.replace("name: Fired", "name: Nobody").replace('all: "true"', 'none: "false"')

PLAIN = """\
name: Plain
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hi
    email: {subject: "Hi", body: "hi"}
"""


def test_a_scheduled_one_shot_returns_to_draft_until_its_file_is_edited(capsys, tmp_path):
    root = build(tmp_path, {"webinar": WEBINAR, "fired": FIRED, "nobody": NOBODY, "plain": PLAIN},
                 partner("p1"), partner("p2", tier="silver"))
    report = tick(capsys, root, "2026-07-01T00:00Z")
    assert report["enrolled"] == 4  # fired: p1, p2; plain: p1, p2; nobody fired for no one; webinar waits

    # refused, changing nothing: a viewer; no `at` trigger; fired already
    err = refused(capsys, root, "draft", "webinar", "--as", "bob", "--at", "2026-07-02T00:00Z")
    assert "marketing role" in err
    assert "trigger: at" in refused(capsys, root, "draft", "plain", "--as", "alice", "--at", "2026-07-02T00:00Z")
    err = refused(capsys, root, "draft", "fired", "--as", "alice", "--at", "2026-07-02T00:00Z")  # sent: locked
    assert "locked" in err
    err = refused(capsys, root, "draft", "nobody", "--as", "alice", "--at", "2026-07-02T00:00Z")  # fired for no one
    assert "fired already" in err

    code, out, err = run(capsys, root, "draft", "webinar", "--as", "alice", "--at", "2026-07-02T00:00Z")
    assert code == 0, err
    # a draft already
    assert "draft already" in refused(capsys, root, "draft", "webinar", "--as", "alice", "--at", "2026-07-02T01:00Z")

    # its `at` passes: nothing is sent
    report = tick(capsys, root, "2026-07-10T12:00Z")
    assert (report["enrolled"], report["executed"], report["errors"]) == (0, 0, [])
    assert run_json(capsys, root, "status", "--campaign", "webinar")["total"] == 0
    assert run_json(capsys, root, "popups", "--partner", "p1") == []
    assert not [m for m in outbox(root, "email") if m["campaign"] == "webinar"]

    # editing the file (its audience: gold partners only) schedules it again: the next tick fires
    # it at that tick's time, its `at` being past
    rewrite(root / "campaigns" / "webinar.yaml", WEBINAR.replace('all: "true"', 'gold: "partner.tier == \'gold\'"'))
    report = tick(capsys, root, "2026-07-11T08:00Z")
    assert (report["enrolled"], report["executed"], report["errors"]) == (1, 2, [])
    assert [(p["id"], p["created_at"]) for p in run_json(capsys, root, "popups", "--partner", "p1")] == [
        ("webinar:p1:1:invite:1", "2026-07-11T08:00:00Z")]
    assert run_json(capsys, root, "popups", "--partner", "p2") == []
    assert [(m["partner"], m["at"]) for m in outbox(root, "email") if m["campaign"] == "webinar"] == [
        ("p1", "2026-07-11T08:00:00Z")]

    # now it fired (and is locked): it cannot return to draft
    refused(capsys, root, "draft", "webinar", "--as", "alice", "--at", "2026-07-12T00:00Z")


def test_a_new_at_time_of_a_locked_one_shot_is_refused_not_sent_again(capsys, tmp_path):
    root = build(tmp_path, {"launch": LAUNCH}, partner("p1"))
    path = root / "campaigns" / "launch.yaml"
    tick(capsys, root, "2026-07-01T10:00Z")  # fires at 09:00
    rewrite(path, LAUNCH.replace("2026-07-01T09:00", "2026-07-05T09:00"))
    code, headlines = check(capsys, root)
    assert code == 1 and len(headlines) == 1 and "so its trigger cannot change" in headlines[0]
    code, out, _ = run(capsys, root, "tick", "--at", "2026-07-06T00:00Z", "--json")
    report = json.loads(out)
    assert code == 1 and report["errors"] and report["enrolled"] == 0
    assert [(m["partner"], m["step"]) for m in outbox(root, "email") if m["step"] == "hello"] == [("p1", "hello")]
