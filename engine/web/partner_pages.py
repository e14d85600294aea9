"""The page of one partner (SPEC §12, pages): the partner campaign list with Start / Pause / Run /
Remove, the steps of each enrollment with Skip / Run again, the consent ledger, and the messages
sent.

Every button is a form POST with the session's CSRF token, and runs the operation the CLI and
the API run (``engine pause``, ``engine skip``, …) as the logged-in user: the same role checks,
refusals, catch-up of due steps and audit log. A button the user's roles do not allow is not
shown, and its POST is refused anyway (403). A refusal by state (pausing a finished enrollment)
comes back to the page as a one-line message; nothing was changed.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from campaigns.enrollment import NotAllowed, Refused

from ..api import Engine
from ..errors import UnknownName
from ..operations import resolve_user
from .pages import (
    LoggedIn,
    back_to,
    checked_form,
    language,
    may,
    page_context,
    refused_page,
    render,
    site_of,
    translator,
)
from .session import Session

router = APIRouter(include_in_schema=False)
CURRENT = ("scheduled", "active", "paused")
ENROLLMENT_ACTIONS = {"pause": "partner.pause", "resume": "partner.run", "remove": "partner.remove"}
STEP_ACTIONS = {"skip": "partner.skip", "rerun": "partner.run_again"}
DONE_STEPS = ("executed", "skipped", "failed")


def partner_view(engine: Engine, partner: str, *, user: str, at: datetime) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    status = engine.status(partner=partner)
    enrollments = status["enrollments"]
    if engine.book.get(partner) is None and not enrollments:
        raise UnknownName(f"unknown partner '{partner}'")
    for e in enrollments:
        steps = engine.steps(e["campaign"], partner, e["number"])
        e["steps"] = steps["steps"] if steps else []
        e["current"] = e["status"] in CURRENT
    return {"partner": partner, "enrollments": enrollments,
            "startable": [c for c in engine.startable(partner, at) if c["startable"]],
            "consent": engine.consent(partner, at),
            "messages": sorted(engine.outbox(partner=partner), key=lambda m: m.get("at") or "", reverse=True),
            "may_operate": may(engine, user, "operate")}


@router.get("/partners/{partner}", response_class=HTMLResponse)
async def partner_page(request: Request, partner: str, session: LoggedIn) -> HTMLResponse:
    site = site_of(request)
    try:
        view = await site.call(partner_view, partner, user=session.user, at=site.now())
    except UnknownName:
        return render(request, "pages/not_found.html", 404, **page_context(request, session))
    labels = {**ENROLLMENT_ACTIONS, **STEP_ACTIONS, "start": "partner.start"}
    done = labels.get(request.query_params.get("done", ""))
    flash = t_done(request, done) if done else None
    return render(request, "pages/partner.html", **page_context(request, session, flash), **view,
                  enrollment_actions=ENROLLMENT_ACTIONS, step_actions=STEP_ACTIONS, done_steps=DONE_STEPS)


def t_done(request: Request, label: str) -> str:
    t = translator(language(request))
    return t("partner.done", action=t(label))


async def _act(request: Request, session: Session, partner: str, action: str, work) -> Response:
    """Run an operation from a form (its CSRF token checked first); back to the partner page,
    or the refusal in one line (403 for a role the user lacks, 409 for the enrollment's state)."""
    fields = await checked_form(request, session)
    site = site_of(request)
    try:
        await site.call(work, fields, user=session.user, at=site.now())
    except NotAllowed as refused:
        return refused_page(request, session, str(refused), 403)
    except (Refused, UnknownName, ValueError) as refused:
        return refused_page(request, session, str(refused))
    return back_to(f"/partners/{partner}", action)


@router.post("/partners/{partner}/start")
async def start(request: Request, partner: str, session: LoggedIn) -> Response:
    return await _act(request, session, partner, "start",
                      lambda engine, fields, **who: engine.start(fields.get("campaign", ""), partner, **who))


@router.post("/partners/{partner}/campaigns/{campaign}/{action}")
async def change(request: Request, partner: str, campaign: str, action: str,
                 session: LoggedIn) -> Response:
    if action not in ENROLLMENT_ACTIONS:
        return refused_page(request, session, f"no action '{action}' (pause, resume or remove)", 404)
    return await _act(request, session, partner, action,
                      lambda engine, fields, **who: getattr(engine, action)(campaign, partner, **who))


@router.post("/partners/{partner}/campaigns/{campaign}/steps/{step}/{action}")
async def step_action(request: Request, partner: str, campaign: str, step: str, action: str,
                      session: LoggedIn) -> Response:
    if action not in STEP_ACTIONS:
        return refused_page(request, session, f"no action '{action}' (skip or rerun)", 404)
    return await _act(request, session, partner, action,
                      lambda engine, fields, **who: getattr(engine, action)(campaign, step, partner, **who))
