"""AST → a fast Python function, compiled once per expression.

The generated code is one ``def`` returning one Python expression. Where an operand is a
literal, the common case is inline: ``partner.revenue >= 10000`` becomes

    (_1 >= 10000 if type(_1 := p.get('revenue')) in _NUMBER
     else False if _1 is None else _at_least(_1, 10000, ctx))

and so are the common built-in functions (``INLINE_FUNCTIONS``): ``contains(lower(x), "oy")``
is ``'oy' in _1.lower()`` while x is a str. Every other case, including the unusual values on
a fast path (a wrong type, a str subclass), calls the generic operators and functions of
:mod:`dsl.runtime`, which *are* the semantics; null, the commonest of them, gets the constant
the runtime gives for it, asked once at compile time. The fast paths are inlined special cases
of the runtime; the property tests check that the two agree on every input, against a
reference interpreter written straight from SPEC §4.

No user text becomes code unescaped: ints, finite floats and strings go in as ``repr()``, other
constants as the globals K0, K1, …, and field names only inside ``repr()`` strings.

An expression too deep for Python's own compiler is evaluated by closures over the same
runtime functions instead.
"""

from __future__ import annotations

import marshal
import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping, NamedTuple, Protocol

from . import runtime
from .functions import SIGNATURES
from .nodes import BOOLEAN_OPS, COMPARISON_OPS, MAX_DEPTH, Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from .runtime import FUNCTIONS, UTC, Context
from .types import BOOL


Evaluate = Callable[[Mapping[str, Any], Context], Any]


class Compiled(Protocol):
    """``compiled(partner, ctx)`` is the expression's value; ``compiled.test(partner, ctx)``
    whether it is exactly true (how rulesets and conditions use it)."""

    source: str | None  # the generated Python, or None when closures evaluate it

    def __call__(self, partner: Mapping[str, Any], ctx: Context) -> Any: ...
    def test(self, partner: Mapping[str, Any], ctx: Context) -> bool: ...


class CompileError(ValueError):
    """The expression cannot be compiled (the checker reports these first)."""


def compile_expression(node: Node) -> Compiled:
    """Compile once; call the result for every partner."""
    _check(node)
    try:
        return _generate(node)
    except (SyntaxError, RecursionError, MemoryError):  # too deep for Python's compiler
        return compile_closures(node)


# --- Checks ---------------------------------------------------------------------------------

_NAME_CODE = {"partner": "p", "event": "ctx.event", "now": "ctx.now", "today": "ctx.today"}


def _check(node: Node) -> None:
    """Unknown names, functions and operators, wrong arity and excessive depth are mistakes in
    the program, not the data: they raise here rather than at evaluation."""
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise CompileError(f"expression is nested too deeply (more than {MAX_DEPTH} levels)")
        if isinstance(current, Name) and current.name not in _NAME_CODE:
            raise CompileError(f"unknown name '{current.name}'")
        if isinstance(current, Call):
            signature = SIGNATURES.get(current.function)
            if signature is None:
                raise CompileError(f"unknown function '{current.function}'")
            if not signature.accepts_count(len(current.args)):
                raise CompileError(f"{current.function}() takes {signature.arity} arguments")
        if isinstance(current, Binary) and current.op not in runtime.BINARY and current.op not in BOOLEAN_OPS:
            raise CompileError(f"unknown operator '{current.op}'")
        if isinstance(current, Unary) and current.op not in ("not", "-"):
            raise CompileError(f"unknown operator '{current.op}'")
        stack.extend((child, depth + 1) for child in current.children())


def returns_bool(node: Node) -> bool:
    """Whether the node's value is always True or False (never null), so ``and``/``or`` can use
    Python's own operators on it."""
    if isinstance(node, Literal):
        return node.kind == "bool"
    if isinstance(node, Binary):
        return node.op in COMPARISON_OPS or node.op in BOOLEAN_OPS
    if isinstance(node, Unary):
        return node.op == "not"
    if isinstance(node, Call):
        return SIGNATURES[node.function].returns is BOOL
    return False


