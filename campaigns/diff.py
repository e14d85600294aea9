"""Semantic diff of campaign files: what a change to a campaign *means*, not which lines moved.

Both files are loaded and brought into one normal form (the *semantic tree*), then compared.
The normal form is what makes formatting invisible:

* mapping keys are looked up by name, so key order, quoting style, indentation, flow or
  block style, comments and anchors make no difference;
* expressions (rulesets, ``exclude``, ``when``, ``exit_when``, consent) are compared by their
  canonical text, :func:`dsl.printer.to_source` of the parsed expression with every literal
  re-spelled canonically: ``partner.tier=='gold'`` and ``partner.tier == "gold"`` are the same;
* durations, dates, datetimes, percentages and ``HH:MM`` times are compared by value
  (``7d`` is ``1w``, ``90%`` is ``90``: ``holdout`` and ``monitor.in_campaign_min``;
  ``quiet_hours.from``/``to``), booleans by pydantic's reading (``yes`` is true), ``send_days``
  as a set of days (``[fri, mon]`` is ``[mon, fri]``);
* a key that is left out means its default from :mod:`campaigns.model`: writing
  ``active: true`` where it was implicit is no change, and dropping ``exclusive: true`` is
  ``exclusive`` changed from true to false.

So a file and its ``engine fmt`` output have no changes. Files that do not pass validation
are diffed too (a review may be about a broken file): whatever the models do not know is
compared as plain YAML values.

Paths name what changed, from the campaign's top (``name``, ``trigger.cron``,
``window.end``, ``audience.groups``, ``audience.rulesets.gold-fi``). Lists whose items have
an identity are addressed by it:

* a step by its ``id``: ``steps.reminder.email.subject``,
  ``steps.intro-call.activity.responses.interested.follow_up`` (and ``.goto``),
  ``steps.welcome.email.translations.fi.subject``; survey questions likewise by their ``id``
  (``steps.feedback.activity.questions.q1.text``). A ``branch``, a ``split`` and a ``wait``
  with an ``id`` are steps too: a branch's cases are numbered from 1
  (``steps.route.branch[2].goto``, ``steps.route.branch[3].else``), a split's paths are
  addressed by their key (``steps.path.split.call-first.weight``), an id'd wait's value is under
  ``wait`` (``steps.wait-open.wait.at_most``);
* a variant by its key: ``steps.welcome.email.variants.short.weight``. Variants and split paths
  are ordered too (their weights are taken in file order, so reordering them gives partners
  other variants): one whose place changed is ``moved``, like a step;
* a ``wait`` without an id by the step it follows: ``steps.wait[after welcome]``; a wait
  before the first step is ``steps.wait[start]``, and the second of two waits in a row after
  ``reminder`` is ``steps.wait[after reminder #2]``. Its value is the duration (``"3d"``),
  ``{"until": "09:00"}`` or ``{"for": ..., "at_most": ...}``, whose two keys are compared one
  by one (``steps.wait[after welcome].at_most``);
* a key that is not a plain word (letters, digits, ``-`` and ``_``) is quoted:
  ``audience.rulesets["vip.fi"]``. Only in invalid files: an item without an id is
  ``steps[3]`` (its 1-based position), the second step with the same id ``steps.welcome[#2]``.

Lists without identities (``audience.groups``, ``popup.pages``, ``monitor.alert``,
``send_days``…) are single values. Top-level keys, and a variant's, come in ``engine fmt``'s
order (:data:`campaigns.fmt.ORDER`: ``holdout``, ``goal``, ``quiet_hours``, ``send_days``,
``priority``, ``transactional`` before ``steps``; a variant's ``weight`` first). Changes are ``added`` (``new`` holds the value), ``removed`` (``old``),
``changed`` (both), ``moved``: a step (or question, variant or split path) whose place in
the order changed, ``old``/``new`` being its 1-based position in the ``steps`` list (waits
count; in its ``variants`` or ``split``), or
``renamed``: a step whose new version says ``renamed_from: OLD`` where ``OLD`` is a step of
the old file (and no longer one of the new file), ``old``/``new`` being the old and the new
id. A rename is one change at ``steps.NEW``, followed by the step's own changes under its new
path as for any step (its ``renamed_from`` gaining the old id is no further change), and the
waits without an id that follow it keep their names (``steps.wait[after NEW]``). A step id
changed without ``renamed_from`` is the old step removed and a new one added, as the engine
sees it. Only the items that have to move are reported: the longest run of steps keeping
their relative order stays put, so inserting a step moves nothing. ``line`` is the line in the
new file, in the old file for removals (for a value that is not written, because it went back
to its default, the line of the nearest written value that encloses it).

An empty file (or one holding only comments) stands for "no campaign": against it,
everything is added or removed, defaults included.
"""

