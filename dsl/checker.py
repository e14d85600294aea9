"""Static checks of expressions (SPEC §4 "Static checks"): names, fields, types, calls.

:func:`check` walks the AST once and reports every problem it finds, each located at the
offending token inside the file (through the expression's :class:`ScalarText`). A part that is
already wrong, or whose type is only known at run time, has the type ``any``: it is compatible
with everything, so one mistake produces one message, not a cascade.

Where a message points, one rule throughout: when an operand is of a kind the operator never
accepts (``"x" * 2``, ``not 5``), at that operand; when both operands are fine alone but do not
go together (``partner.revenue > "x"``), at the operator.

A newcomer's type error is most often a quote too many or too few, so such a message also says
what the field is and the literal that fits (``partner.revenue is a number; write 100 without
quotes``), and an unknown function lists the functions there are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .diagnostics import Diagnostic, SourceError, did_you_mean, error, warning
from .functions import SIGNATURES, Signature
from .nodes import BOOLEAN_OPS, Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary
from .parser import inline, parse
from .printer import literal_source, to_source
from .source import ScalarText
from .types import ANY, BOOL, DATE, DATETIME, DURATION, NULL, NUMBER, STRING, Type, check_date, list_of, record


@dataclass(frozen=True)
class Scope:
    """What an expression may refer to where it appears."""

    partner: Type  # record of the partner schema (engine.yaml partners.fields + the id field)
    event: bool = False  # `event` is available (only in an event trigger's `when`)
    steps: tuple[str, ...] | None = None  # the campaign's step ids; None = not inside a campaign
    variant_steps: tuple[str, ...] = ()  # of those, the message steps with variants
    splits: tuple[str, ...] = ()  # of those, the splits
    groups: tuple[str, ...] = ()  # static group names (groups/*.csv)
    campaigns: tuple[str, ...] = ()  # campaign ids


def check(node: Node, scope: Scope, where: ScalarText, expect: Type | None = BOOL) -> tuple[Type, list[Diagnostic]]:
    """The type of the expression and every problem in it (errors and warnings, in text order)."""
    run = _Run(scope, where)
    try:
        found = _type(node, run)
        if expect is not None and _join(found, expect) is None:
            run.error(node, _expectation(expect, found))
    except RecursionError:
        return ANY, [error(where.span(node.start, node.end), "expression is nested too deeply")]
    return found, sorted(run.found, key=lambda d: (d.span, d.message))


def check_text(text: str, scope: Scope, where: ScalarText | None = None, expect: Type | None = BOOL) -> tuple[Node | None, list[Diagnostic]]:
    """Parse and check; a syntax error is a diagnostic like any other. Never raises on input."""
    if not isinstance(text, str):  # a YAML value such as `true` that was not read as a string
        text = where.value if where is not None else _plain_text(text)
    where = where or inline(text)
    try:
        node = parse(text, where)
    except SourceError as exc:
        return None, exc.diagnostics
    return node, check(node, scope, where, expect)[1]


def _plain_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else str(value)


@dataclass
class _Run:
    """One check: where names resolve, where positions map to, and what was found so far."""

    scope: Scope
    where: ScalarText
    found: list[Diagnostic] = field(default_factory=list)

    def error(self, at: Node | tuple[int, int], message: str) -> None:
        self.found.append(error(self._span(at), message))

    def warning(self, at: Node | tuple[int, int], message: str) -> None:
        self.found.append(warning(self._span(at), message))

    def _span(self, at: Node | tuple[int, int]):
        start, end = (at.start, at.end) if isinstance(at, Node) else at
        return self.where.span(start, end)


def _type(node: Node, run: _Run) -> Type:
    return _RULES[type(node)](node, run)


# --- Types: compatibility and how they are named in messages ----------------------------------

_UNKNOWN = ("any", "null")  # compatible with everything: known only at run time
_ORDERED = ("number", "string", "enum", "date", "datetime", "duration")


def _join(a: Type, b: Type) -> Type | None:
    """The type that values of ``a`` and ``b`` share (so they may be compared, or be items of
    one list), or None when they have nothing in common."""
    if a.kind == "null":
        return b
    if b.kind == "null":
        return a
    if a.kind == "any":
        return b
    if b.kind == "any":
        return a
    if a.is_textual() and b.is_textual():
        return a if a == b else STRING
    if a.is_temporal() and b.is_temporal():
        return a if a == b else DATETIME
    if a.kind == "number" and b.kind == "number":  # an int and a number share numbers
        return a if a == b else NUMBER
    if a.kind == "list" and b.kind == "list":
        item = _join(a.item or ANY, b.item or ANY)
        return None if item is None else list_of(item)
    if a.kind == "record" and b.kind == "record":
        return a if a == b else record()
    return a if a.kind == b.kind else None


def _name(t: Type) -> str:
    """A type as users read it: an enum field holds strings, an int field is an int."""
    if t.kind == "enum":
        return "string"
    if t.kind == "list":
        return f"list[{_name(t.item or ANY)}]"
    return str(t) if t.integral else t.kind


def _a(t: Type) -> str:
    name = _name(t)
    if t.kind in _UNKNOWN:
        return name
    return ("an " if name[0] in "aeiou" else "a ") + name


def _expectation(expect: Type, found: Type) -> str:
    if expect == BOOL:
        return f"a condition must be true or false, but this is {_a(found)}"
    return f"expected {_a(expect)}, but this is {_a(found)}"


# --- Leaves: literals and names ---------------------------------------------------------------

_LITERAL_TYPES = {
    "number": NUMBER, "string": STRING, "bool": BOOL, "null": NULL,
    "date": DATE, "datetime": DATETIME, "duration": DURATION,
}
_FIXED_NAMES = {"now": DATETIME, "today": DATE}
_KEYWORDS = ("true", "false", "null")


def _literal(node: Literal, run: _Run) -> Type:
    """A date far outside any campaign's life is a typo (9999-12-31) that the engine's date
    arithmetic could not follow; durations are bounded by the parser already."""
    if node.kind in ("date", "datetime"):
        problem = check_date(node.value)
        if problem is not None:
            run.error(node, f"{literal_source(node)} is out of range: {problem}")
    return _LITERAL_TYPES.get(node.kind, ANY)


def _name_ref(node: Name, run: _Run) -> Type:
    if node.name == "partner":
        return run.scope.partner
    if node.name in _FIXED_NAMES:
        return _FIXED_NAMES[node.name]
    if node.name == "event":
        if run.scope.event:
            return record()
        run.error(node, "'event' is only available in the 'when' of an event trigger")
        return ANY
    run.error(node, f"unknown name '{node.name}'{_name_hint(node.name, run.scope)}")
    return ANY


def _name_hint(word: str, scope: Scope) -> str:
    """A bare field name most likely meant ``partner.<field>``; else the nearest name."""
    fields = [name for name, _ in scope.partner.fields]
    if word in fields:
        return f"; did you mean 'partner.{word}'?"
    names = ["partner", *_FIXED_NAMES, *(["event"] if scope.event else []), *_KEYWORDS]
    return did_you_mean(word, names) or did_you_mean(word, fields, prefix="partner.")


# --- Fields and indexes -----------------------------------------------------------------------


def _attribute(node: Attribute, run: _Run) -> Type:
    owner = _type(node.value, run)
    at = (node.name_start, node.end)
    if owner.kind in _UNKNOWN:
        return ANY
    if owner.kind != "record":
        run.error(at, f"cannot read field '{node.name}' of {_a(owner)}")
        return ANY
    return _field(owner, node.name, node.value, at, run)


def _field(owner: Type, name: str, owner_node: Node, at: Node | tuple[int, int], run: _Run) -> Type:
    """A field of a record; a record without a schema (``event``) has any field."""
    if not owner.fields:
        return ANY
    fields = owner.field_map
    if name in fields:
        return fields[name]
    run.error(at, f"unknown field '{name}' of {to_source(owner_node)}{did_you_mean(name, fields)}")
    return ANY


def _index(node: Index, run: _Run) -> Type:
    owner = _type(node.value, run)
    key = _type(node.index, run)
    if owner.kind in _UNKNOWN:
        return ANY
    if owner.kind == "list" or owner.is_textual():
        if key.kind not in _UNKNOWN and key.kind != "number":
            run.error(node.index, f"a position must be a number, but this is {_a(key)}")
        return owner.item or ANY if owner.kind == "list" else STRING
    if owner.kind == "record":
        if isinstance(node.index, Literal) and node.index.kind == "string":
            return _field(owner, node.index.value, node.value, node.index, run)
        if key.kind not in _UNKNOWN and not key.is_textual():
            run.error(node.index, f"a field name must be a string, but this is {_a(key)}")
        return ANY
    run.error(node.value, f"only lists, strings and records can be indexed, but this is {_a(owner)}")
    return ANY


# --- Lists ------------------------------------------------------------------------------------


def _list(node: ListExpr, run: _Run) -> Type:
    types = [_type(item, run) for item in node.items]
    return list_of(_common(node.items, types, "a list", run))


def _common(nodes: tuple[Node, ...], types: list[Type], what: str, run: _Run) -> Type:
    """The one type of several values (list items, coalesce arguments); an item that does
    not fit the ones before it is reported, and the result is then ``any``."""
    common, mixed = NULL, False
    for node, t in zip(nodes, types):
        joined = _join(common, t)
        if joined is None:
            run.error(node, f"mixed types in {what}: {_a(common)}, then {_a(t)}")
            mixed = True
        else:
            common = joined
    return ANY if mixed or common.kind == "null" else common


# --- Operators --------------------------------------------------------------------------------


def _unary(node: Unary, run: _Run) -> Type:
    operand = _type(node.operand, run)
    if node.op == "not":
        _require_bool("'not' needs true or false", node.operand, operand, run)
        return BOOL
    if operand.kind in _UNKNOWN:
        return ANY
    if operand.kind in ("number", "duration"):
        return operand
    run.error(node.operand, f"'-' needs a number or a duration, but this is {_a(operand)}")
    return ANY


def _require_bool(need: str, node: Node, t: Type, run: _Run) -> None:
    if t.kind not in _UNKNOWN and t.kind != "bool":
        run.error(node, f"{need}, but this is {_a(t)}")


def _binary(node: Binary, run: _Run) -> Type:
    left = _type(node.left, run)
    right = _type(node.right, run)
    return _OPERATORS[node.op](node, left, right, run)


def _operator(node: Binary) -> tuple[int, int]:
    return node.op_start, node.op_start + len(node.op)


def _logic(node: Binary, left: Type, right: Type, run: _Run) -> Type:
    need = f"'{node.op}' needs true or false on both sides"
    _require_bool(need, node.left, left, run)
    _require_bool(need, node.right, right, run)
    return BOOL


def _equality(node: Binary, left: Type, right: Type, run: _Run) -> Type:
    if _join(left, right) is None:
        run.error(_operator(node), _cannot_compare(node, left, right, run))
        return BOOL
    _enum_value(node.left, left, node.right, run)
    _enum_value(node.right, right, node.left, run)
    return BOOL


def _ordering(node: Binary, left: Type, right: Type, run: _Run) -> Type:
    unordered = False
    for side, t in ((node.left, left), (node.right, right)):
        if t.kind not in _UNKNOWN and t.kind not in _ORDERED:
            run.error(side, f"'{node.op}' needs numbers, strings, dates or durations, but this is {_a(t)}")
            unordered = True
        if isinstance(side, Literal) and side.kind == "null":
            run.warning(side, f"'{node.op}' with null is always false; to test for a missing value use == null")
    if not unordered and _join(left, right) is None:
        run.error(_operator(node), _cannot_compare(node, left, right, run))
    return BOOL


def _membership(node: Binary, item: Type, container: Type, run: _Run) -> Type:
    for side in (node.left, node.right):
        if isinstance(side, Literal) and side.kind == "null":
            run.warning(side, f"'{node.op}' with null is always false")
    if container.kind not in _UNKNOWN and container.kind != "list" and not container.is_textual():
        run.error(node.right, f"'{node.op}' needs a list or a string on its right, but this is {_a(container)}")
        return BOOL
    _item_fits(node.left, item, node.right, container, _operator(node), run)
    return BOOL


def _item_fits(item_node: Node, item: Type, container_node: Node, container: Type,
               at: tuple[int, int] | Node, run: _Run) -> None:
    """``item in container`` and ``contains(container, item)``: the item must be something the
    list holds (or a string inside a string); string literals must be values of an enum."""
    if container.kind == "list":
        fits = _join(item, container.item or ANY) is not None
    elif container.is_textual():
        fits = item.kind in _UNKNOWN or item.is_textual()
    else:
        return
    if not fits:
        hint = _item_hint(item_node, item, container_node, container, run)
        run.error(at, f"cannot look for {_a(item)} in {_a(container)}" + (f": {hint}" if hint else ""))
        return
    if isinstance(container_node, ListExpr):
        for literal in container_node.items:
            _enum_value(item_node, item, literal, run)
    if container.kind == "list" and container.item is not None:
        _enum_value(container_node, container.item, item_node, run)


def _enum_value(enum_node: Node, enum_type: Type, literal: Node, run: _Run) -> None:
    """A string literal compared with an enum must be one of its values."""
    if enum_type.kind != "enum" or not isinstance(literal, Literal) or literal.kind != "string":
        return
    if literal.value in enum_type.values:
        return
    values = ", ".join(enum_type.values)
    run.error(literal, f"'{literal.value}' is not a value of {to_source(enum_node)} ({values})"
                       f"{did_you_mean(literal.value, enum_type.values)}")


# What `+` and `-` accept, by operand kinds (an enum counts as a string); anything else is an
# error. The same table as dsl.runtime's add() and subtract().
_ADDITIVE = {
    ("+", "number", "number"): NUMBER,
    ("+", "string", "string"): STRING,
    ("-", "number", "number"): NUMBER,
    ("+", "duration", "duration"): DURATION,
    ("-", "duration", "duration"): DURATION,
    ("+", "date", "duration"): DATE,
    ("-", "date", "duration"): DATE,
    ("+", "datetime", "duration"): DATETIME,
    ("-", "datetime", "duration"): DATETIME,
    ("+", "duration", "date"): DATE,
    ("+", "duration", "datetime"): DATETIME,
    ("-", "date", "date"): DURATION,
    ("-", "datetime", "datetime"): DURATION,
    ("-", "date", "datetime"): DURATION,
    ("-", "datetime", "date"): DURATION,
}


def _operand(t: Type) -> str:
    """The kind :data:`_ADDITIVE` knows a type by: an enum is a string, an int a number."""
    return "string" if t.kind == "enum" else t.kind


_ACCEPTS = {
    "+": (("number", "string", "enum", "date", "datetime", "duration"), "numbers, strings, dates or durations"),
    "-": (("number", "date", "datetime", "duration"), "numbers, dates or durations"),
}


def _arithmetic(node: Binary, left: Type, right: Type, run: _Run) -> Type:
    accepted, need = _ACCEPTS.get(node.op, (("number",), "numbers"))
    wrong = False
    for side, t in ((node.left, left), (node.right, right)):
        if t.kind not in _UNKNOWN and t.kind not in accepted:
            run.error(side, f"'{node.op}' needs {need}, but this is {_a(t)}")
            wrong = True
    if wrong or left.kind in _UNKNOWN or right.kind in _UNKNOWN:
        return ANY
    if node.op not in "+-":
        return NUMBER
    result = _ADDITIVE.get((node.op, _operand(left), _operand(right)))
    if result is None:
        run.error(_operator(node), f"cannot use '{node.op}' with {_a(left)} and {_a(right)}")
        return ANY
    return result


_OPERATORS = {
    **{op: _logic for op in BOOLEAN_OPS},
    "==": _equality,
    "!=": _equality,
    **{op: _ordering for op in ("<", "<=", ">", ">=")},
    "in": _membership,
    "not in": _membership,
    **{op: _arithmetic for op in ("+", "-", "*", "/", "%")},
}


# --- Hints: what a value that does not fit should have been written as ------------------------
#
# A newcomer's usual type error is a quote too many or too few: `partner.revenue >= "100"`,
# `partner.joined_at < "2026-01-01"`, `partner.active == "true"`, `partner.zip == 358`. The
# message then says what the other side is (its declared type) and the literal that fits.

_SUBJECT_CHARS = 40  # a side longer than this is not repeated in a message
_EXAMPLES = {
    "number": "a number such as 100",
    "bool": "true or false",
    "date": "a date such as 2026-01-31",
    "datetime": "a datetime such as 2026-01-31T09:00",
    "duration": "a duration such as 3d",
}


def _cannot_compare(node: Binary, left: Type, right: Type, run: _Run) -> str:
    """``cannot compare number with string``, then what the sides are and how to fix it."""
    message = f"cannot compare {_name(left)} with {_name(right)}"
    hint = _fit(node.left, left, node.right, right, run) or _fit(node.right, right, node.left, left, run)
    for items, other, other_type in ((node.right, node.left, left), (node.left, node.right, right)):
        if hint is None and isinstance(items, ListExpr) and other_type.kind == "list" and _subject(other):
            fix = _rewrite_list(items, other_type.item or ANY, run)
            hint = f"{_subject(other)} is {_a(other_type)}; write {fix}" if fix else None
    if hint is None and not any(_is_literal(n) or isinstance(n, ListExpr) for n in (node.left, node.right)):
        names = _subject(node.left), _subject(node.right)
        if None not in names:
            hint = f"{names[0]} is {_a(left)}, {names[1]} is {_a(right)}"
    return f"{message}: {hint}" if hint else message


def _fit(subject: Node, subject_type: Type, literal: Node, literal_type: Type, run: _Run) -> str | None:
    """``partner.revenue is a number; write 100 without quotes`` for a literal compared with a
    field (or any expression that is not a literal); None when ``literal`` is not one."""
    name = _subject(subject)
    if name is None or not _is_literal(literal) or _is_literal(subject):
        return None
    what = f"{name} is {_a(subject_type)}"
    fix = _rewrite(literal, subject_type, run)
    if fix is not None:
        return f"{what}; write {fix}"
    if subject_type.kind == "enum":
        return f"{what}, one of " + ", ".join(_quote(v, run) for v in subject_type.values[:5]) \
            + (", ..." if len(subject_type.values) > 5 else "")
    if subject_type.kind == "list" and _join(literal_type, subject_type.item or ANY) is not None:
        return f"{what}; to look for an item, write {to_source(literal)} in {name}"
    example = _EXAMPLES.get(subject_type.kind)
    if example and literal_type.is_textual():
        example += ", without quotes"
    if subject_type.kind == "string":
        example = f"a text in quotes, such as {_quote('FI', run)}"
    return f"{what}; compare it with {example}" if example else what


def _item_hint(item_node: Node, item: Type, container_node: Node, container: Type, run: _Run) -> str | None:
    """``5 in partner.tags`` (write "5"), and ``partner.revenue in ["1", "2"]`` (write [1, 2])."""
    if container.kind == "list" and not isinstance(container_node, ListExpr):
        target = container.item or ANY
        name = _subject(container_node)
        fix = _rewrite(item_node, target, run) if _is_literal(item_node) else None
        return f"{name} is {_a(container)}; write {fix}" if name and fix else None
    if isinstance(container_node, ListExpr) and not _is_literal(item_node) and _subject(item_node):
        fix = _rewrite_list(container_node, item, run)
        return f"{_subject(item_node)} is {_a(item)}; write {fix}" if fix else None
    return _fit(container_node, container, item_node, item, run) if container.is_textual() else None


def _rewrite_list(node: ListExpr, item: Type, run: _Run) -> str | None:
    """``[100, 200]`` for ``["100", "200"]`` whose items should be numbers, or None (also
    for a list too long to repeat in a message)."""
    if node.end - node.start > 2 * _SUBJECT_CHARS:
        return None
    items = []
    for entry in node.items:
        if _join(_literal_type(entry), item) is None:
            fix = _rewrite(entry, item, run, bare=True)
        elif isinstance(entry, Literal) and entry.kind == "string":
            fix = _quote(entry.value, run)
        else:
            fix = to_source(entry)
        if fix is None:
            return None
        items.append(fix)
    return f"[{', '.join(items)}]"


def _rewrite(node: Node, target: Type, run: _Run, bare: bool = False) -> str | None:
    """How to write the literal ``node`` so that it is of ``target``: ``100 without quotes``
    for ``"100"`` against a number, ``"358" in quotes`` for ``358`` against a string (just the
    text when ``bare``); None when no such literal says the same."""
    if isinstance(node, Literal) and node.kind == "string":
        inner = _unquoted(node.value)
        if inner is None or _join(inner[1], target) is None:
            return None
        return inner[0] if bare else f"{inner[0]} without quotes"
    if not _is_literal(node) or not target.is_textual() or _literal_type(node).kind in _UNKNOWN:
        return None
    text = to_source(node)
    if target.kind == "enum" and text not in target.values:
        return None
    return _quote(text, run) if bare else f"{_quote(text, run)} in quotes"


def _unquoted(value: str) -> tuple[str, Type] | None:
    """The text of a string that is a literal of another kind once its quotes are gone
    (``"100"``, ``"2026-01-01"``, ``"true"``, ``"-3d"``), with that literal's type."""
    text = value.strip()
    if not text or len(text) > _SUBJECT_CHARS or not text.isprintable():
        return None
    try:
        node = parse(text)
    except SourceError:
        return None
    if not _is_literal(node):
        return None
    literal = node.operand if isinstance(node, Unary) else node
    if literal.kind in ("string", "null") or (literal.kind in ("date", "datetime") and check_date(literal.value)):
        return None
    return text, _LITERAL_TYPES[literal.kind]


