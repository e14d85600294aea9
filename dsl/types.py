"""The types of the expression language and of the partner schema in engine.yaml.

A partner record is checked against its schema once, when it is read (:func:`coerce`), so the
evaluator can rely on each field holding a value of its declared type or ``None``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Mapping

from .diagnostics import did_you_mean
from .ids import shown

# --- Limits of the values a campaign file may write ------------------------------------------
#
# Every date and duration written in a campaign file (window, `at`, literals in expressions,
# `wait`, `reenroll`) is bounded, so that the engine's arithmetic on them (a window end plus a
# day, an enrollment time plus every wait of a campaign) stays far inside what Python's dates
# can hold (years 1 to 9999) and `engine check` accepts nothing a tick cannot run.

EARLIEST_DATE = date(1900, 1, 1)
LATEST_DATE = date(2199, 12, 31)
MAX_DURATION_DAYS = 36500  # 100 years
MAX_DURATION = timedelta(days=MAX_DURATION_DAYS)
DURATION_LIMIT = f"a duration is at most {MAX_DURATION_DAYS}d (100 years)"
DATE_RANGE = f"between {EARLIEST_DATE.isoformat()} and {LATEST_DATE.isoformat()}"


def check_date(value: date) -> str | None:
    """Why a date (or a datetime, by its own date) written in a campaign is out of bounds, or None."""
    day = value.date() if isinstance(value, datetime) else value
    if EARLIEST_DATE <= day <= LATEST_DATE:
        return None
    return f"dates must be {DATE_RANGE}"


def check_duration(value: timedelta) -> str | None:
    """Why a duration written in a campaign is out of bounds, or None."""
    if abs(value) <= MAX_DURATION:
        return None
    return DURATION_LIMIT


_UNIT_MINUTES = {"m": 1, "h": 60, "d": 24 * 60, "w": 7 * 24 * 60}
_MAX_MINUTES = MAX_DURATION // timedelta(minutes=1)
_DURATION = re.compile(r"([0-9]+)([mhdw])")


def duration_of(count: str, unit: str) -> timedelta:
    """``count`` units (digits; m, h, d or w) as a timedelta; ValueError naming the limit when it
    is longer than a campaign may wait (checked before timedelta, which overflows on absurd
    counts)."""
    digits = count.lstrip("0") or "0"
    minutes = int(digits) * _UNIT_MINUTES[unit] if len(digits) <= 12 else None
    if minutes is None or minutes > _MAX_MINUTES:
        raise ValueError(f"{count}{unit} is too long: {DURATION_LIMIT}")
    return timedelta(minutes=minutes)


def parse_duration(text: str) -> timedelta:
    """``15m``, ``12h``, ``3d`` or ``2w``, as in expressions, at most 100 years; ValueError
    (with the reason) otherwise."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match:
        raise ValueError(f"'{text}' is not a duration such as 30m, 12h, 3d or 2w")
    return duration_of(match.group(1), match.group(2))


@dataclass(frozen=True)
class Type:
    """``kind`` is string, number, bool, date, datetime, duration, null, ``list``, ``enum`` (a string with fixed values),
    ``record`` (``partner``, ``event``; ``fields`` empty means any field is allowed) or
    ``any`` (not known until run time, e.g. event data).

    An ``int`` field is a number that is ``integral``: its kind stays ``number`` so that every
    operator, function and SQL back end treats it as one; only reading a record (:func:`coerce`)
    and the name shown to users differ."""

    kind: str
    item: "Type | None" = None
    values: tuple[str, ...] = ()
    fields: tuple[tuple[str, "Type"], ...] = ()
    integral: bool = False

    def __str__(self) -> str:
        if self.kind == "list":
            return f"list[{self.item}]"
        if self.kind == "enum":
            return "enum[" + ", ".join(self.values) + "]"
        if self.integral:
            return "int"
        return self.kind

    def __repr__(self) -> str:
        """The dataclass's repr, with ``integral`` only when set: audience keys hash the reprs
        of the schema (engine.audiences), and the other types' must not change."""
        integral = ", integral=True" if self.integral else ""
        return f"Type(kind={self.kind!r}, item={self.item!r}, values={self.values!r}, fields={self.fields!r}{integral})"

    @property
    def field_map(self) -> dict[str, "Type"]:
        return dict(self.fields)

    def is_textual(self) -> bool:
        return self.kind in ("string", "enum")

    def is_temporal(self) -> bool:
        return self.kind in ("date", "datetime")


STRING = Type("string")
NUMBER = Type("number")
INT = Type("number", integral=True)
BOOL = Type("bool")
DATE = Type("date")
DATETIME = Type("datetime")
DURATION = Type("duration")
NULL = Type("null")
ANY = Type("any")


def list_of(item: Type) -> Type:
    return Type("list", item=item)


def enum(values: tuple[str, ...] | list[str]) -> Type:
    return Type("enum", values=tuple(values))


def record(fields: Mapping[str, Type] | None = None) -> Type:
    return Type("record", fields=tuple((fields or {}).items()))


