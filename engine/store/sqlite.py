"""The embedded store: one SQLite database (WAL mode) per workspace, `.engine/state.db` by default.

The engine talks to it only through :class:`SQLiteStore`'s methods, which speak the domain's
words (enrollments, step runs, outbox, events) and plain SQL with ``?`` parameters: never text
built from user input. Writes happen inside :meth:`transaction` (``BEGIN IMMEDIATE``: one writer
at a time, readers never blocked), so a step's state and its effects commit together or not at
all, and a second process waits for the first instead of interleaving with it.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ..clock import SystemClock, from_iso, iso, maybe_from_iso, maybe_iso
from ..errors import StoreBusy, StoreError
from .processes import process_alive, this_process

SCHEMA = (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")
CURRENT = ("scheduled", "active", "paused")
BUSY_TIMEOUT = 60.0  # seconds a statement waits for another process's write lock before "busy"
TOUCH_WAIT = 0.25  # seconds recording a key's last use waits for a write lock before giving up
PARTNER_REVISION = "partners.revision"  # meta key: the latest import that changed anything


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

    def changed(self, changes: Mapping[str, Any], version: int) -> "Enrollment":
        """This enrollment with ``changes`` at ``version``: what :func:`dataclasses.replace` makes,
        five times faster (a tick makes one per step it executes)."""
        new = object.__new__(Enrollment)
        new.__dict__.update(self.__dict__, **changes, version=version)
        return new

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> "Enrollment":
        (id_, campaign, partner, number, status, reason, origin, source, created, started, finished,
         after_step, next_step, due, paused, version, waiting) = row
        return cls(id_, campaign, partner, number, status, reason, origin, source, from_iso(created),
                   from_iso(started), maybe_from_iso(finished), after_step, next_step,
                   maybe_from_iso(due), maybe_from_iso(paused), version, maybe_from_iso(waiting))


_PEOPLE_COLUMNS = ("p.partner, m.origin, m.added_at, e.id, e.number, e.status, e.reason, e.origin, e.source, "
                   "e.started_at, e.finished_at, e.next_step, e.due_at")


def _people(campaign: str, status: str | None) -> tuple[str, tuple]:
    """The FROM and WHERE of a campaign's members and enrollees, each with their latest enrollment."""
    sql = ("FROM (SELECT partner FROM members WHERE campaign = ? UNION SELECT partner FROM enrollments WHERE campaign = ?) p"
           " LEFT JOIN members m ON m.campaign = ? AND m.partner = p.partner"
           " LEFT JOIN enrollments e ON e.id = (SELECT max(x.id) FROM enrollments x WHERE x.campaign = ? AND x.partner = p.partner)")
    if status is None:
        return sql, (campaign,) * 4
    return sql + " WHERE coalesce(e.status, 'member') = ?", (*(campaign,) * 4, status)


_ENROLLMENT_COLUMNS = ("id, campaign, partner, number, status, reason, origin, source, created_at, started_at, "
                       "finished_at, after_step, next_step, due_at, paused_at, version, waiting_since")


@dataclass(frozen=True)
class StepRun:
    step: str
    run: int
    status: str
    reason: str | None
    due_at: datetime | None
    at: datetime
    detail: Mapping[str, Any]


_ACTIVITY_KEYS = ("id", "campaign", "step", "partner", "kind", "assignee", "subject", "responses", "status",
                  "created_at", "response", "result", "responded_at", "answers", "duration")
_POPUP_KEYS = ("id", "campaign", "step", "partner", "pages", "title", "body", "language", "created_at", "read_at")
_API_KEY_KEYS = ("id", "user", "salt", "hash", "created_at", "last_used_at", "revoked_at")


@dataclass(frozen=True)
class Queued:
    """A message in the outbox waiting for its transport."""

    id: str
    channel: str
    record: dict
    html: bool
    attempts: int


class Conflict(Exception):
    """Another process changed the row first (the compare-and-set lost): not an error."""


