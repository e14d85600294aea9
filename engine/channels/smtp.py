"""Email through a mail server (smtplib): one connection per batch, STARTTLS and login when
configured, a stable ``Message-ID`` so that a message sent twice (at-least-once delivery) is
recognisably the same message.

A message is a ``multipart/alternative`` with a text and an HTML part when its body is HTML
(a `.html` template), plain text otherwise. Its ``Date`` is the logical time it was sent as of.
BCC addresses are envelope recipients only: they get the message, nobody sees them.

Attachments (``record["attachments"]``, campaigns.attachments) make it a ``multipart/mixed``:
the body (text, or the text/HTML alternative) first, then each file as a part of its recorded
content type, named by its base name. The files are read from the workspace when the message is
handed over; one that is gone or no longer has the recorded size and sha256 fails that message
(never sent with other content), and the batch goes on.

What happens to each message: accepted → sent; refused with a 5xx reply (no such mailbox,
policy) → failed with the server's reason; anything temporary (connection refused or lost, a 4xx
reply, a timeout) → retry, and the rest of the batch waits for the next attempt too. Outcomes are
yielded one message at a time (see :mod:`engine.channels`).
"""

from __future__ import annotations

import base64
import os
import re
import smtplib
import ssl
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8
from email.utils import formatdate
from html.parser import HTMLParser
from pathlib import Path, PurePosixPath
from typing import Iterator, Mapping, Sequence

from campaigns.attachments import AttachmentError, read_attachment
from campaigns.shapes import Channel

from . import FAILED, RETRY, SENT, Outcome, Outgoing

TIMEOUT = 30
MESSAGE_HEADER = "X-Campaign-Message"  # the engine message id, for ESP events that quote headers
READABLE = 60  # characters of the engine id shown in a Message-ID


class SmtpTransport:
    idempotent, external = False, True

    def __init__(self, channel: Channel, root: Path | None = None):
        self.channel = channel
        self.sender = channel.from_ or "campaign-engine@localhost"
        self.root = root  # the workspace: where attachments are read from

    def send(self, batch: Sequence[Outgoing]) -> Iterator[Outcome]:
        """One connection for the batch, one SMTP transaction per message."""
        try:
            server = smtplib.SMTP(self.channel.host or "localhost", self.channel.port or 25, timeout=TIMEOUT)
        except (OSError, smtplib.SMTPException) as exc:  # the server is down
            yield from _all_wait(batch, _reason(exc))
            return
        with server:
            for n, message in enumerate(batch):
                try:
                    if n == 0:
                        self._hello(server)
                    outcome = self._one(server, message)
                except (OSError, smtplib.SMTPException) as exc:  # the connection went away
                    yield from _all_wait(batch[n:], _reason(exc))
                    return
                yield outcome

    def _hello(self, server: smtplib.SMTP) -> None:
        server.ehlo()
        if self.channel.starttls:
            server.starttls(context=ssl.create_default_context())
            server.ehlo()
        user = os.environ.get(self.channel.username_env) if self.channel.username_env else None
        password = os.environ.get(self.channel.password_env) if self.channel.password_env else None
        if user:
            server.login(user, password or "")

    def _one(self, server: smtplib.SMTP, message: Outgoing) -> Outcome:
        """One message in its own SMTP transaction. The partner's address is asked first: when
        it is refused nothing is sent (not even the BCC copy), so a retried message reaches
        every recipient exactly once."""
        to = message.record["to"]
        bcc = bcc_list(message.record.get("bcc"))
        unicode = not all(address.isascii() for address in [self.sender, to, *bcc])
        if unicode and not server.has_extn("smtputf8"):
            return Outcome(message.id, FAILED, "the mail server does not offer SMTPUTF8, which an address with non-ASCII characters needs")
        try:
            files = self._attachments(message.record)
        except AttachmentError as exc:  # gone or changed since the step ran: never send something else
            return Outcome(message.id, FAILED, f"cannot attach: {exc}")
        try:
            data = build_message(message, self.sender, files).as_bytes(policy=SMTPUTF8 if unicode else SMTP)
        except (ValueError, TypeError) as exc:  # e.g. a line break inside a header value
            return Outcome(message.id, FAILED, f"cannot build the message: {exc}")
        try:
            code, reply = server.mail(self.sender, ["SMTPUTF8", "BODY=8BITMIME"] if unicode else [])
            if code != 250:
                return self._abandon(server, message, code, reply)
            code, reply = server.rcpt(to)
            if code not in (250, 251):
                return self._abandon(server, message, code, reply, to)
            for address in bcc:  # a refused BCC address does not stop the message
                server.rcpt(address)
            code, reply = server.data(data)
            if code != 250:
                return self._abandon(server, message, code, reply)
        except smtplib.SMTPServerDisconnected:
            raise  # the connection is gone: the whole batch waits (see send)
        except smtplib.SMTPResponseException as exc:
            return self._abandon(server, message, exc.smtp_code, exc.smtp_error)
        return Outcome(message.id, SENT)

    def _attachments(self, record: Mapping) -> list[tuple[Mapping, bytes]]:
        """Each recorded attachment with its bytes, as recorded (AttachmentError otherwise)."""
        entries = record.get("attachments") or []
        if entries and self.root is None:
            raise AttachmentError("this transport was given no workspace to read attachments from")
        return [(entry, read_attachment(self.root, entry)) for entry in entries]  # type: ignore[arg-type]

    def _abandon(self, server: smtplib.SMTP, message: Outgoing, code: int, reply: bytes | str,
                 address: str | None = None) -> Outcome:
        try:
            server.rset()
        except smtplib.SMTPException:
            pass
        status = FAILED if 500 <= code < 600 else RETRY
        where = f"{address}: " if address else ""
        return Outcome(message.id, status, f"{where}{code} {_text(reply)}")


