"""What one render of a template may cost: time, output, and the size of every value it makes.

Templates are written by marketers and run inside the tick, where one that loops for ever or
builds a gigabyte string would stop every campaign, not only its own; jinja's sandbox caps only
``range``. So every render (:func:`start_budget`) has a budget, and exceeding it raises
:class:`RenderBudgetExceeded`, whose message names what was exceeded:

- **time**: :data:`RENDER_SECONDS` of the rendering thread's CPU time (a loaded machine does not
  make a template fail). The clock is read in the sandbox's hooks: every attribute, item, call,
  intercepted operator and loop iteration counts as one event (:func:`spend`), and every
  :data:`CHECK_EVERY` events the clock is compared with the deadline, so a loop that prints
  nothing is stopped too. No signal and no thread: a render in any thread of a web server works.
- **loops**: :data:`MAX_LOOP_ITERATIONS` iterations of all its loops together (a loop over a
  list counts its length when it starts).
- **output**: :data:`MAX_OUTPUT` characters, counted while the output is produced (a template
  that prints for ever stops at the limit, not when memory runs out).
- **values**: an operation whose result would be longer than :data:`MAX_VALUE` characters (or,
  for a list, longer than that when printed: :func:`weight`) is refused *before* it allocates:
  ``'a' * 10**9``, ``[1] * 10**9``, ``' '|center(10**10)``, ``'x'|indent(10**9)``, ``'%*d'``
  and ``'{:>999999999}'`` formatting, ``replace``/``join``/``translate`` that multiply, ``batch``
  and ``slice`` fill values, ``tojson`` indents, ``lipsum(10**6)``, ``range(10**9)``, ``sum`` of
  lists (quadratic in Python), and integers beyond :data:`MAX_INTEGER_DIGITS` digits
  (``9 ** (9 ** 9)`` would compute for hours inside one C call, where no hook can stop it).
  Lists, tuples and dicts made by a template are weighed as printed, so a list of a million
  references to one big list is as big as printing it would be.

Anything a render builds by looping (a ``{% set %}`` block, a macro's output) is bounded by the
loop count, the time budget and :func:`bounded_join`, which refuses to join more than
:data:`MAX_OUTPUT` characters.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar, Token
from itertools import chain, islice
from string import Formatter
from typing import Any

from jinja2 import exceptions, pass_environment, pass_eval_context
from jinja2.filters import make_attrgetter, sync_do_slice
from jinja2.sandbox import SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import Namespace
from markupsafe import Markup, soft_str

RENDER_SECONDS = 2.0  # CPU seconds one render may take
MAX_OUTPUT = 1_000_000  # characters one render may print (about 1 MB of text)
MAX_VALUE = 1_000_000  # characters a value the template makes may take when printed
MAX_INTEGER_DIGITS = 4300  # Python itself refuses to print longer integers
MAX_RANGE = 100_000  # numbers in one range(), as jinja's sandbox
MAX_LOOP_ITERATIONS = 1_000_000  # iterations of all the loops of one render together
MAX_LIPSUM_PARAGRAPHS = 100
MAX_LIPSUM_WORDS = 1000  # words in one lipsum paragraph
MAX_JSON_INDENT = 100
CHECK_EVERY = 64  # sandbox events between two readings of the clock

_MAX_INTEGER_BITS = math.ceil(MAX_INTEGER_DIGITS * math.log2(10))


class RenderBudgetExceeded(exceptions.TemplateRuntimeError):
    """A render went over its budget; the message names which part."""

    def __init__(self, what: str) -> None:
        super().__init__(f"template render exceeded its budget: {what}")


def too_long(what: str) -> RenderBudgetExceeded:
    return RenderBudgetExceeded(f"{what} would make a value over {MAX_VALUE:,} characters")


# --- Time --------------------------------------------------------------------------------------


class _Budget:
    """The time left to one render, read from the clock only every :data:`CHECK_EVERY` events."""

    __slots__ = ("deadline", "iterations", "left")

    def __init__(self) -> None:
        self.deadline = 0.0  # set at the first reading: most renders end before it
        self.left = CHECK_EVERY
        self.iterations = 0

    def iterate(self, count: int) -> None:
        """Loops are counted apart from time: a ``{% set %}`` block filled by nested loops
        holds every piece until its end, and two seconds of that are hundreds of megabytes."""
        self.iterations += count
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise RenderBudgetExceeded(f"loops over {MAX_LOOP_ITERATIONS:,} iterations")
        self.left -= count
        if self.left <= 0:
            self.check_clock()

    def check_clock(self) -> None:
        self.left = CHECK_EVERY
        now = time.thread_time()
        if not self.deadline:
            self.deadline = now + RENDER_SECONDS
        elif now > self.deadline:
            raise RenderBudgetExceeded(f"took longer than {RENDER_SECONDS:g} s")


_CURRENT: ContextVar[_Budget | None] = ContextVar("template_render_budget", default=None)
current_budget = _CURRENT.get


def start_budget() -> Token | None:
    """Give the render starting now its budget; None when one is already running (an include,
    or a template rendered while rendering another, shares the outer render's budget). A context
    variable, not a global: renders in several threads (or tasks) each have their own."""
    if _CURRENT.get() is not None:
        return None
    return _CURRENT.set(_Budget())


def end_budget(token: Token | None) -> None:
    if token is not None:
        _CURRENT.reset(token)


def spend() -> None:
    """One sandbox event: cheap (a counter), reading the clock now and then."""
    budget = _CURRENT.get()
    if budget is not None:
        budget.left -= 1
        if budget.left <= 0:
            budget.check_clock()


def budgeted_loop(iterable: Any) -> Iterable[Any]:
    """A ``{% for %}`` loop's items, each one an event, so that loops which call nothing stop
    too. A list (anything with a length) is spent at once and iterated as it is: a loop over
    it is bounded by its length, and a loop inside it spends again each time it starts."""
    budget = _CURRENT.get()
    if budget is None:
        return iterable
    try:
        size = len(iterable)
    except TypeError:
        return _counted(iterable, budget)
    budget.iterate(size)
    return iterable


def _counted(iterable: Any, budget: _Budget) -> Iterator[Any]:
    for item in iterable:
        budget.iterate(1)
        yield item


# --- Output ------------------------------------------------------------------------------------


def bounded_join(pieces: Iterable[str]) -> str:
    """``"".join`` that stops at :data:`MAX_OUTPUT` characters: the output of a render, of a
    macro, of a ``{% set %}`` or ``{% filter %}`` block (jinja joins them all with this). Read
    :data:`_JOIN_CHUNK` pieces at a time: counting each one costs more than the rest of a short
    render, and most renders are one chunk."""
    more = iter(pieces)
    chunk = list(islice(more, _JOIN_CHUNK))
    if len(chunk) < _JOIN_CHUNK:
        text = "".join(chunk)
        if len(text) > MAX_OUTPUT:
            raise RenderBudgetExceeded(f"output over {MAX_OUTPUT:,} characters")
        return text
    out: list[str] = []
    size = 0
    while chunk:
        size += sum(map(len, chunk))
        if size > MAX_OUTPUT:
            raise RenderBudgetExceeded(f"output over {MAX_OUTPUT:,} characters")
        out += chunk
        chunk = list(islice(more, _JOIN_CHUNK))
    return "".join(out)


_JOIN_CHUNK = 32


def check_output(text: str) -> str:
    if len(text) > MAX_OUTPUT:
        raise RenderBudgetExceeded(f"output over {MAX_OUTPUT:,} characters")
    return text


def joined(escape: bool, values: tuple[Any, ...]) -> str:
    """The ``~`` operator: its operands as text, refused when together they are too long."""
    pieces = [soft_str(v) for v in values] if escape else [str(v) for v in values]
    if sum(map(len, pieces)) > MAX_VALUE:
        raise too_long("'~'")
    if escape and any(hasattr(p, "__html__") for p in pieces):
        return Markup("").join(pieces)
    return "".join(pieces)


# --- Weighing values ---------------------------------------------------------------------------

_TEXT = (str, bytes)
CONTAINERS = (list, tuple, set, frozenset, dict, range, Namespace)


def _namespace_attributes(namespace: Namespace) -> dict:
    return object.__getattribute__(namespace, "_Namespace__attrs")


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """About how many characters printing ``value`` takes (a string: its length), counted only
    until it passes ``limit``: a value shared a million times in a list counts a million times,
    but weighing it never walks more than ``limit`` items."""
    if isinstance(value, _TEXT):
        return len(value)
    total = 0
    stack = [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, _TEXT):
            total += len(item) + 2
        elif isinstance(item, int):
            total += item.bit_length() // 3 + 1
        elif isinstance(item, range):
            total += 2 + len(item) * (max(abs(item.start), abs(item.stop)).bit_length() // 3 + 3)
        elif isinstance(item, (dict, Namespace)):
            mapping = _namespace_attributes(item) if isinstance(item, Namespace) else item
            total += 2 + 4 * len(mapping)
            if total <= limit:
                stack.extend(mapping.keys())
                stack.extend(mapping.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        else:
            total += 1
    return total


def checked(value: Any, what: str) -> Any:
    """``value``, unless it is too big (a value made by the template, weighed as printed)."""
    if isinstance(value, _TEXT):
        if len(value) > MAX_VALUE:
            raise too_long(what)
    elif isinstance(value, CONTAINERS) and not isinstance(value, range) and weight(value) > MAX_VALUE:
        raise too_long(what)
    return value


class BoundedNamespace(Namespace):
    """``namespace()``: jinja's, except that what ``{% set ns.x = ... %}`` stores is weighed
    (attributes are the one place a loop can accumulate values without an operator)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        Namespace.__init__(*args, **kwargs)
        checked(args[0], "namespace()")

    def __setitem__(self, name: str, value: Any) -> None:
        Namespace.__setitem__(self, name, value)
        checked(self, f"{{% set ns.{name} %}}")


# --- Operators ---------------------------------------------------------------------------------

_OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    "*": lambda a, b: a * b,
    "**": lambda a, b: a ** b,
    "%": lambda a, b: a % b,
    "+": lambda a, b: a + b,
}
INTERCEPTED_BINOPS = frozenset(_OPERATORS)


