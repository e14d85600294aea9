"""``engine explain C --partner P``: why a partner is or is not in a campaign, down to the value of
every sub-expression (like ``opa eval --explain``), as JSON-ready data and as text.

:func:`explain_partner` asks what the tick asks, as of ``at``, with the same compiled semantics
(through :func:`dsl.explain.explain`) and the same store facts:

- ``rulesets``: each ruleset of the audience, whether it matches, and its trace;
- ``groups``: the campaign's static groups (groups/*.csv) that list the partner; ``member`` is
  the origin of the partner's membership in the campaign's target group (``engine group``), or
  null (members are enrolled apart from the audience, so it does not count for ``match``);
- ``exclude``: every exclusion in the order the engine asks them (engine.yaml's ``exclude``,
  ``audience.exclude``, inactive contacts unless ``include_inactive``, test contacts when
  ``include_test`` is false), each with its trace;
  ``match`` is true when the partner IS excluded, ``by`` names the first that applies;
- ``consent``: each gated channel (email, sms) the campaign's steps send on: the consent ledger's
  latest entry, else engine.yaml's consent expression (with its trace), else no;
- ``trigger``: whether the trigger would enroll the partner: the audience matches (a ruleset or a
  group, no exclusion), and :func:`campaigns.enrollment.eligible_for_trigger` allows it given the
  partner's enrollments in every campaign (current enrollment, ``reenroll``, ``exclusive``,
  ``previously_treated``), the partner is not a duplicate the audience's ``dedupe`` drops, and the
  campaign can still enroll (it has a trigger, is active, its window has not closed, a one-shot
  ``at`` has not fired). An event trigger's ``when`` needs an event, so its trace is empty.
- ``flow`` (only for a campaign with a ``branch`` or a ``wait: {for}``): each of them in step
  order. A branch: every case evaluated as of ``at`` (all of them, so that the explanation shows
  each one), the case that wins (the first that holds; an ``else`` always holds; none: the next
  step) and where it goes. A wait-for: its condition. Both as the tick asks them (the facts of
  the partner's current enrollment: ``response()``, ``opened()``...; none when not enrolled).
  And what the store says of the partner's latest enrollment there: the step run it left (the
  case the tick chose then, how a wait ended, or that it was jumped over), whether it is due at
  that step, and whether it is waiting at a wait-for now (since when; its ``at_most`` deadline).

``eligible`` is: the audience matches, no exclusion applies, and the enrollment rules allow it
(the :class:`~campaigns.enrollment.Verdict`). Consent is not part of it: it is asked at each
message step, and a partner without consent is enrolled and has those steps skipped.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from campaigns.audience import GATED_CHANNELS, INACTIVE_CONTACT, INACTIVE_RULE, excludes_inactive
from campaigns.enrollment import PastEnrollment, eligible_for_trigger, window_opens
from campaigns.flow import Node
from campaigns.model import Located
from dsl.diagnostics import did_you_mean
from dsl.explain import Explained, duration_text, explain, format_value
from dsl.parser import parse
from dsl.runtime import Context

from .clock import aware, iso
from .compiled import CompiledCampaign, CompiledWorkspace
from .errors import UnknownName
from .partners import PartnerBook
from .store import Enrollment, Store
from .facts import StoreFacts

CURRENT_STATUSES = ("scheduled", "active", "paused")
ENGINE_EXCLUDE = "exclude (engine.yaml)"  # the names CompiledAudience.excluded_by gives
AUDIENCE_EXCLUDE = "audience.exclude"
TEST_CONTACT = "test contact"


def explain_partner(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_id: str, partner_id: str,
                    at: datetime) -> dict[str, Any]:
    """Why partner ``partner_id`` is or is not in campaign ``campaign_id`` as of ``at`` (aware)::

        {"campaign", "partner", "eligible": bool,
         "rulesets": [{"name", "expression", "match", "trace"}],
         "groups": {"match", "groups", "member", "trace"},
         "exclude": {"match", "by", "rules": [{"name", "expression", "file", "match", "trace"}], "trace"},
         "consent": {"match", "channels": {channel: {"match", "by", "expression", "file", "trace"}}, "trace"},
         "trigger": {"match", "kind", "reason", "when", "duplicate_of", "trace"},
         "flow": [...]}  # only when the campaign has branches or waits-for: see _flow

    Each trace is a list of ``{"expression", "value", "line", "col"}`` (see :mod:`dsl.explain`).
    :class:`UnknownName` for a campaign or partner that does not exist (with a did-you-mean)."""
    compiled = _campaign(plan, campaign_id)
    partner = _partner(store, book, partner_id)
    at = aware(at)
    campaign = compiled.campaign
    facts = StoreFacts(store, plan, compiled.id, None, at)
    ctx = Context(now=at, tz=compiled.tz, facts=facts)
    audience = campaign.audience

    rulesets = []
    for name, text in audience.rulesets.items():
        result = _explain(text, audience, ("rulesets", name), partner, ctx)
        rulesets.append({"name": name, "expression": text.strip(), "match": result.match, "trace": result.trace})

    in_groups = list(compiled.audience.member_of(partner, plan.groups))
    member = store.members(compiled.id).get(partner_id)
    groups = {"match": bool(in_groups), "groups": in_groups, "member": member, "trace": []}

    exclude = _exclusions(plan, compiled, partner, ctx)
    current = [e for e in store.enrollments_of(partner_id, compiled.id) if e.status in CURRENT_STATUSES]
    consent = _consent(store, plan, compiled, partner_id, partner, current[-1] if current else None, at)

    in_audience = any(r["match"] for r in rulesets) or groups["match"]
    past = [PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at, plan.exclusive(e.campaign))
            for e in store.enrollments_of(partner_id)]
    verdict = eligible_for_trigger(compiled.id, campaign, past, at)
    duplicate = None
    if in_audience and not exclude["match"] and verdict.ok and audience.dedupe and \
            compiled.trigger in ("audience", "cron", "at"):
        duplicate = _duplicate_of(store, plan, book, compiled, partner_id, partner, ctx)
    eligible = in_audience and not exclude["match"] and verdict.ok and duplicate is None
    reason = None
    if not in_audience:
        reason = "no ruleset matches and the partner is in none of the campaign's groups"
    elif exclude["match"]:
        reason = f"excluded by {exclude['by']}"
    elif not verdict.ok:
        reason = verdict.reason
    elif duplicate is not None:
        other = f"partner {duplicate[0]}" if duplicate[0] else "a partner the campaign has"
        reason = f"a duplicate of {other}, who has the same {duplicate[1]} (dedupe: {duplicate[1]})"
    else:
        reason = _cannot_enroll(store, compiled, at)
    trigger_when = campaign.trigger.when if campaign.trigger is not None else None
    trigger = {"match": reason is None, "kind": compiled.trigger, "reason": reason,
               "when": trigger_when.strip() if trigger_when else None,
               "duplicate_of": (duplicate[0] or None) if duplicate else None, "trace": []}

    result = {"campaign": compiled.id, "partner": partner_id, "eligible": eligible, "rulesets": rulesets,
              "groups": groups, "exclude": exclude, "consent": consent, "trigger": trigger}
    flow = _flow(store, plan, compiled, partner_id, partner, at)
    if flow:
        result["flow"] = flow
    return result


# --- the parts ------------------------------------------------------------------------------------


def _campaign(plan: CompiledWorkspace, campaign_id: str) -> CompiledCampaign:
    compiled = plan.campaigns.get(campaign_id)
    if compiled is not None:
        return compiled
    if campaign_id in plan.workspace.files:
        raise UnknownName(f"campaign '{campaign_id}' has errors and cannot run: see engine check")
    raise UnknownName(f"unknown campaign '{campaign_id}'{did_you_mean(campaign_id, list(plan.workspace.files))}")


def _partner(store: Store, book: PartnerBook, partner_id: str) -> Mapping[str, Any]:
    partner = book.get(partner_id)
    if partner is None:
        known = [pid for pid, _, present in store.partner_rows() if present]
        raise UnknownName(f"unknown partner '{partner_id}' (not in the partner source as last imported by a tick)"
                          f"{did_you_mean(partner_id, known)}")
    return partner


def _explain(text: str, owner: Located, path: tuple, partner: Mapping[str, Any], ctx: Context) -> Explained:
    """The expression at ``owner``'s ``path``, traced with positions in its YAML file."""
    document = owner.document
    where = document.scalar(owner.path + path) if document is not None else None
    return explain(parse(text, where), partner, ctx, where)


