"""The server store: one PostgreSQL schema, shared by several `engine tick` workers.

:class:`PostgresStore` is :class:`~engine.store.sqlite.SQLiteStore`: the domain methods (and
their SQL, with ``?`` parameters) are written once, there, and run here on a psycopg connection
through :class:`_Connection`, a small adapter that offers what they use of a ``sqlite3``
connection and translates the few places where SQLite's dialect is not PostgreSQL's:

==============================================  ===============================================
SQLite                                          PostgreSQL
==============================================  ===============================================
``?`` parameters (``%`` plain text)             ``%s`` (``%`` doubled)
``INSERT OR IGNORE INTO t ...``                 ``INSERT INTO t ... ON CONFLICT DO NOTHING``
plain ``INSERT ... VALUES`` that hits a unique  ``... ON CONFLICT DO NOTHING``, and no row
index: ``sqlite3.IntegrityError``               inserted raises :class:`IntegrityError` (a
                                                ``sqlite3.IntegrityError``): the transaction is
                                                not aborted, so callers go on as on SQLite
``cursor.lastrowid`` of an insert               ``RETURNING`` the table's integer key
``INDEXED BY index`` (a planner hint)           dropped (the claims say it their own way)
``x IN (?, ?, ...)``, 16 or more, all text or   ``x = ANY(%b)``: one array (binary), one
all integers                                    statement text whatever the count
``executemany`` of a plain INSERT into          a binary ``COPY`` in a savepoint (IntegrityError
``step_runs``, ``outbox`` or ``sends``          for a taken key, the transaction usable)
``executemany`` of ``INSERT OR IGNORE`` into    one ``INSERT ... SELECT * FROM unnest(%b, ...)``
one of those                                    (an array per column, typed as the table's)
``json_extract(col, '$.key')``                  ``(col::jsonb ->> 'key')``
scalar ``min(a, b)``                            ``least(a, b)`` (a bare column in an upsert:
                                                the table's, ``least(t.a, excluded.a)``)
the column ``user``                             ``"user"`` (a reserved word)
==============================================  ===============================================

Translations are cached per statement. Statements are only ever the store's own text: values
travel as parameters, never inside the SQL.

Only what means something else on a server is written here:

- **Transactions.** :meth:`transaction` (exclusive, the default) takes the store's advisory lock
  (``pg_advisory_xact_lock``) for the transaction, so imports, campaign sync, trigger firings,
  audience sampling, operations and monitors run one at a time, as SQLite's ``BEGIN IMMEDIATE``
  makes them. ``transaction(exclusive=False)``, a batch of due steps, takes that lock *shared*:
  batches of several workers run side by side, never beside an exclusive one. BEGIN and the
  lock go to the server in one round trip, just before the transaction's first statement.
- **Claims.** Inside a batch, :meth:`due` locks the enrollments it returns (``FOR UPDATE SKIP
  LOCKED``): each worker gets rows no other worker holds, so no step executes twice, and the
  compare-and-set on ``version`` never loses. When every due row is held by other workers, it
  waits for the first of them instead of answering "nothing due", so a worker does not move on
  to later trigger occurrences (or end its tick) while earlier steps are still running. A batch
  first asks, outside any transaction, whether anything is due at all: a tick with nothing to
  do costs one query, not a transaction (after a batch that found steps, the next one goes
  straight to its claim). The claim reads the due index in order (:meth:`_planner`): with the
  statistics a tick that just enrolled thousands leaves, the planner would sort every due row
  for each batch.
- **A batch's writes.** Its compare-and-sets on the enrollments it claimed are held back and
  sent as one UPDATE (:meth:`update_enrollment`) just before its next statement, so a read sees
  them; its step runs, messages and sends are one COPY each (the adapter). A
  batch of 500 steps is about 20 round trips, whatever it does per step (was one per step and
  more).
- **Delivery.** Messages are claimed as on SQLite (:meth:`claim_messages`: one statement, which
  passes over the rows another worker's claim is locking at that instant); the claimer is this
  *connection* (its backend's pid and start time), alive as long as ``pg_stat_activity`` lists
  it: a worker killed while delivering loses its connection, and its claims are taken back.
  :meth:`delivering` (recording outcomes) is a transaction without the advisory lock. For an
  idempotent transport (the files), a batch is claimed by its rows' locks instead, for the one
  transaction that hands it over and records its outcomes (:meth:`lock_messages`): no claim is
  written, and a worker killed meanwhile leaves the rows as they were.
- **Opening.** The schema (``schema_postgresql.sql``) is created in one transaction under the
  advisory lock, so processes opening a fresh store together take turns; afterwards its hash in
  ``meta`` says there is nothing to do.
- **Form.** ``partners.data`` is jsonb: the import's staging table gets a jsonb ``data`` too
  (:meth:`start_partner_import`), and the store hands the JSON back as text (a loader), as
  SQLite does. An audience condition from :mod:`dsl.sql`'s PostgreSQL dialect is written for
  psycopg; :meth:`partners_where` turns it back into ``?`` form for the adapter.

The store lives in the connection's current schema (the first of its ``search_path`` that
exists): several stores share a database as several schemas
(``postgresql:///db?options=-csearch_path%3Dname``); each has its own advisory lock.
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.types.string import TextLoader

from ..clock import SystemClock, iso, maybe_iso
from ..errors import StoreContention, StoreError
from .ledger import queued
from .records import Conflict, Enrollment, Queued, Start, chunks, stamp, stored
from .sqlite import SQLiteStore

SCHEMA = (Path(__file__).parent / "schema_postgresql.sql").read_text(encoding="utf-8")
SCHEMA_KEY = "schema.postgresql"  # meta: the hash of the schema script that last ran
LOCK_CLASS = 0x656E67  # the first key of the engine's advisory locks ("eng"); the second: the schema
CONNECT_TIMEOUT = 10  # seconds

EXCLUSIVE, STEPS, DELIVERY = "exclusive", "steps", "delivery"
SKIP_LOCKED, WAIT = " FOR UPDATE SKIP LOCKED", " FOR UPDATE"
# Tables whose rows an INTEGER PRIMARY KEY numbers in SQLite: what ``lastrowid`` is, here.
ROW_KEYS = {"enrollments": "id", "responses": "seq", "alerts": "seq", "log": "seq", "consent": "seq",
            "handovers": "id"}
# What a batch of due steps writes, many rows at a time: ``executemany`` of a plain INSERT into
# one of these is one statement (a COPY, or INSERT ... SELECT FROM unnest of an array per column).
BULK_TABLES = frozenset({"step_runs", "outbox", "sends"})
# The enrollment columns a batch's compare-and-sets may hold back until its next statement (all TEXT).
DEFERRED_COLUMNS = frozenset({"status", "reason", "finished_at", "after_step", "next_step", "due_at", "paused_at",
                              "waiting_since", "held"})
FEW_GROUPS = 4  # a batch's held-back updates as at most this many UPDATEs of one value each, else one joined


class IntegrityError(sqlite3.IntegrityError):
    """An insert found its row taken (a unique index): what SQLite raises, so that the domain
    methods that expect it read the same on both stores."""


class PostgresStore(SQLiteStore):
    dialect = "postgresql"

    def __init__(self, url: str):
        self.url, self.path = url, None
        self._depth, self._mode, self._begun = 0, None, False
        self._claimer: str | None = None
        self._claimed: set[int] = set()  # enrollments this batch locked (due)
        self._found = False  # the last batch found steps due (the next one need not ask first)
        self._pending: dict[int, tuple[int, int, dict[str, Any]]] = {}  # id → (version, new version, changes)
        try:
            self.conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
        except psycopg.Error as exc:
            raise StoreError(f"cannot open the PostgreSQL store {redacted(url)}: {first_line(exc)}") from None
        try:
            self.conn.adapters.register_loader("jsonb", TextLoader)  # partners.data: JSON text, as SQLite gives it
            self.db = _Connection(self.conn)
            schema = self._one("SELECT current_schema()")
            if schema is None:
                raise StoreError(f"the PostgreSQL store {redacted(url)} has no schema to live in: the schemas "
                                 "of its search_path do not exist (CREATE SCHEMA one, or name another)")
            self.schema = schema
            self._lock = (LOCK_CLASS, self._one("SELECT hashtext(?)", (schema,)))
            self._create_schema()
        except BaseException:
            self.conn.close()
            raise

    def close(self) -> None:
        self.conn.close()

    def _create_schema(self) -> None:
        digest = hashlib.sha256(SCHEMA.encode()).hexdigest()[:16]
        if self._schema_digest() == digest:
            return
        with self.transaction():  # the advisory lock: one process at a time creates or changes it
            if self._schema_digest() != digest:
                self.db.script(SCHEMA)
                self.set_meta(SCHEMA_KEY, digest)

    def _schema_digest(self) -> str | None:
        if self._one("SELECT to_regclass(quote_ident(current_schema()) || '.meta')") is None:
            return None
        return self.meta(SCHEMA_KEY)

    # --- transactions and claims -----------------------------------------------------------

    @contextmanager
    def transaction(self, exclusive: bool = True) -> Iterator[None]:
        """One atomic unit of work; nested uses join the outer one. Exclusive: under the store's
        advisory lock. ``exclusive=False`` (a batch of due steps): under it shared, beside other
        workers' batches, each on the rows :meth:`due` claimed."""
        with self._transaction(EXCLUSIVE if exclusive else STEPS):
            yield

    @contextmanager
    def delivering(self) -> Iterator[None]:
        """Around one delivery batch: the messages :meth:`queued` returns stay this worker's
        until the transaction ends (their outcomes recorded, or a crash rolled it back)."""
        with self._transaction(DELIVERY):
            yield

    @contextmanager
    def _transaction(self, mode: str) -> Iterator[None]:
        """BEGIN (and the advisory lock) go with the first statement inside, in one round trip;
        a transaction that runs none (nothing due, nothing waiting) never reaches the server."""
        if self._depth:
            with self._joined():
                yield
            return
        self._depth, self._mode, self._begun = 1, mode, False
        self.db.before_next = self._begin
        try:
            yield
            if self._pending:
                self._flush_updates()
        except BaseException:
            if self._begun:
                try:
                    self.conn.execute("ROLLBACK")
                except psycopg.Error:
                    pass  # the connection is gone: so is the transaction
            raise
        else:
            if self._begun:
                try:
                    self.conn.execute("COMMIT")
                except psycopg.OperationalError as exc:
                    raise failure(exc) from None
        finally:
            self._depth, self._mode, self._begun = 0, None, False
            self.db.before_next = self.db.pending = None
            self._claimed.clear()
            self._pending.clear()

    def _begin(self) -> None:
        self._begun, self.db.before_next = True, None
        lock = {EXCLUSIVE: "pg_advisory_xact_lock", STEPS: "pg_advisory_xact_lock_shared"}.get(self._mode or "")
        # the lock's keys are the two integers of self._lock (no text of anyone's): one round trip
        self.db.script(f"BEGIN; SELECT {lock}({int(self._lock[0])}, {int(self._lock[1])})" if lock else "BEGIN")

    def due(self, until: datetime, campaigns: Sequence[str], limit: int) -> list[Enrollment]:
        """SQLiteStore's due steps; inside a batch, claimed (see the module's docstring)."""
        if self._mode != STEPS:
            return super().due(until, campaigns, limit)
        if not self._begun and not self._found:  # (after a batch that found some, the next one asks itself)
            with self.db.outside():  # nothing due at all (the usual case): no transaction
                if not super().due(until, campaigns, 1):
                    return []
        self._found = False
        while True:
            with self._planner("enable_sort"), self.db.locking(SKIP_LOCKED):
                found = super().due(until, campaigns, limit)
            if found:
                self._claimed.update(e.id for e in found)
                self._found = True
                return found
            with self._planner("enable_sort"), self.db.locking(WAIT):  # all held by others: wait for the earliest
                if not super().due(until, campaigns, 1):
                    return []

    @contextmanager
    def _planner(self, *plans: str) -> Iterator[None]:
        """Around statements whose plan is known (SQLiteStore's ``INDEXED BY`` says it there): the
        planner avoids these kinds of plan (``enable_sort``, ``enable_seqscan``) meanwhile, and
        the transaction goes on as it was. Its statistics are stale when a tick has just enrolled
        or queued thousands (autovacuum has not analyzed them yet): it then expects a handful of
        rows, and sorts every due row for each batch, or reads the whole table to find a batch's
        500 by their keys: costs that grow with the batches."""
        off = ", ".join(["current_setting(?), set_config(?, 'off', true)"] * len(plans))
        before = self.db.execute(f"SELECT {off}", [name for plan in plans for name in (plan, plan)]).fetchone()
        yield
        back = ", ".join(["set_config(?, ?, true)"] * len(plans))
        self.db.execute(f"SELECT {back}", [value for plan, was in zip(plans, before[::2]) for value in (plan, was)])

    SKIP_LOCKED_ROWS = SKIP_LOCKED

    def add_enrollments(self, campaign: str, starts: Sequence[Start], *, origin: str, source: str | None,
                        at: datetime) -> set[str]:
        """SQLiteStore's, as one INSERT per 10,000 (the starts as arrays, a row that a unique index
        refuses skipped). One statement per partner would be one round trip each, and the plan
        PostgreSQL keeps for a statement it has run a few times is the one it chose while the
        table looked empty: a search for the partner's last number then reads every enrollment
        of the campaign, so a firing of 50,000 took minutes."""
        started, enrolled = iso(at), set()
        for chunk in chunks(list(starts), 10_000):
            rows = self.db.execute_psycopg(
                "INSERT INTO enrollments (campaign, partner, number, status, origin, source, created_at, started_at, "
                "next_step, due_at, priority) SELECT %s, s.partner, s.number, 'active', %s, %s, %s, %s, s.next_step, "
                "s.due_at, coalesce((SELECT priority FROM campaigns WHERE id = %s), 0) "
                "FROM unnest(%b::text[], %b::integer[], %b::text[], %b::text[]) AS s(partner, number, next_step, due_at) "
                "ON CONFLICT DO NOTHING RETURNING partner",
                [campaign, origin, source, started, started, campaign, [s.partner for s in chunk],
                 [s.number for s in chunk], [s.next_step for s in chunk], [maybe_iso(s.due_at) for s in chunk]])
            enrolled.update(partner for (partner,) in rows.fetchall())
        return enrolled

    def update_enrollment(self, e: Enrollment, **changes: Any) -> Enrollment:
        """SQLiteStore's compare-and-set. On an enrollment this batch claimed (its row locked by
        :meth:`due`: no one else can change it before the commit), held back and written with the
        batch's others in one statement, just before the batch's next statement (any: a read
        sees it) or its commit; a row whose version is not the one expected then (nothing should
        make that happen) rolls the batch back as contention, which the tick retries."""
        if e.id not in self._claimed or not changes.keys() <= DEFERRED_COLUMNS:
            return super().update_enrollment(e, **changes)  # what is held back goes first (_Connection.pending)
        if "next_step" in changes:
            changes.setdefault("waiting_since", None)
            changes.setdefault("held", None)
        held = self._pending.get(e.id)
        if held is None:
            self._pending[e.id] = (e.version, e.version + 1, changes)
        elif held[1] == e.version:
            self._pending[e.id] = (held[0], e.version + 1, {**held[2], **changes})
        else:
            raise Conflict(f"enrollment {e.id} changed meanwhile")
        self.db.pending = self._flush_updates
        return e.changed(changes, e.version + 1)

    def _flush_updates(self) -> None:
        """The compare-and-sets :meth:`update_enrollment` held back, each row matched on its id and
        expected version. Rows that change the same columns to the same values from the same
        version (nearly all of a batch: the same step done, the same next step at the same
        time) are one ``UPDATE ... WHERE id = ANY(ids)`` per such group; a set of columns
        with more than :data:`FEW_GROUPS` groups is one UPDATE joined with an array per column
        (its rows' own values). The grouped form costs the server 15 % less a row and the
        client no array per column."""
        pending, self._pending = self._pending, {}
        self.db.pending = None
        shapes: dict[tuple[str, ...], list[tuple[int, tuple[int, int, dict[str, Any]]]]] = {}
        for eid, held in pending.items():
            shapes.setdefault(tuple(sorted(held[2])), []).append((eid, held))
        for columns, rows in shapes.items():
            groups: dict[tuple, list[int]] = {}
            for eid, (expected, version, changes) in rows:
                groups.setdefault((expected, version, *(stored(changes[c]) for c in columns)), []).append(eid)
            with self._planner("enable_seqscan"):  # the rows by their key, not a join with every row
                if len(groups) <= FEW_GROUPS:
                    updated = sum(self._update_group(columns, key, ids) for key, ids in groups.items())
                else:
                    updated = self._update_each(columns, rows)
            if updated != len(rows):
                raise StoreContention(f"the PostgreSQL store changed {len(rows) - updated} enrollment(s) this "
                                      "batch had claimed")

    def _update_group(self, columns: tuple[str, ...], key: tuple, ids: list[int]) -> int:
        expected, version, *values = key
        return self.db.execute_psycopg(
            f"UPDATE enrollments SET {', '.join(f'{c} = %s' for c in columns)}, version = %s "
            "WHERE id = ANY(%b::bigint[]) AND version = %s", [*values, version, ids, expected]).rowcount

    def _update_each(self, columns: tuple[str, ...], rows: list[tuple[int, tuple[int, int, dict[str, Any]]]]) -> int:
        ids = [eid for eid, _ in rows]
        return self.db.execute_psycopg(
            f"UPDATE enrollments SET {', '.join(f'{c} = v.{c}' for c in columns)}, version = v.version "
            f"FROM unnest(%b::bigint[], %b::integer[], %b::integer[]{', %b::text[]' * len(columns)}) "
            f"AS v(id, expected, version, {', '.join(columns)}) WHERE enrollments.id = ANY(%b::bigint[]) "
            "AND enrollments.id = v.id AND enrollments.version = v.expected",
            [ids, [held[0] for _, held in rows], [held[1] for _, held in rows],
             *[[stored(held[2][c]) for _, held in rows] for c in columns], ids]).rowcount

    def claim_messages(self, at: datetime, channels: Sequence[str], limit: int) -> list[Queued]:
        """Ledger's claim, with the rows to update found by their key in the index of waiting
        messages (Ledger's ``rowid IN (...)`` is a scan of the whole outbox here, each batch)."""
        if not channels:
            return []
        rows = self.db.execute(
            "UPDATE outbox SET claimed_by = ?, claimed_at = ? WHERE status = 'queued' AND rowid = ANY(ARRAY("
            "SELECT rowid FROM outbox WHERE status = 'queued' AND claimed_by IS NULL AND channel = ANY(?) "
            "AND (next_attempt IS NULL OR next_attempt <= ?) ORDER BY rowid LIMIT ? FOR UPDATE SKIP LOCKED)) "
            "RETURNING rowid, id, channel, payload, html, attempts",
            (self.claimer(), iso(SystemClock().now()), list(channels), iso(at), limit)).fetchall()
        return queued(row[1:] for row in sorted(rows))

    LOCKS_MESSAGES = True

    def lock_messages(self, at: datetime, channels: Sequence[str], limit: int) -> list[Queued]:
        """The messages :meth:`claim_messages` would claim, claimed instead by locking their rows
        for the transaction (:meth:`delivering`) that hands them to an idempotent transport and
        records their outcomes (engine.delivery): rows another worker holds are passed over."""
        with self._planner("enable_sort"):
            rows = self.db.execute(
                "SELECT id, channel, payload, html, attempts FROM outbox WHERE status = 'queued' "
                "AND claimed_by IS NULL AND channel = ANY(?) AND (next_attempt IS NULL OR next_attempt <= ?) "
                "ORDER BY rowid LIMIT ? FOR UPDATE SKIP LOCKED", (list(channels), iso(at), limit)).fetchall()
        return queued(rows)

    def record_outcomes(self, outcomes: Sequence[tuple[str, str, str | None, datetime]], at: datetime) -> None:
        """Ledger's, the messages sent (nearly all) in one statement, their ids as one array."""
        sent = [mid for mid, status, _, _ in outcomes if status == "sent"]
        if sent:
            self.db.execute_psycopg("UPDATE outbox SET status = 'sent', delivered_at = %s, attempts = attempts + 1, "
                                    "next_attempt = NULL, last_error = NULL, claimed_by = NULL, claimed_at = NULL "
                                    "WHERE id = ANY(%b::text[]) AND status = 'queued'", (iso(at), sent))
        super().record_outcomes([o for o in outcomes if o[1] != "sent"], at)

    def consents_latest(self, asks: Iterable[tuple[str, str, datetime]]
                        ) -> dict[tuple[str, str, datetime], bool | None]:
        """Ledger's question in one statement, the asks as arrays (not 250 rows of VALUES a
        statement: psycopg parses long statements again each time)."""
        asked = list(dict.fromkeys(asks))
        found: dict[tuple[str, str, datetime], bool | None] = dict.fromkeys(asked)
        if asked:
            rows = self.db.execute_psycopg(
                "SELECT a.n, (SELECT c.granted FROM consent c WHERE c.partner = a.partner AND c.channel = a.channel "
                "AND c.at <= a.upto ORDER BY c.at DESC, c.seq DESC LIMIT 1) "
                "FROM unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS a (partner, channel, upto, n)",
                [[a[0] for a in asked], [a[1] for a in asked], [stamp(a[2]) for a in asked]])
            for n, granted in rows:
                found[asked[n - 1]] = None if granted is None else bool(granted)
        return found

    def undeliverable_among(self, asks: Iterable[tuple[str, datetime]]) -> set[tuple[str, datetime]]:
        """Ledger's question in one statement (as :meth:`consents_latest`)."""
        asked = list(dict.fromkeys(asks))
        if not asked:
            return set()
        rows = self.db.execute_psycopg(
            "SELECT a.n FROM unnest(%b::text[], %b::text[]) WITH ORDINALITY AS a (address, upto, n) "
            "WHERE (SELECT true FROM undeliverable u WHERE u.address = a.address AND u.at <= a.upto LIMIT 1)",
            [[a[0].strip().lower() for a in asked], [stamp(a[1]) for a in asked]])
        return {asked[n - 1] for (n,) in rows}

    def lock_partners(self, partners: Sequence[str]) -> None:
        """Frequency caps: one advisory lock per partner (keys from the schema and the partner id;
        the one-number key space, apart from the store's two-number lock), taken in key order,
        so two workers' batches never both count a partner's sends before either writes."""
        if partners:
            self.db.execute("SELECT count(pg_advisory_xact_lock(k)) FROM (SELECT DISTINCT "
                            "hashtextextended(current_schema() || '/' || p, 0) AS k FROM unnest(?::text[]) AS p "
                            "ORDER BY k) AS keys", (sorted(set(partners)),))

    def claimer(self) -> str:
        """``pg:PID:START`` of this connection's backend (the server ends it when we die)."""
        if self._claimer is None:
            with self.db.outside():
                pid, started = self.db.execute(
                    "SELECT pid, extract(epoch FROM backend_start)::text FROM pg_stat_activity "
                    "WHERE pid = pg_backend_pid()").fetchone()
            self._claimer = f"pg:{pid}:{started}"
        return self._claimer

    def claimer_alive(self, claimer: str) -> bool:
        kind, _, rest = claimer.partition(":")
        pid, _, started = rest.partition(":")
        if kind != "pg" or not pid.isdigit():
            return False
        with self.db.outside():
            return self.db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = ? AND "
                                   "extract(epoch FROM backend_start)::text = ?", (int(pid), started)).fetchone() is not None

    # --- differences of form -----------------------------------------------------------------

    def native(self, sql: str) -> str:
        """A condition from :mod:`dsl.sql`'s PostgreSQL dialect is written for psycopg (``%s``
        placeholders, ``%%``): back to the ``?`` form the adapter translates with the rest of
        the statement."""
        return _qmark(sql)

    def _register_functions(self, condition: str) -> None:
        """None: the PostgreSQL dialect calls none of Python's."""

    def start_partner_import(self) -> int:
        """SQLiteStore's staging tables, with ``partners_import.data`` as jsonb like
        ``partners.data`` (PostgreSQL turns text into jsonb only when told, and the import copies
        it with INSERT ... SELECT)."""
        since = super().start_partner_import()
        self.db.execute("ALTER TABLE partners_import ALTER COLUMN data TYPE jsonb USING data::jsonb")
        return since

    def touch_api_key(self, key_id: str, at: datetime) -> bool:
        """SQLiteStore's last use of a key, as one statement committed on its own: outside a
        transaction it takes no advisory lock, only the key's row, so a request never waits
        for a tick (nor a tick for it)."""
        return self._touch_api_key(key_id, at)