from __future__ import annotations

import json
import re
import subprocess
import types
from dataclasses import dataclass, fields as dataclass_fields, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Iterable, Literal, Union, get_args, get_origin

from pydantic_core import PydanticUndefined

from . import model as _model
from .fmt import ORDER as _ORDER
from dsl.diagnostics import SourceError, error
from dsl.nodes import Literal as LiteralNode, Node
from dsl.parser import parse, parse_duration
from dsl.printer import datetime_source, duration_source, to_source
from dsl.yamlload import Document, load_yaml

__all__ = ["Change", "diff_campaigns", "load_revision", "render", "textconv"]

Kind = Literal["added", "removed", "changed", "moved", "renamed"]


@dataclass(frozen=True)
class Change:
    """One semantic change. ``old``/``new`` are JSON-ready values (``None`` when absent)."""

    path: str
    kind: Kind
    old: Any
    new: Any
    line: int

    def to_json(self) -> dict:
        return {"path": self.path, "kind": self.kind, "old": self.old, "new": self.new, "line": self.line}


# --- The semantic tree ---------------------------------------------------------------------------


class _Expr(str):
    """An expression's canonical text (printed without quotes by :func:`textconv`)."""


@dataclass
class _Leaf:
    value: Any  # JSON-ready, expressions as _Expr
    ypath: tuple  # where it is (or would be) written in the YAML document


@dataclass
class _Branch:
    children: dict[str, "_Leaf | _Branch"]  # path segment -> node, in canonical order
    ypath: tuple
    positions: dict[str, int] | None = None  # ordered lists: segment -> 1-based position
    aliases: dict[str, tuple[str, ...]] | None = None  # steps: segment -> its renamed_from, as segments
    as_list: bool = False  # items addressed by their 1-based place, a list as a value (branch cases)

    @property
    def ordered(self) -> bool:
        return self.positions is not None


_Node = Union[_Leaf, _Branch]

# Value kinds, worked out from the pydantic models' annotations.
_ANY, _EXPR, _DURATION, _DATE, _DATETIME, _PERCENT, _BOOL, _CLOCK, _STEPS = (
    "any", "expr", "duration", "date", "datetime", "percent", "bool", "clock", "steps",
)
# Compound kinds: ("model", M), ("map", kind), ("keyed", M), ("list", kind), ("union", kinds)

