"""``engine fmt``: one canonical layout of campaign files (and of engine.yaml), comments kept.

What the layout is
------------------
* Keys of every mapping the models know in the models' field order, which is SPEC §3's order
  (name, description, owner, active, window, timezone, audience, trigger, ...; within
  ``audience`` rulesets, groups, exclude, dedupe, include_test; within a step id, when, then
  the kind). Keys the models do not know follow in their original order; the keys of free
  mappings (ruleset names, translations, responses) keep the author's order.
* Two-space indentation; a sequence's ``-`` indented two spaces under its key.
* Expressions (audience.rulesets values, audience.exclude, trigger.when, exit_when, a step's
  ``when``; in engine.yaml consent.email, consent.sms and exclude) in the canonical text of
  :func:`dsl.printer.to_source`.
* Every scalar keeps its quoting style and every collection its flow or block style (ruamel.yaml
  round trip); an expression whose new text needs quotes gets the quotes ruamel.yaml chooses.
* Every comment is kept, with its text unchanged. A full-line comment travels with the key or
  step it stands above (indented like it), an end-of-line comment stays on its line (at its
  column, or two spaces after the line when the line grew), the comments that close a block
  (indented deeper than what follows) stay at the end of that block, the file's leading
  comment block stays at the top. Blank lines between entries are kept (runs of them become
  one); blank lines at the end of the file are dropped.

How
---
:func:`dsl.yamlload.load_yaml` loads the file (a YAML error is a :class:`SourceError`), every
expression is parsed (a syntax error is a :class:`SourceError` located in the file). ruamel.yaml
loads it round trip, the key order and the expressions are changed in its tree, and it dumps the
tree *without any comments*. The comments and blank lines are then put back by this module,
from where they were in the original file relative to the keys and sequence items (found with
PyYAML's pure-Python scanner and parser) to where those keys and items are in the output.

Why comments are not left to ruamel.yaml: ruamel attaches a comment to the *preceding* node
(a full-line comment above ``exclude:`` is stored as the tail of the end-of-line comment of the
last ruleset before it; a comment above ``name:`` as the tail of whatever value precedes it), so
reordering keys carries comments away from the keys they describe, into other blocks and at the
wrong indentation. Reattaching its comment tokens would mean editing its undocumented comment
structures (``ca.items`` slots, tokens that hold several lines); placing them ourselves is
simpler and can be checked.

Finally the result is checked: it must load (with :mod:`dsl.yamlload`) to exactly the data of
the original with the expressions replaced, and hold the same comments. If it does not, the
file is not touched and a :class:`SourceError` says so: formatting never changes what a file
means.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
import types
import typing
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Callable

import yaml
from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner, ScannerError
from yaml.tokens import BlockEntryToken

from dsl.diagnostics import Diagnostic, SourceError, error
from dsl.parser import parse
from dsl.printer import to_source
from dsl.source import SourceText
from dsl.yamlload import Document, load_yaml

__all__ = ["FmtResult", "format_campaign", "format_settings", "format_paths", "SETTINGS_FILE"]

SETTINGS_FILE = "engine.yaml"
_WIDTH = 1 << 20  # never fold long lines: a reviewer's diff should show the author's lines
_BREAKS = "\0\r\n\x85\u2028\u2029"


# --- Public API --------------------------------------------------------------------------------


@dataclass
class FmtResult:
    """What :func:`format_paths` did: the files it changed (or, with ``check``, would change)
    and the problems that kept files from being formatted (those files are left as they are)."""

    changed: list[Path] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)


def format_campaign(text: str, path: str = "<campaign>") -> str:
    """The canonical text of a campaign file; :class:`SourceError` for invalid YAML or an
    expression that does not parse (every such problem, located)."""
    return _format(text, path, _layouts()[0])


def format_settings(text: str, path: str = SETTINGS_FILE) -> str:
    """The canonical text of a workspace's engine.yaml (SPEC §2 key order, consent and
    exclude expressions normalised)."""
    return _format(text, path, _layouts()[1])


def format_paths(paths: list[Path], check: bool = False) -> FmtResult:
    """Format campaign files in place (``check``: only list those that would change).

    A directory is a workspace: its ``campaigns/*.yaml`` (and ``*.yml``) files. A file is
    formatted as a campaign, or as workspace settings when it is named engine.yaml. A file
    with a problem is reported in ``diagnostics`` and left unchanged; the others are still
    formatted.
    """
    result = FmtResult()
    seen: set[Path] = set()
    for argument in map(Path, paths):
        for file in _files(argument, result.diagnostics):
            key = file.resolve()
            if key not in seen:
                seen.add(key)
                _format_file(file, check, result)
    return result


def _files(path: Path, diagnostics: list[Diagnostic]) -> list[Path]:
    """The files a PATH argument names: a workspace's campaign files, or the file itself."""
    if path.is_dir():
        campaigns = path / "campaigns"
        if campaigns.is_dir():
            return sorted(p for p in campaigns.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not (path / SETTINGS_FILE).is_file():
            message = f"{path} is not a workspace (no campaigns/ directory and no {SETTINGS_FILE})"
            diagnostics.append(error(SourceText(str(path), "").span(0), message))
        return []
    if path.is_file():
        return [path]
    diagnostics.append(error(SourceText(str(path), "").span(0), "no such file or directory"))
    return []


def _format_file(file: Path, check: bool, result: FmtResult) -> None:
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        result.diagnostics.append(error(SourceText(str(file), "").span(0), f"cannot read the file: {exc.strerror or exc}"))
        return
    except UnicodeDecodeError as exc:
        result.diagnostics.append(error(SourceText(str(file), "").span(0), f"not UTF-8 text (byte {exc.start})"))
        return
    formatter = format_settings if file.name == SETTINGS_FILE else format_campaign
    try:
        formatted = formatter(text, str(file))
    except SourceError as exc:
        result.diagnostics.extend(exc.diagnostics)
        return
    if formatted == text:
        return
    result.changed.append(file)
    if not check:
        try:
            _write(file, formatted)
        except OSError as exc:
            result.diagnostics.append(error(SourceText(str(file), "").span(0), f"cannot write the file: {exc.strerror or exc}"))


def _write(path: Path, text: str) -> None:
    """Replace the file atomically (a crash leaves the old or the new text, never half)."""
    mode = path.stat().st_mode & 0o7777
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".fmt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# --- The layout the models imply ---------------------------------------------------------------


class _ExpressionSpec:
    def __repr__(self) -> str:
        return "EXPRESSION"


EXPRESSION = _ExpressionSpec()


@dataclass(eq=False)
class _ModelSpec:
    """A mapping a model describes: its keys in canonical order and what each one holds."""

    name: str
    keys: tuple[str, ...]
    children: dict[str, Any]


@dataclass(frozen=True, eq=False)
class _DictSpec:
    value: Any  # free keys (ruleset names, languages, responses), values of one kind


@dataclass(frozen=True, eq=False)
class _ListSpec:
    item: Any


@dataclass(frozen=True, eq=False)
class _ChoiceSpec:
    """A union of models: which one a value is, decided from the value (plain data)."""

    choose: Callable[[Any], Any]


@cache
def _layouts() -> tuple[_ModelSpec, _ModelSpec]:
    # Imported here: the models sit above the language package; only the formatter needs them.
    from . import model

    builder = _SpecBuilder(model.Located, model.Expression)
    return builder.model(model.Campaign), builder.model(model.Settings)


class _SpecBuilder:
    def __init__(self, located: type, expression: Any):
        self.located = located
        self.expression = expression
        self.models: dict[type, _ModelSpec] = {}

    def model(self, cls: type) -> _ModelSpec:
        if cls not in self.models:
            hints = typing.get_type_hints(cls, include_extras=True)
            keys: list[str] = []
            children: dict[str, Any] = {}
            spec = _ModelSpec(cls.__name__, (), children)
            self.models[cls] = spec
            for name, info in cls.model_fields.items():
                key = info.alias or name
                keys.append(key)
                child = self.spec(hints.get(name, info.annotation))
                if child is not None:
                    children[key] = child
            spec.keys = tuple(keys)
        return self.models[cls]

    def spec(self, tp: Any) -> Any:
        if tp == self.expression:
            return EXPRESSION
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            base, *metadata = typing.get_args(tp)
            for meta in metadata:
                chooser = getattr(meta, "discriminator", None)
                if callable(chooser):
                    return self._discriminated(base, chooser)
            return self.spec(base)
        if origin in (typing.Union, types.UnionType):
            options = [self.spec(a) for a in typing.get_args(tp) if a is not type(None)]
            options = [o for o in options if o is not None]
            if not options:
                return None
            if len(options) == 1:
                return options[0]
            return _ChoiceSpec(lambda value, options=options: _closest(options, value))
        if origin is dict:
            value = self.spec(typing.get_args(tp)[1])
            return _DictSpec(value) if value is not None else None
        if origin is list:
            item = self.spec(typing.get_args(tp)[0])
            return _ListSpec(item) if item is not None else None
        if isinstance(tp, type) and issubclass(tp, self.located):
            return self.model(tp)
        return None

    def _discriminated(self, union: Any, chooser: Callable[[Any], Any]) -> Any:
        tags: dict[Any, Any] = {}
        for member in typing.get_args(union):
            tag = None
            if typing.get_origin(member) is typing.Annotated:
                member, *metadata = typing.get_args(member)
                tag = next((getattr(m, "tag") for m in metadata if hasattr(m, "tag")), None)
            tags[tag] = self.spec(member)

        def choose(value: Any) -> Any:
            try:
                return tags.get(chooser(value))
            except Exception:  # noqa: BLE001 - a discriminator that cannot tell: no layout
                return None

        return _ChoiceSpec(choose)


def _closest(options: list[Any], value: Any) -> Any:
    """Of several models, the one that knows most of the mapping's keys."""
    if not isinstance(value, dict):
        return next((o for o in options if not isinstance(o, _ModelSpec)), None)
    models = [o for o in options if isinstance(o, _ModelSpec)]
    if not models:
        return None
    return max(models, key=lambda m: len(set(m.keys) & set(value)))


# --- Formatting one file ------------------------------------------------------------------------


def _format(text: str, path: str, layout: _ModelSpec) -> str:
    text = _normalise_newlines(text)
    document = load_yaml(path, text)
    if document.data is not None and not isinstance(document.data, dict):
        kind = "a list" if isinstance(document.data, list) else "text" if isinstance(document.data, str) else type(document.data).__name__
        raise SourceError(error(document.span(()), f"expected a mapping of keys, found {kind}"))
    try:
        if document.data is None:
            # Nothing but comments (or nothing at all, or a bare null): keep the comments.
            return _assemble(_Skeleton.of(text), _Skeleton.of(""))
        tree, replaced = _rewrite(text, document, layout)
        bare = _dump(tree)
        original = _Skeleton.of(text)
        result = _assemble(original, _Skeleton.of(bare))
        _verify(document, replaced, original, result, path)
    except SourceError:
        raise
    except yaml.MarkedYAMLError as exc:  # PyYAML's pure-Python parser is stricter than libyaml here and there
        source = SourceText(path, text)
        mark = exc.problem_mark or exc.context_mark
        span = source.span(source.index(mark.line, mark.column)) if mark is not None else source.span(0)
        raise SourceError(error(span, f"invalid YAML: {exc.problem or exc.context or 'cannot be read'}")) from None
    except RecursionError:
        raise SourceError(error(SourceText(path, text).span(0), "cannot format: nested too deeply")) from None
    except _Unsupported as exc:
        raise _cannot(path, text, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - user input must only ever raise SourceError
        raise _cannot(path, text, f"{type(exc).__name__}: {exc}") from None
    return result


def _normalise_newlines(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _Unsupported(Exception):
    """A construct the formatter does not lay out (it becomes a :class:`SourceError`)."""


def _cannot(path: str, text: str, reason: str) -> SourceError:
    message = f"engine fmt cannot lay out this file without changing it ({reason}); the file was left as it is"
    return SourceError(error(SourceText(path, text).span(0), message))


def _yaml() -> Any:
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.width = _WIDTH
    rt.allow_unicode = True
    return rt


def _rewrite(text: str, document: Document, layout: _ModelSpec) -> tuple[Any, dict[tuple, str]]:
    """ruamel.yaml's tree of the file, comments dropped, keys ordered, expressions replaced.

    Returns the tree and the canonical text of each expression, by its path in the plain data.
    """
    from ruamel.yaml.error import YAMLError as RuamelError

    try:
        tree = _yaml().load(text)
    except RuamelError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        source = SourceText(document.path, text)
        span = source.span(source.index(mark.line, mark.column)) if mark is not None else source.span(0)
        problem = getattr(exc, "problem", None) or str(exc).strip().splitlines()[0]
        raise SourceError(error(span, f"invalid YAML: {problem}")) from None
    _strip_comments(tree)
    walker = _Rewriter(document)
    walker.walk(tree, document.data, layout, ())
    if walker.errors:
        raise SourceError(sorted(set(walker.errors)))
    return tree, walker.replaced


def _strip_comments(node: Any, seen: set[int] | None = None) -> None:
    seen = set() if seen is None else seen
    if id(node) in seen:
        return
    seen.add(id(node))
    ca = getattr(node, "ca", None)
    if ca is not None:
        ca.comment = None
        ca.items.clear()
        ca.end = []
        if ca.pre is not None:
            ca.pre = []
    if isinstance(node, dict):
        for value in node.values():
            _strip_comments(value, seen)
    elif isinstance(node, list):
        for value in node:
            _strip_comments(value, seen)
    elif hasattr(node, "comment") and type(node).__name__.endswith("ScalarString"):
        node.comment = None


class _Rewriter:
    """Walks ruamel's tree and the plain data side by side (both keep the file's key order; the
    plain data has the keys the way the models see them)."""

    def __init__(self, document: Document):
        self.document = document
        self.errors: list[Diagnostic] = []
        self.replaced: dict[tuple, str] = {}

    def walk(self, node: Any, data: Any, spec: Any, path: tuple) -> None:
        if isinstance(spec, _ChoiceSpec):
            spec = spec.choose(data)
        if isinstance(node, dict) and isinstance(data, dict):
            if not isinstance(spec, (_ModelSpec, _DictSpec)):
                return
            pairs = self._pairs(node, data, path)
            for (key, value), node_key in pairs:
                child = spec.value if isinstance(spec, _DictSpec) else spec.children.get(key) if isinstance(key, str) else None
                self.child(node, node_key, value, child, path + (key,))
            if isinstance(spec, _ModelSpec):
                rank = {k: i for i, k in enumerate(spec.keys)}
                unknown = len(rank)
                order = sorted(range(len(pairs)), key=lambda i: (rank.get(pairs[i][0][0], unknown), i))  # type: ignore[arg-type]
                if order != list(range(len(pairs))):
                    for i in order:
                        node.move_to_end(pairs[i][1])
        elif isinstance(node, list) and isinstance(data, list) and isinstance(spec, _ListSpec):
            if len(node) != len(data):
                raise _Unsupported(f"the two YAML loaders disagree on the length of {_dotted(path)}")
            for i, value in enumerate(data):
                self.child(node, i, value, spec.item, path + (i,))

    def _pairs(self, node: dict, data: dict, path: tuple) -> list[tuple[tuple[Any, Any], Any]]:
        keys = list(node.keys())
        if len(keys) != len(data):
            raise _Unsupported(f"the two YAML loaders disagree on the keys of {_dotted(path) or 'the file'} (merge keys?)")
        return list(zip(data.items(), keys))

    def child(self, container: Any, node_key: Any, data: Any, spec: Any, path: tuple) -> None:
        if isinstance(spec, _ChoiceSpec):
            spec = spec.choose(data)
        if spec is EXPRESSION:
            if not isinstance(data, str):
                return  # true/false/null or a wrong type: the model (engine check) says what is wrong
            try:
                canonical = to_source(parse(data, self.document.scalar(path)))
            except SourceError as exc:
                self.errors.extend(exc.diagnostics)
                return
            if canonical != data:
                container[node_key] = _restyle(container[node_key], canonical)
                self.replaced[path] = canonical
        elif spec is not None:
            self.walk(container[node_key], data, spec, path)


def _restyle(old: Any, text: str) -> Any:
    """The new text of a scalar in the old scalar's style; a plain one stays plain if it can
    (ruamel.yaml quotes it when it must)."""
    from ruamel.yaml.scalarstring import (
        DoubleQuotedScalarString,
        FoldedScalarString,
        LiteralScalarString,
        SingleQuotedScalarString,
    )

    for style in (DoubleQuotedScalarString, SingleQuotedScalarString, LiteralScalarString, FoldedScalarString):
        if isinstance(old, style):
            return style(text)
    return text


def _dump(tree: Any) -> str:
    out = io.StringIO()
    _yaml().dump(tree, out)
    return out.getvalue()


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


# --- Where comments, keys and items are ---------------------------------------------------------


@dataclass
class _Comment:
    start: int  # character index of '#'
    line: int  # 0-based
    col: int
    text: str  # from '#' to the end of the line, trailing blanks removed
    full_line: bool  # nothing but blanks before it on its line


@dataclass
class _Entry:
    """A key of a block mapping or an item of a block sequence, with all it holds."""

    path: tuple
    start: int  # the key, or the item's '-'
    line: int
    col: int
    order: int  # position in the document
    end_line: int = -1  # last line of its content


class _EventScanner(Reader, Scanner, Parser):
    """PyYAML's pure-Python scanner and parser, recording every comment and every '-'."""

    def __init__(self, text: str):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        self.comment_spans: list[tuple[int, int]] = []
        self.entry_mark: Any = None

    def _skip_comment(self) -> None:
        if self.peek() == "#":
            start = self.index
            while self.peek() not in _BREAKS:
                self.forward()
            self.comment_spans.append((start, self.index))

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        found = False
        while not found:
            while self.peek() == " ":
                self.forward()
            self._skip_comment()
            if self.scan_line_break():
                if not self.flow_level:
                    self.allow_simple_key = True
            else:
                found = True

    def _ignored_line(self, start_mark: Any, what: str) -> None:
        while self.peek() == " ":
            self.forward()
        self._skip_comment()
        if self.peek() not in _BREAKS:
            raise ScannerError(f"while scanning a {what}", start_mark, f"expected a comment or a line break, but found {self.peek()!r}", self.get_mark())
        self.scan_line_break()

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> None:
        self._ignored_line(start_mark, "block scalar")

    def scan_directive_ignored_line(self, start_mark: Any) -> None:
        self._ignored_line(start_mark, "directive")

    def get_token(self) -> Any:
        token = super().get_token()
        if isinstance(token, BlockEntryToken):
            self.entry_mark = token.start_mark
        return token


@dataclass
class _Frame:
    kind: str  # "map" or "seq"
    flow: bool
    path: tuple
    entry: _Entry | None  # the entry whose value this collection is
    start: int
    last_line: int  # the last line of content seen inside
    expect_key: bool = True
    key: Any = None
    key_entry: _Entry | None = None
    count: int = 0


class _Skeleton:
    """A YAML text's comments, block entries and multi-line scalars, by line."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.lines = text.split("\n")
        self.comments: list[_Comment] = []
        self.entries: list[_Entry] = []
        self.by_path: dict[tuple, _Entry] = {}
        self.interior: set[int] = set()  # lines inside a multi-line scalar, after its first
        self.keep_ends: set[int] = set()  # last lines of `|+` / `>+` scalars: no blank after them
        self.no_eol: set[int] = set()  # lines where a comment cannot be appended
        self.no_continuation: set[int] = set()  # lines after which no comment line may follow

    @classmethod
    def of(cls, text: str) -> "_Skeleton":
        skeleton = cls(text)
        if text.strip():
            skeleton._scan()
        return skeleton

    def line_of(self, index: int) -> int:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def col_of(self, index: int) -> int:
        return index - self.line_starts[self.line_of(index)]

    def indent(self, line: int) -> int:
        text = self.lines[line]
        return len(text) - len(text.lstrip(" "))

    def _scan(self) -> None:
        scanner = _EventScanner(self.text)
        frames: list[_Frame] = []
        try:
            while True:
                event = scanner.get_event()
                if event is None or isinstance(event, StreamEndEvent):
                    break
                self._event(scanner, event, frames)
        finally:
            scanner.dispose()
        for start, end in scanner.comment_spans:
            line = self.line_of(start)
            before = self.text[self.line_starts[line] : start]
            text = self.text[start:end].rstrip()
            self.comments.append(_Comment(start, line, start - self.line_starts[line], text, not before.strip()))
        self.entries.sort(key=lambda e: e.order)

    def _event(self, scanner: _EventScanner, event: Any, frames: list[_Frame]) -> None:
        if isinstance(event, (StreamStartEvent, DocumentStartEvent, DocumentEndEvent)):
            return
        if isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            frame = frames.pop()
            last = frame.last_line
            if frame.flow:
                first, last = self.line_of(frame.start), self._last_line(frame.start, event.end_mark.index)
                self.no_eol.update(range(first, last))
                self.no_continuation.update(range(first, last))
            self._finish(frame.entry, last, frames)
            return
        parent = frames[-1] if frames else None
        if parent is not None and parent.kind == "map" and parent.expect_key:
            if not isinstance(event, ScalarEvent):
                raise _Unsupported("a mapping key that is not a plain value")
            parent.expect_key = False
            parent.key = event.value
            parent.key_entry = None
            if not parent.flow:
                parent.key_entry = self._entry(parent.path + (event.value,), event.start_mark.index)
            parent.last_line = max(parent.last_line, self._last_line(event.start_mark.index, event.end_mark.index))
            return
        entry: _Entry | None = None
        if parent is None:
            path: tuple = ()
        elif parent.kind == "map":
            path = parent.path + (parent.key,)
            entry = parent.key_entry
            parent.expect_key = True
        else:
            path = parent.path + (parent.count,)
            parent.count += 1
            if not parent.flow:
                entry = self._entry(path, scanner.entry_mark.index if scanner.entry_mark is not None else event.start_mark.index)
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            kind = "map" if isinstance(event, MappingStartEvent) else "seq"
            start = event.start_mark.index
            frames.append(_Frame(kind, bool(event.flow_style), path, entry, start, self.line_of(start)))
            return
        if isinstance(event, ScalarEvent):
            last = self._scalar(event)
        else:
            last = self._last_line(event.start_mark.index, event.end_mark.index)
        self._finish(entry, last, frames)

    def _entry(self, path: tuple, start: int) -> _Entry:
        entry = _Entry(path, start, self.line_of(start), self.col_of(start), len(self.entries))
        self.entries.append(entry)
        self.by_path.setdefault(path, entry)
        return entry

    def _last_line(self, start: int, end: int) -> int:
        """The line of the last character of ``text[start:end]``."""
        return self.line_of(max(end - 1, start))

    def _finish(self, entry: _Entry | None, last_line: int, frames: list[_Frame]) -> None:
        if frames:
            frames[-1].last_line = max(frames[-1].last_line, last_line)
        if entry is not None:
            entry.end_line = max(entry.line, last_line)

    def _scalar(self, event: ScalarEvent) -> int:
        """Record the lines a scalar covers; return its last line."""
        start, end = event.start_mark.index, event.end_mark.index
        first = self.line_of(start)
        if event.style in ("|", ">"):
            header_end = self.text.find("\n", start)
            header = self.text[start : header_end if header_end >= 0 else len(self.text)]
            keep = "+" in header.split("#")[0]
            end_line = self.line_of(end)
            if not self.text[self.line_starts[end_line] : end].strip():
                end_line -= 1  # the scalar ends before the line its end mark is on
            last = end_line
            if not keep:
                while last > first and not self.lines[last].strip():
                    last -= 1
            elif last > first:
                self.keep_ends.add(last)
            self.interior.update(range(first + 1, last + 1))
            self.no_continuation.add(first)
            return last
        last = self._last_line(start, end)
        if last > first:
            self.interior.update(range(first + 1, last + 1))
            self.no_eol.update(range(first, last))
            self.no_continuation.update(range(first, last))
        return last


# --- Where each comment goes --------------------------------------------------------------------


@dataclass
class _Item:
    """A comment or a blank line to put back, and the place in the original it came from."""

    position: int  # character index in the original (for a stable order)
    comment: _Comment | None  # None: a blank line


@dataclass
class _Placement:
    header: list[_Item] = field(default_factory=list)
    trailer: list[_Item] = field(default_factory=list)
    before: dict[tuple, list[_Item]] = field(default_factory=dict)  # above the entry
    after: dict[tuple, list[_Item]] = field(default_factory=dict)  # below the entry's last line
    eol: dict[tuple, list[_Item]] = field(default_factory=dict)  # on the entry's first line
    continuation: dict[tuple, list[_Item]] = field(default_factory=dict)  # lines under an eol comment


def _place(original: _Skeleton) -> _Placement:
    placement = _Placement()
    entries = original.entries
    outermost: dict[int, _Entry] = {}
    for entry in entries:
        current = outermost.get(entry.line)
        if current is None or len(entry.path) < len(current.path):
            outermost[entry.line] = entry
    comment_at = {c.line: c for c in original.comments}
    first_line = entries[0].line if entries else len(original.lines)
    last_top = next((e for e in reversed(entries) if len(e.path) == 1), None)
    pending: list[_Item] = []
    chain: tuple[int, tuple] | None = None  # (column, anchor) of an eol comment on the line above
    # Blank lines at the end of the file (and the empty "line" after its final newline) are
    # dropped here, not left to _assemble: with no block entry everything goes in the header,
    # above the document, where they would become a blank line the next run keeps.
    end = max((i + 1 for i, text in enumerate(original.lines) if text.strip()), default=0)
    for line, text in enumerate(original.lines[:end]):
        comment = comment_at.get(line)
        if comment is not None and comment.full_line:
            if chain is not None and comment.col == chain[0]:
                placement.continuation.setdefault(chain[1], []).append(_Item(comment.start, comment))
                continue
            pending.append(_Item(comment.start, comment))
            chain = None
            continue
        chain = None
        if line in original.interior:
            if comment is not None:
                chain = _end_of_line(original, placement, comment, pending if line < first_line else placement.trailer)
            continue
        if not text.strip():
            pending.append(_Item(original.line_starts[line], None))
            continue
        if line < first_line:  # "---", a directive: the header goes on
            if comment is not None:
                pending.append(_Item(comment.start, comment))
            continue
        anchor = outermost.get(line)
        if anchor is None:
            containing = _containing(entries, line)
            if containing is not None:  # inside a value that spans lines (a flow collection)
                placement.before.setdefault(containing.path, []).extend(pending)
            else:  # after the document ("...", which ruamel.yaml writes after a final `|+` scalar)
                placement.trailer.extend(_closing(original, placement, pending, 0, last_top))
        elif anchor is entries[0]:
            split = max((i + 1 for i, item in enumerate(pending) if item.comment is None), default=len(pending))
            placement.header.extend(pending[:split])
            placement.before.setdefault(anchor.path, []).extend(pending[split:])
        else:
            rest = _closing(original, placement, pending, anchor.col, _previous_sibling(entries, anchor))
            placement.before.setdefault(anchor.path, []).extend(rest)
        pending = []
        if comment is not None:
            chain = _end_of_line(original, placement, comment, placement.trailer)
    if entries:
        pending = _closing(original, placement, pending, 0, last_top)
        placement.trailer.extend(pending)
    else:
        placement.header.extend(pending)
    return placement


def _end_of_line(original: _Skeleton, placement: _Placement, comment: _Comment, elsewhere: list[_Item]) -> tuple[int, tuple] | None:
    """Attach an end-of-line comment to the deepest entry on its line (``elsewhere``: where it
    goes when no entry is there); return what a continuation line below it would attach to."""
    entry = _containing(original.entries, comment.line)
    if entry is None:
        elsewhere.append(_Item(comment.start, comment))
        return None
    placement.eol.setdefault(entry.path, []).append(_Item(comment.start, comment))
    return comment.col, entry.path


def _containing(entries: list[_Entry], line: int) -> _Entry | None:
    """The deepest entry whose lines include ``line``."""
    best: _Entry | None = None
    for entry in entries:
        if entry.line <= line <= entry.end_line and (best is None or len(entry.path) >= len(best.path)):
            best = entry
    return best


def _previous_sibling(entries: list[_Entry], entry: _Entry) -> _Entry | None:
    parent = entry.path[:-1]
    previous = None
    for other in entries:
        if other is entry:
            return previous
        if other.path[:-1] == parent and len(other.path) == len(entry.path):
            previous = other
    return previous


def _closing(original: _Skeleton, placement: _Placement, pending: list[_Item], column: int, previous: _Entry | None) -> list[_Item]:
    """Put the comments that close the previous block (indented deeper than ``column``, where
    the next entry starts) after the entry they close; return the rest."""
    if previous is None:
        return pending
    inside = [e for e in original.entries if e.path[: len(previous.path)] == previous.path]
    split, targets = 0, []
    for i, item in enumerate(pending):
        if item.comment is None:
            continue
        comment = item.comment
        if comment.col <= column:
            break
        closes = [e for e in inside if e.col <= comment.col and e.end_line < comment.line]
        if not closes:
            break
        targets.append((i, closes[-1]))
        split = i + 1
    start = 0
    for i, target in targets:
        placement.after.setdefault(target.path, []).extend(pending[start : i + 1])
        start = i + 1
    return pending[split:]


# --- Putting the comments into the output -------------------------------------------------------


def _assemble(original: _Skeleton, output: _Skeleton) -> str:
    """The output's lines with the original's comments and blank lines put back."""
    placement = _place(original)
    lines = output.lines[:-1] if output.lines and output.lines[-1] == "" else list(output.lines)
    before: dict[int, list[tuple[int, _Item]]] = {}
    after: dict[int, list[tuple[int, int, _Item]]] = {}
    eol: dict[int, list[_Item]] = {}
    continuation: dict[int, list[_Item]] = {}
    trailer = list(placement.trailer)

    def entry_of(p: tuple) -> _Entry | None:
        return output.by_path.get(p)

    for p, items in placement.before.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        before.setdefault(entry.line, []).extend((0, item) for item in items)
    for p, items in placement.eol.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        eol.setdefault(entry.line, []).extend(items)
    for p, items in placement.continuation.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        continuation.setdefault(entry.line, []).extend(items)
    for p, items in placement.after.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        after.setdefault(entry.end_line, []).extend((len(p), entry.col, item) for item in items)

    out: list[str] = []
    inserted_blank: list[bool] = []
    state = {"no_blank": True}

    def emit_blank() -> None:
        if state["no_blank"] or (out and not out[-1].strip()):
            return
        out.append("")
        inserted_blank.append(True)

    def emit(text: str) -> None:
        out.append(text)
        inserted_blank.append(False)
        state["no_blank"] = False

    def emit_item(item: _Item, col: int) -> None:
        if item.comment is None:
            emit_blank()
        else:
            emit(" " * col + item.comment.text)

    for item in placement.header:
        emit_item(item, 0)
    for j, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        here = sorted(before.get(j, []), key=lambda pair: pair[1].position)
        on_line = sorted(eol.get(j, []), key=lambda item: item.position)
        under = sorted(continuation.get(j, []), key=lambda item: item.position)
        if on_line and j in output.no_eol:
            here = sorted(here + [(0, item) for item in on_line + under], key=lambda pair: pair[1].position)
            on_line, under = [], []
        elif under and j in output.no_continuation:
            here = sorted(here + [(0, item) for item in under], key=lambda pair: pair[1].position)
            under = []
        if len(on_line) > 1:
            under = sorted(on_line[1:] + under, key=lambda item: item.position)
            on_line = on_line[:1]
            if j in output.no_continuation:
                here = sorted(here + [(0, item) for item in under], key=lambda pair: pair[1].position)
                under = []
        for _, item in here:
            emit_item(item, indent)
        column = 0
        if on_line:
            comment = on_line[0].comment
            assert comment is not None
            body = line.rstrip()
            column = max(comment.col, len(body) + 2)
            line = body + " " * (column - len(body)) + comment.text
        emit(line)
        if j in output.keep_ends:
            state["no_blank"] = True
        for item in under:
            if item.comment is not None:
                emit(" " * column + item.comment.text)
        for _, col, item in sorted(after.get(j, []), key=lambda t: (-t[0], t[2].position)):
            emit_item(item, col)
    for item in trailer:
        emit_item(item, 0)
    while out and inserted_blank[-1]:
        out.pop()
        inserted_blank.pop()
    return "\n".join(out) + "\n" if out else ""


# --- The safety net -----------------------------------------------------------------------------


def _verify(document: Document, replaced: dict[tuple, str], original: _Skeleton, result: str, path: str) -> None:
    text = original.text
    try:
        reloaded = load_yaml(path, result)
    except SourceError as exc:
        raise _cannot(path, text, f"the result is not valid YAML: {exc.diagnostics[0].message}") from None
    expected = _replace(document.data, replaced, ())
    if not _same(expected, reloaded.data):
        raise _cannot(path, text, "the result would load to different values")
    if Counter(c.text for c in original.comments) != Counter(_comment_texts(result)):
        raise _cannot(path, text, "the result would lose or change a comment")


def _comment_texts(text: str) -> list[str]:
    return [c.text for c in _Skeleton.of(text).comments]


def _replace(data: Any, replaced: dict[tuple, str], path: tuple) -> Any:
    if path in replaced:
        return replaced[path]
    if isinstance(data, dict):
        return {k: _replace(v, replaced, path + (k,)) for k, v in data.items()}
    if isinstance(data, list):
        return [_replace(v, replaced, path + (i,)) for i, v in enumerate(data)]
    return data


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (``1``, ``1.0`` and ``true`` are three different things)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b
