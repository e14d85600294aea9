"""Delivery through real servers on loopback (issue 5, SPEC §2 channels, §8, §10): an aiosmtpd
server receives the exact emails, a mail server that is down for three ticks loses nothing and
duplicates nothing, and a local HTTP server receives the SMS webhooks.

Every server listens on 127.0.0.1 on a free port and is started and stopped by a fixture (a
"down" server is a port with no listener; it is started later on the same port). Workspaces
are built inside each test, their engine.yaml pointing the email and SMS channels at those
servers; times are UTC. Results are read back from the servers, from ``engine.outbox`` and
from ``engine outbox --json`` (the CLI), always as exact values.
"""

from __future__ import annotations

import email
import json
import re
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from engine.channels.smtp import message_id
from engine.cli import main

SENDER = "partners@example.com"
AUDIT = "audit@example.com"
DELIVERY_STATE = ("status", "attempts", "next_attempt", "last_error", "delivered_at")
RECORD_KEYS = {"id", "campaign", "step", "partner", "channel", "to", "body", "language", "at"}


# --- servers ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.content, policy=policy.default)  # type: ignore[return-value]

    @property
    def raw(self) -> email.message.Message:
        """The headers exactly as written."""
        return email.message_from_bytes(self.content, policy=policy.compat32)


class Mailbox:
    """aiosmtpd handler: keeps every accepted envelope; ``refuse[address]`` is the reply to
    RCPT TO for that address (e.g. ``550 no such user``) instead of accepting it."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refuse: dict[str, str] = {}

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.refuse.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"

    def ids(self) -> Counter:
        """Message-ID header → how many times the server got it."""
        return Counter(r.message["Message-ID"] for r in self.received)

    def by_id(self) -> dict[str, Received]:
        return {r.message["Message-ID"]: r for r in self.received}


class SmtpServer:
    """A mail server on a fixed loopback port that the test starts (and may start late)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self.controller: Controller | None = None

    def start(self, **smtp_options: Any) -> None:
        self.controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port, server_hostname="localhost",
                                     **smtp_options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server():
    """Not listening yet: the test calls ``start()`` (so "down" is simply not started)."""
    server = SmtpServer()
    yield server
    server.stop()


class HookServer:
    """An SMS provider: every POST is kept (headers and JSON body); ``script[to]`` lists the
    status codes of the next answers for that number (default 200)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[dict[str, str], Any]] = []
        self.script: dict[str, list[int]] = {}
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    def start(self) -> None:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                body = json.loads(data.decode("utf-8"))
                with hook.lock:
                    hook.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
                    codes = hook.script.get(body.get("to"), [])
                    code = codes.pop(0) if codes else 200
                answer = {200: b'{"ok": true}', 400: b"invalid phone number", 503: b"try again later"}.get(code, b"")
                self.send_response(code)
                self.send_header("Content-Type", "application/json" if code == 200 else "text/plain")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.httpd = None

    def keys(self) -> Counter:
        """Idempotency-Key → how many POSTs carried it."""
        return Counter(headers["idempotency-key"] for headers, _ in self.received)


@pytest.fixture
def hook_server():
    """Not listening yet: the test calls ``start()``."""
    server = HookServer()
    yield server
    server.stop()


# --- workspaces --------------------------------------------------------------------------------

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
    ok: bool
consent:
  email: partner.ok
  sms: partner.ok
channels:
  email: {{transport: smtp, host: 127.0.0.1, port: {smtp_port}, from: {sender}, bcc: {bcc}, starttls: false}}
  sms: {{transport: webhook, url: "{hook_url}"}}
"""


def partners_csv(*rows: tuple[str, str, str]) -> str:
    """(id, name, language) rows; email <id>@example.com, phone +358-<id>."""
    lines = ["id,name,email,phone,language,ok"]
    lines += [f"{pid},{name},{pid}@example.com,+358-{pid},{language},true" for pid, name, language in rows]
    return "\n".join(lines) + "\n"