def _folded(node: Node) -> Node:
    """The node simplified where that is exact: ``-5`` is parsed as the negation of 5, but as
    a literal it can take the fast paths; ``coalesce(x)`` is ``x``."""
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Literal) and node.operand.kind == "number":
        return Literal("number", -node.operand.value)
    if isinstance(node, Call) and node.function == "coalesce" and len(node.args) == 1:
        return _folded(node.args[0])
    return node


# --- Code generation ------------------------------------------------------------------------

_OPERATORS = {
    "==": "_equal", "!=": "_not_equal", "<": "_less", "<=": "_at_most", ">": "_greater", ">=": "_at_least",
    "in": "_member", "not in": "_not_member",
    "+": "_add", "-": "_subtract", "*": "_multiply", "/": "_divide", "%": "_remainder",
}

_HELPERS: dict[str, Any] = {
    **{name: runtime.BINARY[op] for op, name in _OPERATORS.items()},
    "_negate": runtime.negate,
    "_attribute": runtime.attribute,
    "_event_attribute": runtime.event_attribute,
    "_index": runtime.index,
    "_local": runtime.local,
    "_truth": runtime.truth,
    **{f"_fn_{name}": function for name, function in FUNCTIONS.items()},
    "_NUMBER": (int, float),
    "_SIZED": (str, list),
    "_date": date,
    "_timedelta": timedelta,
}

# The run-time class test under which an operator with a literal of this kind is Python's own.
# (type(x) is faster than x.__class__ in CPython 3.11, and exact: subclasses take the slow path.)
_GUARDS = {
    "number": "type({}) in _NUMBER",
    "string": "type({}) is str",
    "date": "type({}) is _date",
    "duration": "type({}) is _timedelta",
    "bool": "type({}) is bool",
    "sized": "type({}) in _SIZED",
}
_ORDERED = ("==", "!=", "<", "<=", ">", ">=")
_FAST_COMPARISONS = {"number": _ORDERED, "string": _ORDERED, "date": _ORDERED, "duration": _ORDERED, "bool": ("==", "!=")}


@dataclass(frozen=True)
class Inline:
    """A built-in function as a Python expression, exact while its first argument is of the
    class ``kind`` (a key of ``_GUARDS``)."""

    kind: str
    template: str  # {0}: the first argument's value; {1}: the second argument, a string literal
    gives_string: bool = False  # the template's value is a str, so it needs no guard of its own


INLINE_FUNCTIONS: dict[str, Inline] = {
    "lower": Inline("string", "{0}.lower()", gives_string=True),
    "upper": Inline("string", "{0}.upper()", gives_string=True),
    "len": Inline("sized", "len({0})"),
    "contains": Inline("string", "{1} in {0}"),
    "starts_with": Inline("string", "{0}.startswith({1})"),
    "ends_with": Inline("string", "{0}.endswith({1})"),
    "matches": Inline("string", "{1}.search({0}) is not None"),  # {1}: the pattern, compiled once
}
"""The functions common in rulesets, inlined: a generic call costs at least two Python calls
per record (the function of :mod:`dsl.runtime` and the helper it shares with its kind, plus
``kind()`` of each argument), where the template is one method call or operator. The template
is the function's own case for a first argument of its class; a call of a function of two
arguments is inlined only when the second is a string literal (neither null nor of a wrong
type, so the first argument's class alone decides), ``matches`` only when the pattern is a
valid regular expression. Null gives the generic function's value on null, asked once at
compile time (``_at_null``); everything else (another class, a str subclass) calls the generic
function, which *is* the semantics:

    contains(partner.company, "oy")  →  ('oy' in _1 if type(_1 := p.get('company')) is str
                                          else False if _1 is None
                                          else _fn_contains(p, ctx, _1, 'oy'))

A call of ``lower`` or ``upper`` inside another inlined call or a comparison with a string
literal shares the guard of its own argument: ``contains(lower(x), "oy")`` is
``'oy' in _1.lower()`` when x is a str, else the two generic calls. ``coalesce`` is not a call
at all in the generated code (see ``_Generator.coalesce``)."""

_UNFOLDED = object()  # no constant for the null case: the generated code asks the runtime
_SCRATCH_NOW = datetime(2000, 1, 1, tzinfo=UTC)


