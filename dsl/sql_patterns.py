"""Which regular expressions of ``matches()`` SQL can say without Python's ``re``, and how.

A plain text (``"@example.com"``, ``"^Oy"``) is a substring or prefix test. A
:class:`SimplePattern` (plain characters, escaped metacharacters, classes of ASCII letters and
digits) is a GLOB on SQLite and a ``~`` over code points on PostgreSQL, each true exactly where
``re.search`` finds something. Any other pattern calls ``re`` (SQLite's registered function),
first narrowed by the start every match has (:func:`anchored_prefix`) where there is one.
:mod:`dsl.sql` asks these; the dialects render them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


_REGEX_SPECIAL = frozenset(".^$*+?{}[]\\|()")


_PATTERN_CLASS = re.compile(r"\[(\^?)((?:[A-Za-z0-9]-[A-Za-z0-9]|[A-Za-z0-9])+)\]")


@dataclass(frozen=True)
class SimplePattern:
    """A pattern of plain characters, escaped metacharacters and classes of ASCII letters and
    digits (``^[a-m]``, ``@example\\.com``, ``[0-9][0-9]``), ``^`` first or not: one whose every
    piece means the same in Python's ``re``, SQLite's GLOB and PostgreSQL's ``~``. Each compares
    code points, ranges included (PostgreSQL's text as ``COLLATE "C"``); no piece takes a line
    feed where another would not (there is no ``.``, ``$`` or class escape), nor U+0000 (not in
    PostgreSQL's text; spelled 0xFF in SQLite's, read there as U+FFFD, which no literal may be)."""

    anchored: bool
    pieces: tuple[str, ...]  # a character, or a class such as "[^a-z0-9]"

    def glob(self) -> str:
        """SQLite's GLOB of it: true exactly where ``re.search`` finds something."""
        body = "".join(_GLOB_LITERAL.get(p, p) for p in self.pieces)
        return ("" if self.anchored else "*") + body + "*"

    def posix(self) -> str:
        """PostgreSQL's regular expression of it (``~``), every ASCII character but letters and
        digits escaped (in its advanced syntax, a backslash before one of those is that
        character; the metacharacters are all ASCII)."""
        body = "".join("\\" + p if len(p) == 1 and p.isascii() and not p.isalnum() else p for p in self.pieces)
        return ("^" if self.anchored else "") + body


_GLOB_LITERAL = {"*": "[*]", "?": "[?]"}  # (a "[" is never a piece: it begins a class)


def simple_pattern(pattern: str) -> SimplePattern | None:
    """The pattern's :class:`SimplePattern`, or None when it has anything else."""
    anchored = pattern.startswith("^")
    pieces, end = _simple_pieces(pattern, 1 if anchored else 0)
    return SimplePattern(anchored, tuple(pieces)) if end == len(pattern) else None


def anchored_prefix(pattern: str) -> SimplePattern | None:
    """What every text the pattern finds something in starts with, for a pattern that starts
    with ``^`` and has no ``|`` outside a group: its first pieces as far as they are those of a
    :class:`SimplePattern` (the last one left out when a ``*``, ``?`` or ``{`` may repeat it no
    times). None when there is no such start. Testing it first (a GLOB, which SQLite answers
    itself) spares ``re.search`` the rows it rules out."""
    if not pattern.startswith("^") or _alternates(pattern):
        return None
    pieces, end = _simple_pieces(pattern, 1)
    if end < len(pattern) and pattern[end] in "*?{" and pieces:
        pieces.pop()  # may occur no times
    return SimplePattern(True, tuple(pieces)) if pieces else None


def _simple_pieces(pattern: str, i: int) -> tuple[list[str], int]:
    """The pieces of a :class:`SimplePattern` from ``pattern[i]`` on, as far as there are such
    pieces, and where they stop."""
    pieces = []
    while i < len(pattern):
        c = pattern[i]
        if c == "[":
            found = _PATTERN_CLASS.match(pattern, i)
            if found is None or any(a > b for a, b in re.findall(r"(\w)-(\w)", found.group(2))):
                break
            pieces.append(found.group(0))
            i = found.end()
        elif c == "\\" and i + 1 < len(pattern) and pattern[i + 1] in ".^$*+?{}|()-\\/@#&~=!<>,;:'\"%":
            pieces.append(pattern[i + 1])
            i += 2
        elif c in _REGEX_SPECIAL or c in "\0\ufffd" or not c.isprintable():
            break
        else:
            pieces.append(c)
            i += 1
    return pieces, i


def _alternates(pattern: str) -> bool:
    """Whether the pattern has a ``|`` outside any group (escapes and classes read as
    ``re`` reads them; a class may begin with ``]``)."""
    depth, i = 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < len(pattern) and pattern[i] == "^":
                i += 1
            if i < len(pattern) and pattern[i] == "]":
                i += 1
            while i < len(pattern) and pattern[i] != "]":
                i += 2 if pattern[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            return True
        i += 1
    return False


def glob_pattern(pattern: str) -> str | None:
    """The SQLite GLOB of a :class:`SimplePattern`; None for any other pattern."""
    simple = simple_pattern(pattern)
    return simple.glob() if simple is not None else None


def plain_pattern(pattern: str) -> tuple[bool, str | None]:
    """(anchored at the start, the text) of a pattern that is a plain text, ``^`` first or
    not: ``re.search`` of it is a substring test (or a prefix test); (False, None) otherwise."""
    anchored = pattern.startswith("^")
    body = pattern[1:] if anchored else pattern
    if any(c in _REGEX_SPECIAL for c in body):
        return False, None
    return anchored, body
