"""The PostgreSQL dialect of the SQL back end (:mod:`dsl.sql`)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .sql_values import _E, _S, MICROSECOND, NULL, Condition, Unsupported, _check_text, _p, _q

if TYPE_CHECKING:
    from .sql import _Compiler
    from .sql_patterns import SimplePattern


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

    def finish(self, sql: _S, columns: tuple[str, ...], compiler: _Compiler | None) -> Condition:
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

    def column_type(self, kind: str) -> str:
        """The type :meth:`field` reads the kind as: numbers exact, dates and datetimes as the
        import's ISO text (the compiler compares and casts them as such); a list as a record
        of it alone (:meth:`list_record`)."""
        return {"number": "numeric", "bool": "boolean", "list": "jsonb"}.get(kind, "text")

    def list_record(self, column: str, name: str, path: str) -> _S:
        """A record of one list field alone (``{"tags": [...]}``), which the list functions
        read with the field's own path."""
        return _S(f"jsonb_build_object(?, {column} -> ?)", (name, path), simple=True)

    def change_case(self, name: str, text: _S) -> _S:
        raise Unsupported(f"{name}() of a string: PostgreSQL follows its collation's locale, not Python")

    def simple_search(self, pattern: "SimplePattern", text: _S) -> _S:
        """``re.search`` of a pattern whose every piece means the same in PostgreSQL's regular
        expressions (:class:`~dsl.sql_patterns.SimplePattern`), its ranges over code points."""
        return _q('({} COLLATE "C" ~ {})', text, _p(pattern.posix()))

    def regex_search(self, pattern: str, text: _S, prefix: "SimplePattern | None" = None) -> _S:
        raise Unsupported("matches(): PostgreSQL's regular expressions are not Python's (`.` takes a line feed, "
                          "`$` is only the end, classes follow the locale); only simple patterns are pushed down")

    def check_name(self, name: str) -> None:
        _check_text(name, "a field name")
        if "\0" in name:
            raise Unsupported("a field name with U+0000, which PostgreSQL's text cannot hold")

    def check_string(self, value: str) -> None:
        _check_text(value, "a string")
        if "\0" in value:
            raise Unsupported("a string with U+0000, which PostgreSQL's text cannot hold")

    def string_constant(self, value: str) -> _S:
        return _p(value)

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
