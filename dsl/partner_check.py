"""Checking a partner source without holding its records (``engine check``, issue 17).

:func:`check_partner_source` gives every diagnostic :func:`dsl.records.read_partners` gives for
the same file, at the same line and column with the same message, in bounded memory: the file
is read in chunks of whole lines, and nothing of a record outlives its chunk.

- CSV: each chunk's lines are matched at once against a regular expression built from the
  header and the schema (:class:`_Rows`): one cell per header column, each in a spelling the
  record reader takes without a word (an id by the partner id rule, one of an enum's values, a
  plain decimal number, ...). Date and datetime cells are parsed (a pattern cannot tell
  February 30th), column by column. A line the pattern does not take goes to the record reader
  itself (:class:`dsl.records.PartnerReader`), from that line to the end of its record: the
  reader decides everything the pattern is unsure of (quoted line breaks, blank lines, short
  rows, carriage returns, the spellings only ``coerce`` accepts) and reports what is wrong. So
  the pattern has to be strict, never complete: what it takes, the reader would take silently.
- JSONL: each line is parsed and checked by the record reader (json is the cost there).
- Duplicate ids (:class:`_Ids`): while the ids come in strictly ascending order (a source
  sorted by id, as database exports often are) none can repeat, and only the last is kept. From
  the first id out of order, the file is read again, keeping a 64-bit hash of each id (8 bytes
  an id, in arrays; sorted a quarter at a time at the end). Ids whose hashes
  repeat are looked up exactly in one more reading, and only those ids are kept, with the line
  of their first occurrence: a hash collision costs time, never a wrong diagnostic.

The text comes from UTF-8 decoded with ``errors="replace"``, so it never holds a lone surrogate.
"""

from __future__ import annotations

import csv
import math
import re
from array import array
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import partial
from itertools import chain, compress, count, islice, repeat
from operator import and_, attrgetter, eq, is_not, itemgetter, lt, methodcaller, ne
from typing import Any, Protocol

from .diagnostics import Diagnostic
from .ids import MAX_PARTNER_ID
from .records import (
    _BOOLS,
    _STRICT,
    PartnerReader,
    _check_unterminated,
    _converter,
    _csv_records,
    _typed,
    read_partners,
)
from .types import Type

CHUNK = 1 << 20
"""Characters read at a time (then to the end of the line)."""


@dataclass(frozen=True)
class PartnerCheck:
    """What checking a partner source found: every problem, and how many records are usable
    (the first of each id); not the records."""

    path: str
    diagnostics: list[Diagnostic]
    count: int
    fields: Mapping[str, Type] = field(repr=False)
    id_field: str = field(repr=False)
    tz: tzinfo = field(repr=False)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    @property
    def records(self) -> list[dict]:
        """The usable records, read from the file again each time (the check keeps none)."""
        with open(self.path, encoding="utf-8", errors="replace", newline="\n") as file:
            text = file.read()
        return read_partners(self.path, text, self.fields, self.id_field, self.tz).records


def check_partner_source(path: str, fields: Mapping[str, Type], id_field: str, tz: tzinfo,
                         chunk: int = CHUNK) -> PartnerCheck:
    """Check the partner source file at ``path`` as :func:`dsl.records.read_partners` reads it
    (the same diagnostics), in bounded memory. ``chunk``: characters read at a time (tests make
    it small, so that records straddle chunks)."""
    if not path.lower().endswith((".csv", ".jsonl")):
        reader = PartnerReader(path, fields, id_field, tz)
        list(reader.rows(()))  # the error for the file type
        return PartnerCheck(path, reader.diagnostics, 0, fields, id_field, tz)
    ids = _Ids(ascending=True)
    try:
        reader = _read(path, fields, id_field, tz, chunk, ids)
    except _OutOfOrder:
        ids = _Ids(ascending=False)
        reader = _read(path, fields, id_field, tz, chunk, ids)
    usable = ids.count
    repeated = ids.repeated()
    if repeated:  # the duplicates (and collisions) looked up exactly; this reading's diagnostics are the first's
        found = _Repeats(repeated, reader)
        _read(path, fields, id_field, tz, chunk, found)
        usable -= found.duplicates
    return PartnerCheck(path, reader.diagnostics, usable, fields, id_field, tz)


# --- reading -----------------------------------------------------------------------------------