def binop(operator: str, left: Any, right: Any) -> Any:
    """``*``, ``**``, ``%`` and ``+`` in a template: refused before they allocate too much."""
    if operator == "*":
        _check_repeat(left, right)
    elif operator == "**":
        _check_power(left, right)
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left, right)
    result = _OPERATORS[operator](left, right)
    if operator in ("+", "*") and isinstance(result, int) and not isinstance(result, bool):
        if result.bit_length() > _MAX_INTEGER_BITS:
            raise _too_many_digits(operator)
        return result
    return checked(result, f"'{operator}'")


def _too_many_digits(operator: str) -> RenderBudgetExceeded:
    return RenderBudgetExceeded(f"'{operator}' would make a number of more than {MAX_INTEGER_DIGITS:,} digits")


def _is_integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_repeat(left: Any, right: Any) -> None:
    if _is_integer(left) and _is_integer(right):
        if left.bit_length() + right.bit_length() > _MAX_INTEGER_BITS + 1:
            raise _too_many_digits("*")
        return
    sequence, times = (left, right) if isinstance(right, int) else (right, left)
    if not isinstance(times, int) or times <= 0 or not isinstance(sequence, (str, bytes, list, tuple)):
        return
    if times > MAX_VALUE:
        if len(sequence):
            raise too_long("'*'")
        return
    if weight(sequence, MAX_VALUE // times + 1) * times > MAX_VALUE:
        raise too_long("'*'")


def _check_power(base: Any, exponent: Any) -> None:
    if not (_is_integer(base) and _is_integer(exponent)) or exponent <= 1 or abs(base) <= 1:
        return
    if exponent * math.log2(abs(base)) > _MAX_INTEGER_BITS:
        raise _too_many_digits("**")


_DIGIT = re.compile(r"\d")
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")


def check_percent_format(template: str, arguments: Any) -> None:
    """``'%*d' % (10**9, 1)``, ``'%0999999999d' % 1``: the widths and precisions of a
    ``%``-format (those taken from the arguments too) must fit in a value's size."""
    if "*" not in template and not _DIGIT.search(template):
        return  # no width anywhere (``'%s-%s'``): the common case, without the full scan
    size = len(template)
    stars = False
    for match in _PERCENT_SPEC.finditer(template):
        for number in match.group(1, 2):
            if number == "*":
                stars = True
            elif number:
                size += int(number) if len(number) <= 9 else MAX_VALUE + 1
    if stars:
        values = arguments if isinstance(arguments, tuple) else (arguments,)
        size += sum(abs(v) for v in values if _is_integer(v))
    if size > MAX_VALUE:
        raise too_long("'%' formatting")


# --- str.format --------------------------------------------------------------------------------

_DIGITS = re.compile(r"\d+")


class _BoundedFormatting(Formatter):
    """``'{:>999999999}'.format(1)`` and the like: every field's width or precision fits in a
    value, and so do all the fields of one call together."""

    made = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        for number in _DIGITS.findall(format_spec):
            if len(number) > 9 or int(number) > MAX_VALUE:
                raise too_long("format()")
        text = super().format_field(value, format_spec)
        self.made += len(text)
        if self.made > MAX_VALUE:
            raise too_long("format()")
        return text


class BoundedFormatter(_BoundedFormatting, SandboxedFormatter):
    pass


class BoundedEscapeFormatter(_BoundedFormatting, SandboxedEscapeFormatter):
    pass


# --- Methods of strings ------------------------------------------------------------------------


def _argument(args: tuple, kwargs: dict, position: int, name: str, default: Any = None) -> Any:
    return args[position] if len(args) > position else kwargs.get(name, default)


def _replaced_size(text: Any, old: Any, new: Any, count: Any) -> int:
    """How long ``text.replace(old, new, count)`` would be (0 when the types do not fit)."""
    kind = str if isinstance(text, str) else bytes if isinstance(text, bytes) else None
    if kind is None or not isinstance(old, kind) or not isinstance(new, kind):
        return 0
    times = text.count(old) if old else len(text) + 1
    if _is_integer(count) and count >= 0:
        times = min(times, count)
    return len(text) + times * (len(new) - len(old))


def check_method_call(method: Any, args: tuple, kwargs: dict) -> tuple:
    """Before a template calls a method of a string: refuse what would be too long. Returns the
    arguments to call it with (``join``'s iterable, consumed here, as a list)."""
    owner = getattr(method, "__self__", None)
    if not isinstance(owner, (str, bytes)):
        return args
    name = getattr(method, "__name__", "")
    what = f"{name}()"
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _argument(args, kwargs, 0, "width")
        if _is_integer(width) and width > MAX_VALUE:
            raise too_long(what)
    elif name == "expandtabs":
        size = _argument(args, kwargs, 0, "tabsize", 8)
        tab = "\t" if isinstance(owner, str) else b"\t"
        if _is_integer(size) and len(owner) + owner.count(tab) * max(size, 0) > MAX_VALUE:
            raise too_long(what)
    elif name == "join" and args:
        items = list(args[0])
        separators = len(owner) * max(len(items) - 1, 0)
        if separators + sum(weight(i, MAX_VALUE) for i in items if isinstance(i, (str, bytes))) > MAX_VALUE:
            raise too_long(what)
        return (items, *args[1:])
    elif name == "replace" and len(args) >= 2:
        if _replaced_size(owner, args[0], args[1], _argument(args, kwargs, 2, "count", -1)) > MAX_VALUE:
            raise too_long(what)
    elif name == "translate" and args and isinstance(owner, str) and isinstance(args[0], Mapping):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        if len(owner) * longest > MAX_VALUE:
            raise too_long(what)
    return args


# --- Globals and filters -----------------------------------------------------------------------


def bounded_range(*args: Any) -> range:
    """``range()`` of at most :data:`MAX_RANGE` numbers."""
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise RenderBudgetExceeded(f"range() over {MAX_RANGE:,} numbers")
    return numbers


def bounded_lipsum(lipsum: Callable[..., Any]) -> Callable[..., Any]:
    def lipsum_within_budget(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> Any:
        if _is_integer(n) and n > MAX_LIPSUM_PARAGRAPHS:
            raise RenderBudgetExceeded(f"lipsum() over {MAX_LIPSUM_PARAGRAPHS:,} paragraphs")
        if any(_is_integer(x) and x > MAX_LIPSUM_WORDS for x in (min, max)):
            raise RenderBudgetExceeded(f"lipsum() over {MAX_LIPSUM_WORDS:,} words a paragraph")
        return lipsum(n, html, min, max)

    return lipsum_within_budget


def bounded_filters(filters: Mapping[str, Callable[..., Any]]) -> dict[str, Callable[..., Any]]:
    """jinja's filters that can make huge values from small ones, each checked before it runs.
    (Filters that only pass on or shorten what they are given need no check.)"""
    original = dict(filters)

    def center(value: Any, width: int = 80) -> str:
        if _is_integer(width) and width > MAX_VALUE:
            raise too_long("filter 'center'")
        return original["center"](value, width)

    def indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> str:
        if _is_integer(width) and width > MAX_VALUE:
            raise too_long("filter 'indent'")
        pad = len(width) if isinstance(width, str) else max(width, 0) if _is_integer(width) else 0
        text = s if isinstance(s, str) else ""
        if len(text) + (text.count("\n") + 1) * pad > MAX_VALUE:
            raise too_long("filter 'indent'")
        return original["indent"](s, width, first, blank)

    @pass_environment
    def wordwrap(environment: Any, s: Any, width: int = 79, break_long_words: bool = True,
                 wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
        wrap = original["wordwrap"]
        if wrapstring is None:
            wrapstring = environment.newline_sequence
        lines = wrap(environment, s, width, break_long_words, "\n", break_on_hyphens)
        if len(lines) + lines.count("\n") * (len(str(wrapstring)) - 1) > MAX_VALUE:
            raise too_long("filter 'wordwrap'")
        return wrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)

    def format_(value: Any, *args: Any, **kwargs: Any) -> str:
        check_percent_format(soft_str(value), kwargs or args)
        return original["format"](value, *args, **kwargs)

    @pass_eval_context
    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> str:
        items = list(value)
        size = len(str(d)) * max(len(items) - 1, 0)
        if attribute is None:
            size += sum(weight(item, MAX_VALUE) for item in items)
        if size > MAX_VALUE:
            raise too_long("filter 'join'")
        return checked(original["join"](eval_ctx, items, d, attribute), "filter 'join'")

    @pass_eval_context
    def replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> str:
        size = _replaced_size(soft_str(s), soft_str(old), soft_str(new), -1 if count is None else count)
        if size > MAX_VALUE:
            raise too_long("filter 'replace'")
        return original["replace"](eval_ctx, s, old, new, count)

    def batch(value: Any, linecount: int, fill_with: Any = None) -> Iterator[list]:
        _check_fill("batch", linecount, fill_with)
        return original["batch"](value, linecount, fill_with)

    def slice_(value: Any, slices: int, fill_with: Any = None) -> Iterator[list]:
        _check_fill("slice", slices, fill_with)
        return sync_do_slice(value, slices, fill_with)  # jinja's "slice" is its async variant

    @pass_eval_context
    def tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Markup:
        width = len(indent) if isinstance(indent, str) else indent if _is_integer(indent) else 0
        if width > MAX_JSON_INDENT:
            raise RenderBudgetExceeded(f"filter 'tojson' indent over {MAX_JSON_INDENT}")
        if width and weight(value) * (1 + width) > MAX_VALUE:
            raise too_long("filter 'tojson'")
        return original["tojson"](eval_ctx, value, indent)

    @pass_environment
    def sum_(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if not isinstance(start, (list, tuple)):
            return original["sum"](environment, iterable, attribute, start)
        items = list(map(make_attrgetter(environment, attribute), iterable) if attribute is not None else iterable)
        for item in items:  # Python's sum of lists copies the total at each step: linear here
            if type(item) is not type(start):
                raise TypeError(f'can only concatenate {type(start).__name__} (not "{type(item).__name__}") to {type(start).__name__}')
        return checked(type(start)(chain(start, *items)), "filter 'sum'")

    return {**original, "center": center, "indent": indent, "wordwrap": wordwrap, "format": format_,
            "join": join, "replace": replace, "batch": batch, "slice": slice_, "tojson": tojson, "sum": sum_}


def _check_fill(name: str, count: Any, fill_with: Any) -> None:
    if not _is_integer(count):
        return
    if count > MAX_VALUE:
        raise too_long(f"filter '{name}'")
    if fill_with is not None and count > 0 and weight(fill_with, MAX_VALUE // count + 1) * count > MAX_VALUE:
        raise too_long(f"filter '{name}'")