def build_message(message: Outgoing, sender: str, files: Sequence[tuple[Mapping, bytes]] = ()) -> EmailMessage:
    """The message as it goes out; ``files``: each attachment's record and bytes."""
    record = message.record
    email = EmailMessage()
    email["From"] = sender
    email["To"] = record["to"]
    email["Subject"] = record.get("subject") or ""
    email["Message-ID"] = message_id(message.id, sender)
    email["Date"] = formatdate(datetime.fromisoformat(record["at"]).timestamp(), usegmt=True)
    email["X-Campaign"] = record["campaign"]
    email["X-Campaign-Step"] = record["step"]
    email[MESSAGE_HEADER] = message.id
    for name, value in (record.get("headers") or {}).items():  # List-Unsubscribe, ... (engine.links)
        email[name] = value
    body = record.get("body") or ""
    if message.html:
        email.set_content(html_to_text(body))
        email.add_alternative(body, subtype="html")
    else:
        email.set_content(body)
    for entry, content in files:
        maintype, _, subtype = str(entry.get("content_type") or "application/octet-stream").partition("/")
        email.add_attachment(content, maintype=maintype, subtype=subtype or "octet-stream",
                             filename=PurePosixPath(entry["path"]).name)
    return email


def message_id(engine_id: str, sender: str) -> str:
    """``<readable.part.ENCODED@domain>``: the same engine id always gives the same header, a
    person reading a mail log sees which message it was, and :func:`engine_id_of` gets the
    engine id back from the header that an ESP's event quotes (the last part is the id itself,
    base64url, so that nothing has to be looked up)."""
    readable = re.sub(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+", ".", engine_id).strip(".")[:READABLE]
    encoded = base64.urlsafe_b64encode(engine_id.encode()).decode().rstrip("=")
    domain = sender.rpartition("@")[2] or "campaign-engine.local"
    return f"<{readable}.{encoded}@{domain}>"


def engine_id_of(header: str) -> str | None:
    """The engine message id inside a ``Message-ID`` this engine made, else None."""
    local = header.strip().removeprefix("<").removesuffix(">").rpartition("@")[0]
    encoded = local.rpartition(".")[2]
    if not encoded or not re.fullmatch(r"[A-Za-z0-9_-]+", encoded):
        return None
    try:
        engine_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return engine_id if message_id(engine_id, "x@" + header.rpartition("@")[2].rstrip(">")) == header.strip() else None


def bcc_list(bcc: str | list[str] | None) -> list[str]:
    if not bcc:
        return []
    return [bcc] if isinstance(bcc, str) else list(bcc)


class _Text(HTMLParser):
    """The readable text of an HTML body, for the text part."""

    BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = [" ".join(line.split()) for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def _all_wait(messages: Sequence[Outgoing], reason: str) -> Iterator[Outcome]:
    return (Outcome(m.id, RETRY, reason) for m in messages)


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}".rstrip(": ")