def workspace(tmp_path: Path, campaigns: dict[str, str], partners: str, *, smtp_port: int | None = None,
              hook_url: str | None = None, templates: dict[str, str] | None = None) -> Path:
    root = tmp_path / "src"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML.format(
        smtp_port=smtp_port or free_port(), sender=SENDER, bcc=AUDIT,
        hook_url=hook_url or f"http://127.0.0.1:{free_port()}/sms"), encoding="utf-8")
    (root / "partners.csv").write_text(partners, encoding="utf-8")
    for cid, text in campaigns.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    (root / "templates").mkdir()
    for name, text in (templates or {}).items():
        (root / "templates" / name).write_text(text, encoding="utf-8")
    return root


def campaign(steps: str) -> str:
    return f'name: Test\naudience:\n  rulesets:\n    all: "true"\ntrigger:\n  audience: true\nsteps:\n{steps}'


WELCOME_HTML = """\
<!doctype html>
<html><body>
<h1>Hello {{ partner.name }}</h1>
<p>Your <strong>partner portal</strong> is <a href="https://portal.example.com/">here</a>.</p>
</body></html>
"""
WELCOME_FI_HTML = """\
<!doctype html>
<html><body>
<h1>Hei {{ partner.name }}</h1>
<p>Kumppaniportaalisi on <a href="https://portal.example.com/">täällä</a>.</p>
</body></html>
"""

WELCOME = campaign("""\
  - id: hello
    email:
      subject: "Welcome, {{ partner.name }}"
      template: welcome.html.j2
      translations:
        fi: {subject: "Tervetuloa, {{ partner.name }}", template: welcome.fi.html.j2}
""")

NOTE = campaign("""\
  - id: memo
    email:
      subject: "A note for {{ partner.name }}"
      body: "Plain words for {{ partner.name }}.\\nSecond line."
      translations:
        fi: {subject: "Viesti: {{ partner.name }}", body: "Suomeksi {{ partner.name }}."}
""")

TWO_EMAILS = campaign("""\
  - id: hello
    email: {subject: "Hello {{ partner.name }}", body: "Hello body {{ partner.name }}"}
  - wait: 1h
  - id: again
    email: {subject: "Again {{ partner.name }}", body: "Again body {{ partner.name }}"}
""")

TEXTS = campaign("""\
  - id: nudge
    sms:
      text: "Hi {{ partner.name }}, see the portal"
      translations:
        fi: {text: "Hei {{ partner.name }}, katso portaali"}
""")


def record_of(message: dict) -> dict:
    """The outbox record (SPEC §8) of a message from ``engine.outbox``, without its delivery state."""
    return {k: v for k, v in message.items() if k not in DELIVERY_STATE}


def cli_outbox(capsys, root: Path, *options: str) -> list[dict]:
    code = main(["-w", str(root), "outbox", "--json", *options])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def by_id(messages: list[dict]) -> dict[str, dict]:
    return {m["id"]: m for m in messages}


def text_of(part: EmailMessage) -> str:
    return part.get_content().replace("\r\n", "\n").rstrip("\n")


T0 = "2026-07-01T10:00:00Z"


# --- 1. SMTP: the exact messages ----------------------------------------------------------------


