"""Safe YAML loading into plain values that remember where they came from.

We compose with PyYAML (libyaml when present) and build plain Python values ourselves, so that
every key and value keeps its span, duplicate keys are errors, and scalars follow the YAML 1.2
core schema: ``yes``, ``no``, ``on`` and ``off`` stay strings, and dates stay strings for the
models to parse (a campaign file means what it says, not what YAML 1.1 guessed).

Limits (campaign files and engine.yaml are small, hand-written documents; what exceeds these is
a mistake or an attack, and is one located error, found before memory or the stack can grow):

- Aliases (``*name``) may repeat at most :data:`MAX_ALIAS_VALUES` values in all. An alias
  repeats what its anchor holds, so a "billion laughs" (ten nested anchors, each used ten
  times by the next) would expand to ten billion values, gigabytes, in every command that reads
  the file. Composing keeps the nodes shared (it is as small as the text); the expansion
  happens here, value by value, and stops at the budget. Aliases are not refused outright:
  they are valid YAML, a small one costs nothing, and ``engine fmt`` already refuses a layout
  that an alias would change the meaning of.
- Nesting deeper than :data:`MAX_DEPTH` levels is refused where it happens (a campaign file
  needs about eight), so no later stage can run into Python's recursion limit. An alias that
  refers to a value containing it is nesting without end, and is refused the same way.
- A lone surrogate (text not decoded from UTF-8, or an escape in a double-quoted scalar) is
  refused: it is not a character, and could not be written to the store or any output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from .diagnostics import SourceError, error
from .ids import describe, first_surrogate
from .source import ScalarText, SourceText, Span

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """Composes without resolving tags: :func:`_resolve` gives scalars their meaning."""

    def resolve(self, kind, value, implicit):  # noqa: ANN001 - PyYAML's signature
        if kind is yaml.ScalarNode:
            return "tag:yaml.org,2002:str"
        return "tag:yaml.org,2002:seq" if kind is yaml.SequenceNode else "tag:yaml.org,2002:map"

Path = tuple[Any, ...]

MAX_DEPTH = 64
"""Levels of nested mappings and lists a document may have (a campaign file has about eight)."""

MAX_ALIAS_VALUES = 10_000
"""Values (mappings, lists and scalars) that aliases may repeat in one document, in all."""

_CONSTANTS = {
    "": None, "~": None, "null": None, "Null": None, "NULL": None,
    "true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False,
}
_NUMERIC_START = frozenset("0123456789+-.")
_INT = re.compile(r"^[-+]?[0-9]+$")
_INT_OTHER = re.compile(r"^0o[0-7]+$|^0x[0-9a-fA-F]+$")
_FLOAT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_SPECIAL_FLOAT = {".inf": float("inf"), "+.inf": float("inf"), "-.inf": float("-inf"), ".nan": float("nan")}


def _node_span(path: str, node: yaml.Node) -> Span:
    start, end = node.start_mark, node.end_mark
    return Span(path, start.line + 1, start.column + 1, end.line + 1, end.column + 1)


class Located:
    """Where one value of the document is: its YAML node and the node of its key.

    Spans and scalar texts are worked out when asked for: most values are never the subject
    of a diagnostic, and loading a thousand files should not pay for them."""

    __slots__ = ("source", "node", "key")

    def __init__(self, source: SourceText, node: yaml.Node, key: yaml.Node | None = None):
        self.source, self.node, self.key = source, node, key

    @property
    def span(self) -> Span:
        return _node_span(self.source.path, self.node)

    @property
    def key_span(self) -> Span | None:
        return _node_span(self.source.path, self.key) if self.key is not None else None

    @property
    def scalar(self) -> ScalarText | None:
        node = self.node
        if not isinstance(node, yaml.ScalarNode):
            return None
        start = self.source.index(node.start_mark.line, node.start_mark.column)
        end = self.source.index(node.end_mark.line, node.end_mark.column)
        return ScalarText(self.source, node.value, node.style, start, end)


@dataclass
class Document:
    """A loaded YAML file: plain data plus the location of every value by its path."""

    source: SourceText
    data: Any
    locations: dict[Path, Located] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return self.source.path

    def _nearest(self, path: Path) -> Located | None:
        path = tuple(path)
        while path and path not in self.locations:
            path = path[:-1]
        return self.locations.get(path)

    def span(self, path: Path = ()) -> Span:
        """The span of the value at ``path``, or of its nearest enclosing value."""
        located = self._nearest(path)
        return located.span if located else self.source.span(0)

    def key_span(self, path: Path) -> Span:
        """The span of the mapping key that introduces ``path`` (the value's, for list items)."""
        located = self._nearest(path)
        if located is None:
            return self.source.span(0)
        return located.key_span or located.span

    def scalar(self, path: Path) -> ScalarText | None:
        located = self.locations.get(tuple(path))
        return located.scalar if located else None


def load_yaml(path: str, text: str) -> Document:
    """Load one YAML document; raise :class:`SourceError` for anything that is not valid YAML."""
    source = SourceText(path, text)
    surrogate = first_surrogate(text)
    if surrogate is not None:
        raise SourceError(error(source.span(surrogate), f"not UTF-8 text: {describe(text[surrogate])}"))
    try:
        root = yaml.compose(text, Loader=_Loader)  # aliases stay shared nodes: no expansion yet
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        span = source.span(source.index(mark.line, mark.column)) if mark else source.span(0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise SourceError(error(span, f"invalid YAML: {problem}")) from None
    except yaml.YAMLError as exc:
        position = getattr(exc, "position", 0) or 0
        raise SourceError(error(source.span(position), f"invalid YAML: {_first_line(exc)}")) from None
    except RecursionError:
        raise SourceError(error(source.span(0), "invalid YAML: nested too deeply")) from None
    document = Document(source, None)
    if root is None:
        return document
    try:
        document.data = _Builder(source, document.locations).build(root, (), None)
    except RecursionError:
        raise SourceError(error(source.span(0), "invalid YAML: nested too deeply")) from None
    return document


def _alias_bomb(source: SourceText) -> SourceError:
    """The error for a document whose aliases expand beyond the budget, at its first alias
    (the composed nodes do not say where their aliases are: the events do)."""
    span = source.span(0)
    name = "name"
    for event in yaml.parse(source.text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            mark = event.start_mark
            span = source.span(source.index(mark.line, mark.column), source.index(event.end_mark.line, event.end_mark.column))
            name = event.anchor
            break
    message = (f"aliases (*{name}) expand this file to more than {MAX_ALIAS_VALUES} repeated values: "
               "write the values out, or use fewer aliases")
    return SourceError(error(span, message))


class _TooManyAliasValues(Exception):
    pass


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or ["invalid YAML"])[0]


class _Builder:
    def __init__(self, source: SourceText, locations: dict[Path, Located]):
        self.source = source
        self.locations = locations
        self.errors: list = []
        self.built: set[int] = set()  # the collection nodes built so far: met again, an alias
        self.expanding = 0  # how many aliases the value being built is inside
        self.repeated = 0  # values built inside aliases, against MAX_ALIAS_VALUES

    def build(self, node: yaml.Node, path: Path, key: yaml.Node | None) -> Any:
        try:
            value = self._value(node, path)
        except _TooManyAliasValues:
            raise _alias_bomb(self.source) from None
        if self.errors and not path:
            raise SourceError(self.errors)
        return value

    def _value(self, node: yaml.Node, path: Path, key: yaml.Node | None = None) -> Any:
        if self.expanding:
            self.repeated += 1
            if self.repeated > MAX_ALIAS_VALUES:
                raise _TooManyAliasValues
        self.locations[path] = Located(self.source, node, key)
        if isinstance(node, yaml.ScalarNode):
            if node.style == '"' and first_surrogate(node.value) is not None:
                self._surrogate(node)
            return _resolve(node)
        if len(path) >= MAX_DEPTH:
            span = _node_span(self.source.path, node)
            raise SourceError(error(span, f"nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)"))
        alias = id(node) in self.built
        self.built.add(id(node))
        self.expanding += alias
        try:
            return self._collection(node, path)
        finally:
            self.expanding -= alias

    def _collection(self, node: yaml.Node, path: Path) -> Any:
        if isinstance(node, yaml.SequenceNode):
            return [self._value(item, path + (i,)) for i, item in enumerate(node.value)]
        mapping: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.errors.append(error(_node_span(self.source.path, key_node), "a mapping key must be a plain value"))
                continue
            if key_node.style == '"' and first_surrogate(key_node.value) is not None:
                self._surrogate(key_node)
                continue
            key = _resolve(key_node)
            if isinstance(key, float) or key is None or isinstance(key, bool):
                key = key_node.value
            if key in mapping:
                self.errors.append(error(_node_span(self.source.path, key_node), f"duplicate key '{key}'"))
                continue
            mapping[key] = self._value(value_node, path + (key,), key_node)
        return mapping

    def _surrogate(self, node: yaml.ScalarNode) -> None:
        """An escape such as ``"\\ud800"`` in a double-quoted scalar (libyaml refuses them itself)."""
        char = node.value[first_surrogate(node.value) or 0]
        self.errors.append(error(_node_span(self.source.path, node), f"this text holds {describe(char)}"))


MAX_NUMBER_TEXT = 1000  # characters of a plain scalar read as a number; longer ones stay text


def _resolve(node: yaml.ScalarNode) -> Any:
    """YAML 1.2 core schema for plain scalars; quoted and block scalars are strings."""
    text = node.value
    if node.style:
        return text
    if text in _CONSTANTS:
        return _CONSTANTS[text]
    if text[0] not in _NUMERIC_START:  # most values are words: no number can start so
        return text
    if len(text) > MAX_NUMBER_TEXT:  # kept as text (Python refuses to read such an integer):
        return text                  # whatever wanted a number says so, at its line and column
    if _INT.match(text):
        return int(text)
    if _INT_OTHER.match(text):
        return int(text, 0)
    if _FLOAT.match(text) and any(c.isdigit() for c in text):
        return float(text)
    if text.lower() in _SPECIAL_FLOAT:
        return _SPECIAL_FLOAT[text.lower()]
    return text
