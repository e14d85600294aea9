"""AST → a parameterised SQL condition over stored partner records (the second back end).

:func:`to_sql` turns a (checked) expression into a ``WHERE`` condition that selects exactly the
partners for which the Python back end (:func:`dsl.compile.compile_expression`) returns
``true``, evaluated with ``Context(now, tz)``. The row holds the partner record as JSON in one
column (``partners.data``, written by ``engine.compiled.encode_partner``): JSON text on SQLite,
``jsonb`` on PostgreSQL::

    cond = to_sql(parse('partner.tier in ["gold", "platinum"] and partner.revenue >= 10000'),
                  schema, now=now, tz=tz)                       # dialect="sqlite": ? placeholders
    rows = db.execute(f"SELECT id FROM partners WHERE {cond.sql}", cond.params)
    cond = to_sql(node, schema, now=now, tz=tz, dialect="postgresql")   # %s, for psycopg 3

No user text ever becomes SQL: literals, field names (JSON paths such as ``'$."tier"'`` on
SQLite, jsonb keys on PostgreSQL) and every constant are parameters (on PostgreSQL each
``%s::type``, so that the server never has to guess a type; a literal ``%`` is doubled). The
SQL text is made of this module's own fragments only.

**One compiler, two dialects.** The compiler decides *what* to compute — the language's
semantics, the same everywhere: constants folded in Python, nulls, the DST-exact date ranges
below. A dialect object says how its SQL spells each piece: reading a field
(``json_extract(data, ?)`` / ``data ->> %s``), true and false (``1``/``0`` / ``TRUE``/``FALSE``),
null-safe equality (``IS`` / ``IS NOT DISTINCT FROM``), ordering text (PostgreSQL orders text by
the database's collation, so every ordering of text says ``COLLATE "C"``: code point order, as
in Python), substrings (``instr`` / ``strpos``), list membership and length (``json_each`` /
jsonb containment ``@>`` and ``jsonb_array_length``), dates (``julianday`` / ``date``
arithmetic and ``to_char``), ISO text to microseconds (``strftime`` / ``extract(epoch ...)``)
and numbers (next). The differences are the methods of ``_SQLite`` and ``_PostgreSQL``.

**Numbers.** SQLite stores a JSON number as an integer or a float, like Python, and its
arithmetic is the one used here (``/`` on REAL, ``%`` fixed to the divisor's sign). jsonb keeps
a number as the exact decimal it was written as (``numeric``): an int as its digits, a float as
Python's repr. The PostgreSQL dialect keeps numbers in ``numeric`` and tells the two kinds apart
per row by the scale (an int has none; a float always gets one), then computes as Python does:
two ints exactly (``numeric``: no 64-bit limit, like Python), ``/`` as true division correctly
rounded (exact below 2⁵³, else the exact quotient rounded once), ``%`` with the divisor's sign;
anything with a float as IEEE doubles (``float8``), checking the operands first because
PostgreSQL raises an error where IEEE overflows to infinity or underflows to zero: outside the
range where that cannot happen, the exact values (from the doubles' bits) are combined in
``numeric`` and rounded to the double Python would get, infinities and NaN included (NaN is
then kept out of comparisons, where PostgreSQL would find it equal to itself and greater than
everything). A double goes back to ``numeric`` through its shortest text, which needs
``extra_float_digits > 0`` (the default; the SQL checks it where it relies on it, and fails
loudly otherwise). Shortest decimals order like the doubles and compare exactly with ints below
2⁵³; beyond, where PostgreSQL and Python may print a double differently, comparisons use the
exact values. An int beyond a double's range is null where Python raises OverflowError.

**What the SQL may assume.** Records are stored as the partner import writes them: every field
of the schema holds a value of its declared type or is absent/``null`` (``dsl.types.coerce``);
dates are ``'YYYY-MM-DD'``; datetimes are ISO text in UTC (``'2026-07-01T06:00:00+00:00'``, with
``.ffffff`` when there are microseconds), so they order as text; lists are JSON arrays; bools
are JSON ``true``/``false``. Nulls are handled everywhere. A type surprise in the *expression*
(``true == 1``, ``partner.score + partner.name``) gets the Python value (false, null), so an
unchecked expression is still exact; a value of the wrong type in the *data* is not expected
(on PostgreSQL a number, bool or list field of another type reads as null rather than failing
the query; a date or datetime field must be the import's ISO text, as it is cast).

**Pushed down** (each exactly as :mod:`dsl.runtime` decides; both dialects alike):

- field access ``partner.f`` / ``partner["f"]`` of the schema's string, enum, number, bool,
  date, datetime and list fields; literals; ``now`` and ``today``. Every sub-expression that
  does not depend on the partner is evaluated once, in Python, by the Python back end itself
  (``now - 3d``, ``2026-07-01T09:00``, ``[1, 2]``) and becomes a parameter.
- ``and``/``or``/``not``, two-valued: SQL's NULL is folded into false with ``COALESCE`` where
  it matters (``not``, and a condition used as a value).
- ``== !=`` with null as a value (null-safe equality); ``< <= > >=`` false with a null; on
  numbers, strings (code point order = UTF-8 byte order), bools (``==`` only), dates,
  datetimes (text while both are stored UTC text, else epoch microseconds) and durations
  (microseconds). Operands of types that never compare give the Python answer (false, or for
  ``==``/``!=`` the null rule), without SQL.
- ``in``/``not in`` on list literals (null items skipped; an item of another type makes
  ``not in`` false like the runtime's surprise) and on list fields; substring ``in`` on
  strings. ``not in`` is false with a null operand.
- ``+ - * / %`` on numbers with null propagation, ``/`` exact (true) division, division and
  ``%`` by zero null, ``%`` with the sign of the divisor (Python's); ``+`` of strings;
  durations ``±`` (on PostgreSQL null beyond timedelta's range, like Python's OverflowError);
  ``date ± whole days`` (calendar days; null outside years 1–9999); ``datetime ± duration``
  (elapsed time, null out of range); ``date - date``; ``datetime - datetime``; unary minus.
- ``len`` (strings, list fields, list literals), ``contains``, ``starts_with``, ``ends_with``,
  ``coalesce``; ``lower``/``upper`` of enum fields (their values are mapped in Python);
  ``days_since`` of dates; string and list-field indexing by a constant position.
- A date compared with a constant datetime, and ``days_since(x)`` compared with a constant
  number (``days_since(partner.last_login) > 30``), for dates *and* datetimes in any timezone:
  the Python semantics is a monotonic step in ``x``, so the boundary is found by evaluating the
  runtime's own functions (bisection over dates), checked around DST changes, and the SQL
  compares ``x`` with it (an index-friendly range). Likewise a constant local time in a DST
  fold or gap, which Python's ``==`` never finds equal to a stored datetime (PEP 495).
- In a fixed-offset timezone (UTC, ``+03:00``) also a per-row date as an instant (its local
  midnight): date vs datetime comparisons and ``date ± duration`` of hours.

**Unsupported** (:class:`Unsupported` is raised; the caller evaluates the expression in Python),
on both dialects unless said:

- ``matches`` (Python's ``re`` is neither SQLite's nor PostgreSQL's regular expressions), and
  the functions that ask the store's facts: ``in_group``, ``in_campaign``,
  ``was_in_campaign``, ``opened``, ``clicked``, ``bounced``, ``responded``, ``response``;
  ``event`` (no event in an audience).
- ``lower``/``upper`` of anything but an enum field or a constant: SQLite folds ASCII only,
  PostgreSQL follows the collation's locale tables (libc's or ICU's), Python all of Unicode by
  its own database (``lower("Å")``, and even ASCII results: ``lower("K")`` (Kelvin sign) is
  ``"k"``, ``upper("ß")`` is ``"SS"``).
- A per-row date turned into an instant (its local midnight) in a timezone with DST: date vs
  datetime comparisons of two per-row values, ``date ± duration`` that is not whole days,
  ``date - datetime``. SQLite has no time zones; PostgreSQL has its own copy of the tz
  database and its own rule for a local time in a gap, neither of which is provably Python's.
- ``days_since`` of a datetime other than compared with a constant number (its value needs the
  local date of every row).
- Equality of lists or records, ``partner`` as a value, fields missing from the schema, nested
  fields, indexes that are not constant, ``in`` on a list that is neither a literal nor a list
  field, ``coalesce`` of values of different types, ``date ± duration`` with a duration that
  is not constant, non-finite constants; on SQLite integer constants beyond 64 bits and field
  names with quotes, backslashes or control characters (a JSON path cannot hold them); on
  PostgreSQL strings and names with U+0000 (its text cannot hold it).
- Expressions nested so deeply that the database's parser would refuse the SQL: SQLite's stack
  is fixed, so :func:`to_sql` prepares every condition once on an empty in-memory table to
  know; for PostgreSQL (no server at hand) the nesting of the SQL is measured and refused
  beyond 400 levels, well below what its parser takes. Conditions over 200,000 characters.

The SQLite SQL uses SQLite's JSON functions and, for ``%``, ``mod()`` (SQLite 3.35+ built with
its math functions, as the usual builds are). The PostgreSQL SQL needs version 14 or later
(``numeric`` infinities, ``extract`` as ``numeric``); 15 is tested.

**Known limits**, where the back ends can still differ. SQLite: its JSON functions cut a string
at U+0000 (the import accepts such a value today); integers beyond ±2⁶³ in the data, integer
arithmetic overflowing 64 bits and ``/`` of integers beyond 2⁵³ are float arithmetic in SQLite
but exact in Python; a float overflow to ``inf - inf`` is NaN in Python but NULL in SQLite.
PostgreSQL: jsonb cannot tell a float written with an exponent and no point (Python writes
floats from 1e16 on as ``1e+16``) from an int, so such a float in the *data* is read as the int
of its repr (1e23 as 10**23: exact where Python rounds); jsonb cannot hold U+0000, NaN or
infinities at all (storing them is the store's problem); ints beyond ``numeric``'s 131072
digits fail the query.
"""

