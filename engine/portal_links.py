"""The signed link to a partner's message center (SPEC §12): ``BASE/m/TOKEN[?page=NAME]``.

The token signs ``[partner, expires]`` under the ``m`` kind of :mod:`engine.links`, so it opens
one partner's message center, cannot be turned into another partner's or into any other kind of
token, and needs nothing stored. It expires (:data:`DEFAULT_DAYS`): a link that leaked from the
portal's page stops working by itself; changing the signing key ends every link at once. The
page is not signed: it only chooses which of the partner's own pop-ups show first.

``engine portal-link P`` and ``GET /api/partners/P/portal-link`` make links; the routes of
:mod:`engine.web.portal` read them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .clock import from_iso, iso
from .errors import ConfigError, UnknownName, UsageError
from .links import PORTAL, Signer

if TYPE_CHECKING:
    from .api import Engine

DEFAULT_DAYS = 90  # a link works this long (a portal that fetches fresh links may ask for less)
MAX_DAYS = 366
NO_BASE_URL = "engine.yaml sets no web.base_url: a message center link needs the public address of engine serve"


@dataclass(frozen=True)
class PortalLink:
    partner: str
    expires: datetime

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


def token(signer: Signer, partner: str, expires: datetime) -> str:
    return signer.token(PORTAL, json.dumps([partner, iso(expires)], ensure_ascii=True))


def read(signer: Signer, presented: str) -> PortalLink | None:
    """What a token says, or None when we did not sign it (expiry is the caller's to check)."""
    signed = signer.read(PORTAL, presented)
    if signed is None or signed.link is not None:
        return None
    try:
        partner, expires = json.loads(signed.message)
        return PortalLink(str(partner), from_iso(expires))
    except (ValueError, TypeError):
        return None


def known_partner(engine: Engine, partner: str) -> bool:
    """In the partner source as last imported, or enrolled once (as the API's routes decide)."""
    return engine.book.get(partner) is not None or bool(engine.store.enrollments_of(partner))


def issue(engine: Engine, signer: Signer, partner: str, *, at: datetime, page: str | None = None,
          days: int = DEFAULT_DAYS) -> dict[str, Any]:
    """``{"url", "expires"}`` of a new link for a known partner; :class:`ConfigError` without
    ``web.base_url`` (a link needs the server's public address)."""
    base_url = engine.plan.settings.web.base_url
    if not base_url:
        raise ConfigError(NO_BASE_URL)
    if not 1 <= days <= MAX_DAYS:
        raise UsageError(f"a link lasts 1 to {MAX_DAYS} days, not {days}")
    if not known_partner(engine, partner):
        raise UnknownName(f"unknown partner '{partner}' (not in the partner source as last imported)")
    expires = at + timedelta(days=days)
    url = f"{base_url}/m/{token(signer, partner, expires)}"
    if page:
        url += f"?page={quote(page, safe='')}"
    return {"partner": partner, "url": url, "expires": iso(expires)}
