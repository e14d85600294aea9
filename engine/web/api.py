"""The JSON API (SPEC §12), for the CRM and the partner portal. Each route is the CLI command of
the same name, acting as the API key's user: the same role checks, refusals and audit log.

Errors, as ``{"error": "...", "problems": [...]}`` where there are several: 401 without a valid
key, 403 when the key's user lacks the role, 404 for an unknown campaign, partner, step or id,
409 for what the CLI refuses with exit 3 (state, locks), 413 for a body over the limit, 422 for
input that is wrong, naming the problem. A request changes all it asks for or nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from campaigns.enrollment import Refused

from .. import portal_links
from ..api import Engine
from ..errors import ConfigError, UnknownName
from ..links import Signer
from ..events import read_events
from ..ingest import record_events
from ..operations import resolve_user
from ..steps import message_parts
from . import esp
from .auth import api_user
from .errors import Invalid
from .site import Site

router = APIRouter(prefix="/api")
User = Annotated[str, Depends(api_user)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Start(Body):
    partner: str = Field(min_length=1, description="the partner to start")
    on: str | None = Field(default=None, description="a start date or time; default now")


class Respond(Body):
    id: str = Field(min_length=1, description="an activity or mailing id")
    response: str = Field(min_length=1, description="one of the step's response keys")
    answers: dict[str, str] | None = None
    duration: int | str | None = Field(default=None, description="how long the contact took: minutes, or text such as 15m or 1h")


class ReadPopup(Body):
    partner: str | None = Field(default=None, description="default: the partner the pop-up was shown to")


def _site(request: Request) -> Site:
    return request.app.state.site


async def _as(request: Request, user: str, work, *args: Any, **kwargs: Any) -> Any:
    site = _site(request)
    return await site.call(work, *args, user=user, at=site.now(), **kwargs)


# --- events and webhooks -----------------------------------------------------------------------


def _events(engine: Engine, text: str, *, user: str, at, source: str, all_or_nothing: bool = True) -> dict[str, Any]:
    """Store the events (the lines of ``text``). A client's batch is all or nothing (422 naming
    every bad event); an ESP's is not: an event about a message this store does not have (a
    store that was reset, another system's mail) must not make the provider retry the batch
    forever, so it is skipped and counted in ``ignored``."""
    user = resolve_user(engine.plan, user, "events.import")
    parsed = read_events(source, text, engine.plan.tz)
    result = record_events(engine.store, engine.plan, engine.book, parsed, at, user,
                           all_or_nothing=all_or_nothing, source=source)
    if result.diagnostics and all_or_nothing:
        raise Invalid("the events were not stored: fix these and send them again",
                      [{"event": d.span.line, "message": d.message} for d in result.diagnostics])
    return {"imported": result.imported, "duplicates": result.duplicates, "ignored": len(result.diagnostics)}


def _as_lines(raw: bytes, content_type: str) -> str:
    """One event, a list of them, or NDJSON (``application/x-ndjson``), as the lines of an events file."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the body is not UTF-8 text") from None
    if "ndjson" in content_type or "jsonl" in content_type:
        return text
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"the body is not JSON: {_why(exc)}") from None
    items = body if isinstance(body, list) else [body]
    if not items:
        raise Invalid("no events in the body")
    return "\n".join(json.dumps(item, ensure_ascii=False) for item in items)


@router.post("/events", summary="Import events: one, a list, or NDJSON, in the events-import format")
async def post_events(request: Request, user: User) -> dict[str, Any]:
    text = _as_lines(await request.body(), request.headers.get("content-type", ""))
    return await _as(request, user, _events, text, source="api")


def _why(exc: BaseException) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)


def _esp(engine: Engine, translation: esp.Translation, provider: str, *, user: str, at) -> dict[str, Any]:
    stored = {"imported": 0, "duplicates": 0, "ignored": 0}
    if translation.events:
        text = "\n".join(json.dumps(event, ensure_ascii=False) for event in translation.events)
        stored = _events(engine, text, user=user, at=at, source=f"webhook:{provider}", all_or_nothing=False)
    if translation.subscription is not None:
        user = resolve_user(engine.plan, user, "events.import")
        with engine.store.transaction():
            engine.store.log(at, user, "webhook.subscription", None, provider=provider, **translation.subscription)
    return {**stored, "ignored": stored["ignored"] + translation.ignored,
            "subscription": translation.subscription is not None}


async def _webhook(request: Request, user: str, provider: str, translate) -> dict[str, Any]:
    try:
        payload = json.loads(await request.body())
    except (ValueError, RecursionError) as exc:
        raise Invalid(f"the body is not JSON: {_why(exc)}") from None
    try:
        translation = translate(payload)
    except esp.EspError as exc:
        raise Invalid(str(exc)) from None
    return await _as(request, user, _esp, translation, provider)


@router.post("/webhooks/sendgrid", summary="SendGrid Event Webhook")
async def sendgrid(request: Request, user: User) -> dict[str, Any]:
    return await _webhook(request, user, "sendgrid", esp.sendgrid)