def _file(plan: CompiledWorkspace, owner: Located) -> str | None:
    """The file an expression is written in, relative to the workspace."""
    if owner.document is None:
        return None
    path = Path(owner.document.path)
    try:
        return path.relative_to(plan.root).as_posix()
    except ValueError:
        return path.as_posix()


def _exclusions(plan: CompiledWorkspace, compiled: CompiledCampaign, partner: Mapping[str, Any],
                ctx: Context) -> dict[str, Any]:
    """Every exclusion, in the engine's order; ``by`` is the first that applies (all are
    evaluated, so the explanation shows each one)."""
    settings, audience = plan.settings, compiled.campaign.audience
    rules = []
    for name, owner, text in ((ENGINE_EXCLUDE, settings, settings.exclude), (AUDIENCE_EXCLUDE, audience, audience.exclude)):
        if text is None:
            continue
        result = _explain(text, owner, ("exclude",), partner, ctx)
        rules.append({"name": name, "expression": text.strip(), "file": _file(plan, owner), "match": result.match,
                      "trace": result.trace})
    if excludes_inactive(compiled.campaign, settings):
        rules.append({"name": INACTIVE_CONTACT, "expression": INACTIVE_RULE, "file": None,
                      "match": partner.get("active") is False, "trace": []})
    if not audience.include_test:
        rules.append({"name": TEST_CONTACT, "expression": None, "file": None, "match": partner.get("test") is True,
                      "trace": []})
    by = next((r["name"] for r in rules if r["match"]), None)
    return {"match": by is not None, "by": by, "rules": rules, "trace": [step for r in rules for step in r["trace"]]}


