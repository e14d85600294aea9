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
``INDEXED BY index`` (a planner hint)           dropped
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
  do costs one query, not a transaction.
- **Delivery.** Messages are claimed as on SQLite (:meth:`claim_messages`: one statement, which
  passes over the rows another worker's claim is locking at that instant); the claimer is this
  *connection* (its backend's pid and start time), alive as long as ``pg_stat_activity`` lists
  it: a worker killed while delivering loses its connection, and its claims are taken back.
  :meth:`delivering` (recording outcomes) is a transaction without the advisory lock.
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

from ..errors import StoreContention, StoreError
from .records import Enrollment
from .sqlite import SQLiteStore

SCHEMA = (Path(__file__).parent / "schema_postgresql.sql").read_text(encoding="utf-8")
SCHEMA_KEY = "schema.postgresql"  # meta: the hash of the schema script that last ran
LOCK_CLASS = 0x656E67  # the first key of the engine's advisory locks ("eng"); the second: the schema
CONNECT_TIMEOUT = 10  # seconds

EXCLUSIVE, STEPS, DELIVERY = "exclusive", "steps", "delivery"
SKIP_LOCKED, WAIT = " FOR UPDATE SKIP LOCKED", " FOR UPDATE"
# Tables whose rows an INTEGER PRIMARY KEY numbers in SQLite: what ``lastrowid`` is, here.
ROW_KEYS = {"enrollments": "id", "responses": "seq", "alerts": "seq", "log": "seq", "consent": "seq"}


class IntegrityError(sqlite3.IntegrityError):
    """An insert found its row taken (a unique index): what SQLite raises, so that the domain
    methods that expect it read the same on both stores."""


class PostgresStore(SQLiteStore):
    dialect = "postgresql"

    def __init__(self, url: str):
        self.url, self.path = url, None
        self._depth, self._mode, self._begun = 0, None, False
        self._claimer: str | None = None
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
            self.db.before_next = None

    def _begin(self) -> None:
        self._begun, self.db.before_next = True, None
        lock = {EXCLUSIVE: "pg_advisory_xact_lock", STEPS: "pg_advisory_xact_lock_shared"}.get(self._mode or "")
        # the lock's keys are the two integers of self._lock (no text of anyone's): one round trip
        self.db.script(f"BEGIN; SELECT {lock}({int(self._lock[0])}, {int(self._lock[1])})" if lock else "BEGIN")

    def due(self, until: datetime, campaigns: Sequence[str], limit: int) -> list[Enrollment]:
        """SQLiteStore's due steps; inside a batch, claimed (see the module's docstring)."""
        if self._mode != STEPS:
            return super().due(until, campaigns, limit)
        if not self._begun:
            with self.db.outside():  # nothing due at all (the usual case): no transaction
                if not super().due(until, campaigns, 1):
                    return []
        while True:
            with self.db.locking(SKIP_LOCKED):
                found = super().due(until, campaigns, limit)
            if found:
                return found
            with self.db.locking(WAIT):  # all held by other workers: wait for the earliest
                if not super().due(until, campaigns, 1):
                    return []

    SKIP_LOCKED_ROWS = SKIP_LOCKED

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


class _Cursor:
    """The parts of a ``sqlite3.Cursor`` the store uses."""

    __slots__ = ("_cursor", "rowcount", "lastrowid")

    def __init__(self, cursor: psycopg.Cursor, lastrowid: int | None = None):
        self._cursor, self.rowcount, self.lastrowid = cursor, cursor.rowcount, lastrowid

    def fetchone(self) -> tuple | None:
        return self._cursor.fetchone()

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall()

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._cursor)


class _Connection:
    """``execute`` / ``executemany`` of SQLiteStore's SQL on a psycopg connection (the table in
    the module's docstring). :meth:`locking` appends a row-locking clause to the SELECTs run
    meanwhile: how :meth:`PostgresStore.due` and :meth:`PostgresStore.queued` claim rows with
    SQLiteStore's own queries."""

    def __init__(self, conn: psycopg.Connection):
        self.conn = conn
        self.before_next: Callable[[], None] | None = None  # the store's BEGIN, due before the next statement
        self._lock_rows = ""
        self._outside = False

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

    def execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        if self.before_next is not None and not self._outside:
            self.before_next()
        query = _translate(sql, self._lock_rows)
        cursor = self.conn.cursor()
        try:
            cursor.execute(query.sql, tuple(params))
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
        if self.before_next is not None and not self._outside:
            self.before_next()
        query = _translate(sql, "", many=True)
        rows = [tuple(params) for params in seq_of_params]
        cursor = self.conn.cursor()
        try:
            cursor.executemany(query.sql, rows)
        except psycopg.OperationalError as exc:
            raise failure(exc) from None
        if query.strict and cursor.rowcount < len(rows):
            raise IntegrityError("UNIQUE constraint failed: a row exists")
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
    for i, part in enumerate(parts):
        part = part.replace("%", "%%")
        if i % 2 == 0:  # outside quotes
            part = re.sub(r"\buser\b", '"user"', part.replace("?", "%s"))
        parts[i] = part
    return _Query("".join(parts) + suffix, strict, returning)


__all__ = ["IntegrityError", "PostgresStore", "redacted", "stored_locks"]