class _Sink(Protocol):
    def rows(self, ids: list[str], chunk: str, start: int, end: int, line: int) -> None:
        """The kept rows of ``chunk[start:end]``, one a line from ``line`` on, by their ids."""

    def row(self, line: int, pid: str, text: str) -> None:
        """One kept row, read by the record reader."""


def _read(path: str, fields: Mapping[str, Type], id_field: str, tz: tzinfo, size: int, sink: _Sink) -> PartnerReader:
    reader = PartnerReader(path, fields, id_field, tz, duplicates=False)
    with open(path, encoding="utf-8", errors="replace", newline="\n") as file:  # as the import reads it
        source = _Chunks(file, size)
        if path.lower().endswith(".csv"):
            _read_csv(reader, source, sink)
        else:
            _read_jsonl(reader, source, sink)
    return reader


class _Chunks:
    """A text file read a chunk of whole lines at a time: ``chunk[pos:]`` is what is left of
    the current one, and ``line`` the number of the line at ``pos``."""

    def __init__(self, file: Any, size: int):
        self.file, self.size = file, size
        self.chunk, self.pos, self.line = "", 0, 1

    def fill(self) -> bool:
        """Whether any text is left (the next chunk is read when this one is used up)."""
        if self.pos < len(self.chunk):
            return True
        text = self.file.read(self.size)
        if text and not text.endswith("\n"):
            text += self.file.readline()
        self.chunk, self.pos = text, 0
        return bool(text)

    def lines(self) -> Iterator[str]:
        """The lines from ``pos`` on, each with its ``\\n``, one at a time."""
        while self.fill():
            chunk, pos = self.chunk, self.pos
            end = chunk.find("\n", pos) + 1 or len(chunk)
            self.pos, self.line = end, self.line + 1
            yield chunk[pos:end]

    def skip(self, end: int, lines: int) -> None:
        """Past ``chunk[pos:end]``: ``lines`` whole lines."""
        self.pos, self.line = end, self.line + lines


def _read_csv(reader: PartnerReader, source: _Chunks, sink: _Sink) -> None:
    records = _csv_records(reader.path, source.lines(), reader.diagnostics)
    if not reader._csv_header(records):
        return
    rows = _Rows(reader)
    last: tuple[int, str] | None = reader._last  # the last record, when the reader read it
    while source.fill():
        chunk = source.chunk
        end = chunk.rfind("\n", source.pos) + 1  # the whole lines (the last line of a file may have no \n)
        lines = rows.take(chunk, source.pos, end, source.line, sink) if end > source.pos else 0
        if lines:
            source.skip(end, lines)
            last = None
        while source.chunk is chunk and source.pos < len(chunk):  # line by line
            start = source.pos
            good = rows.good(chunk, start, end)
            lines = rows.take(chunk, start, good, source.line, sink) if good > start else 0
            if lines:
                source.skip(good, lines)
                last = None
                continue
            until = max(good, start + 1)  # lines taken but for a date: the reader reads them all
            while source.chunk is chunk and source.pos < until:
                last = _one_record(reader, source, sink) or last
    if last is not None:  # a quote never closed (the rows the pattern takes close theirs)
        _check_unterminated(reader.diagnostics, reader.path, last[1], last[0])


def _one_record(reader: PartnerReader, source: _Chunks, sink: _Sink) -> tuple[int, str] | None:
    """The record reader reads the next record (and the blank lines before it) from ``source``;
    its line and text, or None when only blank lines were left."""
    reader._last = (0, "")
    records = _csv_records(reader.path, source.lines(), reader.diagnostics, first_line=source.line)
    for line, pid, _, text in reader._csv_rows(islice(records, 1)):
        sink.row(line, pid, text)
    return reader._last if reader._last[0] else None


def _read_jsonl(reader: PartnerReader, source: _Chunks, sink: _Sink) -> None:
    objects = _Objects(reader)
    row = sink.row
    while source.fill():
        chunk, start = source.chunk, source.pos
        end = chunk.rfind("\n", start) + 1
        taken = objects.take(chunk, start, end, source.line, sink) if end > start else 0
        if taken:
            source.skip(end, taken)
            start = end
        if start < len(chunk):  # the reader reads the rest of the chunk
            lines = chunk[start:].split("\n")
            if chunk.endswith("\n"):
                lines.pop()
            for line, pid, _, text in reader._jsonl(lines, source.line - 1):
                row(line, pid, text)
            source.skip(len(chunk), chunk.count("\n", start))


_ESCAPES = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")  # what may make a NUL or a lone surrogate: the reader looks