_DAYS = "days"
_OVERRIDES: dict[tuple[type, str], Any] = {
    (_model.Monitor, "in_campaign_min"): _PERCENT,
    (_model.Monitor, "alert"): ("list", _ANY),
    (_model.Until, "until"): _CLOCK,
    (_model.Branch, "branch"): ("numbered", _model.Case),
    (_model.WaitFor, "for_"): _EXPR,  # Field(alias=...) on Expression: pydantic keeps only `str`
    (_model.Campaign, "holdout"): _PERCENT,
    (_model.Campaign, "send_days"): _DAYS,
    (_model.QuietHours, "from_"): _CLOCK,
    (_model.QuietHours, "to"): _CLOCK,
    # variants and split paths: by key, and in file order (their weights are taken in that order)
    (_model.Email, "variants"): ("ordered", _model.EmailVersion),
    (_model.Sms, "variants"): ("ordered", _model.SmsVersion),
    (_model.Popup, "variants"): ("ordered", _model.PopupVersion),
    (_model.Letter, "variants"): ("ordered", _model.LetterVersion),
    (_model.Split, "split"): ("ordered", _model.SplitPath),
}
_NONE = type(None)
_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9_-]+$")
_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def _classify(annotation: Any) -> Any:
    if annotation == _model.Expression:
        return _EXPR
    if annotation == _model.Duration:
        return _DURATION
    origin = get_origin(annotation)
    if origin is Annotated:
        return _classify(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not _NONE]
        if len(members) == 1:
            return _classify(members[0])
        return ("union", tuple(_classify(m) for m in members))
    if origin is dict:
        return ("map", _classify(get_args(annotation)[1]))
    if origin is tuple and len(get_args(annotation)) == 2 and get_args(annotation)[1] is Ellipsis:
        return ("list", _classify(get_args(annotation)[0]))  # renamed_from: one id or a list
    if origin is list:
        item = _classify(get_args(annotation)[0])
        if isinstance(item, tuple) and item[0] == "union" and ("model", _model.Step) in item[1]:
            return _STEPS
        if isinstance(item, tuple) and item[0] == "model" and "id" in item[1].model_fields:
            return ("keyed", item[1])
        return ("list", item)
    if isinstance(annotation, type):
        if issubclass(annotation, _model.Located):
            return ("model", annotation)
        if annotation is bool:
            return _BOOL
        if annotation is datetime:
            return _DATETIME
        if annotation is date:
            return _DATE
        if annotation is timedelta:
            return _DURATION
    return _ANY


def _fields(model: type) -> list[tuple[str, Any]]:
    """A model's fields in ``engine fmt``'s canonical order (:data:`campaigns.fmt.ORDER`: a
    campaign's SPEC §11 keys before its steps, a variant's weight first)."""
    first = _ORDER.get(model.__name__, ())
    rank = {key: i for i, key in enumerate(first)}
    items = list(model.model_fields.items())
    return sorted(items, key=lambda item: rank.get(item[1].alias or item[0], len(first)))


def _field_kind(model: type, name: str, info: Any) -> Any:
    override = _OVERRIDES.get((model, name))
    return override if override is not None else _classify(info.annotation)


def _segment(key: Any) -> str:
    """A mapping key or id as a path segment: plain words as they are, anything else quoted."""
    text = str(key)
    return text if _PLAIN_SEGMENT.match(text) else "[" + json.dumps(text, ensure_ascii=False) + "]"


def _join(path: str, segment: str) -> str:
    if not path:
        return segment
    return path + segment if segment.startswith("[") else f"{path}.{segment}"


def _default(info: Any) -> Any:
    """A field's default as the raw YAML value that would mean it (None: no default)."""
    if info.default_factory is not None:
        value = info.default_factory()
        return {} if isinstance(value, _model.Located) else value
    default = info.default
    if default is None or default is PydanticUndefined:
        return None
    if isinstance(default, timedelta):
        return duration_source(default)
    if isinstance(default, tuple):
        return list(default)  # renamed_from: (), an empty list (left out of values)
    return default


