"""The SQL back end's pieces (:mod:`dsl.sql`): what it refuses with, the condition it
gives, SQL fragments with their parameters, and what the compiler knows of a value."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAY_US = 86_400_000_000
MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND  # 0001-01-01T00:00Z
MAX_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // MICROSECOND  # 9999-12-31T23:59:59.999999Z
INT64 = 2**63

class Unsupported(Exception):
    """The expression (or a part of it) cannot be evaluated exactly in SQL; ``reason`` says
    what. The caller evaluates it in Python instead. ``internal``: not a known limit but the
    compiler's own failure (a bug), turned into a refusal so that it costs time, never a tick."""

    def __init__(self, reason: str, *, internal: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.internal = internal


class NoColumn(Unsupported):
    """Compiling for typed columns (``to_sql(columns=...)``), a field that has none (a list):
    the same expression can still be compiled over the record."""


@dataclass(frozen=True)
class Condition:
    """A SQL condition with placeholders (``?`` for SQLite, ``%s`` for PostgreSQL), and the
    values for them in order."""

    sql: str
    params: tuple


def _check_text(value: str, what: str) -> None:
    """Text that no driver can send (a lone surrogate: not UTF-8) is left to Python."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Unsupported(f"{what} with a lone surrogate (not UTF-8, which the database speaks)") from None


# --- SQL fragments --------------------------------------------------------------------------


@dataclass(frozen=True)
class _S:
    """A piece of SQL and its parameters; ``simple`` when repeating it costs nothing."""

    text: str
    params: tuple = ()
    simple: bool = False


NULL = _S("NULL", simple=True)
TRUE = _S("1", simple=True)
FALSE = _S("0", simple=True)


def _p(value: Any) -> _S:
    return _S("?", (value,), simple=True)


def _q(template: str, *parts: Any) -> _S:
    """Fill each ``{}`` of the template, in order, with a fragment (or a value as ``?``)."""
    pieces = template.split("{}")
    if len(pieces) != len(parts) + 1:
        raise AssertionError(f"{len(parts)} parts for {template!r}")
    text, params = [pieces[0]], []
    for part, piece in zip(parts, pieces[1:]):
        part = part if isinstance(part, _S) else _p(part)
        text.append(part.text)
        params.extend(part.params)
        text.append(piece)
    return _S("".join(text), tuple(params))


# --- Values ---------------------------------------------------------------------------------

_NOT_CONSTANT = object()


@dataclass(frozen=True)
class _E:
    """A compiled sub-expression: its SQL value and what is known about it.

    ``kind`` is the language type (``null number string bool date datetime duration list``).
    SQL NULL is the language's null, except for conditions (``falsy_null``), whose NULL means
    false. Datetimes are either UTC ISO text (``form="iso"``: fields, constants) or epoch
    microseconds (``form="us"``: results of arithmetic); durations are microseconds."""

    kind: str
    sql: _S | None = None
    nullable: bool = True
    falsy_null: bool = False
    form: str = ""
    const: Any = _NOT_CONSTANT
    values: frozenset | None = None  # a string that can only take these values (enum fields)
    path: str | None = None  # a list field: its JSON path
    column: str | None = None  # a list field in a column of its own (a record of it alone): that column
    item: str | None = None  # a list field: the kind of its items
    items: tuple[_E, ...] | None = None  # a list literal: its items
    # numbers, for PostgreSQL: "int" or "float" when known (else either, per row), and whether
    # the value may be infinite or NaN (a float overflowed somewhere before)
    numtype: str = ""
    inf: bool = False
    nan: bool = False
    # strings, for SQLite: whether the value may hold U+0000, which is spelled as the byte 0xFF
    # there (see _SQLite)
    nul: bool = False

    @property
    def constant(self) -> bool:
        return self.const is not _NOT_CONSTANT


def _bool(sql: _S, nullable: bool) -> _E:
    return _E("bool", sql, nullable=nullable, falsy_null=True)


NULL_E = _E("null", NULL, const=None)
_ORDERED_KINDS = ("number", "string", "date", "datetime", "duration")
_DOMAINS = {"string": "text", "date": "text", "number": "number", "bool": "bool", "duration": "micros"}
_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _comparable(a: str, b: str) -> bool:
    return a == b or {a, b} == {"date", "datetime"}