def test_smtp_server_receives_the_exact_messages_per_language_with_bcc_in_the_envelope_only(
        tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"welcome": WELCOME, "note": NOTE},
                     partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")), smtp_port=smtp_server.port,
                     templates={"welcome.html.j2": WELCOME_HTML, "welcome.fi.html.j2": WELCOME_FI_HTML})
    smtp_server.start()
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 4, "retry": 0, "failed": 0}
    assert not report.diagnostics

    messages = by_id(engine.outbox("email"))
    assert sorted(messages) == ["note:p1:1:memo:1", "note:p2:1:memo:1", "welcome:p1:1:hello:1", "welcome:p2:1:hello:1"]
    assert {m["status"] for m in messages.values()} == {"sent"}
    assert {m["delivered_at"] for m in messages.values()} == {T0}

    received = smtp_server.mailbox.by_id()
    assert smtp_server.mailbox.ids() == Counter({message_id(mid, SENDER): 1 for mid in messages})
    expected = {
        "welcome:p1:1:hello:1": ("p1@example.com", "Welcome, Anna"),
        "welcome:p2:1:hello:1": ("p2@example.com", "Tervetuloa, Pekka"),
        "note:p1:1:memo:1": ("p1@example.com", "A note for Anna"),
        "note:p2:1:memo:1": ("p2@example.com", "Viesti: Pekka"),
    }
    for mid, (to, subject) in expected.items():
        envelope = received[message_id(mid, SENDER)]
        msg = envelope.message
        assert envelope.mail_from == SENDER
        assert envelope.rcpt_tos == [to, AUDIT]  # the BCC is an envelope recipient…
        assert msg["Bcc"] is None and AUDIT.encode() not in envelope.content  # …that nobody sees
        assert (msg["From"], msg["To"], msg["Subject"]) == (SENDER, to, subject)
        assert msg["Message-ID"] == message_id(mid, SENDER)
        assert msg["Date"].datetime == datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc)  # the logical time
        assert msg["Date"].datetime.utcoffset().total_seconds() == 0
        assert messages[mid]["subject"] == subject and messages[mid]["to"] == to

    # the per-language choice of the outbox is the one that went out
    assert {mid: m["language"] for mid, m in messages.items()} == {
        "note:p1:1:memo:1": "default", "note:p2:1:memo:1": "fi",
        "welcome:p1:1:hello:1": "default", "welcome:p2:1:hello:1": "fi"}

    # an HTML template: multipart/alternative, a text part without tags, the HTML as rendered
    for mid, words in (("welcome:p1:1:hello:1", ["Hello Anna", "Your partner portal is here."]),
                       ("welcome:p2:1:hello:1", ["Hei Pekka", "Kumppaniportaalisi on täällä."])):
        msg = received[message_id(mid, SENDER)].message
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        text, html = text_of(parts[0]), text_of(parts[1])
        assert re.search(r"<[^>]*>", text) is None, text
        assert [line for line in text.splitlines() if line.strip()] == words
        assert html == messages[mid]["body"].rstrip("\n")
        assert "<strong>partner portal</strong>" in html or "täällä</a>" in html

    # an inline body: one text/plain part, the body as rendered
    for mid, body in (("note:p1:1:memo:1", "Plain words for Anna.\nSecond line."),
                      ("note:p2:1:memo:1", "Suomeksi Pekka.")):
        msg = received[message_id(mid, SENDER)].message
        assert not msg.is_multipart()
        assert msg.get_content_type() == "text/plain"
        assert text_of(msg) == body == messages[mid]["body"]


