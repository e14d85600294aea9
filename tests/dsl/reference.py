"""A slow, obviously correct interpreter of the expression language, for tests only.

Written straight from SPEC §4 (and the decisions documented in :mod:`dsl.runtime` where the
SPEC is silent), sharing no code with ``dsl.runtime`` or ``dsl.compile``: it only reads the
AST. The compiler's property tests check that compiled expressions give the same value and
the same number of warnings as this.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone, tzinfo
from typing import Any, Mapping

from dsl.nodes import Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary

UTC = timezone.utc
DAY = timedelta(days=1)
NOT_COMPARABLE = object()


@dataclass
class Env:
    partner: Mapping[str, Any]
    now: datetime
    tz: tzinfo
    event: Mapping[str, Any] | None
    facts: Any
    warnings: list[str] = field(default_factory=list)

    def warn(self, why: str) -> None:
        self.warnings.append(why)


def evaluate(node: Node, partner: Mapping[str, Any], *, now: datetime, tz: tzinfo,
             event: Mapping[str, Any] | None = None, facts: Any = None) -> tuple[Any, list[str]]:
    """The value of the expression for this partner, and the warnings it raised."""
    env = Env(partner, now, tz, event, facts)
    return value_of(node, env), env.warnings


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, datetime):
        return "datetime"
    if isinstance(v, date):
        return "date"
    if isinstance(v, timedelta):
        return "duration"
    if isinstance(v, (list, tuple)):
        return "list"
    if isinstance(v, Mapping):
        return "record"
    return "other"


def is_temporal(v: Any) -> bool:
    return type_name(v) in ("date", "datetime")


def moment(v: date, tz: tzinfo) -> datetime:
    """A date means its local midnight; a naive datetime means local time."""
    if type_name(v) == "date":
        return datetime(v.year, v.month, v.day, tzinfo=tz)
    return v if v.tzinfo is not None else v.replace(tzinfo=tz)


def today(env: Env) -> date:
    return env.now.astimezone(env.tz).date()


# --- evaluation -----------------------------------------------------------------------------


def value_of(node: Node, env: Env) -> Any:
    match node:
        case Literal(kind="datetime", value=v) if v.tzinfo is None:
            return v.replace(tzinfo=env.tz)
        case Literal(value=v):
            return v
        case Name(name="partner"):
            return env.partner
        case Name(name="event"):
            return env.event
        case Name(name="now"):
            return env.now
        case Name(name="today"):
            return today(env)
        case ListExpr(items=items):
            return [value_of(item, env) for item in items]
        case Attribute(value=Name(name="event"), name=name):
            return event_field(env.event, name, env)
        case Attribute(value=inner, name=name):
            return field_of(value_of(inner, env), name, env)
        case Index(value=inner, index=key):
            return item_of(value_of(inner, env), value_of(key, env), env)
        case Unary(op="not", operand=operand):
            return not (value_of(operand, env) is True)
        case Unary(op="-", operand=operand):
            return negative(value_of(operand, env), env)
        case Binary(op="and", left=left, right=right):
            if value_of(left, env) is not True:
                return False
            return value_of(right, env) is True
        case Binary(op="or", left=left, right=right):
            if value_of(left, env) is True:
                return True
            return value_of(right, env) is True
        case Binary(op=op, left=left, right=right):
            return binary(op, value_of(left, env), value_of(right, env), env)
        case Call(function="coalesce", args=args):
            for arg in args:
                v = value_of(arg, env)
                if v is not None:
                    return v
            return None
        case Call(function=function, args=args):
            return call(function, [value_of(arg, env) for arg in args], env)
    raise AssertionError(f"unknown node {node!r}")


def event_field(event: Any, name: str, env: Env) -> Any:
    if type_name(event) != "record":
        return field_of(event, name, env)
    if name in event:
        return event[name]
    data = event.get("data")
    if type_name(data) == "record":
        return data.get(name)
    return None


def field_of(v: Any, name: str, env: Env) -> Any:
    if v is None:
        return None
    if type_name(v) == "record":
        return v.get(name)
    env.warn("attribute of a non-record")
    return None


def item_of(v: Any, key: Any, env: Env) -> Any:
    if v is None or key is None:
        return None
    if type_name(v) in ("list", "string") and type_name(key) == "number" and isinstance(key, int):
        if key < 0 or key >= len(v):
            return None
        return v[key]
    if type_name(v) == "record" and type_name(key) == "string":
        return v.get(key)
    env.warn("bad index")
    return None


def negative(v: Any, env: Env) -> Any:
    if v is None:
        return None
    if type_name(v) not in ("number", "duration"):
        env.warn("negation of a non-number")
        return None
    try:
        return -v
    except OverflowError:
        env.warn("overflow")
        return None


# --- operators ------------------------------------------------------------------------------


def binary(op: str, a: Any, b: Any, env: Env) -> Any:
    if op == "==":
        if a is None or b is None:
            return a is None and b is None
        eq = equals(a, b, env.tz)
        if eq is NOT_COMPARABLE:
            env.warn("== of different types")
            return False
        return eq
    if op == "!=":
        if a is None or b is None:
            return not (a is None and b is None)
        eq = equals(a, b, env.tz)
        if eq is NOT_COMPARABLE:
            env.warn("!= of different types")
            return False
        return not eq
    if op in ("<", "<=", ">", ">="):
        return ordered(op, a, b, env)
    if op == "in":
        return contained(a, b, env) is True
    if op == "not in":
        return contained(a, b, env) is False
    return arithmetic(op, a, b, env)


def equals(a: Any, b: Any, tz: tzinfo) -> Any:
    """True/False for two non-null values, or NOT_COMPARABLE."""
    ta, tb = type_name(a), type_name(b)
    if is_temporal(a) and is_temporal(b):
        if ta == "date" and tb == "date":
            return a == b
        return moment(a, tz) == moment(b, tz)
    if ta != tb or ta == "other":
        return NOT_COMPARABLE
    if ta == "list":
        if len(a) != len(b):
            return False
        return all(item_equals(x, y, tz) for x, y in zip(a, b))
    if ta == "record":
        if set(a) != set(b):
            return False
        return all(item_equals(a[k], b[k], tz) for k in a)
    return a == b


def item_equals(x: Any, y: Any, tz: tzinfo) -> bool:
    if x is None or y is None:
        return x is None and y is None
    return equals(x, y, tz) is True


def ordered(op: str, a: Any, b: Any, env: Env) -> bool:
    if a is None or b is None:
        return False
    ta, tb = type_name(a), type_name(b)
    if is_temporal(a) and is_temporal(b) and not (ta == "date" and tb == "date"):
        a, b = moment(a, env.tz), moment(b, env.tz)
    elif ta != tb or ta not in ("number", "string", "date", "duration"):
        env.warn(f"{op} of unordered types")
        return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def contained(x: Any, container: Any, env: Env) -> bool | None:
    """True/False, or None for a null operand or a type surprise (then both `in` and
    `not in` are false)."""
    if x is None or container is None:
        return None
    if type_name(container) == "string" and type_name(x) == "string":
        return x in container
    if type_name(container) == "list":
        bad_item = False
        for item in container:
            if item is None:
                continue
            eq = equals(x, item, env.tz)
            if eq is True:
                return True
            if eq is NOT_COMPARABLE:
                bad_item = True
        if not bad_item:
            return False
    env.warn("membership of a different type")
    return None


def shifted(t: date, d: timedelta, tz: tzinfo) -> date:
    if type_name(t) == "date" and d % DAY == timedelta(0):
        return t + DAY * (d // DAY)
    return moment(t, tz).astimezone(UTC) + d


def arithmetic(op: str, a: Any, b: Any, env: Env) -> Any:
    if a is None or b is None:
        return None
    ta, tb = type_name(a), type_name(b)
    try:
        if ta == "number" and tb == "number":
            if op == "+":
                return a + b
            if op == "-":
                return a - b
            if op == "*":
                return a * b
            if b == 0:
                env.warn("division by zero")
                return None
            return a / b if op == "/" else a % b
        if op == "+" and ta == tb and ta in ("string", "duration"):
            return a + b
        if op == "-" and ta == tb == "duration":
            return a - b
        if op == "+" and is_temporal(a) and tb == "duration":
            return shifted(a, b, env.tz)
        if op == "+" and ta == "duration" and is_temporal(b):
            return shifted(b, a, env.tz)
        if op == "-" and is_temporal(a) and tb == "duration":
            return shifted(a, -b, env.tz)
        if op == "-" and ta == tb == "date":
            return a - b
        if op == "-" and is_temporal(a) and is_temporal(b):
            return moment(a, env.tz).astimezone(UTC) - moment(b, env.tz).astimezone(UTC)
    except (OverflowError, ValueError, ZeroDivisionError):
        env.warn("out of range")
        return None
    env.warn(f"{op} of unexpected types")
    return None


# --- functions ------------------------------------------------------------------------------

FACTS = ("in_group", "in_campaign", "was_in_campaign", "opened", "clicked", "bounced", "responded")
KEYS = ("response", "variant", "split")  # a key the store recorded for a step, or null


def call(function: str, args: list[Any], env: Env) -> Any:
    if function == "days_since":
        (v,) = args
        if v is None:
            return None
        if type_name(v) == "date":
            return (today(env) - v).days
        if type_name(v) == "datetime":
            try:
                return (today(env) - moment(v, env.tz).astimezone(env.tz).date()).days
            except (OverflowError, ValueError):
                env.warn("out of range")
                return None
        env.warn("days_since of a non-date")
        return None
    if function in ("lower", "upper"):
        (v,) = args
        if v is None:
            return None
        if type_name(v) != "string":
            env.warn(f"{function} of a non-string")
            return None
        return v.lower() if function == "lower" else v.upper()
    if function == "len":
        (v,) = args
        if v is None:
            return None
        if type_name(v) not in ("string", "list"):
            env.warn("len of a non-sized value")
            return None
        return len(v)
    if function == "contains":
        container, part = args
        return contained(part, container, env) is True
    if function in ("starts_with", "ends_with", "matches"):
        text, other = args
        if text is None or other is None:
            return False
        if type_name(text) != "string" or type_name(other) != "string":
            env.warn(f"{function} of a non-string")
            return False
        if function == "starts_with":
            return text[: len(other)] == other
        if function == "ends_with":
            return len(other) <= len(text) and text[len(text) - len(other):] == other
        try:
            pattern = re.compile(other)
        except (re.error, RecursionError, OverflowError):
            env.warn("bad regular expression")
            return False
        return pattern.search(text) is not None
    if function in FACTS or function in KEYS:
        (reference,) = args
        nothing = None if function in KEYS else False
        if reference is None:
            return nothing
        if type_name(reference) != "string":
            env.warn(f"{function} of a non-string")
            return nothing
        if env.facts is None:
            return nothing
        answer = getattr(env.facts, function)(env.partner, reference)
        if function in KEYS:
            return answer if isinstance(answer, str) else None
        return answer is True
    raise AssertionError(f"unknown function {function}")