def stored_locks(url: str) -> Mapping[str, tuple[str, str]]:
    """campaign → (locked at, snapshot) of the store at ``url``, read without creating anything;
    {} when there is no store (or no server) to read."""
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT) as conn:
            if conn.execute("SELECT to_regclass(quote_ident(current_schema()) || '.locks')").fetchone()[0] is None:
                return {}
            return {c: (at, content) for c, at, content in
                    conn.execute("SELECT campaign, locked_at, content FROM locks").fetchall()}
    except psycopg.Error:
        return {}


def redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(unreadable URL)"
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def failure(exc: psycopg.OperationalError) -> StoreError:
    """The store's error for a failed statement: a deadlock or a serialization failure (another
    worker in the way) is :class:`StoreContention`, which a tick retries; anything else, one line."""
    if isinstance(exc, psycopg.errors.TransactionRollback):
        return StoreContention(f"the PostgreSQL store rolled a transaction back: {first_line(exc)}")
    return StoreError(f"the PostgreSQL store failed: {first_line(exc)}")



def first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


# --- the adapter -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Query:
    sql: str
    strict: bool  # an INSERT that SQLite would refuse with IntegrityError when its row exists
    returning: bool  # fetch the new row's key (lastrowid)
    lists: tuple[tuple[int, int], ...] = ()  # (first, count) of the parameters of each long IN list
    plain: str = ""  # the statement with its IN lists as they were

    def bind(self, params: Sequence[Any]) -> tuple[str, Sequence[Any]]:
        """The statement and its parameters; those of a long ``IN (?, ?, ...)`` list as one array
        (:func:`_translate`) when they are all text or all integers, else the plain statement."""
        if not self.lists:
            return self.sql, tuple(params)
        params, grouped, at = list(params), [], 0
        for first, count in self.lists:
            values = params[first:first + count]
            kinds = {type(value) for value in values}
            if len(kinds) != 1 or not kinds <= {str, int}:  # mixed, None, bool, float...: as they are
                return self.plain, tuple(params)
            grouped += params[at:first]
            grouped.append(values)
            at = first + count
        return self.sql, grouped + params[at:]


