"""Diagnostics: one problem in a user's file, where it is, and how it is shown.

Every stage of the pipeline (YAML loading, parsing, checking, templates, partner data) reports
problems as :class:`Diagnostic` values; a stage that cannot go on raises :class:`SourceError`,
the one exception type that user input can cause.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Literal

from .ids import shown
from .source import Span

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Diagnostic:
    span: Span
    severity: Severity
    message: str

    def headline(self) -> str:
        path = display_path(self.span.path)
        if not path.isprintable():  # a file named with a tab or a line break must not break the line
            path = shown(path, limit=len(path))[1:-1]
        return f"{path}:{self.span.line}:{self.span.col}: {self.severity}: {self.message}"

    def render(self, source_line: str | None = None) -> str:
        """The headline, then the source line and a caret under the offending token."""
        out = [self.headline()]
        if source_line is not None and self.span.line > 0:
            line = source_line.expandtabs(1)
            col = max(self.span.col, 1)
            width = 1
            if self.span.end_line == self.span.line and self.span.end_col > col:
                width = self.span.end_col - col
            width = max(1, min(width, len(line) - col + 1))
            out.append(f"  {line}")
            out.append("  " + " " * (col - 1) + "^" + "~" * (width - 1))
        return "\n".join(out)

    def to_json(self) -> dict:
        return {
            "path": display_path(self.span.path),
            "line": self.span.line,
            "col": self.span.col,
            "message": self.message,
            "severity": self.severity,
        }


class SourceError(Exception):
    """Raised when user input is wrong; carries every diagnostic found so far."""

    def __init__(self, diagnostics: Iterable[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(d.headline() for d in self.diagnostics))


def error(span: Span, message: str) -> Diagnostic:
    return Diagnostic(span, "error", message)


def warning(span: Span, message: str) -> Diagnostic:
    return Diagnostic(span, "warning", message)


MAX_SUGGESTIONS = 3
"""Names a "did you mean" offers at most: enough for a tie, few enough to read at a glance."""

_CUTOFF = 0.6  # difflib's similarity below which a name is not offered at all
_MARGIN = 0.2  # a name this much less similar than the best one is noise next to it


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """``; did you mean 'x'?``, ``'x' or 'y'``, ``'x', 'y' or 'z'``, or an empty string;
    ``prefix`` goes before each name shown (``partner.`` for a bare field name).

    A name that differs from ``word`` only in case is the one answer. Otherwise the closest
    names, best first, and only those nearly as close as the best: with partner ids p001 to
    p030, ``p0001`` suggests p001 alone, not two ids that merely share digits."""
    choices = [c for c in choices if isinstance(c, str) and c.isprintable()]  # never a line break in a message
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"; did you mean '{prefix}{lowered[word.lower()]}'?"
    close = closest(word, choices)
    return f"; did you mean {alternatives([prefix + c for c in close])}?" if close else ""


def closest(word: str, choices: Iterable[str], n: int = MAX_SUGGESTIONS) -> list[str]:
    """The names most like ``word`` (difflib's ratio), best first, ties in name order."""
    import difflib  # only when a name is wrong: not at every start of the `engine` command

    matcher = difflib.SequenceMatcher()
    matcher.set_seq2(word)
    scored = []
    for choice in dict.fromkeys(choices):  # once each, in a stable order
        matcher.set_seq1(choice)
        if matcher.real_quick_ratio() >= _CUTOFF and matcher.quick_ratio() >= _CUTOFF:
            score = matcher.ratio()
            if score >= _CUTOFF:
                scored.append((-score, choice))
    scored.sort()
    if not scored:
        return []
    best = -scored[0][0]
    return [choice for score, choice in scored[:n] if -score >= best - _MARGIN]


def alternatives(names: list[str], conjunction: str = "or") -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``: names as a sentence lists them."""
    quoted = [f"'{name}'" for name in names]
    if len(quoted) <= 1:
        return "".join(quoted)
    return f"{', '.join(quoted[:-1])} {conjunction} {quoted[-1]}"


def display_path(path: str) -> str:
    """Paths under the current directory are shown relative to it, as compilers do."""
    if not os.path.isabs(path):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
