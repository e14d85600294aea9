"""The dynamic semantics of the expression language (SPEC §4), as small plain functions.

Every operator and built-in function lives here once, in its generic form: it accepts values
of any type and never raises on data. A value of a type the operation does not expect makes a
comparison false and arithmetic null, and appends a warning to the :class:`Context` (the tick
counts them). :mod:`dsl.compile` inlines fast paths for the common cases and calls these for
everything else.

Values: null is ``None``; numbers are ``int``/``float`` (``bool`` is not a number, so
``true == 1`` is false, with a warning); strings (enums too) are ``str``; dates are ``date``;
datetimes are aware ``datetime`` (a naive one is local time in ``ctx.tz``, like a literal
without an offset); durations are ``timedelta``; lists are ``list`` (or ``tuple``); records
(``partner``, ``event``, nested objects) are mappings.

Where SPEC §4 is silent, we decided:

- Every comparison with a type surprise is false, ``!=`` and ``not in`` included, so neither
  is simply the negation of ``==`` / ``in``: bad data never makes a partner match.
- ``x in list`` is a surprise when nothing matched and the list holds a non-null item of a type
  that cannot equal ``x``. Null items are skipped; ``null in [null]`` is false like any ``in``
  with a null operand. Equality of lists and records compares their items as values.
- ``and``/``or``/``not`` take anything but ``true`` as false without a warning (null is
  common there); they always give ``true`` or ``false``.
- Strings order by code point and ``+`` concatenates them; ``1 == 1.0``.
- ``date ± duration`` is a date when the duration is whole days (calendar days), else the
  datetime of the date's local midnight ± the duration. ``datetime ± duration`` and
  ``datetime - datetime`` are elapsed time (computed in UTC), so across a DST change
  ``2026-03-29T02:00 + 1d`` is 03:00 the next day in Helsinki. ``date - date`` is whole days.
- ``/`` is exact division (``7 / 2`` is 3.5); ``%`` takes the sign of the divisor; a zero
  divisor, or a result out of range, is null with a warning.
- ``list[i]`` counts from 0; a position outside the list (negative too) is null, a non-integer
  index is a surprise. ``record["name"]`` is ``record.name``.
- ``event.x`` is the event's own key (type, at, partner, id, data) if it has one, else
  ``event.data.x``; any field of a missing event is null.
- ``days_since(d)`` counts whole local days: see :func:`days_since`.
- ``coalesce`` evaluates its arguments lazily (no warnings from the ones it did not need).
- Functions on null: ``lower``/``upper``/``len``/``days_since``/``response``/``variant``/
  ``split`` give null; the predicates (``contains``, ``starts_with``, ``ends_with``,
  ``matches``, ``in_group``, …) give false. An invalid regular expression at run time is
  false with a warning.
- ``was_in_campaign(id, within)``: an enrollment was going at some time in [now - within, now]
  (both ends included); ``0d`` is "enrolled now", a negative duration is false with a warning,
  a null one false.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from functools import cached_property, lru_cache
from typing import Any, Callable, Mapping, Protocol

UTC = timezone.utc
TEMPORAL = ("date", "datetime")


class Facts(Protocol):
    """What the store knows about a partner, for the functions that ask it."""

    def in_group(self, partner: Mapping, name: str) -> bool: ...
    def in_campaign(self, partner: Mapping, campaign_id: str) -> bool: ...
    def was_in_campaign(self, partner: Mapping, campaign_id: str, within: timedelta | None = None) -> bool: ...
    def opened(self, partner: Mapping, step_id: str) -> bool: ...
    def clicked(self, partner: Mapping, step_id: str) -> bool: ...
    def bounced(self, partner: Mapping, step_id: str) -> bool: ...
    def responded(self, partner: Mapping, step_id: str) -> bool: ...
    def response(self, partner: Mapping, step_id: str) -> str | None: ...
    def variant(self, partner: Mapping, step_id: str) -> str | None: ...
    def split(self, partner: Mapping, step_id: str) -> str | None: ...


class _NoFacts:
    """Evaluation without a store: in no group or campaign, nothing opened, no response, no
    variant received and no split path taken."""

    def in_group(self, partner: Mapping, name: str) -> bool:
        return False

    in_campaign = opened = clicked = bounced = responded = in_group

    def was_in_campaign(self, partner: Mapping, campaign_id: str, within: timedelta | None = None) -> bool:
        return False

    def response(self, partner: Mapping, step_id: str) -> str | None:
        return None

    variant = split = response


NO_FACTS: Facts = _NoFacts()


@dataclass(frozen=True)
class Context:
    """Everything an expression may see besides the partner record."""

    now: datetime
    tz: tzinfo
    event: Mapping[str, Any] | None = None
    facts: Facts = NO_FACTS
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.now.tzinfo is None:
            raise ValueError("Context.now must be an aware datetime")

    @cached_property
    def today(self) -> date:
        """The local date of ``now`` in ``tz``."""
        return self.now.astimezone(self.tz).date()

    def warn(self, message: str) -> None:
        self.warnings.append(message)


# --- Kinds of values ------------------------------------------------------------------------

_KIND_OF_CLASS: dict[type, str] = {
    type(None): "null", bool: "bool", int: "number", float: "number", str: "string",
    date: "date", datetime: "datetime", timedelta: "duration", list: "list", tuple: "list",
    dict: "record",
}


def kind(value: Any) -> str:
    """The language's name for the type of a run-time value; ``other`` for foreign objects."""
    found = _KIND_OF_CLASS.get(value.__class__)
    if found is not None:
        return found
    for cls, name in ((bool, "bool"), ((int, float), "number"), (str, "string"), (datetime, "datetime"),
                      (date, "date"), (timedelta, "duration"), ((list, tuple), "list"), (Mapping, "record")):
        if isinstance(value, cls):
            return name
    return "other"


