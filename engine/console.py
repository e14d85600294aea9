"""What every command shares about talking to its user: the exit codes (SPEC §5) and how
diagnostics are printed. Imported by the parser (engine.cli) and by the commands alike."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # only for annotations: `engine --help` need not import the diagnostics
    from dsl.diagnostics import Diagnostic

OK, INPUT_ERROR, USAGE_ERROR, REFUSED = 0, 1, 2, 3


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream=None, sources: dict[str, str] | None = None) -> None:
    """Each diagnostic with its source line and a caret (SPEC §5). ``sources`` holds the text
    of what is not a file (``<filter>``: an expression given on the command line). Of a file,
    only the lines the diagnostics point at are kept: a partner source of a million rows with
    errors is read once, line by line, not held whole."""
    stream = stream or sys.stdout
    wanted: dict[str, set[int]] = {}
    for d in diagnostics:
        wanted.setdefault(d.span.path, set()).add(d.span.line)
    found = {path: source_lines(path, numbers, (sources or {}).get(path)) for path, numbers in wanted.items()}
    for d in diagnostics:
        print(d.render(found[d.span.path].get(d.span.line)), file=stream)


def source_lines(path: str, numbers: set[int], text: str | None = None) -> dict[int, str]:
    """The lines of a file (or of ``text``) with these numbers, from 1, numbered as
    ``str.splitlines`` numbers them (which is how the loaders count: a form feed or U+2028
    ends a line too); read up to the last one wanted. A file that cannot be read has none."""
    found: dict[int, str] = {}
    if text is not None:
        lines = text.splitlines()
        return {n: lines[n - 1] for n in numbers if 0 < n <= len(lines)}
    last, number = max(numbers, default=0), 0
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as file:
            for physical in file:  # ends at \n, \r or \r\n; splitlines also ends lines inside it
                for line in physical.splitlines():
                    number += 1
                    if number in numbers:
                        found[number] = line
                if number >= last:
                    break
    except OSError:
        return {}
    return found


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