def _is_literal(node: Node) -> bool:
    """A literal, or a negative number or duration (``-5`` parses as a negation)."""
    if isinstance(node, Unary) and node.op == "-":
        return isinstance(node.operand, Literal) and node.operand.kind in ("number", "duration")
    return isinstance(node, Literal)


def _literal_type(node: Node) -> Type:
    literal = node.operand if isinstance(node, Unary) else node
    return _LITERAL_TYPES.get(literal.kind, ANY) if isinstance(literal, Literal) else ANY


def _subject(node: Node) -> str | None:
    """The expression as a message repeats it (``partner.revenue``), unless it is long."""
    if node.end - node.start > 2 * _SUBJECT_CHARS:  # not even printed: a message is checked once per error
        return None
    text = to_source(node)
    return text if len(text) <= _SUBJECT_CHARS and text.isprintable() else None


def _quote(text: str, run: _Run) -> str:
    """A string literal as the user can paste it: in single quotes inside a double-quoted
    YAML value (a double quote there would end the value), else in double quotes."""
    if run.where.style == '"' and "'" not in text:
        return f"'{text}'"
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Calls ------------------------------------------------------------------------------------

# What a parameter kind accepts (see dsl.functions), and how a message names it.
_PARAMS = {
    "string": (("string", "enum"), "a string"),
    "number": (("number",), "a number"),
    "temporal": (("date", "datetime"), "a date or a datetime"),
    "duration": (("duration",), "a duration"),
    "sized": (("string", "enum", "list"), "a string or a list"),
    "container": (("string", "enum", "list"), "a string or a list"),
}
_PARAM_TYPES = {"string": STRING, "number": NUMBER, "temporal": DATETIME, "duration": DURATION}  # what a rewrite must fit
_FUNCTIONS_AS_NAMES = ("now", "today", "partner", "event")