def _surprise(ctx: Context, what: str, *values: Any) -> None:
    """Record a value of an unexpected type (kinds only: values may be personal data)."""
    ctx.warn(f"{what}: unexpected {', '.join(kind(v) for v in values)}")


# --- Time -----------------------------------------------------------------------------------


def local(value: datetime, tz: tzinfo) -> datetime:
    """A naive datetime is local time in ``tz``, like a datetime literal without an offset."""
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def instant(value: date, tz: tzinfo) -> datetime:
    """A date or datetime as a point in time: a date stands for its local midnight."""
    if isinstance(value, datetime):
        return local(value, tz)
    return datetime.combine(value, time(), tz)


def _utc(value: date, tz: tzinfo) -> datetime:
    return instant(value, tz).astimezone(UTC)


def _shift(moment: date, by: timedelta, tz: tzinfo) -> date:
    """``moment + by``: whole days keep a date a date (calendar days); anything else is
    elapsed time, computed in UTC so that DST changes do not bend it."""
    if not isinstance(moment, datetime) and not by.seconds and not by.microseconds:
        return moment + timedelta(days=by.days)
    return _utc(moment, tz) + by


def _between(later: date, earlier: date, tz: tzinfo) -> timedelta:
    if not isinstance(later, datetime) and not isinstance(earlier, datetime):
        return later - earlier
    return _utc(later, tz) - _utc(earlier, tz)


# --- Equality and comparison ----------------------------------------------------------------


def same(a: Any, b: Any, tz: tzinfo) -> bool | None:
    """Whether two non-null values are equal; None when their types cannot be compared.
    Items of lists and records compare as values (null equals null, other types differ)."""
    ka, kb = kind(a), kind(b)
    if ka != kb:
        if ka in TEMPORAL and kb in TEMPORAL:
            return instant(a, tz) == instant(b, tz)
        return None
    if ka == "list":
        return len(a) == len(b) and all(_same_item(x, y, tz) for x, y in zip(a, b))
    if ka == "record":
        return a.keys() == b.keys() and all(_same_item(a[k], b[k], tz) for k in a)
    if ka == "datetime":
        return local(a, tz) == local(b, tz)
    if ka == "other":
        return None
    return a == b


def _same_item(a: Any, b: Any, tz: tzinfo) -> bool:
    if a is None or b is None:
        return a is b
    return same(a, b, tz) is True


def equal(a: Any, b: Any, ctx: Context) -> bool:
    """``==``: null is a value like any other."""
    if a is None or b is None:
        return a is b
    result = same(a, b, ctx.tz)
    if result is None:
        _surprise(ctx, "==", a, b)
        return False
    return result


