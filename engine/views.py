"""Read-only views of the store for people: the partner campaign list, a campaign's counts, the
steps of one enrollment. Each returns plain JSON-ready data; the CLI prints it as a table or as
``--json``."""

from __future__ import annotations

import json

from dataclasses import replace
from typing import Any

from campaigns.enrollment import CURRENT
from dsl.compile import compile_expression
from dsl.parser import parse
from dsl.runtime import Context

from .clock import maybe_iso
from .compiled import CompiledWorkspace
from .membership import started_by, started_by_row
from .operations import step_status
from .store import Enrollment, Store
from .tick import StoreFacts

STATUSES = ("scheduled", "active", "paused", "finished", "removed")
PER_PAGE = 100  # rows of `engine members` per page


def enrollment_json(e: Enrollment, plan: CompiledWorkspace, number: int | None = None) -> dict[str, Any]:
    campaign = plan.campaigns.get(e.campaign)
    return {
        "campaign": e.campaign,
        "campaign_number": number,
        "name": (campaign.campaign.name if campaign else None) or e.campaign,
        "number": e.number,
        "status": e.status,
        "reason": e.reason,
        "started": started_by(e),
        "origin": e.origin,
        "source": e.source,
        "started_at": maybe_iso(e.started_at),
        "finished_at": maybe_iso(e.finished_at),
        "next_step": e.next_step if e.status in CURRENT else None,
        "due_at": maybe_iso(e.due_at) if e.status in CURRENT else None,
    }


def partner_campaigns(store: Store, plan: CompiledWorkspace, partner: str) -> dict[str, Any]:
    """Every enrollment of the partner, in every campaign, oldest first."""
    numbers = {cid: row[0] for cid, row in store.campaign_rows().items()}
    return {"partner": partner,
            "enrollments": [enrollment_json(e, plan, numbers.get(e.campaign)) for e in store.enrollments_of(partner)]}


def campaign_summary(store: Store, plan: CompiledWorkspace, campaign_id: str) -> dict[str, Any]:
    counts = store.count_by_status(campaign_id)
    compiled = plan.campaigns.get(campaign_id)
    return {
        "campaign": campaign_id,
        "number": store.campaign_number(campaign_id),
        "name": (compiled.campaign.name if compiled else None) or campaign_id,
        "active": bool(compiled and compiled.campaign.active),
        "enrollments": {status: counts.get(status, 0) for status in STATUSES},
        "total": sum(counts.values()),
        "by_origin": store.count_by_origin(campaign_id),
    }


