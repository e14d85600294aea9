"""The commands that read or change the engine's state: thin layers over :class:`engine.api.Engine`.

Each returns an exit code (SPEC §5): 0 ok, 1 the input was wrong (errors were printed), 3 an
operation was refused. Read commands print a table, or one JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from dsl.diagnostics import Diagnostic, SourceError

from .api import Engine, copy_workspace
from .clock import iso, parse_every
from .console import INPUT_ERROR, OK, print_diagnostics
from .errors import UnknownName, UsageError
from .horizon import check_run
from .report import TickReport


SIMULATION_STORE = "sqlite:///.engine/state.db"


@contextmanager
def opened(args: argparse.Namespace, workspace: Path | None = None, store: str | None = None) -> Iterator[Engine]:
    """The workspace's engine, with the --store override (``store`` wins over it); bad times
    and URLs are usage errors."""
    try:
        engine = Engine.open(workspace or Path(args.workspace), store=store or getattr(args, "store", None))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield engine
    finally:
        engine.close()


FAR_FROM_LAST_TICK = 24 * 3600  # seconds: a default --at this far from the last tick gets a note


def logical_time(engine: Engine, text: str | None, option: str):
    """The time ``option`` names, or the wall clock without it. Then, when the store's last tick
    is more than a day (:data:`FAR_FROM_LAST_TICK`) before or after that wall clock (a store
    ticked with --at for a simulation or a demo, a ticker that stopped), a one-line note on
    stderr says which time was used, so nobody acts at the wall clock thinking of the store's."""
    try:
        at = engine.time(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None
    if text is None:
        from .api import LAST_TICK
        from .clock import from_iso

        # a SQLite store not made yet has no last tick; asking would make one, even for a
        # command that then fails on its arguments (which leaves no store behind)
        location = getattr(engine, "_store_location", None)
        unmade = getattr(engine, "_store", None) is None and isinstance(location, Path) and not location.exists()
        last = None if unmade else engine.store.meta(LAST_TICK)
        if last is not None and abs((at - from_iso(last)).total_seconds()) > FAR_FROM_LAST_TICK:
            print(f"engine: note: operating at the wall clock {iso(at)}; the last tick was at {last}; "
                  f"pass {option} to choose", file=sys.stderr)
    return at


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _print_errors(diagnostics: Sequence[Diagnostic]) -> None:
    print_diagnostics(list(dict.fromkeys(diagnostics)), sys.stderr)


# --- tick and run --------------------------------------------------------------------------------


def _print_warnings(warnings: Sequence[str], limit: int = 10) -> None:
    """Each distinct warning once, with how often it came up."""
    counts = Counter(warnings)
    for text, n in list(counts.items())[:limit]:
        print(f"warning: {text}" + (f" ({n} times)" if n > 1 else ""), file=sys.stderr)
    if len(counts) > limit:
        print(f"warning: … and {len(counts) - limit} more kinds of warnings", file=sys.stderr)


def _summary(report: TickReport) -> str:
    return (f"{report.to_json()['at']}: enrolled {report.enrolled}, executed {report.executed}, "
            f"skipped {report.skipped}, finished {report.finished}, failed {report.failed}, "
            f"delivered {report.delivered}" + (f", deferred {report.deferred}" if report.deferred else "")
            + (f", converted {report.converted}" if report.converted else "")
            + (f", {len(report.warnings)} warnings" if report.warnings else ""))


def _report(args: argparse.Namespace, report: TickReport) -> int:
    if args.json:
        print_json(report.to_json())
    else:
        print(_summary(report))
        _print_warnings(report.warnings)
    if report.diagnostics:
        _print_errors(report.diagnostics)
        return INPUT_ERROR
    return OK


def cmd_tick(args: argparse.Namespace) -> int:
    """Run everything due at or before --at (default: now)."""
    with opened(args) as engine:
        return _report(args, engine.tick(logical_time(engine, args.at, "--at"), force=args.force))


def cmd_run(args: argparse.Namespace) -> int:
    """Many ticks: every --every from --from (or from the last tick) up to --until."""
    with opened(args) as engine:
        until = logical_time(engine, args.until, "--until")
        start = logical_time(engine, args.start, "--from") if args.start else None
        if start is not None and start > until:
            raise UsageError("--from is after --until")
        try:
            report = engine.run(until, every=args.every, start=start, progress=_progress_bar() if not args.json else None,
                                force=args.force)
        except ValueError as exc:
            raise UsageError(f"--every: {exc}") from None
        return _report(args, report)


def _progress_bar():
    """A one-line progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, report: TickReport) -> None:
        width = 30
        filled = width * done // total
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] {done}/{total} ticks  {report.to_json()['at']}")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the workspace over a period on a throw-away copy and show what would be sent, and the
    goal block of ``engine stats`` for each campaign with a goal."""
    from .stats import goal_text

    source = Path(args.workspace)
    if not (source / "engine.yaml").is_file():
        raise UsageError(f"no engine.yaml in {source}: not a workspace")
    with tempfile.TemporaryDirectory(prefix="engine-simulate-") as scratch:
        copy = copy_workspace(source, Path(scratch) / "workspace")
        # its own SQLite file in the copy, whatever --store, ENGINE_STORE or engine.yaml name, and
        # every channel to the copy's files, whatever transports engine.yaml names: a simulation
        # never touches the workspace's state and never reaches a mail server or SMS provider
        with opened(args, copy, store=SIMULATION_STORE) as engine:
            engine.offline = True
            engine.recheck_seconds = math.inf  # nobody edits the copy: its files are looked at once
            start, until = logical_time(engine, args.start, "--from"), logical_time(engine, args.until, "--until")
            if args.events:
                imported = engine.import_events(Path(args.events).resolve(), at=start)
                if imported.diagnostics:
                    _print_errors(imported.diagnostics)
            every = parse_every(args.every)
            if not args.force:  # a throw-away copy: no tick is too far ahead, but there may be too many
                check_run(start, until, every)
            report = engine.run(until, every=every, start=start, progress=_progress_bar() if not args.json else None,
                                force=True)
            messages = engine.outbox()
            activities = engine.activities()
            popups = engine.popups()
            goals = _goals(engine)
        if args.json:
            print_json({**report.to_json(), "messages": messages, "activities": activities, "popups": popups,
                        "goals": goals})
        else:
            _print_simulation(report, messages, activities, popups)
            for campaign, goal in goals.items():  # what engine stats shows of each campaign's goal
                print()
                print("\n".join(goal_text(goal, label=f"{campaign} goal")))
    if report.diagnostics:
        _print_errors(report.diagnostics)
        return INPUT_ERROR
    return OK


def _goals(engine: Engine) -> dict[str, Any]:
    """campaign → the goal block of ``engine stats``, for each campaign with a goal."""
    from .stats import goal_stats

    return {cid: goal_stats(engine.store, compiled)
            for cid, compiled in sorted(engine.plan.campaigns.items()) if compiled.campaign.goal is not None}


def _print_simulation(report: TickReport, messages: list[dict], activities: list[dict], popups: list[dict]) -> None:
    rows = [(m["at"], m["channel"], m["campaign"], m["step"], m["partner"], m.get("to", ""),
             m.get("subject") or first_line(m.get("body", ""))) for m in messages]
    rows += [(a["created_at"], f"activity:{a['kind']}", a["campaign"], a["step"], a["partner"], a["assignee"] or "",
              a["subject"] or "") for a in activities]
    rows += [(p["created_at"], "popup", p["campaign"], p["step"], p["partner"], ",".join(p["pages"]), p["title"])
             for p in popups]
    rows.sort()
    table(("at", "channel", "campaign", "step", "partner", "to", "subject"), rows)
    counts = Counter(r[1] for r in rows)
    print()
    print(", ".join(f"{n} {kind}" for kind, n in sorted(counts.items())) or "nothing was sent")
    print(_summary(report).replace(f"{report.to_json()['at']}: ", "totals: "))


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], limit: int = 60) -> None:
    cells = [[str(v if v is not None else "-") for v in row] for row in rows]
    cells = [[c if len(c) <= limit else c[:limit - 1] + "…" for c in row] for row in cells]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())