def test_a_message_handed_over_again_after_a_crash_has_the_same_message_id_and_date(
        tmp_path, make_engine, smtp_server, monkeypatch):
    root = workspace(tmp_path, {"welcome": WELCOME}, partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")),
                     smtp_port=smtp_server.port,
                     templates={"welcome.html.j2": WELCOME_HTML, "welcome.fi.html.j2": WELCOME_FI_HTML})
    smtp_server.start()
    engine = make_engine(root, at=T0)

    # the server takes the first message, then the engine dies before it records that: the
    # message in flight is in doubt; the second was never handed over
    def killed(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt("killed between hand-over and record")

    monkeypatch.setattr(engine.store, "record_outcomes", killed)
    with pytest.raises(KeyboardInterrupt):
        engine.tick(T0)
    monkeypatch.undo()
    assert {m["status"] for m in engine.outbox("email")} == {"queued"}
    first = list(smtp_server.mailbox.received)
    assert len(first) == 1

    report = engine.tick("2026-07-01T11:00:00Z")  # hands them over again, and records it
    assert report.to_json()["delivery"] == {"sent": 2, "retry": 0, "failed": 0}
    assert {(m["id"], m["status"], m["delivered_at"]) for m in engine.outbox("email")} == {
        ("welcome:p1:1:hello:1", "sent", "2026-07-01T11:00:00Z"),
        ("welcome:p2:1:hello:1", "sent", "2026-07-01T11:00:00Z")}
    again = smtp_server.mailbox.received[1:]
    assert len(again) == 2

    def headers(r):
        return r.message["Message-ID"], r.raw["Date"], r.message["Subject"], r.rcpt_tos

    assert headers(again[0]) == headers(first[0])  # the one in doubt: the same message again
    assert sorted(headers(r)[0] for r in again) == sorted(message_id(f"welcome:{p}:1:hello:1", SENDER)
                                                          for p in ("p1", "p2"))
    assert {headers(r)[1] for r in again} == {"Wed, 01 Jul 2026 10:00:00 +0000"}  # the time it was sent as of


def test_message_id_is_stable_and_per_message():
    first = message_id("welcome:p1:1:hello:1", SENDER)
    assert first == message_id("welcome:p1:1:hello:1", SENDER)
    assert re.fullmatch(r"<[^<>@\s]+@example\.com>", first)
    assert len({first, message_id("welcome:p1:1:hello:2", SENDER), message_id("welcome:p2:1:hello:1", SENDER),
                message_id("welcome:p1:2:hello:1", SENDER)}) == 4


# --- 2. SMTP outage, refusals ------------------------------------------------------------------


def test_smtp_down_for_three_ticks_then_back_delivers_every_message_once_with_visible_backoff(
        tmp_path, make_engine, smtp_server, capsys):
    pids = ("p1", "p2", "p3")
    root = workspace(tmp_path, {"drip": TWO_EMAILS}, partners_csv(*[(p, p.upper(), "en") for p in pids]),
                     smtp_port=smtp_server.port)
    engine = make_engine(root, at=T0)
    hello = [f"drip:{p}:1:hello:1" for p in pids]
    again = [f"drip:{p}:1:again:1" for p in pids]

    ticks = ["2026-07-01T10:00:00Z", "2026-07-01T11:00:00Z", "2026-07-01T12:00:00Z"]
    expected_retry = [3, 3 + 3, 3 + 3]  # hello at every tick; again from 11:00 (at its end, then at the start of 12:00)
    hello_next = ["2026-07-01T10:01:00Z", "2026-07-01T11:02:00Z", "2026-07-01T12:04:00Z"]
    again_next = [None, "2026-07-01T11:01:00Z", "2026-07-01T12:02:00Z"]
    for i, at in enumerate(ticks):
        report = engine.tick(at)
        assert report.to_json()["delivery"] == {"sent": 0, "retry": expected_retry[i], "failed": 0}, at
        outbox = by_id(cli_outbox(capsys, engine.root))
        assert sorted(outbox) == sorted(hello + (again if i else []))
        for mid in hello:
            m = outbox[mid]
            assert (m["status"], m["attempts"], m["next_attempt"], m["delivered_at"]) == (
                "queued", i + 1, hello_next[i], None), (at, m)
            assert "connection" in m["last_error"].lower(), m["last_error"]
        for mid in again if i else []:
            m = outbox[mid]
            assert (m["status"], m["attempts"], m["next_attempt"], m["delivered_at"]) == (
                "queued", i, again_next[i], None), (at, m)
            assert "connection" in m["last_error"].lower(), m["last_error"]
        assert [m["id"] for m in cli_outbox(capsys, engine.root, "--status", "queued")] == list(outbox)
        assert cli_outbox(capsys, engine.root, "--status", "sent") == []
    assert smtp_server.mailbox.received == []

    smtp_server.start()
    back = "2026-07-01T13:00:00Z"
    report = engine.tick(back)
    assert report.to_json()["delivery"] == {"sent": 6, "retry": 0, "failed": 0}

    sent = by_id(cli_outbox(capsys, engine.root, "--status", "sent"))
    assert sorted(sent) == sorted(hello + again)
    assert {(m["status"], m["delivered_at"]) for m in sent.values()} == {("sent", back)}
    assert {mid: sent[mid]["attempts"] for mid in hello} == dict.fromkeys(hello, 4)
    assert {mid: sent[mid]["attempts"] for mid in again} == dict.fromkeys(again, 3)
    assert all(m["next_attempt"] is None for m in sent.values())
    assert cli_outbox(capsys, engine.root, "--status", "queued") == []

    # zero lost, zero duplicated
    assert smtp_server.mailbox.ids() == Counter({message_id(mid, SENDER): 1 for mid in hello + again})
    # and nothing more later
    report = engine.tick("2026-07-01T14:00:00Z")
    assert report.to_json()["delivery"] == {"sent": 0, "retry": 0, "failed": 0}
    assert len(smtp_server.mailbox.received) == 6


def test_backoff_is_not_due_before_its_time_and_doubles_up_to_an_hour(tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"hello": campaign(
        '  - id: hello\n    email: {subject: "S", body: "B"}\n')}, partners_csv(("p1", "P1", "en")),
        smtp_port=smtp_server.port)
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    # minute by minute on the logical clock: an attempt only once next_attempt has come
    seen = []
    at = datetime(2026, 7, 1, 10, 0, tzinfo=timezone.utc)
    for _ in range(200):
        at += timedelta(minutes=1)
        report = engine.tick(at)
        [m] = engine.outbox("email")
        if report.to_json()["delivery"]["retry"]:
            seen.append((at.strftime("%H:%M"), m["attempts"], m["next_attempt"][11:16]))
    assert seen[:8] == [("10:01", 2, "10:03"), ("10:03", 3, "10:07"), ("10:07", 4, "10:15"), ("10:15", 5, "10:31"),
                        ("10:31", 6, "11:03"), ("11:03", 7, "12:03"), ("12:03", 8, "13:03"), ("13:03", 9, "14:03")]
    assert smtp_server.mailbox.received == []


