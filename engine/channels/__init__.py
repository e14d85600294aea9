"""Message transports behind one small interface: ``send(batch)`` yields each message's outcome.

`file` appends to `.engine/outbox/<channel>.jsonl` (and letters to CSV files), `smtp` hands
email to a mail server, `webhook` POSTs each SMS as JSON. The store's outbox calls them after the
step's transaction committed (see :mod:`engine.delivery`): delivery is at least once, so every
transport is told the message's stable id (the file's dedupe key, the ``Message-ID`` header, the
``Idempotency-Key`` header) and a retried message is recognised by whoever receives it.

A transport yields the outcomes in the batch's order, each as soon as it is known: the delivery
loop records it in the store before it asks for the next, so a message handed to a mail server
is never handed over again because a later one failed. ``idempotent`` transports (the file
transport: it writes each id once, whatever it is asked) may be recorded a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Protocol, Sequence

SENT, RETRY, FAILED = "sent", "retry", "failed"


@dataclass(frozen=True)
class Outgoing:
    """A committed message: the record of SPEC §8, and whether its body is HTML."""

    id: str
    channel: str  # email | sms | letter
    record: Mapping[str, Any]
    html: bool = False
    encoded: str | None = None  # the record as the outbox keeps it (compact JSON), when at hand


@dataclass(frozen=True)
class Outcome:
    id: str
    status: str  # sent | retry (a temporary failure: try again later) | failed (permanent)
    error: str | None = None


class Transport(Protocol):
    idempotent: bool  # handing a message over twice has the effect of once (its outcomes may wait)
    external: bool  # reaches another system (a simulation never uses one)

    def send(self, batch: Sequence[Outgoing]) -> Iterator[Outcome]:
        """Try to deliver each message in order; yield what became of each as soon as it is
        known. A failure of the other side is an outcome; raising is for the unexpected (the
        delivery loop makes it the outcome of the message being handed over)."""
        ...
