"""The campaigns page and the page of one campaign (SPEC §12, pages).

``/campaigns``: every campaign with its status (active, draft, locked, error, removed), trigger,
next run, In-Campaign % with its alert, and the messages sent this week. ``/campaigns/C``: the
flow drawn from the graph the checker uses (:mod:`engine.web.diagram`), the per-step and
per-variant counts of ``engine stats``, the goal with holdout and lift, open alerts, and the
members a page at a time. Both read what the CLI's read commands read, as the logged-in user.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from ..api import Engine
from ..clock import iso
from ..errors import UnknownName
from ..monitor import last_measure
from ..operations import resolve_user
from ..plan import next_firing
from .api import campaign_status
from .diagram import flow_svg
from .pages import LoggedIn, page_context, render, site_of

router = APIRouter(include_in_schema=False)
WEEK = timedelta(days=7)


def trigger_text(campaign) -> str | None:
    """``cron 0 9 * * 1``, ``at 2026-07-01T09:00``, ``event invoice.overdue``, ``audience``; None without one."""
    trigger = campaign.trigger
    if trigger is None:
        return None
    kind = trigger.kind
    value = getattr(trigger, kind, None)
    return kind if value is True or value is None else f"{kind} {value.isoformat() if isinstance(value, datetime) else value}"


def next_run(engine: Engine, cid: str, at: datetime, rows: dict) -> str | None:
    """When the campaign enrolls next: a cron or `at` firing's time (or why none); an `audience`
    trigger samples at every tick and an event trigger waits for its event (None)."""
    compiled = engine.plan.campaigns.get(cid)
    if compiled is None:
        return None
    firing = next_firing(engine.store, compiled, at, rows.get(cid))
    if firing is None:
        return None
    return firing["at"] if firing["at"] is not None and not firing["note"] else firing["note"]


def campaigns_view(engine: Engine, *, user: str, at: datetime) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    store, plan = engine.store, engine.plan
    rows, locks = store.campaign_rows(), store.locks()
    sent = store.sent_between(at - WEEK, at)
    alerts = {a["campaign"]: a for a in store.alerts(None, True)}
    found = []
    for cid in sorted(set(plan.workspace.files) | set(rows)):
        file = plan.workspace.files.get(cid)
        model = file.campaign if file is not None else None
        runs = cid in plan.campaigns
        found.append({
            "id": cid, "name": model.name if model is not None else None,
            "status": campaign_status(file is not None, runs, bool(model and model.active), cid in locks),
            "trigger": trigger_text(model) if model is not None else None,
            "trigger_kind": model.trigger.kind if model is not None and model.trigger is not None else None,
            "next_run": next_run(engine, cid, at, rows) if runs else None,
            "in_campaign_pct": (last_measure(store, cid) or {}).get("pct") if runs else None,
            "minimum": model.monitor.in_campaign_min if model is not None else None,
            "alert": alerts.get(cid), "sent_week": sent.get(cid, 0)})
    return {"campaigns": found}


def campaign_view(engine: Engine, cid: str, page: int, *, user: str, at: datetime) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    stats = engine.stats(cid, at, measure=False)  # UnknownName for a campaign nobody knows
    file = engine.plan.workspace.files.get(cid)
    model = file.campaign if file is not None else None
    by_step: dict[str, dict[str, int]] = {}
    for row in stats["steps"]:
        totals = by_step.setdefault(row["step"], {"sent": 0, "opens": 0, "clicks": 0})
        for key in totals:
            totals[key] += row[key]
    path = str(file.path) if file is not None else None
    problems = [f"{d.span.line}:{d.span.col}: {d.severity}: {d.message}" for d in engine.plan.workspace.errors
                if path is not None and d.span.path == path]
    return {"id": cid, "model": model, "stats": stats, "by_step": by_step, "problems": problems,
            "members": engine.members(cid, page=page),
            "alerts": engine.alerts(cid, open_only=True),
            "trigger": trigger_text(model) if model is not None else None}


@router.get("/campaigns", response_class=HTMLResponse)
async def campaigns(request: Request, session: LoggedIn) -> HTMLResponse:
    site = site_of(request)
    view = await site.call(campaigns_view, user=session.user, at=site.now())
    return render(request, "pages/campaigns.html", **page_context(request, session), **view)


@router.get("/campaigns/{campaign}", response_class=HTMLResponse)
async def campaign(request: Request, campaign: str, session: LoggedIn,
                   page: Annotated[int, Query(ge=1, le=1_000_000)] = 1) -> HTMLResponse:
    site = site_of(request)
    try:
        view = await site.call(campaign_view, campaign, page, user=session.user, at=site.now())
    except UnknownName:
        return render(request, "pages/not_found.html", 404, **page_context(request, session))
    diagram = flow_svg(view["model"], view["by_step"]) if view["model"] is not None else None
    return render(request, "pages/campaign.html", **page_context(request, session), **view, diagram=diagram,
                  now=iso(site.now()))
