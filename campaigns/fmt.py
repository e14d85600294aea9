"""``engine fmt``: one canonical layout of campaign files (and of engine.yaml), comments kept.

What the layout is
------------------
* Keys of every mapping the models know in the models' field order, which is SPEC §3's order
  (within ``audience`` rulesets, groups, exclude, dedupe, include_test, include_inactive; within
  a step id, renamed_from, when, then the kind; a wait id, renamed_from, wait, and inside
  ``wait: {...}`` for, at_most; a branch id, renamed_from, branch, and each case when, goto (or
  else); a split id, renamed_from, split, and each path weight, goto; a response result,
  follow_up, goto; a goal when, event, where, within, exit; quiet hours from, to; in
  engine.yaml's ``policies`` frequency (each cap max, per), on_cap, quiet_hours, send_days),
  except where :data:`ORDER` says otherwise:

  - a campaign's top level: name, description, owner, active, window, timezone, audience,
    trigger, reenroll, exclusive, previously_treated, exit_when, exit_on_audience_loss, then
    SPEC §11's keys holdout, goal, quiet_hours, send_days, priority, transactional, and last
    steps and monitor: everything that says *who* and *under which rules* comes before the
    steps, the long part of a file, as in SPEC §11's and the docs' examples;
  - a variant (``variants: {KEY: {...}}`` of an email, SMS, pop-up or letter) has its
    ``weight`` first, then what it overrides in the step's own order.

  Keys the models do not know follow in their original order; the keys of free mappings
  (ruleset names, translations, responses, variants, split paths, caps) keep the author's
  order: the order of variants and split paths is meaningful (their weights are taken in file
  order).
* Two-space indentation; a sequence's ``-`` indented two spaces under its key.
* Expressions (audience.rulesets values, audience.exclude, trigger.when, exit_when, a step's
  ``when``, a wait's ``for``, a branch case's ``when``, goal.when and goal.where; in
  engine.yaml consent.email, consent.sms and exclude) in the canonical text of
  :func:`dsl.printer.to_source`.
* Every scalar keeps its quoting style and every collection its flow or block style (ruamel.yaml
  round trip); an expression whose new text needs quotes gets the quotes ruamel.yaml chooses.
  A flow mapping inside a flow sequence keeps its braces (``[{when: ..., goto: a}, {else: end}]``,
  never ``[..., else: end]``), whatever the original wrote; a flow collection written over
  several lines is written on one.
* Every comment is kept, with its text unchanged. A full-line comment travels with the key or
  step it stands above (indented like it), an end-of-line comment stays on its line (at its
  column, or two spaces after the line when the line grew), the comments that close a block
  (indented deeper than what follows) stay at the end of that block, the file's leading
  comment block stays at the top. Blank lines between entries are kept (runs of them become
  one); blank lines at the end of the file are dropped.

How
---
:func:`dsl.yamlload.load_yaml` loads the file (a YAML error is a :class:`SourceError`), every
expression is parsed (a syntax error is a :class:`SourceError` located in the file). This
module derives the layout from the models (:class:`_SpecBuilder`), loads the file round trip
with ruamel.yaml, orders the keys and replaces the expressions in its tree, and dumps the tree
*without any comments*. :mod:`campaigns.fmt_comments` then puts the comments and blank lines
back, from where they were in the original file relative to the keys and sequence items to
where those keys and items are in the output (its docstring says why ruamel.yaml's own comment
handling is not used). The dependency goes one way: fmt_comments knows YAML texts, not models.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from dsl.diagnostics import Diagnostic, SourceError, error
from dsl.parser import parse
from dsl.printer import to_source
from dsl.source import SourceText
from dsl.yamlload import Document, load_yaml

from .fmt_comments import Skeleton, Unsupported, assemble, comment_texts

__all__ = ["SETTINGS_FILE", "FmtResult", "format_campaign", "format_paths", "format_settings"]

SETTINGS_FILE = "engine.yaml"
_WIDTH = 1 << 20  # never fold long lines: a reviewer's diff should show the author's lines


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


ORDER: dict[str, tuple[str, ...]] = {
    "Campaign": (
        "name", "description", "owner", "active", "window", "timezone", "audience", "trigger", "reenroll",
        "exclusive", "previously_treated", "exit_when", "exit_on_audience_loss",
        "holdout", "goal", "quiet_hours", "send_days", "priority", "transactional",
        "steps", "monitor",
    ),
    "EmailVersion": ("weight",),
    "SmsVersion": ("weight",),
    "PopupVersion": ("weight",),
    "LetterVersion": ("weight",),
}
"""Where the canonical order is not the model's field order, by model name: these keys first,
in this order, then the model's other keys in its order (so a field added to a model later is
never left out of the layout)."""


def _ordered(name: str, keys: list[str]) -> tuple[str, ...]:
    first = [k for k in ORDER.get(name, ()) if k in keys]
    return (*first, *(k for k in keys if k not in first))


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
            spec.keys = _ordered(cls.__name__, keys)
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
                tag = next((m.tag for m in metadata if hasattr(m, "tag")), None)
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
            return assemble(Skeleton.of(text), Skeleton.of(""))
        tree, replaced = _rewrite(text, document, layout)
        bare = _dump(tree)
        original = Skeleton.of(text)
        result = assemble(original, Skeleton.of(bare))
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
    except Unsupported as exc:
        raise _cannot(path, text, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - user input must only ever raise SourceError
        raise _cannot(path, text, f"{type(exc).__name__}: {exc}") from None
    return result


def _normalise_newlines(text: str) -> str:
    text = text.removeprefix("\ufeff")
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
    # `[{when: a, goto: b}, {else: end}]`, not `[{when: a, goto: b}, else: end]`: a branch's
    # cases read alike whichever of them has one key
    rt.brace_single_entry_mapping_in_flow_sequence = True
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
                raise Unsupported(f"the two YAML loaders disagree on the length of {_dotted(path)}")
            for i, value in enumerate(data):
                self.child(node, i, value, spec.item, path + (i,))

    def _pairs(self, node: dict, data: dict, path: tuple) -> list[tuple[tuple[Any, Any], Any]]:
        keys = list(node.keys())
        if len(keys) != len(data):
            raise Unsupported(f"the two YAML loaders disagree on the keys of {_dotted(path) or 'the file'} (merge keys?)")
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


# --- The safety net -----------------------------------------------------------------------------


def _verify(document: Document, replaced: dict[tuple, str], original: Skeleton, result: str, path: str) -> None:
    text = original.text
    try:
        reloaded = load_yaml(path, result)
    except SourceError as exc:
        raise _cannot(path, text, f"the result is not valid YAML: {exc.diagnostics[0].message}") from None
    expected = _replace(document.data, replaced, ())
    if not _same(expected, reloaded.data):
        raise _cannot(path, text, "the result would load to different values")
    if Counter(c.text for c in original.comments) != Counter(comment_texts(result)):
        raise _cannot(path, text, "the result would lose or change a comment")


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
