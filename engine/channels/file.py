"""File transport: exactly-once records in append-only files (SPEC §8, §10).

Messages go to `.engine/outbox/<channel>.jsonl` (one JSON object a line) and letters to
`.engine/letters/<campaign>/<step>.csv` (a header, then one row per partner). The engine commits
each message to its store's outbox, then delivers it here, then marks it delivered. A process can
be killed (SIGKILL) at any instant and run again, and two processes can deliver at once, so a
delivery must be idempotent by record id and must repair a half-written last line.

Contract
--------
* A record whose id was ever written to the file is never written again, whoever redelivers it
  and however often: redelivering after a crash is always safe. Ids are compared as `str(id)`.
* When a call returns, each id of the batch is in the file exactly once, durably (fsync). When it
  raises or the process dies, part of the batch may be in the file already: deliver it again
  (in any batches); those parts are then skipped, not repeated.
* Mark every record of the batch delivered once the call returns, not only the returned ids: the
  others were already in the file.
* Only this module writes the file. Readers may read it at any time; a last line without its
  newline is a write in progress (or a torn one, repaired by the next call): ignore it.

How
---
Beside `<file>` sit `<file>.lock` (an `fcntl.flock` that serialises writers across processes)
and `<file>.idx`, a small SQLite index holding every id written and the file's length and inode
as of the last complete call. A call, under the lock and in one index transaction: scans only the
bytes after the indexed length (normally none; after a crash, the lines of the interrupted call),
truncates a trailing partial line or CSV record, adds the ids found there; skips records whose id
is known or repeated in the batch; appends the rest in one write; fsyncs; records ids and length;
commits. If the process dies anywhere before the commit, the next call finds those lines in the
tail and indexes them, so nothing is written twice and, once the caller redelivers, nothing is
lost. The cost of a call is its batch plus that tail (one B-tree lookup per record), never the
file's size.

Why an id index and not only a "committed length" sidecar: a length alone cannot tell which ids
before it are safe to forget. A kill after the call returned but before the caller marked the
records delivered means the same records come back, maybe in other batches, after the length had
moved past them; checking ids only in the tail would then write them twice.

The index is only a cache of the file's ids: if the file is deleted, replaced or rotated behind
its back (inode differs, or it is shorter than the indexed length, or that length does not end a
line), the next call rebuilds it from the whole file. Deleting `<file>.idx` is safe likewise.
Exactly-once holds per file: a record written into a file that was then moved away can be
written again into the new file (the engine does not redeliver records it marked delivered).

Only a torn last line is ever cut. A complete line that is not a record of this format (the file
was edited, or is not ours) raises ValueError and nothing changes. `<file>.lock` also serialises
threads (each call opens its own descriptor); the index transaction (BEGIN IMMEDIATE) is a second
guard. Keep `.idx` (and its `-wal`, `-shm`) beside the file; they are small next to it.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

from . import SENT, Outcome, Outgoing

_CONNECTIONS: dict[tuple[str, int, int, int], sqlite3.Connection] = {}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    length INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    header TEXT
);
"""

# scan(tail, start) -> (ids of the complete records in tail, byte length of those records);
# start is the tail's offset in the file (0: the tail is the whole file).
Scan = Callable[[bytes, bool], "tuple[list[str], int]"]


def append_once(path: Path, records: Sequence[Mapping[str, Any]], key: str = "id") -> list[str]:
    """Append each record as one JSON line unless its id is already in the file.

    Returns the ids actually written, in order. See the module docstring for the contract.
    """
    batch = _unique(records, key)
    encoded = [(rid, _json_line(rec)) for rid, rec in batch]  # encode all before touching the file
    return _append_lines(Path(path), encoded, key)


def append_encoded_once(path: Path, lines: Sequence[tuple[str, str]], key: str = "id") -> list[str]:
    """:func:`append_once` of records already encoded, each as one line of JSON (no newline in
    it, as JSON encoders write it): (id, text) pairs, the id being the record's ``key``."""
    seen: set[str] = set()
    encoded = []
    for rid, text in lines:
        if rid not in seen:
            seen.add(rid)
            encoded.append((rid, (text + "\n").encode("utf-8")))
    return _append_lines(Path(path), encoded, key)