def _at_null(run: Callable[[Any, Context], Any], operand: Any) -> Any:
    """``run(operand)``, the runtime's own value for an operand whose raw value is null (so the
    operand is ``operand``, usually None), asked once at compile time: null is the commonest
    value off a fast path (a missing field), and costs a generic call or two per record
    otherwise. True, false or null; _UNFOLDED when the runtime warned or gave another value,
    or the operand is _UNFOLDED."""
    if operand is _UNFOLDED:
        return _UNFOLDED
    ctx = Context(now=_SCRATCH_NOW, tz=UTC)
    value = run(operand, ctx)
    return value if (value is None or value is True or value is False) and not ctx.warnings else _UNFOLDED


class _Typed(NamedTuple):
    """An operand's code split by the class of its value (see ``_Generator.typed``)."""

    guard: str  # evaluates the operand once; true when its value is of the class asked for
    value: str  # the operand's value when the guard holds
    other: str  # its value when the guard does not hold
    raw: str  # the temporary the guard tests
    null: Any  # the operand's value when ``raw`` is null (or _UNFOLDED)


class _InlinedCall(NamedTuple):
    """A call of INLINE_FUNCTIONS, given (the code of) its first argument's value."""

    fast: Callable[[str], str]  # the template
    slow: Callable[[str], str]  # the generic call
    run: Callable[[Any, Context], Any]  # the generic function itself, for the null case


# Arithmetic with a small non-zero int never overflows a float nor divides by zero; `/` is
# not inlined because a huge int divided by an int may not fit a float.
_SMALL_INT = 2**53


