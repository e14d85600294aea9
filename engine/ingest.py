"""Importing an events file (SPEC §8): what each kind of event does to the store.

- Trigger events (dotted names such as ``invoice.payment_failed``) wait for the tick that covers
  their time, which enrolls as of that time.
- Engagement (``opened``, ``clicked``, ``bounced``, ``read``) is kept as facts that expressions and
  stats ask about as of a time; a hard bounce also makes the address undeliverable from then on,
  and ``read`` marks the pop-up read.
- Consent (``terms.accepted``, ``opted_in``, ``unsubscribed``) goes to the consent ledger.

A line is bad, reported at its line and skipped, when the reader refuses it (see
:mod:`engine.events`), or when it is engagement that names a campaign or step the workspace does
not have, or a message that was sent to another partner. Everything else of the file is kept,
in one transaction, and an event seen before (same id, or same content) counts once. The reader
refuses whatever could make that transaction fail (text that is not Unicode, control characters
in ids, sizes, depth, times out of range), so one bad line never costs the others.

The import is written to the audit log as ``events.import`` by ``user``: the person the command
ran as (``--as``, checked for the ``events`` or ``marketing`` role when engine.yaml lists users;
see :data:`engine.operations.ROLES`), or ``engine`` for the program's own feeds.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from dsl.diagnostics import Diagnostic, SourceError, did_you_mean, error
from dsl.source import Span

from .compiled import CompiledWorkspace
from .events import CONSENT, ENGAGEMENT, Event, EventsFile, read_events, read_text
from .partners import PartnerBook
from .store import Store


@dataclass
class EventImport:
    imported: int = 0
    duplicates: int = 0  # already imported, or repeated in the file
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"imported": self.imported, "duplicates": self.duplicates,
                "errors": [d.to_json() for d in self.diagnostics]}


def import_events(store: Store, plan: CompiledWorkspace, book: PartnerBook, path: Path, at: datetime,
                  user: str = "engine") -> EventImport:
    try:
        text = read_text(path)
    except OSError as exc:
        raise SourceError([error(Span(str(path), 1, 1), f"cannot read the events file: {exc.strerror or exc}")]) from None
    parsed = read_events(str(path), text, plan.tz)
    return record_events(store, plan, book, parsed, at, user, file=_printable(str(path)))


def record_events(store: Store, plan: CompiledWorkspace, book: PartnerBook, parsed: EventsFile, at: datetime,
                  user: str = "engine", *, all_or_nothing: bool = False, audit: bool = True,
                  **logged: Any) -> EventImport:
    """Store the good events of ``parsed`` in one transaction, written to the audit log as
    ``events.import`` with ``logged`` (the file's name, or where a web request came from), unless
    not ``audit`` (an open or click from a link in a message). ``all_or_nothing`` (the web API):
    one bad event, read or resolved, stores none of them."""
    result = EventImport(duplicates=parsed.duplicates, diagnostics=list(parsed.diagnostics))
    if all_or_nothing and result.diagnostics:
        return result
    with store.transaction():
        resolved_events = []
        for event in parsed.events:
            resolved = _resolve(store, plan, event)
            if isinstance(resolved, str):
                result.diagnostics.append(error(Span(parsed.path, event.line, 1), resolved))
            else:
                resolved_events.append(resolved)
        if all_or_nothing and result.diagnostics:
            return result
        for event, channel in resolved_events:
            pending = event.type not in ENGAGEMENT and event.type not in CONSENT
            if not store.add_event(event, pending, at):
                result.duplicates += 1
                continue
            result.imported += 1
            _apply(store, plan, book, event, channel)
        if audit:
            store.log(at, user, "events.import", None, **logged, imported=result.imported,
                      duplicates=result.duplicates, errors=len(result.diagnostics))
    result.diagnostics.sort(key=lambda d: (d.span.line, d.span.col))
    return result


def _printable(text: str) -> str:
    """A file name for the log: a name that is not UTF-8 (its bytes came in as surrogates)
    must not make the log entry, and with it the import, fail."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _resolve(store: Store, plan: CompiledWorkspace, event: Event) -> tuple[Event, str | None] | str:
    """The event with its campaign and step filled in from its message, and its channel; or
    why the line is bad."""
    data: Mapping[str, Any] = event.data
    channel = data.get("channel") if isinstance(data.get("channel"), str) else None
    campaign, step = event.campaign, event.step
    if event.message is not None:
        target = store.message_target(event.message)
        if target is None:
            return f"unknown message id '{event.message}'"
        if target[2] != event.partner:
            return f"message '{event.message}' was sent to partner {target[2]}, not {event.partner}"
        campaign, step, channel = campaign or target[0], step or target[1], channel or target[3]
        event = replace(event, campaign=campaign, step=step)
    if event.type in ENGAGEMENT and campaign is not None:
        files = plan.workspace.files
        if campaign not in files and store.campaign_number(campaign) is None:
            return f"unknown campaign '{campaign}'{did_you_mean(campaign, list(files))}"
        model = files[campaign].campaign if campaign in files else None
        steps = [s.id for s in model.action_steps] if model is not None else []
        if model is not None and step not in steps:
            return f"campaign '{campaign}' has no step '{step}'{did_you_mean(step or '', steps)}"
    return event, channel


def _apply(store: Store, plan: CompiledWorkspace, book: PartnerBook, event: Event, channel: str | None) -> None:
    source = f"event:{event.id}"
    if event.type == "terms.accepted":
        for granted in plan.settings.consent.terms_opt_in:
            store.add_consent(event.partner, granted, True, event.at, source)
    elif event.type in ("opted_in", "unsubscribed") and channel in ("email", "sms"):
        store.add_consent(event.partner, channel, event.type == "opted_in", event.at, source)
    elif event.type == "read":
        popup = event.message or (store.latest_popup(event.partner, event.campaign, event.step)
                                  if event.campaign and event.step else None)
        if popup:
            store.mark_popup_read(popup, event.partner, event.at)
    elif event.type == "bounced" and event.data.get("kind") == "hard":
        address = _bounced_address(store, book, event)
        if address:
            store.mark_undeliverable(address, event.at, source)


def _bounced_address(store: Store, book: PartnerBook, event: Event) -> str | None:
    """The address a hard bounce is about: the bounced message's, else the partner's email."""
    if event.message is not None:
        found = store.message(event.message)
        if found is not None and isinstance(found.get("to"), str):
            return found["to"]
    if event.campaign and event.step:
        address = store.last_address(event.partner, event.campaign, event.step)
        if address:
            return address
    partner = book.get(event.partner)
    email = partner.get("email") if partner else None
    return email if isinstance(email, str) else None
