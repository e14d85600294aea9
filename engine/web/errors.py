"""How the web answers what went wrong: the CLI's exit codes become HTTP statuses (SPEC §12).

========================================  ======  =========
what                                      HTTP    CLI exit
========================================  ======  =========
no valid API key                          401     -
the user lacks the role (NotAllowed)      403     3
unknown campaign, partner, step, id       404     1
refused by state or lock (Refused)        409     3
body over the limit                       413     -
wrong input (Invalid, SourceError, ...)   422     1 / 2
========================================  ======  =========
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from campaigns.enrollment import NotAllowed, Refused
from dsl.diagnostics import SourceError

from ..errors import StoreBusy, UnknownName, UsageError


class Invalid(ValueError):
    """Input the API cannot take (422), with the problems found."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class Unauthorized(Exception):
    """No API key, or one that is unknown or revoked (401)."""


def problem(status: int, message: str, problems: list | None = None, headers: dict | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if problems:
        body["problems"] = problems
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized) -> JSONResponse:
        return problem(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="engine"'})

    @app.exception_handler(NotAllowed)
    async def not_allowed(request: Request, exc: NotAllowed) -> JSONResponse:
        return problem(403, exc.message)

    @app.exception_handler(UnknownName)
    async def unknown(request: Request, exc: UnknownName) -> JSONResponse:
        return problem(404, str(exc))

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> JSONResponse:
        return problem(409, exc.message)

    @app.exception_handler(StoreBusy)
    async def busy(request: Request, exc: StoreBusy) -> JSONResponse:
        return problem(503, f"{exc}; try again", headers={"Retry-After": "1"})

    @app.exception_handler(Invalid)
    async def invalid(request: Request, exc: Invalid) -> JSONResponse:
        return problem(422, str(exc), exc.problems)

    @app.exception_handler(SourceError)
    async def source_error(request: Request, exc: SourceError) -> JSONResponse:
        problems = [{"message": d.message} for d in exc.diagnostics]
        return problem(422, problems[0]["message"] if len(problems) == 1 else "the input has errors", problems)

    @app.exception_handler(UsageError)
    async def usage(request: Request, exc: UsageError) -> JSONResponse:
        return problem(422, str(exc))

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # the client left before sending its body: nobody reads this

    @app.exception_handler(RequestValidationError)
    async def validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [{"where": ".".join(str(part) for part in e["loc"]), "message": e["msg"]} for e in exc.errors()]
        first = problems[0] if problems else {"where": "body", "message": "invalid"}
        return problem(422, f"{first['where']}: {first['message']}", problems)
