"""Text → AST for the expression language, with Lark's LALR parser (built once, cached).

:func:`parse` raises :class:`~dsl.diagnostics.SourceError` located in the file the expression
came from: pass the expression's :class:`~dsl.source.ScalarText` as ``where``.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from .diagnostics import SourceError, error
from .ids import describe, first_surrogate
from .nodes import MAX_DEPTH, Attribute, Binary, Call, Index, ListExpr, Literal, Name, Node, Unary, too_deep
from .source import ScalarText, SourceText
from .types import duration_of, parse_duration  # noqa: F401 - parse_duration: the language's, kept here too

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "b": "\b", "f": "\f", "/": "/", "\\": "\\", "'": "'", '"': '"'}
# A surrogate pair written as two escapes (as JSON does) is one character; a lone one is refused.
_ESCAPE = re.compile(r"\\(u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|.)")

MAX_NUMBER_DIGITS = 30
"""Digits a number in an expression may have before its decimal point: more than any quantity
needs, and far from where floats turn into infinity or Python refuses to convert an int."""

# How the parser names what it expected, in error messages.
_TOKEN_NAMES = {
    "NAME": "a name", "NUMBER": "a number", "STRING": "a string", "DATE": "a date",
    "DATETIME": "a datetime", "DURATION": "a duration", "LPAR": "'('", "RPAR": "')'",
    "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "DOT": "'.'", "COMPARE": "a comparison",
    "OR": "'or'", "AND": "'and'", "NOT": "'not'", "IN": "'in'", "NOT_IN": "'not in'",
    "PLUS": "'+'", "MINUS": "'-'", "MUL": "'*'", "TRUE": "'true'", "FALSE": "'false'",
    "NULL": "'null'", "$END": "the end of the expression",
}


class _Problem(Exception):
    def __init__(self, message: str, start: int, end: int):
        super().__init__(message)
        self.message, self.start, self.end = message, start, end


def _literal_value(token: Token) -> tuple[str, object]:
    kind, text = token.type, str(token)
    if kind == "NUMBER":
        if len(text.split(".", 1)[0].lstrip("0")) > MAX_NUMBER_DIGITS:
            message = f"number too large: at most {MAX_NUMBER_DIGITS} digits before the decimal point"
            raise _Problem(message, token.start_pos, token.end_pos)
        return "number", float(text) if "." in text else int(text)
    if kind == "STRING":
        return "string", _unescape(text[1:-1], token.start_pos + 1)
    if kind in ("TRUE", "FALSE"):
        return "bool", kind == "TRUE"
    if kind == "NULL":
        return "null", None
    if kind == "DURATION":
        try:
            return "duration", duration_of(text[:-1], text[-1])
        except ValueError as exc:
            raise _Problem(str(exc), token.start_pos, token.end_pos) from None
    try:
        if kind == "DATE":
            value: date = date.fromisoformat(text)
        else:
            value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Problem(f"invalid {kind.lower()} '{text}'", token.start_pos, token.end_pos) from None
    return kind.lower(), value  # its range is the checker's (dsl.types.check_date)


def _unescape(body: str, offset: int) -> str:
    def replace(match: re.Match) -> str:
        code = match.group(1)
        if code[0] == "u" and len(code) == 11:  # a surrogate pair
            high, low = int(code[1:5], 16), int(code[7:], 16)
            return chr(0x10000 + (high - 0xD800) * 0x400 + (low - 0xDC00))
        if code[0] == "u" and len(code) == 5:
            char = chr(int(code[1:], 16))
            if first_surrogate(char) is not None:
                start = offset + match.start()
                raise _Problem(f"'\\{code}' is {describe(char)}: write the character itself", start, start + 6)
            return char
        if code in _ESCAPES:
            return _ESCAPES[code]
        start = offset + match.start()
        raise _Problem(f"unknown escape '\\{code}' in string", start, start + 2)

    return _ESCAPE.sub(replace, body) if "\\" in body else body


@v_args(inline=True)
class _ToNodes(Transformer):
    """Builds :mod:`dsl.nodes` objects as the LALR parser reduces (no parse tree in between)."""

    def literal(self, token):
        kind, value = _literal_value(token)
        return Literal(kind, value, str(token), start=token.start_pos, end=token.end_pos)

    def name(self, token):
        return Name(str(token), start=token.start_pos, end=token.end_pos)

    def attribute(self, value, token):
        return Attribute(value, str(token), start=value.start, end=token.end_pos, name_start=token.start_pos)

    def index(self, value, _open, index, close):
        return Index(value, index, start=value.start, end=close.end_pos)

    def call(self, token, _open, arguments, close):
        return Call(str(token), tuple(arguments or ()), start=token.start_pos, end=close.end_pos)

    def list(self, open_, arguments, close):
        return ListExpr(tuple(arguments or ()), start=open_.start_pos, end=close.end_pos)

    def group(self, _open, inner, _close):
        return inner

    @v_args(inline=False)
    def arguments(self, children):
        return children

    def unary(self, op, operand):
        return Unary(str(op), operand, start=op.start_pos, end=operand.end)

    def binary(self, left, op, right):
        name = "not in" if op.type == "NOT_IN" else str(op)
        return Binary(name, left, right, start=left.start, end=right.end, op_start=op.start_pos)


@lru_cache(maxsize=1)
def _parser() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(
        grammar,
        parser="lalr",
        lexer="contextual",
        maybe_placeholders=True,
        transformer=_ToNodes(),
        cache=True,
    )


@lru_cache(maxsize=8192)
def _parse_cached(text: str) -> Node | _Problem:
    surrogate = first_surrogate(text)
    if surrogate is not None:  # not from a file (read as UTF-8), but a command line can hold one
        return _Problem(f"the expression holds {describe(text[surrogate])}", surrogate, surrogate + 1)
    try:
        node = _parser().parse(text)
        if too_deep(node, MAX_DEPTH) is not None:
            return _Problem(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", 0, len(text))
        return node
    except _Problem as problem:
        return problem
    except UnexpectedInput as exc:
        return _describe(exc, text)
    except LarkError as exc:  # e.g. a transformer error wrapped by Lark
        inner = getattr(exc, "orig_exc", None)
        if isinstance(inner, _Problem):
            return inner
        return _Problem(f"syntax error: {exc}", 0, len(text))
    except RecursionError:
        return _Problem(f"expression is nested too deeply (more than {MAX_DEPTH} levels)", 0, len(text))


def _describe(exc: UnexpectedInput, text: str) -> _Problem:
    if isinstance(exc, UnexpectedToken) and exc.token.type == "$END" or isinstance(exc, UnexpectedEOF):
        expected = _expected(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or ())
        pos = len(text.rstrip())
        return _Problem(f"syntax error: unexpected end of expression{expected}", pos, pos + 1)
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = _expected(exc.accepts or exc.expected)
        return _Problem(f"syntax error: unexpected '{token}'{expected}", token.start_pos, token.end_pos)
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos] if pos < len(text) else ""
        if char in "\"'":
            return _Problem("syntax error: unterminated string", pos, len(text))
        return _Problem(f"syntax error: unexpected character '{char}'", pos, pos + 1)
    return _Problem("syntax error", 0, len(text))


def _expected(names) -> str:
    described = sorted({_TOKEN_NAMES.get(n, n) for n in names if not n.startswith("__")})
    if not described or len(described) > 6:
        return ""
    return "; expected " + (described[0] if len(described) == 1 else "one of " + ", ".join(described))


def inline(text: str, path: str = "<expression>") -> ScalarText:
    """A :class:`ScalarText` for an expression that does not come from a YAML file."""
    return ScalarText(SourceText(path, text), text, None, 0, len(text))


def parse(text: str, where: ScalarText | None = None) -> Node:
    """Parse one expression; raise :class:`SourceError` pointing into ``where``."""
    result = _parse_cached(text)
    if isinstance(result, _Problem):
        where = where or inline(text)
        raise SourceError(error(where.span(result.start, result.end), result.message))
    return result