def _call(node: Call, run: _Run) -> Type:
    types = [_type(arg, run) for arg in node.args]
    name_at = (node.start, node.start + len(node.function))
    signature = SIGNATURES.get(node.function)
    if signature is None:
        run.error(name_at, _unknown_function(node.function))
        return ANY
    if not signature.accepts_count(len(node.args)):
        noun = "argument" if len(signature.params) == 1 and not signature.optional else "arguments"
        run.error(name_at, f"{node.function}() takes {signature.arity} {noun}, got {len(node.args)}")
    params = signature.params_for(len(node.args))
    for arg, t, param in zip(node.args, types, params):
        if param in ("step", "group", "campaign") or param in _STEP_KINDS:
            _reference(node, arg, param, run)
        elif param in _PARAMS:
            kinds, description = _PARAMS[param]
            if t.kind not in _UNKNOWN and t.kind not in kinds:
                fix = _rewrite(arg, _PARAM_TYPES[param], run) if param in _PARAM_TYPES else None
                run.error(arg, f"{node.function}() needs {description}, but this is {_a(t)}" + (f"; write {fix}" if fix else ""))
    return _call_result(node, signature, types, run)


def _unknown_function(name: str) -> str:
    if name in _FUNCTIONS_AS_NAMES:
        return f"'{name}' is not a function; write {name} without parentheses"
    known = ", ".join(sorted(SIGNATURES))
    return f"unknown function '{name}'{did_you_mean(name, SIGNATURES)} (functions: {known})"