def _gated_channels(compiled: CompiledCampaign) -> list[str]:
    """The channels that need consent which the campaign's steps send on, in step order."""
    return list(dict.fromkeys(s.kind for s in compiled.campaign.action_steps if s.kind in GATED_CHANNELS))


def _consent(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, partner_id: str,
             partner: Mapping[str, Any], enrollment: Enrollment | None, at: datetime) -> dict[str, Any]:
    """As a message step asks it (CompiledAudience.consents): the latest ledger entry, else the
    channel's consent expression, else no. The expression sees the current enrollment's facts."""
    ctx = Context(now=at, tz=compiled.tz, facts=StoreFacts(store, plan, compiled.id, enrollment, at))
    consent = plan.settings.consent
    channels: dict[str, Any] = {}
    for channel in _gated_channels(compiled):
        ledger = store.consent_latest(partner_id, channel, at)
        text = getattr(consent, channel)
        if ledger is not None:
            channels[channel] = {"match": ledger, "by": "ledger", "expression": None, "file": None, "trace": []}
        elif text is not None:
            result = _explain(text, consent, (channel,), partner, ctx)
            channels[channel] = {"match": result.match, "by": "expression", "expression": text.strip(),
                                 "file": _file(plan, consent), "trace": result.trace}
        else:
            channels[channel] = {"match": False, "by": None, "expression": None, "file": None, "trace": []}
    return {"match": all(c["match"] for c in channels.values()), "channels": channels,
            "trace": [step for c in channels.values() for step in c["trace"]]}


FLOW_KINDS = ("branch", "wait_for")


