"""Email attachments (issue 12): ``attachments: [files/price-list.pdf]`` on an email step.

``engine check`` reports each bad path at its own line and column (missing, outside the
workspace, a link out of it, hidden, the partner source, too big alone or together, on an SMS
step) with exit code 1; a tick records each file with the message (path, size, sha256, content
type), the file outbox lists them, a real SMTP server on loopback (aiosmtpd) receives a
``multipart/mixed`` whose attachment bytes are the file's, and a file changed or removed
between the step and the hand-over fails that message alone. Workspaces are built like those
of test_transports.py (its helpers), times are UTC.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest

from campaigns.attachments import MAX_BYTES, AttachmentError, content_type, describe, read_attachment
from campaigns.fmt import format_campaign
from campaigns.jsonschema import campaign_schema
from engine.channels.smtp import message_id
from engine.cli import main
from tests.engine.test_transports import (
    SENDER,
    T0,
    HookServer,
    SmtpServer,
    by_id,
    campaign,
    cli_outbox,
    partners_csv,
    record_of,
    text_of,
    workspace,
)

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
CSV = b"product,price\nwidget,10\n"
LATER = "2026-07-01T11:00:00Z"


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    yield server
    server.stop()


@pytest.fixture
def hook_server():
    server = HookServer()
    yield server
    server.stop()


def files(root: Path, contents: dict[str, bytes]) -> None:
    for name, data in contents.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def described(steps: str) -> str:
    """A campaign the launch checklist has nothing against (it has a description)."""
    return campaign(steps).replace("name: Test\n", "name: Test\ndescription: Attachments\n", 1)


def check_json(capsys, root: Path) -> tuple[int, list[tuple[str, int, int, str]]]:
    """``engine check --json``: the exit code and each error as (file name, line, col, message)."""
    code = main(["check", "--json", str(root)])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    errors = [(Path(e["path"]).name, e["line"], e["col"], e["message"]) for e in report["errors"]
              if e["severity"] == "error"]
    return code, errors


PRICES = described("""\
  - id: prices
    email:
      subject: "Prices for {{ partner.name }}"
      body: "Attached, {{ partner.name }}."
      attachments: [files/price-list.pdf, files/prices.csv]
      translations:
        fi: {subject: "Hinnat: {{ partner.name }}", body: "Liitteenä, {{ partner.name }}."}
""")

FILE_ENGINE_YAML = """\
timezone: UTC
partners:
  fields: {name: string, email: string, phone: string, language: string, ok: bool}
consent: {email: partner.ok, sms: partner.ok}
"""


# --- engine check ------------------------------------------------------------------------------


@pytest.mark.no_store
def test_check_reports_each_bad_attachment_at_its_line_and_column_with_exit_1(tmp_path, capsys):
    root = workspace(tmp_path, {"bad": described("""\
  - id: many
    email:
      subject: S
      body: B
      attachments:
        - files/price-list.pdf
        - files/price-lst.pdf
        - ../outside.pdf
        - /etc/hostname
        - files/escape.pdf
        - files/huge.bin
        - .engine/state.db
        - partners.csv
        - files
        - files/price-list.pdf
  - id: text
    sms:
      text: Hi
      attachments: [files/price-list.pdf]
