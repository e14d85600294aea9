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
- ``flow`` (only for a campaign with a ``branch``, a ``split`` or a ``wait: {for}``): each of
  them in step order. A branch: every case evaluated as of ``at`` (all of them, so that the
  explanation shows each one), the case that wins (the first that holds; an ``else`` always
  holds; none: the next step) and where it goes. A split: the partner's hash and the path it
  gives (SPEC §11's assignment), each path with its weight and where it goes. A wait-for: its
  condition. As the tick asks them (the facts of the partner's current enrollment:
  ``response()``, ``opened()``...; none when not enrolled). And what the store says of the
  partner's latest enrollment there: the step run it left (the case or path the tick chose then,
  how a wait ended, or that it was jumped over), whether it is due at that step, and whether it
  is waiting at a wait-for now (since when; its ``at_most`` deadline).
- ``policies`` (only for a campaign with a ``holdout``, ``variants``, sending rules in force
  (quiet hours, send days, frequency caps) or ``transactional: true``, or whose enrollment a
  policy held or skipped): whether the partner is in the holdout (their hash), the sending rules
  the campaign's message steps obey and where each comes from, what they would do to a message
  due at ``at`` (quiet hours or a send day moving it, each cap's count of sends), and per message
  step the variant the partner's hash gives, and what the store says of the latest enrollment
  there: due at it next, moved by which rule from when until when (``held``), or its run (a
  variant, a hold it waited for, the rule of a frequency cap that skipped it, the holdout).
  See :func:`_policies`.

``eligible`` is: the audience matches, no exclusion applies, and the enrollment rules allow it
(the :class:`~campaigns.enrollment.Verdict`). Consent is not part of it: it is asked at each
message step, and a partner without consent is enrolled and has those steps skipped.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from campaigns.audience import GATED_CHANNELS, INACTIVE_CONTACT, INACTIVE_RULE, excludes_inactive
from campaigns.enrollment import PastEnrollment, SkipReason, eligible_for_trigger, window_opens
from campaigns.flow import Node
from campaigns.shapes import Located
from campaigns.policy import (HOLDOUT, HOLDOUT_BUCKETS, assign, bucket, cap_allows, cap_detail, is_message,
                              sending_hold, weights, window_of)
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
         "flow": [...],  # only when the campaign has branches, splits or waits-for: see _flow
         "policies": {...}}  # only with experiments or sending rules: see _policies

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
    policies = _policies(store, plan, compiled, partner_id, partner, at)
    if policies is not None:
        result["policies"] = policies
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


FLOW_KINDS = ("branch", "split", "wait_for")