def _append_lines(path: Path, encoded: list[tuple[str, bytes]], key: str) -> list[str]:
    return _append(path, encoded, lambda tail, start: _scan_jsonl(path, tail, start, key), header=None)


def append_rows_once(
    path: Path, columns: Sequence[str], rows: Sequence[Mapping[str, Any]], key: str = "id"
) -> list[str]:
    """Append each row to a CSV file with a header unless its id is already in the file.

    The header is written once, when the file is empty; `key` must be one of `columns`. Values
    are taken for `columns` only (missing or None -> empty). Returns the ids actually written.
    """
    path = Path(path)
    columns = [str(c) for c in columns]
    if key not in columns:
        raise ValueError(f"key column {key!r} is not one of the columns {columns}")
    batch = _unique(rows, key)
    lines = _csv_records([[row.get(c) for c in columns] for _, row in batch])
    encoded = [(rid, line) for (rid, _), line in zip(batch, lines)]
    header = _csv_records([columns])[0]
    scan = lambda tail, start: _scan_csv(path, tail, start, columns, key)  # noqa: E731
    return _append(path, encoded, scan, header=header, columns=columns)


def read_lines(path: Path) -> list[dict]:
    """The complete JSON lines of an outbox file, in order (a partial last line is skipped)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")[:-1]
    return [_parse_json_line(path, line, f"line {n}") for n, line in enumerate(lines, 1)]


def read_rows(path: Path) -> list[dict[str, str]]:
    """The complete rows of a CSV file written by append_rows_once, as dicts keyed by header."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    records = [row for row, _ in _split_csv(path, data)]
    if not records:
        return []
    return [dict(zip(records[0], row)) for row in records[1:]]


# --- the append protocol ---------------------------------------------------------------------


