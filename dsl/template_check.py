"""Static checks of templates (``engine check``): problems at ``path:line:col`` of the file the
text is in, for inline templates inside the YAML file.

Reported: syntax errors, undefined variables, unknown partner fields, unknown filters and tests,
``include``/``extends``/``import`` of templates that do not exist or that resolve outside
templates/ (a symbolic link to a file elsewhere: never read), and what can only fail in the
sandbox (an attribute starting with ``_``, such as ``''.__class__``). Templates that are included
are checked too (their partner fields, filters, syntax), but not for undefined variables, since
they may use the variables of the template that includes them. Jinja nodes carry only a line
number, so columns come from our own pass over jinja's tokens, each token aligned with its
offset in the text.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import exceptions, meta, nodes
from jinja2.lexer import TokenStream
from jinja2.loaders import split_template_path
from jinja2.parser import Parser
from jinja2.sandbox import SandboxedEnvironment

from .diagnostics import Diagnostic, did_you_mean, error
from .source import ScalarText, SourceText, Span
from .template_render import TEMPLATE_NAMES, environment, inside
from .types import Type

_BLOCK_TAGS = ("if", "for", "macro", "call", "filter", "block", "with", "autoescape", "set")
_KNOWN_TAGS = (
    "if", "elif", "else", "endif", "for", "endfor", "macro", "endmacro", "call", "endcall",
    "filter", "endfilter", "block", "endblock", "with", "endwith", "autoescape", "endautoescape",
    "set", "endset", "extends", "include", "import", "from", "print", "raw", "endraw",
)


# --- Static checks -----------------------------------------------------------------------------


def check_inline(
    text: str,
    where: ScalarText,
    partner: Type,
    templates_dir: str | Path | None = None,
    seen: set[str] | None = None,
) -> list[Diagnostic]:
    """Problems of a template written in a YAML string, placed in the YAML file.

    ``seen`` holds the names of template files already checked (included ones are checked once).
    """
    return _guarded(text, where.span, partner, templates_dir, None, seen if seen is not None else set(), True)


def check_file(
    path: str | Path, partner: Type, templates_dir: str | Path, seen: set[str] | None = None
) -> list[Diagnostic]:
    """Problems of a template file, placed in that file."""
    return _check_file(Path(path), partner, templates_dir, seen if seen is not None else set(), True)


def mentions(text: str, name: str, templates_dir: str | Path | None) -> bool:
    """Whether a template, or one it includes, extends or imports, uses the variable ``name``
    (a warning's question: "does this email have an unsubscribe link?"). Each template file is
    looked at once, however often it is included. A template that does not parse or compile, or
    a name that cannot be read, counts as not mentioning it: its own error is reported elsewhere."""
    env = environment(templates_dir)
    pending, seen = [text], set()
    while pending:
        try:  # find_undeclared_variables compiles: an unknown filter raises there, not in parse
            ast = env.parse(pending.pop())
            if name in meta.find_undeclared_variables(ast):
                return True
            referenced = list(meta.find_referenced_templates(ast))
        except (exceptions.TemplateError, RecursionError):  # RecursionError: nested too deeply
            continue
        for included in referenced:
            if not isinstance(included, str) or included in seen or templates_dir is None:
                continue  # a name computed at render time cannot be followed
            seen.add(included)
            try:  # split_template_path refuses a name with `..` (TemplateNotFound): reported elsewhere
                path = Path(templates_dir, *split_template_path(included))
                if inside(path, templates_dir):
                    pending.append(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, exceptions.TemplateNotFound):  # ValueError: undecodable text, a NUL
                continue
    return False


def _check_file(
    path: Path, partner: Type, templates_dir: str | Path | None, seen: set[str], strict: bool
) -> list[Diagnostic]:
    if templates_dir is not None and not inside(path, templates_dir):
        return [error(SourceText(str(path), "").span(0), _outside_message(path.name))]
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return [error(SourceText(str(path), "").span(0), f"not UTF-8 text: {exc.reason}")]
    except OSError as exc:
        return [error(SourceText(str(path), "").span(0), f"cannot read template: {exc.strerror or exc}")]
    source = SourceText(str(path), text)
    name = path.name
    if templates_dir is not None:
        try:
            name = path.resolve().relative_to(Path(templates_dir).resolve()).as_posix()
        except ValueError:
            pass
    return _guarded(text, source.span, partner, templates_dir, name, seen, strict)


def _guarded(
    text: str,
    to_span: Callable[[int, int], Span],
    partner: Type,
    templates_dir: str | Path | None,
    name: str | None,
    seen: set[str],
    strict: bool,
) -> list[Diagnostic]:
    """Never raise for any text: a failure of the checker itself becomes a diagnostic."""
    source, back = _normalize_newlines(text)

    def span(start: int, end: int) -> Span:
        return to_span(back(start), back(max(end, start + 1)))

    try:
        found = _check(source, span, partner, templates_dir, name, seen, strict)
    except RecursionError:
        found = [error(span(0, 1), "template is nested too deeply")]
    except Exception as exc:  # pragma: no cover - a bug in the checker must not stop `engine check`
        found = [error(span(0, 1), f"cannot check template: {type(exc).__name__}: {exc}")]
    return sorted(set(found), key=lambda d: (d.span.path, d.span.line, d.span.col, d.message))


def _normalize_newlines(text: str) -> tuple[str, Callable[[int], int]]:
    """Jinja reads ``\\r\\n`` and ``\\r`` as ``\\n``; offsets in its text map back to ours."""
    if "\r" not in text:
        return text, lambda i: i
    out: list[str] = []
    origin: list[int] = []
    i = 0
    while i < len(text):
        origin.append(i)
        if text[i] == "\r":
            out.append("\n")
            i += 2 if text[i + 1 : i + 2] == "\n" else 1
        else:
            out.append(text[i])
            i += 1
    origin.append(len(text))
    return "".join(out), lambda k: origin[min(max(k, 0), len(origin) - 1)]


@dataclass(frozen=True)
class _Token:
    """One jinja token with its place in the text (jinja itself knows only the line)."""

    start: int
    end: int
    line: int
    kind: str  # jinja's raw kind ('name', 'operator', 'block_begin', ...)
    text: str  # as written
    value: Any = None  # as the parser sees it (strings unescaped); None for ignored tokens


class _Scan:
    """Jinja's view of a text: the tree or the first syntax error, and the tokens with their
    offsets, worked out only when a problem needs a column."""

    def __init__(self, env: SandboxedEnvironment, source: str, tokens: list[_Token] | None = None):
        self.env = env
        self.source = source
        self._tokens = tokens
        self.ast: nodes.Template | None = None
        self.problem: tuple[int, int, str] | None = None  # start, end, message

    @functools.cached_property
    def tokens(self) -> list[_Token]:
        """Every raw token, whitespace and comments included."""
        if self._tokens is None:
            self._tokens, _, _ = _lex(self.env, self.source)
            _attach_values(self.env, self._tokens)
        return self._tokens

    @functools.cached_property
    def code(self) -> list[_Token]:
        """The tokens the parser sees."""
        return [t for t in self.tokens if t.value is not None]

    @functools.cached_property
    def lines(self) -> dict[int, list[int]]:
        """Indexes into :attr:`code` of the tokens starting on each line."""
        by_line: dict[int, list[int]] = {}
        for i, token in enumerate(self.code):
            by_line.setdefault(token.line, []).append(i)
        return by_line


def _check(
    source: str,
    span: Callable[[int, int], Span],
    partner: Type,
    templates_dir: str | Path | None,
    name: str | None,
    seen: set[str],
    strict: bool,
) -> list[Diagnostic]:
    env = environment(templates_dir)
    scan = _scan(env, source, name)
    if scan.ast is None:
        start, end, message = scan.problem or (0, 1, "invalid template")
        return [error(span(start, end), message)]
    problems: list[tuple[int, int, str]] = []
    problems += _unknown_filters(env, scan)
    problems += _unknown_fields(scan, partner)
    problems += _sandbox_refusals(scan)
    missing, present = _referenced_templates(env, scan, templates_dir)
    problems += missing
    problems += _undefined_variables(env, scan, strict)
    found = [error(span(start, end), message) for start, end, message in problems]
    for included, path in present:
        if included not in seen:
            seen.add(included)
            found += _check_file(path, partner, templates_dir, seen, False)
    return found


# --- Tokens and syntax errors ------------------------------------------------------------------


def _scan(env: SandboxedEnvironment, source: str, name: str | None) -> _Scan:
    try:  # the common case: the template parses, and no token position is needed yet
        scan = _Scan(env, source)
        scan.ast = env.parse(source, name)
        return scan
    except exceptions.TemplateSyntaxError:
        pass
    tokens, cursor, lex_error = _lex(env, source)
    scan = _Scan(env, source, tokens)
    if lex_error is not None:
        scan.problem = _lexer_problem(scan, cursor, lex_error)
        return scan
    parsed: list[Any] = []  # the parser's tokens
    owner: dict[int, int] = {}  # id of a parser's token -> index of its raw token
    position = [0]
    try:
        for index, token in _wrapped(env, tokens, position):
            owner[id(token)] = index
            parsed.append(token)
    except exceptions.TemplateSyntaxError as exc:  # a bad identifier or string escape
        bad = tokens[position[0]]
        scan.problem = (bad.start, bad.end, _syntax_message(exc.message or "invalid syntax"))
        return scan
    except ValueError:  # jinja reads a number literal with int(), which refuses more than 4,300 digits
        bad = tokens[position[0]]
        scan.problem = (bad.start, bad.end, f"a number of {len(bad.text):,} digits: a number in a template has "
                                            f"at most {sys.get_int_max_str_digits():,}")
        return scan
    parser = Parser(env, "", name)
    parser.stream = TokenStream(iter(parsed), name, None)
    try:
        scan.ast = parser.parse()
    except exceptions.TemplateSyntaxError as exc:
        current = parser.stream.current
        start, end = _parse_error_place(scan, exc, current, owner.get(id(current)))
        scan.problem = (start, end, _syntax_message(exc.message or "invalid syntax"))
    return scan


def _attach_values(env: SandboxedEnvironment, tokens: list[_Token]) -> None:
    """Give each raw token the value the parser sees (for a template known to parse)."""
    for _ in _wrapped(env, tokens, [0]):
        pass


def _wrapped(env: SandboxedEnvironment, tokens: list[_Token], position: list[int]) -> Iterator[tuple[int, Any]]:
    """Jinja's parser tokens made from the raw ones, each with the index of its raw token, which
    gets the token's value; ``position[0]`` is the raw token being read (for error places)."""

    def feed() -> Iterator[tuple[int, str, str]]:
        for index, token in enumerate(tokens):
            position[0] = index
            yield token.line, token.kind, token.text

    for token in env.lexer.wrap(feed()):
        tokens[position[0]] = _with_value(tokens[position[0]], token.value)
        yield position[0], token


def _with_value(token: _Token, value: Any) -> _Token:
    return _Token(token.start, token.end, token.line, token.kind, token.text, value)


def _lex(
    env: SandboxedEnvironment, source: str
) -> tuple[list[_Token], int, exceptions.TemplateSyntaxError | None]:
    """Jinja's raw tokens, each found in the text after the previous one."""
    tokens: list[_Token] = []
    cursor = 0
    try:
        for line, kind, text in env.lexer.tokeniter(source, None):
            at = source.find(text, cursor)
            if at < 0:
                at = cursor
            else:
                cursor = at + len(text)
            tokens.append(_Token(at, at + len(text), line, kind, text))
    except exceptions.TemplateSyntaxError as exc:
        return tokens, cursor, exc
    return tokens, cursor, None


def _lexer_problem(scan: _Scan, cursor: int, exc: exceptions.TemplateSyntaxError) -> tuple[int, int, str]:
    source = scan.source
    message = exc.message or "invalid syntax"
    match = re.fullmatch(r"unexpected char (.+) at (\d+)", message)
    if match:
        at = int(match.group(2))
        return at, at + 1, _syntax_message(f"unexpected character {match.group(1)}")
    if message.startswith("Missing end of") and scan.tokens:
        last = scan.tokens[-1]
        return last.start, last.end, _syntax_message(message)
    at = cursor
    while at < len(source) and source[at].isspace():
        at += 1
    if at < len(source):
        return at, at + 1, _syntax_message(message)
    start, end = _unclosed_tag(scan) or _line_start(source, exc.lineno)
    return start, end, _syntax_message(message)


def _parse_error_place(
    scan: _Scan, exc: exceptions.TemplateSyntaxError, current: Any, index: int | None
) -> tuple[int, int]:
    """The offending token, or for an unexpected end, the tag left open."""
    message = exc.message or ""
    if index is None or current.type == "eof" or "nexpected end of template" in message:
        open_block = re.search(r"block that needs to be closed is '(\w+)'", message)
        place = _unclosed_tag(scan, open_block.group(1) if open_block else None)
        if place is not None:
            return place
        if index is None:
            return _line_start(scan.source, exc.lineno)
    token = scan.tokens[index]
    if token.line != exc.lineno:
        return _line_start(scan.source, exc.lineno, scan.tokens)
    return token.start, token.end


def _unclosed_tag(scan: _Scan, block: str | None = None) -> tuple[int, int] | None:
    """A ``{{`` or ``{%`` never closed, else the innermost open ``{% block %}`` (of that name)."""
    tokens = scan.tokens
    opened = None
    for token in tokens:
        if token.kind in ("variable_begin", "block_begin", "comment_begin"):
            opened = token
        elif token.kind in ("variable_end", "block_end", "comment_end"):
            opened = None
    if opened is not None:
        return opened.start, opened.end
    stack: list[tuple[str, int, int]] = []
    code = [t for t in tokens if t.kind not in ("whitespace", "comment")]
    for i, token in enumerate(code[:-1]):
        if token.kind != "block_begin" or code[i + 1].kind != "name":
            continue
        tag = code[i + 1].text
        if tag in _BLOCK_TAGS and not (tag == "set" and _is_assignment(code, i + 2)):
            stack.append((tag, token.start, code[i + 1].end))
        elif tag.startswith("end") and any(t == tag[3:] for t, _, _ in stack):
            while stack and stack.pop()[0] != tag[3:]:
                pass
    for tag, start, end in reversed(stack):
        if block is None or tag == block:
            return start, end
    return None


def _is_assignment(code: list[_Token], i: int) -> bool:
    """``{% set x = 1 %}`` is complete; ``{% set x %}...{% endset %}`` is a block."""
    while i < len(code) and code[i].kind != "block_end":
        if code[i].kind == "operator" and code[i].text == "=":
            return True
        i += 1
    return False


def _line_start(source: str, line: int | None, tokens: list[_Token] | None = None) -> tuple[int, int]:
    """The first tag on a line, else its first non-blank character."""
    line = max(1, line or 1)
    for token in tokens or ():
        if token.line == line and token.kind in ("variable_begin", "block_begin"):
            return token.start, token.end
    start = 0
    for _ in range(line - 1):
        newline = source.find("\n", start)
        if newline < 0:
            break
        start = newline + 1
    end = source.find("\n", start)
    end = len(source) if end < 0 else end
    at = start
    while at < end and source[at] in " \t":
        at += 1
    return (at, at + 1) if at < end else (start, start + 1)


def _syntax_message(message: str) -> str:
    """Jinja's message, shortened for the common block mistakes and lower-cased like ours."""
    message = " ".join(message.split()).rstrip(".")
    unknown = re.match(r"Encountered unknown tag '(\w+)'", message)
    looking = re.search(
        r"looking for (?:the following tags: )?(.*?)\. The innermost block that needs to be closed is '(\w+)'", message
    )
    expected, block = (looking.group(1), looking.group(2)) if looking else ("", "")
    if unknown and unknown.group(1) in _KNOWN_TAGS:  # a real tag in the wrong place
        tag = unknown.group(1)
        if looking:
            message = f"'{tag}' does not belong here: the innermost open block is '{block}' (expected {expected})"
        else:
            message = f"'{tag}' does not belong here: no block is open"
    elif unknown:
        tag = unknown.group(1)
        candidates = list(dict.fromkeys([*re.findall(r"'(\w+)'", expected), *_KNOWN_TAGS]))
        message = f"unknown tag '{tag}'{did_you_mean(tag, candidates)}"
        if looking:
            message += f" (the open '{block}' block expects {expected})"
    elif message.startswith("Unexpected end of template") and looking:
        message = f"'{block}' block is not closed (expected {expected} before the end of the template)"
    if message[:1].isupper() and not message[1:2].isupper():
        message = message[0].lower() + message[1:]
    return f"template syntax error: {message}"


# --- Checks on the tree ------------------------------------------------------------------------


def _previous(code: list[_Token], i: int, back: int = 1) -> _Token | None:
    return code[i - back] if i - back >= 0 else None


def _is(token: _Token | None, kind: str, text: str | None = None) -> bool:
    return token is not None and token.kind == kind and (text is None or token.text == text)


def _place(
    scan: _Scan, line: int, matches: Callable[[list[_Token], int], bool], nth: int = 0
) -> tuple[int, int]:
    """The ``nth`` token on ``line`` that ``matches``, else any that matches, else the line."""
    code = scan.code
    on_line = [code[i] for i in scan.lines.get(line, ()) if matches(code, i)]
    if on_line:
        token = on_line[min(nth, len(on_line) - 1)]
        return token.start, token.end
    anywhere = [t for i, t in enumerate(code) if matches(code, i)]
    if anywhere:
        return anywhere[0].start, anywhere[0].end
    return _line_start(scan.source, line, scan.tokens)


def _nth(counts: dict[Any, int], key: Any) -> int:
    """How many times ``key`` was seen before (the n-th same token on a line)."""
    n = counts.get(key, 0)
    counts[key] = n + 1
    return n


def _unknown_filters(env: SandboxedEnvironment, scan: _Scan) -> list[tuple[int, int, str]]:
    problems = []
    counts: dict[Any, int] = {}
    for node in scan.ast.find_all((nodes.Filter, nodes.Test)):
        is_filter = isinstance(node, nodes.Filter)
        known = env.filters if is_filter else env.tests
        if node.name in known:
            continue

        def matches(code: list[_Token], i: int, name: str = node.name, is_filter: bool = is_filter) -> bool:
            if not _is(code[i], "name", name):
                return False
            before = _previous(code, i)
            earlier = _previous(code, i, 2)
            if is_filter:  # `x | name` or `{% filter name %}`
                return _is(before, "operator", "|") or (_is(before, "name", "filter") and _is(earlier, "block_begin"))
            return _is(before, "name", "is") or (_is(before, "name", "not") and _is(earlier, "name", "is"))

        start, end = _place(scan, node.lineno, matches, _nth(counts, (node.lineno, is_filter, node.name)))
        kind = "filter" if is_filter else "test"
        problems.append((start, end, f"unknown {kind} '{node.name}'{did_you_mean(node.name, sorted(known))}"))
    return problems


def _partner_shadowed(ast: nodes.Template) -> bool:
    """``{% for partner in ... %}`` and the like: ``partner`` is no longer the record."""
    return any(n.name == "partner" and n.ctx in ("store", "param") for n in ast.find_all(nodes.Name))


def _unknown_fields(scan: _Scan, partner: Type) -> list[tuple[int, int, str]]:
    fields = partner.field_map
    if partner.kind != "record" or not fields or _partner_shadowed(scan.ast):
        return []
    problems = []
    counts: dict[Any, int] = {}
    for node in scan.ast.find_all((nodes.Getattr, nodes.Getitem)):
        if not (isinstance(node.node, nodes.Name) and node.node.name == "partner"):
            continue
        if isinstance(node, nodes.Getattr):
            field, opener, kind = node.attr, ".", "name"
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            field, opener, kind = node.arg.value, "[", "string"
        else:
            continue
        if field in fields:
            continue

        def matches(code: list[_Token], i: int, field: str = field, opener: str = opener, kind: str = kind) -> bool:
            """`partner . field` or `partner [ "field" ]`."""
            return (
                code[i].kind == kind
                and code[i].value == field
                and _is(_previous(code, i), "operator", opener)
                and _is(_previous(code, i, 2), "name", "partner")
            )

        start, end = _place(scan, node.lineno, matches, _nth(counts, (node.lineno, opener, field)))
        problems.append((start, end, f"unknown field '{field}' of partner{did_you_mean(field, sorted(fields))}"))
    return problems


def _undefined_variables(env: SandboxedEnvironment, scan: _Scan, strict: bool) -> list[tuple[int, int, str]]:
    """Names neither given to templates nor defined in the template, each reported once, where
    first used; also what jinja's compiler refuses (a block defined twice...)."""
    ast = scan.ast
    if _only_given_names(ast):
        return []
    try:
        undeclared = meta.find_undeclared_variables(_with_all_filters(env, ast))
    except exceptions.TemplateSyntaxError as exc:  # TemplateAssertionError from the compiler
        return [(*_compiler_error_place(scan, exc), _syntax_message(exc.message or "invalid template"))]
    if not strict:
        return []
    problems = []
    loads = [n for n in ast.find_all(nodes.Name) if n.ctx == "load"]
    for name in sorted(set(undeclared) - set(TEMPLATE_NAMES)):
        line = min((n.lineno for n in loads if n.name == name), default=1)

        def matches(code: list[_Token], i: int, name: str = name) -> bool:
            before = _previous(code, i)
            return (
                _is(code[i], "name", name)
                and not _is(before, "operator", ".")
                and not _is(before, "operator", "|")
                and not _is(before, "name", "is")
                and not _is(before, "block_begin")
            )

        start, end = _place(scan, line, matches)
        problems.append((start, end, f"undefined template variable '{name}'{did_you_mean(name, TEMPLATE_NAMES)}"))
    return problems


def _compiler_error_place(scan: _Scan, exc: exceptions.TemplateSyntaxError) -> tuple[int, int]:
    """The compiler gives a line only: find the tag it means (the second of a twice-defined block)."""
    line = exc.lineno or 1
    twice = re.match(r"block '(\w+)' defined twice", exc.message or "")
    if twice:
        def second_block(code: list[_Token], i: int) -> bool:
            return _is(code[i], "name", twice.group(1)) and _is(_previous(code, i), "name", "block")

        return _place(scan, line, second_block, nth=len(scan.code))
    if "extend" in (exc.message or ""):
        def extends(code: list[_Token], i: int) -> bool:
            return _is(code[i], "name", "extends") and _is(_previous(code, i), "block_begin")

        return _place(scan, line, extends)
    return _line_start(scan.source, line, scan.tokens)


_DEFINING = (nodes.Assign, nodes.AssignBlock, nodes.For, nodes.Macro, nodes.CallBlock, nodes.Block,
             nodes.Extends, nodes.FromImport, nodes.Import, nodes.With, nodes.Scope, nodes.OverlayScope)


def _only_given_names(ast: nodes.Template) -> bool:
    """A template that defines nothing and reads only the given variables needs no analysis
    by jinja's compiler (the expensive part of checking): the common case, made cheap."""
    if any(True for _ in ast.find_all(_DEFINING)):
        return False
    return all(n.name in TEMPLATE_NAMES for n in ast.find_all(nodes.Name))


def _with_all_filters(env: SandboxedEnvironment, ast: nodes.Template) -> nodes.Template:
    """Unknown filters are reported on their own; the compiler must not stop at them."""
    filters = {n.name for n in ast.find_all(nodes.Filter)} - set(env.filters)
    tests = {n.name for n in ast.find_all(nodes.Test)} - set(env.tests)
    if filters or tests:
        lenient = env.overlay()
        lenient.filters = {**env.filters, **{name: _no_op for name in filters}}
        lenient.tests = {**env.tests, **{name: _no_op for name in tests}}
        ast.set_environment(lenient)
    return ast


def _no_op(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def _template_path(templates_dir: str | Path | None, name: str) -> Path | None:
    """Where the loader would find ``name``, if it exists (the same rules as FileSystemLoader)."""
    if templates_dir is None:
        return None
    try:
        path = Path(templates_dir).joinpath(*split_template_path(name))
    except exceptions.TemplateNotFound:
        return None
    return path if path.is_file() else None


def _available(templates_dir: str | Path | None) -> list[str]:
    root = Path(templates_dir) if templates_dir is not None else None
    if root is None or not root.is_dir():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _referenced_templates(
    env: SandboxedEnvironment, scan: _Scan, templates_dir: str | Path | None
) -> tuple[list[tuple[int, int, str]], list[tuple[str, Path]]]:
    """``include``, ``extends`` and ``import`` of names that do not exist; and those that do."""
    missing: list[tuple[int, int, str]] = []
    present: list[tuple[str, Path]] = []
    counts: dict[Any, int] = {}
    kinds = (nodes.Include, nodes.Extends, nodes.Import, nodes.FromImport)
    for node in scan.ast.find_all(kinds):
        target = node.template
        if isinstance(target, nodes.Const):
            names = [target.value]
        elif isinstance(target, (nodes.List, nodes.Tuple)):
            names = [item.value for item in target.items if isinstance(item, nodes.Const)]
        else:
            continue  # a name computed at run time
        names = [n for n in names if isinstance(n, str)]
        paths = [(n, _template_path(templates_dir, n)) for n in names]
        found = [(n, p) for n, p in paths if p is not None and inside(p, templates_dir)]
        present += found
        outside = [n for n, p in paths if p is not None and (n, p) not in found]
        for name in outside:
            start, end = _place(scan, node.lineno, _string_at(name, node.lineno), _nth(counts, (node.lineno, name)))
            missing.append((start, end, _outside_message(name)))
        if found or outside or not names or getattr(node, "ignore_missing", False):
            continue
        name = names[0]
        start, end = _place(scan, node.lineno, _string_at(name, node.lineno), _nth(counts, (node.lineno, name)))
        if templates_dir is None:
            message = f"unknown template '{name}' (no templates directory)"
        else:
            suggestion = did_you_mean(name, _available(templates_dir))
            message = f"unknown template '{name}' (no templates/{name}){suggestion}"
        missing.append((start, end, message))
    return missing, present


def _string_at(name: str, line: int) -> Callable[[list[_Token], int], bool]:
    """The string token naming a template, on the tag's line or after it."""

    def matches(code: list[_Token], i: int) -> bool:
        return code[i].kind == "string" and code[i].value == name and code[i].line >= line

    return matches


def _outside_message(name: str) -> str:
    return f"template '{name}' resolves outside templates/ (a link?): it would not be read; put the file itself in templates/"


# --- What only the sandbox refuses -------------------------------------------------------------


def _sandbox_refusals(scan: _Scan) -> list[tuple[int, int, str]]:
    """``{{ ''.__class__ }}``, ``{{ x.__globals__ }}``, ``{{ ().__class__.__mro__ }}``: an
    attribute starting with ``_`` is refused by the sandbox at every render, so the template
    could only ever fail. ``partner.x`` is left to the check of partner fields (a field may
    start with ``_``); a subscript ``x["_y"]`` reads a key first, so only ``x["__y"]`` is
    reported."""
    problems = []
    counts: dict[Any, int] = {}
    shadowed = _partner_shadowed(scan.ast)
    for node in scan.ast.find_all((nodes.Getattr, nodes.Getitem)):
        if isinstance(node.node, nodes.Name) and node.node.name == "partner" and not shadowed:
            continue
        if isinstance(node, nodes.Getattr):
            attribute, opener, kind = node.attr, ".", "name"
            if not attribute.startswith("_"):
                continue
        elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) and node.arg.value.startswith("__"):
            attribute, opener, kind = node.arg.value, "[", "string"
        else:
            continue

        def matches(code: list[_Token], i: int, attribute: str = attribute, opener: str = opener, kind: str = kind) -> bool:
            return code[i].kind == kind and code[i].value == attribute and _is(_previous(code, i), "operator", opener)

        start, end = _place(scan, node.lineno, matches, _nth(counts, (node.lineno, opener, attribute)))
        problems.append((start, end, f"'{attribute}' is refused in templates: the sandbox allows no attribute starting with '_'"))
    return problems
