"""Where the comments and blank lines of a YAML text are, and how to put them back into
another text of the same data (``engine fmt``'s second half; :mod:`campaigns.fmt` decides the
layout and calls :func:`assemble`). Nothing here knows the models: only YAML texts.

How
---
:class:`Skeleton` reads a text with PyYAML's pure-Python scanner and parser (subclassed to
record every comment and every block-sequence ``-``) and lists its comments and its *entries*:
each key of a block mapping and each item of a block sequence, by its path in the data, with
its first and last line and its column; also the lines inside multi-line scalars, where no
comment may be put. :func:`assemble` is given the skeleton of the original file and that of
the re-dumped text, which has the same data at the same paths but no comments. It decides for
each comment (and blank line) of the original which entry it belongs to, and puts it at that
entry's place in the output:

* a full-line comment travels with the key or item it stands above (indented like it);
* an end-of-line comment stays on its entry's first line, at its column or two spaces after
  the line when the line grew; comment lines aligned under it stay aligned under it;
* comments that close a block (indented deeper than what follows) stay at the end of it;
* the file's leading comment block stays at the top; what has no entry goes at the end;
* runs of blank lines become one; blank lines at the end of the file are dropped.

Why comments are not left to ruamel.yaml: ruamel attaches a comment to the *preceding* node
(a full-line comment above ``exclude:`` is stored as the tail of the end-of-line comment of the
last ruleset before it; a comment above ``name:`` as the tail of whatever value precedes it), so
reordering keys carries comments away from the keys they describe, into other blocks and at the
wrong indentation. Reattaching its comment tokens would mean editing its undocumented comment
structures (``ca.items`` slots, tokens that hold several lines); placing them ourselves is
simpler and can be checked (:func:`comment_texts` is what :mod:`campaigns.fmt` checks with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yaml.events import (
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.scanner import Scanner, ScannerError
from yaml.tokens import BlockEntryToken

__all__ = ["Comment", "Entry", "Skeleton", "Unsupported", "assemble", "comment_texts"]

_BREAKS = "\0\r\n\x85\u2028\u2029"


class Unsupported(Exception):
    """A construct the formatter does not lay out (:mod:`campaigns.fmt` makes it a
    :class:`~dsl.diagnostics.SourceError`)."""


# --- Where comments, keys and items are ---------------------------------------------------------


@dataclass
class Comment:
    start: int  # character index of '#'
    line: int  # 0-based
    col: int
    text: str  # from '#' to the end of the line, trailing blanks removed
    full_line: bool  # nothing but blanks before it on its line


@dataclass
class Entry:
    """A key of a block mapping or an item of a block sequence, with all it holds."""

    path: tuple
    start: int  # the key, or the item's '-'
    line: int
    col: int
    order: int  # position in the document
    end_line: int = -1  # last line of its content


class _EventScanner(Reader, Scanner, Parser):
    """PyYAML's pure-Python scanner and parser, recording every comment and every '-'."""

    def __init__(self, text: str):
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)
        self.comment_spans: list[tuple[int, int]] = []
        self.entry_mark: Any = None

    def _skip_comment(self) -> None:
        if self.peek() == "#":
            start = self.index
            while self.peek() not in _BREAKS:
                self.forward()
            self.comment_spans.append((start, self.index))

    def scan_to_next_token(self) -> None:
        if self.index == 0 and self.peek() == "\ufeff":
            self.forward()
        found = False
        while not found:
            while self.peek() == " ":
                self.forward()
            self._skip_comment()
            if self.scan_line_break():
                if not self.flow_level:
                    self.allow_simple_key = True
            else:
                found = True

    def _ignored_line(self, start_mark: Any, what: str) -> None:
        while self.peek() == " ":
            self.forward()
        self._skip_comment()
        if self.peek() not in _BREAKS:
            raise ScannerError(f"while scanning a {what}", start_mark, f"expected a comment or a line break, but found {self.peek()!r}", self.get_mark())
        self.scan_line_break()

    def scan_block_scalar_ignored_line(self, start_mark: Any) -> None:
        self._ignored_line(start_mark, "block scalar")

    def scan_directive_ignored_line(self, start_mark: Any) -> None:
        self._ignored_line(start_mark, "directive")

    def get_token(self) -> Any:
        token = super().get_token()
        if isinstance(token, BlockEntryToken):
            self.entry_mark = token.start_mark
        return token


@dataclass
class _Frame:
    kind: str  # "map" or "seq"
    flow: bool
    path: tuple
    entry: Entry | None  # the entry whose value this collection is
    start: int
    last_line: int  # the last line of content seen inside
    expect_key: bool = True
    key: Any = None
    key_entry: Entry | None = None
    count: int = 0


