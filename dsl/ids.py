"""The rules for ids, in one place: campaign ids, step ids and partner ids.

Ids travel further than any other text: into message ids (``campaign:partner:n:step:run``),
file names, e-mail headers (``Message-ID``), HTTP headers (``Idempotency-Key``), CSV control
files and terminal output. So they are checked where they enter (the campaign file, its file
name, the partner source), with a located error, and everything after can rely on them.

- Campaign and step ids are *slugs*: an ASCII letter or digit, then letters, digits, ``-``,
  ``_`` and ``.``, at most :data:`MAX_SLUG` characters. Never ``:``, so a message id splits
  unambiguously: the campaign is everything before the first ``:``; the run, step and
  enrollment number are the last three parts; the partner id is what is left in between (a
  partner id may contain ``:``).
- Partner ids come from a CRM and may be any text a person can read, but not empty, without
  surrounding whitespace, at most :data:`MAX_PARTNER_ID` characters, and without characters
  that break a line or a header: control characters (Unicode category Cc: CR, LF, NUL, TAB,
  DEL, the C1 controls), the line and paragraph separators U+2028 and U+2029, and lone
  surrogates (which are not characters at all and cannot be written as UTF-8).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Iterator

MAX_SLUG = 100
MAX_PARTNER_ID = 200

SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
"""Campaign and step ids; use ``SLUG.fullmatch`` (``re.match`` with ``$`` lets a trailing
newline through)."""

SLUG_RULE = "letters, digits, '-', '_' and '.', starting with a letter or a digit"

_BREAKING = frozenset("\u2028\u2029")


def is_slug(text: Any) -> bool:
    return isinstance(text, str) and len(text) <= MAX_SLUG and SLUG.fullmatch(text) is not None


def check_slug(text: Any, what: str) -> str | None:
    """Why ``text`` is not a valid ``what`` (``"step id"``, ``"campaign id"``), or None."""
    if is_slug(text):
        return None
    if not isinstance(text, str):
        return f"a {what} is text ({SLUG_RULE})"
    if len(text) > MAX_SLUG:
        return f"a {what} has at most {MAX_SLUG} characters, this one has {len(text)}"
    return f"{shown(text)} is not a {what} ({SLUG_RULE})"


def check_partner_id(text: str) -> str | None:
    """Why ``text`` cannot be a partner id, or None. Fast for the usual id (one C call)."""
    if not text:
        return "a partner id must not be empty"
    if text.isprintable() and len(text) <= MAX_PARTNER_ID and not text[0].isspace() and not text[-1].isspace():
        return None  # the common case; isprintable() is false for every character refused below
    bad = first_bad_character(text)
    if bad is not None:
        return f"partner id {shown(text)} contains {describe(bad[1])}"
    if text != text.strip():
        return f"partner id {shown(text)} begins or ends with whitespace"
    if len(text) > MAX_PARTNER_ID:
        return f"a partner id has at most {MAX_PARTNER_ID} characters, this one has {len(text)}"
    return None


def first_bad_character(text: str) -> tuple[int, str] | None:
    """The first character that breaks a line, a header or UTF-8: a control character, a line
    or paragraph separator, or a lone surrogate; with its index."""
    for index, char in enumerate(text):
        if char in _BREAKING or unicodedata.category(char) in ("Cc", "Cs"):
            return index, char
    return None


def first_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate in ``text`` (never in well-formed text), or None."""
    if text.isascii():
        return None
    try:  # UTF-8 can encode every code point but the surrogates; faster than a regex search
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def first_unstorable(text: str) -> int | None:
    """The index of the first character no store can keep: a lone surrogate, or U+0000 (a
    PostgreSQL text value cannot hold it, so neither store takes it); None for most text."""
    nul = text.find("\0")
    found = first_surrogate(text)
    if nul < 0:
        return found
    return nul if found is None else min(nul, found)


def unstorable_in(value: Any) -> str | None:
    """The first string in a JSON value (keys included, at any depth) holding a character
    :func:`first_unstorable` finds, or None."""
    return next((text for text in strings_in(value) if first_unstorable(text) is not None), None)


def surrogate_in(value: Any) -> str | None:
    """The first string in a JSON value (keys included, at any depth) that holds a lone
    surrogate, or None."""
    return next((text for text in strings_in(value) if first_surrogate(text) is not None), None)


def strings_in(value: Any) -> Iterator[str]:
    """Every string of a JSON value, keys included, at any depth. Iterative: the value may be
    deeply nested."""
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, str):
            yield current
        elif isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def describe(char: str) -> str:
    """A character that cannot be shown, named: ``a control character (U+000D carriage return)``."""
    code = f"U+{ord(char):04X}"
    if unicodedata.category(char) == "Cs":
        return f"a lone surrogate ({code}), which is not a character"
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "").lower()
    if char in _BREAKING:
        return f"a line break ({code} {name})"
    return f"a control character ({code}{' ' + name if name else ''})"


_CONTROL_NAMES = {
    "\0": "null", "\t": "tab", "\n": "line feed", "\r": "carriage return", "\x0b": "vertical tab",
    "\x0c": "form feed", "\x1b": "escape", "\x7f": "delete", "\x85": "next line",
}


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message, with every character that is not printable escaped (a
    message must never carry a line break or a surrogate itself, and an invisible space should
    show), and long text shortened."""
    out = []
    for char in text[:limit]:
        if char.isprintable():
            out.append(char)
        elif ord(char) < 0x100:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) < 0x10000 else f"\\U{ord(char):08x}")
    return "'" + "".join(out) + ("…" if len(text) > limit else "") + "'"


_DIGITS = re.compile(r"(\d+)")


def natural_key(partner_id: str) -> str:
    """Sort ids as people read them: ``p2`` before ``p10``; the text breaks ties (``p01``
    before ``p1``). A text, so that a database orders by it as Python does (its bytes, or
    ``COLLATE "C"``): the store keeps it beside each partner and audiences come back in this
    order from the SQL itself.

    Each run of digits is its value with its length first (more digits: larger), each text
    between them ends with U+0001 (a shorter text first), then U+0001 and the id itself: a
    partner id holds no control character, so U+0001 sorts before whatever could follow."""
    parts = _DIGITS.split(partner_id)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            digits = str(int(part))
            out.append(chr(0x20 + len(digits)) + digits)
        else:
            out.append(part + "\x01")
    out.append("\x01")
    out.append(partner_id)
    return "".join(out)
