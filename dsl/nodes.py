"""The expression AST: small frozen nodes.

Positions (``start``/``end``, character offsets into the expression text) ride along for
diagnostics but take no part in equality, so an expression printed and parsed again compares
equal to the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal as Kind

LiteralKind = Kind["number", "string", "bool", "null", "date", "datetime", "duration"]


@dataclass(frozen=True)
class Node:
    start: int = field(default=0, compare=False, kw_only=True, repr=False)
    end: int = field(default=0, compare=False, kw_only=True, repr=False)

    def children(self) -> tuple["Node", ...]:
        return ()

    def walk(self) -> Iterator["Node"]:
        """This node and all its descendants, parents first."""
        yield self
        for child in self.children():
            yield from child.walk()


@dataclass(frozen=True)
class Literal(Node):
    """A constant. ``value`` is an int/float, str, bool, None, date, datetime or timedelta;
    a datetime without an offset is in the workspace timezone. ``text`` keeps how it was
    written (``14d`` stays ``14d``) for the formatter."""

    kind: LiteralKind
    value: Any
    text: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class ListExpr(Node):
    items: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.items


@dataclass(frozen=True)
class Name(Node):
    """``partner``, ``event``, ``now`` or ``today``."""

    name: str


@dataclass(frozen=True)
class Attribute(Node):
    value: Node
    name: str
    name_start: int = field(default=0, compare=False, kw_only=True, repr=False)

    def children(self) -> tuple[Node, ...]:
        return (self.value,)


@dataclass(frozen=True)
class Index(Node):
    value: Node
    index: Node

    def children(self) -> tuple[Node, ...]:
        return (self.value, self.index)


@dataclass(frozen=True)
class Call(Node):
    function: str
    args: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.args


@dataclass(frozen=True)
class Unary(Node):
    """``not x`` or ``-x``."""

    op: str
    operand: Node

    def children(self) -> tuple[Node, ...]:
        return (self.operand,)


@dataclass(frozen=True)
class Binary(Node):
    """Every binary operator: ``or and == != < <= > >= in not in + - * / %``."""

    op: str
    left: Node
    right: Node
    op_start: int = field(default=0, compare=False, kw_only=True, repr=False)

    def children(self) -> tuple[Node, ...]:
        return (self.left, self.right)


MAX_DEPTH = 300
"""Deeper expressions are refused by the parser: nobody writes them, and evaluating them would
risk Python's recursion limit."""


def too_deep(node: Node, limit: int) -> Node | None:
    """The first node found deeper than ``limit`` levels, or None (without recursion)."""
    stack = [(node, 1)]
    while stack:
        current, level = stack.pop()
        if level > limit:
            return current
        stack.extend((child, level + 1) for child in current.children())
    return None


def depth(node: Node) -> int:
    """How many levels the tree has (without recursion: the tree may be very deep)."""
    deepest, stack = 0, [(node, 1)]
    while stack:
        current, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in current.children())
    return deepest


BOOLEAN_OPS = ("or", "and")
COMPARISON_OPS = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")

# Binding strength of each operator, used by the parser's grammar and the printer alike.
PRECEDENCE = {
    "or": 1,
    "and": 2,
    "not": 3,
    **{op: 4 for op in COMPARISON_OPS},
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
    "neg": 7,
    "postfix": 8,
    "atom": 9,
}