# --- events --------------------------------------------------------------------------------------


def cmd_events_import(args: argparse.Namespace) -> int:
    """Import engagement, consent and trigger events from a JSONL file."""
    path = Path(args.file)
    if not path.is_file():
        raise UsageError(f"no such file: {args.file}")
    from .operations import resolve_user

    with opened(args) as engine:
        user = resolve_user(engine.plan, args.user, "events.import")  # the events or marketing role
        result = engine.import_events(path, at=logical_time(engine, args.at, "--at"), user=user)
    if args.json:
        print_json(result.to_json())
    else:
        print(f"imported {result.imported} events, {result.duplicates} already known, "
              f"{len(result.diagnostics)} bad lines skipped")
    if result.diagnostics:
        _print_errors(result.diagnostics)
        return INPUT_ERROR
    return OK


# --- reading state -------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    """The partner campaign list (--partner), a campaign's counts (--campaign), or all campaigns."""
    with opened(args) as engine:
        if args.campaign is not None and args.campaign not in engine.plan.workspace.files and not engine.store.campaign_number(args.campaign):
            raise UnknownName(f"unknown campaign '{args.campaign}'")
        data = engine.status(partner=args.partner, campaign=args.campaign)
        if args.partner is None and args.campaign is None:  # the list: each campaign's In-Campaign % now
            from .stats import in_campaign_pcts
            pcts = in_campaign_pcts(engine.store, engine.plan, engine.read_partners(), [c["campaign"] for c in data["campaigns"]],
                                    engine.time(None))
            for c in data["campaigns"]:
                c["in_campaign_pct"] = pcts[c["campaign"]]
    if args.json:
        print_json(data)
    elif args.partner is not None:
        print(f"partner {args.partner}")
        table(("no.", "campaign", "#", "status", "reason", "started", "started_at", "finished_at", "next_step", "due_at"),
               [(e["campaign_number"], e["campaign"], e["number"], e["status"], e["reason"], e["started"], e["started_at"],
                 e["finished_at"], e["next_step"], e["due_at"]) for e in data["enrollments"]])
    elif args.campaign is not None:
        _print_campaign(data)
    else:
        table(("number", "campaign", "on", "scheduled", "active", "paused", "finished", "removed", "in-campaign"),
               [(c["number"], c["campaign"], "yes" if c["active"] else "no",
                 *(c["enrollments"][s] for s in ("scheduled", "active", "paused", "finished", "removed")),
                 None if c["in_campaign_pct"] is None else f"{c['in_campaign_pct']}%")
                for c in data["campaigns"]])
    return OK


