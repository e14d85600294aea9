"""The SQLite dialect of the SQL back end (:mod:`dsl.sql`)."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Callable

from . import runtime
from .sql_values import _E, _S, FALSE, INT64, TRUE, Condition, Unsupported, _check_text, _p, _q

if TYPE_CHECKING:
    from .sql import _Compiler
    from .sql_patterns import SimplePattern

_ISO_TO_US = ("(CAST(strftime('%s', substr({}, 1, 19)) AS INTEGER) * 1000000"
              " + CASE WHEN substr({}, 20, 1) = '.' THEN CAST(substr({}, 21, 6) AS INTEGER) ELSE 0 END)")



_TOO_BIG = ("parser stack overflow", "expression tree is too large", "too many sql variables",
            "too many terms",
            "too big", "too many columns")


def _check_sqlite_accepts(sql: _S, columns: tuple[str, ...]) -> None:
    """Prepare the condition once on an empty table of those columns: SQLite's parser has a
    fixed stack and limits on expression depth and parameters, so a very deep expression can
    give SQL that it refuses. That is refused here (Unsupported); any other error would be a
    bug, and raises."""
    table = columns[0].rpartition(".")[0]
    names = tuple(column.rpartition(".")[2] for column in columns)
    scratch = _SCRATCH.__dict__.setdefault("tables", {})
    if names not in scratch:
        if len(scratch) > 64:
            scratch.clear()
        db = sqlite3.connect(":memory:")
        register_functions(db)
        db.execute(f"CREATE TABLE t ({', '.join(names)})")
        scratch[names] = db
    register_patterns(scratch[names], sql.text)
    try:
        alias = f"AS {table}" if table else ""
        scratch[names].execute(f"SELECT 1 FROM t {alias} WHERE {sql.text}", sql.params)
    except sqlite3.Error as exc:
        if any(reason in str(exc).lower() for reason in _TOO_BIG):
            raise Unsupported(f"SQLite refuses a condition this large ({exc})") from None
        raise


_SCRATCH = threading.local()  # one empty in-memory database per thread and column name


# --- Dialects -------------------------------------------------------------------------------
# One compiler, two dialects: the compiler decides *what* to compute (the language's semantics,
# which is the same everywhere); a dialect says how its SQL spells each piece. SQLite reads the
# record with json_extract() and has 1/0 for booleans; PostgreSQL reads jsonb with -> and ->>,
# has real booleans, orders text by the collation (so every ordering of text says COLLATE "C"),
# and keeps jsonb numbers as exact ``numeric`` (so Python's int/float arithmetic is rebuilt on
# top of it: _PostgreSQL.numbers()).

class _SQLite:
    """SQLite 3.35+ with JSON and math functions; ``?`` placeholders."""

    name = "sqlite"
    true, false = TRUE, FALSE
    int_limit = INT64  # beyond, SQLite's integers become floats
    fence = ""  # appended to a let() subquery

    def finish(self, sql: _S, columns: tuple[str, ...], compiler: _Compiler | None) -> Condition:
        _check_sqlite_accepts(sql, columns)
        return Condition(sql.text, sql.params)

    def column_type(self, kind: str) -> str:
        """None: a column keeps each value as the record's JSON gave it (int or float, 1/0)."""
        return ""

    def list_record(self, column: str, name: str, path: str) -> _S:
        """A record of one list field alone (JSON text ``{"tags": [...]}``), which the list
        functions read with the field's own path."""
        return _S(f"json_object(?, json(json_extract({column}, ?)))", (name, path), simple=True)

    def check_name(self, name: str) -> None:
        _check_text(name, "a field name")
        if any(c in name for c in '"\\') or any(ord(c) < 0x20 for c in name):
            raise Unsupported("a field name with quotes, backslashes or control characters")

    def check_string(self, value: str) -> None:
        _check_text(value, "a string")

    def string_constant(self, value: str) -> _S:
        if "\0" in value:  # U+0000 as the byte 0xFF (never in UTF-8), as the SQL spells it
            return _S("CAST(? AS TEXT)", (value.encode("utf-8").replace(b"\0", b"\xff"),), simple=True)
        return _p(value)

    def path(self, name: str) -> str:
        return f'$."{name}"'

    def field(self, column: str, path: str, kind: str) -> _S:
        if kind in ("string", "enum"):
            return self.text(column, path)
        return _S(f"json_extract({column}, ?)", (path,), simple=True)

    def list_item(self, column: str, path: str, position: int, kind: str) -> _S:
        if kind == "string":
            return self.text(column, f"{path}[{position}]")
        return _S(f"json_extract({column}, ?)", (f"{path}[{position}]",), simple=True)

    def text(self, column: str, path: str) -> _S:
        """A string of the record, U+0000 as 0xFF: json_extract() as it is when the record
        holds no escaped U+0000, else json_extract() of the record with the JSON escape of
        U+0000 made the byte 0xFF (and each escaped backslash the byte 0xFE first, so that
        ``\\u0000``, a backslash and ``u0000``, stays what it is), then 0xFE a backslash."""
        return _S(f"(CASE WHEN instr({column}, {_JSON_NUL}) > 0 THEN replace(json_extract({_nul_free(column)}, ?),"
                  f" {_FE}, '\\') ELSE json_extract({column}, ?) END)", (path, path), simple=True)

    def number_constant(self, value: Any) -> _S:
        return _p(value if type(value) in (int, float) else float(value))

    def change_case(self, name: str, text: _S) -> _S:
        """``lower``/``upper`` by Python's own Unicode mapping: SQLite's maps ASCII only."""
        return _q(f"CAST(engine_{name}(CAST({{}} AS BLOB)) AS TEXT)", text)

    def simple_search(self, pattern: "SimplePattern", text: _S) -> _S:
        """``re.search`` of a pattern GLOB can say (:class:`~dsl.sql_patterns.SimplePattern`)."""
        return _q("({} GLOB {})", text, _p(pattern.glob()))

    def regex_search(self, pattern: str, text: _S, prefix: "SimplePattern | None" = None) -> _S:
        """``re.search`` itself, SQLite having no regular expressions of its own: a function of
        the pattern's own (:func:`register_patterns`), given the text (as its bytes when it
        holds U+0000, spelled 0xFF, which is not UTF-8). With the ``prefix`` every match starts
        with (:func:`~dsl.sql_patterns.anchored_prefix`), its GLOB first: Python is called only on the
        rows it lets through."""
        name = pattern_function(pattern)
        search = _q(f"(CASE WHEN instr({{}}, {_FF}) > 0 THEN {name}_bytes(CAST({{}} AS BLOB)) ELSE {name}({{}}) END)",
                    text, text, text)
        return search if prefix is None else _q("({} AND {})", self.simple_search(prefix, text), search)

    def plain_in(self, constant: _E) -> bool:
        """Whether ``x IN (..., constant)`` compares x with it as the language does."""
        return True

    def relation(self, c: _Compiler, op: str, x: _S, y: _S, domain: str, a: _E, b: _E) -> _S:
        """``op`` is ``==`` (null-safe), ``!=`` (null-safe), ``=`` (null is not equal) or an order.
        Text orders as its bytes (UTF-8: code point order), U+0000 first: so a string that may
        hold one is ordered with 0xFF made U+0000 again (replace() can search for 0xFF, never
        for U+0000, and the comparison reads all the bytes)."""
        if domain == "text" and op in ("<", "<=", ">", ">="):
            x, y = (_q(f"replace({{}}, {_FF}, char(0))", v) if e.nul else v for v, e in ((x, a), (y, b)))
        return _q(f"({{}} {_SQLITE_OPS.get(op, op)} {{}})", x, y)

    def order(self, op: str, x: _S, y: Any, textual: bool) -> _S:
        return _q(f"{{}} {op} {{}}", x, y)

    def substring(self, container: _S, part: _S, found: bool) -> _S:
        return _q(f"(instr({{}}, {{}}) {'> 0' if found else '= 0'})", container, part)

    def list_contains(self, c: _Compiler, column: str, path: str, item: _S, x: _E, kind: str) -> _S:
        plain = _q(f"EXISTS (SELECT 1 FROM json_each({column}, {{}}) AS _j WHERE _j.value = {{}})", path, item)
        if kind != "string":
            return plain
        nul = _q(f"EXISTS (SELECT 1 FROM json_each({_nul_free(column)}, {{}}) AS _j"
                 f" WHERE replace(_j.value, {_FE}, '\\') = {{}})", path, item)
        return _q(f"(CASE WHEN instr({column}, {_JSON_NUL}) > 0 THEN {{}} ELSE {{}} END)", nul, plain)

    def is_array(self, column: str, path: str) -> _S:
        return _q(f"json_type({column}, {{}}) = 'array'", path)

    def list_length(self, column: str, path: str) -> _S:
        return _q(f"(CASE WHEN json_type({column}, {{}}) = 'array'"
                  f" THEN json_array_length({column}, {{}}) END)", path, path)

    def length(self, text: _S) -> _S:
        return _q("length({})", text)

    def char_at(self, text: _S, position: int) -> _S:
        return _q("CASE WHEN length({}) > {} THEN substr({}, {}, 1) END", text, position, text, position + 1)

    def affix(self, name: str, text: _S, affix: _S) -> _S:
        if name == "starts_with":
            return _q("(substr({}, 1, length({})) = {})", text, affix, affix)
        return _q("(CASE WHEN length({}) = 0 THEN {} IS NOT NULL ELSE substr({}, - length({})) = {} END)",
                  affix, text, text, affix, affix)

    def numbers(self, c: _Compiler, op: str, a: _E, b: _E) -> _E:
        if op == "/":
            return _E("number", _q("(CAST({} AS REAL) / {})", a.sql, b.sql))
        if op == "%":
            return _E("number", c.let([a.sql, b.sql], self.remainder(c)))
        return _E("number", _q(f"({{}} {op} {{}})", a.sql, b.sql))

    def remainder(self, c: _Compiler) -> Callable[[list[_S]], _S]:
        """Python's ``%``: the sign of the divisor; of two integers exactly, else like
        ``math.fmod`` then corrected, as CPython does; null for a zero divisor."""

        def build(parts: list[_S]) -> _S:
            a, b = parts
            r = _q("CASE WHEN typeof({}) = 'integer' AND typeof({}) = 'integer' THEN {} % {}"
                   " ELSE mod({}, {}) END", a, b, a, b, a, b)
            return c.let([r], lambda p: _q(
                "(CASE WHEN {} = 0 THEN NULL WHEN {} <> 0 AND (({} < 0) <> ({} < 0)) THEN {} + {}"
                " ELSE {} END)", b, p[0], p[0], b, p[0], b, p[0]))

        return build

    def negate(self, c: _Compiler, e: _E) -> _E:
        return _E(e.kind, _q("(- {})", e.sql))

    def durations(self, c: _Compiler, sql: _S) -> _S:
        return sql

    def days_between(self, later: Any, earlier: Any) -> _S:
        return _q("CAST(julianday({}) - julianday({}) AS INTEGER)", later, earlier)

    def add_days(self, c: _Compiler, day: _S, days: int) -> _S:
        shifted = _q("date({}, {})", day, f"{days:+d} days")
        if days >= 0:
            return shifted  # SQLite gives NULL after 9999-12-31, like Python
        return c.let([shifted], lambda p: _q("CASE WHEN {} >= '0001-01-01' THEN {} END", p[0], p[0]))

    def date_micros(self, day: _S, offset: int) -> _S:
        return _q("(CAST(julianday({}) - 2440587.5 AS INTEGER) * 86400000000 - {})", day, offset)

    def iso_micros(self, c: _Compiler, text: _S) -> _S:
        return c.let([text], lambda p: _q(_ISO_TO_US, p[0], p[0], p[0]))