""")}, partners_csv(("p1", "Anna", "en")))
    files(root, {"files/price-list.pdf": PDF})
    (tmp_path / "outside.pdf").write_bytes(PDF)
    (root / "files" / "escape.pdf").symlink_to(tmp_path / "outside.pdf")  # a link out of the workspace
    with (root / "files" / "huge.bin").open("wb") as f:
        f.truncate(MAX_BYTES + 1)  # one byte over (sparse: nothing written)

    code, errors = check_json(capsys, root)
    assert code == 1
    limit = "at most 10 MB (10,485,760 bytes) per message, all attachments together"
    assert errors == [
        ("bad.yaml", 15, 11, ("unknown attachment 'files/price-lst.pdf' (no such file in the workspace); "
                              "did you mean 'files/price-list.pdf'?")),
        ("bad.yaml", 16, 11, "attachment '../outside.pdf' is outside the workspace: name a file inside it"),
        ("bad.yaml", 17, 11, ("attachment '/etc/hostname' must be a path relative to the workspace, such as "
                              "files/price-list.pdf")),
        ("bad.yaml", 18, 11, ("attachment 'files/escape.pdf' resolves outside the workspace (a link?): it would not "
                              "be sent; put the file itself in the workspace")),
        ("bad.yaml", 19, 11, (f"attachment 'files/huge.bin' is 10.5 MB (10,485,761 bytes), more than an email may "
                              f"carry: {limit}")),
        ("bad.yaml", 20, 11, ("attachment '.engine/state.db' is hidden (.engine/, .git/ and dotfiles hold state and "
                              "secrets): attachments never come from there")),
        ("bad.yaml", 21, 11, ("attachment 'partners.csv' is the workspace's partner source (every partner's record): "
                              "it is never attached")),
        ("bad.yaml", 22, 11, "attachment 'files' is not a regular file"),
        ("bad.yaml", 23, 11, "attachment 'files/price-list.pdf' is listed twice"),
        ("bad.yaml", 27, 7, "unknown key 'attachments'"),  # an SMS has no attachments
    ]


@pytest.mark.no_store
def test_check_limits_the_total_per_message_and_the_number_of_files(tmp_path, capsys):
    root = workspace(tmp_path, {"big": described("""\
  - id: two
    email:
      subject: S
      body: B
      attachments: [files/a.bin, files/b.bin]
  - id: eleven
    email:
      subject: S
      body: B
      attachments: [f/1, f/2, f/3, f/4, f/5, f/6, f/7, f/8, f/9, f/10, f/11]
""")}, partners_csv(("p1", "Anna", "en")))
    files(root, {f"f/{n}": b"x" for n in range(1, 12)})
    for name in ("a.bin", "b.bin"):
        (root / "files").mkdir(exist_ok=True)
        with (root / "files" / name).open("wb") as f:
            f.truncate(6_000_000)  # each within the limit, together over it

    code, errors = check_json(capsys, root)
    assert code == 1
    assert errors == [
        ("big.yaml", 13, 7, ("the attachments of this email are 12.0 MB (12,000,000 bytes), more than an email may "
                             "carry: at most 10 MB (10,485,760 bytes) per message, all attachments together")),
        ("big.yaml", 18, 7, "at most 10 attachments per email, this one has 11"),
    ]


@pytest.mark.no_store
def test_a_good_list_checks_clean_and_schema_and_fmt_know_the_key(tmp_path, capsys):
    root = workspace(tmp_path, {"prices": PRICES}, partners_csv(("p1", "Anna", "en")))
    files(root, {"files/price-list.pdf": PDF, "files/prices.csv": CSV})
    assert check_json(capsys, root) == (0, [])

    email = campaign_schema()["$defs"]["Email"]["properties"]
    assert email["attachments"]["type"] == "array" and email["attachments"]["items"] == {"type": "string"}
    assert "10 MB" in email["attachments"]["description"]
    assert main(["schema"]) == 0 and '"attachments"' in capsys.readouterr()[0]

    # fmt: after the body, before the translations, list and comment kept
    text = ("name: T\nsteps:\n  - id: a\n    email:\n      attachments:\n        - files/a.pdf  # prices\n"
            "      translations: {fi: {subject: X}}\n      subject: S\n      body: B\n")
    assert format_campaign(text) == ("name: T\nsteps:\n  - id: a\n    email:\n      subject: S\n      body: B\n"
                                     "      attachments:\n        - files/a.pdf  # prices\n"
                                     "      translations: {fi: {subject: X}}\n")


# --- the file outbox ---------------------------------------------------------------------------


def test_a_tick_with_the_file_transport_lists_the_attachments_with_every_language(tmp_path, make_engine):
    root = workspace(tmp_path, {"prices": PRICES}, partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")))
    (root / "engine.yaml").write_text(FILE_ENGINE_YAML, encoding="utf-8")
    files(root, {"files/price-list.pdf": PDF, "files/prices.csv": CSV})
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 2, "retry": 0, "failed": 0}
    attached = [{"path": "files/price-list.pdf", "size": len(PDF), "sha256": sha(PDF), "content_type": "application/pdf"},
                {"path": "files/prices.csv", "size": len(CSV), "sha256": sha(CSV), "content_type": "text/csv"}]
    lines = [json.loads(line) for line in (engine.root / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()]
    assert [(m["id"], m["language"], m["attachments"]) for m in lines] == [
        ("prices:p1:1:prices:1", "default", attached), ("prices:p2:1:prices:1", "fi", attached)]
    assert [record_of(m) for m in engine.outbox("email")] == lines  # what the store recorded is what was written


# --- SMTP: the files as MIME parts -------------------------------------------------------------


def test_smtp_server_receives_a_multipart_message_whose_attachments_are_the_files(tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"prices": PRICES}, partners_csv(("p1", "Anna", "en"), ("p2", "Pekka", "fi")),
                     smtp_port=smtp_server.port)
    files(root, {"files/price-list.pdf": PDF, "files/prices.csv": CSV})
    smtp_server.start()
    engine = make_engine(root, at=T0)

    report = engine.tick(T0)
    assert report.to_json()["delivery"] == {"sent": 2, "retry": 0, "failed": 0}
    received = smtp_server.mailbox.by_id()
    for mid, body in (("prices:p1:1:prices:1", "Attached, Anna."), ("prices:p2:1:prices:1", "Liitteenä, Pekka.")):
        msg = received[message_id(mid, SENDER)].message
        assert msg.get_content_type() == "multipart/mixed"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "application/pdf", "text/csv"]
        assert text_of(parts[0]) == body
        assert [(p.get_content_disposition(), p.get_filename()) for p in parts[1:]] == [
            ("attachment", "price-list.pdf"), ("attachment", "prices.csv")]
        assert parts[1].get_content() == PDF  # the bytes of the file, exactly
        assert parts[2].get_payload(decode=True) == CSV


def test_an_html_email_keeps_its_alternative_inside_the_mixed_message(tmp_path, make_engine, smtp_server):
    root = workspace(tmp_path, {"welcome": campaign("""\
  - id: hello
    email: {subject: Hi, template: welcome.html, attachments: [files/price-list.pdf]}