@router.post("/webhooks/ses", summary="Amazon SES notifications through SNS (subscription confirmations are logged)")
async def ses(request: Request, user: User) -> dict[str, Any]:
    return await _webhook(request, user, "ses", esp.ses)


# --- campaigns ---------------------------------------------------------------------------------


def _campaign_ids(engine: Engine) -> list[str]:
    return sorted(set(engine.plan.workspace.files) | set(engine.store.campaign_rows()))


def _known_campaign(engine: Engine, campaign: str) -> None:
    if campaign not in engine.plan.workspace.files and engine.store.campaign_number(campaign) is None:
        raise UnknownName(f"unknown campaign '{campaign}'")


def _campaign(engine: Engine, campaign: str, *, user: str, at, locks: dict | None = None) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    _known_campaign(engine, campaign)
    file = engine.plan.workspace.files.get(campaign)
    model = file.campaign if file is not None else None
    runs = campaign in engine.plan.campaigns
    stats = engine.stats(campaign, at) if runs else None
    return {**engine.status(campaign=campaign),
            "status": campaign_status(file is not None, runs, bool(model and model.active),
                                      campaign in (locks if locks is not None else engine.store.locks())),
            "trigger": model.trigger.kind if model is not None and model.trigger is not None else None,
            "in_campaign_pct": stats.get("in_campaign_pct") if stats else None,
            "alerts": engine.alerts(campaign, open_only=True)}


def campaign_status(has_file: bool, runs: bool, active: bool, locked: bool) -> str:
    """``removed`` (only the store knows it), ``error`` (its file has errors: it does not run),
    ``draft`` (``active: false``), ``locked`` (a one-shot that started sending), else ``active``."""
    if not has_file:
        return "removed"
    if not runs:
        return "error" if active else "draft"
    if not active:
        return "draft"
    return "locked" if locked else "active"


def _campaigns(engine: Engine, *, user: str, at) -> dict[str, Any]:
    locks = engine.store.locks()
    return {"campaigns": [_campaign(engine, cid, user=user, at=at, locks=locks) for cid in _campaign_ids(engine)]}


@router.get("/campaigns", summary="Every campaign with status, trigger, In-Campaign % and open alerts")
async def campaigns(request: Request, user: User) -> dict[str, Any]:
    return await _as(request, user, _campaigns)


@router.get("/campaigns/{campaign}", summary="One campaign")
async def campaign(request: Request, user: User, campaign: str) -> dict[str, Any]:
    return await _as(request, user, _campaign, campaign)


def _stats(engine: Engine, campaign: str, *, user: str, at) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    return engine.stats(campaign, at)


@router.get("/campaigns/{campaign}/stats", summary="Sent, opens, clicks, bounces, read per step; In-Campaign %")
async def stats(request: Request, user: User, campaign: str) -> dict[str, Any]:
    return await _as(request, user, _stats, campaign)


def _members(engine: Engine, campaign: str, *, user: str, at, status: str | None, offset: int, limit: int) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    _known_campaign(engine, campaign)
    enrollments = engine.store.enrollments_in(campaign, [status] if status else None)
    page = enrollments[offset:offset + limit]
    return {"campaign": campaign, "total": len(enrollments), "offset": offset, "limit": limit,
            "members": [{"partner": e.partner, "number": e.number, "status": e.status, "reason": e.reason,
                         "origin": e.origin, "next_step": e.next_step} for e in page]}


