"""A campaign's target group: the partners people add by hand (SPEC §7), beside its audience.

Members come from a static group, another campaign, a filter expression, or one by one; they
can be kept to those matching a filter and pruned of email duplicates, company duplicates and
opt-outs. Every change is one transaction with one audit-log line, and ``dry_run`` says who would
be added or go without changing anything. The next tick enrolls the new members.

Decisions where SPEC is silent:

- A member is enrolled once per membership: at the first tick after being added, unless an
  enrollment in the campaign started since then. Removing the member ends the enrollment that
  the membership started (status removed, reason target_group: :mod:`engine.membership`); an
  enrollment a trigger, a person or a response started stays. Removing the enrollment lets the
  tick enroll the member again, like a trigger would. Exclusions (engine.yaml's and the
  audience's ``exclude``, inactive contacts, test contacts with ``include_test: false``) and
  exclusivity apply as to a trigger; ``reenroll`` does not (adding someone is explicit).
- "Copy another campaign's members" copies that campaign's target group: its members and
  every partner enrolled in it (in any state but removed); ``remove-campaign`` removes the same
  set from this campaign's members.
- A one-shot campaign (``trigger: at``) that started sending is locked: additions to its target
  group are refused, as is ``engine start``; removals are not.
- Duplicates keep the oldest partner by id, as ``audience.dedupe`` does; "opt-outs" are members
  who may not get email now (consent ledger, else the consent expression).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Mapping

from campaigns.audience import INACTIVE_CONTACT, dedupe, natural_key
from dsl.checker import Scope, check_text
from dsl.compile import compile_expression
from dsl.diagnostics import SourceError, did_you_mean
from dsl.parser import inline
from dsl.runtime import Context
from dsl.types import BOOL, record

from .compiled import CompiledCampaign, read_group
from .errors import UnknownName
from .membership import end_member_enrollments, member_enrollments
from .operations import Operator, campaign, refuse_if_locked
from .facts import StoreFacts

PRUNE_KINDS = ("email", "company", "opt-outs")


@dataclass(frozen=True)
class GroupChange:
    campaign: str
    action: str
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    dry_run: bool = False
    members: int = 0  # after the change (would be, for a dry run)
    ended: list[str] = field(default_factory=list)  # removed members whose enrollment ended with the membership

    def to_json(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "action": self.action, "dry_run": self.dry_run, "added": self.added,
                "removed": self.removed, "ended": self.ended, "members": self.members}


def change(op: Operator, campaign_id: str, action: str, argument: str | None = None, *,
           dry_run: bool = False) -> GroupChange:
    """Apply one target-group action (see :data:`ACTIONS`)."""
    compiled = campaign(op, campaign_id)
    if action not in ACTIONS:
        raise UnknownName(f"unknown group action '{action}'{did_you_mean(action, list(ACTIONS))}")
    with op.store.transaction():
        members = op.store.members(campaign_id)
        add, remove = ACTIONS[action](op, compiled, members, argument)
        add = {p: origin for p, origin in add.items() if p not in members}
        remove = sorted((p for p in dict.fromkeys(remove) if p in members), key=natural_key)
        if add:
            refuse_if_locked(op, compiled, "add to its target group")
        if dry_run:
            ended = [e.partner for e in member_enrollments(op.store, campaign_id, remove)]
        else:
            op.store.add_members(campaign_id, add, op.at, op.user)
            op.store.remove_members(campaign_id, remove)
            ended = end_member_enrollments(op.store, campaign_id, remove, op.at, op.user)
            op.store.log(op.at, op.user, f"group.{action}", campaign_id, argument=argument, added=len(add),
                         removed=len(remove), ended=len(ended))
        after = len(members) + len(add) - len(remove)
    return GroupChange(campaign_id, action, sorted(add, key=natural_key), remove, dry_run, after, ended)


Plan = tuple[dict[str, str], list[str]]  # (partner → origin to add, partners to remove)


def _add_group(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], name: str | None) -> Plan:
    return {p: f"group:{name}" for p in sorted(_group(op, name), key=natural_key) if _known(op, p)}, []


def _remove_group(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], name: str | None) -> Plan:
    return {}, sorted(_group(op, name))


def _group(op: Operator, name: str | None) -> frozenset[str]:
    path = op.plan.workspace.groups.get(name or "")
    if path is None:
        raise UnknownName(f"unknown group '{name}' (no groups/{name}.csv){did_you_mean(name or '', list(op.plan.workspace.groups))}")
    return read_group(path)


def _copy_campaign(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], other: str | None) -> Plan:
    return {p: f"campaign:{other}" for p in sorted(_target_group(op, other), key=natural_key) if _known(op, p)}, []


def _remove_campaign(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], other: str | None) -> Plan:
    return {}, sorted(_target_group(op, other))


def _target_group(op: Operator, other: str | None) -> set[str]:
    """Another campaign's target group: its members and every partner enrolled in it (in any
    state but removed)."""
    if other is None or (other not in op.plan.workspace.files and op.store.campaign_number(other) is None):
        raise UnknownName(f"unknown campaign '{other}'{did_you_mean(other or '', list(op.plan.workspace.files))}")
    return set(op.store.members(other)) | op.store.partners_in(other, ("scheduled", "active", "paused", "finished"))


def _add_filter(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], text: str | None) -> Plan:
    rule = _filter(op, text)
    ctx = _context(op, compiled)
    return {str(p[op.plan.id_field]): "filter" for p in op.book.all() if rule.test(p, ctx)}, []


def _keep_filter(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], text: str | None) -> Plan:
    rule = _filter(op, text)
    ctx = _context(op, compiled)
    partners = op.book.get_many(members)
    return {}, [p for p in members if p not in partners or not rule.test(partners[p], ctx)]


def _add_partner(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], pid: str | None) -> Plan:
    if not pid or op.book.get(pid) is None:
        raise UnknownName(f"unknown partner '{pid}'")
    return {pid: "partner"}, []


def _remove_partner(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], pid: str | None) -> Plan:
    if pid not in members:
        raise UnknownName(f"partner '{pid}' is not a member of {compiled.id}'s target group")
    return {}, [pid]


def _prune(op: Operator, compiled: CompiledCampaign, members: Mapping[str, str], kind: str | None) -> Plan:
    if kind not in PRUNE_KINDS:
        raise UnknownName(f"dedupe takes one of {', '.join(PRUNE_KINDS)}, not '{kind}'")
    partners = op.book.get_many(members)
    if kind == "opt-outs":
        return {}, [p for p in members if p not in partners or not consents(op, compiled, partners[p], "email")]
    kept = {str(p[op.plan.id_field]) for p in dedupe(partners.values(), [kind], op.plan.id_field)}
    return {}, [p for p in members if p in partners and p not in kept]


ACTIONS = {
    "add-group": _add_group,
    "remove-group": _remove_group,
    "copy-campaign": _copy_campaign,
    "remove-campaign": _remove_campaign,
    "add-filter": _add_filter,
    "keep-filter": _keep_filter,
    "add": _add_partner,
    "remove": _remove_partner,
    "dedupe": _prune,
}
"""action → how it changes the members (each takes one argument: a group, a campaign, an
expression, a partner or a prune kind)."""


def _known(op: Operator, pid: str) -> bool:
    return op.book.get(pid) is not None


def _filter(op: Operator, text: str | None):
    """A filter expression, checked against the partner schema like a ruleset: errors point
    into ``<filter>``."""
    if not text:
        raise UnknownName("give a filter expression, e.g. 'partner.country == \"FI\"'")
    workspace = op.plan.workspace
    scope = Scope(partner=record(workspace.schema), groups=tuple(workspace.groups), campaigns=tuple(workspace.files))
    node, problems = check_text(text, scope, inline(text, "<filter>"), expect=BOOL)
    errors = [d for d in problems if d.severity == "error"]
    if node is None or errors:
        raise SourceError(errors)
    return compile_expression(node)


def _context(op: Operator, compiled: CompiledCampaign) -> Context:
    return Context(now=op.at, tz=compiled.tz, facts=StoreFacts(op.store, op.plan, compiled.id, None, op.at))


def consents(op: Operator, compiled: CompiledCampaign, partner: Mapping, channel: str) -> bool:
    pid = str(partner[op.plan.id_field])
    return compiled.audience.consents(channel, partner, op.store.consent_latest(pid, channel, op.at),
                                      _context(op, compiled))


def summary(op: Operator, campaign_id: str) -> dict[str, Any]:
    """The numbers of SPEC §7's target-group summary: who is in the audience or the members,
    and how many of them are kept out, and why."""
    compiled = campaign(op, campaign_id)
    members = op.store.members(campaign_id)
    ctx = _context(op, compiled)
    audience = compiled.audience
    candidates = [p for p in op.book.all()
                  if str(p[op.plan.id_field]) in members or audience.matching_rulesets(p, ctx)
                  or audience.member_of(p, op.plan.groups)]
    excluded: Counter = Counter()
    roles: Counter = Counter()
    eligible = []
    for partner in candidates:
        why = audience.excluded_by(partner, ctx)
        if why is not None:
            excluded[_reason(why)] += 1
            if why.endswith("(engine.yaml)"):
                roles[str(partner.get("role") or "-")] += 1
            continue
        eligible.append(partner)
    kept = dedupe(eligible, audience.dedupe, op.plan.id_field) if audience.dedupe else eligible
    excluded["duplicates"] = len(eligible) - len(kept)
    return {
        "members": len(members),
        "members_by_origin": dict(Counter(origin.split(":")[0] for origin in members.values())),
        "audience": sum(1 for p in candidates if audience.matching_rulesets(p, ctx) or audience.member_of(p, op.plan.groups)),
        "candidates": len(candidates),
        "excluded": {key: excluded.get(key, 0) for key in ("engine_exclude", "campaign_exclude", "inactive", "test",
                                                              "duplicates")},
        "excluded_by_role": dict(roles),
        "eligible": len(kept),  # candidates less every exclusion above
        "without_email_consent": sum(not consents(op, compiled, p, "email") for p in kept),  # of the eligible
    }


def _reason(excluded_by: str) -> str:
    if excluded_by.endswith("(engine.yaml)"):
        return "engine_exclude"
    if excluded_by == "audience.exclude":
        return "campaign_exclude"
    return "inactive" if excluded_by == INACTIVE_CONTACT else "test"
