"""The embedded store: one SQLite database (WAL mode) per workspace, `.engine/state.db` by default.

The engine talks to it only through :class:`SQLiteStore`'s methods, which speak the domain's
words (enrollments, step runs, outbox, events) and plain SQL with ``?`` parameters: never text
built from user input. Writes happen inside :meth:`transaction` (``BEGIN IMMEDIATE``: one writer
at a time, readers never blocked), so a step's state and its effects commit together or not at
all, and a second process waits for the first instead of interleaving with it.

This module holds the connection, the transactions and the tables of partners, campaigns,
enrollments, step runs and target groups; :mod:`engine.store.ledger` the tables of what steps
produced and what came back (messages, activities, responses, pop-ups, events, the audit log);
:mod:`engine.store.records` the rows both hand back.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping, Sequence

from dsl.ids import natural_key

from ..clock import from_iso, iso, maybe_from_iso, maybe_iso
from ..errors import StoreBusy, StoreError
from .columns import TABLE as COLUMNS
from .columns import current, index, indexed, sync
from .ledger import BUSY_TIMEOUT, Ledger
from .outcomes import Outcomes
from .records import ENROLLMENT_COLUMNS, Conflict, Enrollment, Start, StepRun, chunks, stamp, stored

if TYPE_CHECKING:
    from dsl.sql_columns import Layout

SCHEMA = (Path(__file__).parent / "schema.sql").read_text(encoding="utf-8")
CURRENT = ("scheduled", "active", "paused")
PARTNER_REVISION = "partners.revision"  # meta key: the latest import that changed anything


_PEOPLE_COLUMNS = ("p.partner, m.origin, m.added_at, e.id, e.number, e.status, e.reason, e.origin, e.source, "
                   "e.started_at, e.finished_at, e.next_step, e.due_at")


_PEOPLE_IDS = "SELECT partner FROM members WHERE campaign = ? UNION SELECT partner FROM enrollments WHERE campaign = ?"


def _people(campaign: str, status: str | None, page: str = "") -> tuple[str, tuple]:
    """The FROM and WHERE of a campaign's members and enrollees, each with their latest
    enrollment. Without a status, ``page`` (``ORDER BY 1 LIMIT ? OFFSET ?``) pages the ids before
    the joins, so a page of 100 looks up 100 enrollments, not all of them."""
    sql = (f"FROM ({_PEOPLE_IDS}{page}) p"
           " LEFT JOIN members m ON m.campaign = ? AND m.partner = p.partner"
           " LEFT JOIN enrollments e ON e.id = (SELECT max(x.id) FROM enrollments x WHERE x.campaign = ? AND x.partner = p.partner)")
    if status is None:
        return sql, (campaign,) * 4
    return sql + " WHERE coalesce(e.status, 'member') = ?", (*(campaign,) * 4, status)


class SQLiteStore(Ledger, Outcomes):
    dialect = "sqlite"
    _functions: set[str] | None = None  # the pattern functions registered on the connection

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
                _fill_added_columns(self.db)
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
        self.db.execute("CREATE TEMP TABLE partners_import (id TEXT NOT NULL, data TEXT NOT NULL, hash TEXT NOT NULL,"
                        " sort_key TEXT NOT NULL)")
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
                for chunk in chunks(sorted({row[0] for row in rows}), 500):
                    marks = ",".join("?" * len(chunk))
                    first.update(self.db.execute(f"SELECT id, line FROM partners_import_ids WHERE id IN ({marks})",
                                                 chunk))
                duplicates = [(index, first[pid]) for index, (pid, line, _, _) in enumerate(rows)
                              if first[pid] != line]
            known = dict(self.db.execute(
                "SELECT p.id, p.hash FROM partners_import_ids s JOIN partners p ON p.id = s.id "
                "WHERE s.line >= ? AND s.line <= ? AND p.removed_at IS NULL", (rows[0][1], rows[-1][1])))
            left_out = {index for index, _ in duplicates}
            self.db.executemany("INSERT INTO partners_import (id, data, hash, sort_key) VALUES (?, ?, ?, ?)",
                                [(pid, data, digest, natural_key(pid)) for index, (pid, _, data, digest)
                                 in enumerate(rows)
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
                "INSERT INTO partners (id, data, hash, updated_at, removed_at, revision, sort_key) "
                "SELECT id, data, hash, ?, NULL, ?, sort_key FROM partners_import WHERE true "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data, hash = excluded.hash, "
                "updated_at = excluded.updated_at, removed_at = NULL, revision = excluded.revision, "
                "sort_key = excluded.sort_key",
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
        for chunk in chunks(ids, 500):
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
        row = self.db.execute(f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE id = ?", (enrollment_id,)).fetchone()
        return Enrollment.from_row(row) if row else None

    def enrollments_of(self, partner: str, campaign: str | None = None) -> list[Enrollment]:
        if campaign is None:
            rows = self.db.execute(f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE partner = ? "
                                   "ORDER BY started_at, campaign, number", (partner,))
        else:
            rows = self.db.execute(f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE partner = ? AND campaign = ? "
                                   "ORDER BY number", (partner, campaign))
        return [Enrollment.from_row(r) for r in rows]

    def enrollments_in(self, campaign: str, statuses: Sequence[str] | None = None) -> list[Enrollment]:
        sql = f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE campaign = ?"
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
        for chunk in chunks(list(partners), 500):
            marks = ",".join("?" * len(chunk))
            for row in self.db.execute(f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE partner IN ({marks}) "
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
        return self._insert_enrollment(campaign, partner, number, status, origin, source, iso(created_at),
                                       iso(started_at), next_step, maybe_iso(due_at))

    def add_enrollments(self, campaign: str, starts: Sequence[Start], *, origin: str, source: str | None,
                        at: datetime) -> set[str]:
        """Active enrollments of one campaign, all started at ``at`` (a trigger's firing), each
        numbered by the caller from the partner's history read in the same transaction: the
        partners enrolled. A partner with a current enrollment (or whose number is taken:
        another process got there first) is not."""
        started = iso(at)
        return {s.partner for s in starts
                if self._insert_enrollment(campaign, s.partner, s.number, "active", origin, source, started, started,
                                           s.next_step, maybe_iso(s.due_at)) is not None}

    def _insert_enrollment(self, campaign: str, partner: str, number: int, status: str, origin: str,
                           source: str | None, created_at: str, started_at: str, next_step: str | None,
                           due_at: str | None) -> int | None:
        try:
            cursor = self.db.execute(
                "INSERT INTO enrollments (campaign, partner, number, status, origin, source, created_at, started_at, "
                "next_step, due_at, priority) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "coalesce((SELECT priority FROM campaigns WHERE id = ?), 0))",
                (campaign, partner, number, status, origin, source, created_at, started_at, next_step, due_at,
                 campaign))
        except sqlite3.IntegrityError:
            return None
        return cursor.lastrowid

    def update_enrollment(self, e: Enrollment, **changes: Any) -> Enrollment:
        """Compare-and-set on the row's version: :class:`Conflict` when someone else changed it;
        else the enrollment as it is now. An enrollment that moves to another step has not begun
        waiting there."""
        if "next_step" in changes:
            changes.setdefault("waiting_since", None)
            changes.setdefault("held", None)
        columns = ", ".join(f"{name} = ?" for name in changes)
        params = [stored(value) for value in changes.values()]
        cursor = self.db.execute(
            f"UPDATE enrollments SET {columns}, version = version + 1 WHERE id = ? AND version = ?",
            (*params, e.id, e.version))
        if cursor.rowcount != 1:
            raise Conflict(f"enrollment {e.id} changed meanwhile")
        return e.changed(changes, e.version + 1)

    def due(self, until: datetime, campaigns: Sequence[str], limit: int) -> list[Enrollment]:
        """Active enrollments of these campaigns whose next step (or end) is due at or before
        ``until``, earliest first (at one instant: the higher campaign priority first, then by
        campaign id, SPEC §11): a range scan of the due index (in that order, so no sort),
        whatever the number of enrollments. Named explicitly: with the campaign condition,
        SQLite would otherwise pick the campaign index and read every active row. The campaign
        is compared as ``campaign || ''``, an expression no index serves: with one campaign,
        SQLite reads ``IN (?)`` as ``campaign = ?`` and then sorts every row due at one instant
        for each batch (a firing's 100,000 enrollments: 24 ms a batch, half the tick)."""
        if not campaigns:
            return []
        marks = ",".join("?" * len(campaigns))
        rows = self.db.execute(
            f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments INDEXED BY enrollments_due_order "
            "WHERE status = 'active' AND due_at <= ? "
            f"AND campaign || '' IN ({marks}) ORDER BY due_at, priority DESC, campaign, id LIMIT ?",
            (iso(until), *campaigns, limit))
        return [Enrollment.from_row(r) for r in rows]

    def waiting(self, until: datetime, campaigns: Sequence[str], after_id: int, limit: int) -> list[Enrollment]:
        """Active enrollments of these campaigns at a wait-for whose ``at_most`` is still after
        ``until`` (the others are due), in id order from ``after_id`` on: the tick asks each one's
        condition again."""
        if not campaigns:
            return []
        marks = ",".join("?" * len(campaigns))
        rows = self.db.execute(
            f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments INDEXED BY enrollments_waiting "
            "WHERE waiting_since IS NOT NULL AND status = 'active' AND due_at > ? "
            f"AND campaign IN ({marks}) AND id > ? ORDER BY id LIMIT ?", (iso(until), *campaigns, after_id, limit))
        return [Enrollment.from_row(r) for r in rows]

    def next_scheduled(self, until: datetime, campaigns: Sequence[str]) -> Enrollment | None:
        if not campaigns:
            return None
        marks = ",".join("?" * len(campaigns))
        row = self.db.execute(
            f"SELECT {ENROLLMENT_COLUMNS} FROM enrollments WHERE status = 'scheduled' AND started_at <= ? "
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
        for chunk in chunks(sorted(set(enrollments)), 500):
            marks = ",".join("?" * len(chunk))
            found.update((enrollment, step) for enrollment, step in self.db.execute(
                f"SELECT DISTINCT enrollment, step FROM step_runs WHERE enrollment IN ({marks})", chunk))
        return found

    def executed_steps(self, enrollments: Iterable[int]) -> dict[int, list[str]]:
        """enrollment → the steps it executed, in the order they ran (a step run again is listed again)."""
        found: dict[int, list[str]] = {}
        for chunk in chunks(sorted(set(enrollments)), 500):
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
                            [(enrollment_id, step, run, status, reason, None if due_at is None else stamp(due_at),
                              stamp(at), json.dumps(detail) if detail else None)
                             for enrollment_id, step, run, status, reason, due_at, at, detail in rows])

    def replace_step(self, enrollment_id: int, step: str, run: int, status: str, reason: str | None,
                     due_at: datetime | None, at: datetime, detail: Mapping[str, Any] | None = None) -> None:
        self.db.execute("UPDATE step_runs SET status = ?, reason = ?, due_at = ?, at = ?, detail = ? "
                        "WHERE enrollment = ? AND step = ? AND run = ?",
                        (status, reason, maybe_iso(due_at), iso(at), json.dumps(detail) if detail else None,
                         enrollment_id, step, run))

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
        if status is None:
            where, params = _people(campaign, None, " ORDER BY 1 LIMIT ? OFFSET ?")
            params = (*params[:2], limit, offset, *params[2:])
            rows = self.db.execute(f"SELECT {_PEOPLE_COLUMNS} {where} ORDER BY p.partner", params).fetchall()
        else:
            where, params = _people(campaign, status)
            rows = self.db.execute(f"SELECT {_PEOPLE_COLUMNS} {where} ORDER BY p.partner LIMIT ? OFFSET ?",
                                   (*params, limit, offset)).fetchall()
        return [dict(zip(keys, row)) for row in rows]

    def count_people(self, campaign: str, status: str | None) -> int:
        if status is None:
            return self._one(f"SELECT count(*) FROM ({_PEOPLE_IDS}) p", (campaign, campaign))
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

    # --- audiences, pushed down ------------------------------------------------------------

    def partners_where(self, condition: str, params: Sequence[Any], *, with_data: bool = False,
                       not_in: tuple[str, Sequence[str]] | None = None,
                       columns: bool = False) -> Iterator[tuple[str, str | None]]:
        """(id, data JSON if asked) of the present partners meeting ``condition``: SQL that the
        expression language's SQL back end (:mod:`dsl.sql`) made over the ``data`` column, with
        its parameters; with ``columns``, over the typed columns of :mod:`.columns`, and then
        in natural order. ``not_in=(campaign, statuses)`` leaves out the partners with an
        enrollment of the campaign in one of those statuses (one index probe each)."""
        self._register_functions(condition)
        data = "p.data" if with_data else "NULL"
        if columns:
            joined = " JOIN partners p ON p.id = c.id" if with_data else ""
            sql = f"SELECT c.id, {data} FROM {COLUMNS} c{joined} WHERE ({self.native(condition)})"
        else:
            sql = f"SELECT p.id, {data} FROM partners p WHERE p.removed_at IS NULL AND ({self.native(condition)})"
        params = list(params)
        if not_in is not None:
            campaign, statuses = not_in
            sql += (f" AND NOT EXISTS (SELECT 1 FROM enrollments e WHERE e.partner = {'c' if columns else 'p'}.id"
                    f" AND e.campaign = ? AND e.status IN ({','.join('?' * len(statuses))}))")
            params += [campaign, *statuses]
        if columns:
            sql += " ORDER BY c.key"
        yield from self.db.execute(sql, params)

    def partner_columns(self, layout: Layout, revision: int | None = None) -> None:
        """Bring the typed partner columns to ``layout`` (inside a transaction): see :mod:`.columns`."""
        sync(self, layout, revision)

    def has_partner_columns(self, layout: Layout) -> bool:
        return current(self, layout)

    def index_partner_columns(self, layout: Layout, fields: Iterable[str]) -> bool:
        """Index the columns of these fields (and no others); False when nothing changed."""
        if indexed(self, layout, fields):
            return False
        with self.transaction():
            index(self, layout, fields)
        return True

    def native(self, sql: str) -> str:
        """A condition as :mod:`dsl.sql` wrote it for this store, as its connection takes it."""
        return sql

    def _register_functions(self, condition: str) -> None:
        """The Python functions the SQLite dialect of :mod:`dsl.sql` calls (case mapping, one per
        regular expression), registered the first time a condition calls them."""
        if "engine_" not in condition:
            return
        from dsl.sql_sqlite import register_functions, register_patterns

        if self._functions is None:
            register_functions(self.db)
            self._functions = set()
        register_patterns(self.db, condition, self._functions)

    def partners_finished(self, since: datetime, until: datetime, campaign: str | None = None) -> set[str]:
        """The partners with an enrollment (of ``campaign``, or of any) that finished or was
        removed in [since, until]: a range scan of the finish index."""
        sql = "SELECT DISTINCT partner FROM enrollments WHERE finished_at >= ? AND finished_at <= ?"
        params: list[Any] = [iso(since), iso(until)]
        if campaign is not None:
            sql += " AND campaign = ?"
            params.append(campaign)
        return {pid for (pid,) in self.db.execute(sql, params)}


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


def _fill_added_columns(db: sqlite3.Connection) -> None:
    """Added columns whose values a store from before holds elsewhere: the outbox's language and
    variant, copied from each message's payload (once: the index they replace goes with it)."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'outbox_counts'").fetchone():
        db.execute("BEGIN IMMEDIATE")  # (the connection commits each statement by itself otherwise)
        try:
            db.execute("UPDATE outbox SET language = json_extract(payload, '$.language'), "
                       "variant = json_extract(payload, '$.variant')")
            db.execute("DROP INDEX outbox_counts")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
