"""The partner's message center (SPEC §12), for a partner portal to show in an iframe:

``GET /m/TOKEN[?page=NAME]``          the unread pop-ups (those that name the page, with one),
                                      each with a "Mark read" button; below, every pop-up of the
                                      partner with its read time (the center keeps them all)
``POST /m/TOKEN/popups/ID/read``      marks one read; 303 back to the same page

The token is a signed, expiring link for one partner (:mod:`engine.portal_links`, made by
``engine portal-link P``). One that does not verify, has expired or names an unknown partner is a
404 page that records nothing; so is a pop-up that is not the partner's.

Who marks a pop-up read here is the partner, and the signed link is the authority: the route
calls :meth:`Engine.read_popup` without a user, which writes ``partner:P`` to the audit log. The
role check of ``engine popup read`` (marketing or events) is for people marking pop-ups read *for*
a partner; nobody logs in here, and the link, checked in constant time, stands in for the login.
Each form carries a CSRF token bound to the link's token (:func:`session.form_token`), so another
site's page cannot post one.

Pop-up titles and bodies are plain text (campaign strings are rendered unescaped, as for SMS):
the page escapes them like any other value. Responses have the pages' headers (no scripts,
nosniff, no-store) but their own ``frame-ancestors``: ``'self'`` and engine.yaml's
``web.frame_ancestors``, or ``'none'`` when it lists no origins; and no referrer, since the token
is in the address.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from .. import portal_links
from ..api import Engine
from ..clock import from_iso
from ..errors import UnknownName
from . import pages
from . import session as sessions
from .site import Site

router = APIRouter(include_in_schema=False)
TEMPLATE = "portal/center.html"


def headers(ancestors: Sequence[str]) -> dict[str, str]:
    """The pages' headers, with the framing the workspace allows."""
    framing = "frame-ancestors " + (" ".join(("'self'", *ancestors)) if ancestors else "'none'")
    directives = [d.strip() for d in pages.HEADERS["Content-Security-Policy"].split(";") if d.strip()]
    policy = [d for d in directives if not d.startswith("frame-ancestors")] + [framing]
    kept = {name: value for name, value in pages.HEADERS.items() if name.lower() != "x-frame-options"}
    return {**kept, "Content-Security-Policy": "; ".join(policy), "Referrer-Policy": "no-referrer",
            "X-Robots-Tag": "noindex"}


def _render(request: Request, status: int, ancestors: Sequence[str], **context: Any) -> HTMLResponse:
    lang = pages.language(request)
    context.setdefault("problem", "")
    page = pages.templates.get_template(TEMPLATE).render(t=pages.translator(lang), language=lang, **context)
    return HTMLResponse(page, status_code=status, headers=headers(ancestors))


def _open(engine: Engine, site: Site, token: str) -> tuple[str | None, str, list[str]]:
    """(partner, problem, frame ancestors): the partner the link opens, or None and the
    catalogue key of why not."""
    ancestors = list(engine.plan.settings.web.frame_ancestors)
    link = portal_links.read(site.signer, token)
    if link is None or not portal_links.known_partner(engine, link.partner):
        return None, "portal.not_valid", ancestors
    if link.expired(site.now()):
        return None, "portal.expired", ancestors
    return link.partner, "", ancestors


def _when(engine: Engine, stamp: str | None) -> str:
    return from_iso(stamp).astimezone(engine.plan.tz).strftime("%Y-%m-%d %H:%M") if stamp else ""


def _center(engine: Engine, partner: str, token: str, page: str | None) -> dict[str, Any]:
    """What the page shows: the unread pop-ups (of the page), then all of them, newest first."""
    unread = engine.popups(partner, page=page) if page else engine.popups(partner, unread=True)

    def shown(popup: dict) -> dict[str, Any]:
        return {"id": popup["id"], "title": popup["title"], "body": popup["body"],
                "shown": _when(engine, popup["created_at"]),
                "read": _when(engine, popup["read_at"]),
                "action": f"/m/{token}/popups/{quote(popup['id'], safe='')}/read"}

    return {"unread": [shown(p) for p in reversed(unread)],
            "history": [shown(p) for p in reversed(engine.popups(partner))], "zone": str(engine.plan.tz)}


@router.get("/m/{token}")
async def center(request: Request, token: str, page: str | None = None) -> Response:
    site = pages.site_of(request)
    page = page or None

    def look(engine: Engine) -> tuple[str, list[str], dict[str, Any]]:
        partner, problem, ancestors = _open(engine, site, token)
        return problem, ancestors, _center(engine, partner, token, page) if partner is not None else {}

    problem, ancestors, found = await site.call(look)
    if problem:
        return _render(request, 404, ancestors, problem=problem)
    return _render(request, 200, ancestors, page=page, csrf=sessions.form_token(site.signer, token), **found)


@router.post("/m/{token}/popups/{popup:path}/read")
async def mark_read(request: Request, token: str, popup: str) -> Response:
    site = pages.site_of(request)
    form = await pages.form_fields(request)
    csrf, page = form.get("csrf"), form.get("page") or None

    def mark(engine: Engine) -> tuple[int, str, list[str]]:
        partner, problem, ancestors = _open(engine, site, token)
        if partner is None:
            return 404, problem, ancestors
        if not sessions.form_token_ok(site.signer, token, csrf):
            return 403, "portal.refused", ancestors
        try:
            engine.read_popup(popup, partner, at=site.now())  # no user: the partner's own act, logged partner:P
        except UnknownName:
            return 404, "portal.no_popup", ancestors
        return 303, "", ancestors

    status, problem, ancestors = await site.call(mark)
    back = f"/m/{token}" + (f"?page={quote(page, safe='')}" if page else "")
    if problem:  # a link that works leads back to its center
        return _render(request, status, ancestors, problem=problem,
                       back=back if problem in ("portal.refused", "portal.no_popup") else "")
    return RedirectResponse(back, status_code=303,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
