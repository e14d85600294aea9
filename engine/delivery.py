"""The outbox: committed messages handed to their transports, at least once (SPEC §10).

A step's transaction writes its messages to the store's outbox as ``queued``. After the commit
(at the start and end of every tick, and after an operation), :func:`deliver` hands what is due
to each channel's transport and records what became of each message:

- ``sent``: the transport took it (``delivered_at`` is the logical time of that attempt);
- a temporary failure (server down, 4xx, timeout, a full disk): still ``queued``, ``attempts``
  + 1, and not tried again before ``next_attempt``: 1 minute after the first failure, then 2, 4,
  8 … capped at one hour, all on the logical clock (a tick's ``--at``), so an outage loses
  nothing;
- a permanent failure (a 5xx reply, a 4xx from a webhook, a message the transport cannot even
  build): ``failed`` with the reason. It is that message's outcome alone: the others of the
  batch go on.

**Claims.** Before a message is handed over, the process claims it in the store
(:meth:`~engine.store.sqlite.SQLiteStore.claim_messages`): one short transaction marks a batch
of waiting messages as this process's, and no other process (another `engine tick`, a worker,
`engine serve`) takes a claimed message. The outcome clears the claim. A process that dies
holding claims leaves them to be taken back by the next delivery that sees the process gone
(:meth:`~engine.store.sqlite.SQLiteStore.reclaim_abandoned`), on both stores.

**One message at a time.** An external transport (SMTP, webhook) yields each outcome as soon as
it is known, and it is committed before the next message is handed over: a message that reached
a mail server is never handed over again because something later failed. What a kill can still
repeat is the one message in flight at that instant (the server took it, the store had not
recorded it yet): it goes again with the same ``Message-ID`` / ``Idempotency-Key``, which is
what those headers are for. The file transport writes each id once whatever it is asked, so
its outcomes are recorded a batch at a time.

**Handed over at commit.** A batch of due steps records the messages it makes for a local,
idempotent transport (the files) as ``sent`` in its own transaction, with a *handover* that lists
them, and writes them to their files as soon as it commits (:func:`hand_over_committed`): no
second reading of the outbox, no second write of each row. A handover is ended once its messages
are in their files. One that a killed process left is finished by the next delivery, before
anything else (:func:`deliver`); the files take what was already written as written. A message
the transport could not take after all is queued again (or failed) as its first attempt.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Callable, Iterator, Mapping, Sequence

from .channels import FAILED, RETRY, SENT, Outcome, Outgoing, Transport
from .channels.file import FileTransport
from .compiled import CompiledWorkspace
from .steps import LETTER_COLUMNS
from .store import Store
from .store.records import Queued

FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
BATCH = 1000  # messages claimed at a time for the file transport
EXTERNAL_BATCH = 100  # and for a transport that reaches another system (claims held shorter)

Transports = Mapping[str, Transport | None]


@dataclass(frozen=True)
class Handover:
    """Messages a step batch recorded as sent to a local transport, listed in the store as
    ``id`` until they are in their files."""

    id: int
    messages: list[Outgoing]


@dataclass
class Delivery:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    reclaimed: int = 0  # messages a process that died had claimed, handed over again
    waiting: list[str] = field(default_factory=list)  # channels whose transport cannot run

    def add(self, other: "Delivery") -> None:
        """Count another delivery's outcomes in this one."""
        self.sent, self.retry, self.failed = self.sent + other.sent, self.retry + other.retry, self.failed + other.failed

    def to_json(self) -> dict[str, int]:
        return {"sent": self.sent, "retry": self.retry, "failed": self.failed}


def backoff(attempts: int) -> timedelta:
    """How long after its ``attempts``-th failed attempt a message waits: 1m, 2m, 4m … 1h."""
    return min(FIRST_RETRY * 2 ** max(attempts - 1, 0), LONGEST_WAIT)