def test_smtp_550_for_the_recipient_fails_with_the_reason_and_a_451_is_retried(
        tmp_path, make_engine, smtp_server, capsys):
    root = workspace(tmp_path, {"hello": campaign('  - id: hello\n    email: {subject: "S {{ partner.name }}", '
                                                  'body: "B {{ partner.name }}"}\n')},
                     partners_csv(("good", "Good", "en"), ("gone", "Gone", "en"), ("busy", "Busy", "en")),
                     smtp_port=smtp_server.port)
    smtp_server.mailbox.refuse = {"gone@example.com": "550 no such user", "busy@example.com": "451 mailbox busy"}
    smtp_server.start()
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 1, "retry": 1, "failed": 1}
    outbox = by_id(cli_outbox(capsys, engine.root))
    good, gone, busy = (outbox[f"hello:{p}:1:hello:1"] for p in ("good", "gone", "busy"))
    assert (good["status"], good["attempts"], good["delivered_at"], good["last_error"]) == ("sent", 1, T0, None)
    assert (gone["status"], gone["attempts"], gone["next_attempt"], gone["delivered_at"]) == ("failed", 1, None, None)
    assert "550" in gone["last_error"] and "no such user" in gone["last_error"] and "gone@example.com" in gone["last_error"]
    assert (busy["status"], busy["attempts"], busy["next_attempt"], busy["delivered_at"]) == (
        "queued", 1, "2026-07-01T10:01:00Z", None)
    assert "451" in busy["last_error"] and "mailbox busy" in busy["last_error"]
    assert [m["id"] for m in cli_outbox(capsys, engine.root, "--status", "failed")] == ["hello:gone:1:hello:1"]

    smtp_server.mailbox.refuse = {"gone@example.com": "550 no such user"}  # busy is free again
    report = engine.tick("2026-07-01T11:00:00Z")
    assert report.to_json()["delivery"] == {"sent": 1, "retry": 0, "failed": 0}  # the failed one is not retried
    outbox = by_id(cli_outbox(capsys, engine.root))
    assert (outbox["hello:busy:1:hello:1"]["status"], outbox["hello:busy:1:hello:1"]["attempts"],
            outbox["hello:busy:1:hello:1"]["delivered_at"]) == ("sent", 2, "2026-07-01T11:00:00Z")
    assert (outbox["hello:gone:1:hello:1"]["status"], outbox["hello:gone:1:hello:1"]["attempts"]) == ("failed", 1)

    # each partner who can get it got it once; the refused one never
    to_partners = Counter(rcpt for r in smtp_server.mailbox.received for rcpt in r.rcpt_tos if rcpt != AUDIT)
    assert to_partners == Counter({"good@example.com": 1, "busy@example.com": 1})
    engine.tick("2026-07-01T12:00:00Z")
    assert by_id(engine.outbox("email"))["hello:gone:1:hello:1"]["attempts"] == 1


