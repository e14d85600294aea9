"""Why an expression has the value it has: its value with a trace of every sub-expression (like
``opa eval --explain``), for ``engine explain``.

:func:`explain` evaluates an AST with exactly the semantics of :mod:`dsl.runtime` (it calls the
same operator functions and :data:`~dsl.runtime.FUNCTIONS`, so it agrees with
:func:`dsl.compile.compile_expression` value for value and warning for warning; a property test
checks this) and records, in evaluation order (children before their parent), each
sub-expression it evaluated:

    {"expression": "partner.tier", "value": "gold", "line": 12, "col": 14}

``expression`` is the canonical text of the sub-expression (:func:`dsl.printer.to_source`),
``value`` its value made JSON-ready (:func:`json_value`), ``line``/``col`` where it starts in the
YAML file (through the expression's :class:`~dsl.source.ScalarText`), or, without one, line 1 and
the 1-based offset in the expression.

What the trace holds, where the language leaves a choice:

- ``and``/``or`` short-circuit and ``coalesce`` is lazy, as at run time: an operand that was not
  evaluated is not in the trace.
- Constants (literals, lists of literals, ``-5``) are left out: their value is what is written.
  ``partner`` and ``event`` are left out where they are the record a field is read from (their
  value is the whole record; ``partner.tier`` is one step). ``constants=True`` keeps them all.
- The whole expression is always the last step, even when it is a constant, so a trace is
  never empty.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Mapping

from . import runtime
from .compile import CompileError, _check
from .nodes import Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from .printer import to_source
from .runtime import FUNCTIONS, Context
from .source import ScalarText

__all__ = ["Explained", "explain", "json_value", "format_value"]


@dataclass(frozen=True)
class Explained:
    """The expression's value (as :func:`dsl.compile.compile_expression` gives it) and the
    trace of its sub-expressions, each ``{"expression", "value", "line", "col"}``."""

    value: Any
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def match(self) -> bool:
        """Whether the value is exactly ``true`` (how rulesets and conditions read it)."""
        return self.value is True


def explain(node: Node, partner: Mapping[str, Any], ctx: Context, where: ScalarText | None = None, *,
            constants: bool = False) -> Explained:
    """Evaluate ``node`` for ``partner`` in ``ctx`` and trace every sub-expression.

    ``where`` is the ScalarText the expression was parsed from (``Document.scalar(path)``, or
    :func:`dsl.parser.inline` for text that is not in a file); the node's offsets must be
    offsets into ``where.value``. Warnings about unexpected data go to ``ctx.warnings`` as at
    run time. Raises :class:`dsl.compile.CompileError` for the program mistakes the compiler
    refuses (unknown names and functions, wrong arity, nesting deeper than 300 levels)."""
    _check(node)
    tracer = _Tracer(partner, ctx, where, constants)
    try:
        value = tracer.evaluate(node, root=True)
    except RecursionError:  # only near MAX_DEPTH, on a stack already deep
        raise CompileError("expression is nested too deeply") from None
    return Explained(value, tracer.trace)


class _Tracer:
    def __init__(self, partner: Mapping[str, Any], ctx: Context, where: ScalarText | None, constants: bool):
        self.partner, self.ctx, self.where, self.constants = partner, ctx, where, constants
        self.trace: list[dict[str, Any]] = []

    # --- evaluation: the semantics of dsl.runtime, one node at a time ----------------------------

    def evaluate(self, node: Node, root: bool = False) -> Any:
        value = self._value(node)
        if root or self.constants or not _constant(node):
            self.record(node, value)
        return value

    def _value(self, node: Node) -> Any:
        ctx = self.ctx
        if isinstance(node, Literal):
            if node.kind == "datetime" and node.value.tzinfo is None:
                return runtime.local(node.value, ctx.tz)
            return node.value
        if isinstance(node, Name):
            return self._name(node.name)
        if isinstance(node, ListExpr):
            return [self.evaluate(item) for item in node.items]
        if isinstance(node, Attribute):
            if isinstance(node.value, Name) and node.value.name == "event":
                self._base(node.value, ctx.event)
                return runtime.event_attribute(ctx.event, node.name, ctx)
            return runtime.attribute(self._operand(node.value), node.name, ctx)
        if isinstance(node, Index):
            container = self._operand(node.value)
            return runtime.index(container, self.evaluate(node.index), ctx)
        if isinstance(node, Call):
            if node.function == "coalesce":  # lazily: what follows the first non-null is not evaluated
                for argument in node.args:
                    value = self.evaluate(argument)
                    if value is not None:
                        return value
                return None
            arguments = [self.evaluate(argument) for argument in node.args]
            return FUNCTIONS[node.function](self.partner, ctx, *arguments)
        if isinstance(node, Unary):
            operand = self.evaluate(node.operand)
            if node.op == "-":
                return runtime.negate(operand, ctx)
            return not runtime.truth(operand)
        if isinstance(node, Binary):
            if node.op == "and":
                return runtime.truth(self.evaluate(node.left)) and runtime.truth(self.evaluate(node.right))
            if node.op == "or":
                return runtime.truth(self.evaluate(node.left)) or runtime.truth(self.evaluate(node.right))
            left = self.evaluate(node.left)
            right = self.evaluate(node.right)
            return runtime.BINARY[node.op](left, right, ctx)
        raise TypeError(f"not an expression node: {node!r}")

    def _name(self, name: str) -> Any:
        if name == "partner":
            return self.partner
        if name == "event":
            return self.ctx.event
        if name == "now":
            return self.ctx.now
        return self.ctx.today  # "today": _check refused every other name

    def _operand(self, node: Node) -> Any:
        """The record (or list) a field or item is read from: ``partner``/``event`` themselves
        are not traced there, anything else is."""
        if isinstance(node, Name) and node.name in ("partner", "event"):
            value = self._name(node.name)
            self._base(node, value)
            return value
        return self.evaluate(node)

    def _base(self, node: Name, value: Any) -> None:
        if self.constants:
            self.record(node, value)

    # --- the trace ------------------------------------------------------------------------------

    def record(self, node: Node, value: Any) -> None:
        line, col = self.position(node)
        self.trace.append({"expression": to_source(node), "value": json_value(value, self.ctx.tz),
                           "line": line, "col": col})

    def position(self, node: Node) -> tuple[int, int]:
        if self.where is None:
            return 1, node.start + 1
        span = self.where.span(node.start, node.end)
        return span.line, span.col


def _constant(node: Node) -> bool:
    """A literal, a list of constants, or a negated number: its value is what is written."""
    if isinstance(node, Literal):
        return True
    if isinstance(node, ListExpr):
        return all(_constant(item) for item in node.items)
    if isinstance(node, Unary) and node.op == "-":
        return isinstance(node.operand, Literal) and node.operand.kind == "number"
    return False


# --- values for people and for JSON --------------------------------------------------------------


def json_value(value: Any, tz: Any = None) -> Any:
    """A run-time value as JSON-ready data: null, booleans, numbers and strings as they are;
    dates ``2026-07-01``; datetimes ISO 8601 (``…Z`` in UTC; a naive one is local time in
    ``tz``); durations as written in expressions (``3d``, or ``1d 5h 30m`` when no single unit
    fits); lists and records item by item. Non-finite numbers become ``"NaN"``, ``"Infinity"``
    or ``"-Infinity"`` (JSON has none); anything else its ``repr``."""
    kind = runtime.kind(value)
    if kind in ("null", "bool", "string"):
        return value
    if kind == "number":
        if isinstance(value, float) and not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return value
    if kind == "date":
        return value.isoformat()
    if kind == "datetime":
        if value.tzinfo is None and tz is not None:
            value = value.replace(tzinfo=tz)
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if kind == "duration":
        return duration_text(value)
    if kind == "list":
        return [json_value(item, tz) for item in value]
    if kind == "record":
        return {str(key): json_value(item, tz) for key, item in value.items()}
    return repr(value)


_UNITS = (("w", timedelta(weeks=1)), ("d", timedelta(days=1)), ("h", timedelta(hours=1)), ("m", timedelta(minutes=1)))


def duration_text(value: timedelta) -> str:
    """``3d``, ``2w``, ``-12h``, ``45m``; ``1d 5h 30m`` (and seconds, ``45s``) when no single unit
    of the language fits (minutes only under an hour: ``1h 30m`` rather than ``90m``)."""
    if value < timedelta(0):
        return "-" + duration_text(-value)
    if not value:
        return "0m"
    for unit, size in _UNITS:
        if value % size == timedelta(0) and (unit != "m" or value < timedelta(hours=1)):
            return f"{value // size}{unit}"
    parts, rest = [], value
    for unit, size in _UNITS[1:] + (("s", timedelta(seconds=1)),):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest.microseconds}us")
    return " ".join(parts)


def format_value(value: Any) -> str:
    """A JSON-ready trace value as it reads in text: ``"gold"``, ``true``, ``null``, ``[1, 2]``."""
    return json.dumps(value, ensure_ascii=False)
