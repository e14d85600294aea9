"""Checking a partner source without its records (`engine check`, issue 17): the same
diagnostics as reading it (dsl.records.read_partners), whatever the text, in bounded memory."""

from __future__ import annotations

import json
import os
import tempfile
import tracemalloc
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.partner_check import check_partner_source
from dsl.records import read_partners
from dsl.types import ANY, parse_field_type

TZ = ZoneInfo("Europe/Helsinki")
FIELDS = {
    name: parse_field_type(spec)
    for name, spec in {
        "name": "string",
        "revenue": "number",
        "seats": "int",
        "active": "bool",
        "joined_at": "date",
        "last_login": "datetime",
        "tags": "list[string]",
        "scores": "list[number]",
        "tier": {"enum": ["silver", "gold", "platinum", "a,b", 'say "hi"']},
    }.items()
} | {"extra": ANY}  # a field of an unknown type


def _both(name: str, text: str, chunk: int) -> tuple[list, list]:
    """(what reading gives, what checking gives): the diagnostics as users see them, sorted,
    and the number of usable records."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        with open(path, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        with open(path, encoding="utf-8", errors="replace", newline="") as file:  # as the workspace read it
            expected = read_partners(path, file.read(), FIELDS, "id", TZ)
        got = check_partner_source(path, FIELDS, "id", TZ, chunk=chunk)

    def shown(diagnostics):
        return sorted((d.span.line, d.span.col, d.span.end_line, d.span.end_col, d.severity, d.message)
                      for d in diagnostics)

    return [shown(expected.diagnostics), len(expected.records)], [shown(got.diagnostics), got.count]


ids = st.sampled_from(["p1", "p2", "p3", "p10", " p4 ", '"p5"', "", "p\x016", "ü7", "p" + "9" * 250, "p1,x", '"p,8"'])
CELLS = {
    "id": ids,
    "name": st.sampled_from(["Aino", "", '"Quoted, name"', '"two\nlines"', 'a"b', "x\ry", "Mäkinen", "nul\x00", "  "]),
    "revenue": st.sampled_from(["1", "-3", "12.5", "-0.5", "1e3", " 4 ", "x", "1" * 400, "9" * 301 + ".5", '"7"', "1.", ""]),
    "seats": st.sampled_from(["3", "-2", "1.0", "1.5", "٣", "", "x"]),
    "active": st.sampled_from(["true", "FALSE", "y", "Yes", "maybe", " true", "", '"no"']),
    "joined_at": st.sampled_from(["2026-01-31", "2026-02-30", " 2026-01-01", "20260101", "", "x"]),
    "last_login": st.sampled_from(["2026-01-01T10:00", "2026-01-01T10:00Z", "0001-01-01T00:00", "9999-12-31T23:00",
                                   "2026-13-01T00:00", "", "x"]),
    "tags": st.sampled_from(["a;b", "", "[1]", '["a", "b"]', "x"]),
    "scores": st.sampled_from(["1;2", "1;x", "", "[1, 2]"]),
    "tier": st.sampled_from(["gold", "bronze", "", '"a,b"', '"say ""hi"""', "Gold"]),
    "extra": st.sampled_from(["anything", "", '"q"']),
    "other": st.sampled_from(["x", "", "1"]),
}
COLUMNS = list(CELLS)
ENDINGS = st.sampled_from(["\n"] * 8 + ["\r\n", "\n\n", "\n  \n", ""])


@st.composite
def csv_sources(draw) -> str:
    columns = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=6, unique=True))
    if "id" not in columns and draw(st.integers(0, 9)):
        columns.insert(draw(st.integers(0, len(columns))), "id")
    header = ",".join(columns)
    if draw(st.integers(0, 9)) == 0:
        header += ",name" if "name" in columns else ","  # a repeated or empty header cell
    lines = [("\ufeff" if draw(st.booleans()) else "") + header + "\n"]
    for _ in range(draw(st.integers(0, 12))):
        cells = [draw(CELLS[column]) for column in columns]
        shape = draw(st.integers(0, 19))
        if shape == 0:
            cells = cells[:-1]
        elif shape == 1:
            cells.append("more")
        lines.append(",".join(cells) + draw(ENDINGS))
    return "".join(lines)


@settings(max_examples=400, deadline=None)
@given(csv_sources(), st.integers(1, 80))
def test_checking_a_csv_source_gives_what_reading_it_gives(text, chunk):
    expected, got = _both("p.csv", text, chunk)
    assert got == expected


csv_like_text = st.text(st.sampled_from('id,name,revenue,tier,"\n\r \t;x1.-[]{}:gold\ufeff\x00p2'), max_size=200)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=120), csv_like_text), st.integers(1, 40))
def test_checking_any_text_as_csv_gives_what_reading_it_gives(text, chunk):
    expected, got = _both("p.csv", text, chunk)
    assert got == expected


json_ids = st.sampled_from(['"p1"', '"p2"', '"p10"', "3", '"3"', '" p1 "', "null", '""', "[]", '"p\\u0000"', '"\\ud800"',
                            "1.5", '"p\\u00e4"', '"a\\tb"'])