class Skeleton:
    """A YAML text's comments, block entries and multi-line scalars, by line."""

    def __init__(self, text: str):
        self.text = text
        self.line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
        self.lines = text.split("\n")
        self.comments: list[Comment] = []
        self.entries: list[Entry] = []
        self.by_path: dict[tuple, Entry] = {}
        self.interior: set[int] = set()  # lines inside a multi-line scalar, after its first
        self.keep_ends: set[int] = set()  # last lines of `|+` / `>+` scalars: no blank after them
        self.no_eol: set[int] = set()  # lines where a comment cannot be appended
        self.no_continuation: set[int] = set()  # lines after which no comment line may follow

    @classmethod
    def of(cls, text: str) -> Skeleton:
        skeleton = cls(text)
        if text.strip():
            skeleton._scan()
        return skeleton

    def line_of(self, index: int) -> int:
        lo, hi = 0, len(self.line_starts) - 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.line_starts[mid] <= index:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def col_of(self, index: int) -> int:
        return index - self.line_starts[self.line_of(index)]

    def indent(self, line: int) -> int:
        text = self.lines[line]
        return len(text) - len(text.lstrip(" "))

    def _scan(self) -> None:
        scanner = _EventScanner(self.text)
        frames: list[_Frame] = []
        try:
            while True:
                event = scanner.get_event()
                if event is None or isinstance(event, StreamEndEvent):
                    break
                self._event(scanner, event, frames)
        finally:
            scanner.dispose()
        for start, end in scanner.comment_spans:
            line = self.line_of(start)
            before = self.text[self.line_starts[line] : start]
            text = self.text[start:end].rstrip()
            self.comments.append(Comment(start, line, start - self.line_starts[line], text, not before.strip()))
        self.entries.sort(key=lambda e: e.order)

    def _event(self, scanner: _EventScanner, event: Any, frames: list[_Frame]) -> None:
        if isinstance(event, (StreamStartEvent, DocumentStartEvent, DocumentEndEvent)):
            return
        if isinstance(event, (MappingEndEvent, SequenceEndEvent)):
            frame = frames.pop()
            last = frame.last_line
            if frame.flow:
                first, last = self.line_of(frame.start), self._last_line(frame.start, event.end_mark.index)
                self.no_eol.update(range(first, last))
                self.no_continuation.update(range(first, last))
            self._finish(frame.entry, last, frames)
            return
        parent = frames[-1] if frames else None
        if parent is not None and parent.kind == "map" and parent.expect_key:
            if not isinstance(event, ScalarEvent):
                raise Unsupported("a mapping key that is not a plain value")
            parent.expect_key = False
            parent.key = event.value
            parent.key_entry = None
            if not parent.flow:
                parent.key_entry = self._entry(parent.path + (event.value,), event.start_mark.index)
            parent.last_line = max(parent.last_line, self._last_line(event.start_mark.index, event.end_mark.index))
            return
        entry: Entry | None = None
        if parent is None:
            path: tuple = ()
        elif parent.kind == "map":
            path = parent.path + (parent.key,)
            entry = parent.key_entry
            parent.expect_key = True
        else:
            path = parent.path + (parent.count,)
            parent.count += 1
            if not parent.flow:
                entry = self._entry(path, scanner.entry_mark.index if scanner.entry_mark is not None else event.start_mark.index)
        if isinstance(event, (MappingStartEvent, SequenceStartEvent)):
            kind = "map" if isinstance(event, MappingStartEvent) else "seq"
            start = event.start_mark.index
            frames.append(_Frame(kind, bool(event.flow_style), path, entry, start, self.line_of(start)))
            return
        if isinstance(event, ScalarEvent):
            last = self._scalar(event)
        else:
            last = self._last_line(event.start_mark.index, event.end_mark.index)
        self._finish(entry, last, frames)

    def _entry(self, path: tuple, start: int) -> Entry:
        entry = Entry(path, start, self.line_of(start), self.col_of(start), len(self.entries))
        self.entries.append(entry)
        self.by_path.setdefault(path, entry)
        return entry

    def _last_line(self, start: int, end: int) -> int:
        """The line of the last character of ``text[start:end]``."""
        return self.line_of(max(end - 1, start))

    def _finish(self, entry: Entry | None, last_line: int, frames: list[_Frame]) -> None:
        if frames:
            frames[-1].last_line = max(frames[-1].last_line, last_line)
        if entry is not None:
            entry.end_line = max(entry.line, last_line)

    def _scalar(self, event: ScalarEvent) -> int:
        """Record the lines a scalar covers; return its last line."""
        start, end = event.start_mark.index, event.end_mark.index
        first = self.line_of(start)
        if event.style in ("|", ">"):
            header_end = self.text.find("\n", start)
            header = self.text[start : header_end if header_end >= 0 else len(self.text)]
            keep = "+" in header.split("#")[0]
            end_line = self.line_of(end)
            if not self.text[self.line_starts[end_line] : end].strip():
                end_line -= 1  # the scalar ends before the line its end mark is on
            last = end_line
            if not keep:
                while last > first and not self.lines[last].strip():
                    last -= 1
            elif last > first:
                self.keep_ends.add(last)
            self.interior.update(range(first + 1, last + 1))
            self.no_continuation.add(first)
            return last
        last = self._last_line(start, end)
        if last > first:
            self.interior.update(range(first + 1, last + 1))
            self.no_eol.update(range(first, last))
            self.no_continuation.update(range(first, last))
        return last


