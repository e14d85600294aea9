"""What every command shares about talking to its user: the exit codes (SPEC §5) and how
diagnostics are printed. Imported by the parser (engine.cli) and by the commands alike."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # only for annotations: `engine --help` need not import the diagnostics
    from dsl.diagnostics import Diagnostic

OK, INPUT_ERROR, USAGE_ERROR, REFUSED = 0, 1, 2, 3


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream=None, sources: dict[str, str] | None = None) -> None:
    """Each diagnostic with its source line and a caret (SPEC §5). ``sources`` holds the text
    of what is not a file (``<filter>``: an expression given on the command line)."""
    stream = stream or sys.stdout
    lines: dict[str, list[str]] = {path: text.splitlines() for path, text in (sources or {}).items()}
    for d in diagnostics:
        if d.span.path not in lines:
            try:
                lines[d.span.path] = Path(d.span.path).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines[d.span.path] = []
        source = lines[d.span.path]
        line = source[d.span.line - 1] if 0 < d.span.line <= len(source) else None
        print(d.render(line), file=stream)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
