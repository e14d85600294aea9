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
"""

from __future__ import annotations

import hashlib
import json
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
from dsl.types import to_utc

ENGAGEMENT = ("opened", "clicked", "bounced", "read")
CONSENT = ("unsubscribed", "opted_in", "terms.accepted")
KNOWN_TYPES = ENGAGEMENT + CONSENT
KEYS = ("type", "at", "partner", "id", "data", "message", "campaign", "step")
CHANNELS = ("email", "sms")
BOUNCE_KINDS = ("hard", "soft")
EXAMPLE_AT = "2026-07-01T09:00:00Z"

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
            result = _read_line(path, number, line, tz)
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
    return EventsFile(events, diagnostics, duplicates)


# --- one line ----------------------------------------------------------------------------------


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
            if not value:
                bad(key, f"'{key}' must not be empty")
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
        return to_utc(value, tz).replace(microsecond=0)
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