class _Generator:
    """Turns one AST into the text of one Python expression, collecting its constants."""

    def __init__(self) -> None:
        self.constants: dict[str, Any] = {}
        self.temporaries = 0

    def constant(self, value: Any) -> str:
        name = f"K{len(self.constants)}"
        self.constants[name] = value
        return name

    def temporary(self) -> str:
        self.temporaries += 1
        return f"_{self.temporaries}"

    def code(self, node: Node) -> str:
        node = _folded(node)
        if isinstance(node, Literal):
            return self.literal(node)
        if isinstance(node, Name):
            return _NAME_CODE[node.name]
        if isinstance(node, ListExpr):
            return "[" + ", ".join(self.code(item) for item in node.items) + "]"
        if isinstance(node, Attribute):
            return self.attribute(node)
        if isinstance(node, Index):
            return f"_index({self.code(node.value)}, {self.code(node.index)}, ctx)"
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Unary):
            if node.op == "-":
                return f"_negate({self.code(node.operand)}, ctx)"
            return f"(not {self.truth(node.operand)})"
        if isinstance(node, Binary):
            if node.op in BOOLEAN_OPS:
                return self.boolean(node)
            return self.binary(node)
        raise CompileError(f"not an expression node: {node!r}")

    def literal(self, node: Literal) -> str:
        value = node.value
        if node.kind in ("null", "bool", "string") or node.kind == "number" and isinstance(value, int):
            text = repr(value)
        elif node.kind == "number" and math.isfinite(value):
            text = repr(value)
        elif node.kind == "datetime" and value.tzinfo is None:
            return f"_local({self.constant(value)}, ctx.tz)"
        else:
            return self.constant(value)
        return f"({text})" if text.startswith("-") else text

    def attribute(self, node: Attribute) -> str:
        if isinstance(node.value, Name) and node.value.name == "partner":
            return f"p.get({node.name!r})"
        if isinstance(node.value, Name) and node.value.name == "event":
            return f"_event_attribute(ctx.event, {node.name!r}, ctx)"
        return f"_attribute({self.code(node.value)}, {node.name!r}, ctx)"

    def truth(self, node: Node) -> str:
        """Code that is True exactly when the node's value is ``true``."""
        node = _folded(node)
        if returns_bool(node):
            return self.code(node)
        if isinstance(node, Literal):
            return "False"
        if isinstance(node, ListExpr):  # `[…] is True` would be a SyntaxWarning
            return f"_truth({self.code(node)})"
        return f"({self.code(node)} is True)"

    def boolean(self, node: Binary) -> str:
        return f"({self.truth(node.left)} {node.op} {self.truth(node.right)})"

    def binary(self, node: Binary) -> str:
        left, right = _folded(node.left), _folded(node.right)
        if _inline(node.op, right, literal_right=True):
            return self.guarded(left, node.op, right, literal_right=True)
        if _inline(node.op, left, literal_right=False):
            return self.guarded(right, node.op, left, literal_right=False)
        if node.op in ("in", "not in") and _literal_set(right):
            return self.set_lookup(left, node.op, right)
        return f"{_OPERATORS[node.op]}({self.code(left)}, {self.code(right)}, ctx)"

    def guarded(self, operand: Node, op: str, literal: Literal, *, literal_right: bool) -> str:
        """Python's own operator when the operand's class is the literal's, else the runtime's.
        (No literal here is a datetime, the one kind whose code is not its value.)"""
        typed, k, run = self.typed(operand, literal.kind), self.code(literal), runtime.BINARY[op]
        if literal_right:
            fast, slow = f"{typed.value} {op} {k}", f"{_OPERATORS[op]}({typed.other}, {k}, ctx)"
            return self.branches(typed, fast, slow, lambda v, ctx: run(v, literal.value, ctx))
        fast, slow = f"{k} {op} {typed.value}", f"{_OPERATORS[op]}({k}, {typed.other}, ctx)"
        return self.branches(typed, fast, slow, lambda v, ctx: run(literal.value, v, ctx))

    def set_lookup(self, item: Node, op: str, items: ListExpr) -> str:
        """``x in ["gold", "platinum"]``: a frozenset lookup when x is a string."""
        literals = [_folded(i) for i in items.items]
        values = tuple(i.value for i in literals)
        found, listed = self.constant(frozenset(values)), self.constant(values)
        typed, run = self.typed(item, literals[0].kind), runtime.BINARY[op]
        fast, slow = f"{typed.value} {op} {found}", f"{_OPERATORS[op]}({typed.other}, {listed}, ctx)"
        return self.branches(typed, fast, slow, lambda v, ctx: run(v, values, ctx))

    def call(self, node: Call) -> str:
        name, args = node.function, node.args
        if name == "coalesce":
            return self.coalesce(args)
        inlined = self.inlined(node)
        if inlined is None:
            return f"_fn_{name}(p, ctx, " + ", ".join(self.code(a) for a in args) + ")"
        typed = self.typed(args[0], INLINE_FUNCTIONS[name].kind)
        return self.branches(typed, inlined.fast(typed.value), inlined.slow(typed.other), inlined.run)

    def inlined(self, node: Node) -> _InlinedCall | None:
        """A call of INLINE_FUNCTIONS, unless its second argument is not a string literal (or
        not a valid regular expression, for ``matches``)."""
        if not isinstance(node, Call) or node.function not in INLINE_FUNCTIONS:
            return None
        name = node.function
        template, function = INLINE_FUNCTIONS[name].template, FUNCTIONS[name]
        if len(node.args) == 1:
            return _InlinedCall(lambda value: template.format(value),
                                lambda value: f"_fn_{name}(p, ctx, {value})",
                                lambda value, ctx: function({}, ctx, value))
        pattern = _folded(node.args[1])
        if not isinstance(pattern, Literal) or pattern.kind != "string":
            return None
        text = self.code(pattern)
        if name == "matches" and runtime.regex(pattern.value) is None:
            return None
        second = self.constant(runtime.regex(pattern.value)) if name == "matches" else text
        return _InlinedCall(lambda value: template.format(value, second),
                            lambda value: f"_fn_{name}(p, ctx, {value}, {text})",
                            lambda value, ctx: function({}, ctx, value, pattern.value))

    def typed(self, node: Node, kind: str) -> _Typed:
        """The node's code split by the class of its value: a guard that evaluates the node once
        and is true when its value is of class ``kind`` (a key of ``_GUARDS``), and the code of
        the value then and otherwise, each to be used once. Usually both are the temporary the
        guard assigns, but a call of ``lower``/``upper`` for a string guard shares its argument's
        guard: ``type(_1 := x) is str``, ``_1.lower()``, ``_fn_lower(p, ctx, _1)``."""
        node = _folded(node)
        function = INLINE_FUNCTIONS.get(node.function) if isinstance(node, Call) else None
        if function is not None and function.gives_string and kind in ("string", "sized"):
            inlined = self.inlined(node)
            assert inlined is not None  # functions of one argument are always inlined
            inner = self.typed(node.args[0], function.kind)  # type: ignore[union-attr]
            return _Typed(inner.guard, inlined.fast(inner.value), inlined.slow(inner.other), inner.raw,
                          _at_null(inlined.run, inner.null))
        t = self.temporary()
        return _Typed(_GUARDS[kind].format(f"{t} := {self.code(node)}"), t, t, t, None)

    def branches(self, typed: _Typed, fast: str, slow: str, run: Callable[[Any, Context], Any]) -> str:
        """``(fast if guard else slow)``, with the value for a null operand folded in between
        when the runtime gives a constant for it (``run`` on the operand's null value):
        ``(fast if guard else False if _1 is None else slow)``."""
        null = _at_null(run, typed.null)
        if null is _UNFOLDED:
            return f"({fast} if {typed.guard} else {slow})"
        return f"({fast} if {typed.guard} else {null!r} if {typed.raw} is None else {slow})"

    def coalesce(self, args: tuple[Node, ...]) -> str:
        """Lazily: the arguments after the first non-null one are not evaluated."""
        code = self.code(args[-1])
        for arg in reversed(args[:-1]):
            t = self.temporary()
            code = f"({t} if ({t} := {self.code(arg)}) is not None else {code})"
        return code