class _Cursor:
    """The parts of a ``sqlite3.Cursor`` the store uses."""

    __slots__ = ("_cursor", "rowcount", "lastrowid")

    def __init__(self, cursor: psycopg.Cursor, lastrowid: int | None = None, rowcount: int | None = None):
        self._cursor, self.lastrowid = cursor, lastrowid
        self.rowcount = cursor.rowcount if rowcount is None else rowcount

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._cursor.fetchall())  # (psycopg's own iteration is a Python call a row)


class _Connection:
    """``execute`` / ``executemany`` of SQLiteStore's SQL on a psycopg connection (the table in
    the module's docstring). :meth:`locking` appends a row-locking clause to the SELECTs run
    meanwhile: how :meth:`PostgresStore.due` and :meth:`PostgresStore.queued` claim rows with
    SQLiteStore's own queries."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.before_next: Callable[[], None] | None = None  # the store's BEGIN, due before the next statement
        self.pending: Callable[[], None] | None = None  # the store's held-back writes, due before it too
        self._lock_rows = ""
        self._outside = False
        self._types: dict[str, dict[str, str]] = {}  # table → column → its type (bulk inserts)

    @contextmanager
    def locking(self, clause: str) -> Iterator[None]:
        self._lock_rows = clause
        try:
            yield
        finally:
            self._lock_rows = ""

    @contextmanager
    def outside(self) -> Iterator[None]:
        """Statements meanwhile run on their own, before the pending transaction begins."""
        self._outside = True
        try:
            yield
        finally:
            self._outside = False

    def _ready(self) -> None:
        """Before a statement in the store's transaction: its BEGIN, then its held-back writes."""
        if not self._outside:
            if self.before_next is not None:
                self.before_next()
            if self.pending is not None:
                self.pending()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        self._ready()
        query = _translate(sql, self._lock_rows)
        cursor = self.conn.cursor()
        try:
            cursor.execute(*query.bind(params))
        except psycopg.OperationalError as exc:
            raise failure(exc) from None
        if query.returning:
            row = cursor.fetchone()
            if row is None and query.strict:
                raise IntegrityError("UNIQUE constraint failed: the row exists")
            return _Cursor(cursor, row[0] if row else None)
        if query.strict and cursor.rowcount == 0:
            raise IntegrityError("UNIQUE constraint failed: the row exists")
        return _Cursor(cursor)

    def executemany(self, sql: str, seq_of_params: Iterable[Sequence[Any]]) -> _Cursor:
        rows = [tuple(params) for params in seq_of_params]
        if not rows:
            return _Cursor(self.conn.cursor(), rowcount=0)
        self._ready()
        bulk = _bulk_insert(sql)
        if bulk is not None and len(rows) > 1:
            return self._insert_rows(*bulk, rows)
        query = _translate(sql, "", many=True)
        cursor = self.conn.cursor()
        try:
            cursor.executemany(query.plain or query.sql, rows)  # (IN lists as they are)
        except psycopg.OperationalError as exc:
            raise failure(exc) from None
        if query.strict and cursor.rowcount < len(rows):
            raise IntegrityError("UNIQUE constraint failed: a row exists")
        return _Cursor(cursor)

    def _insert_rows(self, table: str, columns: tuple[str, ...], strict: bool, rows: list[tuple]) -> _Cursor:
        """``executemany`` of a plain INSERT (:func:`_bulk_insert`) as one statement.

        A plain INSERT (step runs, messages, sends) is a binary ``COPY``: psycopg writes its rows in C,
        where it dumps an array element by element in Python (2.4× the time for 500 messages).
        It runs in a savepoint: a row whose key is taken refuses them all with IntegrityError,
        as SQLite's executemany would have at that row (either way the batch does not commit),
        and the transaction stays usable. An ``INSERT OR IGNORE``, which COPY cannot say, is one ``INSERT ... SELECT * FROM unnest(...)`` of an array per column, skipping
        the rows whose key is taken."""
        types = self._types.get(table)
        if types is None:
            cursor = self.conn.cursor()
            cursor.execute("SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                           "WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped", (table,))
            types = self._types[table] = dict(cursor.fetchall())
        if strict:
            return self._copy_rows(table, columns, [types[c] for c in columns], rows)
        arrays = ", ".join(f"%b::{types[c]}[]" for c in columns)  # binary: no quoting, 20× quicker
        return self.execute_psycopg(f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) "
                                    "ON CONFLICT DO NOTHING", [list(column) for column in zip(*rows)])

    def _copy_rows(self, table: str, columns: tuple[str, ...], types: list[str], rows: list[tuple]) -> _Cursor:
        cursor = self.conn.cursor()
        try:
            cursor.execute("SAVEPOINT bulk_insert")
            try:
                with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
                    copy.set_types(types)
                    for row in rows:
                        copy.write_row(row)
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT bulk_insert")
                raise IntegrityError("UNIQUE constraint failed: a row exists") from None
            cursor.execute("RELEASE SAVEPOINT bulk_insert")
        except psycopg.OperationalError as exc:
            raise failure(exc) from None
        return _Cursor(cursor, rowcount=len(rows))

    def execute_psycopg(self, sql: str, params: Sequence[Any]) -> _Cursor:
        """A statement in psycopg's own form (``%s``, ``%b``), untranslated."""
        self._ready()
        cursor = self.conn.cursor()
        try:
            cursor.execute(sql, params)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise failure(exc) from None
        return _Cursor(cursor)

    def script(self, sql: str) -> None:
        """Several statements, no parameters (the schema; BEGIN with the advisory lock)."""
        try:
            self.conn.execute(sql)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise failure(exc) from None