_SQLITE_OPS = {"==": "IS", "!=": "IS NOT"}
# U+0000 in SQLite (3.40): its JSON functions end a string at an escaped U+0000, length() stops
# at one, substr() miscounts after one, replace() cannot search for one; its comparisons, instr()
# and || read every byte. So a string that may hold U+0000 is spelled there with the byte 0xFF
# instead, which UTF-8 never uses: length(), substr() and instr() count it as one character,
# = and IN compare it exactly, and only an order compares with U+0000 put back.
_FE, _FF = "CAST(X'FE' AS TEXT)", "CAST(X'FF' AS TEXT)"
_JSON_NUL = "'\\u0000'"  # the six characters of U+0000 escaped in JSON text


def _nul_free(column: str) -> str:
    """The record's JSON text with each escaped backslash as the byte 0xFE and then each
    escaped U+0000 as the byte 0xFF (valid JSON still, as SQLite reads it: raw bytes in strings)."""
    return f"replace(replace({column}, '\\\\', {_FE}), {_JSON_NUL}, {_FF})"


# --- Python's functions, called by SQLite ---------------------------------------------------
# What no SQLite function does as Python does: case mapping of all of Unicode and Python's
# regular expressions. The store registers them on its connections (register_functions), the
# scratch databases above too. Text goes in as its bytes, where U+0000 is the byte 0xFF (see
# below), and comes back the same way.