def transports(plan: CompiledWorkspace) -> dict[str, Transport | None]:
    """channel → its transport as engine.yaml configures it (None: cannot run here). The SMTP
    and webhook modules are imported only when a channel uses them (a tick stays quick to start)."""
    files = _files(plan)
    found: dict[str, Transport | None] = {"letter": files}
    for name in ("email", "sms"):
        channel = getattr(plan.settings.channels, name)
        if channel.transport == "file":
            found[name] = files
        elif channel.transport == "smtp":
            from .channels.smtp import SmtpTransport

            found[name] = SmtpTransport(channel, plan.root) if name == "email" else None
        elif channel.url:
            from .channels.webhook import WebhookTransport

            found[name] = WebhookTransport(channel.url)
        else:
            found[name] = None
    return found


def offline_transports(plan: CompiledWorkspace) -> dict[str, Transport | None]:
    """Every channel to the workspace's own files, whatever engine.yaml configures: what a
    simulation delivers through (it must never reach a mail server or an SMS provider)."""
    files = _files(plan)
    return {"letter": files, "email": files, "sms": files}


def _files(plan: CompiledWorkspace) -> FileTransport:
    return FileTransport(plan.root / ".engine" / "outbox", plan.root / ".engine" / "letters", LETTER_COLUMNS)


def deliver(store: Store, plan: CompiledWorkspace, at: datetime, using: Transports | None = None) -> Delivery:
    """Hand every queued message that is due at ``at`` to its transport; safe to repeat, and
    safe beside other processes doing the same on the same store."""
    using = transports(plan) if using is None else using
    result = Delivery(waiting=sorted(channel for channel, transport in using.items() if transport is None))
    result.reclaimed = store.reclaim_abandoned(at)
    _finish_handovers(store, plan, using, at, result)
    for external in (False, True):
        group = {c: t for c, t in using.items() if t is not None and t.external == external}
        channels = list(group)
        if channels and store.LOCKS_MESSAGES and all(t.idempotent for t in group.values()):
            _deliver_locked(store, using, channels, at, result)
            continue
        while channels:
            batch = store.claim_messages(at, channels, EXTERNAL_BATCH if external else BATCH)
            if not batch:
                break
            _deliver_batch(store, using, batch, at, result)
    return result


def local_channels(using: Transports) -> frozenset[str]:
    """The channels whose transport is local and idempotent (the files): their messages are
    handed over as their step batch commits."""
    return frozenset(channel for channel, transport in using.items() if _local(transport))


def hand_over_committed(store: Store, using: Transports, handover: Handover, at: datetime) -> Delivery:
    """Write a committed handover's messages to their transports and end it; a message that was
    not taken is queued again or failed. Counted here only if this process ended the handover
    (another may have finished it first, after a kill it took for this process's)."""
    outcomes = _hand_over_all(using, handover.messages)
    with store.delivering():
        ended = store.end_handover(handover.id)
        if ended:
            store.undo_handover(_not_taken(outcomes, at))
    return _counted(outcomes) if ended else Delivery()


def _finish_handovers(store: Store, plan: CompiledWorkspace, using: Transports, at: datetime,
                      result: Delivery) -> None:
    """The handovers a killed process left, each written and ended in one transaction that holds
    it, and logged (``delivery.handover``). Their messages go to their channel's local
    transport, or to the workspace's files if the channel has none now (they were recorded sent
    to the files)."""
    files = None
    while True:
        with store.delivering():
            left = store.left_handover()
            if left is None:
                return
            handover, messages = left
            chosen: dict[str, Transport | None] = {}
            for channel in {m.channel for m in messages}:
                transport = using.get(channel)
                chosen[channel] = transport if _local(transport) else (files := files or _files(plan))
            outcomes = _hand_over_all(chosen, [Outgoing(m.id, m.channel, m.record, m.html) for m in messages])
            store.undo_handover(_not_taken(outcomes, at))
            if store.end_handover(handover):
                store.log(at, "engine", "delivery.handover", count=len(messages))
        result.add(_counted(outcomes))


def _local(transport: Transport | None) -> bool:
    return transport is not None and transport.idempotent and not transport.external


