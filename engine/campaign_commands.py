"""Commands of the partner campaign list and the campaign's target group beyond starting and
stopping one enrollment: who is in a campaign (``members``), where a partner can still be
started (``startable``), and running a campaign's trigger on demand (``execute``)."""

from __future__ import annotations

import argparse

from .commands import logical_time, opened, print_json, table
from .console import OK
from .errors import UsageError

def cmd_members(args: argparse.Namespace) -> int:
    """The campaign's members and enrollees, a page at a time."""
    if args.page < 1 or not 1 <= (args.per_page or 1) <= 10_000:
        raise UsageError("--page counts from 1 and --per-page is 1 to 10000")
    with opened(args) as engine:
        data = engine.members(args.campaign, status=args.status, page=args.page, per_page=args.per_page)
    if args.json:
        print_json(data)
        return OK
    which = f" with status {args.status}" if args.status else ""
    print(f"{data['campaign']}: {data['total']} members and enrollees{which}, page {data['page']} of {data['pages']}")
    table(("partner", "member", "status", "reason", "origin", "#", "started_at", "next_step", "executed"),
           [(m["partner"], m["member_origin"] or "no", m["status"], m["reason"], m["origin"], m["number"],
             m["started_at"], m["next_step"], ", ".join(m["executed"]) or None) for m in data["members"]])
    if data["page"] < data["pages"]:
        print(f"… --page {data['page'] + 1} for the next {data['per_page']}")
    return OK


def cmd_startable(args: argparse.Namespace) -> int:
    """The campaigns the partner can be started in now, and why not the others."""
    with opened(args) as engine:
        found = engine.startable(args.partner, logical_time(engine, args.at, "--at"))
    if args.json:
        print_json({"partner": args.partner, "campaigns": found})
        return OK
    can = [c for c in found if c["startable"]]
    print(f"partner {args.partner} can be started in {len(can)} of {len(found)} campaigns")
    table(("campaign", "name", "startable", "why not"),
           [(c["campaign"], c["name"], "yes" if c["startable"] else "no", c["why_not"]) for c in found], limit=120)
    return OK


def cmd_execute(args: argparse.Namespace) -> int:
    """Fire a campaign's trigger now and run what falls due in it."""
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        report = engine.execute(args.campaign, user=args.user, at=at)
    data = {"campaign": args.campaign, "at": report.to_json()["at"], "enrolled": report.enrolled,
            "executed": report.executed, "skipped": report.skipped, "finished": report.finished,
            "failed": report.failed, "delivered": report.delivered}
    if args.json:
        print_json(data)
    else:
        print(f"executed {args.campaign} at {data['at']}: {report.enrolled} enrolled, {report.executed} steps executed, "
              f"{report.skipped} skipped, {report.failed} failed")
    return OK