class _Normaliser:
    def node(self, value: Any, kind: Any, ypath: tuple) -> _Node:
        if isinstance(kind, tuple):
            tag = kind[0]
            if tag == "model" and isinstance(value, dict):
                return self.model(kind[1], value, ypath)
            if tag == "map" and isinstance(value, dict):
                children = {_segment(k): self.node(v, kind[1], ypath + (k,)) for k, v in value.items()}
                return _Branch(dict(sorted(children.items())), ypath)
            if tag == "keyed" and isinstance(value, list):
                return self.keyed(kind[1], value, ypath)
            if tag == "numbered" and isinstance(value, list):
                return self.numbered(kind[1], value, ypath)
            if tag == "ordered" and isinstance(value, dict):
                return self.ordered(kind[1], value, ypath)
            if tag == "list":
                items = value if isinstance(value, list) else [value]
                return _Leaf([_plain(self.node(v, kind[1], ypath + (i,))) for i, v in enumerate(items)], ypath)
            if tag == "union":
                return self.union(kind[1], value, ypath)
        elif kind == _STEPS and isinstance(value, list):
            return self.steps(value, ypath)
        elif kind == _DAYS and isinstance(value, list):
            return _Leaf(_days(value), ypath)
        elif kind != _ANY and not isinstance(value, (dict, list)):
            return _Leaf(_scalar(value, kind), ypath)
        return self.raw(value, ypath)

    def raw(self, value: Any, ypath: tuple) -> _Node:
        """A value the models do not describe (or that does not fit them), as plain YAML."""
        if isinstance(value, dict):
            children = {_segment(k): self.raw(v, ypath + (k,)) for k, v in value.items()}
            return _Branch(dict(sorted(children.items())), ypath)
        if isinstance(value, list):
            return _Leaf([_plain(self.raw(v, ypath + (i,))) for i, v in enumerate(value)], ypath)
        return _Leaf(value, ypath)

    def model(self, model: type, value: dict, ypath: tuple, skip: str | None = None) -> _Branch:
        children: dict[str, _Node] = {}
        known = set()
        for name, info in _fields(model):
            key = info.alias or name
            known.add(key)
            if key == skip:
                continue
            raw = value.get(key)
            if raw is None:
                raw = _default(info)
                if raw is None:
                    continue
            children[_segment(key)] = self.node(raw, _field_kind(model, name, info), ypath + (key,))
        for key in sorted((k for k in value if k not in known), key=str):
            children[_segment(key)] = self.raw(value[key], ypath + (key,))
        return _Branch(children, ypath)

    def union(self, kinds: tuple, value: Any, ypath: tuple) -> _Node:
        """The first member the value fits. Of several models, the one that knows all of a
        mapping's keys (``{for, at_most}`` is a wait-for, not an ``{until}``). A model of one field
        is one value; one of several is compared field by field."""
        if isinstance(value, dict):
            models = [kind[1] for kind in kinds if isinstance(kind, tuple) and kind[0] == "model"]
            fitting = [m for m in models if set(value) <= {info.alias or name for name, info in m.model_fields.items()}]
            if models:
                chosen = (fitting or models)[0]
                branch = self.model(chosen, value, ypath)
                return branch if len(chosen.model_fields) > 1 else _Leaf(_plain(branch), ypath)
        for kind in kinds:
            if kind == _DURATION and isinstance(value, str):
                try:
                    return _Leaf(duration_source(parse_duration(value)), ypath)
                except ValueError:
                    continue
        return self.raw(value, ypath)

    def keyed(self, model: type, items: list, ypath: tuple) -> _Branch:
        children: dict[str, _Node] = {}
        positions: dict[str, int] = {}
        for i, item in enumerate(items):
            where = ypath + (i,)
            ident = item.get("id") if isinstance(item, dict) else None
            if isinstance(ident, (str, int)) and not isinstance(ident, bool):
                segment = _unique(_segment(ident), children)
                children[segment] = self.model(model, item, where, skip="id")
            else:
                segment = f"[{i + 1}]"
                children[segment] = self.raw(item, where)
            positions[segment] = i + 1
        return _Branch(children, ypath, positions)

    def ordered(self, model: type, value: dict, ypath: tuple) -> _Branch:
        """A mapping whose keys are identities and whose order means something (variants, split
        paths): items by key, with their 1-based places, so that a reordering is ``moved``."""
        children: dict[str, _Node] = {}
        positions: dict[str, int] = {}
        for i, (key, item) in enumerate(value.items()):
            segment = _segment(key)
            where = ypath + (key,)
            children[segment] = self.model(model, item, where) if isinstance(item, dict) else self.raw(item, where)
            positions[segment] = i + 1
        return _Branch(children, ypath, positions)

    def numbered(self, model: type, items: list, ypath: tuple) -> _Branch:
        """A list whose items have no identity but a meaning by their place (a branch's cases):
        ``[1]``, ``[2]``…, compared item by item, and a list as a value."""
        children: dict[str, _Node] = {}
        for i, item in enumerate(items):
            where = ypath + (i,)
            children[f"[{i + 1}]"] = self.model(model, item, where) if isinstance(item, dict) else self.raw(item, where)
        return _Branch(children, ypath, as_list=True)

    def steps(self, items: list, ypath: tuple) -> _Branch:
        children: dict[str, _Node] = {}
        positions: dict[str, int] = {}
        aliases: dict[str, tuple[str, ...]] = {}
        anchor = "start"
        waits = 0
        for i, item in enumerate(items):
            where = ypath + (i,)
            ident = item.get("id") if isinstance(item, dict) else None
            if not (isinstance(ident, (str, int)) and not isinstance(ident, bool)):
                ident = None
            if isinstance(item, dict) and "wait" in item and ident is None:
                waits += 1
                segment = f"wait[{anchor}{f' #{waits}' if waits > 1 else ''}]"
                kind = _field_kind(_model.Wait, "wait", _model.Wait.model_fields["wait"])
                node = self.node(item["wait"], kind, where + ("wait",))
                children[segment] = (replace(node, ypath=where) if isinstance(node, _Branch)  # a wait-for
                                     else _Leaf(_plain(node), where))
            elif ident is not None:
                model = (_model.Wait if "wait" in item else _model.Branch if "branch" in item
                         else _model.Split if "split" in item else _model.Step)
                segment = _unique(_segment(ident), children)
                children[segment] = self.model(model, item, where, skip="id")
                old = item.get("renamed_from")
                old = [old] if isinstance(old, (str, int)) and not isinstance(old, bool) else old
                if isinstance(old, list):
                    aliases[segment] = tuple(_segment(o) for o in old
                                             if isinstance(o, (str, int)) and not isinstance(o, bool))
                anchor, waits = f"after {ident}", 0
            else:
                segment = f"[{i + 1}]"
                children[segment] = self.raw(item, where)
            positions[segment] = i + 1
        return _Branch(children, ypath, positions, aliases)


