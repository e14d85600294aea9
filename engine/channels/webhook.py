"""SMS through an HTTP endpoint: each message POSTed as the JSON record of SPEC §8, with an
``Idempotency-Key`` header (the message id) so a retried POST is recognisably the same message.

An email sent this way (``channels.email.transport: webhook``) posts its record likewise: its
``attachments`` are the metadata recorded when the step ran (path, size, sha256, content type),
never the files' content (the receiver knows what was meant to be attached; to send the files
themselves, use the smtp transport).

2xx → sent; 408, 429 and 5xx, or no answer → retry; any other 4xx → failed (the provider will
not take it, e.g. a malformed number), with the status and the start of the response body.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote
from typing import Iterator, Sequence

from . import FAILED, RETRY, SENT, Outcome, Outgoing

TIMEOUT = 15
TRANSIENT = {408, 425, 429}


def idempotency_key(message_id: str) -> str:
    """The message id as a header value: HTTP headers are Latin-1 text on one line, partner ids
    may be any readable text (``名前``), so everything but ASCII letters, digits and ``:-._~``
    is percent-encoded (one id, one key; the JSON body carries the id as it is)."""
    return quote(message_id, safe=":-._~")


class WebhookTransport:
    idempotent, external = False, True

    def __init__(self, url: str):
        self.url = url

    def send(self, batch: Sequence[Outgoing]) -> Iterator[Outcome]:
        for n, message in enumerate(batch):
            outcome = self._post(message)
            yield outcome
            if outcome.status == RETRY and outcome.error and outcome.error.startswith("unreachable"):
                # the endpoint is down: the rest of the batch waits for the next attempt too
                yield from (Outcome(m.id, RETRY, outcome.error) for m in batch[n + 1:])
                return

    def _post(self, message: Outgoing) -> Outcome:
        body = json.dumps(dict(message.record), ensure_ascii=False).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Idempotency-Key": idempotency_key(message.id), "User-Agent": "campaign-engine"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                response.read()
            return Outcome(message.id, SENT)
        except urllib.error.HTTPError as exc:
            detail = exc.read(200).decode("utf-8", "replace").strip()
            reason = f"HTTP {exc.code}" + (f": {detail}" if detail else "")
            status = RETRY if exc.code in TRANSIENT or exc.code >= 500 else FAILED
            return Outcome(message.id, status, reason)
        except (urllib.error.URLError, OSError) as exc:
            return Outcome(message.id, RETRY, f"unreachable: {getattr(exc, 'reason', exc)}")