def test_a_message_whose_recipient_is_refused_is_not_delivered_to_the_bcc_alone(
        tmp_path, make_engine, smtp_server):
    """The audit copy (BCC) of a message is the message that went out: a refused recipient must
    not leave the audit mailbox with a copy of a message marked failed (550), nor with one copy
    per attempt of a message that was retried (451)."""
    root = workspace(tmp_path, {"hello": campaign('  - id: hello\n    email: {subject: "S", body: "B"}\n')},
                     partners_csv(("gone", "Gone", "en"), ("busy", "Busy", "en")), smtp_port=smtp_server.port)
    smtp_server.mailbox.refuse = {"gone@example.com": "550 no such user", "busy@example.com": "451 mailbox busy"}
    smtp_server.start()
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    smtp_server.mailbox.refuse = {"gone@example.com": "550 no such user"}
    engine.tick("2026-07-01T11:00:00Z")
    assert {m["id"]: m["status"] for m in engine.outbox("email")} == {
        "hello:gone:1:hello:1": "failed", "hello:busy:1:hello:1": "sent"}
    # exactly once per Message-ID at the server, and only for the message that was sent
    assert smtp_server.mailbox.ids() == Counter({message_id("hello:busy:1:hello:1", SENDER): 1})


def test_an_email_that_cannot_be_built_fails_alone_and_the_tick_goes_on(tmp_path, make_engine, smtp_server):
    """A partner name with a line break (a quoted CSV cell) makes a Subject that no mail header may
    carry. That message cannot ever be sent; the others of its batch must still go out, once, and
    the tick must not fail because of it (nor every later tick)."""
    root = workspace(tmp_path, {"hello": campaign('  - id: hello\n    email: {subject: "Hi {{ partner.name }}", '
                                                  'body: "B"}\n')},
                     'id,name,email,phone,language,ok\n'
                     'q1,Ann,q1@example.com,+1,en,true\n'
                     'q2,"Bo\nBcc: intruder@example.org",q2@example.com,+2,en,true\n'
                     'q3,Cy,q3@example.com,+3,en,true\n', smtp_port=smtp_server.port)
    smtp_server.start()
    engine = make_engine(root, at=T0)

    engine.tick(T0)  # must not raise
    engine.tick("2026-07-01T11:00:00Z")
    outbox = by_id(engine.outbox("email"))
    assert (outbox["hello:q1:1:hello:1"]["status"], outbox["hello:q3:1:hello:1"]["status"]) == ("sent", "sent")
    bad = outbox.get("hello:q2:1:hello:1")
    assert bad is None or (bad["status"] == "failed" and bad["last_error"]), bad  # not queued for ever
    assert smtp_server.mailbox.ids() == Counter({message_id("hello:q1:1:hello:1", SENDER): 1,
                                                 message_id("hello:q3:1:hello:1", SENDER): 1})
    assert all("intruder@example.org" not in r.rcpt_tos for r in smtp_server.mailbox.received)


def test_an_address_the_server_cannot_take_does_not_hold_back_the_rest_of_the_batch(
        tmp_path, make_engine, smtp_server):
    """A mail server without SMTPUTF8 cannot take an internationalised address: that is about
    that one message, not the server being down, so the messages after it go out at once."""
    root = workspace(tmp_path, {"hello": campaign('  - id: hello\n    email: {subject: "S", body: "B"}\n')},
                     'id,name,email,phone,language,ok\n'
                     'q1,Ann,q1@example.com,+1,en,true\n'
                     'q2,Bo,bö@example.com,+2,en,true\n'
                     'q3,Cy,q3@example.com,+3,en,true\n', smtp_port=smtp_server.port)
    smtp_server.start(enable_SMTPUTF8=False)
    engine = make_engine(root, at=T0)

    engine.tick(T0)
    engine.tick("2026-07-01T11:00:00Z")
    outbox = by_id(engine.outbox("email"))
    assert (outbox["hello:q1:1:hello:1"]["status"], outbox["hello:q1:1:hello:1"]["delivered_at"]) == ("sent", T0)
    assert (outbox["hello:q3:1:hello:1"]["status"], outbox["hello:q3:1:hello:1"]["delivered_at"]) == ("sent", T0)
    assert outbox["hello:q2:1:hello:1"]["status"] in ("failed", "queued")
    assert "SMTPUTF8" in outbox["hello:q2:1:hello:1"]["last_error"]
    assert smtp_server.mailbox.ids() == Counter({message_id("hello:q1:1:hello:1", SENDER): 1,
                                                 message_id("hello:q3:1:hello:1", SENDER): 1})