def _days(value: list) -> Any:
    """``send_days`` as a set of weekdays, Monday first: ``[fri, mon]`` is ``[mon, fri]``."""
    if all(isinstance(d, str) and d in _model.WEEKDAYS for d in value) and len(set(value)) == len(value):
        return sorted(value, key=_model.WEEKDAYS.index)
    return [_json_value(v) for v in value]


def _unique(segment: str, taken: dict) -> str:
    if segment not in taken:
        return segment
    n = 2
    while f"{segment}[#{n}]" in taken:
        n += 1
    return f"{segment}[#{n}]"


def _scalar(value: Any, kind: Any) -> Any:
    """A scalar in its canonical form; a value that does not parse stays as written."""
    try:
        if kind == _EXPR:
            if isinstance(value, bool):
                value = "true" if value else "false"
            if isinstance(value, str):
                return _Expr(canonical_expression(value))
        elif kind == _DURATION and isinstance(value, str):
            return duration_source(parse_duration(value))
        elif kind == _DATE and isinstance(value, str):
            return date.fromisoformat(value.strip()).isoformat()
        elif kind == _DATETIME and isinstance(value, str):
            return datetime_source(datetime.fromisoformat(value.strip().replace("Z", "+00:00")))
        elif kind == _PERCENT and not isinstance(value, bool):
            text = value.strip() if isinstance(value, str) else value
            if isinstance(text, str) and text.endswith("%"):
                text = text[:-1]
            return f"{float(text):g}%"
        elif kind == _BOOL:
            if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
                return value.strip().lower() in _TRUE
            if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
                return bool(value)
        elif kind == _CLOCK and isinstance(value, str):
            match = re.fullmatch(r"\s*([0-9]{1,2}):([0-9]{2})\s*", value)
            if match:
                return f"{int(match.group(1)):02d}:{match.group(2)}"
    except (ValueError, SourceError, OverflowError):
        pass
    return value


