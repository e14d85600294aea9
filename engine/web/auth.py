"""Who a request acts as: the user of its API key (``engine apikey create USER``).

The key comes as ``Authorization: Bearer KEY``, or as the password of HTTP Basic authentication
(the user name is ignored), for senders that can only put credentials in the address, such as
Amazon SNS (``https://engine:KEY@host/api/webhooks/ses``). The key is checked against the store
on every request, so a revoked key is refused from the next request on, in every process.
"""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from .. import apikeys
from ..api import Engine
from .errors import Unauthorized
from .site import Site


def presented_key(header: str) -> str | None:
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


async def api_user(request: Request) -> str:
    key = presented_key(request.headers.get("authorization", ""))
    if key is None:
        raise Unauthorized("this needs an API key: Authorization: Bearer KEY (engine apikey create USER)")
    site: Site = request.app.state.site

    def verify(engine: Engine) -> tuple[str, str] | None:
        return apikeys.verify(engine.store, key, site.now())

    found = await site.call(verify)
    if found is None:
        raise Unauthorized("the API key is not valid (unknown or revoked)")
    return found[1]