@router.get("/campaigns/{campaign}/members", summary="The campaign's enrollees, paged")
async def members(request: Request, user: User, campaign: str,
                  status: Annotated[str | None, Query(pattern="^(scheduled|active|paused|finished|removed)$")] = None,
                  offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    return await _as(request, user, _members, campaign, status=status, offset=offset, limit=limit)


def _alerts(engine: Engine, campaign: str, *, user: str, at) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    _known_campaign(engine, campaign)
    return {"campaign": campaign, "alerts": engine.alerts(campaign)}


@router.get("/campaigns/{campaign}/alerts", summary="The campaign's In-Campaign % alerts")
async def alerts(request: Request, user: User, campaign: str) -> dict[str, Any]:
    return await _as(request, user, _alerts, campaign)


# --- partners and enrollments ------------------------------------------------------------------


def _known_partner(engine: Engine, partner: str) -> None:
    if engine.book.get(partner) is None and not engine.store.enrollments_of(partner):
        raise UnknownName(f"unknown partner '{partner}'")


def _partner_campaigns(engine: Engine, partner: str, *, user: str, at) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    _known_partner(engine, partner)
    return engine.status(partner=partner)


@router.get("/partners/{partner}/campaigns", summary="The partner campaign list")
async def partner_campaigns(request: Request, user: User, partner: str) -> dict[str, Any]:
    return await _as(request, user, _partner_campaigns, partner)


def _enrollment(engine: Engine, campaign: str, partner: str) -> dict[str, Any]:
    found = [e for e in engine.status(partner=partner, campaign=campaign)["enrollments"]]
    return found[-1] if found else {"campaign": campaign, "partner": partner}


def _start(engine: Engine, campaign: str, body: Start, *, user: str, at) -> dict[str, Any]:
    engine.start(campaign, body.partner, body.on, user=user, at=at)
    return {"partner": body.partner, **_enrollment(engine, campaign, body.partner)}


@router.post("/campaigns/{campaign}/enrollments", status_code=201, summary="Start a partner in the campaign")
async def start(request: Request, user: User, campaign: str, body: Start) -> dict[str, Any]:
    return await _as(request, user, _start, campaign, body)


def _change(engine: Engine, action: str, campaign: str, partner: str, *, user: str, at) -> dict[str, Any]:
    getattr(engine, action)(campaign, partner, user=user, at=at)
    return {"partner": partner, **_enrollment(engine, campaign, partner)}


@router.post("/campaigns/{campaign}/enrollments/{partner}/{action}", summary="Pause, resume or remove an enrollment")
async def change(request: Request, user: User, campaign: str, partner: str, action: str) -> dict[str, Any]:
    if action not in ("pause", "resume", "remove"):
        raise UnknownName(f"no action '{action}' (pause, resume or remove)")
    return await _as(request, user, _change, action, campaign, partner)


def _step(engine: Engine, action: str, campaign: str, partner: str, step: str, *, user: str, at) -> dict[str, Any]:
    result = getattr(engine, action)(campaign, step, partner, user=user, at=at)
    return {"partner": partner, "step": step, **({"message": result} if isinstance(result, str) else {}),
            **_enrollment(engine, campaign, partner)}


@router.post("/campaigns/{campaign}/enrollments/{partner}/steps/{step}/{action}", summary="Skip or run again a step")
async def step_action(request: Request, user: User, campaign: str, partner: str, step: str, action: str) -> dict[str, Any]:
    if action not in ("skip", "rerun"):
        raise UnknownName(f"no action '{action}' (skip or rerun)")
    return await _as(request, user, _step, action, campaign, partner, step)


def _respond(engine: Engine, body: Respond, *, user: str, at) -> dict[str, Any]:
    duration = timedelta(minutes=body.duration) if isinstance(body.duration, int) else body.duration
    if isinstance(duration, timedelta) and duration < timedelta(0):
        raise Invalid("duration must not be negative")
    a = engine.respond(body.id, body.response, answers=body.answers, duration=duration, user=user, at=at)
    started = a.follow_up_enrollment
    return {"id": a.target, "kind": a.kind, "campaign": a.campaign, "step": a.step, "partner": a.partner,
            "response": a.response, "result": a.result, "follow_up": a.follow_up,
            "follow_up_number": started.number if started is not None else None, "follow_up_note": a.follow_up_note,
            "goto": a.goto, "goto_note": a.goto_note}


@router.post("/responses", summary="Record the response to an activity or mailing")
async def respond(request: Request, user: User, body: Respond) -> dict[str, Any]:
    return await _as(request, user, _respond, body)


# --- pop-ups -----------------------------------------------------------------------------------


def _popups(engine: Engine, partner: str, page: str | None, *, user: str, at) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    _known_partner(engine, partner)
    return {"partner": partner, "page": page, "popups": engine.popups(partner, page=page, unread=page is not None)}


@router.get("/partners/{partner}/popups", summary="Unread pop-ups for a portal page (all pop-ups without page)")
async def popups(request: Request, user: User, partner: str, page: str | None = None) -> dict[str, Any]:
    return await _as(request, user, _popups, partner, page)


def _read_popup(engine: Engine, popup: str, body: ReadPopup, *, user: str, at) -> dict[str, Any]:
    partner = body.partner
    if partner is None:
        try:
            partner = message_parts(popup)[1]
        except ValueError:
            raise UnknownName(f"no pop-up '{popup}'") from None
    return engine.read_popup(popup, partner, user=user, at=at)


@router.post("/popups/{popup}/read", summary="Mark a pop-up read for its partner")
async def read_popup(request: Request, user: User, popup: str, body: ReadPopup | None = None) -> dict[str, Any]:
    return await _as(request, user, _read_popup, popup, body or ReadPopup())


# --- the message center ------------------------------------------------------------------------


def _portal_link(engine: Engine, partner: str, page: str | None, days: int, signer: Signer, *, user: str,
                 at) -> dict[str, Any]:
    resolve_user(engine.plan, user, "read")
    try:
        return portal_links.issue(engine, signer, partner, at=at, page=page, days=days)
    except ConfigError as exc:  # no web.base_url: nothing the request could change
        raise Refused(str(exc)) from None


@router.get("/partners/{partner}/portal-link", summary="A signed, expiring link to the partner's message center")
async def portal_link(request: Request, user: User, partner: str, page: str | None = None,
                      days: Annotated[int, Query(ge=1, le=portal_links.MAX_DAYS)] = portal_links.DEFAULT_DAYS
                      ) -> dict[str, Any]:
    """``{"partner", "url", "expires"}``: a link for the portal's iframe (see docs/web.md)."""
    return await _as(request, user, _portal_link, partner, page or None, days, _site(request).signer)
