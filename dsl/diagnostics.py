"""Diagnostics: one problem in a user's file, where it is, and how it is shown.

Every stage of the pipeline (YAML loading, parsing, checking, templates, partner data) reports
problems as :class:`Diagnostic` values; a stage that cannot go on raises :class:`SourceError`,
the one exception type that user input can cause.
"""

from __future__ import annotations

import difflib
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


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    choices = [c for c in choices if isinstance(c, str) and c.isprintable()]  # never a line break in a message
    lowered = {c.lower(): c for c in choices}
    if word.lower() in lowered and lowered[word.lower()] != word:
        return f"; did you mean '{lowered[word.lower()]}'?"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def display_path(path: str) -> str:
    """Paths under the current directory are shown relative to it, as compilers do."""
    if not os.path.isabs(path):
        return path
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