from __future__ import annotations

import itertools
import math
import re
import sqlite3
import threading
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, Callable, Mapping

from . import runtime
from .compile import CompileError, compile_expression
from .nodes import Attribute, Binary, Call, Index, ListExpr, Name, Node, Unary
from .runtime import Context
from .types import Type

__all__ = ["Condition", "Unsupported", "to_sql"]

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
DAY_US = 86_400_000_000
MIN_US = (datetime.min.replace(tzinfo=UTC) - EPOCH) // MICROSECOND  # 0001-01-01T00:00Z
MAX_US = (datetime.max.replace(tzinfo=UTC) - EPOCH) // MICROSECOND  # 9999-12-31T23:59:59.999999Z
INT64 = 2**63
MAX_SQL = 200_000  # characters: larger conditions are refused rather than sent
FACTS = ("in_group", "in_campaign", "was_in_campaign", "opened", "clicked", "bounced", "responded",
         "response")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
# Names a column may not have: those of json_each's columns (they would shadow it inside the
# membership subqueries) and this module's own aliases.
_RESERVED = {"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root"}
_ISO_TO_US = ("(CAST(strftime('%s', substr({}, 1, 19)) AS INTEGER) * 1000000"
              " + CASE WHEN substr({}, 20, 1) = '.' THEN CAST(substr({}, 21, 6) AS INTEGER) ELSE 0 END)")