class _Objects:
    """The JSONL counterpart of :class:`_Rows`: the lines of a chunk are parsed (each a JSON
    object, with nothing around it), and each field of the schema is checked a column at a
    time, in C where it can be; when anything is not plainly fine, the reader reads the chunk."""

    def __init__(self, reader: PartnerReader):
        self.id_field, self.tz = reader.id_field, reader.tz
        self.columns = [(methodcaller("get", name), _column_check(_converter(type_, reader.tz), type_, reader.tz))
                        for name, type_ in reader.fields.items() if name != reader.id_field]
        self.scan = _STRICT.scan_once

    def take(self, chunk: str, start: int, end: int, line: int, sink: _Sink) -> int:
        """As :meth:`_Rows.take`, for the lines of JSON objects ``chunk[start:end]``."""
        lines = chunk[start:end].split("\n")
        lines.pop()  # after the last \n
        if not all(map(str.startswith, lines, repeat("{"))) or _ESCAPES.search(chunk, start, end):
            return 0
        try:
            parsed = list(map(self.scan, lines, repeat(0)))  # a line that is no JSON at all ends the map early
        except (ValueError, RecursionError):
            return 0
        if len(parsed) != len(lines) or list(map(itemgetter(1), parsed)) != list(map(len, map(str.rstrip, lines,
                                                                                             repeat(" \t\r")))):
            return 0  # not one whole object a line (json allows white space after it)
        objects = list(map(itemgetter(0), parsed))
        ids = list(map(methodcaller("get", self.id_field), objects))
        if set(map(type, ids)) != {str}:
            return 0
        ids = list(map(str.strip, ids))
        if not all(ids) or not all(map(str.isprintable, ids)) or max(map(len, ids)) > MAX_PARTNER_ID:
            return 0
        for get, fine in self.columns:
            if not fine(list(map(get, objects))):
                return 0
        sink.rows(ids, chunk, start, end, line)
        return len(ids)


def _column_check(convert: Callable[[Any], Any], type_: Type, tz: tzinfo) -> Callable[[list[Any]], bool]:
    """Whether the reader takes every one of a field's JSON values (None where it is missing)
    of ``type_`` without a word."""
    kind, parses = type_.kind, _parser(convert, type_, tz)
    allowed = frozenset(type_.values) | {None, ""} if kind == "enum" else frozenset()
    numbers = {int} if type_.integral else {int, float}

    def fine(column: list[Any]) -> bool:
        types = set(map(type, column))
        types.discard(type(None))
        if not types or (kind not in _CHECKED and kind != "string"):  # a JSON string field may hold no list
            return True
        try:
            if kind == "string" and types <= {str}:  # "" is no value: fine too
                return True
            if kind == "enum" and types <= {str}:
                return set(column) <= allowed
            if kind == "bool" and types <= {bool}:
                return True
            if kind == "number" and types <= numbers:
                return math.isfinite(sum(filter(_not_none, column)))
            values = list(filter(_not_empty, filter(_not_none, column)))  # as the reader, skip null and ""
            if kind in ("date", "datetime") and types <= {str}:
                return parses(values)
            if kind == "list" and types <= {list}:
                item = type_.item.kind if type_.item is not None else "any"
                if item == "string" and set(map(type, chain.from_iterable(values))) <= {str}:
                    return True
                for value in values:  # as the reader reads it
                    _typed(convert, type_, value, tz)
                return True
            return parses(values)  # each value (once) as the reader reads it
        except (TypeError, ValueError, OverflowError):  # a list of lists, a number too large for a float
            return False

    return fine


_not_none = partial(is_not, None)
_not_empty = partial(ne, "")


# --- the row pattern ---------------------------------------------------------------------------

_ID = "[!#-+\\--~\xa1-\xac\xae-\xff]"  # printable, no space, quote or comma (ASCII and Latin-1)
_UNQUOTED = '[^,\n\r"\x00\ud800-\udfff]'
_QUOTED = '(?:[^"\n\r\x00\ud800-\udfff]|"")'


