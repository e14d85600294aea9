"""Dates, datetimes and durations for the SQL back end (:mod:`dsl.sql`): instants as epoch
microseconds, the DST-exact ranges of a local date, ``days_since`` against a constant, and
``±`` of durations. A part of the compiler (:class:`Time` is one of ``_Compiler``'s bases),
kept apart because it is the one place where Python's calendar and time-zone arithmetic is
turned into boundaries that SQL can compare with (see "Pushed down" in :mod:`dsl.sql`)."""

from __future__ import annotations

import math
from datetime import date, datetime, time
from typing import Any, Callable

from . import runtime
from .nodes import Binary, Call
from .sql_dates import _MIN_DAY, EMPTY, _day_start, _intersect, _local_range, _micros, _split
from .sql_values import _E, _FLIP, _S, MAX_US, MICROSECOND, MIN_US, NULL, Unsupported, _bool, _p, _q


class Time:
    """The compiler's methods for time (``self`` is a :class:`dsl.sql._Compiler`)."""

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