def _text(value: bytes) -> str:
    return value.replace(b"\xff", b"\0").decode("utf-8")


def _case(method: Callable[[str], str]) -> Callable[[bytes | None], bytes | None]:
    def change(value: bytes | None) -> bytes | None:
        if value is None:
            return None
        return method(_text(value)).encode("utf-8").replace(b"\0", b"\xff")

    return change


_PATTERNS: dict[str, str] = {}  # function name → the regular expression it searches for
_NAMED = re.compile(r"\bengine_re_[0-9a-f]{16}\b")


def pattern_function(pattern: str) -> str:
    """The name of the function that searches for ``pattern`` (valid: the compiler checked)."""
    name = "engine_re_" + hashlib.sha256(pattern.encode("utf-8")).hexdigest()[:16]
    _PATTERNS.setdefault(name, pattern)
    return name


def _search(pattern: str) -> tuple[Callable[[str | None], bool], Callable[[bytes | None], bool]]:
    """Two functions per pattern, compiled once, for a text (a call costs the search and little
    else) and for the bytes of one that holds U+0000 (0xFF there, which is not UTF-8)."""
    search = runtime.regex(pattern).search

    def found(value: str | None) -> bool:
        return value is not None and search(value) is not None

    def found_in_bytes(value: bytes | None) -> bool:
        return value is not None and search(_text(value)) is not None

    return found, found_in_bytes


def calls_python(sql: str) -> bool:
    """Whether a condition calls one of these: such parts are best evaluated last."""
    return "engine_" in sql


def register_functions(db: sqlite3.Connection) -> None:
    """Make the functions the SQLite dialect calls known to ``db`` (those of patterns: see
    :func:`register_patterns`)."""
    db.create_function("engine_lower", 1, _case(str.lower), deterministic=True)
    db.create_function("engine_upper", 1, _case(str.upper), deterministic=True)


def register_patterns(db: sqlite3.Connection, sql: str, known: set[str] | None = None) -> None:
    """Make the pattern functions that ``sql`` calls known to ``db`` (``known``: those it has,
    updated)."""
    for name in set(_NAMED.findall(sql)) - (known or set()):
        found, found_in_bytes = _search(_PATTERNS[name])
        db.create_function(name, 1, found, deterministic=True)
        db.create_function(f"{name}_bytes", 1, found_in_bytes, deterministic=True)
        if known is not None:
            known.add(name)