# --- 3. webhook for SMS ----------------------------------------------------------------------------


def test_webhook_receives_each_sms_as_its_outbox_record_with_an_idempotency_key(
        tmp_path, make_engine, hook_server):
    root = workspace(tmp_path, {"texts": TEXTS}, partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")),
                     hook_url=hook_server.url)
    hook_server.start()
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 2, "retry": 0, "failed": 0}
    outbox = engine.outbox("sms")
    assert [(m["id"], m["status"], m["attempts"], m["delivered_at"]) for m in outbox] == [
        ("texts:p1:1:nudge:1", "sent", 1, T0), ("texts:p2:1:nudge:1", "sent", 1, T0)]
    assert [record_of(m) for m in outbox] == [
        {"id": "texts:p1:1:nudge:1", "campaign": "texts", "step": "nudge", "partner": "p1", "channel": "sms",
         "to": "+358-p1", "body": "Hi Anna, see the portal", "language": "default", "at": T0},
        {"id": "texts:p2:1:nudge:1", "campaign": "texts", "step": "nudge", "partner": "p2", "channel": "sms",
         "to": "+358-p2", "body": "Hei Pekka, katso portaali", "language": "fi", "at": T0}]

    assert len(hook_server.received) == 2
    posted = {body["id"]: (headers, body) for headers, body in hook_server.received}
    for m in outbox:
        headers, body = posted[m["id"]]
        assert set(body) == RECORD_KEYS
        assert body == record_of(m)
        assert headers["idempotency-key"] == m["id"]
        assert headers["content-type"].startswith("application/json")
    assert hook_server.keys() == Counter({"texts:p1:1:nudge:1": 1, "texts:p2:1:nudge:1": 1})


def test_webhook_503_is_retried_when_due_and_400_fails_with_the_reason(tmp_path, make_engine, hook_server, capsys):
    root = workspace(tmp_path, {"texts": TEXTS},
                     partners_csv(("ok", "Ok", "en"), ("later", "Later", "en"), ("bad", "Bad", "en")),
                     hook_url=hook_server.url)
    hook_server.script = {"+358-later": [503], "+358-bad": [400, 200]}
    hook_server.start()
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 1, "retry": 1, "failed": 1}
    outbox = by_id(cli_outbox(capsys, engine.root))
    ok, later, bad = (outbox[f"texts:{p}:1:nudge:1"] for p in ("ok", "later", "bad"))
    assert (ok["status"], ok["attempts"], ok["delivered_at"]) == ("sent", 1, T0)
    assert (later["status"], later["attempts"], later["next_attempt"], later["delivered_at"]) == (
        "queued", 1, "2026-07-01T10:01:00Z", None)
    assert "503" in later["last_error"]
    assert (bad["status"], bad["attempts"], bad["next_attempt"], bad["delivered_at"]) == ("failed", 1, None, None)
    assert bad["last_error"] == "HTTP 400: invalid phone number"

    # not due yet: no attempt
    report = engine.tick("2026-07-01T10:00:30Z")
    assert report.to_json()["delivery"] == {"sent": 0, "retry": 0, "failed": 0}
    assert len(hook_server.received) == 3

    # due: retried (and taken); the 400 is not tried again
    report = engine.tick("2026-07-01T10:01:00Z")
    assert report.to_json()["delivery"] == {"sent": 1, "retry": 0, "failed": 0}
    outbox = by_id(cli_outbox(capsys, engine.root))
    later = outbox["texts:later:1:nudge:1"]
    assert (later["status"], later["attempts"], later["delivered_at"]) == ("sent", 2, "2026-07-01T10:01:00Z")
    assert (outbox["texts:bad:1:nudge:1"]["status"], outbox["texts:bad:1:nudge:1"]["attempts"]) == ("failed", 1)
    engine.tick("2026-07-01T12:00:00Z")
    assert hook_server.keys() == Counter({"texts:ok:1:nudge:1": 1, "texts:later:1:nudge:1": 2,
                                          "texts:bad:1:nudge:1": 1})
    # the retried POST is the same request: same key, same body
    later_posts = [body for headers, body in hook_server.received if headers["idempotency-key"] == "texts:later:1:nudge:1"]
    assert later_posts[0] == later_posts[1] == record_of(later)