def _flow(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, partner_id: str,
          partner: Mapping[str, Any], at: datetime) -> list[dict[str, Any]]:
    """Each branch and wait-for of the campaign, in step order (empty: the campaign has none)::

        {"step", "kind": "branch", "file", "match", "case", "goto", "next",
         "cases": [{"case", "when", "goto", "match", "trace"}], "trace",
         "enrollment", "due_at", "run": {"at", "status", "reason", "case", "goto"} | None}
        {"step", "kind": "wait_for", "file", "expression", "at_most", "match", "trace",
         "enrollment", "due_at", "waiting": {"since", "until"} | None,
         "run": {"at", "status", "reason", "began", "ended_by"} | None}
        {"step", "kind": "split", "file", "hash", "of", "path", "goto", "next",
         "paths": [{"path", "weight", "goto", "match"}],
         "enrollment", "due_at", "run": {"at", "status", "reason", "path", "goto"} | None}

    A split's ``path``/``goto`` are what the tick would record (``{"path", "goto"}``, the detail
    of its step run): the path the partner's ``hash`` (SPEC §11: sha256 of
    ``CAMPAIGN/STEP/PARTNER``, modulo ``of``, the sum of the weights) falls in, the weights taken
    in file order; ``goto`` null: on with ``next``. ``match`` marks that path.

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
        elif node.kind == "split":
            part = _split_part(compiled, node, file, partner_id, at)
            part.update(common, run=None if run is None else {
                "at": iso(run.at), "status": run.status, "reason": run.reason,
                "path": run.detail.get("path"), "goto": run.detail.get("goto")})
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


def _split_part(compiled: CompiledCampaign, node: Node, file: str | None, partner_id: str,
                at: datetime) -> dict[str, Any]:
    """The path the partner's hash gives (what the tick's :func:`campaigns.policy.assign` does),
    with the hash itself, so that anyone can check it."""
    options = weights(node.item.split)
    total = sum(options.values())
    chosen = assign(compiled.id, node.key, partner_id, options)
    paths = [{"path": key, "weight": path.weight, "goto": path.goto, "match": key == chosen}
             for key, path in node.item.split.items()]
    following, _ = compiled.flow.after(node.key, at, compiled.tz)
    return {"step": node.key, "kind": node.kind, "file": file, "hash": bucket(compiled.id, node.key, partner_id, total),
            "of": total, "path": chosen, "goto": node.item.split[chosen].goto, "next": following, "paths": paths}


def _policies(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, partner_id: str,
              partner: Mapping[str, Any], at: datetime) -> dict[str, Any] | None:
    """The experiments and sending rules of the campaign's message steps for this partner (None
    when the campaign has none and they left no trace on the partner's latest enrollment)::

        {"transactional", "holdout": {"pct", "match", "hash", "of"} | None,
         "quiet_hours": {"from", "to", "by"} | None, "send_days": {"days", "by"} | None,
         "now": {"rule", "detail", "until"} | None,
         "frequency": {channel: {"max", "per", "rule", "sends", "match"}}, "on_cap",
         "enrollment",
         "steps": [{"step", "kind", "variant", "variants", "due_at", "held",
                    "run": {"at", "status", "reason", "variant", "held", "rule"} | None}]}

    ``holdout``: ``match`` when the partner is held out: their ``hash`` (sha256 of
    ``CAMPAIGN/holdout/PARTNER`` modulo ``of``, 10000) is below ``pct`` × 100. ``quiet_hours``
    and ``send_days``: the ones in force, ``by`` ``campaign`` (its own) or ``engine.yaml`` (its
    ``policies``); none for a transactional campaign, which no rule holds. ``now``: the rule that
    would move a message due at ``at`` (the partner's local time) and the instant it would go
    instead, or null. ``frequency``: the caps on the channels of the campaign's message steps,
    each with ``sends``, the partner's sends on that channel in ``(at − per, at]``, and ``match``:
    whether one more at ``at`` is allowed (``on_cap`` says what happens when not).

    Per message step (email, SMS, pop-up, letter), in step order: ``variant``, the variant the
    partner's hash gives (null without ``variants``: ``variants`` is then null, else key → weight
    in file order); ``due_at`` when the enrollment is due at it next, and ``held``, when a policy
    moved that due time: ``{"rule", "detail", "from", "until"}`` as the store keeps it (``rule``
    quiet_hours, send_days or frequency_cap; ``detail`` the rule in words; ``from`` the due time
    it was moved from, ``until`` when it goes). ``run``: the latest run of the step, with the
    ``variant`` it sent, the ``held`` it had waited for, and ``rule``, the cap that skipped it
    (reason ``frequency_cap``); reason ``holdout``: the partner was in the holdout."""
    campaign, rules, flow = compiled.campaign, compiled.rules, compiled.flow
    messages = [n for n in flow.positions if is_message(n.kind)]
    enrollments = store.enrollments_of(partner_id, compiled.id)
    current = [e for e in enrollments if e.status in CURRENT_STATUSES]
    enrollment = current[-1] if current else enrollments[-1] if enrollments else None
    runs: dict[str, Any] = {}
    if enrollment is not None:
        for run in store.step_runs(enrollment.id):
            key = flow.resolve(run.step) or run.step
            if key not in runs or run.run >= runs[key].run:
                runs[key] = run
    held = json.loads(enrollment.held) if enrollment is not None and current and enrollment.held else None
    traces = held is not None or any(
        r.reason in (SkipReason.HOLDOUT, SkipReason.FREQUENCY_CAP) or "held" in r.detail for r in runs.values())
    has_variants = any(getattr(n.item.action, "variants", None) for n in messages)
    if not (campaign.holdout or has_variants or rules.timed or rules.caps or campaign.transactional or traces):
        return None

    holdout = None
    if campaign.holdout:
        h = bucket(compiled.id, HOLDOUT, partner_id, HOLDOUT_BUCKETS)
        holdout = {"pct": campaign.holdout, "match": h < campaign.holdout * 100, "hash": h, "of": HOLDOUT_BUCKETS}
    quiet = days = None
    if rules.quiet_hours is not None:
        quiet = {"from": rules.quiet_hours.from_, "to": rules.quiet_hours.to,
                 "by": "campaign" if campaign.quiet_hours is not None else "engine.yaml"}
    if rules.send_days is not None:
        days = {"days": list(rules.send_days), "by": "campaign" if campaign.send_days is not None else "engine.yaml"}
    hold = sending_hold(at, compiled.local_tz(partner), rules)
    now = {"rule": hold.rule, "detail": hold.detail, "until": iso(hold.until) if hold.until else None} \
        if hold is not None else None
    frequency: dict[str, Any] = {}
    for channel in dict.fromkeys(n.kind for n in messages):
        cap = rules.capped(channel)
        if cap is None:
            continue
        after, before = window_of(at, cap)
        sends = store.sends_between([partner_id], [channel], after, before).get((partner_id, channel), [])
        frequency[channel] = {"max": cap.max, "per": duration_text(cap.per), "rule": cap_detail(channel, cap),
                              "sends": sum(1 for s in sends if s <= at), "match": cap_allows(at, sends, cap)}

    here = flow.resolve(enrollment.next_step) if enrollment is not None and current else None
    steps = []
    for node in messages:
        variants = getattr(node.item.action, "variants", None) or None
        options = weights(variants) if variants else None
        run = runs.get(node.key)
        steps.append({
            "step": node.key, "kind": node.kind,
            "variant": assign(compiled.id, node.key, partner_id, options) if options else None, "variants": options,
            "due_at": iso(enrollment.due_at) if here == node.key and enrollment.due_at is not None else None,
            "held": held if here == node.key else None,
            "run": None if run is None else {
                "at": iso(run.at), "status": run.status, "reason": run.reason, "variant": run.detail.get("variant"),
                "held": run.detail.get("held"), "rule": run.detail.get("rule")}})
    return {"transactional": campaign.transactional, "holdout": holdout, "quiet_hours": quiet, "send_days": days,
            "now": now, "frequency": frequency, "on_cap": rules.on_cap,
            "enrollment": enrollment.number if enrollment is not None else None, "steps": steps}


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
        kinds = "branch, split and wait-for" if any(p["kind"] == "split" for p in flow) else "branch and wait-for"
        lines.append(f"flow (each {kinds}, as a tick at this time would take it):")
    for part in flow:
        lines += _branch_lines(part) if part["kind"] == "branch" else _split_lines(part) \
            if part["kind"] == "split" else _wait_lines(part)
    if result.get("policies") is not None:
        lines += _policy_lines(result["policies"])
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


def _split_lines(part: Mapping[str, Any]) -> list[str]:
    """``path (split): call-first → late (hash 17 of 100)``, each path with its weight, and where
    the partner's enrollment is: the path the tick chose when it passed the split, or that it has
    not yet."""

    def went(path: str | None, goto: str | None) -> str:
        return f"{path} → {goto}" if goto is not None else \
            f"{path} → next step ({part['next'] or 'none: the enrollment completes'})"

    head = f"{went(part['path'], part['goto'])} (hash {part['hash']} of {part['of']}, weights in file order)"
    lines = [f"  {part['step']} (split): {head}"]
    for path in part["paths"]:
        lines.append(f"    {YES if path['match'] else NO} {path['path']}: weight {path['weight']} → "
                     f"{path['goto'] if path['goto'] is not None else 'next step'}")
    run, number = part.get("run"), part.get("enrollment")
    if run is not None and run["status"] == "executed":
        lines.append(f"    enrollment {number} passed it at {run['at']}, the tick chose: {went(run['path'], run['goto'])}")
    else:
        lines += _position_lines(part)
    return lines


def _policy_lines(policies: Mapping[str, Any]) -> list[str]:
    """The holdout, the sending rules in force and what they do now, and each message step: its
    variant, and where the enrollment is (due, moved by which rule from when until when; its run)."""
    lines = ["policies (experiments and sending rules of the message steps):"]
    holdout = policies.get("holdout")
    if holdout is not None:
        pct, limit = f"{holdout['pct']:g}%", f"{holdout['pct'] * 100:g}"
        if holdout["match"]:
            lines.append(f"  holdout {pct}: {YES} the partner is in the holdout (hash {holdout['hash']} of "
                         f"{holdout['of']}, below {limit}): every message step is skipped (reason holdout)")
        else:
            lines.append(f"  holdout {pct}: {NO} the partner is not in the holdout (hash {holdout['hash']} of "
                         f"{holdout['of']}, not below {limit})")
    if policies.get("transactional"):
        lines.append("  transactional: no consent, frequency caps, quiet hours or send days apply")
    rules = []
    if policies.get("quiet_hours"):
        quiet = policies["quiet_hours"]
        rules.append(f"quiet hours {quiet['from']}–{quiet['to']} ({quiet['by']})")
    if policies.get("send_days"):
        days = policies["send_days"]
        rules.append(f"send days {', '.join(days['days'])} ({days['by']})")
    if rules:
        now = policies.get("now")
        lines.append(f"  {'; '.join(rules)}: " + (
            f"a message due now waits until {now['until']} ({now['detail']})" if now else "a message due now goes"))
    for cap in (policies.get("frequency") or {}).values():
        verdict = "one more goes now" if cap["match"] else (
            "one more now is skipped (on_cap: skip)" if policies.get("on_cap") == "skip" else
            "one more now waits until a slot frees (on_cap: defer)")
        lines.append(f"  {YES if cap['match'] else NO} {cap['rule']}: {cap['sends']} sent in the last {cap['per']}; "
                     f"{verdict}")
    number = policies.get("enrollment")
    for step in policies.get("steps") or []:
        head = f"  {step['step']} ({step['kind']})"
        if step["variants"]:
            shares = ", ".join(f"{key} {weight}" for key, weight in step["variants"].items())
            head += f": variant {step['variant']} (weights {shares})"
        lines.append(head)
        if number is None:
            continue
        run, held = step.get("run"), step.get("held")
        if step.get("due_at"):
            moved = f": moved from {held['from']} by {held['detail']}" if held else ""
            lines.append(f"    enrollment {number} is due here at {step['due_at']}{moved}")
        elif run is not None:
            lines.append(f"    enrollment {number}: {run['status']} at {run['at']}{_run_note(run)}")
        else:
            lines.append(f"    enrollment {number} has not reached it")
    return lines


def _run_note(run: Mapping[str, Any]) -> str:
    """What a message step's run says of experiments and policies, in parentheses (or nothing)."""
    notes = []
    if run.get("variant"):
        notes.append(f"variant {run['variant']}")
    if run.get("held"):
        held = run["held"]
        notes.append(f"moved from {held['from']} to {held['until']} by {held['detail']}")
    if run["status"] != "executed":
        reason = run.get("reason")
        notes.append(run["rule"] if run.get("rule") else "the partner is in the holdout" if reason == "holdout"
                     else _JUMPED.get(reason or "", reason or run["status"]))
    return f" ({'; '.join(notes)})" if notes else ""


_JUMPED = {"branch": "jumped over by a branch", "split": "jumped over by a split",
           "response": "jumped over by a response's goto"}


def _position_lines(part: Mapping[str, Any]) -> list[str]:
    """Where the enrollment is with respect to a branch, split or wait-for it has not passed (or skipped)."""
    run, number = part.get("run"), part.get("enrollment")
    if number is None:
        return []
    if run is not None:
        why = _JUMPED.get(run["reason"] or "", run["reason"] or run["status"])
        return [f"    enrollment {number}: {run['status']} at {run['at']} ({why})"]
    if part.get("due_at"):
        return [f"    enrollment {number} is due here at {part['due_at']}"]
    return [f"    enrollment {number} has not reached it"]


def _trace_lines(trace: list[Mapping[str, Any]], indent: str = "      ") -> list[str]:
    positions = [f"{step['line']}:{step['col']}" for step in trace]
    width = max((len(p) for p in positions), default=0)
    return [f"{indent}{position:>{width}}  {step['expression']} = {format_value(step['value'])}"
            for position, step in zip(positions, trace)]
