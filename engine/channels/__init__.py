"""Message transports behind one small interface: ``send(batch) -> outcomes``.

`file` appends to `.engine/outbox/<channel>.jsonl` (and letters to CSV files), `smtp` hands
email to a mail server, `webhook` POSTs each SMS as JSON. The store's outbox calls them after the
step's transaction committed (see :mod:`engine.delivery`): delivery is at least once, so every
transport is told the message's stable id (the file's dedupe key, the ``Message-ID`` header, the
``Idempotency-Key`` header) and a retried message is recognised by whoever receives it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

SENT, RETRY, FAILED = "sent", "retry", "failed"


@dataclass(frozen=True)
class Outgoing:
    """A committed message: the record of SPEC §8, and whether its body is HTML."""

    id: str
    channel: str  # email | sms | letter
    record: Mapping[str, Any]
    html: bool = False


@dataclass(frozen=True)
class Outcome:
    id: str
    status: str  # sent | retry (a temporary failure: try again later) | failed (permanent)
    error: str | None = None


class Transport(Protocol):
    def send(self, batch: Sequence[Outgoing]) -> list[Outcome]:
        """Try to deliver each message; say what became of each. Never raises for a failure
        of the other side (that is an outcome), only for a bug."""
        ...
