"""Reading an events file (``engine events import FILE.jsonl``, SPEC §8) into typed events.

One JSON object a line: ``type``, ``at``, ``partner``, optional ``id``, ``data``, and for
engagement events a ``message`` or a ``campaign`` and ``step``. This module only reads and
checks; storing the events (and resolving a message to its channel) is the importer's job.
Reading never raises: each bad line gets one error at its exact line and column and is skipped;
the good lines are kept.

Decisions:

- Each bad line gets exactly one diagnostic, at its leftmost problem; when the line has several,
  their messages are joined with ``; `` in column order. So the error count is the number of
  skipped lines.
- ``null`` is the same as leaving a key out. An empty (or blank) string is an error: an empty
  ``id`` or ``partner`` is an exporter bug, not a missing value.
- ``partner``, ``id``, ``message``, ``campaign`` and ``step`` are stripped of surrounding
  whitespace, as partner ids are in the partner source. ``partner`` and ``id`` may be JSON
  integers (turned into their decimal text); the others must be strings.
- An event without ``id`` is identified by its content: ``sha256:`` and the hex digest of the
  canonical JSON of the parsed object (sorted keys, no spaces, UTF-8), so the same line
  imported twice counts once, whatever its spacing or key order. A later line whose id repeats
  an earlier *good* line of the same file is a duplicate: dropped and counted, not an error.
- ``at`` is ISO 8601 with a time of day (``2026-07-01T09:00``, ``2026-07-01 09:00:00+03:00``,
  ``…Z``; seconds and a fraction optional; ``T`` or a space). Without ``Z`` or an offset it is
  local time in the workspace timezone (``datetime.replace(tzinfo=tz)``, so fold 0, as
  everywhere). It is stored in UTC, truncated to whole seconds. A bare date is an error: an
  event happened at a time, and midnight is rarely what the exporter meant.
- An unknown key is an error with a "did you mean"; when it suggests a key that is missing
  (``partnr`` for ``partner``), the missing key is not reported a second time.

Limits, so that nothing a line holds can make the import's store transaction (or a later tick)
fail; each is a bad line, reported at its column and skipped:

- A line is at most 64 KiB (65,536 bytes of UTF-8); ``data`` nests at most 32 levels (an
  object or list inside ``data`` is level 2), and its numbers are finite (``1e400`` is not).
- Text is Unicode: a byte that is not UTF-8 is an error at its column (:func:`read_text` keeps
  it as a lone surrogate, so it spoils its line, not the file); a lone surrogate escape
  (``"\\ud800"``) or a NUL (``"\\u0000"``) in a string of ``data`` (keys too) is an error at
  that string (Python's json decodes them; the store cannot encode the one, SQLite's text
  functions stop at the other). In ids they break the id rules below.
- ``partner`` is a partner id and ``campaign`` and ``step`` are a campaign's and a step's ids,
  by the rules of :mod:`dsl.ids` (no control characters or line breaks, at most 200 and 100
  characters); ``id`` and ``message`` are one line of printable text of at most 512 bytes of
  UTF-8; ``type`` at most 100 characters.
- ``at`` lies between 1900-01-01 and 2199-12-31 (:func:`dsl.types.check_date`, the bounds of
  every written date).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone, tzinfo
from json.decoder import scanstring
from types import MappingProxyType
from typing import Any, Mapping

from dsl.diagnostics import Diagnostic, did_you_mean, error
from dsl import jsonline
from dsl.jsonline import skip_space
from dsl.source import Span
from dsl.ids import MAX_SLUG, check_partner_id, check_slug, describe, first_bad_character
from dsl.types import check_date, to_utc

ENGAGEMENT = ("opened", "clicked", "bounced", "read")
CONSENT = ("unsubscribed", "opted_in", "terms.accepted")
KNOWN_TYPES = ENGAGEMENT + CONSENT
KEYS = ("type", "at", "partner", "id", "data", "message", "campaign", "step")
CHANNELS = ("email", "sms")
BOUNCE_KINDS = ("hard", "soft")
EXAMPLE_AT = "2026-07-01T09:00:00Z"

MAX_LINE_BYTES = 65536  # a line of the file, UTF-8
MAX_DATA_DEPTH = 32  # `data` itself is level 1
MAX_TYPE_CHARS = MAX_SLUG
MAX_ID_BYTES = 512  # `id` and `message`, UTF-8
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_BAD_IN_STRING = re.compile(r"[\ud800-\udfff\x00]")

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_AT = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
    r"(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)


@dataclass(frozen=True)
class Event:
    """One good line of an events file."""

    id: str
    type: str
    at: datetime  # aware, UTC, whole seconds
    partner: str
    data: Mapping[str, Any] = field(hash=False)  # read-only; {} when absent
    message: str | None = None
    campaign: str | None = None
    step: str | None = None
    line: int = 0  # 1-based line in the file

    @property
    def engagement(self) -> bool:
        return self.type in ENGAGEMENT


@dataclass(frozen=True)
class EventsFile:
    """What an events file held: the good events in file order (duplicates dropped), one error
    per bad line, and how many lines repeated the id of an earlier good line."""

    events: list[Event]
    diagnostics: list[Diagnostic]
    duplicates: int
    path: str = ""  # where the lines came from, as diagnostics name it

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def read_events(path: str, text: str, tz: tzinfo) -> EventsFile:
    """Read the events file at ``path`` (its text already loaded); naive times are local in
    ``tz``. Never raises on any text."""
    if text.startswith("\ufeff"):
        text = text[1:]
    events: list[Event] = []
    diagnostics: list[Diagnostic] = []
    seen: set[str] = set()
    duplicates = 0
    for number, line in enumerate(text.split("\n"), 1):
        if not line or line.isspace():
            continue
        try:
            result = _text_problem(path, number, line) or _read_line(path, number, line, tz)
        except RecursionError:
            result = error(Span(path, number, 1), "not valid JSON: nested too deeply")
        except Exception as exc:  # defensive: one odd line must never stop the import
            result = error(Span(path, number, 1), f"cannot read this line ({exc.__class__.__name__})")
        if isinstance(result, Diagnostic):
            diagnostics.append(result)
        elif result.id in seen:
            duplicates += 1
        else:
            seen.add(result.id)
            events.append(result)
    return EventsFile(events, diagnostics, duplicates, path)


# --- one line ----------------------------------------------------------------------------------


def _text_problem(path: str, number: int, line: str) -> Diagnostic | None:
    """Text that is not Unicode, before any JSON is parsed (bytes that were not UTF-8 come in as
    lone surrogates: see ``read_text``)."""
    found = _SURROGATE.search(line)
    if found is not None:
        char = ord(found.group())
        what = (f"a byte that is not UTF-8 (0x{char - 0xDC00:02x})" if 0xDC80 <= char <= 0xDCFF
                else f"a lone surrogate (U+{char:04X}), which is not Unicode text")
        return error(Span(path, number, found.start() + 1), f"not valid text: {what}")
    return None


def read_text(path) -> str:
    """The text of an events file, for :func:`read_events`: bytes that are not UTF-8 become lone
    surrogates (``surrogateescape``), which the reader reports at their line and column, so one
    bad byte spoils one line rather than the file. OSError when it cannot be read."""
    with open(path, encoding="utf-8", errors="surrogateescape") as stream:
        return stream.read()


def _size_problem(line: str) -> str | None:
    if len(line) * 4 > MAX_LINE_BYTES and len(line.encode("utf-8", "surrogatepass")) > MAX_LINE_BYTES:
        return (f"the line is longer than {MAX_LINE_BYTES // 1024} KiB ({MAX_LINE_BYTES:,} bytes), "
                "the most an event may take")
    return None


def _string_problem(line: str, start: int, stop: int) -> tuple[int, int, str] | None:
    """The first JSON string between offsets ``start`` and ``stop`` of a line that parsed, that
    holds a lone surrogate escape or a NUL: its (start, end) offsets and the message. Python's
    json decodes ``"\\ud800"`` into a string that cannot be encoded (the store's transaction
    failed on it), and NUL ends text in SQLite's functions and is refused by PostgreSQL."""
    i = start
    while i < stop:
        i = line.find('"', i, stop)
        if i < 0:
            return None
        try:
            text, end = scanstring(line, i + 1)
        except ValueError:
            return None
        what = _bad_text(text)
        if what is not None:
            return i, end, f"a string holds {what}"
        i = end
    return None