def _print_campaign(data: dict) -> None:
    print(f"{data['campaign']} (number {data['number'] or '-'}): {data['name']}, "
          f"{'active' if data['active'] else 'not active'}")
    table(("status", "enrollments"), [(status, n) for status, n in data["enrollments"].items()] + [("total", data["total"])])
    group = data.get("target_group")
    if group:
        print()
        origins = ", ".join(f"{n} by {origin}" for origin, n in group["members_by_origin"].items())
        print(f"target group: {group['audience']} in the audience, {group['members']} members"
              + (f" ({origins})" if origins else ""))
        excluded = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in group["excluded"].items() if n)
        print(f"excluded: {excluded or 'nobody'}" + (
            f"; by role: {', '.join(f'{n} {r}' for r, n in group['excluded_by_role'].items())}" if group["excluded_by_role"] else ""))
        print(f"eligible: {group['eligible']} ({group['without_email_consent']} of them without email consent)")


def cmd_steps(args: argparse.Namespace) -> int:
    """Each step of one partner's enrollment: executed, pending, skipped or failed, with times."""
    with opened(args) as engine:
        data = engine.steps(args.campaign, args.partner, args.number)
    if data is None:
        raise UnknownName(f"partner {args.partner} has no enrollment in {args.campaign}")
    if args.json:
        print_json(data)
        return OK
    print(f"{data['campaign']} / partner {data['partner']} / enrollment {data['number']}: {data['status']}"
          + (f" ({data['reason']})" if data["reason"] else ""))
    table(("step", "kind", "run", "status", "reason", "due_at", "at", "flow"),
           [(s["step"], s["kind"], s["run"], s["status"], s["reason"], s["due_at"], s["at"], _note(s))
            for s in data["steps"]])
    for s in data["steps"]:  # why a step failed, in full (the table has no room for it)
        if s.get("error"):
            print(f"{s['step']}: {s['error']}")
    return OK


