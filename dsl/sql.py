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

**Columns.** ``to_sql(..., columns={field: column})`` reads the fields from typed columns
(:mod:`dsl.sql_columns`: filled with what the record-reading SQL reads) instead of the record;
a field without one (a list) raises :class:`NoColumn`.

**Modules**, imports flowing one way: this one holds :func:`to_sql` and the compiler;
:mod:`dsl.sql_sqlite` and :mod:`dsl.sql_postgresql` the dialects; :mod:`dsl.sql_dates` local
days and instants found with Python's own arithmetic; :mod:`dsl.sql_values` what all of them
share (:class:`Unsupported`, :class:`Condition`, SQL fragments, what is known of a value).

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
- ``len`` (strings, list fields, list literals), ``contains``, ``starts_with``, ``ends_with`` (on
  any text: see "Text" below),
  ``coalesce``; ``lower``/``upper`` of enum fields (their values are mapped in Python), and on
  SQLite of any text (SQLite calls Python's own ``str.lower``/``str.upper``, registered by
  :func:`dsl.sql_sqlite.register_functions`); ``matches`` with a constant pattern: a plain text
  (``"oy"``, ``"^Oy"``) as a substring or prefix test, any other pattern on SQLite by calling
  Python's ``re.search``;
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

- ``matches`` with a pattern that depends on the partner or is invalid, and on PostgreSQL with a
  pattern other than plain text (its regular expressions are not Python's ``re``); the
  functions that ask the store's facts: ``in_group``, ``in_campaign``,
  ``was_in_campaign``, ``opened``, ``clicked``, ``bounced``, ``responded``, ``response``;
  ``event`` (no event in an audience).
- On PostgreSQL, ``lower``/``upper`` of anything but an enum field or a constant: PostgreSQL
  follows the collation's locale tables (libc's or ICU's), Python all of Unicode by its own
  database (``lower("Å")``, and even ASCII results: ``lower("K")`` (Kelvin sign) is ``"k"``,
  ``upper("ß")`` is ``"SS"``). (SQLite's own folds ASCII only, hence Python's there.)
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
- Strings and field names with a lone surrogate (``"\\ud800"``): they are not UTF-8, which
  neither database (nor its driver) takes.
- Expressions nested so deeply that the database's parser would refuse the SQL: SQLite's stack
  is fixed, so :func:`to_sql` prepares every condition once on an empty in-memory table to
  know; for PostgreSQL (no server at hand) the nesting of the SQL is measured and refused
  beyond 400 levels, well below what its parser takes. Conditions over 200,000 characters.

The SQLite SQL uses SQLite's JSON functions and, for ``%``, ``mod()`` (SQLite 3.35+ built with
its math functions, as the usual builds are). The PostgreSQL SQL needs version 14 or later
(``numeric`` infinities, ``extract`` as ``numeric``); 15 is tested.

**Text** is compared, searched, cut and counted by code point, as Python does, on any
surrogate-free string: ``== != in`` and list membership exactly (no normalisation, no
collation), ``< <= > >=`` in code point order (SQLite: UTF-8 byte order; PostgreSQL: ``COLLATE
"C"``), ``len`` in code points (astral-plane characters and combining marks count one each),
``s[i]`` one code point, ``+``, ``starts_with``, ``ends_with``, ``contains``; ``lower``/``upper``
only of enum fields (Python maps each value) and constants. U+0000: PostgreSQL's text cannot
hold it, so an expression with one is refused (and a record cannot hold one: the store's
problem). SQLite's JSON functions end a string at U+0000 (3.40), ``length()`` stops there,
``substr()`` miscounts after it and ``replace()`` cannot search for it; so its dialect spells
U+0000 as the byte 0xFF, which UTF-8 never uses: a record whose JSON text holds the escape
``\\u0000`` (rare: ``instr`` finds out per row) is read with that escape made 0xFF; a constant
with U+0000 is a 0xFF text parameter; ``length``, ``substr``, ``instr``, ``||``, ``=`` and
``IN`` then count and compare as Python does, and an ordering puts U+0000 back first; the
Python functions SQLite calls get the text's bytes and read 0xFF as U+0000. Any other
failure inside the compiler is a refusal too (``Unsupported.internal``): the tick goes on in
Python.