def _bad_text(text: str) -> str | None:
    found = _BAD_IN_STRING.search(text)
    if found is None:
        return None
    char = ord(found.group())
    return "a NUL character (\\u0000)" if char == 0 else f"a lone surrogate (\\u{char:04x}), which is not Unicode text"


def _data_problem(data: Any) -> str | None:
    """Why ``data`` cannot be stored as it is (too deep, a number that is not finite, text that
    is not Unicode), or None. Walks without recursion."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth > MAX_DATA_DEPTH:
                return f"'data' nests more than {MAX_DATA_DEPTH} levels deep"
            if isinstance(value, dict):
                for key in value:
                    what = _bad_text(key)
                    if what is not None:
                        return f"a key in 'data' holds {what}"
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(value, str):
            what = _bad_text(value)
            if what is not None:
                return f"a string in 'data' holds {what}"
        elif isinstance(value, float) and not math.isfinite(value):
            return "'data' holds a number out of range (JSON numbers are finite)"
    return None


class _Constant(ValueError):
    """NaN / Infinity, which Python's json accepts and JSON does not."""


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


_STRICT = json.JSONDecoder(parse_constant=_reject_constant)


def _read_line(path: str, number: int, line: str, tz: tzinfo) -> Event | Diagnostic:
    try:
        obj = _STRICT.decode(line)
    except json.JSONDecodeError as exc:
        return error(Span(path, number, exc.colno), f"not valid JSON: {exc.msg}")
    except _Constant as exc:
        index = line.find(str(exc))
        col = index + 1 if index >= 0 else 1
        return error(Span(path, number, col), f"not valid JSON: {exc} is not a JSON value")
    except ValueError as exc:  # e.g. an integer longer than Python's digit limit
        reason = str(exc).split(":", 1)[0].lower()
        return error(Span(path, number, 1), f"not valid JSON: {reason}")
    start = skip_space(line, 0)
    if not isinstance(obj, dict):
        return error(Span(path, number, start + 1), f"expected a JSON object, got {_show(obj)}")
    too_long = _size_problem(line)
    if too_long is not None:
        return error(Span(path, number, 1), too_long)

    members = jsonline.members(line, start)
    whole = (start, start + 1)
    problems: list[tuple[int, int, str]] = []  # (begin, end) offsets on the line, message

    def value_at(key: str) -> tuple[int, int]:
        found = members.get(key)
        return (found[1], found[2]) if found else whole

    def bad(key: str, message: str) -> None:
        problems.append((*value_at(key), message))

    suggested: set[str] = set()
    for key in obj:
        if key in KEYS:
            continue
        hint = did_you_mean(key, KEYS)
        close = re.search(r"'([^']*)'\?$", hint)
        if close:
            suggested.add(close.group(1))
        begin, end = whole
        if key in members:
            begin = members[key][0]
            end = _key_end(line, begin)
        problems.append((begin, end, f"unknown key {_show(key)}{hint}"))

    def missing(key: str) -> None:
        if key not in suggested:
            problems.append((*whole, f"missing '{key}'"))

    # type
    type_ = None
    raw = obj.get("type")
    if raw is None:
        missing("type")
    elif not isinstance(raw, str):
        bad("type", f"'type' must be a string, got {_show(raw)}")
    elif not raw:
        bad("type", "'type' must not be empty")
    elif not _NAME.fullmatch(raw):
        bad("type", f"'type' must be a name such as opened or invoice.payment_failed, got {_show(raw)}")
    elif len(raw) > MAX_TYPE_CHARS:
        bad("type", f"'type' is longer than {MAX_TYPE_CHARS} characters")
    else:
        type_ = raw

    # at
    at = None
    raw = obj.get("at")
    if raw is None:
        missing("at")
    elif not isinstance(raw, str):
        bad("at", f"'at' must be an ISO 8601 time such as {EXAMPLE_AT}, got {_show(raw)}")
    else:
        parsed = _parse_at(raw, tz)
        if isinstance(parsed, str):
            bad("at", parsed)
        else:
            at = parsed

    # partner and the optional identifiers
    texts: dict[str, str | None] = {}
    failed: set[str] = set()
    for key, required, integers in [
        ("partner", True, True),
        ("id", False, True),
        ("message", False, False),
        ("campaign", False, False),
        ("step", False, False),
    ]:
        raw = obj.get(key)
        value = None
        if raw is None:
            if required:
                missing(key)
                failed.add(key)
        elif isinstance(raw, str):
            value = raw.strip()
            problem = _identifier_problem(key, value)
            if problem is not None:
                bad(key, problem)
                failed.add(key)
                value = None
        elif integers and isinstance(raw, int) and not isinstance(raw, bool):
            value = str(raw)
        else:
            bad(key, f"'{key}' must be a string, got {_show(raw)}")
            failed.add(key)
        texts[key] = value

    # data
    data: dict = {}
    raw = obj.get("data")
    if isinstance(raw, dict):
        problem = _data_problem(raw)
        if problem is not None:
            # at the offending string when there is one, else at 'data'
            located = _string_problem(line, *value_at("data")) if " holds " in problem else None
            problems.append((*located[:2], problem) if located else (*value_at("data"), problem))
            failed.add("data")
        else:
            data = raw
    elif raw is not None:
        bad("data", f"'data' must be an object, got {_show(raw)}")
        failed.add("data")

    def data_value_at(name: str) -> tuple[int, int]:
        if "data" not in members:
            return whole
        found = jsonline.members(line, members["data"][1]).get(name)
        return (found[1], found[2]) if found else value_at("data")

    # what each kind of event needs
    message, campaign, step = texts["message"], texts["campaign"], texts["step"]
    if type_ in ENGAGEMENT and message is None and not failed & {"message", "campaign", "step"}:
        if campaign is None and step is None:
            bad("type", f"'{type_}' needs a 'message', or a 'campaign' and a 'step'")
        elif step is None:
            bad("campaign", f"'{type_}' needs a 'step' with its 'campaign' (or a 'message')")
        elif campaign is None:
            bad("step", f"'{type_}' needs a 'campaign' with its 'step' (or a 'message')")
    if type_ == "bounced":
        kind = data.get("kind")
        if kind is not None and kind not in BOUNCE_KINDS:
            hint = did_you_mean(kind, BOUNCE_KINDS) if isinstance(kind, str) else ""
            message_ = f"'data.kind' of a bounce must be hard or soft, got {_show(kind)}{hint}"
            problems.append((*data_value_at("kind"), message_))
    if type_ in ("unsubscribed", "opted_in"):
        channel = data.get("channel")
        if channel is not None and channel not in CHANNELS:
            hint = did_you_mean(channel, CHANNELS) if isinstance(channel, str) else ""
            message_ = f"'data.channel' must be email or sms, got {_show(channel)}{hint}"
            problems.append((*data_value_at("channel"), message_))
        elif channel is None and message is None and not failed & {"message", "data"}:
            where = "data" if "data" in members else "type"
            bad(where, f"'{type_}' needs 'data.channel' (email or sms) or a 'message'")

    if problems:
        problems.sort(key=lambda p: (p[0], p[1]))
        begin, end, _ = problems[0]
        text = "; ".join(p[2] for p in problems)
        return error(Span(path, number, begin + 1, number, max(end, begin + 1) + 1), text)

    assert type_ is not None and at is not None and texts["partner"] is not None
    return Event(
        id=texts["id"] or content_id(obj),
        type=type_,
        at=at,
        partner=texts["partner"],
        data=MappingProxyType(data),
        message=message,
        campaign=campaign,
        step=step,
        line=number,
    )