def canonical_expression(text: str) -> str:
    """The canonical text of an expression: its AST printed with every literal spelled the
    canonical way (``'x'`` as ``"x"``, ``14d`` as ``2w``). Raises SourceError if it does not
    parse."""
    return to_source(_canonical_node(parse(text)))


def _canonical_node(node: Node) -> Node:
    if isinstance(node, LiteralNode):
        return replace(node, text=None)
    changes: dict[str, Any] = {}
    for f in dataclass_fields(node):
        if not f.compare:
            continue
        value = getattr(node, f.name)
        if isinstance(value, Node):
            changes[f.name] = _canonical_node(value)
        elif isinstance(value, tuple) and any(isinstance(v, Node) for v in value):
            changes[f.name] = tuple(_canonical_node(v) if isinstance(v, Node) else v for v in value)
    return replace(node, **changes) if changes else node


def _plain(node: _Node | None) -> Any:
    """A node as a plain JSON value (expressions as plain strings)."""
    if node is None:
        return None
    if isinstance(node, _Branch) and node.as_list:
        return [_plain(child) for child in node.children.values()]
    if isinstance(node, _Branch):  # empty lists and mappings (defaults, mostly) left out
        plain = {segment: _plain(child) for segment, child in node.children.items()}
        return {segment: value for segment, value in plain.items() if value != [] and value != {}}
    return _json_value(node.value)


