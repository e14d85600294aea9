"""The built-in functions of the expression language: their signatures, in one table.

The checker reads this table to check calls; the compiler (:mod:`dsl.runtime`) holds one
implementation per name, and a test makes sure the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .nodes import Call, Name, Node
from .types import BOOL, NUMBER, STRING, Type

# What a parameter accepts:
#   "string", "number", "temporal" (date or datetime), "duration", "sized" (string or list),
#   "container" (string or list), "any", or a reference to a named thing, written as a
#   string literal: "step", "group", "campaign"; "variant_step" (a step with variants) and
#   "split_step" (a split) are steps of one kind.
Param = str


@dataclass(frozen=True)
class Signature:
    name: str
    params: tuple[Param, ...]  # the parameters every call gives
    returns: Type | Callable[[list[Type]], Type]
    variadic: bool = False  # the last parameter may repeat (at least once)
    doc: str = ""
    reads: str | None = None  # what it asks besides its arguments: "clock", "groups" or "store"
    optional: tuple[Param, ...] = ()  # parameters after ``params`` that a call may leave out, in order

    def __post_init__(self) -> None:
        if self.variadic and self.optional:
            raise ValueError(f"{self.name}: a variadic function has no optional parameters")

    @property
    def arity(self) -> str:
        """How many arguments it takes, as a message says it: ``1``, ``1 or 2``, ``at least 1``."""
        if self.variadic:
            return f"at least {len(self.params)}"
        if self.optional:
            most = len(self.params) + len(self.optional)
            return f"{len(self.params)} or {most}" if len(self.optional) == 1 else f"{len(self.params)} to {most}"
        return str(len(self.params))

    def accepts_count(self, count: int) -> bool:
        if self.variadic:
            return count >= len(self.params)
        return len(self.params) <= count <= len(self.params) + len(self.optional)

    def params_for(self, count: int) -> tuple[Param, ...]:
        """The parameters of a call with ``count`` arguments (as many as it accepts)."""
        if self.variadic and count > len(self.params):
            return self.params + (self.params[-1],) * (count - len(self.params))
        return (self.params + self.optional)[:max(count, len(self.params))]


def _common(types: list[Type]) -> Type:
    """coalesce() is of the first argument's type that is not null."""
    for t in types:
        if t.kind not in ("null", "any"):
            return t
    return types[0] if types else Type("null")


SIGNATURES: dict[str, Signature] = {
    s.name: s
    for s in [
        Signature("days_since", ("temporal",), NUMBER, doc="whole days from the date (or datetime) to now", reads="clock"),
        Signature("lower", ("string",), STRING, doc="the string in lower case"),
        Signature("upper", ("string",), STRING, doc="the string in upper case"),
        Signature("len", ("sized",), NUMBER, doc="length of a string or list"),
        Signature("contains", ("container", "any"), BOOL, doc="substring of a string, or item of a list"),
        Signature("starts_with", ("string", "string"), BOOL),
        Signature("ends_with", ("string", "string"), BOOL),
        Signature("matches", ("string", "string"), BOOL, doc="the regular expression matches somewhere in the string"),
        Signature("coalesce", ("any",), _common, variadic=True, doc="the first argument that is not null"),
        Signature("in_group", ("group",), BOOL, doc="the partner is in the static target group", reads="groups"),
        Signature("in_campaign", ("campaign",), BOOL, doc="the partner has an active or paused enrollment", reads="store"),
        Signature("was_in_campaign", ("campaign",), BOOL, optional=("duration",), reads="store",
                  doc="the partner was ever enrolled; with a duration, an enrollment was active at some time "
                      "within that long before now"),
        Signature("opened", ("step",), BOOL, doc="the partner opened the step's message", reads="store"),
        Signature("clicked", ("step",), BOOL, doc="the partner clicked in the step's message", reads="store"),
        Signature("bounced", ("step",), BOOL, doc="the step's message bounced", reads="store"),
        Signature("responded", ("step",), BOOL, doc="the partner responded to the step", reads="store"),
        Signature("response", ("step",), STRING, doc="the response key given to the step, or null", reads="store"),
        Signature("variant", ("variant_step",), STRING, reads="store",
                  doc="the key of the variant of the step the partner received, or null"),
        Signature("split", ("split_step",), STRING, reads="store",
                  doc="the key of the split's path the partner took, or null"),
    ]
}


def inputs(node: Node) -> frozenset[str]:
    """What an expression's value depends on besides the partner's record: ``clock`` (``now``,
    ``today``, ``days_since``), ``event``, ``groups`` (``in_group``) and ``store`` (enrollments,
    engagement, responses). An audience that reads none of them changes only when a record
    does, which is what lets the tick re-evaluate just the changed partners."""
    found = set()
    for item in node.walk():
        if isinstance(item, Name) and item.name in ("now", "today"):
            found.add("clock")
        elif isinstance(item, Name) and item.name == "event":
            found.add("event")
        elif isinstance(item, Call) and item.function in SIGNATURES and SIGNATURES[item.function].reads:
            found.add(SIGNATURES[item.function].reads)
    return frozenset(found)