class _Rows:
    """The row patterns of a CSV source, from its header and schema (see the module's doc).

    ``strict``: a line of cells as ``csv`` reads them, quoted or not, without a carriage
    return, NUL or lone surrogate. ``lean`` (faster): for text without quotes, carriage returns
    or NULs, where a cell is anything but a comma; a line feed inside a cell makes one match
    span two lines, which the count of matches against the count of lines finds. Both capture
    the id, then the cells of the columns to parse (dates, datetimes, other types)."""

    def __init__(self, reader: PartnerReader):
        limit = min(csv.field_size_limit(), 1 << 30)  # csv refuses a longer cell
        width = len(reader._names)
        self.commas = width - 1
        typed = {index: (name, convert, type_) for index, name, convert, type_ in reader._columns if convert is not None}
        self.parsed: list[tuple[Callable[[list[str]], bool], str]] = []
        strict, lean = [], []
        for index in range(width):
            end = "\n" if index == width - 1 else ""  # the last cell: not past the line's end
            if index == reader._id_index:
                strict.append(f'((?:"{_ID}{{1,{MAX_PARTNER_ID}}}+"|{_ID}{{1,{MAX_PARTNER_ID}}}+))')
                lean.append(f"({_ID}{{1,{MAX_PARTNER_ID}}}+)")
                continue
            if index not in typed or typed[index][2].kind not in _CHECKED:  # any text is fine
                strict.append(f'(?:{_UNQUOTED}{{0,{limit}}}+|"{_QUOTED}{{0,{limit}}}+")')
                lean.append(f"[^,{end}]{{0,{limit}}}+")
                continue
            name, convert, type_ = typed[index]
            spelling = _spelling(type_)
            if spelling is not None:
                strict.append(f'(?:{spelling}|"{spelling}")')
                lean.append(spelling)
            elif type_.kind == "list" and type_.item is not None and type_.item.kind == "string":  # no '[': not JSON
                strict.append(f'(?:[^,\n\r"\x00\ud800-\udfff\\[]{{0,{limit}}}+|"(?:[^"\n\r\x00\ud800-\udfff\\[]|""){{0,{limit}}}+")')
                lean.append(f"[^,\\[{end}]{{0,{limit}}}+")
            else:  # captured, and parsed
                strict.append(f"({_UNQUOTED}{{0,{limit}}}+)")
                lean.append(f"([^,\n]{{0,{limit}}}+)")
                self.parsed.append((_parser(convert, type_, reader.tz), name))
        self.strict = re.compile("^" + ",".join(strict) + "\r?\n", re.MULTILINE)
        self.lean = re.compile("^" + ",".join(lean) + "\n", re.MULTILINE)
        self.good_prefix = re.compile("(?:" + ",".join(strict) + "\r?\n)*+", re.MULTILINE)

    def good(self, chunk: str, start: int, end: int) -> int:
        """Where the lines of ``chunk[start:end]`` that the strict pattern takes end, from ``start`` on."""
        found = self.good_prefix.match(chunk, start, end)
        return found.end() if found else start

    def take(self, chunk: str, start: int, end: int, line: int, sink: _Sink) -> int:
        """Hand the rows of the whole lines ``chunk[start:end]`` to ``sink`` when the pattern
        takes every one of them, and the cells to parse parse: how many; 0 otherwise (nothing given)."""
        quoted = chunk.find('"', start, end) >= 0
        lean = not quoted and chunk.find("\r", start, end) < 0 and chunk.find("\0", start, end) < 0
        lines = chunk.count("\n", start, end)
        if lean and chunk.count(",", start, end) != self.commas * lines:  # a row of too many or too few cells
            return 0
        found = (self.lean if lean else self.strict).findall(chunk, start, end)
        if len(found) != lines:
            return 0
        if self.parsed:
            for column, (parses, _) in enumerate(self.parsed, 1):
                if not parses(list(filter(None, map(itemgetter(column), found)))):
                    return 0
            found = list(map(itemgetter(0), found))
        if quoted:
            found = list(map(str.strip, found, repeat('"')))
        sink.rows(found, chunk, start, end, line)
        return len(found)


_CHECKED = frozenset({"enum", "number", "bool", "date", "datetime", "list"})
"""The kinds whose cells ``coerce`` checks; it takes a cell of any other kind as it is."""


def _spelling(type_: Type) -> str | None:
    """A pattern of the cells of ``type_`` that the record reader takes (the empty cell too);
    None when a pattern cannot say."""
    kind = type_.kind
    if kind == "enum":
        values = [v for v in type_.values if v and not re.search('[,"\n\r\x00\ud800-\udfff]', v)]
        return "(?:" + "|".join(map(re.escape, sorted(values, key=len, reverse=True))) + ")?" if values else ""
    if kind == "bool":
        return "(?:" + "|".join(map(re.escape, sorted(_BOOLS, key=len, reverse=True))) + ")?"
    if kind == "number" and type_.integral:
        return "(?:-?[0-9]{1,300}+)?+"  # int() reads up to 4300 digits; -12 as coerce reads it
    if kind == "number":
        return r"(?:-?[0-9]{1,300}+(?:\.[0-9]{1,300}+)?+)?+"  # finite: under 1e300
    return None