def members(store: Store, plan: CompiledWorkspace, campaign_id: str, status: str | None, page: int,
            per_page: int = PER_PAGE) -> dict[str, Any]:
    """One page of the campaign's members (its target group) and enrollees, by partner id: each
    with their membership and their latest enrollment (status ``member``: a member the next
    tick enrolls, or one the campaign's rules keep out)."""
    total = store.count_people(campaign_id, status)
    pages = max(1, -(-total // per_page))
    rows = store.people(campaign_id, status, per_page, (page - 1) * per_page)
    executed = store.executed_steps(r["id"] for r in rows if r["id"] is not None)
    compiled = plan.campaigns.get(campaign_id)
    flow = compiled.flow if compiled else None
    people = []
    for r in rows:
        enrolled = r["id"] is not None
        steps = executed.get(r["id"], []) if enrolled else []
        people.append({
            "partner": r["partner"],
            "member": r["member_origin"] is not None,
            "member_origin": r["member_origin"],
            "added_at": r["added_at"],
            "status": r["status"] if enrolled else "member",
            "reason": r["reason"],
            "origin": started_by_row(r["origin"], r["source"]) if enrolled else None,
            "number": r["number"],
            "started_at": r["started_at"],
            "finished_at": r["finished_at"],
            "next_step": r["next_step"] if r["status"] in CURRENT else None,
            "due_at": r["due_at"] if r["status"] in CURRENT else None,
            "executed": [flow.resolve(s) or s for s in steps] if flow else steps,
        })
    return {"campaign": campaign_id, "status": status, "total": total, "page": page, "pages": pages,
            "per_page": per_page, "members": people}


def all_campaigns(store: Store, plan: CompiledWorkspace) -> dict[str, Any]:
    ids = sorted(set(plan.workspace.files) | set(store.campaign_rows()))
    return {"campaigns": [campaign_summary(store, plan, cid) for cid in ids]}


POLICY_DETAIL = ("variant", "held", "rule")  # what a message step's run says of experiments and policies


def enrollment_steps(store: Store, plan: CompiledWorkspace, campaign_id: str, partner: str,
                     number: int | None = None) -> dict[str, Any] | None:
    """The steps of the partner's latest (or numbered) enrollment: executed, skipped, failed
    with their times, pending with the next one's due time."""
    enrollments = store.enrollments_of(partner, campaign_id)
    if number is not None:
        enrollments = [e for e in enrollments if e.number == number]
    if not enrollments:
        return None
    e = enrollments[-1]
    compiled = plan.campaigns.get(campaign_id)
    flow = compiled.flow if compiled else None
    # a run recorded under a step's old id (renamed_from) is that step's
    runs = [replace(r, step=flow.resolve(r.step) or r.step) if flow else r for r in store.step_runs(e.id)]
    steps: list[dict[str, Any]] = []
    order = [n.key for n in flow.positions] if flow else []
    for step_id in order + [r.step for r in runs if r.step not in order]:
        if any(s["step"] == step_id for s in steps):
            continue
        mine = sorted((r for r in runs if r.step == step_id), key=lambda r: r.run)
        node = flow.node(step_id) if flow else None
        kind = node.kind if node is not None else None
        flow_step = kind in ("branch", "split", "wait_for")
        if mine:
            for r in mine:
                detail = dict(r.detail) if flow_step and r.status == "executed" else \
                    {key: r.detail[key] for key in POLICY_DETAIL if key in r.detail}
                steps.append({"step": step_id, "kind": kind, "run": r.run, "status": r.status, "reason": r.reason,
                              "due_at": maybe_iso(r.due_at), "at": maybe_iso(r.at),
                              **({"error": r.detail["error"]} if "error" in r.detail else {}),
                              **({"detail": detail} if detail else {})})
            continue
        status = step_status(compiled, e, step_id, store) if compiled else None
        here = status is not None and flow is not None and flow.resolve(e.next_step) == step_id
        entry = {"step": step_id, "kind": kind, "run": None, "status": str(status) if status else "not_run",
                 "reason": None, "due_at": maybe_iso(e.due_at) if here else None, "at": None}
        if here and e.waiting_since is not None:  # at a wait-for: due_at is its at_most
            entry["detail"] = {"began": maybe_iso(e.waiting_since), "ends_at_most": maybe_iso(e.due_at)}
        if here and e.held is not None:  # quiet hours, send days or a cap moved it to due_at
            entry["held"] = json.loads(e.held)
        steps.append(entry)
    return {"campaign": campaign_id, "partner": partner, "number": e.number, "status": e.status,
            "reason": e.reason, "started_at": maybe_iso(e.started_at), "finished_at": maybe_iso(e.finished_at),
            "steps": steps}


def consent(store: Store, plan: CompiledWorkspace, book, partner_id: str, at) -> dict[str, Any]:
    """Each consent event of the partner, and per channel whether they may be contacted now and
    why: the latest ledger entry, else the consent expression over the record, else no."""
    partner = book.get(partner_id)
    channels: dict[str, Any] = {}
    for channel in ("email", "sms"):
        latest = store.consent_latest(partner_id, channel, at)
        expression = getattr(plan.settings.consent, channel)
        if latest is not None:
            channels[channel] = {"consent": latest, "by": "ledger"}
        elif expression is not None and partner is not None:
            rule = compile_expression(parse(expression))
            ctx = Context(now=at, tz=plan.tz, facts=StoreFacts(store, plan, "", None, at))
            channels[channel] = {"consent": rule.test(partner, ctx), "by": f"expression: {expression}"}
        else:
            channels[channel] = {"consent": False, "by": "no consent recorded" if expression else "no consent expression"}
    return {"partner": partner_id, "known": partner is not None, "channels": channels,
            "ledger": store.consent_entries(partner_id)}
