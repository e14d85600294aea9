"""The routes that links inside messages point to (SPEC §12), open to anyone holding a token:

``GET /u/TOKEN``   a page that asks for confirmation (mail scanners follow GET links: a GET
                   never unsubscribes)
``POST /u/TOKEN``  unsubscribes the message's channel; RFC 8058 one-click posts
                   ``List-Unsubscribe=One-Click`` here and gets a 200 with a short text
``GET /p/TOKEN``   the preference page, one switch per channel; ``POST`` saves it
``GET /o/TOKEN``   the open pixel: a 1×1 GIF, recording ``opened``
``GET /c/TOKEN``   a 302 to the link the token carries, recording ``clicked`` with ``data.url``

A token that does not verify, or names a message the store does not have, is a 404 that records
nothing. Pages are rendered by jinja2 with autoescaping, say ``noindex``, may not be framed, and
send no referrer (the token is in the address).
"""

from __future__ import annotations

import base64
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from ..errors import UnknownName
from ..links import CLICK, ONE_CLICK, OPEN, PREFERENCES, UNSUBSCRIBE, Signed
from . import recipients
from .site import Site

router = APIRouter(include_in_schema=False)
pages = Environment(loader=PackageLoader("engine.web", "templates"), autoescape=select_autoescape(default=True))

PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")  # a transparent 1×1 GIF
CHANNEL_NAMES = {"email": "email", "sms": "text (SMS)"}
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'"}


def site_of(request: Request) -> Site:
    return request.app.state.site


def _page(name: str, status: int = 200, **context: object) -> HTMLResponse:
    return HTMLResponse(pages.get_template(name).render(**context), status_code=status, headers=PRIVATE)


def _not_found() -> HTMLResponse:
    return _page("not_found.html", 404)


async def _for_message(request: Request, kind: str, token: str, work, *args: object):
    """``(signed, work(engine, message, *args))`` for a token of this kind; None when the token
    does not verify or names a message the store does not have (a 404 that records nothing)."""
    site = site_of(request)
    signed = site.signer.read(kind, token)
    if signed is None:
        return None
    try:
        return signed, await site.call(work, signed.message, *args)
    except UnknownName:
        return None


def _links(request: Request, signed: Signed) -> dict[str, str]:
    signer = site_of(request).signer
    return {"action": f"/u/{signer.token(UNSUBSCRIBE, signed.message)}",
            "preferences_url": f"/p/{signer.token(PREFERENCES, signed.message)}"}


@router.get("/u/{token}")
async def unsubscribe_page(request: Request, token: str) -> Response:
    found = await _for_message(request, UNSUBSCRIBE, token, recipients.recipient)
    if found is None:
        return _not_found()
    signed, who = found
    return _page("unsubscribe.html", done=False, channel_name=CHANNEL_NAMES[who.channel], **_links(request, signed))


@router.post("/u/{token}")
async def unsubscribe(request: Request, token: str) -> Response:
    found = await _for_message(request, UNSUBSCRIBE, token, recipients.unsubscribe, site_of(request).now())
    if found is None:
        return _not_found()
    signed, who = found
    body = (await request.body()).decode("utf-8", "replace")
    if ONE_CLICK in body:  # a mail client's one-click (RFC 8058): nobody reads the answer
        return PlainTextResponse("unsubscribed\n", headers={"Cache-Control": "no-store"})
    return _page("unsubscribe.html", done=True, channel_name=CHANNEL_NAMES[who.channel], **_links(request, signed))


@router.get("/p/{token}")
async def preferences_page(request: Request, token: str) -> Response:
    found = await _for_message(request, PREFERENCES, token, recipients.preferences, site_of(request).now())
    return _preferences(token, found, saved=False)


@router.post("/p/{token}")
async def save_preferences(request: Request, token: str) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))  # a small urlencoded form
    wanted = {channel: form.get(channel) == ["on"] for channel in CHANNEL_NAMES}
    found = await _for_message(request, PREFERENCES, token, recipients.set_preferences, wanted, site_of(request).now())
    return _preferences(token, found, saved=True)


def _preferences(token: str, found, saved: bool) -> Response:
    if found is None:
        return _not_found()
    return _page("preferences.html", saved=saved, consents=found[1], channels=list(CHANNEL_NAMES.items()),
                 action=f"/p/{token}")


@router.get("/o/{token}")
async def opened(request: Request, token: str) -> Response:
    found = await _for_message(request, OPEN, token, recipients.engage, "opened", site_of(request).now())
    if found is None:
        return Response(status_code=404)
    return Response(PIXEL, media_type="image/gif", headers={"Cache-Control": "no-store, private"})


@router.get("/c/{token}")
async def clicked(request: Request, token: str) -> Response:
    site = site_of(request)
    signed = site.signer.read(CLICK, token)
    if signed is None or signed.link is None:
        return _not_found()
    try:
        await site.call(recipients.engage, signed.message, "clicked", site.now(), {"url": signed.link})
    except UnknownName:
        return _not_found()
    return RedirectResponse(signed.link, status_code=302,
                            headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