def _inline(op: str, node: Node, *, literal_right: bool) -> bool:
    """Whether ``op`` with this literal operand has an inline case."""
    if not isinstance(node, Literal):
        return False
    if op in _ORDERED:
        return op in _FAST_COMPARISONS.get(node.kind, ())
    if node.kind == "string":
        return op in ("in", "not in", "+")
    if node.kind == "number" and op in ("+", "-", "*", "%"):
        small = isinstance(node.value, int) and 0 < abs(node.value) < _SMALL_INT
        return small and (literal_right or op != "%")  # `5 % x` may divide by zero
    return False


def _literal_set(node: Node) -> bool:
    """A non-empty list of string literals, or of number literals."""
    if not isinstance(node, ListExpr) or not node.items:
        return False
    items = [_folded(i) for i in node.items]
    return any(all(isinstance(i, Literal) and i.kind == kind for i in items) for kind in ("string", "number"))


def _generate(node: Node) -> Compiled:
    generator = _Generator()
    source = f"def evaluate(p, ctx):\n    return {generator.code(node)}\n"
    if not returns_bool(node):
        source += f"\n\ndef test(p, ctx):\n    return {generator.truth(node)}\n"
    return from_source(source, generator.constants)


def from_source(source: str, constants: Mapping[str, Any]) -> Compiled:
    """The function of generated code: what :func:`_generate` makes."""
    return _defined(source, compile(source, "<expression>", "exec"), constants)


def from_code(source: str, code: bytes, constants: Mapping[str, Any]) -> Compiled:
    """The same from Python's compiled form of ``source`` (``marshal``: of this very Python,
    which a pickle of it must check), what a pickled compiled expression is made again from
    (:func:`reduce_compiled`): neither the parser nor Python's compiler runs again."""
    return _defined(source, marshal.loads(code), constants)


def _defined(source: str, code: Any, constants: Mapping[str, Any]) -> Compiled:
    namespace: dict[str, Any] = {**_HELPERS, **constants}
    exec(code, namespace)
    evaluate = namespace["evaluate"]
    evaluate.test = namespace.get("test", evaluate)
    evaluate.source = source
    evaluate.code = code
    evaluate.constants = dict(constants)
    return evaluate


