"""What experiments and policies ask the store (SPEC §11): the message sends that frequency caps
count, the conversions that goals record, and the priorities that order one instant's due steps.
:class:`Outcomes` is a third part of :class:`~engine.store.sqlite.SQLiteStore`, plain SQL with
``?`` parameters over ``self.db`` like the rest, run on PostgreSQL through its adapter."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any, Iterable, Sequence

from ..clock import from_iso
from .records import ENROLLMENT_COLUMNS, Enrollment, chunks, stamp

CURRENT_OR_DONE = ("active", "paused", "finished")  # enrollments a goal may convert (not scheduled, not removed)


class Outcomes:
    """Sends, conversions and priorities (see the module's docstring)."""

    db: sqlite3.Connection

    # --- frequency caps ----------------------------------------------------------------------

    def record_sends(self, rows: Iterable[tuple[str, str, datetime, int, str, int]]) -> None:
        """(partner, channel, due_at, enrollment, step, run) of executed message steps, in one
        statement (a COPY on PostgreSQL). A plain insert: a step run is written once, in the same
        transaction as its send (the key of step_runs refuses a second one), so its send is new."""
        self.db.executemany("INSERT INTO sends (partner, channel, due_at, enrollment, step, run) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            [(p, c, stamp(due), e, s, r) for p, c, due, e, s, r in rows])

    def sends_between(self, partners: Sequence[str], channels: Sequence[str], after: datetime,
                      before: datetime) -> dict[tuple[str, str], list[datetime]]:
        """(partner, channel) → the due times of its sends in (after, before), sorted: a range
        scan of the primary key per partner and channel."""
        found: dict[tuple[str, str], list[datetime]] = {}
        if not partners or not channels:
            return found
        channel_marks = ",".join("?" * len(channels))
        for chunk in chunks(sorted(set(partners)), 400):
            marks = ",".join("?" * len(chunk))
            for partner, channel, due in self.db.execute(
                    f"SELECT partner, channel, due_at FROM sends WHERE partner IN ({marks}) "
                    f"AND channel IN ({channel_marks}) AND due_at > ? AND due_at < ? ORDER BY partner, channel, due_at",
                    (*chunk, *channels, stamp(after), stamp(before))):
                found.setdefault((partner, channel), []).append(from_iso(due))
        return found

    def lock_partners(self, partners: Sequence[str]) -> None:
        """Hold these partners' caps for the rest of the transaction (SQLite: its one writer
        already does; PostgreSQL: an advisory lock per partner, taken in one order)."""

    # --- goals ---------------------------------------------------------------------------------

    def add_conversion(self, enrollment: int, campaign: str, partner: str, at: datetime, source: str) -> bool:
        """Whether this recorded the enrollment's conversion (it converts once)."""
        cursor = self.db.execute("INSERT OR IGNORE INTO conversions (enrollment, campaign, partner, at, source) "
                                 "VALUES (?, ?, ?, ?, ?)", (enrollment, campaign, partner, stamp(at), source))
        return cursor.rowcount == 1

    def converted(self, enrollments: Iterable[int]) -> dict[int, datetime]:
        """enrollment → when it converted, for those of ``enrollments`` that did."""
        found: dict[int, datetime] = {}
        for chunk in chunks(sorted(set(enrollments)), 500):
            marks = ",".join("?" * len(chunk))
            for enrollment, at in self.db.execute(
                    f"SELECT enrollment, at FROM conversions WHERE enrollment IN ({marks})", chunk):
                found[enrollment] = from_iso(at)
        return found

    def goal_candidates(self, campaign: str, started_from: datetime, until: datetime,
                        partner: str | None = None) -> list[Enrollment]:
        """The campaign's enrollments started in [started_from, until] that have not converted
        (and are active, paused or finished): those its goal may still convert."""
        marks = ",".join("?" * len(CURRENT_OR_DONE))
        columns = ", ".join(f"e.{c.strip()}" for c in ENROLLMENT_COLUMNS.split(","))
        sql = (f"SELECT {columns} FROM enrollments e WHERE e.campaign = ? "
               f"AND e.status IN ({marks}) AND e.started_at >= ? AND e.started_at <= ? "
               "AND NOT EXISTS (SELECT 1 FROM conversions c WHERE c.enrollment = e.id)")
        params: list[Any] = [campaign, *CURRENT_OR_DONE, stamp(started_from), stamp(until)]
        if partner is not None:
            sql += " AND e.partner = ?"
            params.append(partner)
        return [Enrollment.from_row(row) for row in self.db.execute(sql + " ORDER BY e.id", params)]

    def goal_counts(self, campaign: str) -> list[tuple[int, str, str, bool]]:
        """(enrollment, partner, status, converted) of every enrollment of the campaign a goal
        counts (active, paused or finished)."""
        marks = ",".join("?" * len(CURRENT_OR_DONE))
        return [(i, p, s, bool(c)) for i, p, s, c in self.db.execute(
            f"SELECT e.id, e.partner, e.status, (SELECT count(*) FROM conversions c WHERE c.enrollment = e.id) "
            f"FROM enrollments e WHERE e.campaign = ? AND e.status IN ({marks}) ORDER BY e.id",
            (campaign, *CURRENT_OR_DONE))]

    def step_details(self, campaign: str, steps: Sequence[str]) -> dict[int, dict[str, str]]:
        """enrollment → {step: what it chose} for these steps of the campaign (a variant's key,
        a split path's), from the first run of each."""
        found: dict[int, dict[str, str]] = {}
        if not steps:
            return found
        marks = ",".join("?" * len(steps))
        for enrollment, step, detail in self.db.execute(
                f"SELECT r.enrollment, r.step, r.detail FROM step_runs r JOIN enrollments e ON e.id = r.enrollment "
                f"WHERE e.campaign = ? AND r.step IN ({marks}) AND r.run = 1 AND r.status = 'executed' "
                "AND r.detail IS NOT NULL", (campaign, *steps)):
            data = json.loads(detail)
            chosen = data.get("variant", data.get("path"))
            if isinstance(chosen, str):
                found.setdefault(enrollment, {})[step] = chosen
        return found

    # --- priorities ----------------------------------------------------------------------------

    def priorities(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT id, priority FROM campaigns"))

    def set_priority(self, campaign: str, priority: int) -> None:
        """The campaign's priority, and that of its current enrollments (the due index orders by it)."""
        self.db.execute("UPDATE campaigns SET priority = ? WHERE id = ?", (priority, campaign))
        self.db.execute("UPDATE enrollments SET priority = ? WHERE campaign = ? AND priority != ? "
                        "AND status IN ('scheduled', 'active', 'paused')", (priority, campaign, priority))
