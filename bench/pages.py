"""How long does each page of `engine serve` take with 100,000 enrollments?

    python bench/pages.py [--partners 100000] [--requests 15] [--keep DIR]

It builds a workspace of ``--partners`` partners and two campaigns: ``welcome`` (an `audience`
trigger: an email, then a 30-day wait, so every partner holds an active enrollment) and
``follow-up`` (members only: a branch, variants, a holdout and a goal), ticks once (everyone
enrolled, one email each through the file transport), starts a few partners in ``follow-up``,
and asks each page (and a partner's message center) ``--requests`` times from a logged-in
session, in the process (Starlette's TestClient: the server's time, without a network between). It prints, per page, the median and
the spread (min–max) of the server time, and the machine's load average at the start; the
budget is 200 ms a page (issue 16).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SECRET = b"bench-signing-key"
BUDGET_MS = 200

SETTINGS = """\
timezone: UTC
partners:
  fields: {name: string, email: string, tier: string, ok: bool, paid: bool}
consent: {email: partner.ok}
users:
  alice: {roles: [marketing]}
web:
  base_url: http://127.0.0.1:8080
"""
WELCOME = """\
name: Welcome
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email: {subject: "Hello {{ partner.name }}", body: "Hi. {{ unsubscribe_url }}"}
  - wait: 30d
  - id: later
    email: {subject: Later, body: "Later. {{ unsubscribe_url }}"}
"""
FOLLOW_UP = """\
name: Follow-up
audience:
  rulesets:
    gold: partner.tier == "gold"
holdout: 10%
goal: {when: partner.paid == true, within: 30d}
steps:
  - id: nudge
    email:
      subject: Pay by portal
      body: "Pay in the portal. {{ unsubscribe_url }}"
      variants:
        plain: {weight: 1}
        deadline: {weight: 1, subject: "Pay by Friday"}
  - wait: 2d
  - id: route
    branch:
      - {when: opened("nudge"), goto: thanks}
      - {else: reminder}
  - id: reminder
    email: {subject: Reminder, body: "A reminder. {{ unsubscribe_url }}"}
  - id: thanks
    email: {subject: Thanks, body: "Thanks. {{ unsubscribe_url }}"}
"""


def make_workspace(root: Path, partners: int) -> Path:
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(SETTINGS)
    (root / "campaigns" / "welcome.yaml").write_text(WELCOME)
    (root / "campaigns" / "follow-up.yaml").write_text(FOLLOW_UP)
    tiers = ("silver", "gold", "platinum")
    rows = "\n".join(f"p{n:06d},Partner {n},p{n}@example.com,{tiers[n % 3]},true,false" for n in range(partners))
    (root / "partners.csv").write_text(f"id,name,email,tier,ok,paid\n{rows}\n")
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=15, help="requests per page (default 15)")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it (reused when it exists)")
    args = parser.parse_args()
    os.environ.setdefault("ENGINE_SECRET", SECRET.decode())

    with warnings.catch_warnings():  # this Starlette asks for httpx2 beside its TestClient; httpx works
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from engine import apikeys, portal_links
    from engine.api import Engine
    from engine.clock import FixedClock
    from engine.links import Signer
    from engine.web.app import create_app

    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-pages-"))
    root = args.keep or scratch / "ws"
    clock = FixedClock("2026-07-01T09:00:00Z")
    if not (root / ".engine").exists():
        began = time.perf_counter()
        make_workspace(root, args.partners)
        with Engine.open(root, clock=clock) as engine:
            engine.tick()
            for n in range(1, 600, 3):  # a few hundred in the follow-up (gold partners)
                engine.start("follow-up", f"p{n:06d}", user="alice")
            engine.tick("2026-07-04T09:00:00Z")
        print(f"workspace: {args.partners:,} partners, ticked in {time.perf_counter() - began:.1f} s ({root})")
    with Engine.open(root, clock=clock) as engine:
        enrollments = sum(engine.store.count_people(c, None) for c in ("welcome", "follow-up"))
        with engine.store.transaction():
            key = apikeys.create(engine.store, "alice", clock.now())[1]
    print(f"{enrollments:,} enrollments; load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    app = create_app(root, Signer(SECRET), clock=FixedClock("2026-07-04T10:00:00Z"))
    pages = ["/campaigns", "/campaigns/welcome", f"/campaigns/welcome?page={enrollments // 200}",
             "/campaigns/follow-up", "/partners/p000001", f"/partners/p{args.partners - 1:06d}",
             f"/m/{portal_links.token(Signer(SECRET), 'p000001', clock.now() + timedelta(days=90))}?page=dashboard"]
    failed = False
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
        assert client.post("/login", data={"key": key, "csrf": token}, follow_redirects=False).status_code == 303
        print(f"{'page':<42} {'median':>9} {'min–max':>17}  (budget {BUDGET_MS} ms)")
        for page in pages:
            times = []
            for _ in range(args.requests + 1):  # the first warms the caches: not counted
                began = time.perf_counter()
                response = client.get(page)
                times.append((time.perf_counter() - began) * 1000)
                if response.status_code != 200:
                    raise SystemExit(f"{page}: {response.status_code} {response.text[:300]}")
            counted = times[1:]
            median = statistics.median(counted)
            failed |= median > BUDGET_MS
            shown = page if len(page) <= 42 else page[:30] + "…" + page[-11:]  # a message center token is long
            print(f"{shown:<42} {median:7.1f} ms {min(counted):7.1f}–{max(counted):.1f} ms"
                  f"{'  OVER BUDGET' if median > BUDGET_MS else ''}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