def reduce_compiled(value: Any) -> tuple | None:
    """How to pickle a compiled expression (a function, which pickle cannot store), for
    ``Pickler.reducer_override``: made again from its compiled code and constants, or from its
    tree when closures evaluate it; None for anything else. The code is ``marshal``'s, which
    only the same Python version reads: engine.plan_cache keys its file by that version."""
    if not callable(value) or not hasattr(value, "test") or not hasattr(value, "source"):
        return None
    if value.source is not None:
        return from_code, (value.source, marshal.dumps(value.code), value.constants)
    return compile_closures, (value.node,)


# --- Closures -------------------------------------------------------------------------------


def compile_closures(node: Node) -> Compiled:
    """The same semantics without generated code, for expressions Python cannot compile
    (too deeply nested); no fast paths, only the runtime's generic operators."""
    _check(node)
    try:
        evaluate = _closure(node)
    except RecursionError:
        raise CompileError("expression is nested too deeply") from None

    def compiled(partner: Mapping[str, Any], ctx: Context) -> Any:
        return evaluate(partner, ctx)

    compiled.test = lambda partner, ctx: evaluate(partner, ctx) is True  # type: ignore[attr-defined]
    compiled.source = None  # type: ignore[attr-defined]
    compiled.node = node  # type: ignore[attr-defined]
    return compiled  # type: ignore[return-value]


_NAME_CLOSURES: dict[str, Evaluate] = {
    "partner": lambda p, ctx: p,
    "event": lambda p, ctx: ctx.event,
    "now": lambda p, ctx: ctx.now,
    "today": lambda p, ctx: ctx.today,
}


def _closure(node: Node) -> Evaluate:
    """One Python frame per level, building and evaluating, to go as deep as MAX_DEPTH."""
    if isinstance(node, Literal):
        value = node.value
        if node.kind == "datetime" and value.tzinfo is None:
            return lambda p, ctx: runtime.local(value, ctx.tz)
        return lambda p, ctx: value
    if isinstance(node, Name):
        return _NAME_CLOSURES[node.name]
    if isinstance(node, Attribute):
        name = node.name
        if isinstance(node.value, Name) and node.value.name == "event":
            return lambda p, ctx: runtime.event_attribute(ctx.event, name, ctx)
        value = _closure(node.value)
        return lambda p, ctx: runtime.attribute(value(p, ctx), name, ctx)
    if isinstance(node, Index):
        container, key = _closure(node.value), _closure(node.index)
        return lambda p, ctx: runtime.index(container(p, ctx), key(p, ctx), ctx)
    if isinstance(node, Unary):
        operand = _closure(node.operand)
        if node.op == "-":
            return lambda p, ctx: runtime.negate(operand(p, ctx), ctx)
        return lambda p, ctx: operand(p, ctx) is not True
    if isinstance(node, Binary):
        left, right = _closure(node.left), _closure(node.right)
        if node.op == "and":
            return lambda p, ctx: left(p, ctx) is True and right(p, ctx) is True
        if node.op == "or":
            return lambda p, ctx: left(p, ctx) is True or right(p, ctx) is True
        operator = runtime.BINARY[node.op]
        return lambda p, ctx: operator(left(p, ctx), right(p, ctx), ctx)
    if isinstance(node, (ListExpr, Call)):
        parts = []
        for child in node.children():
            parts.append(_closure(child))
        if isinstance(node, ListExpr):
            return lambda p, ctx: _each(parts, p, ctx)
        if node.function == "coalesce":
            return lambda p, ctx: _first_not_null(parts, p, ctx)
        function = FUNCTIONS[node.function]
        if len(parts) == 1:
            only = parts[0]
            return lambda p, ctx: function(p, ctx, only(p, ctx))
        return lambda p, ctx: function(p, ctx, *_each(parts, p, ctx))
    raise CompileError(f"not an expression node: {node!r}")


def _each(parts: list[Evaluate], p: Mapping[str, Any], ctx: Context) -> list[Any]:
    values = []
    for part in parts:
        values.append(part(p, ctx))
    return values


def _first_not_null(parts: list[Evaluate], p: Mapping[str, Any], ctx: Context) -> Any:
    """Lazily, like the generated code: later arguments are not evaluated."""
    for part in parts:
        value = part(p, ctx)
        if value is not None:
            return value
    return None