def test_webhook_down_keeps_sms_queued_and_delivers_them_once_it_is_back(tmp_path, make_engine, hook_server, capsys):
    root = workspace(tmp_path, {"texts": TEXTS}, partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")),
                     hook_url=hook_server.url)
    engine = make_engine(root, at=T0)
    ids = ["texts:p1:1:nudge:1", "texts:p2:1:nudge:1"]

    for i, (at, next_attempt) in enumerate((("2026-07-01T10:00:00Z", "2026-07-01T10:01:00Z"),
                                            ("2026-07-01T11:00:00Z", "2026-07-01T11:02:00Z"))):
        report = engine.tick(at)
        assert report.to_json()["delivery"] == {"sent": 0, "retry": 2, "failed": 0}
        outbox = cli_outbox(capsys, engine.root)
        assert [(m["id"], m["status"], m["attempts"], m["next_attempt"]) for m in outbox] == [
            (mid, "queued", i + 1, next_attempt) for mid in ids]
        assert all(m["last_error"] and "unreachable" in m["last_error"] for m in outbox)

    hook_server.start()
    report = engine.tick("2026-07-01T12:00:00Z")
    assert report.to_json()["delivery"] == {"sent": 2, "retry": 0, "failed": 0}
    outbox = cli_outbox(capsys, engine.root)
    assert [(m["id"], m["status"], m["attempts"], m["delivered_at"]) for m in outbox] == [
        (mid, "sent", 3, "2026-07-01T12:00:00Z") for mid in ids]
    engine.tick("2026-07-01T13:00:00Z")
    assert hook_server.keys() == Counter(dict.fromkeys(ids, 1))
    assert [body for _, body in sorted(hook_server.received, key=lambda r: r[1]["id"])] == [record_of(m) for m in outbox]


def test_smtp_sends_the_list_unsubscribe_headers_and_the_message_header(tmp_path, make_engine, smtp_server):
    """With web.base_url (SPEC §12): List-Unsubscribe (the signed link and the mailto) and
    List-Unsubscribe-Post on the wire, as in the outbox record's ``headers``, and the message id
    in X-Campaign-Message for ESP events."""
    root = workspace(tmp_path, {"welcome": WELCOME}, partners_csv(("p1", "Anna", "en")), smtp_port=smtp_server.port,
                     templates={"welcome.html.j2": WELCOME_HTML, "welcome.fi.html.j2": WELCOME_FI_HTML})
    with (root / "engine.yaml").open("a", encoding="utf-8") as settings:
        settings.write("web: {base_url: 'https://c.example', unsubscribe_mailto: leave@example.com}\n")
    smtp_server.start()
    engine = make_engine(root, at=T0)
    engine.tick(T0)
    (record,) = engine.outbox("email")
    msg = smtp_server.mailbox.by_id()[message_id(record["id"], SENDER)].message
    assert msg["List-Unsubscribe"] == record["headers"]["List-Unsubscribe"]
    assert msg["List-Unsubscribe"].startswith("<https://c.example/u/")
    assert msg["List-Unsubscribe"].endswith(", <mailto:leave@example.com?subject=unsubscribe>")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Campaign-Message"] == record["id"]