_NAMED = {"string": STRING, "number": NUMBER, "int": INT, "bool": BOOL, "date": DATE, "datetime": DATETIME}
FIELD_TYPES = ("string", "number", "int", "bool", "date", "datetime", "list[string]", "list[number]", "list[int]")
VALID_FIELD_TYPES = ", ".join(FIELD_TYPES) + ", {enum: [...]}"


def parse_field_type(spec: Any, field: str | None = None) -> Type:
    """The type written in engine.yaml ``partners.fields`` (for ``field``, named in the
    message); ValueError with a message listing the valid types if unknown."""
    if isinstance(spec, str):
        text = spec.strip()
        if text in _NAMED:
            return _NAMED[text]
        match = re.fullmatch(r"list\[\s*(string|number|int)\s*\]", text)
        if match:
            return list_of(_NAMED[match.group(1)])
        raise ValueError(_unknown_type(shown(spec), field) + did_you_mean(text, FIELD_TYPES))
    if isinstance(spec, dict) and set(spec) == {"enum"}:
        values = spec["enum"]
        if isinstance(values, list) and values and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values):
            return enum(tuple(str(v) for v in values))
        where = f" for field {shown(field)}" if field is not None else ""
        raise ValueError(f"an enum{where} needs a non-empty list of values")
    raise ValueError(_unknown_type(shown(json.dumps(spec, default=str)), field))


def _unknown_type(spec: str, field: str | None) -> str:
    where = f" for field {shown(field)}" if field is not None else ""
    return f"unknown field type {spec}{where} (valid types: {VALID_FIELD_TYPES})"


# --- Values -----------------------------------------------------------------------------------

_TRUE = {"true", "yes", "1", "y"}
_FALSE = {"false", "no", "0", "n"}


def coerce(type_: Type, raw: Any, tz: tzinfo) -> Any:
    """A raw value (CSV text or JSON value) as a value of ``type_``: None when missing;
    ValueError with a short reason when it does not fit. Datetimes come back aware (UTC)."""
    if raw is None or raw == "":
        return None
    kind = type_.kind
    if kind == "string":
        if isinstance(raw, (dict, list, bool)):
            raise ValueError(f"expected a string, got {_describe(raw)}")
        return str(raw)
    if kind == "enum":
        text = str(raw) if not isinstance(raw, (dict, list, bool)) else None
        if text not in type_.values:
            raise ValueError(f"'{raw}' is not one of {', '.join(type_.values)}")
        return text
    if kind == "number" and type_.integral:
        return _integer(raw)
    if kind == "number":
        if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
            raise ValueError(f"expected a number, got {_describe(raw)}")
        if isinstance(raw, str):
            text = raw.strip()  # what str.strip() takes (\x1f too), as for an int
            try:
                return int(text) if re.fullmatch(r"[-+]?\d+", text) else float(text)
            except ValueError:
                raise ValueError(f"expected a number, got '{raw}'") from None
        return raw
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise ValueError(f"expected true or false, got {_describe(raw)}")
    if kind == "date":
        if isinstance(raw, str):
            try:
                return date.fromisoformat(raw.strip())
            except ValueError:
                pass
        raise ValueError(f"expected a date (YYYY-MM-DD), got {_describe(raw)}")
    if kind == "datetime":
        if isinstance(raw, str):
            try:
                return to_utc(datetime.fromisoformat(raw.strip().replace("Z", "+00:00")), tz)
            except ValueError:
                pass
        raise ValueError(f"expected a datetime (ISO 8601), got {_describe(raw)}")
    if kind == "list":
        items = raw
        if isinstance(raw, str):
            text = raw.strip()
            items = json.loads(text) if text.startswith("[") and _is_json(text) else [p.strip() for p in text.split(";") if p.strip()]
        if not isinstance(items, list):
            raise ValueError(f"expected a list, got {_describe(raw)}")
        out = []
        for item in items:
            value = coerce(type_.item or ANY, item, tz)
            if value is not None:
                out.append(value)
        return out
    return raw


def _integer(raw: Any) -> int:
    """A whole number: 12, 12.0 and "12" are 12; 12.5 is refused rather than rounded, since a
    rounded seat count would quietly change who matches."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise ValueError(f"expected an integer, got {_describe(raw)}")
    if isinstance(raw, int):
        return raw
    value = raw
    if isinstance(raw, str):
        text = raw.strip()
        try:
            if re.fullmatch(r"[-+]?\d+", text):
                return int(text)
            value = float(text)
        except ValueError:  # not a number, or more digits than int() reads
            raise ValueError(f"expected an integer, got '{raw}'") from None
    if not math.isfinite(value) or not value.is_integer():
        raise ValueError(f"expected an integer, got {_describe(raw)}")
    return int(value)


def to_utc(value: datetime, tz: tzinfo) -> datetime:
    """A naive datetime is local time in ``tz``; the result is aware and in UTC."""
    from datetime import timezone

    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(timezone.utc)


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


def _describe(raw: Any) -> str:
    if isinstance(raw, str):
        return f"'{raw}'"
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, (dict, list)):
        return "an object" if isinstance(raw, dict) else "a list"
    return json.dumps(raw, default=str)