class SQLiteStore:
    dialect = "sqlite"

    def __init__(self, path: Path):
        """Open the store at ``path``, creating it when there is no file. A file that is there
        but is not a store (empty, another program's database, damaged) is a
        :class:`~engine.errors.StoreError` naming it: taking it for a new store would enroll
        and message everyone a second time."""
        self.path = path
        self._depth = 0
        if path.is_dir():
            raise StoreError(f"the store {path} is a directory: name a file (sqlite:///.engine/state.db)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(path.with_name(path.name + ".lock"), "a")
        except OSError as exc:
            raise StoreError(f"cannot open the store {path}: {exc.strerror or exc}") from None
        # Processes opening a store at once take turns here: one creates it, the others find it.
        with lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not path.exists():
                try:
                    _create(path)
                except (OSError, sqlite3.Error) as exc:
                    raise StoreError(f"cannot create the store {path}: {getattr(exc, 'strerror', None) or exc}") from None
            check_store_file(path)
            self.db = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
            try:
                _check_tables(self.db, path)
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")
                self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")
                _add_missing_columns(self.db)  # first: the schema's indexes may be on the new columns
                self.db.executescript(SCHEMA)
            except sqlite3.DatabaseError as exc:
                self.db.close()
                if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                    raise StoreBusy(f"the store {path} is busy: another process kept it locked for {BUSY_TIMEOUT:g} s") from None
                raise StoreError(f"the store {path} is damaged: {exc}; restore it from a backup") from None

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[None]:
        """One atomic unit of work; nested uses join the outer one. ``exclusive=False`` marks a
        batch of due steps, which workers of a server store may run side by side (each on rows
        it claimed); SQLite lets one writer in at a time either way."""
        if self._depth:
            with self._joined():
                yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            if self.db.in_transaction:  # SQLite ends a transaction itself on some errors (a full disk)
                self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    @contextmanager
    def _joined(self) -> Iterator[None]:
        """A transaction inside another one joins it: the outermost commits or rolls back."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1

    @contextmanager
    def delivering(self) -> Iterator[None]:
        """A transaction of the delivery loop (recording outcomes): on SQLite any transaction; a
        server store's does not wait for the store's advisory lock (PostgresStore)."""
        with self.transaction():
            yield

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.db.execute(sql, params).fetchone()
        return row[0] if row else None

    # --- meta ------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        return self._one("SELECT value FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    # --- partners --------------------------------------------------------------------------

    # An import stages the source's records batch by batch in temporary tables of this connection
    # (outside the main transaction: only the staging tables are written): every id with its line
    # (duplicates and removals are found by SQL), and the records that differ from the stored
    # ones, found by looking the batch up. It then applies them in one transaction. No process
    # holds the ids of every partner. Each import that changes anything gets the next revision
    # number, and the rows it wrote carry it. Only imports write the partners table, so an
    # unchanged revision means that the lookups still hold when the import applies its changes.

    def start_partner_import(self) -> int:
        """Empty staging tables for one import (private to this connection); the partner
        revision the import starts from (:meth:`upsert_partners` checks that it still is)."""
        self.end_partner_import()
        self.db.execute("CREATE TEMP TABLE partners_import_ids (line INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)")
        self.db.execute("CREATE TEMP TABLE partners_import (id TEXT NOT NULL, data TEXT NOT NULL, hash TEXT NOT NULL)")
        return self.partner_revision()

    def stage_partners(self, rows: Sequence[tuple[str, int, str | None, str | None]]) -> list[tuple[int, int]]:
        """Stage (id, line, data JSON, hash) rows, in line order; with data None, only the id
        (for its duplicates). A row whose id is staged already is left out: for each one, (its
        index in ``rows``, the line of the id's first row)."""
        if not rows:
            return []
        with self.transaction():
            staged = self.db.executemany(
                "INSERT INTO partners_import_ids (line, id) VALUES (?, ?) ON CONFLICT (id) DO NOTHING",
                [(line, pid) for pid, line, _, _ in rows]).rowcount
            duplicates: list[tuple[int, int]] = []
            if staged < len(rows):
                first: dict[str, int] = {}
                for chunk in _chunks(sorted({row[0] for row in rows}), 500):
                    marks = ",".join("?" * len(chunk))
                    first.update(self.db.execute(f"SELECT id, line FROM partners_import_ids WHERE id IN ({marks})",
                                                 chunk))
                duplicates = [(index, first[pid]) for index, (pid, line, _, _) in enumerate(rows)
                              if first[pid] != line]
            known = dict(self.db.execute(
                "SELECT p.id, p.hash FROM partners_import_ids s JOIN partners p ON p.id = s.id "
                "WHERE s.line >= ? AND s.line <= ? AND p.removed_at IS NULL", (rows[0][1], rows[-1][1])))
            left_out = {index for index, _ in duplicates}
            self.db.executemany("INSERT INTO partners_import (id, data, hash) VALUES (?, ?, ?)",
                                [(pid, data, digest) for index, (pid, _, data, digest) in enumerate(rows)
                                 if data is not None and known.get(pid) != digest and index not in left_out])
        return duplicates

    def upsert_partners(self, at: datetime, since: int) -> int | None:
        """Apply the staged import, begun at revision ``since``: write the staged records (new,
        changed or back after a removal) and mark removed the present partners whose id was not
        staged, all with the next revision. That revision, or None if nothing changed (the
        revision stays). :class:`Conflict` if another import changed the partners meanwhile."""
        with self.transaction():
            if self.partner_revision() != since:
                raise Conflict("another import changed the partners since this one began")
            revision, when = since + 1, iso(at)
            written = self.db.execute(
                "INSERT INTO partners (id, data, hash, updated_at, removed_at, revision) "
                "SELECT id, data, hash, ?, NULL, ? FROM partners_import WHERE true "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data, hash = excluded.hash, "
                "updated_at = excluded.updated_at, removed_at = NULL, revision = excluded.revision",
                (when, revision)).rowcount
            removed = self.db.execute(
                "UPDATE partners SET removed_at = ?, revision = ? WHERE removed_at IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM partners_import_ids s WHERE s.id = partners.id)",
                (when, revision)).rowcount
            if not (written or removed):
                return None
            self.set_meta(PARTNER_REVISION, str(revision))
        return revision

    def end_partner_import(self) -> None:
        """Drop the staging tables."""
        self.db.execute("DROP TABLE IF EXISTS partners_import")
        self.db.execute("DROP TABLE IF EXISTS partners_import_ids")

    def partner_hashes(self) -> dict[str, tuple[str, bool]]:
        """id → (hash, present in the source), of every partner (the import does not use it)."""
        return {pid: (h, removed is None) for pid, h, removed in
                self.db.execute("SELECT id, hash, removed_at FROM partners")}

    def partner_revision(self) -> int:
        """The revision of the latest import that changed anything (0: none yet)."""
        return int(self.meta(PARTNER_REVISION) or 0)

    def partners_changed_since(self, revision: int) -> Iterator[str]:
        """The ids of the partners added, changed or removed by the imports after ``revision``."""
        return (pid for pid, _ in self.partner_changes(revision))

    def partner_changes(self, revision: int, batch: int = 10_000) -> Iterator[tuple[str, bool]]:
        """(id, present) of the partners added, changed or removed after ``revision``, in
        revision and id order; read page by page through the revision index."""
        rows = self.db.execute("SELECT revision, id, removed_at FROM partners WHERE revision > ? "
                               "ORDER BY revision, id LIMIT ?", (revision, batch)).fetchall()
        while rows:
            yield from ((pid, removed is None) for _, pid, removed in rows)
            if len(rows) < batch:
                return
            rows = self.db.execute("SELECT revision, id, removed_at FROM partners WHERE (revision, id) > (?, ?) "
                                   "ORDER BY revision, id LIMIT ?", (*rows[-1][:2], batch)).fetchall()

    def partner_rows(self, ids: Iterable[str] | None = None) -> Iterator[tuple[str, str, bool]]:
        """(id, data JSON, present) of the given partners, or of all that are present."""
        if ids is None:
            yield from ((pid, data, True) for pid, data in
                        self.db.execute("SELECT id, data FROM partners WHERE removed_at IS NULL"))
            return
        ids = list(ids)
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            for pid, data, removed in self.db.execute(
                    f"SELECT id, data, removed_at FROM partners WHERE id IN ({marks})", chunk):
                yield pid, data, removed is None

    def partner_count(self) -> int:
        return self._one("SELECT count(*) FROM partners WHERE removed_at IS NULL")

    # --- campaigns -------------------------------------------------------------------------

    def campaign_rows(self) -> dict[str, tuple[int, bool, datetime | None, str | None]]:
        """id → (number, active as last seen, active since, draft: the file's hash when drafted)."""
        return {cid: (number, bool(active), maybe_from_iso(since), draft) for cid, number, active, since, draft in
                self.db.execute("SELECT id, number, active, active_since, draft_hash FROM campaigns")}

    def set_draft(self, campaign_id: str, content_hash: str | None, at: datetime | None = None) -> None:
        """Draft (a hash): not scheduled while the file stays so. None: scheduled again from ``at``."""
        if content_hash is not None:
            self.db.execute("UPDATE campaigns SET draft_hash = ? WHERE id = ?", (content_hash, campaign_id))
        else:
            self.db.execute("UPDATE campaigns SET draft_hash = NULL, active_since = ? WHERE id = ?",
                            (maybe_iso(at), campaign_id))

    def add_campaign(self, campaign_id: str, name: str | None, active: bool, at: datetime) -> int:
        number = (self._one("SELECT max(number) FROM campaigns") or 0) + 1
        self.db.execute("INSERT INTO campaigns (id, number, name, first_seen_at, active, active_since) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        (campaign_id, number, name, iso(at), int(active), iso(at) if active else None))
        return number

    def set_campaign_active(self, campaign_id: str, name: str | None, active: bool, at: datetime) -> None:
        if active:
            self.db.execute("UPDATE campaigns SET active = 1, active_since = ?, name = ? WHERE id = ?",
                            (iso(at), name, campaign_id))
        else:
            self.db.execute("UPDATE campaigns SET active = 0, name = ? WHERE id = ?", (name, campaign_id))

    def campaign_number(self, campaign_id: str) -> int | None:
        return self._one("SELECT number FROM campaigns WHERE id = ?", (campaign_id,))

    def lock(self, campaign: str, at: datetime, content: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO locks (campaign, locked_at, content) VALUES (?, ?, ?)",
                        (campaign, iso(at), content))

    def locks(self) -> dict[str, tuple[str, str]]:
        return {c: (at, content) for c, at, content in self.db.execute("SELECT campaign, locked_at, content FROM locks")}

    # --- trigger firings -------------------------------------------------------------------

    def last_firing(self, campaign_id: str, prefix: str) -> str | None:
        return self._one("SELECT max(occurrence) FROM firings WHERE campaign = ? AND occurrence LIKE ?",
                         (campaign_id, prefix + "%"))

    def has_fired(self, campaign_id: str, occurrence: str) -> bool:
        return self._one("SELECT 1 FROM firings WHERE campaign = ? AND occurrence = ?",
                         (campaign_id, occurrence)) is not None

    def record_firing(self, campaign_id: str, occurrence: str, at: datetime) -> bool:
        """False when another process fired it first."""
        cursor = self.db.execute("INSERT OR IGNORE INTO firings (campaign, occurrence, at) VALUES (?, ?, ?)",
                                 (campaign_id, occurrence, iso(at)))
        return cursor.rowcount == 1

    def set_firing_count(self, campaign_id: str, occurrence: str, enrolled: int) -> None:
        self.db.execute("UPDATE firings SET enrolled = ? WHERE campaign = ? AND occurrence = ?",
                        (enrolled, campaign_id, occurrence))

    # --- enrollments -----------------------------------------------------------------------

    def enrollment(self, enrollment_id: int) -> Enrollment | None:
        row = self.db.execute(f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?", (enrollment_id,)).fetchone()
        return Enrollment.from_row(row) if row else None

    def enrollments_of(self, partner: str, campaign: str | None = None) -> list[Enrollment]:
        if campaign is None:
            rows = self.db.execute(f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE partner = ? "
                                   "ORDER BY started_at, campaign, number", (partner,))
        else:
            rows = self.db.execute(f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE partner = ? AND campaign = ? "
                                   "ORDER BY number", (partner, campaign))
        return [Enrollment.from_row(r) for r in rows]

    def enrollments_in(self, campaign: str, statuses: Sequence[str] | None = None) -> list[Enrollment]:
        sql = f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE campaign = ?"
        params: list[Any] = [campaign]
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            params += list(statuses)
        return [Enrollment.from_row(r) for r in self.db.execute(sql + " ORDER BY id", params)]

    def partners_in(self, campaign: str, statuses: Sequence[str]) -> set[str]:
        """The partners with an enrollment in one of these statuses."""
        marks = ",".join("?" * len(statuses))
        return {p for (p,) in self.db.execute(
            f"SELECT DISTINCT partner FROM enrollments WHERE campaign = ? AND status IN ({marks})", (campaign, *statuses))}

    def history(self, partners: Sequence[str]) -> dict[str, list[Enrollment]]:
        """Every enrollment of these partners, in every campaign."""
        found: dict[str, list[Enrollment]] = {}
        for chunk in _chunks(list(partners), 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE partner IN ({marks}) "
                                       "ORDER BY id", chunk):
                e = Enrollment.from_row(row)
                found.setdefault(e.partner, []).append(e)
        return found

    def add_enrollment(self, campaign: str, partner: str, *, status: str, origin: str, source: str | None,
                       created_at: datetime, started_at: datetime, next_step: str | None,
                       due_at: datetime | None) -> int | None:
        """The new enrollment's id, or None when the partner already has a current one (another
        process got there first: the unique index says so)."""
        number = (self._one("SELECT max(number) FROM enrollments WHERE campaign = ? AND partner = ?",
                            (campaign, partner)) or 0) + 1
        try:
            cursor = self.db.execute(
                "INSERT INTO enrollments (campaign, partner, number, status, origin, source, created_at, started_at, "
                "next_step, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (campaign, partner, number, status, origin, source, iso(created_at), iso(started_at),
                 next_step, maybe_iso(due_at)))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def update_enrollment(self, e: Enrollment, **changes: Any) -> Enrollment:
        """Compare-and-set on the row's version: :class:`Conflict` when someone else changed it;
        else the enrollment as it is now. An enrollment that moves to another step has not begun
        waiting there."""
        if "next_step" in changes:
            changes.setdefault("waiting_since", None)
        columns = ", ".join(f"{name} = ?" for name in changes)
        params = [_stamp(value) if isinstance(value, datetime) else value for value in changes.values()]
        cursor = self.db.execute(
            f"UPDATE enrollments SET {columns}, version = version + 1 WHERE id = ? AND version = ?",
            (*params, e.id, e.version))
        if cursor.rowcount != 1:
            raise Conflict(f"enrollment {e.id} changed meanwhile")
        return e.changed(changes, e.version + 1)

    def due(self, until: datetime, campaigns: Sequence[str], limit: int) -> list[Enrollment]:
        """Active enrollments of these campaigns whose next step (or end) is due at or before
        ``until``, earliest first: a range scan of the due index (in due order, so no sort),
        whatever the number of enrollments. Named explicitly: with the campaign condition,
        SQLite would otherwise pick the campaign index and read every active row."""
        if not campaigns:
            return []
        marks = ",".join("?" * len(campaigns))
        rows = self.db.execute(
            f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments INDEXED BY enrollments_due "
            "WHERE status = 'active' AND due_at <= ? "
            f"AND campaign IN ({marks}) ORDER BY due_at, id LIMIT ?", (iso(until), *campaigns, limit))
        return [Enrollment.from_row(r) for r in rows]

    def waiting(self, until: datetime, campaigns: Sequence[str], after_id: int, limit: int) -> list[Enrollment]:
        """Active enrollments of these campaigns at a wait-for whose ``at_most`` is still after
        ``until`` (the others are due), in id order from ``after_id`` on: the tick asks each one's
        condition again."""
        if not campaigns:
            return []
        marks = ",".join("?" * len(campaigns))
        rows = self.db.execute(
            f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments INDEXED BY enrollments_waiting "
            "WHERE waiting_since IS NOT NULL AND status = 'active' AND due_at > ? "
            f"AND campaign IN ({marks}) AND id > ? ORDER BY id LIMIT ?", (iso(until), *campaigns, after_id, limit))
        return [Enrollment.from_row(r) for r in rows]

    def next_scheduled(self, until: datetime, campaigns: Sequence[str]) -> Enrollment | None:
        if not campaigns:
            return None
        marks = ",".join("?" * len(campaigns))
        row = self.db.execute(
            f"SELECT {_ENROLLMENT_COLUMNS} FROM enrollments WHERE status = 'scheduled' AND started_at <= ? "
            f"AND campaign IN ({marks}) ORDER BY started_at, id LIMIT 1", (iso(until), *campaigns)).fetchone()
        return Enrollment.from_row(row) if row else None

    def resume_overdue(self, campaign: str, at: datetime) -> int:
        """A campaign switched back on: what fell due while it was off is due now."""
        cursor = self.db.execute("UPDATE enrollments SET due_at = ?, version = version + 1 "
                                 "WHERE campaign = ? AND status = 'active' AND due_at < ?",
                                 (iso(at), campaign, iso(at)))
        return cursor.rowcount

    def count_by_status(self, campaign: str) -> dict[str, int]:
        return dict(self.db.execute("SELECT status, count(*) FROM enrollments WHERE campaign = ? GROUP BY status",
                                    (campaign,)).fetchall())

    def count_by_origin(self, campaign: str) -> dict[str, int]:
        return dict(self.db.execute("SELECT origin, count(*) FROM enrollments WHERE campaign = ? GROUP BY origin",
                                    (campaign,)).fetchall())

    def has_current(self, partner: str, campaign: str) -> bool:
        return self._one("SELECT 1 FROM enrollments WHERE partner = ? AND campaign = ? "
                         "AND status IN ('active', 'paused')", (partner, campaign)) is not None

    def was_enrolled(self, partner: str, campaign: str, at: datetime, within: timedelta | None = None) -> bool:
        """Whether the partner had an enrollment in the campaign that started by ``at``; with
        ``within``, one that was still going at some time in [at - within, at] (not finished,
        or finished or removed at or after ``at - within``)."""
        sql = ("SELECT 1 FROM enrollments WHERE partner = ? AND campaign = ? AND status != 'scheduled' "
               "AND started_at <= ?")
        params: list[Any] = [partner, campaign, iso(at)]
        if within is not None and at - datetime.min.replace(tzinfo=at.tzinfo) > within:  # else: since ever
            sql += " AND (finished_at IS NULL OR finished_at >= ?)"
            params.append(iso(at - within))
        return self._one(sql, tuple(params)) is not None

    # --- step runs -------------------------------------------------------------------------

    def step_runs(self, enrollment_id: int) -> list[StepRun]:
        return [StepRun(step, run, status, reason, maybe_from_iso(due), from_iso(at), json.loads(detail or "{}"))
                for step, run, status, reason, due, at, detail in self.db.execute(
                    "SELECT step, run, status, reason, due_at, at, detail FROM step_runs WHERE enrollment = ? "
                    "ORDER BY at, run", (enrollment_id,))]

    def step_run(self, enrollment_id: int, step: str) -> StepRun | None:
        """The latest run of a step of an enrollment."""
        runs = [r for r in self.step_runs(enrollment_id) if r.step == step]
        return max(runs, key=lambda r: r.run) if runs else None

    def have_run(self, steps: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which of these (enrollment, step) pairs have a run, whatever its status."""
        asked = set(steps)
        return self.steps_run({enrollment for enrollment, _ in asked}) & asked

    def steps_run(self, enrollments: Iterable[int]) -> set[tuple[int, str]]:
        """Every (enrollment, step) with a run, of these enrollments (a batch of due steps asks
        once for all of them, whatever steps they reach in the batch)."""
        found: set[tuple[int, str]] = set()
        for chunk in _chunks(sorted(set(enrollments)), 500):
            marks = ",".join("?" * len(chunk))
            found.update((enrollment, step) for enrollment, step in self.db.execute(
                f"SELECT DISTINCT enrollment, step FROM step_runs WHERE enrollment IN ({marks})", chunk))
        return found

    def executed_steps(self, enrollments: Iterable[int]) -> dict[int, list[str]]:
        """enrollment → the steps it executed, in the order they ran (a step run again is listed again)."""
        found: dict[int, list[str]] = {}
        for chunk in _chunks(sorted(set(enrollments)), 500):
            marks = ",".join("?" * len(chunk))
            for enrollment, step in self.db.execute(
                    f"SELECT enrollment, step FROM step_runs WHERE enrollment IN ({marks}) AND status = 'executed' "
                    "ORDER BY enrollment, at, step, run", chunk):
                found.setdefault(enrollment, []).append(step)
        return found

    def record_step(self, enrollment_id: int, step: str, run: int, status: str, reason: str | None,
                    due_at: datetime | None, at: datetime, detail: Mapping[str, Any] | None = None) -> None:
        self.record_steps([(enrollment_id, step, run, status, reason, due_at, at, detail)])

    def record_steps(self, rows: Iterable[tuple[int, str, int, str, str | None, datetime | None, datetime,
                                                Mapping[str, Any] | None]]) -> None:
        """(enrollment, step, run, status, reason, due_at, at, detail) rows, in one statement."""
        self.db.executemany("INSERT INTO step_runs (enrollment, step, run, status, reason, due_at, at, detail) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            [(enrollment_id, step, run, status, reason, None if due_at is None else _stamp(due_at),
                              _stamp(at), json.dumps(detail) if detail else None)
                             for enrollment_id, step, run, status, reason, due_at, at, detail in rows])

    def replace_step(self, enrollment_id: int, step: str, run: int, status: str, reason: str | None,
                     due_at: datetime | None, at: datetime, detail: Mapping[str, Any] | None = None) -> None:
        self.db.execute("UPDATE step_runs SET status = ?, reason = ?, due_at = ?, at = ?, detail = ? "
                        "WHERE enrollment = ? AND step = ? AND run = ?",
                        (status, reason, maybe_iso(due_at), iso(at), json.dumps(detail) if detail else None,
                         enrollment_id, step, run))

    # --- effects ---------------------------------------------------------------------------

    def add_message(self, record: Mapping[str, Any], enrollment_id: int, html: bool = False) -> None:
        self.add_messages([(record, enrollment_id, html)])

    def add_messages(self, messages: Iterable[tuple[Mapping[str, Any], int, bool]]) -> None:
        """(record, enrollment, html) of messages to queue, in one statement."""
        payload = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(record, ensure_ascii=False), made once
        self.db.executemany("INSERT INTO outbox (id, channel, enrollment, campaign, step, partner, at, payload, html) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [(record["id"], record["channel"], enrollment_id, record["campaign"], record["step"],
                              record["partner"], record["at"], payload(record), int(html))
                             for record, enrollment_id, html in messages])

    # The delivery loop (engine.delivery) claims the messages it hands over: ``claimed_by`` names
    # the process, and only unclaimed messages are claimed, so two processes never hand one
    # message over at once. Recording the outcome clears the claim; the claims of a process that
    # died are taken back by the next delivery (reclaim_abandoned).

    SKIP_LOCKED_ROWS = ""  # PostgreSQL: rows another claim is locking right now are passed over

    def claimer(self) -> str:
        """Who this store's claims belong to: the running process."""
        return this_process()

    def claimer_alive(self, claimer: str) -> bool:
        return process_alive(claimer)

    def claim_messages(self, at: datetime, channels: Sequence[str], limit: int) -> list[Queued]:
        """Claim for this process up to ``limit`` unclaimed messages of these channels that wait
        for their transport and are due for an attempt at ``at``, oldest first (read in the
        order of the index of waiting messages, so SQLite does not sort them for each batch)."""
        if not channels:
            return []
        marks = ",".join("?" * len(channels))
        rows = self.db.execute(
            "UPDATE outbox SET claimed_by = ?, claimed_at = ? WHERE rowid IN ("
            f"SELECT rowid FROM outbox INDEXED BY outbox_waiting WHERE status = 'queued' AND claimed_by IS NULL "
            f"AND channel IN ({marks}) AND (next_attempt IS NULL OR next_attempt <= ?) ORDER BY rowid LIMIT ?"
            f"{self.SKIP_LOCKED_ROWS}) RETURNING rowid, id, channel, payload, html, attempts",
            (self.claimer(), iso(SystemClock().now()), *channels, iso(at), limit)).fetchall()
        return [Queued(mid, channel, json.loads(payload), bool(html), attempts)
                for _, mid, channel, payload, html, attempts in sorted(rows)]

    def release_claims(self, ids: Sequence[str]) -> None:
        """Give back claimed messages that were not handed over (queued as they were)."""
        self.db.executemany("UPDATE outbox SET claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(mid,) for mid in ids])

    def reclaim_abandoned(self, at: datetime) -> int:
        """Release the claims of processes that are gone (killed while delivering): their messages
        wait again, and the one that was in flight is handed over again with the same id. How
        many were released (each claimer's count goes to the audit log)."""
        released = 0
        for (claimer,) in self.db.execute("SELECT DISTINCT claimed_by FROM outbox WHERE claimed_by IS NOT NULL").fetchall():
            if self.claimer_alive(claimer):
                continue
            with self.transaction():
                count = self.db.execute("UPDATE outbox SET claimed_by = NULL, claimed_at = NULL WHERE claimed_by = ?",
                                        (claimer,)).rowcount
                if count:
                    self.log(at, "engine", "delivery.reclaimed", claimed_by=claimer, count=count)
            released += count
        return released

    def record_outcomes(self, outcomes: Sequence[tuple[str, str, str | None, datetime]], at: datetime) -> None:
        """(id, sent | retry | failed, error, when to try again after a retry); each clears the
        message's claim."""
        when = iso(at)
        self.db.executemany("UPDATE outbox SET status = 'sent', delivered_at = ?, attempts = attempts + 1, "
                            "next_attempt = NULL, last_error = NULL, claimed_by = NULL, claimed_at = NULL "
                            "WHERE id = ? AND status = 'queued'",
                            [(when, mid) for mid, status, _, _ in outcomes if status == "sent"])
        self.db.executemany("UPDATE outbox SET status = 'failed', attempts = attempts + 1, last_error = ?, "
                            "next_attempt = NULL, claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(error, mid) for mid, status, error, _ in outcomes if status == "failed"])
        self.db.executemany("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ?, "
                            "claimed_by = NULL, claimed_at = NULL WHERE id = ? AND status = 'queued'",
                            [(error, iso(retry), mid) for mid, status, error, retry in outcomes if status == "retry"])

    def messages(self, channel: str | None = None, campaign: str | None = None, partner: str | None = None,
                 status: str | None = None) -> list[dict]:
        """The outbox's messages (their records) with their delivery state."""
        sql, params = "SELECT payload, status, attempts, next_attempt, last_error, delivered_at FROM outbox WHERE 1 = 1", []
        for column, value in (("channel", channel), ("campaign", campaign), ("partner", partner), ("status", status)):
            if value is not None:
                sql += f" AND {column} = ?"
                params.append(value)
        found = []
        for payload, state, attempts, next_attempt, error, delivered in self.db.execute(sql + " ORDER BY at, rowid", params):
            record = json.loads(payload)
            record.update(status=state, attempts=attempts, next_attempt=next_attempt, last_error=error,
                          delivered_at=delivered)
            found.append(record)
        return found

    def add_activity(self, activity: Mapping[str, Any]) -> None:
        self.db.execute("INSERT INTO activities (id, enrollment, campaign, step, partner, kind, assignee, subject, "
                        "responses, status, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                        (activity["id"], activity["enrollment"], activity["campaign"], activity["step"],
                         activity["partner"], activity["kind"], activity["assignee"], activity["subject"],
                         json.dumps(activity["responses"]), activity["at"]))

    def activities(self, campaign: str | None = None, partner: str | None = None, assignee: str | None = None,
                   status: str | None = None) -> list[dict]:
        return self._rows("activities", _ACTIVITY_KEYS,
                          {"campaign": campaign, "partner": partner, "assignee": assignee, "status": status},
                          ("responses", "answers"))

    def activity(self, activity_id: str) -> dict | None:
        found = [a for a in self._rows("activities", _ACTIVITY_KEYS + ("enrollment",), {"id": activity_id}, ("responses", "answers"))]
        return found[0] if found else None

    def message(self, message_id: str) -> dict | None:
        row = self.db.execute("SELECT payload, enrollment FROM outbox WHERE id = ?", (message_id,)).fetchone()
        if row is None:
            return None
        return {**json.loads(row[0]), "enrollment": row[1]}

    def add_response(self, target: str, kind: str, enrollment: int, campaign: str, step: str, partner: str,
                     response: str, result: str, answers: Mapping[str, str], duration: int | None, at: datetime,
                     user: str) -> int | None:
        """The response's number, or None when the target has one already."""
        try:
            cursor = self.db.execute(
                "INSERT INTO responses (target, kind, enrollment, campaign, step, partner, response, result, answers, "
                "duration, at, user) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (target, kind, enrollment, campaign, step, partner, response, result, json.dumps(dict(answers)),
                 duration, iso(at), user))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def link_follow_up(self, seq: int, campaign: str, enrollment_id: int | None) -> None:
        self.db.execute("UPDATE responses SET follow_up = ?, follow_up_enrollment = ? WHERE seq = ?",
                        (campaign, enrollment_id, seq))

    def responses(self, partner: str | None = None, campaign: str | None = None) -> list[dict]:
        keys = ("seq", "target", "kind", "campaign", "step", "partner", "response", "result", "follow_up",
                "follow_up_enrollment", "answers", "duration", "at", "user")
        wanted = {c: v for c, v in (("partner", partner), ("campaign", campaign)) if v is not None}
        where = " AND ".join(f"{c} = ?" for c in wanted) or "1 = 1"
        found = []
        for row in self.db.execute(f"SELECT {', '.join(keys)} FROM responses WHERE {where} ORDER BY seq",
                                   tuple(wanted.values())):
            item = dict(zip(keys, row))
            item["answers"] = json.loads(item["answers"])
            found.append(item)
        return found

    def complete_activity(self, activity_id: str, response: str, result: str, at: datetime,
                          answers: Mapping[str, str], duration: int | None) -> bool:
        cursor = self.db.execute(
            "UPDATE activities SET status = 'completed', response = ?, result = ?, responded_at = ?, answers = ?, "
            "duration = ? WHERE id = ? AND status = 'open'",
            (response, result, iso(at), json.dumps(dict(answers)), duration, activity_id))
        return cursor.rowcount == 1

    # --- target groups (a campaign's manual members) ----------------------------------------

    def members(self, campaign: str) -> dict[str, str]:
        """partner → origin."""
        return dict(self.db.execute("SELECT partner, origin FROM members WHERE campaign = ? ORDER BY partner",
                                    (campaign,)).fetchall())

    def members_from_groups(self) -> list[tuple[str, str, str]]:
        """(campaign, partner, origin) of every member added from a static group."""
        return [tuple(row) for row in self.db.execute(
            "SELECT campaign, partner, origin FROM members WHERE origin LIKE 'group:%' ORDER BY campaign, partner")]

    def people(self, campaign: str, status: str | None, limit: int, offset: int) -> list[dict[str, Any]]:
        """The campaign's members and enrollees by partner id: each one's membership (origin,
        when added) and latest enrollment; ``status`` keeps those whose latest enrollment has
        it (``member``: members not enrolled yet)."""
        keys = ("partner", "member_origin", "added_at", "id", "number", "status", "reason", "origin", "source",
                "started_at", "finished_at", "next_step", "due_at")
        where, params = _people(campaign, status)
        rows = self.db.execute(f"SELECT {_PEOPLE_COLUMNS} {where} ORDER BY p.partner LIMIT ? OFFSET ?",
                               (*params, limit, offset)).fetchall()
        return [dict(zip(keys, row)) for row in rows]

    def count_people(self, campaign: str, status: str | None) -> int:
        where, params = _people(campaign, status)
        return self._one(f"SELECT count(*) {where}", params)

    def members_to_enroll(self, campaign: str) -> list[str]:
        """Members with no enrollment in the campaign that is current or started since they
        were added (a removed one does not count: removal is a reset)."""
        return [p for (p,) in self.db.execute(
            "SELECT m.partner FROM members m WHERE m.campaign = ? AND NOT EXISTS ("
            " SELECT 1 FROM enrollments e WHERE e.campaign = m.campaign AND e.partner = m.partner"
            " AND (e.status IN ('scheduled', 'active', 'paused') OR (e.status != 'removed' AND e.started_at >= m.added_at)))"
            " ORDER BY m.partner", (campaign,))]

    def add_members(self, campaign: str, partners: Mapping[str, str], at: datetime, user: str) -> int:
        cursor = self.db.executemany(
            "INSERT OR IGNORE INTO members (campaign, partner, origin, added_at, added_by) VALUES (?, ?, ?, ?, ?)",
            ((campaign, p, origin, iso(at), user) for p, origin in partners.items()))
        return cursor.rowcount

    def remove_members(self, campaign: str, partners: Sequence[str]) -> int:
        cursor = self.db.executemany("DELETE FROM members WHERE campaign = ? AND partner = ?",
                                     ((campaign, p) for p in partners))
        return cursor.rowcount

    def add_popup(self, popup: Mapping[str, Any]) -> None:
        self.db.execute("INSERT INTO popups (id, enrollment, campaign, step, partner, pages, title, body, language, "
                        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (popup["id"], popup["enrollment"], popup["campaign"], popup["step"], popup["partner"],
                         json.dumps(popup["pages"]), popup["title"], popup["body"], popup["language"], popup["at"]))

    def popups(self, partner: str | None = None) -> list[dict]:
        return self._rows("popups", _POPUP_KEYS, {"partner": partner}, ("pages",))

    def _rows(self, table: str, keys: Sequence[str], filters: Mapping[str, Any], json_keys: Sequence[str]) -> list[dict]:
        """Rows of ``table`` as dicts, filtered on the given columns (None: any), oldest first."""
        wanted = {column: value for column, value in filters.items() if value is not None}
        where = " AND ".join(f"{column} = ?" for column in wanted) or "1 = 1"
        found = []
        for row in self.db.execute(f"SELECT {', '.join(keys)} FROM {table} WHERE {where} ORDER BY created_at, id",
                                   tuple(wanted.values())):
            item = dict(zip(keys, row))
            for key in json_keys:
                item[key] = json.loads(item[key]) if item[key] is not None else None
            found.append(item)
        return found

    # --- statistics ---------------------------------------------------------------------------

    def message_counts(self, campaign: str) -> list[tuple[str, str, str, str, int]]:
        """(step, channel, language, delivery status, messages) of a campaign."""
        return self.db.execute(
            "SELECT step, channel, json_extract(payload, '$.language'), status, count(*) FROM outbox "
            "WHERE campaign = ? GROUP BY 1, 2, 3, 4", (campaign,)).fetchall()

    def engagement_counts(self, campaign: str) -> list[tuple[str, str, str, int, int]]:
        """(step, language, event type, events, distinct partners) of a campaign's engagement
        events about messages that were sent; the language is that of the step's latest message
        to the partner."""
        return self.db.execute(
            "SELECT e.step, coalesce((SELECT json_extract(o.payload, '$.language') FROM outbox o "
            "  WHERE o.partner = e.partner AND o.campaign = e.campaign AND o.step = e.step "
            "  ORDER BY o.at DESC LIMIT 1), 'default') AS language, e.type, count(*), count(DISTINCT e.partner) "
            "FROM events e WHERE e.campaign = ? AND e.type IN ('opened', 'clicked', 'bounced') "
            "AND EXISTS (SELECT 1 FROM outbox o WHERE o.partner = e.partner AND o.campaign = e.campaign "
            "  AND o.step = e.step AND o.status = 'sent') GROUP BY 1, 2, 3",
            (campaign,)).fetchall()

    def popup_counts(self, campaign: str) -> list[tuple[str, str, int, int]]:
        """(step, language, shown, read) of a campaign's pop-ups."""
        return self.db.execute(
            "SELECT step, coalesce(language, 'default'), count(*), count(read_at) FROM popups WHERE campaign = ? "
            "GROUP BY 1, 2", (campaign,)).fetchall()

    def mark_popup_read(self, popup_id: str, partner: str, at: datetime) -> bool:
        cursor = self.db.execute("UPDATE popups SET read_at = ? WHERE id = ? AND partner = ? AND read_at IS NULL",
                                 (iso(at), popup_id, partner))
        return cursor.rowcount == 1

    def popup(self, popup_id: str) -> dict | None:
        found = self._rows("popups", _POPUP_KEYS, {"id": popup_id}, ("pages",))
        return found[0] if found else None

    def latest_popup(self, partner: str, campaign: str, step: str) -> str | None:
        return self._one("SELECT id FROM popups WHERE partner = ? AND campaign = ? AND step = ? "
                         "ORDER BY created_at DESC LIMIT 1", (partner, campaign, step))

    # --- monitors ---------------------------------------------------------------------------

    def open_alert(self, campaign: str) -> dict | None:
        found = self.alerts(campaign, open_only=True)
        return found[0] if found else None

    def raise_alert(self, campaign: str, at: datetime, pct: float, minimum: float) -> int | None:
        """The new alert's number, or None when one is open already (another tick raised it)."""
        try:
            cursor = self.db.execute("INSERT INTO alerts (campaign, raised_at, pct, minimum) VALUES (?, ?, ?, ?)",
                                     (campaign, iso(at), pct, minimum))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def clear_alert(self, seq: int, at: datetime, pct: float) -> bool:
        cursor = self.db.execute("UPDATE alerts SET cleared_at = ?, cleared_pct = ? WHERE seq = ? AND cleared_at IS NULL",
                                 (iso(at), pct, seq))
        return cursor.rowcount == 1

    def alerts(self, campaign: str | None = None, open_only: bool = False) -> list[dict]:
        keys = ("seq", "campaign", "raised_at", "pct", "minimum", "cleared_at", "cleared_pct")
        sql, params = f"SELECT {', '.join(keys)} FROM alerts WHERE 1 = 1", []
        if campaign is not None:
            sql += " AND campaign = ?"
            params.append(campaign)
        if open_only:
            sql += " AND cleared_at IS NULL"
        return [dict(zip(keys, row)) for row in self.db.execute(sql + " ORDER BY seq", params)]

    def add_notice(self, record: Mapping[str, Any]) -> None:
        """A message that belongs to no enrollment (a monitor's alert email)."""
        self.add_message(record, 0)

    # --- facts for expressions -------------------------------------------------------------

    def engaged(self, partner: str, campaign: str, step: str, kind: str, since: datetime | None,
                until: datetime) -> bool:
        """Whether an engagement event of this kind for the step's messages to the partner
        happened in (since, until]."""
        return self._one("SELECT 1 FROM events WHERE partner = ? AND campaign = ? AND step = ? AND type = ? "
                         "AND at <= ? AND at >= ? LIMIT 1",
                         (partner, campaign, step, kind, iso(until), maybe_iso(since) or "")) is not None

    def response(self, enrollment_id: int, step: str, until: datetime) -> str | None:
        return self._one("SELECT response FROM responses WHERE enrollment = ? AND step = ? AND at <= ? "
                         "ORDER BY at DESC, seq DESC LIMIT 1", (enrollment_id, step, iso(until)))

    def consent_latest(self, partner: str, channel: str, until: datetime) -> bool | None:
        return self.consents_latest([(partner, channel, until)])[(partner, channel, until)]

    def consents_latest(self, asks: Iterable[tuple[str, str, datetime]]
                        ) -> dict[tuple[str, str, datetime], bool | None]:
        """(partner, channel, until) → the partner's latest consent ledger entry for the channel
        at or before ``until`` (None: there is none), for many at once."""
        asked = list(dict.fromkeys(asks))
        found: dict[tuple[str, str, datetime], bool | None] = {}
        for chunk in _chunks(asked, 250):
            values = ", ".join(["(?, ?, ?, ?)"] * len(chunk))
            params = [value for n, (partner, channel, until) in enumerate(chunk)
                      for value in (n, partner, channel, _stamp(until))]
            for n, granted in self.db.execute(
                    f"WITH asks (n, partner, channel, upto) AS (VALUES {values}) "
                    "SELECT a.n, (SELECT c.granted FROM consent c WHERE c.partner = a.partner AND c.channel = a.channel "
                    "AND c.at <= a.upto ORDER BY c.at DESC, c.seq DESC LIMIT 1) FROM asks a", params):
                found[chunk[n]] = None if granted is None else bool(granted)
        return found

    def mark_undeliverable(self, address: str, at: datetime, source: str) -> None:
        self.db.execute("INSERT INTO undeliverable (address, at, source) VALUES (?, ?, ?) "
                        "ON CONFLICT (address) DO UPDATE SET at = min(at, excluded.at)",
                        (address.strip().lower(), iso(at), source))

    def undeliverable(self, address: str, until: datetime) -> bool:
        return (address, until) in self.undeliverable_among([(address, until)])

    def undeliverable_among(self, asks: Iterable[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
        """Which of these (address, until) had hard-bounced at or before ``until``, for many at once."""
        asked = list(dict.fromkeys(asks))
        found: set[tuple[str, datetime]] = set()
        for chunk in _chunks(asked, 250):
            values = ", ".join(["(?, ?, ?)"] * len(chunk))
            params = [value for n, (address, until) in enumerate(chunk)
                      for value in (n, address.strip().lower(), _stamp(until))]
            found.update(chunk[n] for (n,) in self.db.execute(
                f"WITH asks (n, address, upto) AS (VALUES {values}) SELECT a.n FROM asks a "
                "WHERE EXISTS (SELECT 1 FROM undeliverable u WHERE u.address = a.address AND u.at <= a.upto)", params))
        return found

    def last_address(self, partner: str, campaign: str, step: str) -> str | None:
        """Where the step's latest message to the partner went."""
        payload = self._one("SELECT payload FROM outbox WHERE partner = ? AND campaign = ? AND step = ? "
                            "ORDER BY at DESC, rowid DESC LIMIT 1", (partner, campaign, step))
        return json.loads(payload).get("to") if payload else None

    def consent_entries(self, partner: str) -> list[dict]:
        return [{"channel": c, "granted": bool(g), "at": at, "source": source} for c, g, at, source in self.db.execute(
            "SELECT channel, granted, at, source FROM consent WHERE partner = ? ORDER BY at, seq", (partner,))]

    # --- events ----------------------------------------------------------------------------

    def add_event(self, event: Any, pending: bool, at: datetime) -> bool:
        """False when an event with this id was imported before."""
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (id, type, at, partner, data, message, campaign, step, imported_at, processed) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (event.id, event.type, iso(event.at), event.partner, json.dumps(dict(event.data), ensure_ascii=False),
             event.message, event.campaign, event.step, iso(at), 0 if pending else 1))
        return cursor.rowcount == 1

    def message_target(self, message_id: str) -> tuple[str, str, str, str] | None:
        """(campaign, step, partner, channel) of a message id (or a pop-up's: channel popup)."""
        row = self.db.execute("SELECT campaign, step, partner, channel FROM outbox WHERE id = ? UNION ALL "
                              "SELECT campaign, step, partner, 'popup' FROM popups WHERE id = ?",
                              (message_id, message_id)).fetchone()
        return tuple(row) if row else None  # type: ignore[return-value]

    def add_consent(self, partner: str, channel: str, granted: bool, at: datetime, source: str) -> None:
        self.db.execute("INSERT INTO consent (partner, channel, granted, at, source) VALUES (?, ?, ?, ?, ?)",
                        (partner, channel, int(granted), iso(at), source))

    def next_pending_event(self, until: datetime) -> tuple[str, str, datetime, str, dict] | None:
        row = self.db.execute("SELECT id, type, at, partner, data FROM events WHERE processed = 0 AND at <= ? "
                              "ORDER BY at, id LIMIT 1", (iso(until),)).fetchone()
        if row is None:
            return None
        return row[0], row[1], from_iso(row[2]), row[3], json.loads(row[4])

    def mark_event_processed(self, event_id: str) -> bool:
        cursor = self.db.execute("UPDATE events SET processed = 1 WHERE id = ? AND processed = 0", (event_id,))
        return cursor.rowcount == 1

    # --- audiences, pushed down ------------------------------------------------------------

    def partners_where(self, condition: str, params: Sequence[Any], *, with_data: bool = False,
                       not_in: tuple[str, Sequence[str]] | None = None) -> Iterator[tuple[str, str | None]]:
        """(id, data JSON if asked) of the present partners meeting ``condition``: SQL that the
        expression language's SQL back end (:mod:`dsl.sql`) made over the ``data`` column, with
        its parameters. ``not_in=(campaign, statuses)`` leaves out the partners with an
        enrollment of the campaign in one of those statuses (one index probe each)."""
        sql = f"SELECT id, {'data' if with_data else 'NULL'} FROM partners WHERE removed_at IS NULL AND ({condition})"
        params = list(params)
        if not_in is not None:
            campaign, statuses = not_in
            sql += (" AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.partner = partners.id AND e.campaign = ?"
                    f" AND e.status IN ({','.join('?' * len(statuses))}))")
            params += [campaign, *statuses]
        yield from self.db.execute(sql, params)

    def partners_finished(self, since: datetime, until: datetime, campaign: str | None = None) -> set[str]:
        """The partners with an enrollment (of ``campaign``, or of any) that finished or was
        removed in [since, until]: a range scan of the finish index."""
        sql = "SELECT DISTINCT partner FROM enrollments WHERE finished_at >= ? AND finished_at <= ?"
        params: list[Any] = [iso(since), iso(until)]
        if campaign is not None:
            sql += " AND campaign = ?"
            params.append(campaign)
        return {pid for (pid,) in self.db.execute(sql, params)}

    def log_position(self) -> int:
        """The audit log's latest line number: it moves whenever anything changes state."""
        return self._one("SELECT max(seq) FROM log") or 0

    # --- audit log -------------------------------------------------------------------------

    def log(self, at: datetime, user: str, action: str, campaign: str | None = None, partner: str | None = None,
            **detail: Any) -> None:
        self.db.execute("INSERT INTO log (at, user, action, campaign, partner, detail) VALUES (?, ?, ?, ?, ?, ?)",
                        (iso(at), user, action, campaign, partner, json.dumps(detail, ensure_ascii=False, default=str)))

    def log_entries(self, campaign: str | None = None, limit: int | None = None) -> list[dict]:
        sql = ("SELECT l.seq, l.at, l.user, l.action, l.campaign, c.number, l.partner, l.detail FROM log l "
               "LEFT JOIN campaigns c ON c.id = l.campaign")
        params: list[Any] = []
        if campaign is not None:
            sql += " WHERE l.campaign = ?"
            params.append(campaign)
        sql += " ORDER BY l.seq"
        entries = [{"seq": seq, "at": at, "user": user, "action": action, "campaign": c, "campaign_number": number,
                    "partner": p, "detail": json.loads(detail)}
                   for seq, at, user, action, c, number, p, detail in self.db.execute(sql, params)]
        return entries[-limit:] if limit else entries

    # --- API keys (engine.apikeys) -----------------------------------------------------------

    def add_api_key(self, key_id: str, user: str, salt: str, digest: str, at: datetime) -> None:
        """A new key: its id, its user, and the salt and scrypt hash of its secret (hex), never
        the key. ``sqlite3.IntegrityError`` when the id is taken."""
        self.db.execute("INSERT INTO api_keys (id, user, salt, hash, created_at) VALUES (?, ?, ?, ?, ?)",
                        (key_id, user, salt, digest, iso(at)))

    def api_key(self, key_id: str) -> dict | None:
        found = self._rows("api_keys", _API_KEY_KEYS, {"id": key_id}, ())
        return found[0] if found else None

    def api_keys(self) -> list[dict]:
        """Every key, revoked ones too, oldest first."""
        return self._rows("api_keys", _API_KEY_KEYS, {}, ())

    def revoke_api_key(self, key_id: str, at: datetime) -> bool:
        """False when there is no such key or it was revoked already (the first revocation's
        time stays)."""
        cursor = self.db.execute("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                 (iso(at), key_id))
        return cursor.rowcount == 1

    def touch_api_key(self, key_id: str, at: datetime) -> bool:
        """Record a key's last use; False when nothing was recorded (a later use is recorded
        already, or the store was busy). A hint for `engine apikey list`, so a request does not
        queue behind a tick for it: one statement of its own, which waits for another process's
        write lock only :data:`TOUCH_WAIT` seconds, then gives up (the next use tries again)."""
        if self._depth:
            return self._touch_api_key(key_id, at)
        self.db.execute(f"PRAGMA busy_timeout={int(TOUCH_WAIT * 1000)}")
        try:
            return self._touch_api_key(key_id, at)
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                return False
            raise
        finally:
            self.db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT * 1000)}")

    def _touch_api_key(self, key_id: str, at: datetime) -> bool:
        """The last use moves forward only: concurrent requests may record theirs in any order."""
        cursor = self.db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ? "
                                 "AND (last_used_at IS NULL OR last_used_at < ?)", (iso(at), key_id, iso(at)))
        return cursor.rowcount == 1


SQLITE_HEADER = b"SQLite format 3\x00"
STORE_TABLES = {"partners", "enrollments"}  # one of them, and meta, is in every version of the store


def _create(path: Path) -> None:
    """A new store, made under another name and renamed into place once its schema is in: a
    store file is never seen half made (an empty file at ``path`` is never ours)."""
    draft = path.with_name(f"{path.name}.new-{os.getpid()}")
    for leftover in (draft, draft.with_name(draft.name + "-wal"), draft.with_name(draft.name + "-shm")):
        leftover.unlink(missing_ok=True)
    db = sqlite3.connect(draft, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(SCHEMA)
    finally:
        db.close()
    os.rename(draft, path)


def check_store_file(path: Path) -> None:
    """:class:`StoreError` unless ``path`` looks like a SQLite database of its full length."""
    with open(path, "rb") as file:
        header = file.read(100)
    size = path.stat().st_size
    if size == 0:
        raise StoreError(f"{path} is not an engine store: the file is empty (move it away to start a new "
                         "store, or restore it from a backup)")
    if not header.startswith(SQLITE_HEADER):
        raise StoreError(f"{path} is not an engine store: it is not a SQLite database")
    if len(header) < 100:
        raise StoreError(f"the store {path} is damaged: the file is cut short ({size} bytes)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[92:96] == header[96:100] and pages and size < pages * page_size:
        raise StoreError(f"the store {path} is damaged: the file is cut short ({size} bytes of "
                         f"{pages * page_size}); restore it from a backup")


def _check_tables(db: sqlite3.Connection, path: Path) -> None:
    """A database with tables, but not the store's, belongs to someone else."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if tables and not ("meta" in tables and tables & STORE_TABLES):
        raise StoreError(f"{path} is not an engine store: a SQLite database with other tables "
                         f"({', '.join(sorted(tables)[:3])}{', …' if len(tables) > 3 else ''})")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """A store made by an earlier version of the engine gains the columns added since (tables
    and indexes are created by the schema itself, after this): compared with a fresh copy of
    the schema."""
    fresh = sqlite3.connect(":memory:")
    try:
        fresh.executescript(SCHEMA)
        tables = [t for (t,) in fresh.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
            if not have:  # a new table (or a new store): the schema creates it
                continue
            for _, column, kind, _, default, _ in fresh.execute(f"PRAGMA table_info({table})"):
                if column not in have:
                    suffix = f" DEFAULT {default}" if default is not None else ""
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}{suffix}")
    finally:
        fresh.close()


_STAMPS: dict[datetime, str] = {}


def _stamp(at: datetime) -> str:
    """``iso(at)``, remembered: a batch of due steps stores the same few times many times over."""
    text = _STAMPS.get(at)
    if text is None:
        if len(_STAMPS) >= 4096:
            _STAMPS.clear()
        text = _STAMPS[at] = iso(at)
    return text


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
