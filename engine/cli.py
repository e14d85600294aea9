"""The `engine` command: thin commands over the library.

Exit codes, for every command (SPEC §5): 0 ok, 1 the user's input is wrong (errors were
printed), 2 usage error, 3 an operation was refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Callable, Sequence

from dsl.ids import first_surrogate, shown

from .console import INPUT_ERROR, OK, REFUSED, USAGE_ERROR, print_diagnostics
from .errors import ConfigError, StoreBusy, StoreError, UnknownName, UsageError

if TYPE_CHECKING:
    import sqlite3


def _raised_by(module: str, name: str) -> type[BaseException] | tuple[()]:
    """The exception class ``module.name`` for an ``except`` clause, or nothing to match when
    that module was never imported (then nothing raised one): `engine --help` or `engine check`
    need not import sqlite3, the diagnostics or the campaign model just to be ready to catch
    their errors."""
    found = sys.modules.get(module)
    return getattr(found, name) if found is not None else ()



def store_failure(exc: sqlite3.Error) -> StoreError:
    """What a SQLite error that reached the command means to its user, in one line."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return StoreBusy("the store is busy: another process kept it locked too long")
    if "full" in text:
        return StoreError(f"the store cannot be written: {text} (free some space, then run the command again)")
    return StoreError(f"the store failed: {text}")


# --- wiring ------------------------------------------------------------------------------------