# --- Where each comment goes --------------------------------------------------------------------


@dataclass
class _Item:
    """A comment or a blank line to put back, and the place in the original it came from."""

    position: int  # character index in the original (for a stable order)
    comment: Comment | None  # None: a blank line


@dataclass
class _Placement:
    header: list[_Item] = field(default_factory=list)
    trailer: list[_Item] = field(default_factory=list)
    before: dict[tuple, list[_Item]] = field(default_factory=dict)  # above the entry
    after: dict[tuple, list[_Item]] = field(default_factory=dict)  # below the entry's last line
    eol: dict[tuple, list[_Item]] = field(default_factory=dict)  # on the entry's first line
    continuation: dict[tuple, list[_Item]] = field(default_factory=dict)  # lines under an eol comment


def _place(original: Skeleton) -> _Placement:
    placement = _Placement()
    entries = original.entries
    outermost: dict[int, Entry] = {}
    for entry in entries:
        current = outermost.get(entry.line)
        if current is None or len(entry.path) < len(current.path):
            outermost[entry.line] = entry
    comment_at = {c.line: c for c in original.comments}
    first_line = entries[0].line if entries else len(original.lines)
    last_top = next((e for e in reversed(entries) if len(e.path) == 1), None)
    pending: list[_Item] = []
    chain: tuple[int, tuple] | None = None  # (column, anchor) of an eol comment on the line above
    # Blank lines at the end of the file (and the empty "line" after its final newline) are
    # dropped here, not left to assemble: with no block entry everything goes in the header,
    # above the document, where they would become a blank line the next run keeps.
    end = max((i + 1 for i, text in enumerate(original.lines) if text.strip()), default=0)
    for line, text in enumerate(original.lines[:end]):
        comment = comment_at.get(line)
        if comment is not None and comment.full_line:
            if chain is not None and comment.col == chain[0]:
                placement.continuation.setdefault(chain[1], []).append(_Item(comment.start, comment))
                continue
            pending.append(_Item(comment.start, comment))
            chain = None
            continue
        chain = None
        if line in original.interior:
            if comment is not None:
                chain = _end_of_line(original, placement, comment, pending if line < first_line else placement.trailer)
            continue
        if not text.strip():
            pending.append(_Item(original.line_starts[line], None))
            continue
        if line < first_line:  # "---", a directive: the header goes on
            if comment is not None:
                pending.append(_Item(comment.start, comment))
            continue
        anchor = outermost.get(line)
        if anchor is None:
            containing = _containing(entries, line)
            if containing is not None:  # inside a value that spans lines (a flow collection)
                placement.before.setdefault(containing.path, []).extend(pending)
            else:  # after the document ("...", which ruamel.yaml writes after a final `|+` scalar)
                placement.trailer.extend(_closing(original, placement, pending, 0, last_top))
        elif anchor is entries[0]:
            split = max((i + 1 for i, item in enumerate(pending) if item.comment is None), default=len(pending))
            placement.header.extend(pending[:split])
            placement.before.setdefault(anchor.path, []).extend(pending[split:])
        else:
            rest = _closing(original, placement, pending, anchor.col, _previous_sibling(entries, anchor))
            placement.before.setdefault(anchor.path, []).extend(rest)
        pending = []
        if comment is not None:
            chain = _end_of_line(original, placement, comment, placement.trailer)
    if entries:
        pending = _closing(original, placement, pending, 0, last_top)
        placement.trailer.extend(pending)
    else:
        placement.header.extend(pending)
    return placement


def _end_of_line(original: Skeleton, placement: _Placement, comment: Comment, elsewhere: list[_Item]) -> tuple[int, tuple] | None:
    """Attach an end-of-line comment to the deepest entry on its line (``elsewhere``: where it
    goes when no entry is there); return what a continuation line below it would attach to."""
    entry = _containing(original.entries, comment.line)
    if entry is None:
        elsewhere.append(_Item(comment.start, comment))
        return None
    placement.eol.setdefault(entry.path, []).append(_Item(comment.start, comment))
    return comment.col, entry.path


def _containing(entries: list[Entry], line: int) -> Entry | None:
    """The deepest entry whose lines include ``line``."""
    best: Entry | None = None
    for entry in entries:
        if entry.line <= line <= entry.end_line and (best is None or len(entry.path) >= len(best.path)):
            best = entry
    return best


