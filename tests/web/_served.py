"""A workspace served over real HTTP on 127.0.0.1 for a test: uvicorn in a thread of the test's
process, the application with a fixed clock and no background tick (the test ticks), and an
httpx client."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from engine.api import Engine
from engine.clock import FixedClock
from engine.links import Signer
from engine.web.app import create_app

SECRET = b"test-signing-key"  # tests/conftest.py puts it in ENGINE_SECRET

ENGINE_YAML = """\
timezone: Europe/Helsinki
partners:
  fields: {{name: string, email: string, phone: string, supplier_emails: bool, sms_opt_in: bool}}
consent:
  email: partner.supplier_emails
  sms: partner.sms_opt_in
users:
  alice: {{roles: [marketing]}}
  bob: {{roles: [viewer]}}
  feed: {{roles: [events]}}
web:
  base_url: {base_url}
  unsubscribe_mailto: unsubscribe@example.com
"""

PARTNERS = """\
id,name,email,phone,supplier_emails,sms_opt_in
p1,Ann,ann@example.com,+358401,true,true
p2,Bo,bo@example.com,+358402,true,true
"""

WELCOME = """\
<html><body><p>Hi {{ partner.name }}, see <a href="https://portal.example.com/deals?a=1&amp;b=2">your deals</a>.</p>
<p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p></body></html>
"""

CAMPAIGN = """\
name: Welcome
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: welcome
    email: {subject: "Welcome", template: welcome.html.j2}
  - wait: 1d
  - id: again
    email: {subject: "Still there?", body: "Hello again. Unsubscribe: {{ unsubscribe_url }}"}
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(tmp_path: Path, port: int, campaigns: dict[str, str] | None = None) -> Path:
    root = tmp_path / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "engine.yaml").write_text(ENGINE_YAML.format(base_url=f"http://127.0.0.1:{port}"), encoding="utf-8")
    (root / "partners.csv").write_text(PARTNERS, encoding="utf-8")
    (root / "templates" / "welcome.html.j2").write_text(WELCOME, encoding="utf-8")
    for cid, text in (campaigns or {"welcome": CAMPAIGN}).items():
        (root / "campaigns" / f"{cid}.yaml").write_text(text, encoding="utf-8")
    return root


class Served:
    def __init__(self, root: Path, port: int, clock: FixedClock, store: str | None):
        self.root, self.port, self.clock, self.store_url = root, port, clock, store
        self.url = f"http://127.0.0.1:{port}"
        self.engine = Engine.open(root, store=store, clock=clock)
        self.client = httpx.Client(base_url=self.url, timeout=10, follow_redirects=False)

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.client.post(path, **kwargs)

    def api(self, method: str, path: str, key: str | None, **kwargs) -> httpx.Response:
        headers = {**kwargs.pop("headers", {}), **({"Authorization": f"Bearer {key}"} if key else {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def path_of(self, url: str) -> str:
        assert url.startswith(self.url), url
        return url[len(self.url):]


@contextmanager
def served(tmp_path: Path, store: str | None, at: str = "2026-07-01T09:00", campaigns: dict[str, str] | None = None
           ) -> Iterator[Served]:
    port = free_port()
    root = workspace(tmp_path, port, campaigns)
    clock = FixedClock(at)
    app = create_app(root, Signer(SECRET), store=store, clock=clock)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    site = Served(root, port, clock, store)
    try:
        yield site
    finally:
        site.client.close()
        server.should_exit = True
        thread.join(timeout=20)
        site.engine.close()