def _note(step: dict) -> str | None:
    """What a branch or split chose, how a wait-for ended (or waits), and for a message step its
    variant and the policy that moved or skipped it, for `engine steps`."""
    detail = step.get("detail") or {}
    notes = []
    if step["kind"] == "branch" and detail:
        notes.append(f"case {detail['case']} → {detail['goto']}" if detail.get("case") else "no case held → next step")
    elif step["kind"] == "split" and detail:
        notes.append(f"path {detail['path']} → {detail['goto'] or 'next step'}")
    elif "ends_at_most" in detail:
        notes.append(f"waiting since {detail['began']}")
    elif "ended_by" in detail:
        ended = "the condition held" if detail["ended_by"] == "condition" else "at_most reached"
        notes.append(f"began {detail['began']}, ended: {ended}")
    if detail.get("variant"):
        notes.append(f"variant {detail['variant']}")
    if detail.get("rule"):
        notes.append(detail["rule"])
    held = step.get("held") or detail.get("held")
    if held:
        notes.append(f"moved from {held['from']} by {held['detail']}")
    return "; ".join(notes) or None


def cmd_log(args: argparse.Namespace) -> int:
    """The audit log: every operation and every batch the engine generated."""
    with opened(args) as engine:
        entries = engine.log(args.campaign)
    if args.limit:
        entries = entries[-args.limit:]
    if args.json:
        print_json(entries)
        return OK
    table(("seq", "at", "user", "action", "campaign", "partner", "detail"),
           [(e["seq"], e["at"], e["user"], e["action"], e["campaign"], e["partner"],
             " ".join(f"{k}={v}" for k, v in e["detail"].items())) for e in entries], limit=80)
    return OK


# --- operations ----------------------------------------------------------------------------------


def cmd_start(args: argparse.Namespace) -> int:
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        e = engine.start(args.campaign, args.partner, on=args.on, user=args.user, at=at)
    when = "" if e.status == "active" else f" on {e.started_at.isoformat()}"
    print(f"{e.status}: partner {e.partner} in {e.campaign} (enrollment {e.number}){when}")
    return OK


def cmd_change(args: argparse.Namespace) -> int:
    """pause, resume or remove: all the partners named, or none of them."""
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        operation = getattr(engine, args.operation)
        changed = operation(args.campaigns, args.partners, user=args.user, at=at)
    for e in changed:
        print(f"{e.status}: partner {e.partner} in {e.campaign} (enrollment {e.number})")
    return OK


def cmd_skip(args: argparse.Namespace) -> int:
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        engine.skip(args.campaign, args.step, args.partner, user=args.user, at=at)
    print(f"skipped: step {args.step} of partner {args.partner} in {args.campaign}")
    return OK


def cmd_rerun(args: argparse.Namespace) -> int:
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        status = engine.rerun(args.campaign, args.step, args.partner, user=args.user, at=at)
    print(f"{status}: step {args.step} of partner {args.partner} in {args.campaign} ran again")
    return OK


def cmd_respond(args: argparse.Namespace) -> int:
    """Answer an activity or a mailing; a response with a follow-up starts that campaign now."""
    answers = {}
    for item in args.answers or []:
        qid, sep, value = item.partition("=")
        if not sep or not qid.strip():
            raise UsageError(f"--answer {item}: write QUESTION=ANSWER")
        answers[qid.strip()] = value.strip()
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        try:
            duration = parse_every(args.duration) if args.duration else None
        except ValueError as exc:
            raise UsageError(f"--duration: {exc}") from None
        done = engine.respond(args.target, args.response, answers=answers, duration=duration, user=args.user, at=at)
    print(f"{done.response} ({done.result}): {done.kind} {done.target} of partner {done.partner} in {done.campaign}")
    if done.follow_up_enrollment is not None:
        e = done.follow_up_enrollment
        print(f"follow-up: partner {e.partner} enrolled in {e.campaign} (enrollment {e.number}), from {iso(e.started_at)}")
    elif done.follow_up_note:
        print(f"follow-up {done.follow_up} not started: {done.follow_up_note}")
    if done.goto is not None:
        print(f"goto {done.goto}: not moved, {done.goto_note}" if done.goto_note else
              f"goto {done.goto}: partner {done.partner} moved to it in {done.campaign}")
    return OK


