"""The review and launch commands: `engine test` (a dry run), `engine explain`, `engine plan`
and `engine diff`. Like engine.commands, thin layers that print what the library returns."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .api import load_plan
from .clock import SystemClock, parse_time
from .commands import first_line, logical_time, opened, print_json
from .console import INPUT_ERROR, OK
from .errors import UsageError


def cmd_test(args: argparse.Namespace) -> int:
    """A dry run of one campaign; exit 1 when a step fails (a template error)."""
    from .dryrun import dry_run

    root = Path(args.workspace)
    if not (root / "engine.yaml").is_file():
        raise UsageError(f"no engine.yaml in {root}: not a workspace")
    sample = Path(args.sample) if args.sample else None
    if sample is not None and not sample.is_file():
        raise UsageError(f"no such file: {args.sample}")
    plan = load_plan(root)
    try:
        at = parse_time(args.at, plan.tz) if args.at else SystemClock().now()
    except ValueError as exc:
        raise UsageError(f"--at: {exc}") from None
    result = dry_run(root, args.campaign, args.partners, sample, at)
    if args.json:  # the JSON has every rendered message in full, with or without --show-body
        print_json(result)
    else:
        _print_dry_run(result, show_body=getattr(args, "show_body", False))
    return OK if result["passed"] else INPUT_ERROR


def _trigger_line(trigger: dict, at: str) -> str:
    """`engine test`'s second line: when the campaign's trigger would start the enrollments."""
    kind, starts = trigger.get("kind"), trigger.get("starts_at")
    if kind == "cron":
        if starts is None:
            return f"trigger: cron \"{trigger['cron']}\" does not fire in the ten years after {at}: nobody is enrolled"
        return f"trigger: cron \"{trigger['cron']}\" fires next at {starts}: the enrollments start then"
    if kind == "at":
        if starts != trigger["at"]:
            return (f"trigger: at {trigger['at']}, already past: a campaign first seen active after its time fires "
                    f"once, at that tick ({starts})")
        return f"trigger: at {starts}: the enrollments start then"
    if kind == "event":
        return f"trigger: event {trigger['event']}, taken to arrive at {starts} (the event's own condition is not asked)"
    if kind == "audience":
        return f"trigger: audience: partners who match are enrolled by the tick at {starts}"
    return ("no trigger: the campaign enrolls nobody by itself (engine start, a response's follow-up or its "
            "target group do); the steps are those of a start at " + str(starts))


def _message_lines(message: dict) -> list[str]:
    """A rendered message in full, for `engine test --show-body`: its headers, then its body."""
    channel = message.get("channel")
    headers: list[str] = []
    if channel in ("email", "sms"):
        headers.append(f"to: {message.get('to')}" + (f"  bcc: {message['bcc']}" if message.get("bcc") else ""))
    if channel == "email":
        headers.append(f"subject: {message.get('subject')}")
    if channel == "popup":
        headers.append(f"pages: {', '.join(message.get('pages') or [])}")
        headers.append(f"title: {message.get('title')}")
    if channel == "activity":
        headers.append(f"{message.get('kind')} for {message.get('assignee')}: {message.get('subject')}")
        responses = message.get("responses") or {}
        if responses:
            headers.append(f"responses: {', '.join(responses)}")
        return headers
    language = message.get("language")
    if language:
        headers.append(f"language: {language}" + (" (HTML)" if message.get("html") else ""))
    body = message.get("text") if channel == "sms" else message.get("body")
    lines = (body or "").rstrip("\n").split("\n")
    return headers + [f"| {line}".rstrip() for line in lines]


def _print_dry_run(result: dict, show_body: bool = False) -> None:
    """The path each partner takes: every step with its time and outcome, where each branch sends
    them, how each wait-for ends, and the steps a branch jumps over; with ``show_body``, every
    rendered message in full under its step."""
    from dsl.explain import duration_text

    from .clock import from_iso

    print(f"{result['campaign']} from {result['at']}: {'passed' if result['passed'] else 'FAILED'}")
    if result.get("trigger") is not None:
        print(_trigger_line(result["trigger"], result["at"]))
    for partner in result["partners"]:
        print()
        matched = ", ".join(partner["rulesets"] + [f"group {g}" for g in partner["groups"]]) or "no ruleset or group"
        if not partner["enrolls"]:
            verdict = f"not enrolled ({partner['excluded_by'] or 'no match'})"
        else:
            verdict = partner.get("note") or "enrolls"
        print(f"partner {partner['partner']}: {matched}; {verdict}")
        for step in partner["steps"]:
            if step["kind"] == "branch" and step["status"] == "would_execute":
                # the path: where the branch sends this partner
                if step.get("goto") is None:
                    print(f"  {step['at']}  {step['step']:<20} → next step (no case held)")
                else:
                    print(f"  {step['at']}  {step['step']:<20} → {step['goto']} (case {step['case']})")
                continue
            if step["kind"] == "split" and step["status"] == "would_execute":
                print(f"  {step['at']}  {step['step']:<20} → {step.get('goto') or 'next step'} (path {step['path']})")
                continue
            if step["kind"] == "wait_for" and step["status"] == "would_execute":
                if step.get("ended_by") == "condition":
                    how = "ends at once (condition holds)"
                else:
                    waited = duration_text(from_iso(step["until"]) - from_iso(step["at"]))
                    how = f"waits {waited} until {step['until']} (condition false)"
                print(f"  {step['at']}  {step['step']:<20} {how}")
                continue
            message = step.get("message") or {}
            what = message.get("subject") or message.get("title") or first_line(message.get("body") or message.get("text") or "")
            why = step.get("error") or step.get("rule") or step.get("reason") or ""
            if step["status"] == "skipped" and step.get("reason") in ("branch", "split"):
                why = f"jumped over by a {step['reason']}"
            if message.get("variant"):
                what = f"[{message['variant']}] {what}"
            print(f"  {step['at']}  {step['step']:<20} {step['status']:<14} {why or what}")
            if step.get("held"):
                held = step["held"]
                print(f"{'':<26}moved from {held['from']} by {held['detail']}")
            if show_body and step.get("message"):
                for line in _message_lines(step["message"]):
                    print(f"{'':<26}{line}")
        finished = partner.get("finished")
        if finished:
            print(f"  {finished['at']}  finished: {finished['reason']}")
    for text in result["warnings"]:
        print(f"warning: {text}", file=sys.stderr)


def cmd_diff(args: argparse.Namespace) -> int:
    """A semantic diff of two versions of a campaign file (or a textconv rendering of one)."""
    from campaigns.diff import diff_campaigns, load_revision, render, textconv

    cwd = Path(args.workspace)
    if args.textconv:
        path = Path(args.textconv)
        if not path.is_file():
            raise UsageError(f"no such file: {args.textconv}")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror or str(exc)
            raise UsageError(f"{args.textconv}: cannot read: {reason}") from None
        print(textconv(text, str(path)))
        return OK
    if not args.old or not args.new:
        raise UsageError("give OLD and NEW (files or REV:path), or --textconv FILE")
    try:
        (old_name, old_text), (new_name, new_text) = load_revision(args.old, cwd), load_revision(args.new, cwd)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    changes = diff_campaigns(old_text, new_text, old_name, new_name)
    if args.json:
        print_json({"changes": [c.to_json() for c in changes]})
    else:
        print(render(changes))
    return OK


def cmd_explain(args: argparse.Namespace) -> int:
    """Why a partner does or does not match a campaign, sub-expression by sub-expression."""
    from .explain import render_text

    with opened(args) as engine:
        result = engine.explain(args.campaign, args.partner, logical_time(engine, args.at, "--at"))
    if args.json:
        print_json(result)
    else:
        print(render_text(result))
    return OK


PLAN_CHANGES = 4  # `engine plan`: something would change


def cmd_plan(args: argparse.Namespace) -> int:
    """What the files as they are now would change in the store; exit 4 when anything would."""
    from .plan import plan_changes

    with opened(args) as engine:
        result = plan_changes(engine.store, engine.plan, logical_time(engine, getattr(args, "at", None), "--at"))
    if args.json:
        print_json(result)
    else:
        _print_plan(result)
    return PLAN_CHANGES if result["changes"] else OK


def _print_plan(result: dict) -> None:
    from .plan import firing_line, journey_lines

    for entry in result["campaigns"]:
        lines = []
        if entry["state"] != "unchanged":
            lines.append(f"campaign is {entry['state'].replace('_', ' ')}")
        audience = entry["audience"] or {}
        if audience.get("newly_matching"):
            lines.append(f"{audience['newly_matching']} partners newly match the audience "
                         f"(e.g. {', '.join(audience['newly_sample'])})")
        if audience.get("no_longer_matching"):
            lines.append(f"{audience['no_longer_matching']} enrolled partners no longer match "
                         f"(e.g. {', '.join(audience['no_longer_sample'])})")
        removed = entry["removed_steps"] or {}
        for step, n in removed.get("steps", {}).items():
            lines.append(f"{n} enrollments wait for step {step}, which is no longer in the file (step_removed)")
        lines.extend(journey_lines(entry))
        if entry.get("next_firing"):
            lines.append(firing_line(entry["next_firing"]))
        if entry["locked"]:
            lines.append(entry["locked"].splitlines()[0])
        if lines:
            print(f"{entry['campaign']}:")
            for line in lines:
                print(f"  {line}")
    print("no changes" if not result["changes"] else f"{result['changes']} campaigns would change")