class Unsupported(Exception):
    """The expression (or a part of it) cannot be evaluated exactly in SQL; ``reason`` says
    what. The caller evaluates it in Python instead."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Condition:
    """A SQL condition with placeholders (``?`` for SQLite, ``%s`` for PostgreSQL), and the
    values for them in order."""

    sql: str
    params: tuple


def to_sql(node: Node, schema: Mapping[str, Type], *, now: datetime, tz: tzinfo, column: str = "data",
           dialect: str = "sqlite") -> Condition:
    """The condition selecting the rows whose JSON record (in ``column``) makes the expression
    exactly ``true``, as ``compile_expression(node)(record, Context(now, tz))`` would.
    ``dialect`` is ``"sqlite"`` (``?`` placeholders, ``column`` JSON text) or ``"postgresql"``
    (``%s`` placeholders as psycopg uses them, ``column`` of type ``jsonb``).
    Raises :class:`Unsupported` when that cannot be done exactly."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown SQL dialect '{dialect}'")
    if not _COLUMN.fullmatch(column) or column.lower() in _RESERVED or re.match(r"_[lv]\d", column):
        raise ValueError(f"not a usable column name: {column!r}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    compiler = _Compiler(schema, now, tz, column, _DIALECTS[dialect])
    try:
        sql = compiler.condition(node)
    except RecursionError:
        raise Unsupported("the expression is nested too deeply for the SQL back end") from None
    if len(sql.text) > MAX_SQL:
        raise Unsupported("the SQL condition would be too large")
    return compiler.dialect.finish(sql, column, compiler)


_TOO_BIG = ("parser stack overflow", "expression tree is too large", "too many sql variables",
            "too many terms",
            "too big", "too many columns")


def _check_sqlite_accepts(sql: _S, column: str) -> None:
    """Prepare the condition once on an empty table: SQLite's parser has a fixed stack and
    limits on expression depth and parameters, so a very deep expression can give SQL that it
    refuses. That is refused here (Unsupported); any other error would be a bug, and raises."""
    table, _, name = column.rpartition(".")
    scratch = _SCRATCH.__dict__.setdefault("tables", {})
    if name not in scratch:
        db = sqlite3.connect(":memory:")
        db.execute(f"CREATE TABLE t ({name} TEXT)")
        scratch[name] = db
    try:
        alias = f"AS {table}" if table else ""
        scratch[name].execute(f"SELECT 1 FROM t {alias} WHERE {sql.text}", sql.params)
    except sqlite3.Error as exc:
        if any(reason in str(exc).lower() for reason in _TOO_BIG):
            raise Unsupported(f"SQLite refuses a condition this large ({exc})") from None
        raise


_SCRATCH = threading.local()  # one empty in-memory database per thread and column name


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
    item: str | None = None  # a list field: the kind of its items
    items: tuple[_E, ...] | None = None  # a list literal: its items
    # numbers, for PostgreSQL: "int" or "float" when known (else either, per row), and whether
    # the value may be infinite or NaN (a float overflowed somewhere before)
    numtype: str = ""
    inf: bool = False
    nan: bool = False

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


def _micros(moment: datetime) -> int:
    return (moment - EPOCH) // MICROSECOND


def _ambiguous(moment: datetime) -> bool:
    """A local time in a DST fold or gap: Python's ``==`` between time zones never finds it
    equal to anything (PEP 495), whatever the instants."""
    if moment.tzinfo is None or moment.tzinfo is UTC:
        return False
    return moment.utcoffset() != moment.replace(fold=1 - moment.fold).utcoffset()


def _fixed_offset(tz: tzinfo) -> timedelta | None:
    """The offset of a timezone without DST, or None."""
    if isinstance(tz, timezone):
        return tz.utcoffset(None)
    key = getattr(tz, "key", None)
    if key in ("UTC", "Etc/UTC", "Etc/UCT", "UCT", "GMT", "Etc/GMT", "Etc/Universal", "Universal", "Zulu",
               "Etc/Zulu", "Etc/Greenwich", "Greenwich", "GMT0", "Etc/GMT0", "GMT+0", "GMT-0", "Etc/GMT+0",
               "Etc/GMT-0"):
        return timedelta(0)
    match = re.fullmatch(r"Etc/GMT([+-])(\d{1,2})", key or "")
    if match:  # POSIX style: Etc/GMT+3 is three hours *behind* UTC
        return timedelta(hours=int(match.group(2))) * (-1 if match.group(1) == "+" else 1)
    return None


@lru_cache(maxsize=64)
def _local_range(tz: tzinfo) -> tuple[datetime | None, datetime | None]:
    """The UTC instants [lo, hi) whose local date in ``tz`` exists (None: no limit)."""

    def works(moment: datetime) -> bool:
        try:
            moment.astimezone(tz)
            return True
        except (ArithmeticError, ValueError):
            return False

    lowest, highest = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    lo = hi = None
    if not works(lowest):
        a, b = 0, 3 * DAY_US  # first working micro offset from the lowest instant
        while a < b:
            m = (a + b) // 2
            a, b = (a, m) if works(lowest + m * MICROSECOND) else (m + 1, b)
        lo = lowest + a * MICROSECOND
    if not works(highest):
        a, b = 0, 3 * DAY_US  # first failing micro offset back from the highest instant
        while a < b:
            m = (a + b) // 2
            a, b = (m + 1, b) if not works(highest - m * MICROSECOND) else (a, m)
        hi = highest - (a - 1) * MICROSECOND
    return lo, hi


@lru_cache(maxsize=4096)
def _day_start(day: date, tz: tzinfo) -> datetime:
    """The first instant (UTC) whose local date in ``tz`` is ``day`` or later, checked: the
    local date must step from before ``day`` to ``day`` (or after) exactly there, for every
    instant within 36 hours (more than any offset change, so further away it cannot step back)."""
    try:
        start = datetime.combine(day, time(), tz).astimezone(UTC)
        samples = [start + timedelta(minutes=15) * i for i in range(-36 * 4, 36 * 4 + 1)]
        points = set(samples) | {start - MICROSECOND}
        for a, b in zip(samples, samples[1:]):
            if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset():  # a change: find it
                lo, hi = 0, (b - a) // MICROSECOND
                while lo < hi:
                    m = (lo + hi) // 2
                    same = (a + m * MICROSECOND).astimezone(tz).utcoffset() == a.astimezone(tz).utcoffset()
                    lo, hi = (m + 1, hi) if same else (lo, m)
                points |= {a + (lo - 1) * MICROSECOND, a + lo * MICROSECOND}
        for point in points:
            if (point.astimezone(tz).date() >= day) != (point >= start):
                raise Unsupported(f"the local date in {tz} does not advance simply around {day}")
    except (ArithmeticError, ValueError):
        raise Unsupported("a date at the end of the calendar") from None
    return start


def _first(test: Callable[[int], bool], lo: int, hi: int) -> int:
    """The least ``i`` in [lo, hi] with ``test(i)``, ``test`` being monotonic (false, then
    true) and ``test(hi)`` true."""
    while lo < hi:
        m = (lo + hi) // 2
        lo, hi = (lo, m) if test(m) else (m + 1, hi)
    return lo


_MIN_DAY, _MAX_DAY = date.min.toordinal(), date.max.toordinal()
# An interval of dates (ordinals) [lo, hi); None for no bound; EMPTY for no date at all.
EMPTY = "empty"


def _split(test: Callable[[date], bool]):
    """The dates where a monotonic predicate of a date holds, as an interval."""
    low, high = test(date.min), test(date.max)
    if low == high:
        return (None, None) if low else EMPTY
    first = _first(lambda o: test(date.fromordinal(o)) == high, _MIN_DAY, _MAX_DAY)
    return (first, None) if high else (None, first)


def _intersect(a, b):
    if a == EMPTY or b == EMPTY:
        return EMPTY
    lo = a[0] if b[0] is None else b[0] if a[0] is None else max(a[0], b[0])
    hi = a[1] if b[1] is None else b[1] if a[1] is None else min(a[1], b[1])
    return EMPTY if lo is not None and hi is not None and lo >= hi else (lo, hi)


# --- Dialects -------------------------------------------------------------------------------
# One compiler, two dialects: the compiler decides *what* to compute (the language's semantics,
# which is the same everywhere); a dialect says how its SQL spells each piece. SQLite reads the
# record with json_extract() and has 1/0 for booleans; PostgreSQL reads jsonb with -> and ->>,
# has real booleans, orders text by the collation (so every ordering of text says COLLATE "C"),
# and keeps jsonb numbers as exact ``numeric`` (so Python's int/float arithmetic is rebuilt on
# top of it: _PostgreSQL.numbers()).


class _SQLite:
    """SQLite 3.35+ with JSON and math functions; ``?`` placeholders."""

    name = "sqlite"
    true, false = TRUE, FALSE
    int_limit = INT64  # beyond, SQLite's integers become floats
    fence = ""  # appended to a let() subquery

    def finish(self, sql: _S, column: str, compiler: _Compiler) -> Condition:
        _check_sqlite_accepts(sql, column)
        return Condition(sql.text, sql.params)

    def check_name(self, name: str) -> None:
        if any(c in name for c in '"\\') or any(ord(c) < 0x20 for c in name):
            raise Unsupported("a field name with quotes, backslashes or control characters")

    def check_string(self, value: str) -> None:
        pass

    def path(self, name: str) -> str:
        return f'$."{name}"'

    def field(self, column: str, path: str, kind: str) -> _S:
        return _S(f"json_extract({column}, ?)", (path,), simple=True)

    def list_item(self, column: str, path: str, position: int, kind: str) -> _S:
        return _S(f"json_extract({column}, ?)", (f"{path}[{position}]",), simple=True)

    def number_constant(self, value: Any) -> _S:
        return _p(value if type(value) in (int, float) else float(value))

    def plain_in(self, constant: _E) -> bool:
        """Whether ``x IN (..., constant)`` compares x with it as the language does."""
        return True

    def relation(self, c: _Compiler, op: str, x: _S, y: _S, domain: str, a: _E, b: _E) -> _S:
        """``op`` is ``==`` (null-safe), ``!=`` (null-safe), ``=`` (null is not equal) or an order."""
        return _q(f"({{}} {_SQLITE_OPS.get(op, op)} {{}})", x, y)

    def order(self, op: str, x: _S, y: Any, textual: bool) -> _S:
        return _q(f"{{}} {op} {{}}", x, y)

    def substring(self, container: _S, part: _S, found: bool) -> _S:
        return _q(f"(instr({{}}, {{}}) {'> 0' if found else '= 0'})", container, part)

    def list_contains(self, c: _Compiler, column: str, path: str, item: _S, x: _E, kind: str) -> _S:
        return _q(f"EXISTS (SELECT 1 FROM json_each({column}, {{}}) AS _j WHERE _j.value = {{}})", path, item)

    def is_array(self, column: str, path: str) -> _S:
        return _q(f"json_type({column}, {{}}) = 'array'", path)

    def list_length(self, column: str, path: str) -> _S:
        return _q(f"(CASE WHEN json_type({column}, {{}}) = 'array'"
                  f" THEN json_array_length({column}, {{}}) END)", path, path)

    def length(self, text: _S) -> _S:
        return _q("length({})", text)

    def char_at(self, text: _S, position: int) -> _S:
        return _q("CASE WHEN length({}) > {} THEN substr({}, {}, 1) END", text, position, text, position + 1)

    def affix(self, name: str, text: _S, affix: _S) -> _S:
        if name == "starts_with":
            return _q("(substr({}, 1, length({})) = {})", text, affix, affix)
        return _q("(CASE WHEN length({}) = 0 THEN {} IS NOT NULL ELSE substr({}, - length({})) = {} END)",
                  affix, text, text, affix, affix)

    def numbers(self, c: _Compiler, op: str, a: _E, b: _E) -> _E:
        if op == "/":
            return _E("number", _q("(CAST({} AS REAL) / {})", a.sql, b.sql))
        if op == "%":
            return _E("number", c.let([a.sql, b.sql], self.remainder(c)))
        return _E("number", _q(f"({{}} {op} {{}})", a.sql, b.sql))

    def remainder(self, c: _Compiler) -> Callable[[list[_S]], _S]:
        """Python's ``%``: the sign of the divisor; of two integers exactly, else like
        ``math.fmod`` then corrected, as CPython does; null for a zero divisor."""

        def build(parts: list[_S]) -> _S:
            a, b = parts
            r = _q("CASE WHEN typeof({}) = 'integer' AND typeof({}) = 'integer' THEN {} % {}"
                   " ELSE mod({}, {}) END", a, b, a, b, a, b)
            return c.let([r], lambda p: _q(
                "(CASE WHEN {} = 0 THEN NULL WHEN {} <> 0 AND (({} < 0) <> ({} < 0)) THEN {} + {}"
                " ELSE {} END)", b, p[0], p[0], b, p[0], b, p[0]))

        return build

    def negate(self, c: _Compiler, e: _E) -> _E:
        return _E(e.kind, _q("(- {})", e.sql))

    def durations(self, c: _Compiler, sql: _S) -> _S:
        return sql

    def days_between(self, later: Any, earlier: Any) -> _S:
        return _q("CAST(julianday({}) - julianday({}) AS INTEGER)", later, earlier)

    def add_days(self, c: _Compiler, day: _S, days: int) -> _S:
        shifted = _q("date({}, {})", day, f"{days:+d} days")
        if days >= 0:
            return shifted  # SQLite gives NULL after 9999-12-31, like Python
        return c.let([shifted], lambda p: _q("CASE WHEN {} >= '0001-01-01' THEN {} END", p[0], p[0]))

    def date_micros(self, day: _S, offset: int) -> _S:
        return _q("(CAST(julianday({}) - 2440587.5 AS INTEGER) * 86400000000 - {})", day, offset)

    def iso_micros(self, c: _Compiler, text: _S) -> _S:
        return c.let([text], lambda p: _q(_ISO_TO_US, p[0], p[0], p[0]))


_SQLITE_OPS = {"==": "IS", "!=": "IS NOT"}


# PostgreSQL's numbers. jsonb keeps a number as the exact decimal it was written as: an int as
# its digits, a float as Python's repr (the shortest decimal that reads back as the double).
# Both stay ``numeric`` here, told apart by their scale: an int has none, a float always has
# one (``+ 0.0`` gives it one when its repr has no point), so ``scale(x) = 0`` means int, per
# row. Arithmetic of two ints is exact numeric arithmetic, as in Python; anything with a float
# goes through ``double precision``, which is IEEE arithmetic like Python's, except that
# PostgreSQL raises an error where IEEE gives an infinity or an underflow to zero; so each
# operation checks its operands first (a range in which it cannot happen, the common case), and
# otherwise takes the exact value of each double (its bits, float8send) and rounds the exact
# result itself (numeric → float8 is correctly rounded, through strtod). The result goes back
# to numeric through its shortest text (float8out, with extra_float_digits > 0, which is
# checked there). Shortest reprs order like the doubles and compare exactly with integers
# below 2⁵³; beyond, where PostgreSQL and Python may print a double differently, a comparison
# uses the exact values.
_OVERFLOW = "(2::numeric ^ 1024 - 2::numeric ^ 970)"  # from here on, |x| rounds to infinity
_UNDERFLOW = "2::numeric ^ 1075"  # |x| * this <= 1: x rounds to zero
_TWO53 = 2**53
_TIMEDELTA = ((timedelta.min // MICROSECOND), (timedelta.max // MICROSECOND))
_PG_DEPTH = 400  # nesting of parentheses and CASEs that PostgreSQL's parser surely takes
_PG_OPS = {"==": "IS NOT DISTINCT FROM", "!=": "IS DISTINCT FROM"}
# a double's shortest text, or (extra_float_digits <= 0) a text that numeric refuses, loudly
_FLOAT_TEXT = ("(CASE WHEN current_setting('extra_float_digits')::integer > 0 THEN ({})::text"
               " ELSE 'extra_float_digits=' || current_setting('extra_float_digits') || ', must be > 0' END)")


class _PostgreSQL:
    """PostgreSQL 14+ (15 tested), the record in a ``jsonb`` column; ``%s`` placeholders."""

    name = "postgresql"
    int_limit = 10**1000  # numeric holds any of them exactly
    true = _S("TRUE", simple=True)
    false = _S("FALSE", simple=True)
    fence = " OFFSET 0"  # keeps the planner from copying a bound value into every use of it

    def finish(self, sql: _S, column: str, compiler: _Compiler) -> Condition:
        depth = deepest = 0
        for token in re.findall(r"[()]|\bCASE\b|\bEND\b", sql.text):
            depth += 1 if token in ("(", "CASE") else -1
            deepest = max(deepest, depth)
        if deepest > _PG_DEPTH:
            raise Unsupported(f"PostgreSQL's parser may refuse a condition nested this deeply ({deepest})")
        pieces = sql.text.replace("%", "%%").split("?")
        text = [pieces[0]]
        for value, piece in zip(sql.params, pieces[1:]):
            text.append(f"%s::{_pg_type(value)}")
            text.append(piece)
        return Condition("".join(text), sql.params)

    def check_name(self, name: str) -> None:
        if "\0" in name:
            raise Unsupported("a field name with U+0000, which PostgreSQL's text cannot hold")

    def check_string(self, value: str) -> None:
        if "\0" in value:
            raise Unsupported("a string with U+0000, which PostgreSQL's text cannot hold")

    def path(self, name: str) -> str:
        return name

    def field(self, column: str, path: str, kind: str) -> _S:
        if kind in ("number", "bool"):  # cast only what is one (no error on other data)
            json, sql = ("number", "numeric") if kind == "number" else ("boolean", "boolean")
            return _S(f"(CASE WHEN jsonb_typeof({column} -> ?) = '{json}' THEN ({column} ->> ?)::{sql} END)",
                      (path, path), simple=True)
        return _S(f"({column} ->> ?)", (path,), simple=True)

    def list_item(self, column: str, path: str, position: int, kind: str) -> _S:
        item = f"{column} -> ? -> CAST(? AS integer)"
        if kind == "number":
            return _S(f"(CASE WHEN jsonb_typeof({item}) = 'number' THEN ({item})::numeric END)",
                      (path, position, path, position), simple=True)
        return _S(f"({column} -> ? ->> CAST(? AS integer))", (path, position), simple=True)

    def number_constant(self, value: Any) -> _S:
        if isinstance(value, int):
            return _p(int(value))
        return _p(_float_decimal(float(value)))

    def plain_in(self, constant: _E) -> bool:
        return constant.kind != "number" or _small(constant)  # (beyond 2^53: number_relation)

    def relation(self, c: _Compiler, op: str, x: _S, y: _S, domain: str, a: _E, b: _E) -> _S:
        if domain == "number":
            return self.number_relation(c, op, a, b)
        if domain == "text" and op in ("<", "<=", ">", ">="):
            return _q(f'({{}} COLLATE "C" {op} {{}})', x, y)
        return _q(f"({{}} {_PG_OPS.get(op, op)} {{}})", x, y)

    def order(self, op: str, x: _S, y: Any, textual: bool) -> _S:
        if textual and op != "=":
            return _q(f'{{}} COLLATE "C" {op} {{}}', x, y)
        return _q(f"{{}} {op} {{}}", x, y)

    def substring(self, container: _S, part: _S, found: bool) -> _S:
        return _q(f"(strpos({{}}, {{}}) {'> 0' if found else '= 0'})", container, part)

    def elements(self, column: str, path: str) -> _S:
        return _q(f"jsonb_array_elements(CASE WHEN jsonb_typeof({column} -> {{}}) = 'array'"
                  f" THEN {column} -> {{}} END)", path, path)

    def list_contains(self, c: _Compiler, column: str, path: str, item: _S, x: _E, kind: str) -> _S:
        if kind != "number":  # jsonb's containment compares strings exactly (and may use an index)
            contains = _q(f"COALESCE({column} -> {{}} @> jsonb_build_array({{}}), FALSE)", path, item)
            return _q("({} IS NOT NULL AND {})", item, contains) if x.nullable else contains
        element = _E("number", _S("(_j._v0)::numeric", simple=True))
        x = replace(x, sql=item)
        if not (_small(x) or x.numtype == "int"):
            x, element = replace(x, sql=self.exact_if_large(c, x)), replace(
                element, sql=self.exact_if_large(c, element))
        return _q("EXISTS (SELECT 1 FROM {} AS _j(_v0) WHERE CASE WHEN jsonb_typeof(_j._v0) = 'number'"
                  " THEN {} = {} END)", self.elements(column, path), element.sql, x.sql)

    def is_array(self, column: str, path: str) -> _S:
        return _q(f"jsonb_typeof({column} -> {{}}) = 'array'", path)

    def list_length(self, column: str, path: str) -> _S:
        return _q(f"(CASE WHEN jsonb_typeof({column} -> {{}}) = 'array'"
                  f" THEN jsonb_array_length({column} -> {{}})::numeric END)", path, path)

    def length(self, text: _S) -> _S:
        return _q("length({})::numeric", text)

    def char_at(self, text: _S, position: int) -> _S:
        return _q("CASE WHEN length({}) > {} THEN substr({}, CAST({} AS integer), 1) END",
                  text, position, text, position + 1)

    def affix(self, name: str, text: _S, affix: _S) -> _S:
        if name == "starts_with":
            return _q("(left({}, length({})) = {})", text, affix, affix)
        return _q("(right({}, length({})) = {})", text, affix, affix)

    def days_between(self, later: Any, earlier: Any) -> _S:
        return _q("(({})::date - ({})::date)::numeric", later, earlier)

    def add_days(self, c: _Compiler, day: _S, days: int) -> _S:
        """In days since 0001-01-01, checked against 9999-12-31 (Python's range)."""
        ordinal = _q("(({})::date - DATE '0001-01-01' + CAST({} AS integer))", day, days)
        return c.let([ordinal], lambda q: _q(
            "CASE WHEN {} BETWEEN 0 AND 3652058 THEN to_char(DATE '0001-01-01' + {}, 'YYYY-MM-DD') END",
            q[0], q[0]))

    def date_micros(self, day: _S, offset: int) -> _S:
        return _q("((({})::date - DATE '1970-01-01')::numeric * 86400000000 - {})", day, offset)

    def iso_micros(self, c: _Compiler, text: _S) -> _S:
        return _q("(extract(epoch from ({})::timestamptz) * 1000000)", text)

    def durations(self, c: _Compiler, sql: _S) -> _S:
        """A duration out of timedelta's range is Python's OverflowError: null."""
        low, high = _TIMEDELTA
        return c.let([sql], lambda p: _q("CASE WHEN {} BETWEEN {} AND {} THEN {} END", p[0], low, high, p[0]))

    def negate(self, c: _Compiler, e: _E) -> _E:
        if e.kind == "duration":
            return _E("duration", self.durations(c, _q("(- {})", e.sql)))
        return _E("number", _q("(- {})", e.sql), numtype=e.numtype, inf=e.inf, nan=e.nan)

    # --- numbers ---

    def numbers(self, c: _Compiler, op: str, a: _E, b: _E) -> _E:
        """``a op b`` of two numbers as Python computes it (see above)."""
        ta, tb = a.numtype, b.numtype
        ints = ta == tb == "int"
        floats = "float" in (ta, tb)
        if op == "%":
            numtype = "int" if ints else "float" if floats else ""
            inf, nan = b.inf, a.inf or a.nan or b.nan
        else:
            numtype = "float" if op == "/" else "int" if ints else "float" if floats else ""
            inf, nan = not ints, a.inf or a.nan or b.inf or b.nan
        if ints and op in "+-*":
            return _E("number", _q(f"({{}} {op} {{}})", a.sql, b.sql), numtype="int")

        def build(parts: list[_S]) -> _S:
            x, y = parts

            def as_floats() -> _S:
                doubles = self.float_arithmetic(c, op, self.to_float(x, a), self.to_float(y, b))
                return self.to_numeric(c, doubles)

            if ints:
                body = self.int_arithmetic(c, op, x, y)
            elif floats:
                body = as_floats()
            else:
                tests = [_q("scale({}) = 0", v) for v, t in ((x, ta), (y, tb)) if t != "int"]
                body = _q("CASE WHEN " + " AND ".join(["{}"] * len(tests)) + " THEN {} ELSE {} END",
                          *tests, self.int_arithmetic(c, op, x, y), as_floats())
            if op in "/%":
                body = _q("CASE WHEN {} = 0 THEN NULL ELSE {} END", y, body)
            return _q("({})", body)

        return _E("number", c.let([a.sql, b.sql], build), numtype=numtype, inf=inf, nan=nan)

    def int_arithmetic(self, c: _Compiler, op: str, x: _S, y: _S) -> _S:
        """Of two ints (``y`` is not 0 for ``/`` and ``%``)."""
        if op in "+-*":
            return _q(f"({{}} {op} {{}})", x, y)
        if op == "%":
            return c.let([_q("mod({}, {})", x, y)], lambda r: self.divisors_sign(r[0], y))
        # true division: exact below 2^53, like CPython, else the exact quotient rounded once
        exact = self.rounded(c, self.quotient(c, x, y), overflow=NULL)
        quotient = _q("CASE WHEN abs({}) <= {} AND abs({}) <= {} THEN ({})::float8 / ({})::float8"
                      " ELSE {} END", x, _TWO53, y, _TWO53, x, y, exact)
        return self.to_numeric(c, quotient)

    def divisors_sign(self, r: _S, divisor: _S) -> _S:
        """A remainder (C's, with the dividend's sign) given the divisor's sign, as Python does."""
        return _q("CASE WHEN {} <> 0 AND ({} < 0) <> ({} < 0) THEN {} + {} ELSE {} END",
                  r, r, divisor, r, divisor, r)

    def float_arithmetic(self, c: _Compiler, op: str, p: _S, q: _S) -> _S:
        """``p op q`` of two doubles as IEEE arithmetic (``q`` is not 0 for ``/`` and ``%``),
        without PostgreSQL's overflow and underflow errors."""

        def build(v: list[_S]) -> _S:
            p, q = v
            special = _q("(abs({}) = 'Infinity' OR abs({}) = 'Infinity' OR {} = 'NaN' OR {} = 'NaN')",
                         p, q, p, q)
            native = _q(f"({{}} {op} {{}})", p, q)
            if op in "+-":
                safe = _q("abs({}) <= 1e307::float8 AND abs({}) <= 1e307::float8", p, q)
                exact = _q(f"({{}} {op} {{}})", self.exact(c, p), self.exact(c, q))
            elif op == "*":
                safe = _q("abs({}) <= 1e154::float8 AND abs({}) <= 1e154::float8"
                          " AND (abs({}) >= 1e-154::float8 OR {} = 0)"
                          " AND (abs({}) >= 1e-154::float8 OR {} = 0)", p, q, p, p, q, q)
                special = _q("{} OR {} = 0 OR {} = 0", special, p, q)
                exact = _q("({} * {})", self.exact(c, p), self.exact(c, q))
            elif op == "/":
                safe = _q("abs({}) <= 1e154::float8 AND abs({}) <= 1e154::float8"
                          " AND abs({}) >= 1e-154::float8 AND (abs({}) >= 1e-154::float8 OR {} = 0)",
                          p, q, q, p, p)
                special = _q("{} OR {} = 0", special, p)
                exact = self.quotient(c, self.exact(c, p), self.exact(c, q))
            else:
                return self.fmod(c, p, q)
            return _q("CASE WHEN {} THEN {} WHEN {} THEN {} ELSE {} END", safe, native, special, native,
                      self.rounded(c, exact, overflow=None))

        return c.let([p, q], build)

    def fmod(self, c: _Compiler, p: _S, q: _S) -> _S:
        """CPython's float ``%``: ``fmod`` (exact), then the sign of the divisor."""
        fmod = _q("(mod({}, {}))::float8", self.exact(c, p), self.exact(c, q))  # exact: no rounding
        remainder = c.let([fmod], lambda r: self.divisors_sign(r[0], q))
        return _q("CASE WHEN {} IS NULL OR {} IS NULL THEN NULL"
                  " WHEN {} = 'NaN' OR {} = 'NaN' OR abs({}) = 'Infinity' THEN 'NaN'::float8"
                  " WHEN abs({}) = 'Infinity'"
                  " THEN CASE WHEN {} <> 0 AND ({} < 0) <> ({} < 0) THEN {} ELSE {} END"  # x % ±inf
                  " ELSE {} END", p, q, p, q, p, q, p, p, q, q, p, remainder)

    def quotient(self, c: _Compiler, a: _S, b: _S) -> _S:
        """``a / b`` of two exact numerics, to 1076 decimals with a sticky last digit: every
        double, and every midpoint between two, is a multiple of 2^-1075, so this rounds to the
        same double as the exact quotient would."""
        def digits(v: list[_S]) -> _S:
            return c.let([_q("abs({}) * 1e1076", v[0]), _q("abs({})", v[1])], lambda w: _q(
                "(sign({}) * sign({}) * (div({}, {}) * 10 + CASE WHEN mod({}, {}) = 0 THEN 0 ELSE 1 END)"
                " * 1e-1077)", v[0], v[1], w[0], w[1], w[0], w[1]))

        return c.let([a, b], digits)

    def rounded(self, c: _Compiler, exact: _S, *, overflow: _S | None) -> _S:
        """An exact numeric rounded to the nearest double (ties to even); beyond the largest
        double, ``overflow`` (None: an infinity of the same sign)."""

        def build(v: list[_S]) -> _S:
            x = v[0]
            big = overflow if overflow is not None else _q(
                "CASE WHEN {} > 0 THEN 'Infinity'::float8 ELSE '-Infinity'::float8 END", x)
            return _q(f"CASE WHEN abs({{}}) >= {_OVERFLOW} THEN {{}} WHEN abs({{}}) * {_UNDERFLOW} <= 1"
                      " THEN 0::float8 ELSE ({})::float8 END", x, big, x, x)

        return c.let([exact], build)

    def exact(self, c: _Compiler, p: _S) -> _S:
        """The exact value of a (finite) double as numeric, from its bits."""
        bits = _q("('x' || encode(float8send({}), 'hex'))::bit(64)::bigint", p)

        def build(v: list[_S]) -> _S:
            b = v[0].text
            e = f"(({b} >> 52) & 2047)"
            low = f"(greatest({e}, 1) - 1075)"
            text = (f"(CASE WHEN {b} < 0 THEN -1 ELSE 1 END"  # sign * mantissa * 2^exponent
                    f" * (({b} & 4503599627370495)"
                    f" + CASE WHEN {e} = 0 THEN 0 ELSE 4503599627370496 END)::numeric"
                    f" * CASE WHEN {e} >= 1075 THEN 2::numeric ^ ({e} - 1075)"
                    f" ELSE 5::numeric ^ (- {low}) * ('1e' || {low})::numeric END)")
            assert not v[0].params  # a bound name
            return _S(text)

        return c.let([bits], build)

    def to_float(self, x: _S, e: _E) -> _S:
        """A number as a double, as Python's float(): null (OverflowError) for an int too large."""
        if e.constant:
            try:
                float(e.const)
            except OverflowError:
                return NULL  # (not a cast that fails: PostgreSQL folds constants before it runs)
            return _q("({})::float8", x)
        if e.numtype == "float":
            return _q("({})::float8", x)
        if e.numtype == "int":
            return _q(f"CASE WHEN abs({{}}) < {_OVERFLOW} THEN ({{}})::float8 END", x, x)
        return _q(f"CASE WHEN scale({{}}) = 0 AND abs({{}}) >= {_OVERFLOW} THEN NULL ELSE ({{}})::float8 END",
                  x, x, x)

    def to_numeric(self, c: _Compiler, double: _S) -> _S:
        """A double back as a number: its shortest text, with a scale (a float)."""
        return _q(f"({_FLOAT_TEXT}::numeric + 0.0)", double)

    def exact_if_large(self, c: _Compiler, e: _E) -> _S:
        """The number for comparing: a float from 2^53 on (which PostgreSQL and Python may
        print differently) as its exact value; ints, and smaller floats, as they are."""
        if e.numtype == "int":
            return e.sql
        if e.constant:
            return _p(Decimal(e.const))
        def build(v: list[_S]) -> _S:
            kept = [_q("scale({}) = 0", v[0])] if e.numtype != "float" else []
            kept += [_q(f"abs({{}}) < {_TWO53}", v[0]), _q("{} = 'NaN'", v[0]),
                     _q("abs({}) = 'Infinity'", v[0])]
            return _q("CASE WHEN " + " OR ".join(["{}"] * len(kept)) + " THEN {} ELSE {} END",
                      *kept, v[0], self.exact(c, _q("({})::float8", v[0])))

        return c.let([e.sql], build)

    def number_relation(self, c: _Compiler, op: str, a: _E, b: _E) -> _S:
        x, y = a.sql, b.sql
        if not (a.numtype == b.numtype == "int" or _small(a) or _small(b)):
            x, y = self.exact_if_large(c, a), self.exact_if_large(c, b)
        equality = op in ("==", "=", "!=")
        if not (a.nan and b.nan if equality else a.nan or b.nan):  # NaN = NaN, and NaN > x, in PostgreSQL
            return _q(f"({{}} {_PG_OPS.get(op, op)} {{}})", x, y)

        def build(v: list[_S]) -> _S:
            x, y = v
            if op == "==":
                return _q("(({} IS NOT DISTINCT FROM {}) AND {} IS DISTINCT FROM 'NaN')", x, y, x)
            if op == "=":
                return _q("({} = {} AND {} <> 'NaN')", x, y, x)
            if op == "!=":
                return _q("(({} IS DISTINCT FROM {}) OR COALESCE({} = 'NaN', FALSE))", x, y, x)
            checks = [_q("{} <> 'NaN'", v) for v, e in ((x, a), (y, b)) if e.nan]
            return _q(f"({{}} {op} {{}}" + " AND {}" * len(checks) + ")", x, y, *checks)

        return c.let([x, y], build)


def _small(e: _E) -> bool:
    """A constant number that compares exactly with any number in its SQL form."""
    return e.constant and e.kind == "number" and abs(e.const) < _TWO53


def _float_decimal(value: float) -> Decimal:
    """A float as the decimal Python writes it, with a scale (so that it stays a float)."""
    text = format(Decimal(repr(value)), "f")
    return Decimal(text if "." in text else text + ".0")


def _pg_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (int, Decimal)):
        return "numeric"
    raise AssertionError(f"no PostgreSQL parameter for {type(value).__name__}")


_DIALECTS = {"sqlite": _SQLite(), "postgresql": _PostgreSQL(), "postgres": _PostgreSQL()}


# --- The compiler ---------------------------------------------------------------------------


class _Compiler:
    def __init__(self, schema: Mapping[str, Type], now: datetime, tz: tzinfo, column: str, dialect):
        self.dialect = dialect
        self.schema = schema
        self.now = now
        self.tz = tz
        self.column = column
        self.ctx = Context(now=now, tz=tz)  # for the runtime's own functions (warnings ignored)
        self.fixed = _fixed_offset(tz)
        self._dynamic: dict[int, bool] = {}
        self._names = itertools.count(1)

    # --- entry points ---

    def condition(self, node: Node) -> _S:
        return self.truth(self.value(node))

    def truth(self, e: _E) -> _S:
        """SQL that is true (non-zero) exactly when the value is ``true``: NULL and 0 are not."""
        if e.constant:
            return self.dialect.true if e.const is True else self.dialect.false
        return e.sql if e.kind == "bool" else self.dialect.false

    def truth_nullable(self, e: _E) -> bool:
        return not e.constant and e.kind == "bool" and e.nullable

    def exact(self, e: _E) -> _E:
        """The value itself: a condition whose NULL means false becomes 0."""
        if e.kind == "bool" and e.falsy_null and e.nullable:
            return replace(e, sql=_q("COALESCE({}, {})", e.sql, self.dialect.false), nullable=False,
                           falsy_null=False)
        if e.kind == "list" and e.sql is None:
            raise Unsupported("a list as a value")
        return e

    def boolean(self, value: bool) -> _E:
        return _E("bool", self.dialect.true if value else self.dialect.false, nullable=False, const=value)

    def val(self, node: Node) -> _E:
        return self.exact(self.value(node))

    # --- constants ---

    def is_dynamic(self, node: Node) -> bool:
        """Whether the node depends on the partner (or on facts, or the event)."""
        key = id(node)
        if key not in self._dynamic:
            if isinstance(node, Name):
                found = node.name in ("partner", "event")
            elif isinstance(node, Call) and node.function in FACTS:
                found = True
            else:
                found = any(self.is_dynamic(child) for child in node.children())
            self._dynamic[key] = found
        return self._dynamic[key]

    def evaluate(self, node: Node) -> Any:
        """A constant sub-expression's value, from the Python back end itself."""
        try:
            compiled = compile_expression(node)
        except CompileError as exc:
            raise Unsupported(str(exc)) from None
        return compiled({}, Context(now=self.now, tz=self.tz))

    def constant(self, value: Any) -> _E:
        k = runtime.kind(value)
        if k == "null":
            return NULL_E
        if k == "bool":
            return self.boolean(value)
        if k == "number":
            if isinstance(value, float) and not math.isfinite(value):
                raise Unsupported("a number that is not finite")
            if isinstance(value, int) and not -self.dialect.int_limit <= value < self.dialect.int_limit:
                raise Unsupported("an integer beyond 64 bits" if self.dialect.int_limit == INT64 else
                                  "an integer of more than 1000 digits")
            numtype = "int" if isinstance(value, int) else "float"
            return _E("number", self.dialect.number_constant(value), nullable=False, const=value,
                      numtype=numtype)
        if k == "string":
            self.dialect.check_string(str(value))
            return _E("string", _p(str(value)), nullable=False, const=value, values=frozenset([value]))
        if k == "date":
            return _E("date", _p(value.isoformat()), nullable=False, const=value)
        if k == "datetime":
            moment = runtime.local(value, self.tz)
            try:
                text = moment.astimezone(UTC).isoformat()
            except (ArithmeticError, ValueError):
                raise Unsupported("a datetime at the end of the calendar") from None
            return _E("datetime", _p(text), nullable=False, form="iso", const=moment)
        if k == "duration":
            micros = value // MICROSECOND
            if not -INT64 // 4 <= micros < INT64 // 4:
                raise Unsupported("a duration beyond 64 bits of microseconds")
            return _E("duration", _p(micros), nullable=False, const=value)
        if k == "list":
            return _E("list", nullable=False, const=value, items=tuple(self.constant(v) for v in value))
        raise Unsupported(f"a constant {k}")

    # --- nodes ---

    def value(self, node: Node) -> _E:
        if not self.is_dynamic(node):
            return self.constant(self.evaluate(node))
        if isinstance(node, Attribute):
            if isinstance(node.value, Name) and node.value.name == "partner":
                return self.field(node.name)
            raise Unsupported("fields of anything but the partner")
        if isinstance(node, Index):
            return self.index(node)
        if isinstance(node, Name):
            raise Unsupported(f"'{node.name}' as a value")
        if isinstance(node, ListExpr):
            return _E("list", nullable=False, items=tuple(self.value(item) for item in node.items))
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Binary):
            return self.binary(node)
        if isinstance(node, Call):
            return self.call(node)
        raise Unsupported(f"{type(node).__name__} nodes")

    def field(self, name: str) -> _E:
        self.dialect.check_name(name)
        declared = self.schema.get(name)
        if declared is None:
            raise Unsupported(f"the field '{name}' is not in the schema")
        path = self.dialect.path(name)
        kind = declared.kind
        sql = self.dialect.field(self.column, path, kind)
        if kind in ("string", "number", "bool", "date"):
            return _E(kind, sql)
        if kind == "enum":
            return _E("string", sql, values=frozenset(declared.values))
        if kind == "datetime":
            return _E("datetime", sql, form="iso")
        listed = declared.item.kind if declared.item is not None else None
        if kind == "list" and listed in ("string", "number", "enum"):
            item = "string" if declared.item.kind == "enum" else declared.item.kind
            return _E("list", sql, path=path, item=item)
        raise Unsupported(f"fields of type {declared}")

    def index(self, node: Index) -> _E:
        if self.is_dynamic(node.index):
            raise Unsupported("an index that depends on the partner")
        key = self.evaluate(node.index)
        if isinstance(node.value, Name) and node.value.name == "partner":
            if runtime.kind(key) == "string":
                return self.field(key)
            return NULL_E  # null, or a surprise: null
        container = self.value(node.value)
        if container.kind == "null" or key is None:
            return NULL_E
        position = key if runtime.kind(key) == "number" and isinstance(key, int) else None
        if container.kind == "list":
            if position is None:
                return NULL_E  # a surprise: null
            if container.items is not None:
                return container.items[position] if 0 <= position < len(container.items) else NULL_E
            if position < 0:
                return NULL_E
            item = self.dialect.list_item(self.column, container.path, position, container.item)
            return _E(container.item, item)
        if container.kind == "string":
            if position is None or position < 0:
                return NULL_E
            return _E("string", self.let([container.sql], lambda p: self.dialect.char_at(p[0], position)))
        return NULL_E  # numbers, dates… cannot be indexed: a surprise, null

    def let(self, parts: list[_S], build: Callable[[list[_S]], _S]) -> _S:
        """``build`` over the parts, each evaluated once: simple parts are repeated as they
        are, others bound by a one-row subquery."""
        if all(p.simple for p in parts):
            return build(parts)
        names = [f"_v{next(self._names)}" for _ in parts]
        alias = f"_l{next(self._names)}"
        body = build([_S(name, simple=True) for name in names])
        columns = ", ".join(f"{{}} AS {name}" for name in names)
        return _q(f"(SELECT {{}} FROM (SELECT {columns}{self.dialect.fence}) AS {alias})", body, *parts)

    # --- operators ---

    def unary(self, node: Unary) -> _E:
        if node.op == "not":
            operand = self.value(node.operand)
            inner = self.truth(operand)
            if self.truth_nullable(operand):
                return _bool(_q("(NOT COALESCE({}, {}))", inner, self.dialect.false), False)
            return _bool(_q("(NOT {})", inner), False)
        operand = self.val(node.operand)
        if operand.kind in ("number", "duration"):
            return self.dialect.negate(self, operand)
        return NULL_E  # null, or a surprise: null

    def binary(self, node: Binary) -> _E:
        if node.op in ("and", "or"):
            left, right = self.value(node.left), self.value(node.right)
            sql = _q(f"({{}} {node.op.upper()} {{}})", self.truth(left), self.truth(right))
            return _bool(sql, self.truth_nullable(left) or self.truth_nullable(right))
        if node.op in ("==", "!=", "<", "<=", ">", ">="):
            special = self.days_since_comparison(node)
            if special is not None:
                return special
            return self.compare(node.op, self.value(node.left), self.value(node.right))
        if node.op in ("in", "not in"):
            return self.membership(node.op, self.value(node.left), self.value(node.right))
        return self.arithmetic(node.op, self.val(node.left), self.val(node.right))

    # --- comparisons ---

    def null_test(self, e: _E) -> _S:
        if e.constant:
            return self.dialect.true if e.const is None else self.dialect.false
        if e.kind == "list" and e.sql is None:
            return self.dialect.false
        return _q("({} IS NULL)", self.exact(e).sql)

    def compare(self, op: str, a: _E, b: _E) -> _E:
        if op in ("==", "!="):
            if a.kind == "null" or b.kind == "null":  # null is a value
                other = b if a.kind == "null" else a
                test = self.null_test(other)
                return _bool(test if op == "==" else _q("(NOT {})", test), False)
            if not _comparable(a.kind, b.kind):  # both null: equal; one: not; neither: surprise
                if op == "==":
                    return _bool(_q("({} AND {})", self.null_test(a), self.null_test(b)), False)
                return _bool(_q("({} <> {})", self.null_test(a), self.null_test(b)), False)
            if a.kind == "list":
                raise Unsupported("equality of lists")
        elif a.kind not in _ORDERED_KINDS or b.kind not in _ORDERED_KINDS or not _comparable(a.kind, b.kind):
            return self.boolean(False)  # null, or types without an order between them
        threshold = self.date_against_constant(op, a, b)
        if threshold is not None:
            return threshold
        if op in ("==", "!=") and self.never_equal(a, b):
            return self.boolean(op == "!=")  # null == T is false and null != T true, like the rest
        if op == "==" and not (a.nullable and b.nullable):
            op = "="
        return self.relation(op, a, b)

    def relation(self, op: str, a: _E, b: _E) -> _E:
        """``a op b`` of two values of comparable kinds: ``op`` is ``==`` or ``!=`` (null as a
        value), ``=`` (never true with a null) or an order (false with a null)."""
        a, b = self.exact(a), self.exact(b)
        x, y, domain = self.aligned(a, b)
        sql = self.dialect.relation(self, op, x, y, domain, a, b)
        nullable = {"==": False, "!=": False, "=": True}.get(op, a.nullable or b.nullable)
        return _bool(sql, nullable)

    def never_equal(self, a: _E, b: _E) -> bool:
        """A constant local time in a DST fold or gap (a datetime, or a date's midnight) never
        equals a stored (UTC) datetime: Python's ``==`` across time zones says so (PEP 495)."""
        for constant, other in ((a, b), (b, a)):
            if constant.constant and constant.kind in ("date", "datetime") and not other.constant \
                    and other.kind == "datetime":
                moment = constant.const
                if constant.kind == "date":
                    moment = datetime.combine(moment, time(), self.tz)
                return _ambiguous(moment)
        return False

    def aligned(self, a: _E, b: _E) -> tuple[_S, _S, str]:
        """The two SQL values to compare, in one representation, and which: ``text`` (strings,
        dates, UTC ISO datetimes), ``number``, ``bool`` or ``micros`` (durations, instants)."""
        a, b = self.exact(a), self.exact(b)
        if a.kind == "date" and a.constant and b.kind == "datetime":  # its local midnight
            a = self.constant(datetime.combine(a.const, time(), self.tz))
        if b.kind == "date" and b.constant and a.kind == "datetime":
            b = self.constant(datetime.combine(b.const, time(), self.tz))
        if a.kind == b.kind and a.kind != "datetime":
            return a.sql, b.sql, _DOMAINS[a.kind]
        if a.kind == b.kind == "datetime" and a.form == b.form == "iso":
            return a.sql, b.sql, "text"
        return self.us(a, guard=False), self.us(b, guard=False), "micros"

    def us(self, e: _E, *, guard: bool) -> _S:
        """A date or datetime as epoch microseconds. A per-row date needs a fixed-offset zone;
        ``guard``: null when its instant is outside the datetime range (Python's overflow)."""
        if e.constant:
            moment = e.const if e.kind == "datetime" else datetime.combine(e.const, time(), self.tz)
            micros = _micros(moment)
            if guard and not MIN_US <= micros <= MAX_US:
                return NULL
            return _p(micros)
        if e.kind == "datetime":
            if e.form == "us":
                return e.sql
            return self.dialect.iso_micros(self, e.sql)
        if self.fixed is None:
            raise Unsupported(f"a date's local midnight in {self.tz}, a timezone with DST, for every row")
        offset = self.fixed // MICROSECOND
        day = self.dialect.date_micros(e.sql, offset)
        if not guard:
            return day
        return self.in_range(day)

    def in_range(self, micros: _S) -> _S:
        return self.let([micros], lambda p: _q(
            "CASE WHEN {} BETWEEN {} AND {} THEN {} END", p[0], MIN_US, MAX_US, p[0]))

    def date_against_constant(self, op: str, a: _E, b: _E) -> _E | None:
        """A per-row date against a constant datetime: Python compares the date's local
        midnight, a monotonic function of the date, so the dates where the comparison holds
        are a range, found with the runtime's own comparison."""
        if a.kind == "date" and not a.constant and b.kind == "datetime" and b.constant:
            day, moment, date_left = a, b.const, True
        elif b.kind == "date" and not b.constant and a.kind == "datetime" and a.constant:
            day, moment, date_left = b, a.const, False
        else:
            return None
        ctx = self.ctx

        def test(operator: str) -> Callable[[date], bool]:
            function = runtime.BINARY[operator]
            return (lambda d: function(d, moment, ctx)) if date_left else (lambda d: function(moment, d, ctx))

        if op in ("<", "<=", ">", ">="):
            return self.date_interval(day, _split(test(op)), negate=False)
        # equal: only the first date whose midnight is not before the moment can be
        before = _split(lambda d: runtime.less(d, moment, ctx))
        first = _MIN_DAY if before == EMPTY else before[1]
        interval = EMPTY
        if first is not None and runtime.equal(date.fromordinal(first), moment, ctx):
            interval = (first, first + 1)
        return self.date_interval(day, interval, negate=op == "!=")

    def date_interval(self, day: _E, interval, *, negate: bool) -> _E:
        """``day`` within the interval; ``negate``: not within it, or null (``!=``)."""
        if interval == EMPTY:
            return self.boolean(negate)
        lo, hi = interval
        if lo is not None and hi is not None and hi == lo + 1:
            return self.bounded(day, [("=", date.fromordinal(lo).isoformat())], negate)
        bounds = []
        if lo is not None:
            bounds.append((">=", date.fromordinal(lo).isoformat()))
        if hi is not None:
            bounds.append(("<", date.fromordinal(hi).isoformat()))
        return self.bounded(day, bounds, negate)

    def bounded(self, value: _E, bounds: list[tuple[str, Any]], negate: bool) -> _E:
        """``value`` within the bounds (each ``(operator, constant)``); ``negate``: not within
        them, or null. No bounds: any value but null."""

        textual = value.kind == "date" or value.form == "iso"

        def build(parts: list[_S]) -> _S:
            v = parts[0]
            if not bounds:
                test = _q("({} IS NOT NULL)", v)
            else:
                tests = [self.dialect.order(op, v, bound, textual) for op, bound in bounds]
                test = _q("(" + " AND ".join(["{}"] * len(tests)) + ")", *tests)
            return _q("COALESCE(NOT {}, {})", test, self.dialect.true) if negate else test

        sql = self.let([value.sql], build) if len(bounds) > 1 else build([value.sql])
        return _bool(sql, value.nullable and bool(bounds) and not negate)

    def days_since_comparison(self, node: Binary) -> _E | None:
        """``days_since(x) <op> c`` with a constant number ``c``: days_since is a monotonic
        step function of ``x``, so the comparison holds on a range of ``x`` (dates or
        instants), whose ends are found with the runtime's own arithmetic."""
        op, call, other = node.op, node.left, node.right
        if not (isinstance(call, Call) and call.function == "days_since" and len(call.args) == 1):
            op, call, other = _FLIP[op], node.right, node.left
            if not (isinstance(call, Call) and call.function == "days_since" and len(call.args) == 1):
                return None
        if self.is_dynamic(other) or not self.is_dynamic(call):
            return None
        c = self.evaluate(other)
        if runtime.kind(c) != "number" or (isinstance(c, float) and not math.isfinite(c)):
            return None
        argument = self.val(call.args[0])
        if argument.kind not in ("date", "datetime"):
            return None
        today, ctx = self.ctx.today, self.ctx

        def test(operator: str) -> Callable[[date], bool]:  # the comparison, for a local date
            function = runtime.BINARY[operator]
            return lambda d: function((today - d).days, c, ctx)

        if op in ("<", "<=", ">", ">="):
            interval, negate = _split(test(op)), False
        else:
            interval, negate = _intersect(_split(test("<=")), _split(test(">="))), op == "!="
        if argument.kind == "date":
            return self.date_interval(argument, interval, negate=negate)
        return self.instant_interval(argument, interval, negate=negate)

    def instant_interval(self, moment: _E, interval, *, negate: bool) -> _E:
        """A datetime whose local date is within the interval of dates (and exists)."""
        if interval == EMPTY:
            return self.boolean(negate)
        lo, hi = interval
        start = _day_start(date.fromordinal(lo), self.tz) if lo is not None else None
        end = _day_start(date.fromordinal(hi), self.tz) if hi is not None else None
        first, last = _local_range(self.tz)
        if first is not None and (start is None or start < first):
            start = first
        if last is not None and (end is None or end > last):
            end = last
        if start is not None and end is not None and start >= end:
            return self.boolean(negate)
        encode = (lambda t: t.isoformat()) if moment.form == "iso" else _micros
        bounds = []
        if start is not None:
            bounds.append((">=", encode(start)))
        if end is not None:
            bounds.append(("<", encode(end)))
        return self.bounded(moment, bounds, negate)

    # --- membership ---

    def membership(self, op: str, x: _E, container: _E) -> _E:
        if x.kind == "null" or container.kind == "null":
            return self.boolean(False)
        x = self.exact(x)
        if container.kind == "string":
            if x.kind != "string":
                return self.boolean(False)  # a surprise, or null: false either way
            return _bool(self.dialect.substring(container.sql, x.sql, op == "in"), True)
        if container.kind != "list":
            return self.boolean(False)
        if x.kind == "list":
            raise Unsupported("a list in a list")
        if container.items is not None:
            return self.in_list(op, x, container.items)
        if not _comparable(x.kind, container.item):
            raise Unsupported(f"a {x.kind} in a list of {container.item}s")
        column = self.column

        def build(parts: list[_S]) -> _S:
            item = parts[0]
            exists = self.dialect.list_contains(self, column, container.path, item, x, container.item)
            if op == "in":
                return exists
            is_array = self.dialect.is_array(column, container.path)
            return _q("({} IS NOT NULL AND {} AND NOT {})", item, is_array, exists)

        return _bool(self.let([x.sql], build), op == "not in")  # no array there: NULL AND …

    def in_list(self, op: str, x: _E, items: tuple[_E, ...]) -> _E:
        """``x in [...]``: found when an item equals x (null items are skipped); ``not in``
        also needs x not null and no item of a type that cannot equal x (a surprise)."""
        constants, others, mismatched = [], [], []
        for item in items:
            if item.kind == "null":
                continue
            if not _comparable(x.kind, item.kind):
                mismatched.append(item)
            elif x.constant and item.constant:
                if runtime.same(x.const, item.const, self.tz):  # decided here, in Python
                    return self.boolean(op == "in")
            elif self.never_equal(x, item):
                continue
            elif item.constant and item.kind == x.kind and (x.kind != "datetime" or x.form == "iso") \
                    and self.dialect.plain_in(item):
                constants.append(item.sql)
            else:
                others.append(item)
        if op == "not in" and any(m.constant for m in mismatched):
            return self.boolean(False)  # x null, found, or a surprise: false in all three

        def build(parts: list[_S]) -> _S:
            bound = replace(x, sql=parts[0])
            tests = []
            if constants:
                tests.append(_q("{} IN (" + ", ".join(["{}"] * len(constants)) + ")", bound.sql, *constants))
            tests += [self.truth(self.equal_not_null(bound, item)) for item in others]
            found = _q("(" + " OR ".join(["{}"] * len(tests)) + ")", *tests) if tests else self.dialect.false
            if op == "in":
                return found
            checks = [_q("{} IS NOT NULL", bound.sql), _q("NOT COALESCE({}, {})", found, self.dialect.false)]
            checks += [_q("{} IS NULL", self.exact(m).sql) for m in mismatched]
            return _q("(" + " AND ".join(["{}"] * len(checks)) + ")", *checks)

        uses = len(others) + (1 if constants else 0) + (1 if op == "not in" else 0)
        sql = self.let([x.sql], build) if uses > 1 else build([x.sql])
        return _bool(sql, op == "in")

    def equal_not_null(self, a: _E, b: _E) -> _E:
        """``a == b`` for use inside ``in``: never true when either is null."""
        threshold = self.date_against_constant("==", a, b)
        if threshold is not None:
            return threshold
        return self.relation("=", a, b)

    # --- arithmetic ---

    def arithmetic(self, op: str, a: _E, b: _E) -> _E:
        if a.kind == "null" or b.kind == "null":
            return NULL_E
        ka, kb = a.kind, b.kind
        if ka == kb == "number":
            return self.dialect.numbers(self, op, a, b)
        if op == "+" and ka == kb == "string":
            return _E("string", _q("({} || {})", a.sql, b.sql))
        if op in "+-" and ka == kb == "duration":
            return _E("duration", self.dialect.durations(self, _q(f"({{}} {op} {{}})", a.sql, b.sql)))
        if op == "+" and ka == "duration" and kb in ("date", "datetime"):
            return self.shift(b, a, 1)
        if op in "+-" and ka in ("date", "datetime") and kb == "duration":
            return self.shift(a, b, 1 if op == "+" else -1)
        if op == "-" and ka in ("date", "datetime") and kb in ("date", "datetime"):
            if ka == kb == "date":
                days = self.dialect.days_between(a.sql, b.sql)
                return _E("duration", _q("({} * 86400000000)", days))
            return _E("duration", _q("({} - {})", self.us(a, guard=True), self.us(b, guard=True)))
        return NULL_E  # a surprise: null

    def shift(self, moment: _E, by: _E, sign: int) -> _E:
        """``moment ± by``: whole days keep a date a date; anything else is elapsed time."""
        if moment.kind == "date":
            if not by.constant:
                raise Unsupported("a date plus a duration that is not constant")
            delta = by.const * sign
            if not delta.seconds and not delta.microseconds:
                return _E("date", self.dialect.add_days(self, moment.sql, delta.days))
        micros = self.us(moment, guard=True)
        moved = _q(f"({{}} {'+' if sign > 0 else '-'} {{}})", micros, by.sql)
        return _E("datetime", self.in_range(moved), form="us")

    # --- functions ---

    def call(self, node: Call) -> _E:
        name = node.function
        if name in FACTS:
            raise Unsupported(f"{name}() asks the store, not the record")
        if name == "matches":
            raise Unsupported("matches(): Python's regular expressions are not SQLite's")
        if name == "coalesce":
            return self.coalesce([self.val(arg) for arg in node.args])
        if name == "contains" and len(node.args) == 2:
            return self.membership("in", self.value(node.args[1]), self.value(node.args[0]))
        args = [self.val(arg) for arg in node.args]
        if name in ("starts_with", "ends_with") and len(args) == 2:
            text, affix = args
            if text.kind != "string" or affix.kind != "string":
                return self.boolean(False)  # null or a surprise: false
            sql = self.let([text.sql, affix.sql], lambda p: self.dialect.affix(name, p[0], p[1]))
            return _bool(sql, True)
        if len(args) != 1:
            raise Unsupported(f"{name}() with {len(args)} arguments")
        (arg,) = args
        if arg.kind == "null":
            return NULL_E
        if name in ("lower", "upper"):
            if arg.kind != "string":
                return NULL_E
            if arg.values is None:
                raise Unsupported(f"{name}() of a string: SQLite changes the case of ASCII letters only")
            mapped = {v: v.lower() if name == "lower" else v.upper() for v in sorted(arg.values)}
            cases = " ".join(["WHEN {} THEN {}"] * len(mapped))
            parts = [part for pair in mapped.items() for part in pair]
            sql = _q(f"(CASE {{}} {cases} END)", arg.sql, *parts)
            return _E("string", sql, values=frozenset(mapped.values()))
        if name == "len":
            if arg.kind == "string":
                return _E("number", self.dialect.length(arg.sql), numtype="int")
            if arg.kind == "list" and arg.items is not None:
                return self.constant(len(arg.items))
            if arg.kind == "list":
                return _E("number", self.dialect.list_length(self.column, arg.path), numtype="int")
            return NULL_E
        if name == "days_since":
            if arg.kind == "date":
                today = self.ctx.today.isoformat()
                return _E("number", self.dialect.days_between(today, arg.sql), numtype="int")
            if arg.kind == "datetime":
                raise Unsupported("days_since() of a datetime, other than compared with a constant number")
            return NULL_E
        raise Unsupported(f"the function {name}()")

    def coalesce(self, args: list[_E]) -> _E:
        useful = []
        for arg in args:
            if arg.kind == "null":
                continue
            useful.append(arg)
            if not arg.nullable:
                break  # never null: the ones after it are never reached
        if not useful:
            return NULL_E
        kinds = {a.kind for a in useful}
        if len(kinds) > 1:
            raise Unsupported("coalesce() of values of different types")
        kind = kinds.pop()
        if kind == "list":
            raise Unsupported("coalesce() of lists")
        if len(useful) == 1:
            return useful[0]
        form = ""
        if kind == "datetime":
            forms = {a.form for a in useful}
            form = "iso" if forms == {"iso"} else "us"
            parts = [a.sql for a in useful] if form == "iso" else [self.us(a, guard=False) for a in useful]
        else:
            parts = [a.sql for a in useful]
        values = None
        if all(a.values is not None for a in useful):
            values = frozenset().union(*(a.values for a in useful))
        sql = _q("COALESCE(" + ", ".join(["{}"] * len(parts)) + ")", *parts)
        numtypes = {a.numtype for a in useful}
        return _E(kind, sql, nullable=all(a.nullable for a in useful), form=form, values=values,
                  numtype=numtypes.pop() if len(numtypes) == 1 else "", inf=any(a.inf for a in useful),
                  nan=any(a.nan for a in useful))