def _qmark(sql: str) -> str:
    """psycopg's placeholders back to SQLite's: ``%s`` → ``?``, ``%%`` → ``%`` (the SQL has no
    ``?`` of its own: dsl.sql writes none)."""
    if "?" in sql:
        raise ValueError("a condition for psycopg holds a '?': it cannot be told from a placeholder")
    return re.sub(r"%([%s])", lambda m: "%" if m.group(1) == "%" else "?", sql)


_QUOTED = re.compile(r"""('(?:[^']|'')*'|"(?:[^"]|"")*")""")
_IN_LIST = re.compile(r"\s+(NOT\s+)?IN\s*\((\s*\?(?:\s*,\s*\?)+\s*)\)", re.IGNORECASE)
# From this many parameters on, an IN list is one array (psycopg parses a long statement again at
# each execution: a batch's lists of 500 ids cost more to send than to run).
LONG_IN_LIST = 16
_PLAIN_INSERT = re.compile(r"\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+(\w+)\s*\(([\w\s,]+)\)\s*VALUES\s*"
                           r"\(\s*\?(?:\s*,\s*\?)*\s*\)\s*(ON\s+CONFLICT\s+DO\s+NOTHING)?\s*;?\s*", re.IGNORECASE)


@lru_cache(maxsize=256)
def _bulk_insert(sql: str) -> tuple[str, tuple[str, ...], bool] | None:
    """(table, columns, strict) of an INSERT of one ``?`` per column into a table of
    :data:`BULK_TABLES`, with no other clause than ``ON CONFLICT DO NOTHING``; else None."""
    match = _PLAIN_INSERT.fullmatch(sql)
    if match is None or match.group(2).lower() not in BULK_TABLES:
        return None
    columns = tuple(c.strip() for c in match.group(3).split(","))
    if sql.count("?") != len(columns):
        return None
    return match.group(2).lower(), columns, not (match.group(1) or match.group(4))
