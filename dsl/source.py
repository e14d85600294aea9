"""Positions in source files, and the mapping from text inside a YAML scalar back to the file.

An expression such as ``partner.countyr == "FI"`` lives inside a YAML string. When the
checker finds a problem at offset 8 of that string, the user wants the line and column of
the file, even if the scalar was quoted (escapes shift columns), folded over several lines,
or written as a ``|`` block. :class:`ScalarText` knows how to walk back.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cached_property


@dataclass(frozen=True, order=True)
class Span:
    """A region of a file: 1-based line and column of its start, and of its end (exclusive)."""

    path: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}"


@dataclass(frozen=True)
class SourceText:
    """The text of one file, with fast index → (line, col) conversion."""

    path: str
    text: str

    @cached_property
    def line_starts(self) -> list[int]:
        return [0] + [m.end() for m in re.finditer("\n", self.text)]

    def index(self, line0: int, col0: int) -> int:
        """Character index of a 0-based (line, column), as PyYAML marks report them."""
        starts = self.line_starts
        if line0 >= len(starts):
            return len(self.text)
        return min(starts[line0] + col0, len(self.text))

    def position(self, index: int) -> tuple[int, int]:
        """1-based (line, col) of a character index."""
        index = max(0, min(index, len(self.text)))
        line0 = bisect.bisect_right(self.line_starts, index) - 1
        return line0 + 1, index - self.line_starts[line0] + 1

    def span(self, start: int, end: int | None = None) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(start if end is None else end)
        return Span(self.path, line, col, end_line, end_col)

    def line_text(self, line: int) -> str:
        """The text of a 1-based line, without its newline."""
        starts = self.line_starts
        if not 1 <= line <= len(starts):
            return ""
        start = starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].rstrip("\r")


_SIMPLE_ESCAPES = {
    "0": 1, "a": 1, "b": 1, "t": 1, "\t": 1, "n": 1, "v": 1, "f": 1, "r": 1, "e": 1,
    " ": 1, '"': 1, "/": 1, "\\": 1, "N": 1, "_": 1, "L": 1, "P": 1,
    "x": 3, "u": 5, "U": 9,
}


@dataclass(frozen=True)
class ScalarText:
    """A YAML scalar's value together with where each of its characters came from.

    ``offsets[i]`` is the file index of ``value[i]``. The alignment walks the raw source
    and the value side by side, consuming quotes, escapes, folded line breaks and block
    indentation in the raw text; it never fails, and at worst points at the scalar's start.
    """

    source: SourceText
    value: str
    style: str | None  # None or "" (plain), "'", '"', "|" or ">"
    start: int  # file index of the scalar's first raw character (quote or indicator)
    end: int

    @cached_property
    def offsets(self) -> list[int]:
        raw = self.source.text
        j = self.start
        end = self.end
        if self.style in ("'", '"'):
            j += 1
            end -= 1
        elif self.style in ("|", ">"):
            newline = raw.find("\n", j, end)
            j = end if newline < 0 else newline + 1
        out: list[int] = []
        for ch in self.value:
            j, width = self._align(raw, j, end, ch)
            out.append(min(j, max(end - 1, self.start)))
            j += width
        return out

    def _align(self, raw: str, j: int, end: int, ch: str) -> tuple[int, int]:
        """Find the raw character that produced ``ch``: its index and how many raw characters
        it spans (an escape, a doubled quote, a line break with the next line's indentation)."""
        k = j
        while k < end:
            r = raw[k]
            if self.style == '"' and r == "\\":
                if raw[k + 1 : k + 2] == "\n":  # an escaped line break produces nothing
                    k += 2
                    continue
                return k, 1 + _SIMPLE_ESCAPES.get(raw[k + 1 : k + 2], 1)
            if self.style == "'" and r == "'" and raw[k + 1 : k + 2] == "'":
                return k, 2
            if r == ch and r not in "\r\n":
                return k, 1
            if ch in " \n" and r in "\r\n":  # folding: a line break became a space or newline
                w = 1
                while k + w < end and raw[k + w] in " \t\r\n" and (ch == " " or raw[k + w] != "\n"):
                    w += 1
                return k, w
            if ch in " \n\t" and r not in " \t":
                return j, 0  # whitespace that the raw text does not show at this place
            k += 1
        return j, 0

    def index(self, offset: int) -> int:
        """File index of a character offset into the value (one past the end is allowed)."""
        offsets = self.offsets
        if not offsets:
            return self.start + (1 if self.style in ("'", '"') else 0)
        if offset >= len(offsets):
            return offsets[-1] + 1
        return offsets[max(0, offset)]

    def span(self, start: int, end: int | None = None) -> Span:
        """The file span of ``value[start:end]``."""
        end = start + 1 if end is None or end <= start else end
        return self.source.span(self.index(start), self.index(end - 1) + 1)

    @property
    def whole(self) -> Span:
        return self.source.span(self.start, self.end)