def cmd_activities(args: argparse.Namespace) -> int:
    """Activities for reps: calls, meetings, surveys, work orders, tasks."""
    with opened(args) as engine:
        found = engine.activities(args.campaign, args.partner, assignee=args.assignee, status=args.status)
    if args.json:
        print_json(found)
        return OK
    table(("id", "kind", "status", "assignee", "partner", "subject", "created_at", "response"),
           [(a["id"], a["kind"], a["status"], a["assignee"], a["partner"], a["subject"], a["created_at"],
             a["response"]) for a in found])
    return OK


def cmd_consent(args: argparse.Namespace) -> int:
    """A partner's consent ledger (proof of consent) and what it allows now."""
    with opened(args) as engine:
        data = engine.consent(args.partner, logical_time(engine, args.at, "--at"))
    if args.json:
        print_json(data)
        return OK
    for channel, state in data["channels"].items():
        print(f"{channel}: {'yes' if state['consent'] else 'no'} ({state['by']})")
    if data["ledger"]:
        print()
        table(("at", "channel", "consent", "source"),
               [(e["at"], e["channel"], "opted in" if e["granted"] else "opted out", e["source"]) for e in data["ledger"]])
    return OK


def cmd_group(args: argparse.Namespace) -> int:
    """Change a campaign's target group; --dry-run lists who would be added or go."""
    with opened(args) as engine:
        at = logical_time(engine, args.at, "--at")
        try:
            done = engine.group(args.campaign, args.action, args.argument, dry_run=args.dry_run, user=args.user, at=at)
        except SourceError as exc:  # a filter expression that does not check: show it with a caret
            print_diagnostics(exc.diagnostics, sys.stderr, sources={"<filter>": args.argument})
            return INPUT_ERROR
    if args.json:
        print_json(done.to_json())
        return OK
    if done.dry_run:
        ended = f"; {len(done.ended)} of them would leave the campaign too" if done.removed else ""
        print(f"{done.campaign} {done.action} (dry run): {len(done.added)} would be added, "
              f"{len(done.removed)} would go, leaving {done.members} members{ended}")
    else:
        ended = f"; {len(done.ended)} of them left the campaign too" if done.removed else ""
        print(f"{done.campaign} {done.action}: {len(done.added)} added, {len(done.removed)} removed, "
              f"{done.members} members now{ended}")
    ended = set(done.ended)
    for pid in done.added:
        print(f"  + {pid}")
    for pid in done.removed:
        print(f"  - {pid}" + ("  (enrollment removed: target_group)" if pid in ended else ""))
    return OK


def cmd_complete(args: argparse.Namespace) -> int:
    """Complete an activity without responses, with a free result."""
    with opened(args) as engine:
        done = engine.complete(args.target, args.result, user=args.user, at=logical_time(engine, args.at, "--at"))
    print(f"completed: activity {done['id']} ({done['campaign']} / {done['step']}, partner {done['partner']}): {done['result']}")
    return OK


def cmd_mailings(args: argparse.Namespace) -> int:
    """Mailing records: every email, SMS and letter an executed step produced, to whom, when."""
    with opened(args) as engine:
        found = engine.outbox(args.channel, campaign=args.campaign, partner=args.partner)
        answered = {r["target"]: r for r in engine.responses(args.partner, args.campaign)}
    for record in found:
        response = answered.get(record["id"])
        record["response"] = response["response"] if response else None
        record["result"] = response["result"] if response else None
    if args.json:
        print_json(found)
        return OK
    table(("id", "channel", "to", "at", "delivered_at", "response", "result", "subject"),
           [(m["id"], m["channel"], m.get("to"), m["at"], m["delivered_at"], m["response"], m["result"],
             m.get("subject") or first_line(m.get("body", ""))) for m in found])
    return OK