""")}, partners_csv(("p1", "Anna", "en")), smtp_port=smtp_server.port,
        templates={"welcome.html": "<p>Hello <b>{{ partner.name }}</b></p>\n"})
    files(root, {"files/price-list.pdf": PDF})
    smtp_server.start()
    engine = make_engine(root, at=T0)
    engine.tick(T0)

    (envelope,) = smtp_server.mailbox.received
    msg = envelope.message
    assert msg.get_content_type() == "multipart/mixed"
    alternative, pdf = msg.iter_parts()
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]
    assert (pdf.get_filename(), pdf.get_content()) == ("price-list.pdf", PDF)


def test_a_file_changed_or_removed_before_the_hand_over_fails_that_message_only(
        tmp_path, make_engine, smtp_server, capsys):
    """The server is down at the first tick (the messages wait); then one file changes and
    another is removed: those two messages fail with the reason, the third goes out as made."""
    root = workspace(tmp_path, {"prices": campaign("""\
  - id: changed
    email: {subject: C, body: B, attachments: [files/changed.pdf]}
  - id: removed
    email: {subject: R, body: B, attachments: [files/removed.pdf]}
  - id: kept
    email: {subject: K, body: B, attachments: [files/kept.pdf]}
""")}, partners_csv(("p1", "Anna", "en")), smtp_port=smtp_server.port)
    files(root, {"files/changed.pdf": PDF, "files/removed.pdf": PDF, "files/kept.pdf": PDF})
    engine = make_engine(root, at=T0)

    assert engine.tick(T0).to_json()["delivery"] == {"sent": 0, "retry": 3, "failed": 0}
    (engine.root / "files" / "changed.pdf").write_bytes(PDF.replace(b"Catalog", b"Katalog"))
    (engine.root / "files" / "removed.pdf").unlink()
    smtp_server.start()

    report = engine.tick(LATER)
    assert report.to_json()["delivery"] == {"sent": 1, "retry": 0, "failed": 2}
    outbox = by_id(cli_outbox(capsys, engine.root))
    changed, removed, kept = (outbox[f"prices:p1:1:{step}:1"] for step in ("changed", "removed", "kept"))
    assert (kept["status"], kept["delivered_at"], kept["last_error"]) == ("sent", LATER, None)
    assert (changed["status"], removed["status"]) == ("failed", "failed")
    assert changed["last_error"].startswith(
        f"cannot attach: attachment 'files/changed.pdf' changed after the message was made (recorded {len(PDF)} "
        f"bytes, sha256 {sha(PDF)[:12]}…; now {len(PDF)} bytes, sha256 ")
    assert changed["last_error"].endswith("): not sent, so that nothing else goes out in its place")
    assert removed["last_error"] == ("cannot attach: unknown attachment 'files/removed.pdf' "
                                     "(no such file in the workspace)")
    assert smtp_server.mailbox.ids() == Counter({message_id("prices:p1:1:kept:1", SENDER): 1})
    engine.tick("2026-07-01T12:00:00Z")  # failed is final: nothing is tried again
    assert len(smtp_server.mailbox.received) == 1


def test_an_email_by_webhook_posts_the_attachment_metadata_not_the_content(tmp_path, make_engine, hook_server):
    root = workspace(tmp_path, {"prices": PRICES}, partners_csv(("p1", "Anna", "en")))
    (root / "engine.yaml").write_text(FILE_ENGINE_YAML + f'channels:\n  email: {{transport: webhook, url: "{hook_server.url}"}}\n',
                                      encoding="utf-8")
    files(root, {"files/price-list.pdf": PDF, "files/prices.csv": CSV})
    hook_server.start()
    engine = make_engine(root, at=T0)
    engine.tick(T0)

    ((_, body),) = hook_server.received
    assert [a["path"] for a in body["attachments"]] == ["files/price-list.pdf", "files/prices.csv"]
    assert body["attachments"][0] == {"path": "files/price-list.pdf", "size": len(PDF), "sha256": sha(PDF),
                                      "content_type": "application/pdf"}
    assert b"%PDF" not in json.dumps(body).encode()


# --- the rules, unit by unit --------------------------------------------------------------------


@pytest.mark.no_store
def test_describe_and_read_agree_and_refuse_what_changed(tmp_path):
    files(tmp_path, {"files/a.pdf": PDF, "files/noext": b"?", "files/mail.eml": b"From: x\n", "files/x.tar.gz": b"z"})
    (entry,) = describe(tmp_path, ["files/a.pdf"])
    assert entry == {"path": "files/a.pdf", "size": len(PDF), "sha256": sha(PDF), "content_type": "application/pdf"}
    assert read_attachment(tmp_path, entry) == PDF
    assert [content_type(n) for n in ("files/noext", "files/mail.eml", "files/x.tar.gz", "a.PNG")] == [
        "application/octet-stream", "application/octet-stream", "application/octet-stream", "image/png"]

    (tmp_path / "files" / "a.pdf").write_bytes(PDF + b"more")
    with pytest.raises(AttachmentError, match="changed after the message was made"):
        read_attachment(tmp_path, entry)
    assert describe(tmp_path, ["files/a.pdf"])[0]["sha256"] == sha(PDF + b"more")  # a new version, hashed again
    with pytest.raises(AttachmentError, match="outside the workspace"):
        read_attachment(tmp_path, {**entry, "path": "../a.pdf"})
    with pytest.raises(AttachmentError, match="unknown attachment"):
        describe(tmp_path, ["files/gone.pdf"])


def test_a_file_gone_when_the_step_runs_fails_the_step_for_that_partner(tmp_path, make_engine, monkeypatch, capsys):
    """Checked at load, gone a moment later (a deploy in progress): the step fails with
    ``attachment_error`` and the reason, and no message is made."""
    from engine import steps

    root = workspace(tmp_path, {"prices": PRICES}, partners_csv(("p1", "Anna", "en")))
    (root / "engine.yaml").write_text(FILE_ENGINE_YAML, encoding="utf-8")
    files(root, {"files/price-list.pdf": PDF, "files/prices.csv": CSV})
    engine = make_engine(root, at=T0)
    real = steps.describe

    def vanishing(workspace_root, names, settings=None):
        (workspace_root / "files" / "prices.csv").unlink(missing_ok=True)
        return real(workspace_root, names, settings)

    monkeypatch.setattr(steps, "describe", vanishing)
    engine.tick(T0)
    assert engine.outbox("email") == []
    assert main(["-w", str(engine.root), "steps", "prices", "--partner", "p1", "--json"]) == 0
    (step,) = json.loads(capsys.readouterr()[0])["steps"]
    assert (step["step"], step["status"], step["reason"], step["error"]) == (
        "prices", "failed", "attachment_error", "unknown attachment 'files/prices.csv' (no such file in the workspace)")