def not_equal(a: Any, b: Any, ctx: Context) -> bool:
    """``!=``: null is a value; values of types that cannot be compared are a surprise, and
    like every comparison with a surprise it is false (so not simply ``not ==``)."""
    if a is None or b is None:
        return a is not b
    result = same(a, b, ctx.tz)
    if result is None:
        _surprise(ctx, "!=", a, b)
        return False
    return not result


def _ordered(a: Any, b: Any, tz: tzinfo) -> tuple[Any, Any] | None:
    """The pair to order, or None when the two types have no order between them."""
    ka, kb = kind(a), kind(b)
    if ka == kb and ka in ("number", "string", "date", "duration"):
        return a, b
    if ka in TEMPORAL and kb in TEMPORAL:
        return instant(a, tz), instant(b, tz)
    return None


def _compare(op: str, test: Callable[[Any, Any], bool], a: Any, b: Any, ctx: Context) -> bool:
    if a is None or b is None:
        return False
    pair = _ordered(a, b, ctx.tz)
    if pair is None:
        _surprise(ctx, op, a, b)
        return False
    return test(*pair)


def less(a: Any, b: Any, ctx: Context) -> bool:
    """``<``, and the three below: false with a null operand."""
    return _compare("<", operator.lt, a, b, ctx)


def at_most(a: Any, b: Any, ctx: Context) -> bool:
    return _compare("<=", operator.le, a, b, ctx)


def greater(a: Any, b: Any, ctx: Context) -> bool:
    return _compare(">", operator.gt, a, b, ctx)


def at_least(a: Any, b: Any, ctx: Context) -> bool:
    return _compare(">=", operator.ge, a, b, ctx)


def _membership(item: Any, container: Any, op: str, ctx: Context) -> bool | None:
    """Whether ``item`` is in ``container``; None for a null operand or a surprise.
    A list holding an item of a type that cannot equal ``item`` is a surprise unless ``item``
    was found anyway."""
    if item is None or container is None:
        return None
    kc = kind(container)
    if kc == "string" and kind(item) == "string":
        return item in container
    if kc == "list":
        mismatched = False
        for candidate in container:
            if candidate is None:
                continue
            found = same(item, candidate, ctx.tz)
            if found:
                return True
            mismatched = mismatched or found is None
        if not mismatched:
            return False
    _surprise(ctx, op, item, container)
    return None


def member(item: Any, container: Any, ctx: Context) -> bool:
    """``in``: membership in a list, substring of a string; false with a null operand."""
    return _membership(item, container, "in", ctx) is True


def not_member(item: Any, container: Any, ctx: Context) -> bool:
    """``not in``: false with a null operand too, so not simply the negation of ``in``."""
    return _membership(item, container, "not in", ctx) is False


# --- Arithmetic -----------------------------------------------------------------------------


def _calculate(op: str, result: Callable[[], Any], ctx: Context) -> Any:
    """``result()``, or null with a warning when it overflows (or divides by zero)."""
    try:
        return result()
    except (ArithmeticError, ValueError):
        ctx.warn(f"{op}: result out of range")
        return None


def add(a: Any, b: Any, ctx: Context) -> Any:
    """``+``: numbers, strings (concatenation), durations, a date or datetime plus a duration."""
    if a is None or b is None:
        return None
    ka, kb = kind(a), kind(b)
    if ka == kb and ka in ("number", "string", "duration"):
        return _calculate("+", lambda: a + b, ctx)
    if ka in TEMPORAL and kb == "duration":
        return _calculate("+", lambda: _shift(a, b, ctx.tz), ctx)
    if ka == "duration" and kb in TEMPORAL:
        return _calculate("+", lambda: _shift(b, a, ctx.tz), ctx)
    _surprise(ctx, "+", a, b)
    return None


def subtract(a: Any, b: Any, ctx: Context) -> Any:
    """``-``: numbers, durations, a date or datetime minus a duration, and the duration
    between two dates or datetimes."""
    if a is None or b is None:
        return None
    ka, kb = kind(a), kind(b)
    if ka == kb and ka in ("number", "duration"):
        return _calculate("-", lambda: a - b, ctx)
    if ka in TEMPORAL and kb == "duration":
        return _calculate("-", lambda: _shift(a, -b, ctx.tz), ctx)
    if ka in TEMPORAL and kb in TEMPORAL:
        return _calculate("-", lambda: _between(a, b, ctx.tz), ctx)
    _surprise(ctx, "-", a, b)
    return None