def cmd_outbox(args: argparse.Namespace) -> int:
    """Messages and their delivery: queued (with attempts and the next one), sent, failed."""
    with opened(args) as engine:
        found = engine.store.messages(args.channel, args.campaign, args.partner, args.status)
    if args.json:
        print_json(found)
        return OK
    table(("id", "channel", "to", "status", "attempts", "next_attempt", "delivered_at", "last_error"),
           [(m["id"], m["channel"], m.get("to"), m["status"], m["attempts"], m["next_attempt"], m["delivered_at"],
             m["last_error"]) for m in found])
    counts = Counter(m["status"] for m in found)
    print(", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "the outbox is empty")
    return OK


def cmd_stats(args: argparse.Namespace) -> int:
    """Sent / opened / clicked / bounced per step and language, read / unread pop-ups, In-Campaign %."""
    with opened(args) as engine:
        data = engine.stats(args.campaign)
    if args.json:
        print_json(data)
        return OK
    _print_stats(data)
    return OK


def _print_stats(data: dict) -> None:
    from .monitor import dropped_text
    from .stats import goal_text, response_text

    pct, measured = data["in_campaign_pct"], data.get("in_campaign")
    line = f"{data['campaign']}: In-Campaign {'-' if pct is None else f'{pct}%'}"
    if measured and measured["of"]:
        line += f" ({measured['active']} of {measured['of']} active"
        line += f"; not active: {dropped_text(measured['dropped'])})" if measured["dropped"] else ")"
    if measured and measured["waiting"]:
        line += f"; {measured['waiting']} waiting for the trigger's next occurrence"
    print(line)
    if measured and measured["suggestion"]:
        print(f"what to do: {measured['suggestion']}")
    # the variant column only when a step has variants (an experiment)
    variant_column = ("variant",) if any(r.get("variant") is not None for r in data["steps"]) else ()
    table(("step", "channel", "language", *variant_column, "sent", "opens", "unique", "clicks", "unique",
           "bounces", "read", "unread"),
          [(r["step"], r["channel"], r["language"], *(r[k] for k in variant_column), r["sent"], r["opens"],
            r["unique_opens"], r["clicks"], r["unique_clicks"], r["bounces"], r["read"], r["unread"])
           for r in data["steps"]])
    if data.get("goal"):
        print()
        print("\n".join(goal_text(data["goal"])))
    if data.get("activities"):
        print()
        table(("activity", "kind", "created", "completed", "open", "responses", "results"),
               [(a["step"], a["kind"], a["created"], a["completed"], a["open"], response_text(a["responses"]),
                 response_text(a["results"])) for a in data["activities"]], limit=200)
    if data.get("mailing_responses"):
        print()
        table(("mailing", "channel", "responded", "responses", "results"),
               [(m["step"], m["channel"], m["responded"], response_text(m["responses"]), response_text(m["results"]))
                for m in data["mailing_responses"]], limit=200)


def cmd_popups(args: argparse.Namespace) -> int:
    """A partner's message center, or what shows on one portal page now."""
    with opened(args) as engine:
        found = engine.popups(args.partner, page=args.page, unread=args.unread)
    if args.json:
        print_json(found)
        return OK
    table(("id", "campaign", "pages", "title", "created_at", "read_at"),
           [(p["id"], p["campaign"], ",".join(p["pages"]), p["title"], p["created_at"], p["read_at"]) for p in found])
    return OK


def cmd_portal_link(args: argparse.Namespace) -> int:
    """A signed link to the partner's message center (engine.portal_links), printed once."""
    from . import portal_links
    from .errors import ConfigError
    from .links import MissingSecret, signer

    with opened(args) as engine:
        web = engine.plan.settings.web
        key = signer(web)
        if not web.base_url:
            raise ConfigError(portal_links.NO_BASE_URL)
        if key is None:
            raise MissingSecret(f"a message center link is signed: set the environment variable {web.secret_env} "
                                f"(web.secret_env) to the key engine serve uses")
        at = engine.time(None)
        engine.read_partners(at)  # partners added to the source since the last tick are known too
        days = portal_links.DEFAULT_DAYS if args.days is None else args.days
        link = portal_links.issue(engine, key, args.partner, at=at, page=args.page, days=days)
    if args.json:
        print_json(link)
    else:
        print(link["url"])
    return OK


def cmd_popup_read(args: argparse.Namespace) -> int:
    from .operations import resolve_user

    with opened(args) as engine:
        user = resolve_user(engine.plan, args.user, "popup.read")  # the marketing or events role
        popup = engine.read_popup(args.popup, args.partner, user=user, at=logical_time(engine, args.at, "--at"))
    print(f"read: pop-up {popup['id']} of partner {popup['partner']} (at {popup['read_at']})")
    return OK


def cmd_draft(args: argparse.Namespace) -> int:
    with opened(args) as engine:
        engine.draft(args.campaign, user=args.user, at=logical_time(engine, args.at, "--at"))
    print(f"draft: {args.campaign} will not be sent until its file is edited (then it is scheduled again)")
    return OK


def cmd_alerts(args: argparse.Namespace) -> int:
    """In-Campaign % alerts: when they were raised, at what level, and when they cleared."""
    with opened(args) as engine:
        from .monitor import alert_details, dropped_text

        found = [alert_details(engine.store, a) for a in engine.alerts(args.campaign, open_only=args.open)]
    if args.json:
        print_json(found)
        return OK
    table(("campaign", "raised_at", "pct", "minimum", "cleared_at", "cleared_pct", "active", "of", "not active"),
           [(a["campaign"], a["raised_at"], a["pct"], a["minimum"], a["cleared_at"], a["cleared_pct"], a["active"], a["of"],
             dropped_text(a["dropped"]) if a["dropped"] else None) for a in found])
    for a in found:  # what to do about the open ones
        if a["cleared_at"] is None and a["suggestion"]:
            print(f"{a['campaign']}: {a['suggestion']}")
    return OK


def cmd_serve(args: argparse.Namespace) -> int:
    from .web.serve import serve

    return serve(args)


# --- API keys ------------------------------------------------------------------------------------


def cmd_apikey(args: argparse.Namespace) -> int:
    """The web API's keys: create (the key printed once), list, revoke; creating and revoking
    go to the audit log under whoever ran the command (``ENGINE_USER``, else the login name)."""
    import getpass
    import os

    from dsl.diagnostics import did_you_mean

    from . import apikeys

    with opened(args) as engine:
        store, at = engine.store, engine.time(None)
        if args.action == "list":
            keys = apikeys.listing(store)
            if args.json:
                print_json({"keys": keys})
            elif not keys:
                print("no API keys (engine apikey create USER makes one)")
            else:
                table(("id", "user", "created", "last used", "revoked"),
                       [(k["id"], k["user"], k["created_at"], k["last_used_at"], k["revoked_at"]) for k in keys])
            return OK
        actor = (os.environ.get("ENGINE_USER") or "").strip() or getpass.getuser()
        if args.action == "create":
            user = args.user.strip()
            users = engine.plan.settings.users
            if not user:
                raise UsageError("USER is blank: name the user the key acts as")
            if users and user not in users:
                raise UnknownName(f"unknown user '{user}'{did_you_mean(user, list(users))}: "
                                  f"engine.yaml lists {', '.join(sorted(users))}")
            with store.transaction():  # the key and its audit log line, together
                key_id, key = apikeys.create(store, user, at)
                store.log(at, actor, "apikey.create", None, key_id=key_id, acts_as=user)
            if args.json:
                print_json({"id": key_id, "user": user, "key": key})
            else:
                print(key)
            print(f"API key {key_id} acts as {user}. It is shown only this once: the store keeps only its hash "
                  f"(engine apikey revoke {key_id} to withdraw it).", file=sys.stderr)
            return OK
        key_id = args.key_id
        with store.transaction():
            found = store.api_key(key_id)
            if found is None:
                known = [k["id"] for k in apikeys.listing(store)]
                raise UnknownName(f"unknown API key '{key_id}'{did_you_mean(key_id, known)} (engine apikey list)")
            revoked = apikeys.revoke(store, key_id, at)
            if revoked:
                store.log(at, actor, "apikey.revoke", None, key_id=key_id, acts_as=found["user"])
    if not revoked:
        print(f"API key {key_id} of {found['user']} was revoked already (at {found['revoked_at']})")
    else:
        print(f"revoked: API key {key_id} of {found['user']}; refused from the next request on")
    return OK