def _append(
    path: Path,
    encoded: list[tuple[str, bytes]],
    scan: Scan,
    header: bytes | None,
    columns: list[str] | None = None,
) -> list[str]:
    """Dedup against the index, append, fsync, then commit ids and length: see module docstring."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path), _data_file(path) as fd:
        db = _index(path)
        db.execute("BEGIN IMMEDIATE")
        try:
            end, ino = _catch_up(path, db, fd, scan, columns)
            claimed = _claim(db, [rid for rid, _ in encoded])
            new = [(rid, data) for rid, data in encoded if rid in claimed]
            chunk = b"".join(data for _, data in new)
            if end == 0 and header is not None:
                chunk = header + chunk
            if chunk:
                _write_at(fd, chunk, end)
                os.fsync(fd)
                end += len(chunk)
            _save_state(db, end, ino, columns)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
    return [rid for rid, _ in new]


def _catch_up(
    path: Path, db: sqlite3.Connection, fd: int, scan: Scan, columns: list[str] | None
) -> tuple[int, int]:
    """Index the lines after the last committed length (an interrupted call's) and repair a torn
    last record; returns the file's complete length and inode. Reads only that tail."""
    st = os.fstat(fd)
    row = db.execute("SELECT length, ino, header FROM state").fetchone()
    start = 0
    if row is not None and row[1] == st.st_ino and row[0] <= st.st_size and _at_boundary(fd, row[0]):
        start = row[0]
        if columns is not None and start > 0 and row[2] is not None and json.loads(row[2]) != columns:
            raise ValueError(f"{path}: header is {json.loads(row[2])}, not {columns}")
    elif row is not None:
        db.execute("DELETE FROM ids")  # the index describes another file: rebuild it from this one
    if st.st_size == start:
        return start, st.st_ino
    tail = os.pread(fd, st.st_size - start, start)
    ids, good = scan(tail, start)
    if start + good < st.st_size:
        os.ftruncate(fd, start + good)  # a torn write: nobody was told it succeeded
    db.executemany("INSERT OR IGNORE INTO ids (id) VALUES (?)", ((i,) for i in ids))
    return start + good, st.st_ino


def _at_boundary(fd: int, length: int) -> bool:
    """A committed length always ends a line; if it does not, the file is not the indexed one."""
    return length == 0 or os.pread(fd, 1, length - 1) == b"\n"


def _claim(db: sqlite3.Connection, ids: list[str]) -> set[str]:
    """The ids (distinct) not in the index yet, now added to it: one lookup per 500 ids, one
    insert for the new ones (the caller holds the lock and the index transaction)."""
    known: set[str] = set()
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        known.update(rid for (rid,) in db.execute(f"SELECT id FROM ids WHERE id IN ({marks})", chunk))
    new = [rid for rid in ids if rid not in known]
    db.executemany("INSERT INTO ids (id) VALUES (?)", [(rid,) for rid in new])
    return set(new)


def _save_state(db: sqlite3.Connection, length: int, ino: int, columns: list[str] | None) -> None:
    header = json.dumps(columns) if columns is not None else None
    db.execute(
        "INSERT INTO state (one, length, ino, header) VALUES (1, ?, ?, ?) ON CONFLICT (one) DO UPDATE"
        " SET length = excluded.length, ino = excluded.ino, header = excluded.header",
        (length, ino, header),
    )


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """Write all of data at offset; on error cut the file back so no half batch stays behind."""
    try:
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view, offset = view[n:], offset + n
    except BaseException:
        try:
            os.ftruncate(fd, offset - (len(data) - len(view)))
        except OSError:
            pass  # the next call repairs the tail anyway
        raise


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive flock on `<file>.lock`, held for the whole call (released if the process dies)."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _index(path: Path) -> sqlite3.Connection:
    """The id index, one connection per process and file, kept open: closing a WAL database
    checkpoints it, which would cost more than the rest of a call. Reopened if `.idx` was
    replaced (or the process forked). WAL + synchronous=NORMAL: a commit lost to a power cut
    only makes the next call rescan a longer tail, because the file is fsynced before it."""
    name = f"{path}.idx"
    try:
        st = os.stat(name)
        ident = (os.path.abspath(name), os.getpid(), st.st_dev, st.st_ino)
    except FileNotFoundError:
        ident = None
    db = _CONNECTIONS.get(ident) if ident else None
    if db is None:
        db = sqlite3.connect(name, isolation_level=None, check_same_thread=False)  # used under the lock
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        st = os.stat(name)
        _CONNECTIONS[(os.path.abspath(name), os.getpid(), st.st_dev, st.st_ino)] = db
    return db


@contextmanager
def _data_file(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)


def _unique(records: Sequence[Mapping[str, Any]], key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(id, record) for each record, the first of each id only; bad ids raise before any write."""
    seen: set[str] = set()
    out = []
    for n, rec in enumerate(records):
        value = rec.get(key) if isinstance(rec, Mapping) else None
        if value is None or str(value) == "":
            raise ValueError(f"record {n} has no {key!r}")
        rid = str(value)
        if rid not in seen:
            seen.add(rid)
            out.append((rid, rec))
    return out


# --- JSON lines ------------------------------------------------------------------------------


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False, default=str)


def _json_line(record: Mapping[str, Any]) -> bytes:
    # JSON escapes control characters, so a line never holds a raw "\n".
    text = _ENCODER.encode(record if type(record) is dict else dict(record))
    return (text + "\n").encode("utf-8")


def _parse_json_line(path: Path, line: bytes, where: str) -> dict:
    try:
        obj = json.loads(line)
    except ValueError:
        obj = None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: {where} is not a JSON object; fix or move the file")
    return obj


def _scan_jsonl(path: Path, tail: bytes, start: int, key: str) -> tuple[list[str], int]:
    """Ids of the complete lines of tail and their byte length; the piece after the last newline
    is a torn write (JSON lines hold no raw newline)."""
    ids, good = [], 0
    for line in tail.split(b"\n")[:-1]:
        where = f"the line after byte {start + good}"
        obj = _parse_json_line(path, line, where)
        if obj.get(key) is None:
            raise ValueError(f"{path}: {where} has no {key!r}")
        ids.append(str(obj[key]))
        good += len(line) + 1
    return ids, good


# --- CSV -------------------------------------------------------------------------------------


def _csv_records(rows: list[list[Any]]) -> list[bytes]:
    """Each row as one CSV record ("\\r\\n" terminated; fields with newlines are quoted)."""
    out: list[str] = []
    writer = csv.writer(SimpleNamespace(write=out.append))  # one write() call per row
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return [text.encode("utf-8") for text in out]


def _split_csv(path: Path, data: bytes) -> Iterator[tuple[list[str], int]]:
    """Yield (fields, end offset) for each complete CSV record of data.

    Stops silently at a torn last record (no final newline, or the data ends inside a quoted
    field); a malformed record before the end raises ValueError. The reader pulls one line at a
    time and never reads ahead, so the bytes consumed when a record comes out are its end.
    """
    lines = data.split(b"\n")[:-1]
    complete = data.rfind(b"\n") + 1
    consumed = 0

    def feed() -> Iterator[str]:
        nonlocal consumed
        for line in lines:
            consumed += len(line) + 1
            yield (line + b"\n").decode("utf-8")  # a "\n" never splits a UTF-8 sequence

    reader = csv.reader(feed(), strict=True)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except (csv.Error, UnicodeDecodeError) as exc:
            if consumed == complete and isinstance(exc, csv.Error):
                return  # ran out of data inside a quoted field: a torn record
            raise ValueError(f"{path}: malformed CSV record near byte {consumed}: {exc}") from None
        yield row, consumed


def _scan_csv(path: Path, tail: bytes, start: int, columns: list[str], key: str) -> tuple[list[str], int]:
    """Ids of the complete records of tail and their byte length; the first record of a file is
    its header, which must equal columns."""
    col = columns.index(key)
    ids, good = [], 0
    for row, end in _split_csv(path, tail):
        if start == 0 and good == 0:
            if row != columns:
                raise ValueError(f"{path}: header is {row}, not {columns}")
        elif len(row) != len(columns) or row[col] == "":
            raise ValueError(f"{path}: the record after byte {start + good} does not match {columns}")
        else:
            ids.append(row[col])
        good = end
    return ids, good


class FileTransport:
    """The default transport (SPEC §8): messages as JSON lines in `<outbox>/<channel>.jsonl`,
    letters as rows of `<letters>/<campaign>/<step>.csv`. Always succeeds, or raises (a full
    disk). Writes each id once, however often it is handed over: idempotent."""

    idempotent, external = True, False

    def __init__(self, outbox: Path, letters: Path, letter_columns: Sequence[str]):
        self.outbox, self.letters, self.letter_columns = outbox, letters, tuple(letter_columns)

    def send(self, batch: Sequence[Outgoing]) -> Iterator[Outcome]:
        files: dict[tuple[str, ...], list[Outgoing]] = {}  # (channel,) or ("letter", campaign, step)
        for message in batch:
            record = message.record
            key = ("letter", record["campaign"], record["step"]) if message.channel == "letter" else (message.channel,)
            files.setdefault(key, []).append(message)
        for key, messages in files.items():
            if key[0] == "letter":
                path = self.letters / key[1] / f"{key[2]}.csv"
                path.parent.mkdir(parents=True, exist_ok=True)
                append_rows_once(path, self.letter_columns, [m.record for m in messages])
            else:
                path = self.outbox / f"{key[0]}.jsonl"
                path.parent.mkdir(parents=True, exist_ok=True)
                if all(m.encoded is not None for m in messages):
                    append_encoded_once(path, [(str(m.id), m.encoded) for m in messages])
                else:
                    append_once(path, [m.record for m in messages])
        return iter([Outcome(message.id, SENT) for message in batch])