def _json_value(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return value


def _load(text: str, path: str) -> tuple[Document, _Branch]:
    """Load one campaign file into its semantic tree; SourceError for bad YAML."""
    document = load_yaml(path, text)
    data = document.data
    if data is None:
        return document, _Branch({}, ())  # an empty file: no campaign
    if not isinstance(data, dict):
        raise SourceError(error(document.span(()), "a campaign file is a mapping of keys"))
    return document, _Normaliser().model(_model.Campaign, data, ())


# --- Comparing -----------------------------------------------------------------------------------


def diff_campaigns(old_text: str, new_text: str, old_path: str = "old", new_path: str = "new") -> list[Change]:
    """The semantic changes from one campaign file to another, in the new file's order.

    ``old_path``/``new_path`` name the files in errors. Raises SourceError when either side is
    not valid YAML (or not a mapping)."""
    old_doc, old_tree = _load(old_text, old_path)
    new_doc, new_tree = _load(new_text, new_path)
    changes: list[Change] = []
    _Differ(old_doc, new_doc, changes).compare(old_tree, new_tree, "")
    return changes


class _Differ:
    def __init__(self, old: Document, new: Document, out: list[Change]):
        self.old, self.new, self.out = old, new, out

    def old_line(self, node: _Node) -> int:
        return self.old.key_span(node.ypath).line

    def new_line(self, node: _Node) -> int:
        return self.new.key_span(node.ypath).line

    def compare(self, old: _Node, new: _Node, path: str) -> None:
        if not (isinstance(old, _Branch) and isinstance(new, _Branch)):
            before, after = _plain(old), _plain(new)
            if not _same(before, after):
                self.out.append(Change(path, "changed", before, after, self.new_line(new)))
            return
        renamed: dict[str, str] = {}  # new segment -> old segment
        if old.ordered and new.ordered and new.aliases:
            renamed = _renames(old, new)
            old = _relabelled(old, renamed)
        moved = _moved(old, new) if old.ordered and new.ordered else set()
        for segment in _merged(list(old.children), list(new.children)):
            child_path = _join(path, segment)
            before, after = old.children.get(segment), new.children.get(segment)
            if before is None:
                self.out.append(Change(child_path, "added", None, _plain(after), self.new_line(after)))
            elif after is None:
                self.out.append(Change(child_path, "removed", _plain(before), None, self.old_line(before)))
            else:
                if segment in renamed:
                    self.out.append(Change(child_path, "renamed", _plain_id(renamed[segment]), _plain_id(segment),
                                           self.new_line(after)))
                    after = _without_alias(after, _plain_id(renamed[segment]))
                if segment in moved:
                    self.out.append(Change(
                        child_path, "moved", old.positions[segment], new.positions[segment], self.new_line(after)
                    ))
                self.compare(before, after, child_path)


def _renames(old: _Branch, new: _Branch) -> dict[str, str]:
    """The steps renamed from the old file to the new one: new segment -> old segment, for each
    step of the new file that is not in the old one and whose ``renamed_from`` names a step of the
    old file that is not in the new one (the first such name; one new step per old one)."""
    found: dict[str, str] = {}
    for segment, names in (new.aliases or {}).items():
        if segment in old.children:
            continue
        for name in names:
            if name in old.children and name not in new.children and name not in found.values():
                found[segment] = name
                break
    return found


def _relabelled(old: _Branch, renamed: dict[str, str]) -> _Branch:
    """The old steps with each renamed step under its new name, and the waits without an id
    that follow it too (``wait[after OLD #2]`` becomes ``wait[after NEW #2]``)."""
    names = {before: after for after, before in renamed.items()}
    for before, after in list(names.items()):
        for segment in old.children:
            for prefix in (f"wait[after {before}]", f"wait[after {before} #"):
                if segment.startswith(prefix):
                    names[segment] = f"wait[after {after}" + segment[len(f"wait[after {before}"):]
    names = {before: after for before, after in names.items() if after not in old.children}
    children = {names.get(k, k): v for k, v in old.children.items()}
    positions = {names.get(k, k): v for k, v in (old.positions or {}).items()}
    return replace(old, children=children, positions=positions)


def _plain_id(segment: str) -> str:
    """A step id from its path segment (``"[\"x.y\"]"`` is ``x.y``)."""
    return json.loads(segment[1:-1]) if segment.startswith("[") else segment


def _without_alias(step: _Node, name: str) -> _Node:
    """A renamed step without the old name in its ``renamed_from``: the rename is reported once."""
    old_ids = step.children.get("renamed_from") if isinstance(step, _Branch) else None
    if not isinstance(old_ids, _Leaf) or not isinstance(old_ids.value, list):
        return step
    children = dict(step.children)
    children["renamed_from"] = replace(old_ids, value=[v for v in old_ids.value if v != name])
    return replace(step, children=children)


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON (so ``true`` is not ``1``, and ``1`` is not ``1.0``)."""
    return json.dumps(a, sort_keys=True, ensure_ascii=False) == json.dumps(b, sort_keys=True, ensure_ascii=False)


def _merged(old: list[str], new: list[str]) -> list[str]:
    """The new order, with each key only in the old one placed after its old predecessor."""
    result = list(new)
    present = set(new)
    previous: str | None = None
    for key in old:
        if key not in present:
            result.insert(result.index(previous) + 1 if previous is not None else 0, key)
            present.add(key)
        previous = key
    return result


def _moved(old: _Branch, new: _Branch) -> set[str]:
    """Items in both lists that are not in the longest run keeping their relative order."""
    a = [k for k in old.children if k in new.children]
    b = [k for k in new.children if k in old.children]
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
    kept: set[str] = set()
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j]:
            kept.add(a[i])
            i, j = i + 1, j + 1
        elif table[i][j + 1] >= table[i + 1][j]:
            j += 1  # on a tie, the item that comes first in the new order is the one moved
        else:
            i += 1
    return set(a) - kept


# --- Output --------------------------------------------------------------------------------------

_SYMBOLS = {"added": "+", "removed": "-", "changed": "~", "moved": "↕", "renamed": "»"}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def render(changes: Iterable[Change]) -> str:
    """Readable text, one change a line (no trailing newline); ``no changes`` when empty.

    ``~ steps.reminder.email.subject (line 48): "old" → "new"``, ``+ path (line N): new``,
    ``- path (old line N): old``, ``↕ steps.nudge (line 30): position 2 → 4``,
    ``» steps.second-look (line 21): renamed from "reminder"``."""
    lines = []
    for c in changes:
        symbol = _SYMBOLS.get(c.kind, "?")
        if c.kind == "changed":
            lines.append(f"{symbol} {c.path} (line {c.line}): {_show(c.old)} → {_show(c.new)}")
        elif c.kind == "added":
            lines.append(f"{symbol} {c.path} (line {c.line}): {_show(c.new)}")
        elif c.kind == "removed":
            lines.append(f"{symbol} {c.path} (old line {c.line}): {_show(c.old)}")
        elif c.kind == "renamed":
            lines.append(f"{symbol} {c.path} (line {c.line}): renamed from {_show(c.old)}")
        else:
            lines.append(f"{symbol} {c.path} (line {c.line}): position {c.old} → {c.new}")
    return "\n".join(lines) if lines else "no changes"


def textconv(text: str, path: str = "<campaign>") -> str:
    """One campaign flattened to ``path = value`` lines in canonical order, for
    ``git diff``'s textconv: ``steps.welcome.email.subject = "Welcome, {{ partner.name }}"``.

    Values are JSON, except expressions, which are shown as their canonical text without
    quotes (``audience.rulesets.big-spenders = partner.revenue >= 100000``). Defaults are
    listed (``exclusive = false``); empty lists and mappings are left out. Two files that
    :func:`diff_campaigns` finds equal give the same text. Raises SourceError for bad YAML.

    As a git diff driver, so that ``git diff`` and pull-request reviews show these lines::

        # .gitattributes
        campaigns/*.yaml diff=campaign
        $ git config diff.campaign.textconv "<a command printing textconv(FILE)>"

    git runs the command with the path of a (temporary) copy of the file as its argument."""
    _, tree = _load(text, path)
    lines: list[str] = []
    _flatten(tree, "", lines)
    return "".join(line + "\n" for line in lines)


def _flatten(node: _Node, path: str, lines: list[str]) -> None:
    if isinstance(node, _Branch):
        for segment, child in node.children.items():
            _flatten(child, _join(path, segment), lines)
        return
    value = node.value
    if value is None or value == [] or value == {}:
        return
    shown = str(value) if isinstance(value, _Expr) else _show(_json_value(value))
    lines.append(f"{path} = {shown}")


# --- Revisions -----------------------------------------------------------------------------------


def load_revision(spec: str, cwd: Path) -> tuple[str, str]:
    """The display name and text of one side of a diff.

    ``spec`` is a file (absolute, or relative to ``cwd``) or ``REV:path``, the file at that
    revision of the git repository that contains ``cwd``: ``path`` is relative to the
    repository's root, or to ``cwd`` when written ``./path`` (as ``git show`` reads it). An
    existing file wins over the ``REV:path`` reading. Raises ValueError for a missing file, a
    bad revision or a path that is not a file at that revision, with git's message."""
    cwd = Path(cwd)
    candidate = Path(spec) if Path(spec).is_absolute() else cwd / spec
    if candidate.is_file():
        try:
            return spec, candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"{spec}: cannot read: {exc}") from None
    if ":" not in spec:
        raise ValueError(f"{spec}: no such file")
    if spec.startswith("-"):  # never an option of git's, whatever git version runs
        raise ValueError(f"{spec}: no such file, and not REV:path (a revision does not start with '-')")
    content = _git(["show", "--no-textconv", "--end-of-options", spec], cwd)
    kind = _git(["cat-file", "-t", "--end-of-options", spec], cwd).decode().strip()
    if kind != "blob":
        raise ValueError(f"{spec}: not a file (a git {kind})")
    try:
        return spec, content.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{spec}: not UTF-8 text") from None


def _git(args: list[str], cwd: Path) -> bytes:
    """Run git with ``args``. Whatever a user wrote goes after ``--end-of-options`` (git 2.24 or
    later), so a revision or path can never be read as an option (``--output=FILE`` would make
    git write a file)."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, check=False
        )
    except FileNotFoundError:
        raise ValueError("git is not installed (needed for REV:path)") from None
    except NotADirectoryError:
        raise ValueError(f"{cwd}: not a directory") from None
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()
        line = message[0] if message else f"git {args[0]} failed"
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                line = line[len(prefix):]
        raise ValueError(line)
    return result.stdout