_INSERT = re.compile(r"\s*INSERT\s+(OR\s+IGNORE\s+)?INTO\s+(\w+)", re.IGNORECASE)


@lru_cache(maxsize=4096)
def _translate(sql: str, lock_rows: str, many: bool = False) -> _Query:
    """SQLite's statement in PostgreSQL's words (the module's docstring)."""
    text = re.sub(r"\s+INDEXED\s+BY\s+\w+", "", sql, flags=re.IGNORECASE)
    text = re.sub(r"json_extract\(\s*([\w.]+)\s*,\s*'\$\.(\w+)'\s*\)", r"(\1::jsonb ->> '\2')", text)
    insert = _INSERT.match(text)
    table = insert.group(2) if insert is not None else None

    def least(match: re.Match) -> str:  # in an upsert, a bare column is the stored row's (PostgreSQL asks)
        args = [a.strip() for a in match.groups()]
        return "least(" + ", ".join(f"{table}.{a}" if table and re.fullmatch(r"\w+", a) else a for a in args) + ")"

    text = re.sub(r"\bmin\(([^(),]+),([^(),]+)\)", least, text, flags=re.IGNORECASE)
    strict = returning = False
    suffix = ""
    if insert is not None:
        has_conflict = re.search(r"\bON\s+CONFLICT\b", text, re.IGNORECASE) is not None
        if insert.group(1):  # OR IGNORE
            text = text[:insert.start(1)] + text[insert.end(1):]
            suffix += " ON CONFLICT DO NOTHING"
        elif not has_conflict and re.search(r"\bVALUES\b", text, re.IGNORECASE):
            suffix += " ON CONFLICT DO NOTHING"
            strict = True
        key = ROW_KEYS.get(insert.group(2).lower())
        if key is not None and not many:
            suffix += f" RETURNING {key}"
            returning = True
    elif lock_rows and re.match(r"\s*SELECT\b", text, re.IGNORECASE):
        suffix += lock_rows
    parts = _QUOTED.split(text.rstrip().rstrip(";"))
    plain, lists = list(parts), []
    index = 0  # of the next ``?``

    def words(part: str) -> str:  # PostgreSQL's placeholders, and its reserved word quoted
        return re.sub(r"\buser\b", '"user"', part.replace("?", "%s"))

    for i, part in enumerate(parts):
        part = part.replace("%", "%%")
        plain[i] = part
        if i % 2 == 0:  # outside quotes
            plain[i] = words(part)
            pieces, at, counted = [], 0, 0
            for match in _IN_LIST.finditer(part):  # x IN (?, ?, ...): x = ANY(one array), one statement text
                index += part.count("?", counted, match.start())
                count = match.group(2).count("?")
                if count >= LONG_IN_LIST:
                    lists.append((index, count))
                    pieces += [part[at:match.start()], " <> ALL(%b)" if match.group(1) else " = ANY(%b)"]
                    at = match.end()
                index += count
                counted = match.end()
            index += part.count("?", counted)  # (every ``?`` of the part counts, after its last list too)
            part = words("".join(pieces) + part[at:])
        parts[i] = part
    if not lists:
        return _Query("".join(plain) + suffix, strict, returning)
    return _Query("".join(parts) + suffix, strict, returning, tuple(lists), "".join(plain) + suffix)


__all__ = ["IntegrityError", "PostgresStore", "redacted", "stored_locks"]
