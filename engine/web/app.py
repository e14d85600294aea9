"""The ASGI application of ``engine serve``: FastAPI (its OpenAPI document comes from the same
pydantic models the routes validate with) over the public routes, the API and the pages.

``create_app`` takes everything from its arguments, so a test can serve a workspace with a
fixed clock and no background tick, and tick it itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..clock import Clock, SystemClock
from ..links import Signer
from . import api, campaign_pages, errors, pages, partner_pages, portal, public
from .site import Site
from .ticker import Ticker

MAX_BODY = 1024 * 1024  # bytes of a request body: an events batch or a webhook delivery


def create_app(workspace: Path, signer: Signer, *, store: str | None = None, clock: Clock | None = None,
               tick_every: timedelta | None = None) -> FastAPI:
    clock = clock or SystemClock()
    site = Site(workspace, store, signer, clock)
    ticker = Ticker(workspace, store, clock, tick_every) if tick_every else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if ticker is not None:
            ticker.start()
        try:
            yield
        finally:
            if ticker is not None:
                ticker.stop()  # the tick in progress finishes first
            site.close()

    app = FastAPI(title="Campaign engine", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Links inside messages, ESP webhooks, and the API for the CRM and the partner portal.")
    app.state.site = site
    app.state.ticker = ticker
    errors.install(app)
    app.add_exception_handler(pages.LoginNeeded, pages.login_needed)
    app.add_exception_handler(pages.FormRefused, pages.form_refused)
    app.include_router(public.router)
    app.include_router(api.router)
    app.include_router(pages.router)
    app.include_router(campaign_pages.router)
    app.include_router(partner_pages.router)
    app.include_router(portal.router)
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    return app


class BodyLimit:
    """Requests with a body over ``limit`` bytes get 413 before a route reads them (declared by
    Content-Length, or counted as a chunked body arrives)."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _too_large(send, self.limit)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _TooLarge()
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await _too_large(send, self.limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"error": "the body is over the limit of {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
