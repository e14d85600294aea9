"""What every page of the engine shares: rendering, the login session, CSRF checks, and the
login and logout routes (SPEC §12, pages).

Pages are jinja2 templates under ``templates/pages`` with autoescaping on, their text from the
language catalogue (:mod:`engine.web.catalogue`). Each page is a function of the engine, run on
the store's thread like an API route, as the logged-in user: reading needs the ``read`` role and
every action is the operation the CLI and the API run, with the same role checks and refusals.

Responses carry no-store, nosniff and a Content-Security-Policy with no scripts at all and
``frame-ancestors 'none'`` (the message center, meant for a portal's iframe, sets its own).
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from campaigns.enrollment import NotAllowed

from .. import apikeys
from ..api import Engine
from ..operations import resolve_user
from . import session as sessions
from .catalogue import catalogue
from .site import Site

router = APIRouter(include_in_schema=False)
templates = Environment(loader=PackageLoader("engine.web", "templates"), autoescape=select_autoescape(default=True))

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"}


class LoginNeeded(Exception):
    """No valid session: the login page, and the cookie dropped."""

    def __init__(self, reason: str = "login.expired"):
        self.reason = reason


class FormRefused(Exception):
    """A form without a valid CSRF token: refused (403), nothing done."""


def site_of(request: Request) -> Site:
    return request.app.state.site


def language(request: Request) -> str:
    return catalogue().choose(request.headers.get("accept-language"))


def translator(lang: str):
    texts = catalogue()
    return lambda key, **values: texts.text(lang, key, **values)


def render(request: Request, name: str, status: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> HTMLResponse:
    lang = language(request)
    page = templates.get_template(name).render(t=translator(lang), language=lang, **context)
    return HTMLResponse(page, status_code=status, headers={**HEADERS, **(headers or {})})


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


# --- the session -------------------------------------------------------------------------------


async def current_session(request: Request) -> sessions.Session:
    """The logged-in session of the request; :class:`LoginNeeded` when there is none, it does
    not verify, it expired, or its key was revoked (in any process)."""
    site = site_of(request)
    found = sessions.read(site.signer, request.cookies.get(sessions.COOKIE), site.now())
    if found is None:
        raise LoginNeeded("login.expired" if request.cookies.get(sessions.COOKIE) else "")

    def still_valid(engine: Engine) -> bool:
        row = engine.store.api_key(found.key_id)
        return row is not None and row["revoked_at"] is None and row["user"] == found.user

    if not await site.call(still_valid):
        raise LoginNeeded()
    return found


async def form_fields(request: Request) -> dict[str, str]:
    """The fields of a POSTed form (``application/x-www-form-urlencoded``, the only kind our
    forms send; the app caps a body at 1 MiB); the first value of a repeated field."""
    body = (await request.body()).decode("utf-8", "replace")
    try:
        fields = parse_qs(body, keep_blank_values=True, max_num_fields=100)
    except ValueError:  # more fields than any form of ours has: not one of ours (no CSRF token: refused)
        return {}
    return {key: values[0] for key, values in fields.items()}


async def checked_form(request: Request, session: sessions.Session) -> dict[str, str]:
    """The fields of a POSTed form, after its CSRF token was checked (:class:`FormRefused`)."""
    fields = await form_fields(request)
    if not sessions.form_token_ok(site_of(request).signer, session.token, fields.get("csrf")):
        raise FormRefused()
    return fields


LoggedIn = Annotated[sessions.Session, Depends(current_session)]  # a page's parameter: its session


def page_context(request: Request, session: sessions.Session, flash: str | None = None) -> dict[str, Any]:
    """What the base template needs: the session, its CSRF token, and a line to show at the top
    (text of our own: never taken from the address, where anyone could write it)."""
    return {"session": session, "csrf": sessions.form_token(site_of(request).signer, session.token),
            "flash": flash, "flash_refused": False}


def may(engine: Engine, user: str, action: str) -> bool:
    """Whether ``user`` holds a role the action needs (a page shows only the buttons that work)."""
    try:
        resolve_user(engine.plan, user, action)
    except NotAllowed:
        return False
    return True


def back_to(path: str, done: str | None = None) -> RedirectResponse:
    """303 to a page of ours after an action; ``done`` names the action (a catalogue key's last
    part), which the page shows only when it knows it."""
    return RedirectResponse(f"{quote(path)}?done={quote(done)}" if done else quote(path), status_code=303)


def refused_page(request: Request, session: sessions.Session, message: str, status: int = 409) -> HTMLResponse:
    """An action the engine refused: why, in one line; nothing was changed."""
    return render(request, "pages/refused.html", status, **page_context(request, session), message=message,
                  back=request.headers.get("referer") if (request.headers.get("referer") or "").startswith(
                      str(request.base_url)) else None)


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a path of this site only (never ``//host`` or a URL)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/campaigns"


# --- login and logout --------------------------------------------------------------------------


def _login_page(request: Request, status: int = 200, problem: str = "", nonce: str | None = None,
                **values: str) -> HTMLResponse:
    nonce = nonce or sessions.login_nonce()
    response = render(request, "pages/login.html", status, session=None, problem=problem, values=values,
                      csrf=sessions.form_token(site_of(request).signer, nonce),
                      next=safe_next(request.query_params.get("next")), hours=sessions.SESSION_HOURS)
    response.set_cookie(sessions.LOGIN_COOKIE, nonce, max_age=3600, httponly=True, samesite="strict",
                        secure=secure(request), path="/login")
    return response


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login")
async def login(request: Request) -> Response:
    site = site_of(request)
    fields = await form_fields(request)
    if not sessions.form_token_ok(site.signer, request.cookies.get(sessions.LOGIN_COOKIE), fields.get("csrf")):
        return _login_page(request, 403, "login.form_expired")
    key = fields.get("key", "").strip()

    def check(engine: Engine) -> tuple[str, str] | str:
        found = apikeys.verify(engine.store, key, site.now())
        if found is None:
            return "login.wrong_key"
        try:
            resolve_user(engine.plan, found[1], "read")
        except NotAllowed as refused:
            return str(refused)
        return found

    found = await site.call(check)
    if isinstance(found, str):
        return _login_page(request, 401 if found == "login.wrong_key" else 403, found)
    key_id, user = found
    started = sessions.issue(site.signer, user, key_id, site.now())
    response = RedirectResponse(safe_next(fields.get("next")), status_code=303)
    response.set_cookie(sessions.COOKIE, started.token, max_age=sessions.SESSION_HOURS * 3600, httponly=True,
                        samesite="strict", secure=secure(request), path="/")
    response.delete_cookie(sessions.LOGIN_COOKIE, path="/login")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    found = await current_session(request)
    await checked_form(request, found)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/campaigns", status_code=303)


def login_needed(request: Request, exc: LoginNeeded) -> Response:
    """A page without a valid session: the login page (back here after it); the cookie dropped."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":
        target = "/campaigns"
    response = RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def form_refused(request: Request, exc: FormRefused) -> Response:
    return render(request, "pages/refused.html", 403, session=None,
                  message=translator(language(request))("login.form_expired"))