def _previous_sibling(entries: list[Entry], entry: Entry) -> Entry | None:
    parent = entry.path[:-1]
    previous = None
    for other in entries:
        if other is entry:
            return previous
        if other.path[:-1] == parent and len(other.path) == len(entry.path):
            previous = other
    return previous


def _closing(original: Skeleton, placement: _Placement, pending: list[_Item], column: int, previous: Entry | None) -> list[_Item]:
    """Put the comments that close the previous block (indented deeper than ``column``, where
    the next entry starts) after the entry they close; return the rest."""
    if previous is None:
        return pending
    inside = [e for e in original.entries if e.path[: len(previous.path)] == previous.path]
    split, targets = 0, []
    for i, item in enumerate(pending):
        if item.comment is None:
            continue
        comment = item.comment
        if comment.col <= column:
            break
        closes = [e for e in inside if e.col <= comment.col and e.end_line < comment.line]
        if not closes:
            break
        targets.append((i, closes[-1]))
        split = i + 1
    start = 0
    for i, target in targets:
        placement.after.setdefault(target.path, []).extend(pending[start : i + 1])
        start = i + 1
    return pending[split:]


# --- Putting the comments into the output -------------------------------------------------------


def assemble(original: Skeleton, output: Skeleton) -> str:
    """The output's lines with the original's comments and blank lines put back."""
    placement = _place(original)
    lines = output.lines[:-1] if output.lines and output.lines[-1] == "" else list(output.lines)
    before: dict[int, list[tuple[int, _Item]]] = {}
    after: dict[int, list[tuple[int, int, _Item]]] = {}
    eol: dict[int, list[_Item]] = {}
    continuation: dict[int, list[_Item]] = {}
    trailer = list(placement.trailer)

    def entry_of(p: tuple) -> Entry | None:
        return output.by_path.get(p)

    for p, items in placement.before.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        before.setdefault(entry.line, []).extend((0, item) for item in items)
    for p, items in placement.eol.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        eol.setdefault(entry.line, []).extend(items)
    for p, items in placement.continuation.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        continuation.setdefault(entry.line, []).extend(items)
    for p, items in placement.after.items():
        entry = entry_of(p)
        if entry is None:
            trailer.extend(items)
            continue
        after.setdefault(entry.end_line, []).extend((len(p), entry.col, item) for item in items)

    out: list[str] = []
    inserted_blank: list[bool] = []
    state = {"no_blank": True}

    def emit_blank() -> None:
        if state["no_blank"] or (out and not out[-1].strip()):
            return
        out.append("")
        inserted_blank.append(True)

    def emit(text: str) -> None:
        out.append(text)
        inserted_blank.append(False)
        state["no_blank"] = False

    def emit_item(item: _Item, col: int) -> None:
        if item.comment is None:
            emit_blank()
        else:
            emit(" " * col + item.comment.text)

    for item in placement.header:
        emit_item(item, 0)
    for j, line in enumerate(lines):
        indent = len(line) - len(line.lstrip(" "))
        here = sorted(before.get(j, []), key=lambda pair: pair[1].position)
        on_line = sorted(eol.get(j, []), key=lambda item: item.position)
        under = sorted(continuation.get(j, []), key=lambda item: item.position)
        if on_line and j in output.no_eol:
            here = sorted(here + [(0, item) for item in on_line + under], key=lambda pair: pair[1].position)
            on_line, under = [], []
        elif under and j in output.no_continuation:
            here = sorted(here + [(0, item) for item in under], key=lambda pair: pair[1].position)
            under = []
        if len(on_line) > 1:
            under = sorted(on_line[1:] + under, key=lambda item: item.position)
            on_line = on_line[:1]
            if j in output.no_continuation:
                here = sorted(here + [(0, item) for item in under], key=lambda pair: pair[1].position)
                under = []
        for _, item in here:
            emit_item(item, indent)
        column = 0
        if on_line:
            comment = on_line[0].comment
            assert comment is not None
            body = line.rstrip()
            column = max(comment.col, len(body) + 2)
            line = body + " " * (column - len(body)) + comment.text
        emit(line)
        if j in output.keep_ends:
            state["no_blank"] = True
        for item in under:
            if item.comment is not None:
                emit(" " * column + item.comment.text)
        for _, col, item in sorted(after.get(j, []), key=lambda t: (-t[0], t[2].position)):
            emit_item(item, col)
    for item in trailer:
        emit_item(item, 0)
    while out and inserted_blank[-1]:
        out.pop()
        inserted_blank.pop()
    return "\n".join(out) + "\n" if out else ""


def comment_texts(text: str) -> list[str]:
    """The text of every comment of a YAML text, in order."""
    return [c.text for c in Skeleton.of(text).comments]