def _identifier_problem(key: str, value: str) -> str | None:
    """Why a (stripped) identifier cannot be stored and used in ids and headers, or None: the
    rules of :mod:`dsl.ids` for partner, campaign and step ids; one line of printable text of
    at most 512 bytes for an event's own ``id`` and a ``message`` id."""
    if not value:
        return f"'{key}' must not be empty"
    if key == "partner":
        problem = check_partner_id(value)
    elif key in ("campaign", "step"):
        problem = check_slug(value, f"{key} id")
    else:
        bad_char = first_bad_character(value)
        if bad_char is not None:
            return f"'{key}' must not contain {describe(bad_char[1])}"
        if len(value) * 4 > MAX_ID_BYTES and len(value.encode("utf-8")) > MAX_ID_BYTES:
            return f"'{key}' is longer than {MAX_ID_BYTES} bytes"
        return None
    return f"'{key}': {problem}" if problem is not None else None


def content_id(obj: Mapping[str, Any]) -> str:
    """The id of an event line without one: the hash of its canonical JSON."""
    canonical = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def _parse_at(raw: str, tz: tzinfo) -> datetime | str:
    """The aware UTC time, whole seconds; or why ``raw`` is not one (a message)."""
    text = raw.strip()
    found = _AT.fullmatch(text)
    if not found:
        if _DATE.fullmatch(text):
            return f"'at' is a date without a time of day: write a time such as {EXAMPLE_AT}"
        return f"'at' is not an ISO 8601 time such as {EXAMPLE_AT}"
    year, month, day, hour, minute, second, zulu, sign, off_h, off_m = found.groups()
    try:
        offset: tzinfo | None = None
        if zulu:
            offset = timezone.utc
        elif sign:
            hours, minutes = int(off_h), int(off_m or 0)
            if hours > 23 or minutes > 59:
                raise ValueError("the offset is out of range")
            delta = timedelta(hours=hours, minutes=minutes)
            offset = timezone(-delta if sign == "-" else delta)
        numbers = (int(year), int(month), int(day), int(hour), int(minute), int(second or 0))
        value = datetime(*numbers, tzinfo=offset)
        utc = to_utc(value, tz).replace(microsecond=0)
        problem = check_date(value)
        if problem is not None:
            return f"'at' is out of range: {problem}"
        return utc
    except OverflowError:
        return "'at' is out of range"
    except ValueError as exc:
        reason = str(exc)
        if "out of range" in reason and reason.startswith("date value"):
            return "'at' is out of range"
        return f"'at' is not a valid time: {reason}"


# --- where things are on the line --------------------------------------------------------------


def _key_end(line: str, key_start: int) -> int:
    try:
        return scanstring(line, key_start + 1)[1]
    except ValueError:
        return key_start + 1


_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def _show(raw: Any) -> str:
    """A value in a message: short, on one line, printable."""
    if raw is None:
        return "null"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, dict):
        return "an object"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, str):
        text = raw if len(raw) <= 40 else raw[:37] + "..."
        return "'" + _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "'"
    return json.dumps(raw)
