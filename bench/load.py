"""How long does `engine check` take on a big workspace?

Generates a workspace of 1,000 campaign files (deterministically, in a temporary directory),
then times loading and checking it in-process and through the CLI. Run:

    python bench/load.py [--campaigns 1000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from campaigns.workspace import load_workspace  # noqa: E402

SETTINGS = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    language: string
    country: string
    tier: {enum: [silver, gold, platinum]}
    revenue: number
    joined_at: date
    last_login: datetime
    tags: list[string]
    supplier_emails: bool
    sms_opt_in: bool
    role: string
    active: bool
    account_manager: string
consent:
  email: partner.supplier_emails
  sms: partner.sms_opt_in
exclude: partner.role in ["sales_rep", "default_lead_owner"]
"""

CAMPAIGN = """\
name: Campaign {n}
description: Generated campaign number {n} for the load benchmark.
owner: bench@example.com
active: true
window: {{start: 2026-07-01, end: 2026-12-31}}
audience:
  rulesets:
    main: partner.tier in ["gold", "platinum"] and partner.revenue >= {revenue} and partner.country == "{country}"
    recent: days_since(partner.joined_at) < {days} and "vip" in partner.tags
  exclude: partner.active == false
trigger:
  {trigger}
reenroll: after_exit
exit_when: partner.revenue > {exit}
steps:
  - id: welcome
    email:
      subject: "Welcome, {{{{ partner.name }}}}"
      template: welcome.html.j2
      translations:
        fi: {{subject: "Tervetuloa, {{{{ partner.name }}}}", template: welcome.html.j2}}
  - wait: 3d
  - id: call
    when: not opened("welcome")
    activity:
      kind: call
      assignee: "{{{{ partner.account_manager }}}}"
      subject: Intro call
      responses:
        interested: {{result: successful}}
        declined: {{result: unsuccessful}}
  - wait: {{until: "09:00"}}
  - id: nudge
    sms: {{text: "Hi {{{{ partner.name }}}}, see you at the summit?"}}
"""

TRIGGERS = ["audience: true", "cron: \"0 9 * * MON\"", "at: 2026-09-01T09:00", "event: invoice.payment_failed\n  when: event.amount > 100"]


def make_workspace(root: Path, count: int) -> None:
    rng = random.Random(7)
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "engine.yaml").write_text(SETTINGS)
    (root / "templates" / "welcome.html.j2").write_text("<p>Hello {{ partner.name }}, welcome aboard.</p>\n")
    rows = ["id,name,email,country,tier,revenue"] + [f"p{i},Partner {i},p{i}@example.com,FI,gold,{i * 100}" for i in range(50)]
    (root / "partners.csv").write_text("\n".join(rows) + "\n")
    for n in range(count):
        text = CAMPAIGN.format(
            n=n,
            revenue=rng.randrange(1000, 100000),
            country=rng.choice(["FI", "SE", "DE"]),
            days=rng.randrange(10, 400),
            exit=rng.randrange(10**5, 10**6),
            trigger=rng.choice(TRIGGERS),
        )
        (root / "campaigns" / f"campaign-{n:04d}.yaml").write_text(text)


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--campaigns", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "workspace"
        make_workspace(root, args.campaigns)
        workspace = load_workspace(root)
        assert workspace.ok, [d.headline() for d in workspace.diagnostics[:5]]
        assert len(workspace.campaigns) == args.campaigns
        in_process = timed(lambda: load_workspace(root), args.repeat)
        command = [sys.executable, "-m", "engine", "check", str(root)]
        cli = timed(lambda: subprocess.run(command, check=True, capture_output=True), args.repeat)
    print(f"Loading and checking {args.campaigns} campaign files (median of {args.repeat} runs)")
    print(f"{'':24}{'median':>10}{'min':>10}{'max':>10}")
    for label, times in (("in-process", in_process), ("engine check (CLI)", cli)):
        print(f"{label:24}{statistics.median(times):>9.3f}s{min(times):>9.3f}s{max(times):>9.3f}s")
    print("target: under 3 s")


if __name__ == "__main__":
    main()