def _flow(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, partner_id: str,
          partner: Mapping[str, Any], at: datetime) -> list[dict[str, Any]]:
    """Each branch and wait-for of the campaign, in step order (empty: the campaign has none)::

        {"step", "kind": "branch", "file", "match", "case", "goto", "next",
         "cases": [{"case", "when", "goto", "match", "trace"}], "trace",
         "enrollment", "due_at", "run": {"at", "status", "reason", "case", "goto"} | None}
        {"step", "kind": "wait_for", "file", "expression", "at_most", "match", "trace",
         "enrollment", "due_at", "waiting": {"since", "until"} | None,
         "run": {"at", "status", "reason", "began", "ended_by"} | None}

    A branch's ``case``/``goto`` are what the tick would record now (``{"case", "goto"}``, the
    detail of its step run): the number (from 1) and target of the first case that holds, or
    both null when none holds and the enrollment goes on with ``next`` (the step that follows;
    null: none does, the enrollment completes). An ``else`` case has ``when`` null and always
    holds. ``match``: a case holds / the wait's condition holds; ``trace``: the cases' traces
    in order / the condition's.

    ``enrollment`` is the number of the partner's current enrollment in the campaign, else of
    their latest, else null; ``run`` its latest run of that step (``case``/``goto`` as the tick
    recorded them; ``began``/``ended_by`` of a wait that ended; a skipped one has ``reason``,
    ``branch`` when jumped over); ``due_at`` when the enrollment is due at that step next (at a
    wait-for it waits at: the ``at_most`` deadline); ``waiting`` when it waits at the wait-for
    now (``waiting_since`` and that deadline)."""
    flow = compiled.flow
    nodes = [n for n in flow.nodes if n.kind in FLOW_KINDS]
    if not nodes:
        return []
    enrollments = store.enrollments_of(partner_id, compiled.id)
    current = [e for e in enrollments if e.status in CURRENT_STATUSES]
    enrollment = current[-1] if current else enrollments[-1] if enrollments else None
    ctx = Context(now=at, tz=compiled.tz,
                  facts=StoreFacts(store, plan, compiled.id, current[-1] if current else None, at))
    runs: dict[str, Any] = {}
    if enrollment is not None:
        for run in store.step_runs(enrollment.id):  # a run under a step's old id (renamed_from) is that step's
            key = flow.resolve(run.step) or run.step
            if key not in runs or run.run >= runs[key].run:
                runs[key] = run
    here = flow.resolve(enrollment.next_step) if enrollment is not None and current else None
    file = _file(plan, compiled.campaign)
    parts = []
    for node in nodes:
        run = runs.get(node.key)
        due = enrollment.due_at if enrollment is not None and here == node.key else None
        common = {"enrollment": enrollment.number if enrollment is not None else None,
                  "due_at": iso(due) if due is not None else None}
        if node.kind == "branch":
            part = _branch_part(compiled, node, file, partner, ctx, at)
            part.update(common, run=None if run is None else {
                "at": iso(run.at), "status": run.status, "reason": run.reason,
                "case": run.detail.get("case"), "goto": run.detail.get("goto")})
        else:
            wait = node.wait_for
            result = _explain(wait.for_, wait, ("for",), partner, ctx)
            waiting = None
            if due is not None and enrollment.waiting_since is not None:
                waiting = {"since": iso(enrollment.waiting_since), "until": iso(due)}
            part = {"step": node.key, "kind": node.kind, "file": file, "expression": wait.for_.strip(),
                    "at_most": duration_text(wait.at_most), "match": result.match, "trace": result.trace}
            part.update(common, waiting=waiting, run=None if run is None else {
                "at": iso(run.at), "status": run.status, "reason": run.reason,
                "began": run.detail.get("began"), "ended_by": run.detail.get("ended_by")})
        parts.append(part)
    return parts


def _branch_part(compiled: CompiledCampaign, node: Node, file: str | None, partner: Mapping[str, Any],
                 ctx: Context, at: datetime) -> dict[str, Any]:
    """Every case of the branch, evaluated; the first that holds wins (what
    :meth:`CompiledCampaign.branch_target` decides, with each case's trace)."""
    cases = []
    for number, case in enumerate(node.item.branch, 1):
        if case.when is None:
            cases.append({"case": number, "when": None, "goto": case.target, "match": True, "trace": []})
            continue
        result = _explain(case.when, case, ("when",), partner, ctx)
        cases.append({"case": number, "when": case.when.strip(), "goto": case.target, "match": result.match,
                      "trace": result.trace})
    chosen = next((c for c in cases if c["match"]), None)
    following, _ = compiled.flow.after(node.key, at, compiled.tz)
    return {"step": node.key, "kind": node.kind, "file": file, "match": chosen is not None,
            "case": chosen["case"] if chosen else None, "goto": chosen["goto"] if chosen else None,
            "next": following, "cases": cases, "trace": [step for c in cases for step in c["trace"]]}