def _numeric(op: str, calculate: Callable[[Any, Any], Any], a: Any, b: Any, ctx: Context) -> Any:
    if a is None or b is None:
        return None
    if kind(a) != "number" or kind(b) != "number":
        _surprise(ctx, op, a, b)
        return None
    if op != "*" and b == 0:
        ctx.warn(f"{op}: division by zero")
        return None
    return _calculate(op, lambda: calculate(a, b), ctx)


def multiply(a: Any, b: Any, ctx: Context) -> Any:
    """``*`` of two numbers; null with a null operand."""
    return _numeric("*", operator.mul, a, b, ctx)


def divide(a: Any, b: Any, ctx: Context) -> Any:
    """``/`` of two numbers (always exact division); null for a zero divisor, with a warning."""
    return _numeric("/", operator.truediv, a, b, ctx)


def remainder(a: Any, b: Any, ctx: Context) -> Any:
    """``%`` of two numbers, with the sign of the divisor (as in Python)."""
    return _numeric("%", operator.mod, a, b, ctx)


def negate(a: Any, ctx: Context) -> Any:
    """Unary ``-`` of a number or a duration."""
    if a is None:
        return None
    if kind(a) in ("number", "duration"):
        return _calculate("-", lambda: -a, ctx)
    _surprise(ctx, "unary -", a)
    return None


def truth(value: Any) -> bool:
    """No three-valued logic: only ``true`` is true; null, and anything else, is false."""
    return value is True


BINARY: dict[str, Callable[[Any, Any, Context], Any]] = {
    "==": equal, "!=": not_equal, "<": less, "<=": at_most, ">": greater, ">=": at_least,
    "in": member, "not in": not_member,
    "+": add, "-": subtract, "*": multiply, "/": divide, "%": remainder,
}
"""Every binary operator but ``and``/``or``, which short-circuit and so belong to the compiler."""


# --- Records --------------------------------------------------------------------------------


def attribute(value: Any, name: str, ctx: Context) -> Any:
    """``value.name``: a field of a record; a missing field, or any field of null, is null."""
    if value is None:
        return None
    if kind(value) == "record":
        return value.get(name)
    _surprise(ctx, f".{name}", value)
    return None


def event_attribute(event: Any, name: str, ctx: Context) -> Any:
    """``event.name``: the event's own keys (type, at, partner, id, data) first, then its
    data, so ``event.amount`` is short for ``event.data.amount``."""
    if kind(event) != "record":
        return attribute(event, name, ctx)
    if name in event:
        return event[name]
    data = event.get("data")
    return data.get(name) if kind(data) == "record" else None


def index(container: Any, key: Any, ctx: Context) -> Any:
    """``container[key]``: an item of a list or character of a string by position from 0, or
    a field of a record by name. A position outside the list (negative too) gives null."""
    if container is None or key is None:
        return None
    kc, kk = kind(container), kind(key)
    if kc in ("list", "string") and kk == "number" and isinstance(key, int):
        return container[key] if 0 <= key < len(container) else None
    if kc == "record" and kk == "string":
        return container.get(key)
    _surprise(ctx, "[]", container, key)
    return None


# --- Built-in functions ---------------------------------------------------------------------
# Each takes (partner, ctx, *arguments); FUNCTIONS has one per name in dsl.functions.SIGNATURES.


def days_since(partner: Mapping, ctx: Context, value: Any) -> int | None:
    """Whole days from the value's local date (a datetime's date in ``ctx.tz``) to today:
    0 on the day itself, negative for a day still to come, null for null."""
    k = kind(value)
    if k == "date":
        return (ctx.today - value).days
    if k == "datetime":
        return _calculate("days_since", lambda: (ctx.today - local(value, ctx.tz).astimezone(ctx.tz).date()).days, ctx)
    if k != "null":
        _surprise(ctx, "days_since", value)
    return None


def _text(name: str, transform: Callable[[str], str], value: Any, ctx: Context) -> str | None:
    if value is None:
        return None
    if kind(value) == "string":
        return transform(value)
    _surprise(ctx, name, value)
    return None


def lower(partner: Mapping, ctx: Context, value: Any) -> str | None:
    return _text("lower", str.lower, value, ctx)


def upper(partner: Mapping, ctx: Context, value: Any) -> str | None:
    return _text("upper", str.upper, value, ctx)


