"""Reading the partner source (``partners.csv`` or ``partners.jsonl``) into typed records.

Every value is checked against the partner schema once, here, so the evaluator can trust each
field to hold a value of its declared type or to be absent. Problems are reported at the exact
line and column of the offending cell, all of them in one run, and reading never raises.

Decisions:

- Rows are kept when one of their values is bad: that value is dropped (the field is null) and
  the rest of the row is used. Rows without a usable id, and the later rows of a duplicate id,
  are dropped. Whether a source with errors may be imported at all is the caller's decision.
- Columns (CSV) and keys (JSONL) that the schema does not list are kept: as strings from CSV,
  as the JSON value from JSONL. The schema lists what expressions may use; partner data may
  carry more (templates and exports can still show it).
- Empty values (an empty CSV cell, JSON ``null`` or ``""``) are missing: the key is absent.
- The id is always a string, stripped of surrounding whitespace; JSON integers are accepted
  as ids and turned into strings. The id column is never coerced to its schema type. An id
  that breaks the partner id rule (:func:`dsl.ids.check_partner_id`: a control character such
  as CR or LF, a lone surrogate, more than 200 characters) is an error and its row is dropped:
  ids go into message ids, e-mail and HTTP headers and file names.
- A lone surrogate (``"\\ud800"`` in JSON; never in text decoded from UTF-8) is not a character
  and cannot be stored or sent, and U+0000 cannot be stored in PostgreSQL (so neither store
  takes it, and both hold the same records): such a value (any key or value, at any depth) is
  an error and is dropped.
- CSV: the first non-blank row is the header (names stripped, a UTF-8 BOM ignored); blank
  lines are skipped; a row with fewer cells than the header lacks the last fields (no error);
  a row with more cells is an error and its extra cells are dropped. A header cell that is
  empty is ignored; a repeated one is an error (the first one is used).
- Speed: the per-row path only splits (C ``csv``/``json``) and coerces; where a cell starts is
  worked out only for a row that has a problem, by re-scanning that one row.
- Streaming: :class:`PartnerReader` reads line by line (a generator) and keeps only the text of
  the current record, so the import reads a source of any size in bounded memory; it can leave
  the duplicate check (a set of every id) to its caller. :func:`read_partners` is that reader
  over a text already loaded. ``engine check`` keeps no record at all: it takes the well-formed
  lines in bulk and hands the others to this reader (:mod:`dsl.partner_check`).
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone, tzinfo
from typing import Any, Callable, Iterable, Iterator, Mapping

from .diagnostics import Diagnostic, did_you_mean, error
from .ids import check_partner_id, describe, first_unstorable, unstorable_in
from .jsonline import JSON_SPACE, members
from .source import Span
from .types import STRING, Type, coerce


@dataclass(frozen=True)
class PartnerSource:
    """What a partner source held: the usable records and every problem found."""

    records: list[dict]
    diagnostics: list[Diagnostic]

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def read_partners(
    path: str, text: str, fields: Mapping[str, Type], id_field: str, tz: tzinfo
) -> PartnerSource:
    """Read the partner source at ``path`` (its text already loaded); the format follows the
    file extension. Never raises on any text."""
    reader = PartnerReader(path, fields, id_field, tz)
    records = [record for _, _, record, _ in reader.rows(io.StringIO(text, newline="\n"))]
    return PartnerSource(records, reader.diagnostics)


Row = tuple[int, str, dict, str]
"""(line, id, record, text): where a record starts, its id, the typed record, and its text
(the physical lines it spans), which locates a problem found later (:meth:`PartnerReader.duplicate`)."""


class PartnerReader:
    """Reads a partner source record by record: :meth:`rows` is a generator over the source's
    lines, so a source of any size is read in constant memory, apart from the ids it remembers
    to find duplicates. Every problem goes to :attr:`diagnostics`, in source order, as
    :func:`read_partners` reports them (that function is this reader over a text).

    ``duplicates=False``: the reader remembers no ids and yields the later rows of an id too; a
    caller that finds duplicates itself (the import does, in the store) reports each one with
    :meth:`duplicate`, which gives the diagnostic the reader would have given, in its place."""

    def __init__(self, path: str, fields: Mapping[str, Type], id_field: str, tz: tzinfo, *,
                 duplicates: bool = True):
        self.path, self.fields, self.id_field, self.tz = path, fields, id_field, tz
        self.diagnostics: list[Diagnostic] = []
        self._first_line: dict[str, int] | None = {} if duplicates else None
        self._id_index = 0  # CSV: the id column, once the header is read
        self._names: list[str] = []  # CSV: the header's names, stripped
        self._columns: list[tuple[int, str, Callable[[Any], Any] | None, Type]] = []  # CSV: the columns read
        self._last: tuple[int, str] = (0, "")  # CSV: the line and text of the last record read

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def rows(self, lines: Iterable[str]) -> Iterator[Row]:
        """The usable records of the source whose lines (each with its ``\\n``, as a file opened
        with ``newline="\\n"`` gives them) are ``lines``; the format follows the file extension.
        Never raises on any text."""
        lines = iter(lines)
        lowered = self.path.lower()
        if lowered.endswith(".csv"):  # the header, then the rows (one generator less on the way: this is per row)
            records = _csv_records(self.path, lines, self.diagnostics)
            if self._csv_header(records):
                yield from self._csv_rows(records)
                last, last_text = self._last
                _check_unterminated(self.diagnostics, self.path, last_text, last)
        elif lowered.endswith(".jsonl"):
            yield from self._jsonl(lines)
        else:
            message = f"unsupported partner source '{self.path}': use a .csv or .jsonl file"
            self.diagnostics.append(error(Span(self.path, 1, 1), message))

    def duplicate(self, line: int, pid: str, text: str, first_line: int) -> None:
        """Report the row of ``line`` (its id, its text as :meth:`rows` gave them) as a later
        occurrence of the id first seen on ``first_line``."""
        message = f"duplicate id '{pid}' (first on line {first_line})"
        found: list[Diagnostic] = []
        if self.path.lower().endswith(".csv"):
            _report(found, self.path, text, line, [(self._id_index, message)])
        else:
            _report_json(found, self.path, line, text, [(self.id_field, message)])
        for diagnostic in found:
            bisect.insort(self.diagnostics, diagnostic, key=_position)

    # --- CSV -----------------------------------------------------------------------------------

    def _csv_header(self, records: Iterator[tuple[int, list[str], str]]) -> bool:
        """Read the header (the first record of ``records``) and plan the columns; False when
        there is no header or no id column (reported: the rows cannot be read)."""
        path, fields, id_field, tz, diagnostics = self.path, self.fields, self.id_field, self.tz, self.diagnostics
        header = next(records, None)
        if header is None:
            message = f"the partner source has no header row (it needs an '{id_field}' column)"
            diagnostics.append(error(Span(path, 1, 1), message))
            return False
        header_line, header_cells, header_text = header
        names = [cell.strip() for cell in header_cells]
        if id_field not in names:
            message = f"the header has no id column '{id_field}'{did_you_mean(id_field, names)}"
            diagnostics.append(error(Span(path, header_line, 1), message))
            _check_unterminated(diagnostics, path, header_text, header_line)
            return False

        self._id_index = id_index = names.index(id_field)
        columns: list[tuple[int, str, Callable[[Any], Any] | None, Type]] = []  # None: keep the text
        seen: set[str] = set()
        for index, name in enumerate(names):
            if not name or index == id_index:
                continue
            if name in seen or name == id_field:
                twice = f"column '{name}' appears twice in the header"
                _report(diagnostics, path, header_text, header_line, [(index, twice)])
                continue
            seen.add(name)
            type_ = fields.get(name)
            if type_ is None or type_.kind == "string":
                columns.append((index, name, None, STRING))
            else:
                columns.append((index, name, _converter(type_, tz), type_))
        self._names, self._columns = names, columns
        self._last = header_line, header_text
        return True

    def _csv_rows(self, records: Iterable[tuple[int, list[str], str]]) -> Iterator[Row]:
        """The rows of ``records`` (after the header, as :meth:`_csv_header` planned them);
        :attr:`_last` is the line and text of the last record read."""
        path, id_field, tz, diagnostics = self.path, self.id_field, self.tz, self.diagnostics
        names, columns, id_index = self._names, self._columns, self._id_index
        width = len(names)
        first_line = self._first_line
        last, last_text = self._last
        for line, row, text in records:
            last, last_text = line, text
            problems: list[tuple[int, str]] | None = None
            cells = len(row)
            if cells > width:
                problems = [(width, f"this row has {cells} cells but the header has {width}")]
            if (not text.isascii() or "\0" in text) and first_unstorable(text) is not None:
                problems = (problems or []) + _surrogate_cells(row, names, id_index)
            pid = row[id_index].strip() if id_index < cells else ""
            bad_id = check_partner_id(pid) if pid else None
            if not pid:
                at = id_index if id_index < cells else 0
                problems = (problems or []) + [(at, f"missing id: the '{id_field}' cell is empty")]
            elif bad_id is not None:
                problems = (problems or []) + [(id_index, bad_id)]
                pid = ""  # reported; the row cannot be kept without an id
            elif first_line is not None and pid in first_line:
                duplicate = f"duplicate id '{pid}' (first on line {first_line[pid]})"
                problems = (problems or []) + [(id_index, duplicate)]
                pid = ""  # reported; the first record of the id is the one kept
            record: dict = {id_field: pid}
            for index, name, convert, type_ in columns:
                if index >= cells:
                    break
                raw = row[index]
                if not raw:
                    continue
                if convert is None:
                    record[name] = raw
                    continue
                try:
                    value = convert(raw)  # the common spelling (inlined _typed: this is per cell)
                except Exception:
                    try:
                        value = _coerce(type_, raw, tz)
                    except ValueError as exc:
                        problems = (problems or []) + [(index, f"field '{name}': {exc}")]
                        continue
                if value is not None:
                    record[name] = value
            if problems:
                _report(diagnostics, path, text, line, problems)
            if pid:
                if first_line is not None:
                    first_line[pid] = line
                yield line, pid, record, text
        self._last = last, last_text

    # --- JSONL ---------------------------------------------------------------------------------

    def _jsonl(self, lines: Iterable[str], number: int = 0) -> Iterator[Row]:
        """``number``: the line number before the first of ``lines`` (a BOM is only looked for
        on line 1)."""
        path, id_field, tz, diagnostics = self.path, self.id_field, self.tz, self.diagnostics
        plan = {name: (_converter(type_, tz), type_) for name, type_ in self.fields.items() if name != id_field}
        first_line = self._first_line
        for line in lines:
            number += 1
            if line.endswith("\n"):
                line = line[:-1]
            if number == 1 and line.startswith("\ufeff"):  # a BOM, as in CSV
                line = line[1:]
            if not line or line.isspace():
                continue
            try:
                obj = _STRICT.decode(line)
            except json.JSONDecodeError as exc:
                diagnostics.append(error(Span(path, number, exc.colno), f"not valid JSON: {exc.msg}"))
                continue
            except ValueError as exc:
                span = Span(path, number, _constant_col(line, str(exc)))
                diagnostics.append(error(span, f"not valid JSON: {exc}"))
                continue
            except RecursionError:
                diagnostics.append(error(Span(path, number, 1), "not valid JSON: nested too deeply"))
                continue
            if not isinstance(obj, dict):
                col = len(line) - len(line.lstrip(JSON_SPACE)) + 1
                message = f"expected a JSON object, got {_describe(obj)}"
                diagnostics.append(error(Span(path, number, col), message))
                continue

            problems: list[tuple[str | None, str]] | None = None  # (key; None = the object, message)
            if "\\u" in line:  # only a JSON escape can make a lone surrogate or a U+0000
                problems = _surrogate_members(obj, id_field)
            raw_id = obj.get(id_field)
            pid = _json_id(raw_id)
            bad_id = check_partner_id(pid) if pid else None
            if pid is None:
                problems = (problems or []) + [(id_field, f"'{id_field}' must be a string, got {_describe(raw_id)}")]
            elif not pid:
                problems = (problems or []) + [(id_field if id_field in obj else None, f"missing id: no '{id_field}' value")]
            elif bad_id is not None:
                problems = (problems or []) + [(id_field, bad_id)]
                pid = ""  # reported; the record cannot be kept without an id
            elif first_line is not None and pid in first_line:
                problems = (problems or []) + [(id_field, f"duplicate id '{pid}' (first on line {first_line[pid]})")]
                pid = ""  # reported; the first record of the id is the one kept
            record: dict = {id_field: pid}
            for key, raw in obj.items():
                if key == id_field or raw is None or raw == "":
                    continue
                spec = plan.get(key)
                if spec is None:
                    record[key] = raw
                    continue
                convert, type_ = spec
                try:
                    value = _typed(convert, type_, raw, tz)
                except ValueError as exc:
                    problems = (problems or []) + [(key, f"field '{key}': {exc}")]
                    continue
                if value is not None:
                    record[key] = value
            if problems:
                _report_json(diagnostics, path, number, line, problems)
            if pid:
                if first_line is not None:
                    first_line[pid] = number
                yield number, pid, record, line


def _surrogate_cells(row: list[str], names: list[str], id_index: int) -> list[tuple[int, str]]:
    """The cells of ``row`` holding a lone surrogate, reported and emptied (the id cell is left
    to the id rule, which reports it)."""
    found = []
    for index, cell in enumerate(row):
        at = first_unstorable(cell)
        if at is not None and index != id_index:
            name = names[index] if index < len(names) else f"cell {index + 1}"
            found.append((index, f"field '{name}': holds {describe(cell[at])}; the value is dropped"))
            row[index] = ""
    return found


def _surrogate_members(obj: dict, id_field: str) -> list[tuple[str | None, str]]:
    """The members of ``obj`` whose key or value holds a lone surrogate (at any depth),
    reported and removed (the id is left to the id rule)."""
    found: list[tuple[str | None, str]] = []
    for key in list(obj):
        text = unstorable_in(key) or (unstorable_in(obj[key]) if key != id_field else None)
        if text is not None:
            shown_key = key if first_unstorable(key) is None else None  # a key that cannot be shown or found
            message = f"field '{shown_key}': " if shown_key is not None else "a key "
            found.append((shown_key, f"{message}holds {describe(text[first_unstorable(text) or 0])}; the value is dropped"))
            del obj[key]
    return found


def _position(diagnostic: Diagnostic) -> tuple[int, int]:
    return diagnostic.span.line, diagnostic.span.col


def _coerce(type_: Type, raw: Any, tz: tzinfo) -> Any:
    """types.coerce, with the rare non-ValueError failures (dates out of range, absurd nesting)
    turned into ValueError so that one bad cell never stops the read. Numbers must be finite:
    a NaN revenue would quietly fail every comparison."""
    try:
        value = coerce(type_, raw, tz)
    except ValueError:
        raise
    except OverflowError:
        raise ValueError(f"{_describe(raw)} is out of range") from None
    except RecursionError:
        raise ValueError("the value is nested too deeply") from None
    except Exception as exc:  # defensive: coerce is shared code, and reading must not stop
        raise ValueError(f"cannot read {_describe(raw)} ({exc.__class__.__name__})") from None
    items = value if isinstance(value, list) else (value,)
    if any(isinstance(item, float) and not math.isfinite(item) for item in items):
        raise ValueError(f"expected a finite number, got {_describe(raw)}")
    return value


class _Slow(Exception):
    """A fast converter declines: the value goes through :func:`_coerce`."""


def _converter(type_: Type, tz: tzinfo) -> Callable[[Any], Any]:
    """A fast conversion for the common, well-formed values of ``type_``. It returns exactly
    what :func:`_coerce` would, or raises (anything) to hand the value to :func:`_coerce`,
    which then gives the value or the reason it does not fit."""
    kind = type_.kind

    def slow(raw: Any) -> Any:
        raise _Slow

    if kind == "string":

        def string(raw: Any) -> Any:
            if type(raw) is str:
                return raw
            raise _Slow

        return string
    if kind == "number" and type_.integral:

        def integer(raw: Any) -> Any:
            if type(raw) is int:
                return raw
            if raw.isdecimal():  # 12.0, -3 and "12.5" go to _coerce: it accepts or says why not
                return int(raw)
            raise _Slow

        return integer
    if kind == "number":

        def number(raw: Any) -> Any:
            cls = type(raw)
            if cls is int:
                return raw
            if cls is float:
                if raw - raw != 0:  # NaN or infinity
                    raise _Slow
                return raw
            if raw.isdecimal():
                return int(raw)
            if "." in raw:
                value = float(raw)
                if value - value != 0:
                    raise _Slow
                return value
            raise _Slow

        return number
    if kind == "bool":
        return lambda raw: raw if type(raw) is bool else _BOOLS[raw]
    if kind == "enum":
        values = frozenset(type_.values)

        def enum(raw: Any) -> Any:
            if type(raw) is str and raw in values:
                return raw
            raise _Slow

        return enum
    if kind == "date":
        return date.fromisoformat  # raises on anything coerce would strip or reject
    if kind == "datetime":

        def datetime_(raw: Any) -> Any:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if value.tzinfo is None:
                value = value.replace(tzinfo=tz)
            return value.astimezone(timezone.utc)

        return datetime_
    if kind == "list" and type_.item is not None and type_.item.kind == "string":

        def strings(raw: Any) -> Any:
            if type(raw) is str and "[" not in raw:
                return list(filter(None, map(str.strip, raw.split(";"))))
            if type(raw) is list and all(type(item) is str for item in raw):
                return [item for item in raw if item]
            raise _Slow

        return strings
    return slow


_BOOLS = {
    spelling: value
    for word, value in [("true", True), ("yes", True), ("1", True), ("y", True),
                        ("false", False), ("no", False), ("0", False), ("n", False)]
    for spelling in (word, word.upper(), word.capitalize())
}


# --- CSV ---------------------------------------------------------------------------------------


def _csv_records(
    path: str, lines: Iterable[str], diagnostics: list[Diagnostic], first_line: int = 1
) -> Iterator[tuple[int, list[str], str]]:
    """(first physical line, cells, text) of each non-blank CSV record. A record may span lines
    (quoted line breaks); its text is the lines ``csv`` took for it (it never reads ahead), kept
    so that a problem in it can be located. What ``csv`` rejects is reported and skipped. Lines
    end at line feeds only, as everywhere else in the project. ``first_line``: the number of the
    first of ``lines`` (a BOM is only looked for on line 1), which starts a record."""
    taken: list[str] = []

    def feed() -> Iterator[str]:
        take = taken.append
        for text in lines:
            if text.startswith("\ufeff") and first_line == 1:  # a BOM from spreadsheet exports; editors do not show it
                text = text[1:]
            take(text)
            yield text
            break
        for text in lines:
            take(text)
            yield text

    reader = csv.reader(feed())
    line = first_line
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            diagnostics.append(_csv_error(path, "".join(taken), line, str(exc)))
            row = None
        if row and not (len(row) == 1 and not row[0].strip()):
            yield line, row, taken[0] if len(taken) == 1 else "".join(taken)
        taken.clear()
        line = first_line + reader.line_num


def _csv_error(path: str, text: str, line: int, message: str) -> Diagnostic:
    """What ``csv`` rejected in the record ``text`` (from ``line`` on), in words for people; a
    lone carriage return is pointed at."""
    if "new-line character" in message:
        found = _LONE_CR.search(text)
        at = found.start() if found else 0
        span = _span(path, text, line, 0, at, at + 1)
        return error(span, "not valid CSV: a carriage return inside an unquoted cell")
    return error(Span(path, line, 1), f"not valid CSV: {message}")


_LONE_CR = re.compile("\r(?!\n)")


def _cells(text: str, start: int) -> tuple[list[tuple[int, int]], int]:
    """Where each cell of the CSV record at ``start`` begins and ends (offsets into ``text``),
    following ``csv``'s default dialect; and the offset of a quote never closed, or -1.
    A quoted cell begins at its opening quote."""
    cells: list[tuple[int, int]] = []
    cell_start, i, size = start, start, len(text)
    at_cell_start, open_quote = True, -1
    while i < size:
        char = text[i]
        if open_quote >= 0:
            if char == '"':
                if text.startswith('"', i + 1):
                    i += 2
                    continue
                open_quote = -1
        elif char == ",":
            cells.append((cell_start, i))
            cell_start, at_cell_start = i + 1, True
            i += 1
            continue
        elif char in "\r\n":
            break
        else:
            if char == '"' and at_cell_start:
                open_quote = i
            at_cell_start = False
        i += 1
    cells.append((cell_start, i))
    return cells, open_quote


def _report(
    diagnostics: list[Diagnostic], path: str, text: str, line: int, problems: list[tuple[int, str]]
) -> None:
    """Turn (cell index, message) pairs of the record ``text`` (which starts on ``line``) into
    located errors, re-scanning that one record to find where its cells are."""
    cells, _ = _cells(text, 0)
    for index, message in sorted(problems, key=lambda p: p[0]):
        begin, end = cells[max(0, min(index, len(cells) - 1))]
        diagnostics.append(error(_span(path, text, line, 0, begin, end), message))


def _span(path: str, text: str, line: int, record_start: int, begin: int, end: int) -> Span:
    """The span of ``text[begin:end]`` inside the record that starts at ``record_start``,
    which is the first column of physical line ``line``."""

    def position(offset: int) -> tuple[int, int]:
        breaks = text.count("\n", record_start, offset)
        line_start = text.rfind("\n", record_start, offset) + 1 if breaks else record_start
        return line + breaks, offset - line_start + 1

    begin_line, begin_col = position(begin)
    end_line, end_col = position(max(end, begin + 1))
    return Span(path, begin_line, begin_col, end_line, end_col)


def _check_unterminated(diagnostics: list[Diagnostic], path: str, text: str, line: int) -> None:
    """A quote that is never closed swallows the rest of the file into one cell; ``csv`` says
    nothing, so say it, at the opening quote. Only the last record (``text``, from ``line`` on)
    can be affected."""
    if '"' not in text:
        return
    _, open_quote = _cells(text, 0)
    if open_quote >= 0:
        span = _span(path, text, line, 0, open_quote, open_quote + 1)
        diagnostics.append(error(span, "unterminated quoted cell: the closing '\"' is missing"))


# --- JSONL -------------------------------------------------------------------------------------



def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)  # NaN / Infinity are not JSON


def _typed(convert: Callable[[Any], Any], type_: Type, raw: Any, tz: tzinfo) -> Any:
    """The value of a cell: the fast converter for the common spelling, else :func:`coerce`,
    which also explains (ValueError) why a value does not fit."""
    try:
        return convert(raw)
    except Exception:
        return _coerce(type_, raw, tz)


def _json_id(raw: Any) -> str | None:
    """The id as a stripped string ("" when missing), or None when it has the wrong type."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    return None


def _report_json(
    diagnostics: list[Diagnostic], path: str, number: int, line: str, problems: list[tuple[str | None, str]]
) -> None:
    """Locate each problem at its key's value on the line (or at the object's ``{``)."""
    values = _value_offsets(line)
    object_start = len(line) - len(line.lstrip(JSON_SPACE))
    located = []
    for key, message in problems:
        whole = (object_start, object_start + 1)
        begin, end = values.get(key, whole) if key is not None else whole
        located.append((begin, end, message))
    for begin, end, message in sorted(located, key=lambda p: p[0]):
        diagnostics.append(error(Span(path, number, begin + 1, number, end + 1), message))


def _value_offsets(line: str) -> dict[str, tuple[int, int]]:
    """Start and end offset of each top-level value of the JSON object on ``line``."""
    return {key: (begin, end) for key, (_, begin, end) in members(line).items()}


def _constant_col(line: str, message: str) -> int:
    """Column of a NaN / Infinity constant that json would otherwise accept."""
    name = message.split(" ", 1)[0]
    index = line.find(name)
    return index + 1 if index >= 0 else 1


def _describe(raw: Any) -> str:
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, str):
        return f"'{raw}'"
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, list):
        return "a list"
    return json.dumps(raw, default=str)
