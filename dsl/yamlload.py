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

A YAML error is reported where PyYAML stopped, and when the text has one of the shapes PyYAML
stops after (a quote inside quotes, a quote or bracket left open, a key without ':', a key out
of line), the message adds where the mistake most likely is: see "Where the mistake probably is".
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterator

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
        raise SourceError(error(span, f"invalid YAML: {problem}{_likely_mistake(source, exc)}")) from None
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


# --- Where the mistake probably is ------------------------------------------------------------
#
# PyYAML stops where the text stops making sense, which is often after the mistake: an
# unclosed quote or bracket is reported lines later, a key without ':' at the next line, a
# double quote inside a double-quoted value at the text after it. Each guess below knows one
# such shape exactly (from the scanner's tokens and the lines' indentation) and says nothing
# when the text does not have that shape, so a different error never gets a wrong pointer.

_KEY_LINE = re.compile(r"^( *)(?:- +)*([^\s#\-\[\]{},:'\"][^:#]*?):(?:\s|$)")
_SHOWN = 60  # characters of a line a hint repeats
_BLOCK_HEADER = re.compile(r"^( *(?:- +)*)([^\s#:'\"][^:#]*?): +([|>])[-+0-9]*\s*(?:#.*)?$")
Guess = tuple[int | str, str] | None  # the line(s) of the likely mistake, and what it is
_OTHER_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")  # line breaks to YAML, not to SourceText


def _likely_mistake(source: SourceText, exc: yaml.MarkedYAMLError) -> str:
    """``; the likely mistake is at line N: ...``, or an empty string when no guess is sure."""
    mark = exc.problem_mark
    if mark is None or _OTHER_BREAKS.search(source.text):
        return ""  # YAML counts lines differently from us there: a line number could be wrong
    try:
        tokens = _tokens_until(source, mark)
        for guess in (_quote_inside_quotes, _unclosed_quote, _missing_colon, _unclosed_bracket,
                      _plain_value_runs_on, _misaligned):
            found = guess(source, exc, tokens)
            if found is not None:  # text from the file may hold a control character: then no guess
                return f"; the likely mistake is at line {found[0]}: {found[1]}" if found[1].isprintable() else ""
    except (yaml.YAMLError, RecursionError, IndexError, ValueError, AttributeError, TypeError):
        pass  # a guess must never hide the error itself
    return ""


def _tokens_until(source: SourceText, mark: yaml.Mark) -> list[yaml.Token]:
    """The scanner's tokens that start before ``mark`` (the scanner may stop with an error)."""
    stop = (mark.line, mark.column)
    tokens: list[yaml.Token] = []
    try:
        for token in yaml.scan(source.text, Loader=_Loader):
            if (token.start_mark.line, token.start_mark.column) >= stop:
                break
            tokens.append(token)
    except yaml.YAMLError:
        pass
    return tokens


def _ends_at(token: yaml.Token, mark: yaml.Mark) -> bool:
    return (token.end_mark.line, token.end_mark.column) == (mark.line, mark.column)


