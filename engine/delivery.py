"""The outbox: committed messages handed to their transports, at least once (SPEC §10).

A step's transaction writes its messages to the store's outbox as ``queued``. After the commit
(at the start and end of every tick, and after an operation), :func:`deliver` hands what is due
to each channel's transport and records what became of each message in one transaction:

- ``sent``: the transport took it (``delivered_at`` is the logical time of that attempt);
- a temporary failure (server down, 4xx, timeout): still ``queued``, ``attempts`` + 1, and not
  tried again before ``next_attempt``: 1 minute after the first failure, then 2, 4, 8 … capped
  at one hour, all on the logical clock (a tick's ``--at``), so an outage loses nothing;
- a permanent failure (a 5xx reply, a 4xx from a webhook): ``failed`` with the reason.

A kill between a transport taking a message and the store recording it means the message is
handed over again: the file transport writes each id once; mail servers and SMS providers get
the same ``Message-ID`` / ``Idempotency-Key`` and can recognise it.

Several workers on one server store (PostgreSQL) deliver side by side: each batch is read,
sent and recorded inside ``store.delivering()``, which keeps the messages it read to that
worker until their outcomes are committed (the others skip them), so no message is handed to
two transports at once. On SQLite that is a no-op and each step below is as it always was.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from .channels import FAILED, RETRY, SENT, Outcome, Outgoing, Transport
from .channels.file import FileTransport
from .compiled import CompiledWorkspace
from .steps import LETTER_COLUMNS
from .store import Store

FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
BATCH = 1000


@dataclass
class Delivery:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    waiting: list[str] = field(default_factory=list)  # channels whose transport cannot run

    def to_json(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed attempt a message waits: 1m, 2m, 4m … 1h."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def transports(plan: CompiledWorkspace) -> dict[str, Transport | None]:
    """channel → its transport as engine.yaml configures it (None: cannot run here). The SMTP
    and webhook modules are imported only when a channel uses them (a tick stays quick to start)."""
    files = FileTransport(plan.root / ".engine" / "outbox", plan.root / ".engine" / "letters", LETTER_COLUMNS)
    found: dict[str, Transport | None] = {"letter": files}
    for name in ("email", "sms"):
        channel = getattr(plan.settings.channels, name)
        if channel.transport == "file":
            found[name] = files
        elif channel.transport == "smtp":
            from .channels.smtp import SmtpTransport

            found[name] = SmtpTransport(channel) if name == "email" else None
        elif channel.url:
            from .channels.webhook import WebhookTransport

            found[name] = WebhookTransport(channel.url)
        else:
            found[name] = None
    return found


def deliver(store: Store, plan: CompiledWorkspace, at: datetime,
            using: Mapping[str, Transport | None] | None = None) -> Delivery:
    """Hand every queued message that is due at ``at`` to its transport; safe to repeat."""
    using = transports(plan) if using is None else using
    result = Delivery()
    runnable = [channel for channel, transport in using.items() if transport is not None]
    result.waiting = sorted(channel for channel, transport in using.items() if transport is None)
    tried: set[str] = set()
    while True:
        with store.delivering():  # a server store's workers each send the messages they claimed
            batch = [m for m in store.queued(at, runnable, BATCH) if m.id not in tried]
            if not batch:
                return result
            tried.update(m.id for m in batch)
            outcomes: list[Outcome] = []
            for channel in dict.fromkeys(m.channel for m in batch):
                transport = using[channel]
                assert transport is not None
                outcomes += transport.send([Outgoing(m.id, m.channel, m.record, m.html)
                                            for m in batch if m.channel == channel])
            attempts = {m.id: m.attempts for m in batch}
            with store.transaction():
                store.record_outcomes([(o.id, o.status, o.error, at + backoff(attempts[o.id] + 1))
                                       for o in outcomes], at)
        counted = Counter(o.status for o in outcomes)
        result.sent += counted[SENT]
        result.retry += counted[RETRY]
        result.failed += counted[FAILED]


__all__ = ["Delivery", "Outgoing", "backoff", "deliver", "transports"]