def _hand_over_all(using: Mapping[str, Transport | None], messages: list[Outgoing]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for channel, group in groupby(sorted(messages, key=lambda m: m.channel), key=lambda m: m.channel):
        transport = using[channel]
        assert transport is not None
        outcomes += hand_over(transport, list(group))
    return outcomes


def _not_taken(outcomes: list[Outcome], at: datetime) -> list[tuple[str, str, str | None, datetime]]:
    """The outcomes of a handover's messages the transport did not take, as undo_handover wants
    them: each its first failed attempt."""
    return [(o.id, o.status, o.error, at + backoff(1)) for o in outcomes if o.status != SENT]


def _counted(outcomes: list[Outcome]) -> Delivery:
    counted = Counter(o.status for o in outcomes)
    return Delivery(sent=counted[SENT], retry=counted[RETRY], failed=counted[FAILED])


def _deliver_locked(store: Store, using: Transports, channels: list[str], at: datetime, result: Delivery) -> None:
    """Idempotent transports on a server store: each batch is claimed by its rows' locks for one
    transaction (:meth:`~engine.store.postgres.PostgresStore.lock_messages`), which hands it over
    and records its outcomes; no claim is written (one row update a message less). A worker
    killed meanwhile loses its transaction, and with it its locks: the batch waits again, and the
    transport, which writes each id once, takes what it had already written as written."""
    while True:
        done = Delivery()
        with store.delivering():
            batch = store.lock_messages(at, channels, BATCH)
            if batch:
                _deliver_batch(store, using, batch, at, done, claimed=False)
        if not batch:
            return
        result.add(done)  # counted once committed


def _deliver_batch(store: Store, using: Transports, batch: list[Queued], at: datetime, result: Delivery,
                   claimed: bool = True) -> None:
    """Hand a claimed batch over, channel by channel, recording each outcome as the transport
    allows; whatever was not recorded (the store failed meanwhile) is released (a batch held by
    row locks, ``claimed=False``, has nothing to release)."""
    attempts = {m.id: m.attempts for m in batch}
    recorded: set[str] = set()

    def record(outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        with store.delivering():
            store.record_outcomes([(o.id, o.status, o.error, at + backoff(attempts[o.id] + 1)) for o in outcomes], at)
        recorded.update(o.id for o in outcomes)
        counted = Counter(o.status for o in outcomes)
        result.sent += counted[SENT]
        result.retry += counted[RETRY]
        result.failed += counted[FAILED]
        outcomes.clear()

    try:
        for channel, messages in groupby(sorted(batch, key=lambda m: m.channel), key=lambda m: m.channel):
            transport = using[channel]
            assert transport is not None
            pending: list[Outcome] = []
            outgoing = [Outgoing(m.id, m.channel, m.record, m.html) for m in messages]
            for outcome in hand_over(transport, outgoing):
                pending.append(outcome)
                if not transport.idempotent:
                    record(pending)  # committed before the next message is handed over
            record(pending)
    finally:
        left = [m.id for m in batch if m.id not in recorded]
        if left and claimed:
            store.release_claims(left)


def hand_over(transport: Transport, messages: Sequence[Outgoing]) -> Iterator[Outcome]:
    """Each message's outcome, in order, whatever the transport raises: an exception is the
    outcome of the message it was handing over (a full disk or a lost connection: try again
    later; anything else: that message failed), and the rest of the batch goes on. A batch the
    file transport could not write is handed over again one message at a time, so that a
    message that cannot be written fails alone."""
    rest = list(messages)
    while rest:
        done = 0
        try:
            for outcome in transport.send(rest):
                yield outcome
                done += 1
            return
        except Exception as exc:  # noqa: BLE001 - the transport's problem is the message's outcome
            if transport.idempotent and done == 0 and len(rest) > 1:
                for message in rest:
                    yield from hand_over(transport, [message])
                return
            yield _outcome_of(rest[done], exc)
            rest = rest[done + 1:]


def _outcome_of(message: Outgoing, exc: Exception) -> Outcome:
    reason = f"{type(exc).__name__}: {exc}".rstrip(": ")
    if isinstance(exc, OSError):
        return Outcome(message.id, RETRY, f"could not hand it over: {reason}")
    return Outcome(message.id, FAILED, f"the {message.channel} transport cannot take it: {reason}")


TransportFactory = Callable[[CompiledWorkspace], Mapping[str, Transport | None]]

__all__ = ["Delivery", "Handover", "Outgoing", "TransportFactory", "backoff", "deliver", "hand_over",
           "hand_over_committed", "local_channels", "offline_transports", "transports"]
