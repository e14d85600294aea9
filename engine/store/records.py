"""The rows the store hands back (enrollments, step runs, queued messages), the one exception a
compare-and-set raises, and two helpers every table's code uses."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterator, Mapping, Sequence

from ..clock import from_iso, iso, maybe_from_iso

@dataclass(frozen=True)
class Enrollment:
    id: int
    campaign: str
    partner: str
    number: int
    status: str
    reason: str | None
    origin: str
    source: str | None
    created_at: datetime
    started_at: datetime
    finished_at: datetime | None
    after_step: str | None
    next_step: str | None
    due_at: datetime | None
    paused_at: datetime | None
    version: int
    waiting_since: datetime | None = None  # at a wait-for since then; due_at is then its at_most
    held: str | None = None  # JSON: the policy that moved next_step's due time (campaigns.policy.Hold)

    def changed(self, changes: Mapping[str, Any], version: int) -> "Enrollment":
        """This enrollment with ``changes`` at ``version``: what :func:`dataclasses.replace` makes,
        five times faster (a tick makes one per step it executes)."""
        new = object.__new__(Enrollment)
        new.__dict__.update(self.__dict__, **changes, version=version)
        return new

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "Enrollment":
        (id_, campaign, partner, number, status, reason, origin, source, created, started, finished,
         after_step, next_step, due, paused, version, waiting, held) = row
        return cls(id_, campaign, partner, number, status, reason, origin, source, from_iso(created),
                   from_iso(started), maybe_from_iso(finished), after_step, next_step,
                   maybe_from_iso(due), maybe_from_iso(paused), version, maybe_from_iso(waiting), held)


@dataclass(frozen=True)
class Start:
    """One enrollment of a batch that a trigger starts (:meth:`SQLiteStore.add_enrollments`): its
    number is the partner's next in the campaign, counted by the caller from their history."""

    partner: str
    number: int
    next_step: str | None
    due_at: datetime | None


ENROLLMENT_COLUMNS = ("id, campaign, partner, number, status, reason, origin, source, created_at, started_at, "
                       "finished_at, after_step, next_step, due_at, paused_at, version, waiting_since, held")


@dataclass(frozen=True)
class StepRun:
    step: str
    run: int
    status: str
    reason: str | None
    due_at: datetime | None
    at: datetime
    detail: Mapping[str, Any]


@dataclass(frozen=True)
class Queued:
    """A message in the outbox waiting for its transport."""

    id: str
    channel: str
    record: dict
    html: bool
    attempts: int


payload_text = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""A message's record as the outbox keeps it: compact JSON, the very text of its line in the
file transport's ``<channel>.jsonl`` (which writes it as it is, not encoded again)."""


class Conflict(Exception):
    """Another process changed the row first (the compare-and-set lost): not an error."""


STAMPS: dict[datetime, str] = {}


def stamp(at: datetime) -> str:
    """``iso(at)``, remembered: a batch of due steps stores the same few times many times over."""
    text = STAMPS.get(at)
    if text is None:
        if len(STAMPS) >= 4096:
            STAMPS.clear()
        text = STAMPS[at] = iso(at)
    return text


def stored(value: Any) -> Any:
    """A value as a column holds it: a time as its :func:`stamp`, anything else as it is."""
    return stamp(value) if isinstance(value, datetime) else value


def chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
