"""Links inside messages (SPEC §12): signed tokens, List-Unsubscribe headers, the open pixel and
click redirects.

A token is ``PAYLOAD.MAC``, both base64url without padding: the payload is the message id (and,
for a click, NUL and the link), the MAC is HMAC-SHA256 over the token's kind (``u`` unsubscribe,
``p`` preferences, ``o`` open, ``c`` click; for the pages, ``s`` a login session, ``f`` a form's
CSRF token, ``m`` a message center link), NUL and the payload. So a token names one message
(and one link of it), and a pixel token cannot be replayed as an unsubscribe.

A token is checked by making it again from its payload and comparing the two strings in constant
time: any changed character, including one in the spare bits of base64's last character, fails
the check. Nothing is stored per link: a click token carries its link, and only links that were
in the message (signed when it was rendered) can be redirected to.

The key is the value of the environment variable that ``web.secret_env`` names. A simulation or
``engine test`` signs with :data:`OFFLINE_KEY`: its links look real but no server accepts them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import os
import re
from dataclasses import dataclass
from typing import Any

from campaigns.shapes import Web

from .errors import ConfigError

OFFLINE_KEY = b"offline: links in a simulation are never valid"
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
UNSUBSCRIBE, PREFERENCES, OPEN, CLICK = "u", "p", "o", "c"
SESSION, FORM, PORTAL = "s", "f", "m"  # a page login, a form's CSRF token, a message center link
_KINDS = {UNSUBSCRIBE, PREFERENCES, OPEN, CLICK, SESSION, FORM, PORTAL}


class MissingSecret(ConfigError):
    """``web.base_url`` is set but the signing key is not in the environment."""


@dataclass(frozen=True)
class Signed:
    message: str
    link: str | None = None


@dataclass(frozen=True)
class Signer:
    key: bytes

    def token(self, kind: str, message: str, link: str | None = None) -> str:
        payload = message if link is None else f"{message}\0{link}"
        return self._token(kind, payload.encode())

    def read(self, kind: str, token: str) -> Signed | None:
        """What a token of this kind names, or None when it is not one we signed."""
        if kind not in _KINDS or token.count(".") != 1 or not token.isascii():
            return None
        encoded = token.partition(".")[0]
        try:
            payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            text = payload.decode()
        except (ValueError, UnicodeDecodeError):
            return None
        if not hmac.compare_digest(self._token(kind, payload).encode(), token.encode()):
            return None
        message, separator, link = text.partition("\0")
        return Signed(message, link if separator else None)

    def _token(self, kind: str, payload: bytes) -> str:
        mac = hmac.new(self.key, kind.encode() + b"\0" + payload, hashlib.sha256).digest()
        return f"{_b64(payload)}.{_b64(mac)}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signer(web: Web, offline: bool = False) -> Signer | None:
    """The workspace's signer; None when messages carry no links (no ``web.base_url``)."""
    if offline:
        return Signer(OFFLINE_KEY)
    secret = os.environ.get(web.secret_env, "")
    if not secret:
        return None
    return Signer(secret.encode())


def require_signer(web: Web, offline: bool = False) -> Signer | None:
    """The signer a tick needs: None without ``base_url``; refused when the key is missing, since
    marketing email without a working unsubscribe link must not go out."""
    if not web.base_url:
        return None
    found = signer(web, offline)
    if found is None:
        raise MissingSecret(f"engine.yaml sets web.base_url, so every email carries signed links: set the "
                            f"environment variable {web.secret_env} (web.secret_env) to the signing key")
    return found


@dataclass(frozen=True)
class Links:
    """The links of one message: what its template may use and what its record carries."""

    base_url: str
    signer: Signer
    tracking: bool
    mailto: str | None

    def url(self, kind: str, message: str, link: str | None = None) -> str:
        return f"{self.base_url}/{kind}/{self.signer.token(kind, message, link)}"

    def variables(self, message: str, *, unsubscribe: bool = True) -> dict[str, str]:
        """``unsubscribe=False``: a transactional message, which offers no unsubscribe link."""
        return {"unsubscribe_url": self.url(UNSUBSCRIBE, message) if unsubscribe else "",
                "preferences_url": self.url(PREFERENCES, message)}

    def headers(self, message: str) -> dict[str, str]:
        targets = [f"<{self.url(UNSUBSCRIBE, message)}>"]
        if self.mailto:
            targets.append(f"<mailto:{self.mailto}?subject=unsubscribe>")
        return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": ONE_CLICK}

    def track(self, message: str, body: str) -> str:
        """An HTML body with the http(s) link of each ``<a href>`` (the first
        :data:`MAX_TRACKED_LINKS`) sent through the click redirect, and the open pixel added
        before ``</body>`` (else at the end). Our own links stay as they are. One pass over the
        body, whatever it holds: a template's output is not trusted to be HTML."""
        if not self.tracking:
            return body
        parts: list[str] = []
        done, tracked = 0, 0
        for start, end in _anchor_tags(body):
            if tracked == MAX_TRACKED_LINKS:
                break
            found = _HREF.search(body, start, end)
            link = html.unescape(found.group(2)) if found else ""
            if not found or link.startswith(self.base_url + "/") or not _trackable(link):
                continue
            parts += [body[done:found.start(2)], self.url(CLICK, message, link)]
            done, tracked = found.end(2), tracked + 1
        parts.append(body[done:])
        body = "".join(parts)
        pixel = (f'<img src="{self.url(OPEN, message)}" width="1" height="1" alt="" '
                 f'style="display:block;border:0;width:1px;height:1px">')
        end = body.lower().rfind("</body>")
        return body[:end] + pixel + body[end:] if end >= 0 else body + pixel


MAX_TRACKED_LINKS = 1000  # links of one message sent through the click redirect; the rest stay as written
# An href with an absolute http(s) address, in either quotes (searched inside one tag).
_HREF = re.compile(r"""\bhref\s*=\s*(["'])(https?://[^"'<>]*)\1""", re.IGNORECASE)


def _anchor_tags(body: str):
    """(start, end) of each ``<a …>`` tag, in one pass: each search goes on after the last."""
    lower, position = body.lower(), 0
    while True:
        start = lower.find("<a", position)
        if start < 0:
            return
        after = lower[start + 2:start + 3]
        if after and not (after.isspace() or after == ">"):  # <abbr>, <article>, ...
            position = start + 2
            continue
        end = body.find(">", start)
        if end < 0:
            return
        yield start, end
        position = end + 1


def _trackable(link: str) -> bool:
    return not any(ch.isspace() or ord(ch) < 32 or ch == "\0" for ch in link) and len(link) <= 2000


def links_for(web: Web, signer_: Signer | None) -> Links | None:
    if not web.base_url or signer_ is None:
        return None
    return Links(web.base_url, signer_, web.tracking, web.unsubscribe_mailto)


def decorate(record: dict[str, Any], links: Links | None, html_body: bool, *, unsubscribe: bool = True) -> dict[str, Any]:
    """An email's outbox record with its headers (none for a transactional one) and, for HTML,
    its tracked body."""
    if links is None:
        return record
    if unsubscribe:
        record["headers"] = links.headers(record["id"])
    if html_body:
        record["body"] = links.track(record["id"], record["body"])
    return record