def _duplicate_of(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign,
                  partner_id: str, partner: Mapping[str, Any], ctx: Context) -> tuple[str, str] | None:
    """(the partner kept instead, the shared key) when the audience's dedupe drops the partner,
    as the tick selects the audience: over every partner that matches, the partners the campaign
    already has keeping their email or company."""
    campaign = compiled.campaign
    statuses = CURRENT_STATUSES
    if compiled.trigger == "audience" and campaign.reenroll == "never":
        statuses += ("finished",)
    taken = store.partners_in(compiled.id, statuses)
    already = list(book.get_many(taken).values())
    selected = compiled.audience.select(book.all(), ctx, plan.groups, already)
    if partner_id in selected:
        return None
    keepers = set(selected) | taken
    id_field = plan.id_field
    for key in compiled.audience.dedupe:
        mine = _comparable(partner.get(key))
        if mine is None:
            continue
        for other in [*already, *book.all()]:
            other_id = str(other.get(id_field))
            if other_id != partner_id and other_id in keepers and _comparable(other.get(key)) == mine:
                return other_id, key
    return "", "/".join(compiled.audience.dedupe)  # dropped for a partner whose record is gone


def _comparable(value: object) -> str | None:
    """An email or company as dedupe compares them: trimmed, case-insensitive."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().casefold()


def _cannot_enroll(store: Store, compiled: CompiledCampaign, at: datetime) -> str | None:
    """Why the campaign's trigger enrolls nobody (now), or None."""
    campaign, trigger = compiled.campaign, compiled.campaign.trigger
    if trigger is None or compiled.trigger is None:
        return "the campaign has no trigger: partners join only by engine start or as a follow-up"
    if not campaign.active:
        return "the campaign is not active (active: false)"
    if window_opens(at, campaign.window, compiled.tz) is None:
        return f"the campaign window ended on {campaign.window.end}"  # type: ignore[union-attr]
    if trigger.at is not None:
        moment = trigger.at if trigger.at.tzinfo is not None else trigger.at.replace(tzinfo=compiled.tz)
        if store.has_fired(compiled.id, "at:" + iso(moment)):
            return f"the one-shot trigger fired at {iso(moment)} already"
    return None


# --- text -------------------------------------------------------------------------------------------

YES, NO = "✓", "✗"


def render_text(result: Mapping[str, Any]) -> str:
    """The explanation for people, part by part; every traced sub-expression on its own line as
    ``line:col  expression = value``."""
    mark = lambda ok: YES if ok else NO  # noqa: E731
    lines = [f"{result['campaign']}: partner {result['partner']} is "
             f"{'eligible' if result['eligible'] else 'not eligible'}", ""]

    rulesets = result["rulesets"]
    lines.append("rulesets (any one that matches is enough):" if rulesets else "rulesets: none")
    for ruleset in rulesets:
        lines.append(f"  {mark(ruleset['match'])} {ruleset['name']}: {ruleset['expression']}")
        lines += _trace_lines(ruleset["trace"])

    groups = result["groups"]
    found = ", ".join(groups["groups"]) if groups["groups"] else "in none of the campaign's groups"
    lines.append(f"groups: {mark(groups['match'])} {found}")
    if groups.get("member"):
        lines.append(f"  member of the target group ({groups['member']})")

    exclude = result["exclude"]
    lines.append(f"exclude: {'excluded by ' + exclude['by'] if exclude['match'] else 'not excluded'}")
    for rule in exclude.get("rules", []):
        where = f"  ({rule['file']})" if rule.get("file") else ""
        text = f": {rule['expression']}" if rule.get("expression") else ": partner.test is true"
        lines.append(f"  {mark(rule['match'])} {rule['name']}{text}{where}")
        lines += _trace_lines(rule["trace"])

    consent = result["consent"]
    channels = consent.get("channels", {})
    lines.append(f"consent: {mark(consent['match'])} "
                 + ("for " + ", ".join(channels) if channels else "no step needs consent"))
    for channel, given in channels.items():
        if given["by"] == "ledger":
            how = "the consent ledger's latest entry"
        elif given["by"] == "expression":
            how = f"{given['expression']}" + (f"  ({given['file']})" if given.get("file") else "")
        else:
            how = "no ledger entry and no consent expression in engine.yaml"
        lines.append(f"  {mark(given['match'])} {channel}: {how}")
        lines += _trace_lines(given["trace"])

    trigger = result["trigger"]
    kind = trigger["kind"] or "none"
    outcome = "would enroll the partner" if trigger["match"] else f"would not enroll: {trigger['reason']}"
    lines.append(f"trigger ({kind}): {mark(trigger['match'])} {outcome}")
    if trigger.get("when"):
        lines.append(f"  and when: {trigger['when']} (needs the event; not evaluated)")

    flow = result.get("flow") or []
    if flow:
        lines.append("flow (each branch and wait-for, as a tick at this time would take it):")
    for part in flow:
        lines += _branch_lines(part) if part["kind"] == "branch" else _wait_lines(part)
    return "\n".join(lines) + "\n"