def _call_result(node: Call, signature: Signature, types: list[Type], run: _Run) -> Type:
    """The call's type, after the checks that involve several arguments or a literal's text."""
    if node.function == "coalesce":
        return _common(node.args, types, "coalesce()", run) if node.args else ANY
    if node.function == "contains" and len(node.args) == 2:
        _item_fits(node.args[1], types[1], node.args[0], types[0], node.args[1], run)
    if node.function == "matches" and len(node.args) == 2:
        _regex(node.args[1], run)
    if node.function == "was_in_campaign" and len(node.args) == 2:
        _not_negative(node.args[1], run)
    returns = signature.returns
    return returns(types) if callable(returns) else returns


def _not_negative(node: Node, run: _Run) -> None:
    """``was_in_campaign("x", -7d)``: a window that ends before it starts (a negative duration
    computed at run time is false, with a warning)."""
    if isinstance(node, Unary) and node.op == "-" and isinstance(node.operand, Literal) \
            and node.operand.kind == "duration" and node.operand.value:
        run.error(node, "the duration cannot be negative: was_in_campaign(\"...\", 7d) looks back 7 days from now")


def _regex(node: Node, run: _Run) -> None:
    if isinstance(node, Literal) and node.kind == "string":
        try:
            re.compile(node.value)
        except (re.error, RecursionError, OverflowError) as exc:
            run.error(node, f"invalid regular expression: {exc}")