**Known limits**, where the back ends can still differ. SQLite: integers beyond ±2⁶³ in the data, integer
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
from dataclasses import replace
from datetime import datetime, time, tzinfo
from typing import Any, Callable, Mapping

from . import runtime
from .compile import CompileError, compile_expression
from .nodes import Attribute, Binary, Call, Index, ListExpr, Name, Node, Unary
from .runtime import Context
from .sql_dates import _ambiguous, _fixed_offset
from .sql_patterns import anchored_prefix, plain_pattern, simple_pattern
from .sql_postgresql import _PostgreSQL
from .sql_sqlite import _SQLite
from .sql_time import Time
from .sql_values import (
    _DOMAINS,
    _E,
    _ORDERED_KINDS,
    _S,
    INT64,
    MICROSECOND,
    NULL_E,
    UTC,
    Condition,
    NoColumn,
    Unsupported,
    _bool,
    _comparable,
    _p,
    _q,
)
from .types import Type

__all__ = ["Condition", "NoColumn", "Unsupported", "to_sql"]

MAX_SQL = 200_000  # characters: larger conditions are refused rather than sent
FACTS = ("in_group", "in_campaign", "was_in_campaign", "opened", "clicked", "bounced", "responded",
         "response", "variant", "split")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
# Names a column may not have: those of json_each's columns (they would shadow it inside the
# membership subqueries) and this module's own aliases.
_RESERVED = {"key", "value", "type", "atom", "id", "parent", "fullkey", "path", "json", "root"}

def to_sql(node: Node, schema: Mapping[str, Type], *, now: datetime, tz: tzinfo, column: str = "data",
           dialect: str = "sqlite", columns: Mapping[str, str] | None = None) -> Condition:
    """The condition selecting the rows whose JSON record (in ``column``) makes the expression
    exactly ``true``, as ``compile_expression(node)(record, Context(now, tz))`` would.
    ``dialect`` is ``"sqlite"`` (``?`` placeholders, ``column`` JSON text) or ``"postgresql"``
    (``%s`` placeholders as psycopg uses them, ``column`` of type ``jsonb``). ``columns``
    (field → column, from :func:`dsl.sql_columns.partner_layout`): the fields are read from
    those columns instead, and a field without one is :class:`Unsupported`.
    Raises :class:`Unsupported` when that cannot be done exactly."""
    if dialect not in _DIALECTS:
        raise ValueError(f"unknown SQL dialect '{dialect}'")
    if not _COLUMN.fullmatch(column) or column.lower() in _RESERVED or re.match(r"_[lv]\d", column):
        raise ValueError(f"not a usable column name: {column!r}")
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    try:
        compiler = _Compiler(schema, now, tz, column, _DIALECTS[dialect], columns)
        try:
            sql = compiler.condition(node)
        except RecursionError:
            raise Unsupported("the expression is nested too deeply for the SQL back end") from None
        if len(sql.text) > MAX_SQL:
            raise Unsupported("the SQL condition would be too large")
        return compiler.dialect.finish(sql, (column, *(columns or {}).values()), compiler)
    except Unsupported:
        raise
    except Exception as exc:  # a bug here must not stop a tick: Python evaluates it instead
        raise Unsupported(f"the SQL back end failed ({type(exc).__name__}: {exc})", internal=True) from exc


_DIALECTS = {"sqlite": _SQLite(), "postgresql": _PostgreSQL(), "postgres": _PostgreSQL()}


# --- The compiler ---------------------------------------------------------------------------