def _shown(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."


def _quote_inside_quotes(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """``when: "partner.country == "FI""``: the second quote ends the value, the parser then
    meets ``FI""`` right after it."""
    mark = exc.problem_mark
    scalar = tokens[-1] if tokens and isinstance(tokens[-1], yaml.ScalarToken) else None
    if scalar is None or scalar.style not in ('"', "'") or not _ends_at(scalar, mark):
        return None
    line = source.line_text(mark.line + 1)
    start = scalar.start_mark
    if start.line != mark.line or mark.column >= len(line) or line[mark.column].isspace():
        return None
    quote = scalar.style
    kind, other = ("double", "single") if quote == '"' else ("single", "double")
    comment = line.find(" #", mark.column)
    close = (line if comment < 0 else line[:comment]).rfind(quote)
    if close < mark.column:  # no quote after it: a stray character after a closed value
        return None
    inner = line[start.column + 1 : close]
    message = f"a {kind} quote inside a {kind}-quoted value ends it (the one at column {mark.column})"
    swap = "'" if quote == '"' else '"'
    if swap in inner or len(inner) > _SHOWN:
        return mark.line + 1, f"{message}; write {other} quotes outside the value, or {other} quotes inside it"
    return mark.line + 1, (f"{message}; write {other} quotes outside, {swap}{inner}{swap}, "
                           f"or {other} quotes inside, {quote}{inner.replace(quote, swap)}{quote}")


def _unclosed_quote(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """A quote left open: the value runs on over the next lines (keys and all) to the next
    quote, or to the end of the file."""
    mark = exc.problem_mark
    if exc.context == "while scanning a quoted scalar" and exc.context_mark is not None:
        opened = exc.context_mark
        if opened.line < mark.line:
            return opened.line + 1, f"the quote opened there (column {opened.column + 1}) is never closed"
        return None
    scalar = tokens[-1] if tokens and isinstance(tokens[-1], yaml.ScalarToken) else None
    if scalar is None or scalar.style not in ('"', "'") or not _ends_at(scalar, mark):
        return None
    opened = scalar.start_mark
    swallowed = range(opened.line + 2, mark.line + 2)  # 1-based lines after the opening one
    if opened.line >= mark.line or not any(_KEY_LINE.match(source.line_text(n)) for n in swallowed):
        return None
    return opened.line + 1, (f"the quote opened there (column {opened.column + 1}) is not closed on that line, "
                             f"so the value runs on to line {mark.line + 1}")


def _missing_colon(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """``description hello`` (or ``description:hello``) where a key was due: PyYAML says so
    at the next line."""
    start = exc.context_mark
    if exc.context != "while scanning a simple key" or start is None:
        return None
    text = source.line_text(start.line + 1)[start.column :].split(" #")[0]
    header = next(_lines_above(source, start.line), None)
    match = _BLOCK_HEADER.match(header[1]) if header else None
    if match and len(match.group(1)) >= start.column:  # `exclude: |` with its text not indented under it
        return f"{header[0]} or {start.line + 1}", (f"the text of '{match.group(2)}' (a {match.group(3)} block) must "
                                                    f"be indented more than '{match.group(2)}:' itself, and line "
                                                    f"{start.line + 1} is not")
    if re.search(r":[^\s:]", text):
        return start.line + 1, f"'{_shown(text)}' needs a space after the ':' of its key"
    return start.line + 1, f"'{_shown(text)}' has no ':' after its key"


_CLOSERS = {"[": "]", "{": "}"}


def _unclosed_bracket(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """``rulesets: [unclosed`` and the next key is read as part of the list."""
    opened, mark = exc.context_mark, exc.problem_mark
    if exc.context not in ("while parsing a flow sequence", "while parsing a flow mapping") or opened is None:
        return None
    line = source.line_text(opened.line + 1)
    bracket = line[opened.column : opened.column + 1]
    key = _KEY_LINE.match(source.line_text(mark.line + 1))
    if opened.line >= mark.line or bracket not in _CLOSERS or key is None:
        return None
    if len(key.group(1)) > _indent(line) or _closed_on_line(line[opened.column :]):
        return None
    return opened.line + 1, (f"the '{bracket}' at column {opened.column + 1} is never closed with "
                             f"'{_CLOSERS[bracket]}', so line {mark.line + 1} is read as part of it")


def _closed_on_line(text: str) -> bool:
    """Whether the bracket that ``text`` starts with is closed on the line (quotes skipped)."""
    depth, quote = 0, ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth == 0:
                return True
        elif char == "#":
            break
    return False


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"


def _plain_value_runs_on(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """"mapping values are not allowed": the ':' ends an unquoted value that began on this line
    (``description: Note: it``) or above (a key indented under ``description: text``)."""
    mark = exc.problem_mark
    scalar = tokens[-1] if tokens and isinstance(tokens[-1], yaml.ScalarToken) else None
    if not (exc.problem or "").startswith("mapping values are not allowed") or scalar is None \
            or scalar.style or not _ends_at(scalar, mark):
        return None
    owner = tokens[-3] if len(tokens) >= 3 and isinstance(tokens[-2], yaml.ValueToken) else None
    owner = owner if isinstance(owner, yaml.ScalarToken) else None  # the key whose value the text is
    key = owner if owner is not None and owner.end_mark.line == scalar.start_mark.line else None
    line = source.line_text(mark.line + 1)
    if scalar.start_mark.line == mark.line:
        if key is None:
            return None
        value = line[scalar.start_mark.column :].split(" #")[0].strip()
        quote = "'" if '"' in value else '"'
        example = f": {key.value}: {quote}{value}{quote}" if len(value) <= _SHOWN and quote not in value else ""
        return mark.line + 1, f"a ': ' inside the value of '{key.value}' starts another key; quote the value{example}"
    here = _shown(line[: mark.column].strip(" -"))
    if key is not None and _indent(line) > key.start_mark.column:
        above = key.start_mark.line + 1
        blame = _blame_deeper(source, above, key.start_mark.column, mark.line + 1, _indent(line))
        return blame, (f"'{here}:' ({_spaces(_indent(line))}) is indented more than '{key.value}:' on line {above} "
                       f"({key.start_mark.column}), so it is read as more of that value; line the keys up "
                       f"(or quote the value, if the ':' belongs to it)")
    first = source.line_text(scalar.start_mark.line + 1)
    start = scalar.start_mark.line + 1
    adjacent = next(_lines_above(source, mark.line), (0, ""))[0] == start  # more lines between: other shapes
    owned = owner is not None and _lines_up(source, owner.start_mark.line + 1, owner.start_mark.column)
    if key is None and adjacent and owned and _indent(first) == scalar.start_mark.column == _indent(line):
        return start, (f"'{_shown(first)}' has no ':' after its key, so lines {start} to {mark.line + 1} are read "
                       f"as one text (or, if line {start} is meant as text, '{here}:' is indented too far)")
    return None


def _blame_deeper(source: SourceText, above: int, column: int, below: int, deeper: int) -> int | str:
    """``key: value`` on line ``above``, and a key indented more on line ``below``: which is out
    of line with the mapping around them, or both lines when the text does not say."""
    if next(_lines_above(source, below - 1), (0, ""))[0] != above or source.line_text(above).lstrip().startswith("- "):
        return f"{above} or {below}"  # text between them, or a list item: nothing says which
    if _left_empty(source, above, column):
        return above  # the key above it has no value: this key was meant under it
    header = next(_lines_above(source, above - 1), (0, ""))
    if (match := _BLOCK_HEADER.match(header[1])) and len(match.group(1)) >= column:
        return f"{above} or {below}"  # the text of a `key: |` block, or the key after it: either is out of line
    return _blame(above, _lines_up(source, above, column), below, _lines_up(source, above, deeper))


def _lines_up(source: SourceText, number: int, column: int) -> bool:
    """Whether a key at ``column`` on line ``number`` would line up with the keys before it
    (or, as the first one, be indented this file's step under its parent)."""
    for _, above in _lines_above(source, number - 1):
        match = _KEY_LINE.match(above)
        if match is None:
            return False
        if match.start(2) == column:
            return True
        if match.start(2) < column:  # the parent: a list item, or a key with nothing after it
            if above.lstrip().startswith("- ") and _indent(above) < column:
                return column == match.start(2)
            return _alone(above, match) and column == match.start(2) + _step(source)
    return column == 0


def _alone(line: str, match: re.Match) -> bool:
    """Whether the key ``match`` found on ``line`` has nothing after it (its value is below)."""
    return not line[match.end() :].split("#")[0].strip()


def _left_empty(source: SourceText, number: int, column: int) -> bool:
    """Whether the line above line ``number`` is a key with nothing after it, at ``column`` or
    deeper: a key left empty by the line after it, which was most likely meant under it."""
    above = next(_lines_above(source, number - 1), None)
    match = None if above is None else _KEY_LINE.match(above[1])
    return match is not None and match.start(2) >= column and _alone(above[1], match)


def _blame(first: int, first_fits: bool, second: int, second_fits: bool) -> int | str:
    """The line that does not fit where the other does; both when that says nothing."""
    if first_fits != second_fits:
        return second if first_fits else first
    return f"{min(first, second)} or {max(first, second)}"


def _parent(source: SourceText, number: int, column: int) -> tuple[int, int] | None:
    """The line that holds the mapping whose key is at ``column`` on line ``number``, and the
    column its keys are expected at (this file's step under a key, the key after a ``-``)."""
    for above_number, above in _lines_above(source, number - 1):
        match = _KEY_LINE.match(above)
        if match is None:
            return None
        if above.lstrip().startswith("- ") and _indent(above) < column:
            return above_number, match.start(2)
        if match.start(2) < column:
            return (above_number, match.start(2) + _step(source)) if _alone(above, match) else None
    return 0, 0  # the top level: its keys start the lines


def _step(source: SourceText) -> int:
    """How far this file indents the keys under a key: what most of its keys do, else 2."""
    counts: Counter[int] = Counter()
    previous = None
    for text in source.text.split("\n"):
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if previous is not None and _indent(text) > previous:
            counts[_indent(text) - previous] += 1
        match = _KEY_LINE.match(text)
        alone = match is not None and _alone(text, match) and not text.lstrip().startswith("- ")
        previous = match.start(2) if alone else None
    if sum(counts.values()) < 3:  # too few to overrule the usual 2
        return 2
    return max(counts, key=lambda step: (counts[step], step == 2))


def _misaligned(source: SourceText, exc: yaml.MarkedYAMLError, tokens: list) -> Guess:
    """A key whose indentation lines up with no key above it: deeper than its parent's,
    shallower than its would-be siblings' (or level with a list's ``-``)."""
    mark = exc.problem_mark
    line = source.line_text(mark.line + 1)
    if not (exc.context or "").startswith("while parsing a block") or mark.column != _indent(line):
        return None
    if line[mark.column :].startswith("- "):
        return _misaligned_item(source, mark)
    here = _KEY_LINE.match(line)
    if here is None or here.start(2) != mark.column:
        return None
    name, column, number_here = here.group(2).strip(), mark.column, mark.line + 1
    under: list[tuple[int, str, int]] = []  # the lines between the parent and this one, nearest first
    for number, above in _lines_above(source, mark.line):
        match = _KEY_LINE.match(above)
        if match is None:
            return None
        key, dash, parent = match.start(2), above.lstrip().startswith("- "), match.group(2).strip()
        if dash and _indent(above) == column:
            parent_column = _list_parent(source, number, column)
            fits = parent_column is not None and column in (parent_column, parent_column + _step(source))
            return number_here if fits else f"{number} or {number_here}", (
                f"'{name}:' lines up with the '-' on line {number}, so it is not part of that item: keys inside "
                f"a list item are indented past its '-'")
        if key == column:
            return None
        if key > column and not (dash and _indent(above) < column):
            under.append((number, parent, key))
            continue
        if dash and key > column:  # the list item this key is under: its first key is on this line
            return f"{number} or {number_here}", (f"'{name}:' ({_spaces(column)}) does not line up with '{parent}:' "
                                                  f"on line {number} ({key}), the first key of that list item")
        if not under:
            return None
        outer = _parent(source, number, key)
        if _left_empty(source, number, key) or (outer is not None and column == outer[1] != key):
            return number, (f"'{parent}:' ({_spaces(key)}) and '{name}:' on line {number_here} ({column}) are keys of "
                            f"one mapping but do not line up")
        first = under[-1]  # the first line under the parent: it sets where the parent's keys are
        expected = key + _step(source) if not dash or _indent(above) >= column else key
        alike = sum(1 for entry in under if entry[2] == first[2])  # several agree: never the one to blame
        blame = _blame(first[0], first[2] == expected or alike > 1, number_here, column == expected)
        return blame, (f"'{name}:' ({_spaces(column)}) and '{first[1]}:' on line {first[0]} ({first[2]}) are both "
                       f"under '{parent}:' on line {number} ({key}) but do not line up: the keys of one mapping "
                       f"line up")
    return None


def _misaligned_item(source: SourceText, mark: yaml.Mark) -> Guess:
    """``- wait: 3d`` indented like the keys of the item above rather than like its ``-``."""
    for number, above in _lines_above(source, mark.line):
        dash = above.lstrip().startswith("- ")
        if not dash and (_KEY_LINE.match(above) is None or _indent(above) < mark.column):
            return None  # not plainly keys and items, or out of the block the list could be in
        if dash and _indent(above) == mark.column:
            return None
        if dash and _indent(above) < mark.column:
            column = _indent(above)
            parent = _list_parent(source, number, column)
            good = () if parent is None else (parent, parent + _step(source))
            blame = _blame(number, column in good, mark.line + 1, mark.column in good)
            return blame, (f"this '-' ({_spaces(mark.column)}) and the '-' on line {number} ({column}) do not line up: "
                           f"the items of one list line up")
    return None


def _list_parent(source: SourceText, number: int, column: int) -> int | None:
    """The column of the key a list whose ``-`` is at ``column`` on line ``number`` belongs to."""
    for _, above in _lines_above(source, number - 1):
        match = _KEY_LINE.match(above)
        if match is None:
            return None
        if above.lstrip().startswith("- ") and _indent(above) >= column:
            continue  # an earlier item of the list, or a line inside one
        if match.start(2) <= column and _alone(above, match):
            return match.start(2)
        if match.start(2) < column:
            return None
    return None


def _lines_above(source: SourceText, line0: int) -> Iterator[tuple[int, str]]:
    """The lines above a 0-based line, nearest first, with their 1-based numbers; blank lines
    and comments left out."""
    for number in range(line0, 0, -1):
        text = source.line_text(number)
        if text.strip() and not text.lstrip().startswith("#"):
            yield number, text
