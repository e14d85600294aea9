"""AST → canonical expression text, with only the parentheses the grammar needs, and one more
kind for readers: an ``and`` inside an ``or`` keeps its parentheses (``a or (b and c)``), as
everyone writes it and no reader has to recall which binds tighter.

``parse(to_source(node)) == node`` for every node the parser can produce; ``engine fmt`` uses
this to normalise spacing in rulesets and conditions.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import Decimal

from .nodes import PRECEDENCE, Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary


def to_source(node: Node) -> str:
    return _print(node)[0]


def _wrap(node: Node, minimum: int) -> str:
    text, precedence = _print(node)
    return f"({text})" if precedence < minimum else text


def _print(node: Node) -> tuple[str, int]:
    if isinstance(node, Literal):
        return literal_source(node), PRECEDENCE["atom"]
    if isinstance(node, Name):
        return node.name, PRECEDENCE["atom"]
    if isinstance(node, ListExpr):
        return "[" + ", ".join(_print(item)[0] for item in node.items) + "]", PRECEDENCE["atom"]
    if isinstance(node, Call):
        return f"{node.function}(" + ", ".join(_print(a)[0] for a in node.args) + ")", PRECEDENCE["atom"]
    if isinstance(node, Attribute):
        return f"{_wrap(node.value, PRECEDENCE['postfix'])}.{node.name}", PRECEDENCE["postfix"]
    if isinstance(node, Index):
        return f"{_wrap(node.value, PRECEDENCE['postfix'])}[{_print(node.index)[0]}]", PRECEDENCE["postfix"]
    if isinstance(node, Unary):
        if node.op == "not":
            return f"not {_wrap(node.operand, PRECEDENCE['not'])}", PRECEDENCE["not"]
        operand = _wrap(node.operand, PRECEDENCE["neg"])
        return f"-{operand}", PRECEDENCE["neg"]
    if isinstance(node, Binary):
        precedence = PRECEDENCE[node.op]
        # Left-associative operators accept their own level on the left; comparisons don't chain.
        left_min = precedence + 1 if precedence == PRECEDENCE["=="] else precedence
        left = _wrap(node.left, left_min)
        right = _wrap(node.right, precedence + 1)
        if node.op == "or":
            left, right = (_grouped_and(side, text) for side, text in ((node.left, left), (node.right, right)))
        return f"{left} {node.op} {right}", precedence
    raise TypeError(f"not an expression node: {node!r}")


def _grouped_and(side: Node, text: str) -> str:
    return f"({text})" if isinstance(side, Binary) and side.op == "and" else text


def literal_source(node: Literal) -> str:
    """How a literal is written: as the user wrote it when known, else canonically."""
    if node.text is not None:
        return node.text
    value = node.value
    if node.kind == "null":
        return "null"
    if node.kind == "bool":
        return "true" if value else "false"
    if node.kind == "string":
        return json.dumps(value, ensure_ascii=False)
    if node.kind == "number":
        if isinstance(value, int):
            return str(value)
        text = repr(float(value))
        if "e" in text or "E" in text or "." not in text:
            text = format(Decimal(text), "f")
            if "." not in text:
                text += ".0"
        return text
    if node.kind == "duration":
        return duration_source(value)
    if node.kind == "datetime":
        return datetime_source(value)
    if node.kind == "date":
        return value.isoformat()
    raise TypeError(f"unknown literal kind {node.kind!r}")


def duration_source(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    for unit, size in (("w", 7 * 24 * 60), ("d", 24 * 60), ("h", 60)):
        if minutes and minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


def datetime_source(value: datetime) -> str:
    text = value.replace(tzinfo=None).isoformat(timespec="minutes" if not value.second and not value.microsecond else "auto")
    offset = value.utcoffset()
    if offset is None:
        return text
    if offset == timedelta(0):
        return text + "Z"
    sign = "+" if offset >= timedelta(0) else "-"
    minutes = abs(int(offset.total_seconds() // 60))
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"