def _command(name: str, module: str = "commands") -> Callable[[argparse.Namespace], int]:
    """Commands live in engine.commands (and those on files alone in engine.files), imported
    only when one runs, so that `engine check` starts fast and this module imports neither."""

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)

    return run


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-w", "--workspace", default=argparse.SUPPRESS, help="workspace directory (default: .)")
    state = argparse.ArgumentParser(add_help=False, parents=[common])
    state.add_argument("--store", metavar="URL", help="store URL: sqlite:///PATH or postgresql://... (default: $ENGINE_STORE, else engine.yaml's store, sqlite:///.engine/state.db)")
    reading = argparse.ArgumentParser(add_help=False, parents=[state])
    reading.add_argument("--json", action="store_true", help="print one JSON document")
    operating = argparse.ArgumentParser(add_help=False, parents=[state])
    operating.add_argument("--as", dest="user", metavar="USER", help="who operates (default: $ENGINE_USER); needs the marketing role when engine.yaml lists users")
    operating.add_argument("--at", metavar="T", help="logical time of the operation (default: now)")
    parser = argparse.ArgumentParser(
        prog="engine",
        description="Run marketing campaigns written as YAML files against partner records.",
        epilog="Run 'engine COMMAND --help' for a command's options.",
    )
    parser.add_argument("-w", "--workspace", default=os.environ.get("ENGINE_WORKSPACE", "."), help="workspace directory (default: .)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="a new workspace: engine.yaml, partners, one campaign, .gitignore",
                               description="Write a workspace skeleton into DIR (default: .): engine.yaml, partners.csv, "
                                           "campaigns/welcome.yaml, groups/, templates/, and .engine/ in .gitignore. "
                                           "Refused when one of those files exists.")
    init.add_argument("directory", nargs="?", default=".", metavar="DIR")
    init.set_defaults(run=_command("cmd_init", "files"))

    check = commands.add_parser("check", parents=[common], help="validate campaign files, settings, templates and partners",
                                description="Validate the workspace (or the given workspaces / campaign files) and report every error as path:line:col.")
    check.add_argument("paths", nargs="*", metavar="PATH", help="workspace directories or campaign files (default: the workspace)")
    check.add_argument("--json", action="store_true", help='print {"ok", "errors": [{"path","line","col","message","severity"}]}')
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.set_defaults(run=_command("cmd_check", "files"))

    fmt = commands.add_parser("fmt", parents=[common], help="canonical formatting of campaign files, comments kept",
                              description="Rewrite campaign files in one canonical layout (SPEC key order, two-space indentation, normalised expressions), keeping every comment. PATH: workspaces (their campaigns/) or files (engine.yaml too).")
    fmt.add_argument("paths", nargs="*", metavar="PATH", help="default: the workspace")
    fmt.add_argument("--check", action="store_true", help="change nothing; list the files that would change and exit 1 if any")
    fmt.set_defaults(run=_command("cmd_fmt", "files"))

    schema = commands.add_parser("schema", parents=[common], help="print the JSON Schema of campaign files",
                                 description="Print the JSON Schema of campaign files, for editors (yaml-language-server).")
    schema.add_argument("kind", nargs="?", choices=["campaign", "settings"], default="campaign", help="campaign files (default) or engine.yaml")
    schema.set_defaults(run=_command("cmd_schema", "files"))

    tick = commands.add_parser("tick", parents=[reading], help="run everything due at or before a time",
                               description="One tick: import changed partners, fire triggers, execute every step due at or before --at, deliver.")
    tick.add_argument("--at", metavar="T", help="logical time, e.g. 2026-07-01T09:00 (workspace timezone) or ...Z (default: now)")
    tick.add_argument("--force", action="store_true", help="run even a tick more than a year after the last tick and the wall clock, or one that fires a cron trigger more than 1000 times")
    tick.set_defaults(run=_command("cmd_tick"))

    run = commands.add_parser("run", parents=[reading], help="many ticks up to a time, with a progress bar",
                              description="Tick every --every from --from (default: one interval after the last tick) up to and including --until.")
    run.add_argument("--until", required=True, metavar="T", help="the last tick's time")
    run.add_argument("--from", dest="start", metavar="T", help="the first tick's time (default: one interval after the last tick, or only --until)")
    run.add_argument("--every", default="1h", metavar="D", help="interval between ticks: 15m, 1h, 1d (default: 1h)")
    run.add_argument("--force", action="store_true", help="run even more than 10,000 ticks, or ticks more than a year apart (see engine tick --force)")
    run.set_defaults(run=_command("cmd_run"))

    simulate = commands.add_parser("simulate", parents=[reading], help="run a period on a throw-away copy and list what would be sent",
                                   description="Copy the workspace to a temporary directory, run ticks from --from to --until there, and print every message, activity and pop-up. The workspace's own state is not touched.")
    simulate.add_argument("--from", dest="start", required=True, metavar="T", help="the first tick's time")
    simulate.add_argument("--until", required=True, metavar="T", help="the last tick's time")
    simulate.add_argument("--every", default="1h", metavar="D", help="interval between ticks (default: 1h)")
    simulate.add_argument("--events", metavar="FILE", help="an events file (JSONL) to import first")
    simulate.add_argument("--force", action="store_true", help="run even more than 10,000 ticks")
    simulate.set_defaults(run=_command("cmd_simulate"))

    status = commands.add_parser("status", parents=[reading], help="partner campaign list, or a campaign's enrollment counts",
                                 description="With --partner: every enrollment of that partner. With --campaign: counts by status. With neither: all campaigns.")
    status.add_argument("--campaign", metavar="C")
    status.add_argument("--partner", metavar="P")
    status.set_defaults(run=_command("cmd_status"))

    steps = commands.add_parser("steps", parents=[reading], help="the steps of one enrollment",
                                description="Each step of the partner's latest enrollment in the campaign: executed, pending, skipped or failed, with times.")
    steps.add_argument("campaign", metavar="C")
    steps.add_argument("--partner", required=True, metavar="P")
    steps.add_argument("--number", type=int, metavar="N", help="an earlier enrollment's number (default: the latest)")
    steps.set_defaults(run=_command("cmd_steps"))

    log = commands.add_parser("log", parents=[reading], help="the audit log", description="Every operation (who, what, when) and every batch the engine generated.")
    log.add_argument("--campaign", metavar="C")
    log.add_argument("--limit", type=int, metavar="N", help="only the last N entries")
    log.set_defaults(run=_command("cmd_log"))

    events = commands.add_parser("events", help="engagement, consent and trigger events")
    events_commands = events.add_subparsers(dest="events_command", metavar="SUBCOMMAND", required=True)
    events_import = events_commands.add_parser("import", parents=[reading], help="import a JSONL events file",
                                               description="Import events (SPEC §8). Bad lines are reported with their line number and skipped; an event imported before counts once. "
                                                           "When engine.yaml lists users, the importer needs the events or marketing role; the audit log records who imported. "
                                                           "On the local command line --as is a declaration, not authentication (the web API's keys are).")
    events_import.add_argument("file", metavar="FILE.jsonl")
    events_import.add_argument("--as", dest="user", metavar="USER", help="who imports (default: $ENGINE_USER); needs the events or marketing role when engine.yaml lists users")
    events_import.add_argument("--at", metavar="T", help="logical time of the import (default: now)")
    events_import.set_defaults(run=_command("cmd_events_import"))

    start = commands.add_parser("start", parents=[operating], help="start a campaign for a partner, now or on a date")
    start.add_argument("campaign", metavar="C")
    start.add_argument("--partner", required=True, metavar="P")
    start.add_argument("--on", metavar="DATE", help="start date (a date or a time); in the future it waits until then")
    start.set_defaults(run=_command("cmd_start"))

    for name, text in (("pause", "pause enrollments: they do not advance and are not re-enrolled"),
                       ("resume", "resume paused enrollments: what fell due meanwhile is due now"),
                       ("remove", "remove enrollments (a reset: the partner may be started or enrolled again)")):
        change = commands.add_parser(name, parents=[operating], help=text, description=text[0].upper() + text[1:] + ". Several campaigns or --partner: all or none.")
        change.add_argument("campaigns", nargs="+", metavar="C", help="one campaign, or several for the same partners")
        change.add_argument("--partner", dest="partners", action="append", required=True, metavar="P", help="repeat for several partners")
        change.set_defaults(run=_command("cmd_change"), operation=name)

    members = commands.add_parser("members", parents=[reading], help="a campaign's members and enrollees, paged",
                                  description="The campaign's target-group members and everyone enrolled in it, by partner id: "
                                              "membership, latest enrollment's status, origin (automatic, manual, follow_up, group) "
                                              "and executed steps.")
    members.add_argument("campaign", metavar="C")
    members.add_argument("--status", choices=["member", "scheduled", "active", "paused", "finished", "removed"],
                         help="only those whose latest enrollment has it (member: not enrolled yet)")
    members.add_argument("--page", type=int, default=1, metavar="N", help="the page to show (default: 1)")
    members.add_argument("--per-page", type=int, metavar="N", help="rows a page (default: 100)")
    members.set_defaults(run=_command("cmd_members", "campaign_commands"))

    startable = commands.add_parser("startable", parents=[reading], help="the campaigns a partner can still be started in",
                                    description="Every campaign, and whether `engine start` would start the partner in it now; "
                                                "why not where it would be refused.")
    startable.add_argument("--partner", required=True, metavar="P")
    startable.add_argument("--at", metavar="T", help="as of this time (default: now)")
    startable.set_defaults(run=_command("cmd_startable", "campaign_commands"))

    execute = commands.add_parser("execute", parents=[operating], help="fire a campaign's trigger now (on demand)",
                                  description="Enroll the campaign's audience now, as its trigger would (a campaign without a "
                                              "trigger: its target group's new members), and run what falls due in it. "
                                              "Refused outside its window, for a switched-off or draft campaign, and for "
                                              "event triggers.")
    execute.add_argument("campaign", metavar="C")
    execute.add_argument("--json", action="store_true", help="print one JSON document")
    execute.set_defaults(run=_command("cmd_execute", "campaign_commands"))

    for name, text, command in (("skip", "skip a pending step of one partner", "cmd_skip"),
                                ("rerun", "run an executed step of one partner again, now", "cmd_rerun")):
        one = commands.add_parser(name, parents=[operating], help=text, description=text[0].upper() + text[1:] + ".")
        one.add_argument("campaign", metavar="C")
        one.add_argument("step", metavar="STEP")
        one.add_argument("--partner", required=True, metavar="P")
        one.set_defaults(run=_command(command))

    respond = commands.add_parser("respond", parents=[operating], help="answer an activity or a mailing (a follow-up starts at once)",
                                  description="Record a response to an activity (or to a sent email or SMS) with one of its step's response keys. The activity is completed; a response with a follow_up enrolls the partner in that campaign at once.")
    respond.add_argument("target", metavar="ID", help="an activity id or a message id (engine activities, engine log)")
    respond.add_argument("response", metavar="RESPONSE", help="one of the step's response keys")
    respond.add_argument("--answer", dest="answers", action="append", metavar="QUESTION=ANSWER", help="a survey answer (repeat for several)")
    respond.add_argument("--duration", metavar="D", help="how long the contact took: 15m, 1h")
    respond.set_defaults(run=_command("cmd_respond"))

    complete = commands.add_parser("complete", parents=[operating], help="complete an activity that has no responses",
                                   description="Complete an open activity whose step lists no responses, with a result in "
                                               "your own words (an activity with responses takes one: engine respond).")
    complete.add_argument("target", metavar="ID", help="an activity id (engine activities)")
    complete.add_argument("--result", required=True, metavar="TEXT", help="what came of it, up to 200 characters")
    complete.set_defaults(run=_command("cmd_complete"))

    activities = commands.add_parser("activities", parents=[reading], help="activities for reps, with their status",
                                     description="Calls, meetings, surveys, work orders and tasks created by activity steps.")
    activities.add_argument("--campaign", metavar="C")
    activities.add_argument("--partner", metavar="P")
    activities.add_argument("--assignee", metavar="A")
    activities.add_argument("--status", choices=["open", "completed"])
    activities.set_defaults(run=_command("cmd_activities"))

    consent = commands.add_parser("consent", parents=[reading], help="a partner's consent ledger (proof of consent)",
                                  description="Every consent event of the partner (terms accepted, opted in, unsubscribed) and whether each channel may be used now, and why.")
    consent.add_argument("--partner", required=True, metavar="P")
    consent.add_argument("--at", metavar="T", help="as of this time (default: now)")
    consent.set_defaults(run=_command("cmd_consent"))

    mailings = commands.add_parser("mailings", parents=[reading], help="mailing records: what was sent to whom, when",
                                   description="Every email, SMS and letter row an executed step produced, with its delivery time and any response.")
    mailings.add_argument("--campaign", metavar="C")
    mailings.add_argument("--partner", metavar="P")
    mailings.add_argument("--channel", choices=["email", "sms", "letter"])
    mailings.set_defaults(run=_command("cmd_mailings"))

    outbox = commands.add_parser("outbox", parents=[reading], help="messages and their delivery: queued, sent, failed",
                                 description="The store's outbox: every message a step committed, with its delivery state (queued with attempts and the next attempt's time, sent, failed with the reason).")
    outbox.add_argument("--status", choices=["queued", "sent", "failed"])
    outbox.add_argument("--channel", choices=["email", "sms", "letter"])
    outbox.add_argument("--campaign", metavar="C")
    outbox.add_argument("--partner", metavar="P")
    outbox.set_defaults(run=_command("cmd_outbox"))

    stats = commands.add_parser("stats", parents=[reading], help="sent, opens, clicks, bounces, read per step; In-Campaign %%",
                                description="Per step and language: sent, opens and clicks (total and unique), bounces, and for pop-ups read / unread; and the campaign's In-Campaign %.")
    stats.add_argument("campaign", metavar="C")
    stats.set_defaults(run=_command("cmd_stats"))

    alerts = commands.add_parser("alerts", parents=[reading], help="In-Campaign %% alerts",
                                 description="Alerts raised when a campaign's In-Campaign % dropped below monitor.in_campaign_min, and when they cleared.")
    alerts.add_argument("--campaign", metavar="C")
    alerts.add_argument("--open", action="store_true", help="only alerts not cleared yet")
    alerts.set_defaults(run=_command("cmd_alerts"))

    popups = commands.add_parser("popups", parents=[reading], help="a partner's pop-ups (message center), or those a page shows",
                                 description="Every pop-up of the partner (the message center). With --page: the unread pop-ups that show on that portal page.")
    popups.add_argument("--partner", required=True, metavar="P")
    popups.add_argument("--page", metavar="PAGE")
    popups.add_argument("--unread", action="store_true", help="only those not marked read")
    popups.set_defaults(run=_command("cmd_popups"))

    portal_link = commands.add_parser("portal-link", parents=[reading], help="a signed link to a partner's message center, for the portal",
                                      description="Print BASE/m/TOKEN (web.base_url): the partner's message center, for a partner "
                                                  "portal to show in an iframe (allow the portal's origin in web.frame_ancestors). "
                                                  "The link opens this partner's pop-ups only, lets the partner mark them read, "
                                                  "and stops working after --days. Needs the signing key (web.secret_env).")
    portal_link.add_argument("partner", metavar="P", help="the partner whose messages it opens")
    portal_link.add_argument("--page", metavar="NAME", help="the portal page it is shown on: only the unread pop-ups that name it are offered for reading (default: every unread pop-up)")
    portal_link.add_argument("--days", type=int, metavar="N", help="how long the link works, 1 to 366 days (default 90)")
    portal_link.set_defaults(run=_command("cmd_portal_link"))

    popup = commands.add_parser("popup", help="pop-up actions")
    popup_commands = popup.add_subparsers(dest="popup_command", metavar="SUBCOMMAND", required=True)
    popup_read = popup_commands.add_parser("read", parents=[state], help="mark a pop-up read for a partner",
                                           description="The partner read the pop-up: it stops showing on its pages and stays in the message center. "
                                                       "When engine.yaml lists users, this needs the marketing or events role; the audit log records who marked it. "
                                                       "On the local command line --as is a declaration, not authentication (the web API's keys are).")
    popup_read.add_argument("popup", metavar="ID")
    popup_read.add_argument("--partner", required=True, metavar="P")
    popup_read.add_argument("--as", dest="user", metavar="USER", help="who marks it read (default: $ENGINE_USER); needs the marketing or events role when engine.yaml lists users")
    popup_read.add_argument("--at", metavar="T", help="logical time (default: now)")
    popup_read.set_defaults(run=_command("cmd_popup_read"))

    draft = commands.add_parser("draft", parents=[operating], help="return a scheduled one-shot campaign to draft",
                                description="A one-shot (trigger: at) campaign that has not started sending stops being scheduled until its file is edited; edit its audience, and the next tick schedules it again.")
    draft.add_argument("campaign", metavar="C")
    draft.set_defaults(run=_command("cmd_draft"))

    test = commands.add_parser("test", parents=[common], help="dry run of a campaign for some partners: rulesets, steps, rendered messages",
                               description="Run the campaign for the given partners (or the first five of its audience) from --at on, without touching the store: which rulesets match, the steps with their logical times, the rendered messages, the reasons for skips. A run without failures records a pass for the campaign's current content (see engine check).")
    test.add_argument("campaign", metavar="C")
    test.add_argument("--partner", dest="partners", action="append", metavar="P", help="a partner of the partner source (repeat for several)")
    test.add_argument("--sample", metavar="FILE", help="sample records (.csv or .jsonl with the partner schema) instead of the partner source")
    test.add_argument("--at", metavar="T", help="when the run starts (default: now); a cron campaign starts at its next firing after it, an at campaign at its at time")
    test.add_argument("--show-body", action="store_true", help="print each rendered message in full (--json always has them)")
    test.add_argument("--json", action="store_true", help="print one JSON document")
    test.set_defaults(run=_command("cmd_test", "review_commands"))

    explain = commands.add_parser("explain", parents=[reading], help="why a partner does or does not match, sub-expression by sub-expression",
                                  description="Evaluate the campaign's rulesets, groups, exclusions, consent and trigger eligibility for one partner, showing each sub-expression's value and its place in the file.")
    explain.add_argument("campaign", metavar="C")
    explain.add_argument("--partner", required=True, metavar="P")
    explain.add_argument("--at", metavar="T", help="as of this time (default: now)")
    explain.set_defaults(run=_command("cmd_explain", "review_commands"))

    plan = commands.add_parser("plan", parents=[reading], help="what the current files would change in the store (exit 4 if anything)",
                               description="Against the store: campaigns new, switched on or off, or broken; partners newly matching or no longer matching each audience; enrollments whose next step left the file; locked campaigns that were edited; the next firing of each cron and at campaign, and whom it would enroll. Exit 0 when nothing would change, 4 when something would.")
    plan.add_argument("--at", metavar="T", help="as of this time (default: now)")
    plan.set_defaults(run=_command("cmd_plan", "review_commands"))

    diff = commands.add_parser("diff", parents=[common], help="semantic diff of two campaign files or git revisions",
                               description="What changed between two versions of a campaign: rulesets, steps (added, removed, moved, changed by field), trigger, window, responses. Each side is a file or REV:path in the workspace's git repository. With --textconv FILE: a flat rendering of one file for git's diff driver (see README).")
    diff.add_argument("old", metavar="OLD", nargs="?")
    diff.add_argument("new", metavar="NEW", nargs="?")
    diff.add_argument("--json", action="store_true", help='print {"changes": [{"path", "kind", "old", "new", "line"}]}')
    diff.add_argument("--textconv", metavar="FILE", help="print FILE as one 'path = value' line per setting (for git diff)")
    diff.set_defaults(run=_command("cmd_diff", "review_commands"))

    group = commands.add_parser("group", parents=[operating], help="change a campaign's target group (members the next tick enrolls)",
                                description="Change the campaign's manual target group. ACTION and its ARGUMENT: add-group G, remove-group G (groups/G.csv), "
                                            "copy-campaign C2, remove-campaign C2, add-filter EXPR, keep-filter EXPR, add P, remove P, "
                                            "dedupe email|company|opt-outs. The next tick enrolls new members; a removed member's "
                                            "enrollment that the target group started is removed with them (reason target_group).")
    group.add_argument("campaign", metavar="C")
    group.add_argument("action", metavar="ACTION", choices=["add-group", "remove-group", "copy-campaign", "remove-campaign", "add-filter", "keep-filter", "add", "remove", "dedupe"])
    group.add_argument("argument", metavar="ARGUMENT", help="a group, a campaign, a filter expression, a partner, or email|company|opt-outs")
    group.add_argument("--dry-run", action="store_true", help="list who would be added or go, and whose enrollment would end; change nothing")
    group.add_argument("--json", action="store_true", help="print one JSON document")
    group.set_defaults(run=_command("cmd_group"))
    serve = commands.add_parser("serve", parents=[state], help="the web process: links in messages, ESP webhooks, the API, and ticks",
                                description="Serve the public routes (unsubscribe, preferences, open pixel, click redirects), the API "
                                            "(/api/..., OpenAPI at /openapi.json) and the ESP webhooks, and tick on the wall clock in "
                                            "the background. Needs the signing key in the environment variable that web.secret_env "
                                            "names (default ENGINE_SECRET). SIGTERM or Ctrl-C finishes the running tick, then stops.")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--tick-every", default="1m", metavar="DURATION",
                       help="how often to tick in the background (default 1m; 0 = never: another process ticks)")
    serve.set_defaults(run=_command("cmd_serve"))

    apikey = commands.add_parser("apikey", parents=[state], help="API keys for the web API: create, list, revoke",
                                 description="An API key acts as its user (engine.yaml's users), with that user's roles, in the audit log. "
                                             "create prints the key once; the store keeps only a hash.")
    apikey_actions = apikey.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = apikey_actions.add_parser("create", help="make a key for USER and print it once")
    create.add_argument("user", metavar="USER")
    create.add_argument("--json", action="store_true", help="print one JSON document")
    listing = apikey_actions.add_parser("list", help="every key: id, user, created, last used, revoked")
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    revoke = apikey_actions.add_parser("revoke", help="revoke a key: refused from the next request on")
    revoke.add_argument("key_id", metavar="ID")
    apikey.set_defaults(run=_command("cmd_apikey"))
    _identifiers(parser)
    return parser