class _Compiler(Time):
    """One expression at a time: each node to an :class:`_E` (its SQL and what is known of it).
    The methods of time (dates, datetimes, durations) are in :mod:`dsl.sql_time`."""

    def __init__(self, schema: Mapping[str, Type], now: datetime, tz: tzinfo, column: str, dialect,
                 columns: Mapping[str, str] | None = None):
        self.dialect = dialect
        self.columns = columns
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
            return self.string(str(value))
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

    def string(self, value: str) -> _E:
        self.dialect.check_string(value)
        return _E("string", self.dialect.string_constant(value), nullable=False, const=value,
                  values=frozenset([value]), nul="\0" in value)

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
        column = None  # a list's record: this one's own column, or the partner's record
        if self.columns is None:
            sql = self.dialect.field(self.column, path, kind)
        elif name in self.columns and kind == "list":  # a record of the list alone (dsl.sql_columns)
            column = self.columns[name]
            sql = self.dialect.field(column, path, kind)
        elif name in self.columns:  # holding what dialect.field() reads (dsl.sql_columns)
            sql = _S(self.columns[name], simple=True)
        else:
            raise NoColumn(f"the field '{name}' has no column")
        if kind in ("number", "bool", "date"):
            return _E(kind, sql)
        if kind == "string":
            return _E(kind, sql, nul=True)
        if kind == "enum":
            return _E("string", sql, values=frozenset(declared.values), nul=True)
        if kind == "datetime":
            return _E("datetime", sql, form="iso")
        listed = declared.item.kind if declared.item is not None else None
        if kind == "list" and listed in ("string", "number", "enum"):
            item = "string" if declared.item.kind == "enum" else declared.item.kind
            return _E("list", sql, path=path, item=item, column=column)
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
            item = self.dialect.list_item(container.column or self.column, container.path, position, container.item)
            return _E(container.item, item, nul=container.item == "string")
        if container.kind == "string":
            if position is None or position < 0:
                return NULL_E
            return _E("string", self.let([container.sql], lambda p: self.dialect.char_at(p[0], position)),
                      nul=container.nul)
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
        column = container.column or self.column

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
            return _E("string", _q("({} || {})", a.sql, b.sql), nul=a.nul or b.nul)
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

    # --- functions ---

    def call(self, node: Call) -> _E:
        name = node.function
        if name in FACTS:
            raise Unsupported(f"{name}() asks the store, not the record")
        if name == "matches" and len(node.args) == 2:
            return self.matches(*node.args)
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
            if arg.values is None:  # Python's own mapping, where the dialect can call it
                return _E("string", self.dialect.change_case(name, arg.sql), nul=arg.nul)
            mapped = {v: v.lower() if name == "lower" else v.upper() for v in sorted(arg.values)}
            cases = " ".join(["WHEN {} THEN {}"] * len(mapped))
            parts = [self.string(part).sql for pair in mapped.items() for part in pair]
            sql = _q(f"(CASE {{}} {cases} END)", arg.sql, *parts)
            return _E("string", sql, values=frozenset(mapped.values()), nul=any("\0" in v for v in mapped.values()))
        if name == "len":
            if arg.kind == "string":
                return _E("number", self.dialect.length(arg.sql), numtype="int")
            if arg.kind == "list" and arg.items is not None:
                return self.constant(len(arg.items))
            if arg.kind == "list":
                return _E("number", self.dialect.list_length(arg.column or self.column, arg.path), numtype="int")
            return NULL_E
        if name == "days_since":
            if arg.kind == "date":
                today = self.ctx.today.isoformat()
                return _E("number", self.dialect.days_between(today, arg.sql), numtype="int")
            if arg.kind == "datetime":
                raise Unsupported("days_since() of a datetime, other than compared with a constant number")
            return NULL_E
        raise Unsupported(f"the function {name}()")

    def matches(self, text_node: Node, pattern_node: Node) -> _E:
        """``re.search`` with a constant pattern: a plain one (``"oy"``, ``"^Oy"``) as a
        substring or prefix test, any other one where the dialect can run Python's ``re``."""
        if self.is_dynamic(pattern_node):
            raise Unsupported("matches() with a pattern that depends on the partner")
        pattern = self.evaluate(pattern_node)
        text = self.val(text_node)
        if pattern is None or text.kind == "null" or text.kind != "string" or not isinstance(pattern, str):
            return self.boolean(False)  # null, or a surprise: false either way
        if runtime.regex(pattern) is None:
            raise Unsupported("matches() with an invalid pattern (Python warns)")
        anchored, plain = plain_pattern(pattern)
        if plain is not None and anchored:
            return _bool(self.let([text.sql, self.string(plain).sql],
                                  lambda p: self.dialect.affix("starts_with", p[0], p[1])), True)
        if plain is not None:
            return self.membership("in", self.string(plain), text)
        simple = simple_pattern(pattern)
        if simple is not None:
            return _bool(self.dialect.simple_search(simple, text.sql), True)
        self.dialect.check_string(pattern)
        return _bool(self.dialect.regex_search(pattern, text.sql, anchored_prefix(pattern)), True)

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
                  nan=any(a.nan for a in useful), nul=any(a.nul for a in useful))
