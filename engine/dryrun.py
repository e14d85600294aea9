"""`engine test`: a dry run of one campaign for some partner records, from a logical time on,
without touching the store (SPEC §1 "a Test function before launch", §9).

For each partner it says which rulesets and groups match, what excludes them, and, when they
would be enrolled, every step with its logical time and outcome: the message it would send
(rendered in the partner's language) or why it would be skipped or fail. The decisions are the
tick's own (:mod:`engine.tick`): the same window, exit, condition, exclusion and consent rules in
the same order, and the same renderer (:func:`engine.steps.execute`).

A run with no failed step records a *pass* for the campaign file's current content hash in
``campaigns/.tested.json``, a file committed with the campaigns (``{campaign: {"hash": ...}}``,
see :func:`record_pass`), so that the launch checklist of ``engine check``
(:mod:`campaigns.checklist`), which warns about active campaigns whose current content never
passed, gives the same answer on every clone.

Decisions where SPEC is silent:

- The records are the workspace's partner source as it is now (not the store's last import),
  or a sample file (``.csv`` or ``.jsonl``, the same schema). A source with errors is refused
  (:class:`SourceError`), as a tick refuses to import one. Without partners or a sample, the
  first five partners of the audience (source order, after exclusions and dedupe) are shown.
- A dry run has no history: the partner is in no campaign (``in_campaign``/``was_in_campaign``
  are false), has opened, clicked or bounced nothing and given no response, has no consent
  ledger entry (consent is the channel's expression) and no undeliverable address. Static
  groups (``in_group``) are read from groups/. Reenroll and exclusivity are not asked (no
  history to ask them about).
- ``enrolls`` says whether the partner is in the audience: a ruleset or group matches and
  nothing excludes them (engine.yaml's ``exclude``, ``audience.exclude``, test contacts with
  ``include_test: false``, or ``dedupe`` against the other records, which is reported as
  ``dedupe (email): duplicate of p015``). A trigger's own condition on an event is not asked.
  Drafts (``active: false``) can be tested: that is what testing before launch is for.
- The enrollment starts when the campaign's trigger would enroll the partner: a ``cron``
  campaign at the cron's first firing at or after ``at`` (on the campaign's clock; None, and
  nobody enrolled, when it does not fire in the ten years after ``at``), an ``at`` campaign at its
  ``at`` time (or at ``at`` when that time is already past: a campaign first seen active after its
  time fires once, at that tick), an ``event`` campaign at ``at`` (the event's time), an
  ``audience`` campaign at ``at`` (the tick that samples it). A campaign with no trigger enrolls
  nobody by itself (manual starts, follow-ups and its target group do): its partners are marked
  ``"by_itself": false`` with a ``note`` saying so, and their steps are those of a start at ``at``.
  The audience (and the default sample) is taken as of the start, as the tick that fires does.
- The first step is due at the start, each wait counts from the step before it, a step due
  before the window's start waits for it, and a step due after its end closes the enrollment
  (status ``window_closed``, no later steps). ``exit_when`` and ``exit_on_audience_loss`` are
  asked as each step falls due (status ``exit`` / ``audience_lost``), as the record is now. A failed step (a template error) does not stop the
  ones after it.
- Experiments and policies are the tick's: a split sends the partner down the path the hash
  gives, a message step shows the variant they would get, a held-out partner's message steps are
  skipped (``holdout``), and a message due in quiet hours or on a day not in ``send_days`` is
  shown at the instant it would go, with ``held`` saying which rule moved it and from when.
  Frequency caps count the messages of the path shown (a dry run has no others: the partner's
  messages from other campaigns are not known to it; ``engine explain`` shows a cap that held a
  real step).
- A branch is evaluated at its due time like the tick does (with no history, ``opened()`` and
  ``response()`` say false and null; ``variant()`` and ``split()`` what the path so far chose),
  and the steps it jumps over are listed as skipped. A
  wait-for is asked once, when it is reached: true, the path goes on at once; false, it waits its
  whole ``at_most`` (a dry run has no later ticks at which the condition could turn true).
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping
from zoneinfo import ZoneInfo

from campaigns.checklist import content_hash as file_content_hash
from campaigns.enrollment import FinishReason, SkipReason, window_opens
from campaigns.flow import END
from campaigns.policy import (Hold, assign, cap_allows, cap_detail, cap_frees, held_out, is_message,
                             sending_hold, weights)
from campaigns.schedule import at_fire_time, next_cron_firing
from campaigns.workspace import Workspace, load_workspace
from dsl.diagnostics import SourceError, did_you_mean, error
from dsl.records import PartnerSource, read_partners
from dsl.runtime import Context
from dsl.source import Span

from .clock import aware, from_iso, iso, maybe_iso
from .errors import UnknownName

if TYPE_CHECKING:  # the dry run imports these when it runs: `engine check` reads only the passes (below)
    from .compiled import CompiledCampaign, CompiledWorkspace
    from .steps import Effects

TESTED_FILE = ".tested.json"  # in campaigns/, committed with the campaign files
DEFAULT_SAMPLE_SIZE = 5


# --- the dry run ----------------------------------------------------------------------------------


def dry_run(workspace_root: Path, campaign_id: str, partner_ids: list[str] | None, sample: Path | None,
            at: datetime) -> dict[str, Any]:
    """The campaign ``campaign_id`` run for those partners from ``at`` on, as JSON-ready data::

        {"campaign", "at", "content_hash", "passed", "warnings": [str],
         "trigger": {"kind": "cron"|"at"|"event"|"audience"|None, "starts_at": iso|None,
                     "cron"|"at"|"event": the trigger's value (for those kinds)},
         "partners": [{"partner", "rulesets": [name], "groups": [name], "excluded_by": str|None,
                       "enrolls": bool, "by_itself": bool, "note": str|None,
                       "finished": {"reason", "at"}|None,
                       "steps": [{"step", "kind", "at", "status", "reason", "error", "message"}]}]}

    ``starts_at`` is when the trigger would enroll them (see the module's docstring); ``enrolls``
    says whether the partner is in the audience then, ``by_itself`` whether the campaign's
    trigger would enroll them without anyone starting them (false for every partner of a
    campaign with no trigger, or of a cron that does not fire again), and ``note`` says why not.

    ``status`` is ``would_execute`` (``message`` is what it renders), ``skipped`` (``reason``:
    condition, excluded, no_consent, no_address), ``failed`` (``reason`` template_error, the
    message in ``error``), or ``window_closed`` / ``exit`` / ``audience_lost`` (the enrollment
    ends there). Records a pass (:func:`record_pass`) when no step failed.

    Raises :class:`UnknownName` for an unknown campaign or partner, :class:`SourceError` for
    errors in engine.yaml, in the campaign's file or in the partner records."""
    root = Path(workspace_root)
    at = aware(at)
    plan, compiled = _load(root, campaign_id)
    hashed = file_content_hash(plan.workspace.files[campaign_id])
    source = _read_source(plan.workspace, sample)
    records = source.records
    id_field = plan.id_field
    by_id = {str(r[id_field]): r for r in records if r.get(id_field) is not None}
    trigger, starts_at = trigger_start(compiled, at)
    when = starts_at or at  # the audience as the firing tick sees it
    runner = _DryRun(plan, compiled, records)
    if partner_ids is None:
        chosen = runner.audience(when)[:DEFAULT_SAMPLE_SIZE]
    else:
        chosen = list(dict.fromkeys(str(p) for p in partner_ids))
        for pid in chosen:
            if pid not in by_id:
                where = f"sample {sample}" if sample is not None else "the partner source"
                raise UnknownName(f"unknown partner '{pid}' (not in {where}){did_you_mean(pid, list(by_id))}")
    partners = [runner.partner(by_id[pid], pid, when, trigger, starts_at is not None) for pid in chosen]
    passed = not any(s["status"] == "failed" for p in partners for s in p["steps"])
    if passed:
        try:
            record_pass(root, campaign_id, hashed)
        except OSError as exc:  # a read-only checkout: the run is still worth its output
            runner.warnings.append(f"the pass was not recorded in campaigns/{TESTED_FILE}: "
                                   f"{exc.strerror or exc}")
    return {"campaign": campaign_id, "at": iso(at), "content_hash": hashed, "passed": passed,
            "warnings": list(dict.fromkeys(runner.warnings)), "trigger": trigger, "partners": partners}


def trigger_start(compiled: CompiledCampaign, at: datetime) -> tuple[dict[str, Any], datetime | None]:
    """The campaign's trigger as ``engine test`` reports it, and when it would start enrollments
    for a run from ``at`` (None: a cron that does not fire in the ten years after ``at``)."""
    trigger = compiled.campaign.trigger
    if trigger is not None and trigger.cron is not None:
        starts = next_cron_firing(trigger.cron, at, compiled.tz)
        return {"kind": "cron", "cron": trigger.cron, "starts_at": maybe_iso(starts)}, starts
    if trigger is not None and trigger.at is not None:
        time = aware(trigger.at if trigger.at.tzinfo is not None else trigger.at.replace(tzinfo=compiled.tz))
        starts = at_fire_time(time, at)
        return {"kind": "at", "at": iso(time), "starts_at": iso(starts)}, starts
    if trigger is not None and trigger.event is not None:
        return {"kind": "event", "event": trigger.event, "starts_at": iso(at)}, at
    return {"kind": trigger.kind if trigger is not None else None, "starts_at": iso(at)}, at


def not_by_itself(campaign_id: str, partner_id: str, trigger: Mapping[str, Any]) -> str:
    """Why a partner of the campaign's audience would not be enrolled by the campaign itself."""
    if trigger.get("kind") == "cron":
        return (f"would not be enrolled: the cron trigger \"{trigger['cron']}\" does not fire in the "
                "ten years after --at")
    return (f"would not be enrolled by itself (the campaign has no trigger): start it (engine start {campaign_id} "
            f"--partner {partner_id}) or add it to the target group (engine group {campaign_id} add {partner_id})")


def _load(root: Path, campaign_id: str) -> tuple[CompiledWorkspace, CompiledCampaign]:
    workspace = load_workspace(root, check_partners=False)
    settings_errors = [d for d in workspace.errors if Path(d.span.path).name == "engine.yaml"]
    if settings_errors:
        raise SourceError(settings_errors)
    file = workspace.files.get(campaign_id)
    if file is None:
        raise UnknownName(f"unknown campaign '{campaign_id}'{did_you_mean(campaign_id, list(workspace.files))}")
    if not file.ok:
        problems = [d for d in file.diagnostics if d.severity == "error"]
        raise SourceError(problems or [error(Span(str(file.path), 1, 1), f"campaign '{campaign_id}' cannot be loaded")])
    from .compiled import compile_workspace

    plan = compile_workspace(workspace)
    return plan, plan.campaigns[campaign_id]


def _read_source(workspace: Workspace, sample: Path | None) -> PartnerSource:
    """The sample file's records, or the workspace's partner source's; any error is refused."""
    settings = workspace.settings
    if sample is not None:
        path = Path(sample)
        missing = f"sample file '{path}' not found"
    else:
        path = workspace.root / settings.partners.source
        missing = f"partner source '{settings.partners.source}' not found"
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        span = settings.partners.span("source") if sample is None and settings.document is not None else Span(str(path), 1, 1)
        raise SourceError(error(span, missing)) from None
    source = read_partners(str(path), text, settings.partners.types(), settings.partners.id, ZoneInfo(settings.timezone))
    if not source.ok:
        raise SourceError([d for d in source.diagnostics if d.severity == "error"])
    return source


MAX_HOLDS = 20  # moves of one step a dry run follows (quiet hours, send days, a deferring cap)


@dataclass(frozen=True)
class DryFacts:
    """What expressions may ask about a partner in a dry run: the workspace's static groups,
    and no history at all (in no campaign, nothing opened, clicked, bounced or answered)."""

    groups: Mapping[str, frozenset[str]]
    id_field: str
    chosen: dict[str, str] = field(default_factory=dict)  # step → the variant or path the path so far chose

    def in_group(self, partner: Mapping, name: str) -> bool:
        return str(partner.get(self.id_field)) in self.groups.get(name, ())

    def in_campaign(self, partner: Mapping, campaign_id: str) -> bool:
        return False

    opened = clicked = bounced = responded = in_campaign

    def was_in_campaign(self, partner: Mapping, campaign_id: str, within: timedelta | None = None) -> bool:
        return False

    def response(self, partner: Mapping, step_id: str) -> str | None:
        return None

    def variant(self, partner: Mapping, step_id: str) -> str | None:
        return self.chosen.get(step_id)

    split = variant


class _DryRun:
    def __init__(self, plan: CompiledWorkspace, compiled: CompiledCampaign, records: list[dict]):
        self.plan, self.compiled, self.records = plan, compiled, records
        self.facts = DryFacts(plan.groups, plan.id_field)
        self.warnings: list[str] = []
        self._kept: dict[datetime, dict[str, Mapping]] = {}

    def context(self, at: datetime) -> Context:
        return Context(now=at, tz=self.compiled.tz, facts=self.facts, warnings=self.warnings)

    def audience(self, at: datetime) -> list[str]:
        return self.compiled.audience.select(self.records, self.context(at), self.plan.groups)

    def _deduplicated(self, partner: Mapping, pid: str, at: datetime) -> str | None:
        """``dedupe (email): duplicate of p015`` when dedupe leaves the partner out."""
        audience = self.compiled.audience
        if not audience.dedupe:
            return None
        if at not in self._kept:
            from campaigns.audience import dedupe

            ctx = self.context(at)
            matching = [p for p in self.records if p.get(self.plan.id_field) is not None
                        and audience.matches(p, ctx, self.plan.groups)]
            self._kept[at] = {str(p[self.plan.id_field]): p for p in dedupe(matching, audience.dedupe, self.plan.id_field)}
        kept = self._kept[at]
        if pid in kept:
            return None
        for key in audience.dedupe:
            mine = _comparable(partner.get(key))
            for other_id, other in kept.items():
                if mine is not None and _comparable(other.get(key)) == mine:
                    return f"dedupe ({key}): duplicate of {other_id}"
        return f"dedupe ({', '.join(audience.dedupe)})"

    def partner(self, partner: Mapping, pid: str, at: datetime, trigger: Mapping[str, Any], fires: bool) -> dict[str, Any]:
        """The partner's verdict and path from ``at`` (the trigger's start); ``fires``: the
        trigger fires at ``at`` at all (a cron that never fires again does not)."""
        compiled = self.compiled
        match = compiled.audience.explain(partner, self.context(at), self.plan.groups)
        excluded_by = match.excluded_by
        if excluded_by is None and match.matches:
            excluded_by = self._deduplicated(partner, pid, at)
        enrolls = bool(match.rulesets or match.groups) and excluded_by is None
        by_itself = enrolls and fires and trigger.get("kind") is not None
        note = not_by_itself(compiled.id, pid, trigger) if enrolls and not by_itself else None
        steps: list[dict[str, Any]] = []
        finished = self._steps(partner, pid, at, steps) if enrolls and fires else None
        return {"partner": pid, "rulesets": list(match.rulesets), "groups": list(match.groups),
                "excluded_by": excluded_by, "enrolls": enrolls, "by_itself": by_itself, "note": note,
                "finished": finished, "steps": steps}

    def _steps(self, partner: Mapping, pid: str, at: datetime, out: list[dict[str, Any]]) -> dict[str, Any]:
        """Walk the enrollment the way the tick advances it (engine.advance.Advance.advance): the path
        this partner takes, branches and waits-for included."""
        compiled = self.compiled
        campaign, flow = compiled.campaign, compiled.flow
        tz = compiled.local_tz(partner)
        step_id, due = flow.first(at, tz)
        self.facts.chosen.clear()
        sent: dict[str, list[datetime]] = {}  # channel → this path's messages, as its caps count them
        while step_id is not None:
            node = flow.node(step_id)
            assert node is not None
            opens = window_opens(due, campaign.window, compiled.tz)
            if opens is None:
                out.append(_entry(node, due, str(FinishReason.WINDOW_CLOSED), None))
                return {"reason": str(FinishReason.WINDOW_CLOSED), "at": iso(due)}
            due = opens
            reason = self._exit_reason(partner, due)
            if reason is not None:
                out.append(_entry(node, due, reason, None))
                return {"reason": reason, "at": iso(due)}
            target, jump = None, SkipReason.BRANCH
            if node.kind == "branch":
                chosen = compiled.branch_target(node.key, partner, self.context(due))
                number, target = chosen if chosen is not None else (None, None)
                out.append({**_entry(node, due, "would_execute", None), "case": number, "goto": target})
            elif node.kind == "split":
                path = assign(compiled.id, node.key, pid, weights(node.item.split))
                target, jump = node.item.split[path].goto, SkipReason.SPLIT
                self.facts.chosen[node.key] = path
                out.append({**_entry(node, due, "would_execute", None), "path": path, "goto": target})
            elif node.kind == "wait_for":
                wait = node.wait_for
                holds = compiled.wait_for[node.key].test(partner, self.context(due))
                ended = due if holds else due + wait.at_most
                out.append({**_entry(node, due, "would_execute", None), "ended_by": "condition" if holds else "at_most",
                            "until": iso(ended)})
                due = ended
            elif is_message(node.kind) and held_out(compiled.id, pid, campaign.holdout):
                out.append(_entry(node.item, due, "skipped", str(SkipReason.HOLDOUT)))
            else:
                entry = self._policed(node.item, partner, pid, due, tz, sent)
                due = from_iso(entry["at"])
                out.append(entry)
            if target is None:
                step_id, due = flow.after(step_id, due, tz)
                continue
            for skipped in flow.jumped_over(step_id, target):
                out.append(_entry(skipped, due, "skipped", str(jump)))
            if target == END:
                return {"reason": str(FinishReason.COMPLETED), "at": iso(due)}
            step_id, due = flow.at(target, due, tz)
        return {"reason": str(FinishReason.COMPLETED), "at": iso(due)}

    def _policed(self, step, partner: Mapping, pid: str, due: datetime, tz, sent: dict[str, list[datetime]]) -> dict:
        """What the step does with its policies (engine.advance): quiet hours and send days move
        it (``held`` says from when and by which rule), and a frequency cap, counting this
        path's own messages, skips or defers it."""
        rules, first_due, held = self.compiled.rules, due, None
        for _ in range(MAX_HOLDS):
            hold = sending_hold(due, tz, rules) if is_message(step.kind) else None
            if hold is None:
                entry = self._outcome(step, partner, pid, due)
                cap = rules.capped(step.kind) if entry["status"] == "would_execute" else None
                mine = sent.setdefault(step.kind, [])
                if cap is None or cap_allows(due, mine, cap):
                    if cap is not None:
                        mine.append(due)
                    break
                hold = Hold("frequency_cap", cap_detail(step.kind, cap), cap_frees(due, mine, cap))
                if rules.on_cap != "defer":
                    entry = {**_entry(step, due, "skipped", str(SkipReason.FREQUENCY_CAP)), "rule": hold.detail}
                    break
            held = {"rule": hold.rule, "detail": hold.detail, "from": iso(first_due), "until": maybe_iso(hold.until)}
            due = hold.until
        else:  # moved again and again (a cap deferring into quiet hours and back): shown where it stopped
            entry = self._outcome(step, partner, pid, due)
        if held is not None:
            entry["held"] = held
        return entry

    def _exit_reason(self, partner: Mapping, due: datetime) -> str | None:
        compiled = self.compiled
        ctx = self.context(due)
        if compiled.exit_when is not None and compiled.exit_when.test(partner, ctx):
            return str(FinishReason.EXIT)
        if compiled.campaign.exit_on_audience_loss and not compiled.audience.matches(partner, ctx, self.plan.groups):
            return str(FinishReason.AUDIENCE_LOST)
        return None

    def _outcome(self, step, partner: Mapping, pid: str, due: datetime) -> dict[str, Any]:
        """What the step would do as of ``due`` (the checks of engine.advance.Advance.effects)."""
        compiled, plan = self.compiled, self.plan
        ctx = self.context(due)
        when = compiled.step_when.get(step.id)
        if when is not None and not when.test(partner, ctx):
            return _entry(step, due, "skipped", str(SkipReason.CONDITION))
        if plan.exclude is not None and plan.exclude.test(partner, ctx):
            return _entry(step, due, "skipped", str(SkipReason.EXCLUDED))
        if step.kind in ("email", "sms") and not compiled.campaign.transactional \
                and not compiled.audience.consents(step.kind, partner, None, ctx):
            return _entry(step, due, "skipped", str(SkipReason.NO_CONSENT))
        from .links import links_for, signer
        from .steps import Job, execute

        job = Job(compiled.id, compiled.campaign, None, step, partner, pid, 0, 1, 1, due, compiled.tz,
                  plan.templates_dir, plan.settings, links=links_for(plan.settings.web, signer(plan.settings.web, offline=True)))
        effects = execute(job)
        if effects.status == "executed":
            message = _message(step.kind, effects)
            if effects.detail.get("variant") is not None:
                message["variant"] = self.facts.chosen[step.id] = effects.detail["variant"]
            return _entry(step, due, "would_execute", None, message=message)
        if effects.status == "failed":
            return _entry(step, due, "failed", str(effects.reason), error=effects.detail.get("error"))
        return _entry(step, due, effects.status, str(effects.reason) if effects.reason else None)


def _entry(step, at: datetime, status: str, reason: str | None, *, message: dict | None = None,
           error: str | None = None) -> dict[str, Any]:
    """One step of the path (a step of the file or a node of its flow)."""
    key = getattr(step, "key", None) or step.id
    return {"step": key, "kind": step.kind, "at": iso(at), "status": status, "reason": reason,
            "error": error, "message": message}


def _message(kind: str, effects: Effects) -> dict[str, Any]:
    """The rendered message, without what the step entry already says (step, partner, time)."""
    if kind == "email":
        m = effects.messages[0]
        message = {"channel": "email", "to": m["to"], "subject": m["subject"], "body": m["body"],
                   "language": m["language"], "html": effects.html}
        if "bcc" in m:
            message["bcc"] = m["bcc"]
        return message
    if kind == "sms":
        m = effects.messages[0]
        return {"channel": "sms", "to": m["to"], "text": m["body"], "language": m["language"]}
    if kind == "letter":
        m = effects.messages[0]
        return {"channel": "letter", "body": m["body"], "language": m["language"]}
    if kind == "popup":
        p = effects.popup or {}
        return {"channel": "popup", "pages": p.get("pages"), "title": p.get("title"), "body": p.get("body"),
                "language": p.get("language")}
    a = effects.activity or {}
    return {"channel": "activity", "kind": a.get("kind"), "assignee": a.get("assignee"), "subject": a.get("subject"),
            "responses": a.get("responses")}


def _comparable(value: object) -> str | None:
    """An email or company as dedupe compares them (campaigns.audience): trimmed, casefolded."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().casefold()


# --- passes ---------------------------------------------------------------------------------------


def tested_path(workspace_root: Path) -> Path:
    return Path(workspace_root) / "campaigns" / TESTED_FILE


def record_pass(workspace_root: Path, campaign_id: str, content_hash: str) -> None:
    """Remember that the campaign's content ``content_hash`` passed ``engine test``, in
    ``campaigns/.tested.json``: ``{campaign: {"hash": sha256}}``, committed with the campaigns so
    that every clone's launch checklist gives the same answer.

    The file is deterministic, for readable diffs: sorted keys, two-space indentation, a
    trailing newline, no time or user (a second pass of the same content changes nothing, and
    the file is then not written at all); one object per campaign, so that two branches that
    test different campaigns touch lines an unchanged line apart and merge cleanly. Campaigns
    whose file is gone are dropped when it is written. It is replaced atomically (a temporary
    file beside it, then renamed) under a lock on campaigns/, so that two runs at once both
    count. OSError when it cannot be written (a read-only checkout)."""
    path = tested_path(workspace_root)
    with _locked(path.parent):
        try:
            before = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            before = None
        passes = {cid: {"hash": h} for cid, h in _hashes(_parse(before)).items()
                  if cid == campaign_id or _has_file(path.parent, cid)}
        passes[campaign_id] = {"hash": content_hash}
        text = json.dumps(passes, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        if text == before:
            return
        temporary = path.with_name(f"{TESTED_FILE}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with open(temporary, "x", encoding="utf-8", newline="\n") as out:
                out.write(text)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise


def _has_file(campaigns: Path, campaign_id: str) -> bool:
    return any((campaigns / f"{campaign_id}{suffix}").is_file() for suffix in (".yaml", ".yml"))


def tested_hash(workspace_root: Path, campaign_id: str) -> str | None:
    """The content hash of the campaign's last passing `engine test`, or None."""
    return tested_hashes(workspace_root).get(campaign_id)


def tested_hashes(workspace_root: Path) -> dict[str, str]:
    """Every campaign's last passing content hash, from ``campaigns/.tested.json``: what
    :func:`campaigns.checklist.launch_checklist` takes as ``tested``. A missing or damaged file
    is no passes (it is rewritten whole at the next pass). Passes recorded before the record
    moved into the campaigns (``.engine/tested.json``, one clone's own) are not read."""
    try:
        text = tested_path(workspace_root).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return {}
    return _hashes(_parse(text))


def _parse(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _hashes(data: Any) -> dict[str, str]:
    if not isinstance(data, dict):
        return {}
    return {cid: entry["hash"] for cid, entry in data.items()
            if isinstance(cid, str) and isinstance(entry, dict) and isinstance(entry.get("hash"), str)}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive lock on the directory itself (no lock file left behind)."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: the atomic rename still keeps the file whole
        yield
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