IDENTIFIERS = ("campaign", "campaigns", "partner", "partners", "step", "popup")  # argument dests that name something


def identifier(text: str) -> str:
    """A campaign, partner, step or pop-up id on the command line, without surrounding
    whitespace (as the partner source reads ids); an empty or blank one is a usage error."""
    value = text.strip()
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _identifiers(parser: argparse.ArgumentParser) -> None:
    """Every argument of every command that names a campaign, partner, step or pop-up is read
    with :func:`identifier`: the one place that rule lives, for the commands added later too."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _identifiers(sub)
        elif action.dest in IDENTIFIERS and action.type is None:
            action.type = identifier


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # an argument that is not UTF-8 is echoed escaped, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    arguments = list(sys.argv[1:] if argv is None else argv)
    for argument in arguments:  # bytes that are not UTF-8 arrive as lone surrogates: a file's name
        if first_surrogate(argument) is not None and not os.path.lexists(argument):  # may be any bytes, text not
            print(f"engine: error: the argument {shown(argument)} is not UTF-8 text", file=sys.stderr)
            return USAGE_ERROR
    parser = build_parser()
    args = parser.parse_args(arguments)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except _raised_by("campaigns.enrollment", "Refused") as exc:
        print(f"engine: refused: {exc.message}", file=sys.stderr)
        return REFUSED
    except StoreBusy as exc:
        print(f"engine: refused: {exc}; try again", file=sys.stderr)
        return REFUSED
    except _raised_by("sqlite3", "Error") as exc:  # the store's file failed (locked too long, disk full, damaged)
        problem = store_failure(exc)
        print(f"engine: {'refused' if isinstance(problem, StoreBusy) else 'error'}: {problem}", file=sys.stderr)
        return REFUSED if isinstance(problem, StoreBusy) else INPUT_ERROR
    except (UnknownName, StoreError, ConfigError) as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return INPUT_ERROR
    except _raised_by("dsl.diagnostics", "SourceError") as exc:
        print_diagnostics(exc.diagnostics, sys.stderr)
        return INPUT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`engine log | head`): not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the final flush is quiet
        return OK
    except Exception as exc:  # a bug, not bad input: say so in one line, details on demand
        if os.environ.get("ENGINE_DEBUG"):
            import traceback

            traceback.print_exc()
        print(f"engine: internal error: {type(exc).__name__}: {exc} (set ENGINE_DEBUG=1 for details)", file=sys.stderr)
        return INPUT_ERROR

