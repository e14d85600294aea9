"""What the links inside a message do for its recipient (SPEC §12): unsubscribe, set
preferences, and the open and click they report. Each takes the engine and the message id a
verified token named, and runs in one store transaction.

Decisions:

- Unsubscribing writes the consent ledger (source ``link:MESSAGE``) for the message's channel,
  unless the ledger already says no for it: a second POST of the same link (a mail client's
  one-click, then the person on the page) changes nothing.
- The preference page writes an entry only for a channel whose switch changed.
- An open (the pixel) and a click are engagement events like those of ``engine events import``,
  each request its own event; they are not written to the audit log (they are not operations).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

from ..api import Engine
from ..errors import UnknownName
from ..events import CHANNELS, Event, EventsFile
from ..ingest import record_events

LINK_SOURCE = "link:"


@dataclass(frozen=True)
class Recipient:
    message: str
    partner: str
    channel: str
    campaign: str


def recipient(engine: Engine, message: str) -> Recipient:
    """Whom a message went to; UnknownName when the store has no such message (a token signed
    for a store that was since reset)."""
    target = engine.store.message_target(message)
    if target is None or target[3] not in CHANNELS:
        raise UnknownName(f"no message '{message}'")
    campaign, _, partner, channel = target
    return Recipient(message, partner, channel, campaign)


def consents(engine: Engine, partner: str, at: datetime) -> dict[str, bool]:
    from ..views import consent

    found = consent(engine.store, engine.plan, engine.book, partner, at)
    return {channel: bool(found["channels"][channel]["consent"]) for channel in CHANNELS}


def preferences(engine: Engine, message: str, at: datetime) -> dict[str, bool]:
    return consents(engine, recipient(engine, message).partner, at)


def unsubscribe(engine: Engine, message: str, at: datetime) -> Recipient:
    who = recipient(engine, message)
    with engine.store.transaction():
        if engine.store.consent_latest(who.partner, who.channel, at) is not False:
            engine.store.add_consent(who.partner, who.channel, False, at, LINK_SOURCE + message)
    return who


def set_preferences(engine: Engine, message: str, wanted: dict[str, bool], at: datetime) -> dict[str, bool]:
    who = recipient(engine, message)
    current = consents(engine, who.partner, at)
    with engine.store.transaction():
        for channel, granted in wanted.items():
            if channel in CHANNELS and current[channel] != granted:
                engine.store.add_consent(who.partner, channel, granted, at, LINK_SOURCE + message)
    return consents(engine, who.partner, at)


def engage(engine: Engine, message: str, kind: str, at: datetime, data: dict[str, Any] | None = None) -> None:
    """Record an ``opened`` or ``clicked`` of the message."""
    who = recipient(engine, message)
    event = Event(f"{kind}:{uuid.uuid4().hex}", kind, at.replace(microsecond=0), who.partner,
                  MappingProxyType(data or {}), message=message)
    record_events(engine.store, engine.plan, engine.book, EventsFile([event], [], 0, "link"), at, audit=False)