def length(partner: Mapping, ctx: Context, value: Any) -> int | None:
    """``len``: characters of a string or items of a list; null for null."""
    if value is None:
        return None
    if kind(value) in ("string", "list"):
        return len(value)
    _surprise(ctx, "len", value)
    return None


def contains(partner: Mapping, ctx: Context, container: Any, part: Any) -> bool:
    """``contains(c, x)`` is ``x in c``."""
    return _membership(part, container, "contains", ctx) is True


def _affix(name: str, test: Callable[[str, str], bool], text: Any, affix: Any, ctx: Context) -> bool:
    if text is None or affix is None:
        return False
    if kind(text) == "string" and kind(affix) == "string":
        return test(text, affix)
    _surprise(ctx, name, text, affix)
    return False


def starts_with(partner: Mapping, ctx: Context, text: Any, prefix: Any) -> bool:
    return _affix("starts_with", str.startswith, text, prefix, ctx)


def ends_with(partner: Mapping, ctx: Context, text: Any, suffix: Any) -> bool:
    return _affix("ends_with", str.endswith, text, suffix, ctx)


@lru_cache(maxsize=512)
def regex(pattern: str) -> re.Pattern | None:
    """The compiled pattern, or None when it is not a valid regular expression."""
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError):
        return None


def matches(partner: Mapping, ctx: Context, text: Any, pattern: Any) -> bool:
    """The regular expression matches somewhere in the text (``re.search``)."""
    if text is None or pattern is None:
        return False
    if kind(text) != "string" or kind(pattern) != "string":
        _surprise(ctx, "matches", text, pattern)
        return False
    compiled = regex(pattern)
    if compiled is None:
        ctx.warn("matches: invalid regular expression")
        return False
    return compiled.search(text) is not None


def coalesce(partner: Mapping, ctx: Context, *values: Any) -> Any:
    """The first value that is not null (the compiler evaluates the arguments lazily)."""
    return next((v for v in values if v is not None), None)


def _fact(name: str) -> Callable[..., bool]:
    def function(partner: Mapping, ctx: Context, reference: Any) -> bool:
        if reference is None:
            return False
        if kind(reference) != "string":
            _surprise(ctx, name, reference)
            return False
        return getattr(ctx.facts, name)(partner, reference) is True

    function.__name__ = function.__qualname__ = name
    return function


_ABSENT = object()  # an optional argument that the call left out
_ever_in_campaign = _fact("was_in_campaign")


def was_in_campaign(partner: Mapping, ctx: Context, campaign_id: Any, within: Any = _ABSENT) -> bool:
    """Without ``within``: the partner was ever enrolled in the campaign (up to now). With it:
    an enrollment was active at some time in [now - within, now] (started at or before now, and
    not finished, or finished at or after now - within); ``0d`` means active now, a negative
    duration is false (with a warning: the window would end before it starts)."""
    if within is _ABSENT:
        return _ever_in_campaign(partner, ctx, campaign_id)
    if campaign_id is None or within is None:
        return False
    if kind(campaign_id) != "string" or kind(within) != "duration":
        _surprise(ctx, "was_in_campaign", campaign_id, within)
        return False
    if within < timedelta(0):
        ctx.warn("was_in_campaign: negative duration")
        return False
    return ctx.facts.was_in_campaign(partner, campaign_id, within) is True


def _key(name: str) -> Callable[..., str | None]:
    """``response``, ``variant``, ``split``: a key the store recorded for the step, or null. A
    facts object that predates experiments (it has no ``variant``) knows of none."""

    def function(partner: Mapping, ctx: Context, step_id: Any) -> str | None:
        if step_id is None:
            return None
        if kind(step_id) != "string":
            _surprise(ctx, name, step_id)
            return None
        ask = getattr(ctx.facts, name, None)
        answer = ask(partner, step_id) if ask is not None else None
        return answer if isinstance(answer, str) else None

    function.__name__ = function.__qualname__ = name
    return function


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "days_since": days_since,
    "lower": lower,
    "upper": upper,
    "len": length,
    "contains": contains,
    "starts_with": starts_with,
    "ends_with": ends_with,
    "matches": matches,
    "coalesce": coalesce,
    **{name: _fact(name) for name in ("in_group", "in_campaign", "opened", "clicked", "bounced", "responded")},
    "was_in_campaign": was_in_campaign,
    **{name: _key(name) for name in ("response", "variant", "split")},
}