JSON_VALUES = {
    "name": ['"Aino"', '"M\\u00e4kinen"', '"Mäkinen"', "5", "[1]", '{"a": 1}', '""', "null", "true"],
    "revenue": ["1", "2.5", "-3", "1e400", '"12"', "true", '""', "null", "12345678901234567890123"],
    "seats": ["3", "3.0", "3.5", "true", '"4"'],
    "active": ["true", "false", '"yes"', "1", '"maybe"'],
    "joined_at": ['"2026-01-01"', '"2026-02-30"', "20260101", '" 2026-01-01"'],
    "last_login": ['"2026-01-01T10:00"', '"2026-01-01T10:00Z"', '"0001-01-01T00:00"', '"nope"', "1"],
    "tags": ['["a", "b"]', '"a;b"', "[1]", "[[1]]", '"[1]"', '["a", null]', "[]"],
    "scores": ["[1, 2]", '[1, "x"]', '"1;2"', "[1e400]"],
    "tier": ['"gold"', '"bronze"', "5", '"a,b"', '"say \\"hi\\""', "[1]"],
    "extra": ['"x"', "[1]", "{}"],
    "other": ['"\\ud83d\\ude00"', "1", '"\\u0000"'],
}


@st.composite
def jsonl_sources(draw) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 10))):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            lines.append(draw(st.sampled_from(["", "  ", "[1]", "{bad", '{"id": NaN}', '"p1"', ' {"id": "p9"}', "{}  x"])))
            continue
        members = [f'"id": {draw(json_ids)}'] if kind != 1 else []
        for key in draw(st.lists(st.sampled_from(sorted(JSON_VALUES)), max_size=4, unique=True)):
            value = draw(st.sampled_from(JSON_VALUES[key]))
            if draw(st.integers(0, 3)):  # mostly values the reader takes
                value = JSON_VALUES[key][0]
            members.append(f'"{key}": {value}')
        lines.append("{" + ", ".join(draw(st.permutations(members))) + "}" + draw(st.sampled_from(["", "", " ", "\r"])))
    return "".join(line + draw(ENDINGS) for line in lines)


json_like_text = st.text(st.sampled_from('{}[]",: \n\tid"name"revenue"0123456789.eE-+truefalsenullNaN\\u'), max_size=200)


@settings(max_examples=300, deadline=None)
@given(st.one_of(jsonl_sources(), json_like_text), st.integers(1, 60))
def test_checking_a_jsonl_source_gives_what_reading_it_gives(text, chunk):
    expected, got = _both("p.jsonl", text, chunk)
    assert got == expected


@pytest.mark.parametrize("name, text", [
    ("p.csv", "id,name\np2,a\np1,b\np2,c\np3,d\np1,e\n"),  # out of order: by hashes
    ("p.csv", "id,name\np1,a\np2,b\np2,c\np3,d\n"),  # in order, but for one
    ("p.csv", "id,name\n" + "".join(f"p{n:04d},x\n" for n in range(3000)) + "p0042,again\n"),
    ("p.jsonl", '{"id": "p2"}\n{"id": "p1"}\n{"id": 2}\n{"id": "2"}\n{"id": "p2"}\n'),
    ("p.xlsx", "id\np1\n"),
])
@pytest.mark.parametrize("chunk", [1, 30, 1 << 20])
def test_duplicates_are_reported_at_the_later_rows(name, text, chunk):
    expected, got = _both(name, text, chunk)
    assert got == expected


def _rows(n: int) -> str:
    return "".join(f"p{(i * 7919) % n:07d},Name {i},{i * 3},gold,true,2026-01-{i % 28 + 1:02d}\n" for i in range(n))


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_a_large_source_is_checked_in_bounded_memory(tmp_path: Path, order: str):
    """No record outlives its chunk: the Python heap grows by the hashes of the ids at most
    (8 bytes each, then a quarter of them sorted), never by the records."""
    n = 100_000
    rows = _rows(n)
    if order == "sorted":
        rows = "".join(sorted(rows.splitlines(keepends=True)))
    first = rows.splitlines().index(next(r for r in rows.splitlines() if r.startswith("p0000001,"))) + 2
    path = tmp_path / "partners.csv"
    path.write_text("id,name,revenue,tier,active,joined_at\n" + rows + "p0000001,again,1,gold,true,\n")
    del rows
    tracemalloc.start()
    try:
        found = check_partner_source(str(path), FIELDS, "id", TZ, chunk=1 << 16)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.message for d in found.diagnostics] == [f"duplicate id 'p0000001' (first on line {first})"]
    assert found.count == n
    assert peak < 8 * 2**20, peak  # the records alone take over 50 MB


def test_records_are_read_again_on_demand(tmp_path: Path):
    path = tmp_path / "partners.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"p{n}", "revenue": n}) for n in range(3)) + "\n")
    found = check_partner_source(str(path), FIELDS, "id", TZ)
    assert found.ok and found.count == 3
    assert found.records == [{"id": f"p{n}", "revenue": n} for n in range(3)]
