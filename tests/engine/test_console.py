"""How diagnostics find the source lines they show (engine.console): only the lines pointed at
are kept, numbered exactly as the loaders number them (``str.splitlines`` over the whole file)."""

from __future__ import annotations

import io
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.diagnostics import error
from dsl.source import Span
from engine.console import print_diagnostics, source_lines

pytestmark = pytest.mark.no_store  # no store is opened

PIECES = st.sampled_from(["a", "é", " ", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x85", "\u2028", "\ufeff", "x y"])


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.one_of(PIECES, st.text(max_size=5)), max_size=40).map("".join),
       tail=st.sampled_from([b"", b"\xff", b"\xe2\x82"]), data=st.data())
def test_the_lines_found_are_those_of_splitlines_over_the_whole_file(tmp_path_factory, text, tail, data):
    path = tmp_path_factory.mktemp("lines") / "source.csv"
    path.write_bytes(text.encode("utf-8", errors="surrogatepass") + tail)
    whole = path.read_text(encoding="utf-8", errors="replace").splitlines()
    numbers = data.draw(st.sets(st.integers(min_value=0, max_value=len(whole) + 2), max_size=6))
    expected = {n: whole[n - 1] for n in numbers if 0 < n <= len(whole)}
    assert source_lines(str(path), numbers) == expected


def test_a_diagnostic_shows_its_line_and_one_in_an_unreadable_file_shows_none(tmp_path):
    path = tmp_path / "partners.csv"
    path.write_text("id,name\np1,Oy\np2\n" + "p,x\n" * 1000, encoding="utf-8")
    out = io.StringIO()
    print_diagnostics([error(Span(str(path), 3, 1), "a row with 1 field, not 2"),
                       error(Span(str(tmp_path / "gone.csv"), 1, 1), "no such file")], out)
    shown = out.getvalue()
    assert "partners.csv:3:1: error: a row with 1 field, not 2\n  p2\n  ^\n" in shown
    assert "gone.csv:1:1: error: no such file" in shown


def test_text_that_is_not_a_file_is_given_whole():
    out = io.StringIO()
    print_diagnostics([error(Span("<filter>", 1, 5), "unknown field")], out, sources={"<filter>": "foo.bar == 1"})
    assert "foo.bar == 1" in out.getvalue()