def _parser(convert: Callable[[Any], Any], type_: Type, tz: tzinfo) -> Callable[[list[str]], bool]:
    """Whether every one of some (non-empty) cells of ``type_`` reads without a problem; when
    not, the record reader reads their lines and says which and why."""
    if type_.kind == "date":

        def dates(cells: list[str]) -> bool:
            try:
                list(map(date.fromisoformat, cells))
            except Exception:  # noqa: BLE001 - the reader reads them and says why
                return False
            return True

        return dates
    if type_.kind == "datetime":
        year = attrgetter("year")

        def datetimes(cells: list[str]) -> bool:  # as the reader's converter; years 2 to 9998 stay in range in UTC
            try:
                values = list(map(datetime.fromisoformat, map(str.replace, cells, repeat("Z"), repeat("+00:00"))))
            except Exception:  # noqa: BLE001 - the reader reads them and says why
                return False
            return not values or (min(map(year, values)) >= 2 and max(map(year, values)) <= 9998)

        return datetimes

    def exactly(cells: list[Any]) -> bool:
        try:
            for raw in set(cells):
                _typed(convert, type_, raw, tz)
        except (ValueError, TypeError):  # TypeError: a JSON list or object, which no set holds
            return False
        return True

    return exactly


# --- duplicate ids -----------------------------------------------------------------------------


class _OutOfOrder(Exception):
    """An id not after the one before it: the ids are not in ascending order."""


_PARTS = 4  # hashes are sorted a part at a time: a quarter of them (about 40 bytes each)


class _Ids:
    """The ids of the kept rows, for finding those that repeat (see the module's doc)."""

    def __init__(self, ascending: bool):
        self.ascending = ascending
        self.last: str | None = None
        self.count = 0
        self.parts = [array("q") for _ in range(_PARTS)]
        self.pending: list[int] = []

    def rows(self, ids: list[str], chunk: str, start: int, end: int, line: int) -> None:
        self.count += len(ids)
        if self.ascending:
            if (self.last is not None and not ids[0] > self.last) or not all(map(lt, ids, islice(ids, 1, None))):
                raise _OutOfOrder
            self.last = ids[-1]
            return
        self.pending += map(hash, ids)
        if len(self.pending) >= 1 << 16:
            self._flush()

    def row(self, line: int, pid: str, text: str) -> None:
        self.count += 1
        if self.ascending:
            if self.last is not None and not pid > self.last:
                raise _OutOfOrder
            self.last = pid
            return
        self.pending.append(hash(pid))

    def _flush(self) -> None:
        """The pending hashes into their parts (by their lowest bits)."""
        pending = self.pending
        keys = list(map(and_, pending, repeat(_PARTS - 1)))
        for key, part in enumerate(self.parts):
            part.extend(compress(pending, map(eq, keys, repeat(key))))
        pending.clear()

    def repeated(self) -> set[int]:
        """The hashes seen more than once."""
        if self.ascending:
            return set()
        self._flush()
        found: set[int] = set()
        for part in self.parts:
            ordered = sorted(part)
            found.update(compress(islice(ordered, 1, None), map(eq, ordered, islice(ordered, 1, None))))
        return found


class _Repeats:
    """The second reading: the rows whose id hashes to one of ``hashes``, each reported as a
    duplicate after the first of its id, as the record reader would."""

    def __init__(self, hashes: set[int], reader: PartnerReader):
        self.hashes, self.reader = hashes, reader
        self.first: dict[str, int] = {}
        self.duplicates = 0

    def rows(self, ids: list[str], chunk: str, start: int, end: int, line: int) -> None:
        hits = list(compress(count(), map(self.hashes.__contains__, map(hash, ids))))
        if hits:
            texts = chunk[start:end].split("\n", hits[-1] + 1)
            for i in hits:
                self.row(line + i, ids[i], texts[i])

    def row(self, line: int, pid: str, text: str) -> None:
        if hash(pid) not in self.hashes:
            return
        first = self.first.setdefault(pid, line)
        if first != line:
            self.reader.duplicate(line, pid, text, first)
            self.duplicates += 1