def _branch_lines(part: Mapping[str, Any]) -> list[str]:
    """``route (branch): case 2 holds → upsell``, each case with its trace, and where the partner's
    enrollment is: the case the tick chose when it passed the branch, or that it has not yet."""
    elses = {c["case"] for c in part["cases"] if c["when"] is None}

    def chose(case: int | None, goto: str | None, held: str) -> str:
        if case is None:
            return f"no case {held} → next step ({part['next'] or 'none: the enrollment completes'})"
        return f"else → {goto}" if case in elses else f"case {case} {held} → {goto}"

    lines = [f"  {part['step']} (branch): {chose(part['case'], part['goto'], 'holds')}"]
    for case in part["cases"]:
        if case["when"] is None:
            lines.append(f"    {YES} else → {case['goto']}")
        else:
            lines.append(f"    {YES if case['match'] else NO} case {case['case']}: {case['when']} → {case['goto']}")
            lines += _trace_lines(case["trace"], "          ")
    run, number = part.get("run"), part.get("enrollment")
    if run is not None and run["status"] == "executed":
        chosen = chose(run["case"], run["goto"], "held")
        lines.append(f"    enrollment {number} passed it at {run['at']}, the tick chose: {chosen}")
    else:
        lines += _position_lines(part)
    return lines


def _wait_lines(part: Mapping[str, Any]) -> list[str]:
    """``wait-open (wait for, at most 3d): ✗ the condition is false: ...``, the condition's trace,
    and where the partner's enrollment is: waiting there now, or how its wait ended."""
    holds = part["match"]
    outcome = ("the condition holds: a wait reached now ends at once" if holds else
               f"the condition is false: a wait reached now lasts until it holds, {part['at_most']} at most")
    lines = [f"  {part['step']} (wait for, at most {part['at_most']}): {YES if holds else NO} {outcome}",
             f"    {YES if holds else NO} {part['expression']}"]
    lines += _trace_lines(part["trace"], "          ")
    run, number, waiting = part.get("run"), part.get("enrollment"), part.get("waiting")
    if waiting is not None:
        lines.append(f"    enrollment {number} is waiting here since {waiting['since']}, until {waiting['until']} "
                     f"at most" + ("; the condition holds: the next tick ends the wait" if holds else ""))
    elif run is not None and run["status"] == "executed":
        how = "its condition held" if run["ended_by"] == "condition" else f"its at_most ({part['at_most']}) passed"
        if run["began"] == run["at"]:
            lines.append(f"    enrollment {number} passed it at once at {run['at']}: {how}")
        else:
            lines.append(f"    enrollment {number} waited here from {run['began']} to {run['at']}: {how}")
    else:
        lines += _position_lines(part)
    return lines


def _position_lines(part: Mapping[str, Any]) -> list[str]:
    """Where the enrollment is with respect to a branch or wait-for it has not passed (or skipped)."""
    run, number = part.get("run"), part.get("enrollment")
    if number is None:
        return []
    if run is not None:
        why = "jumped over by a branch" if run["reason"] == "branch" else \
            "jumped over by a response's goto" if run["reason"] == "response" else run["reason"] or run["status"]
        return [f"    enrollment {number}: {run['status']} at {run['at']} ({why})"]
    if part.get("due_at"):
        return [f"    enrollment {number} is due here at {part['due_at']}"]
    return [f"    enrollment {number} has not reached it"]


def _trace_lines(trace: list[Mapping[str, Any]], indent: str = "      ") -> list[str]:
    positions = [f"{step['line']}:{step['col']}" for step in trace]
    width = max((len(p) for p in positions), default=0)
    return [f"{indent}{position:>{width}}  {step['expression']} = {format_value(step['value'])}"
            for position, step in zip(positions, trace)]
