"""Receiving servers on 127.0.0.1 that count every receipt, for the delivery kill tests.

* :class:`SmtpReceiver`: an aiosmtpd server (``Controller``, its own thread and event loop) that
  accepts every message and keeps, per DATA, the ``Message-ID`` header and the envelope
  recipients;
* :class:`HookReceiver`: a stdlib HTTP server (a thread per request) that answers every POST
  with 200 and keeps its ``Idempotency-Key`` header and JSON body.

Both keep raw receipts, duplicates included (a receipt is counted once the server has it,
before it answers: what a killed client may not have heard about). They live in the test's
process, so they outlast the worker processes the test kills and restarts.
"""

from __future__ import annotations

import email
import json
import socket
import threading
from collections import Counter
from dataclasses import dataclass
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Mail:
    message_id: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    subject: str
    campaign: str
    step: str


class _Handler:
    """aiosmtpd handler: every DATA accepted and kept."""

    def __init__(self, receiver: SmtpReceiver):
        self.receiver = receiver

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content, policy=policy.default)
        header = {name: str(message[name] or "").strip() for name in ("Message-ID", "Subject", "X-Campaign",
                                                                       "X-Campaign-Step")}
        # a long Message-ID is folded onto a continuation line: its leading space is not part of it
        mail = Mail(header["Message-ID"], envelope.mail_from, tuple(envelope.rcpt_tos), header["Subject"],
                    header["X-Campaign"], header["X-Campaign-Step"])
        with self.receiver.lock:
            self.receiver.received.append(mail)
        return "250 Message accepted for delivery"


class SmtpReceiver:
    """A mail server on a free loopback port that accepts everything and keeps each receipt."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Mail] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    def start(self) -> SmtpReceiver:
        self.controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port,
                                     server_hostname="localhost", ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def receipts(self) -> list[Mail]:
        with self.lock:
            return list(self.received)

    def ids(self) -> Counter:
        """Message-ID header → how many times the server got it."""
        return Counter(mail.message_id for mail in self.receipts())


@dataclass(frozen=True)
class Post:
    key: str | None  # the Idempotency-Key header
    body: dict


class HookReceiver:
    """An SMS provider on a free loopback port: every POST answered 200 and kept."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[Post] = []
        self.lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sms"

    def start(self) -> HookReceiver:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    body = json.loads(data.decode("utf-8"))
                except ValueError:
                    body = {"unreadable": data.decode("utf-8", "replace")}
                with hook.lock:
                    hook.received.append(Post(self.headers.get("Idempotency-Key"), body))
                answer = b'{"ok": true}'
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed before it read the answer: the POST still counts

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.httpd = None

    def receipts(self) -> list[Post]:
        with self.lock:
            return list(self.received)

    def ids(self) -> Counter:
        """Idempotency-Key → how many POSTs carried it."""
        return Counter(post.key for post in self.receipts())


class Receivers:
    """Both servers, started; :meth:`stop` when done (a context manager too)."""

    def __init__(self) -> None:
        self.smtp = SmtpReceiver().start()
        try:
            self.hook = HookReceiver().start()
        except BaseException:
            self.smtp.stop()
            raise

    def stop(self) -> None:
        try:
            self.hook.stop()
        finally:
            self.smtp.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


ENGINE_CHANNELS = """\
channels:
  email: {{transport: smtp, host: 127.0.0.1, port: {smtp_port}, from: {sender}, starttls: false}}
  sms: {{transport: webhook, url: "{hook_url}"}}
"""


def route_to(engine_yaml: str, receivers: Receivers, sender: str) -> str:
    """engine.yaml's text with its ``channels:`` block replaced: email over SMTP, SMS over the
    webhook, to these receivers (the rest of the settings kept as they are)."""
    lines = engine_yaml.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("channels:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip() and not lines[i][0].isspace()
                and not lines[i].startswith("#")), len(lines))
    block = ENGINE_CHANNELS.format(smtp_port=receivers.smtp.port, sender=sender, hook_url=receivers.hook.url)
    return "".join(lines[:start]) + block + "".join(lines[end:])
