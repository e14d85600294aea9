"""Who is logged in to the pages, and whether a form came from one of our pages.

A person logs in with an API key (``engine apikey create USER``): the key is checked once, and
the browser gets a cookie holding a signed session, ``[user, key id, issued]``, HttpOnly (no
script reads it), SameSite=Strict (no other site's page sends it) and Secure when the pages
are served over https. The key itself is never in the cookie. Every request checks the
signature in constant time (:mod:`engine.links`), the age (:data:`SESSION_HOURS`) and that the
key is still not revoked, so revoking a key logs out its sessions in every process; a cookie
that fails any check is a login page, and the cookie is dropped.

Every form carries a CSRF token: the signature, under the ``f`` kind, of a digest of the
session, so it holds for that session only and needs no storage. The login form, before any
session, is tied the same way to a random value in a short-lived cookie of its own.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..clock import from_iso, iso
from ..links import FORM, SESSION, Signer

COOKIE = "engine_session"
LOGIN_COOKIE = "engine_login"  # the login form's own CSRF value, before there is a session
SESSION_HOURS = 12  # a login lasts this long (a working day), then the login page again


@dataclass(frozen=True)
class Session:
    user: str
    key_id: str
    issued: datetime
    token: str  # the cookie's value

    @property
    def expires(self) -> datetime:
        return self.issued + timedelta(hours=SESSION_HOURS)


def issue(signer: Signer, user: str, key_id: str, at: datetime) -> Session:
    token = signer.token(SESSION, json.dumps([user, key_id, iso(at)], ensure_ascii=True))
    return Session(user, key_id, at, token)


def read(signer: Signer, token: str | None, now: datetime) -> Session | None:
    """The session a cookie holds, or None when it was not signed by us, is damaged, or expired."""
    if not token:
        return None
    signed = signer.read(SESSION, token)
    if signed is None or signed.link is not None:
        return None
    try:
        user, key_id, issued = json.loads(signed.message)
        session = Session(str(user), str(key_id), from_iso(issued), token)
    except (ValueError, TypeError):
        return None
    return session if session.issued <= now + timedelta(minutes=5) and now < session.expires else None


def form_token(signer: Signer, bound_to: str) -> str:
    """The CSRF token of the forms of a session (``bound_to``: its cookie value) or of the login form."""
    return signer.token(FORM, _digest(bound_to))


def form_token_ok(signer: Signer, bound_to: str | None, presented: str | None) -> bool:
    if not bound_to or not presented or not presented.isascii():
        return False
    return hmac.compare_digest(form_token(signer, bound_to).encode(), presented.encode())


def login_nonce() -> str:
    return secrets.token_urlsafe(16)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