def _reference(call: Call, arg: Node, kind: str, run: _Run) -> None:
    """A step, group or campaign is named by a string literal, so that it can be checked here."""
    noun = "step" if kind in _STEP_KINDS else kind
    known, where_known = {
        "step": (run.scope.steps, " in this campaign"),
        "group": (run.scope.groups, ""),
        "campaign": (run.scope.campaigns, ""),
    }[noun]
    if known is None:
        run.error((call.start, call.start + len(call.function)),
                  f"{call.function}() is only available inside a campaign (it refers to a step)")
        return
    if not (isinstance(arg, Literal) and arg.kind == "string"):
        run.error(arg, f"{call.function}() needs the {noun} name as a quoted string, such as {call.function}(\"...\")")
        return
    if kind in _STEP_KINDS:
        _step_of_kind(call, arg, kind, known, run)
    elif arg.value not in known:
        run.error(arg, f"unknown {kind} '{arg.value}'{where_known}{did_you_mean(arg.value, known)}")


# A step parameter that takes one kind of step: the Scope field listing them, and the message
# for a step of another kind.
_STEP_KINDS = {
    "variant_step": ("variant_steps",
                     "step '{name}' has no variants: {function}() names a step with variants"),
    "split_step": ("splits", "'{name}' is not a split step: {function}() names a split"),
}
_LISTED = 5  # names of the right kind a message lists


def _step_of_kind(call: Call, arg: Literal, kind: str, steps: tuple[str, ...], run: _Run) -> None:
    """``variant("welcome")`` of a step without variants, or ``split("welcome")`` of a message,
    would be null for everyone: a mistake, so the message says which steps would do."""
    field_name, wrong_kind = _STEP_KINDS[kind]
    fitting: tuple[str, ...] = getattr(run.scope, field_name)
    if arg.value in fitting:
        return
    if arg.value not in steps:
        run.error(arg, f"unknown step '{arg.value}' in this campaign{did_you_mean(arg.value, fitting)}")
        return
    more = len(fitting) - _LISTED
    listed = ", ".join(fitting[:_LISTED]) + (f" and {more} more" if more > 0 else "")
    here = f"here: {listed}" if fitting else "this campaign has none"
    run.error(arg, wrong_kind.format(name=arg.value, function=call.function) + f" ({here})")


_RULES = {
    Literal: _literal,
    Name: _name_ref,
    Attribute: _attribute,
    Index: _index,
    ListExpr: _list,
    Unary: _unary,
    Binary: _binary,
    Call: _call,
}
