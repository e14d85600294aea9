"""Reading the partner source: typed values, and every problem at its exact line and column."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.records import PartnerReader, PartnerSource, read_partners
from dsl.source import SourceText
from dsl.types import parse_field_type

TZ = ZoneInfo("Europe/Helsinki")
FIELDS = {
    name: parse_field_type(spec)
    for name, spec in {
        "name": "string",
        "email": "string",
        "revenue": "number",
        "active": "bool",
        "joined_at": "date",
        "last_login": "datetime",
        "tags": "list[string]",
        "scores": "list[number]",
        "tier": {"enum": ["silver", "gold", "platinum"]},
    }.items()
}


def read(path: str, text: str) -> PartnerSource:
    return read_partners(path, text, FIELDS, "id", TZ)


def problems(source: PartnerSource) -> list[tuple[int, int, str]]:
    return [(d.span.line, d.span.col, d.message) for d in source.diagnostics]


# --- values ------------------------------------------------------------------------------------

UTC = timezone.utc


@pytest.mark.parametrize(
    "field, cell, expected",
    [
        ("revenue", "1200", 1200),
        ("revenue", "-7", -7),
        ("revenue", "12.5", 12.5),
        ("revenue", " 3 ", 3),
        ("revenue", "1e3", 1000.0),
        ("active", "true", True),
        ("active", "FALSE", False),
        ("active", "yes", True),
        ("active", "0", False),
        ("active", "Y", True),
        ("joined_at", "2026-07-01", date(2026, 7, 1)),
        ("last_login", "2026-07-01T09:00", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)),  # local summer time
        ("last_login", "2026-01-15T09:00", datetime(2026, 1, 15, 7, 0, tzinfo=UTC)),  # local winter time
        ("last_login", "2026-07-01T09:00Z", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
        ("last_login", "2026-07-01T09:00:30+05:00", datetime(2026, 7, 1, 4, 0, 30, tzinfo=UTC)),
        ("tags", "vip;summit", ["vip", "summit"]),
        ("tags", " vip ; ;summit ", ["vip", "summit"]),
        ("tags", '"[""vip"", ""a;b""]"', ["vip", "a;b"]),
        ("scores", "1;2.5", [1, 2.5]),
        ("tier", "gold", "gold"),
        ("name", "  Acme  ", "  Acme  "),
        ("name", '"Acme, ""Oy"""', 'Acme, "Oy"'),
    ],
)
def test_csv_values_are_coerced_to_their_field_types(field, cell, expected):
    source = read("p.csv", f"id,{field}\np1,{cell}\n")
    assert source.diagnostics == []
    value = source.records[0][field]
    assert value == expected and type(value) is type(expected)
    if isinstance(value, datetime):
        assert value.tzinfo is UTC


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("revenue", 1200, 1200),
        ("revenue", 12.5, 12.5),
        ("revenue", "12.5", 12.5),
        ("active", True, True),
        ("active", "no", False),
        ("joined_at", "2026-07-01", date(2026, 7, 1)),
        ("last_login", "2026-07-01T09:00", datetime(2026, 7, 1, 6, 0, tzinfo=UTC)),
        ("last_login", "2026-07-01T09:00Z", datetime(2026, 7, 1, 9, 0, tzinfo=UTC)),
        ("last_login", "2026-07-01T09:00-04:00", datetime(2026, 7, 1, 13, 0, tzinfo=UTC)),
        ("tags", ["vip", "summit", ""], ["vip", "summit"]),
        ("tags", "vip;summit", ["vip", "summit"]),
        ("scores", [1, 2.5], [1, 2.5]),
        ("tier", "platinum", "platinum"),
        ("name", 42, "42"),
    ],
)
def test_jsonl_values_are_coerced_to_their_field_types(field, value, expected):
    source = read("p.jsonl", json.dumps({"id": "p1", field: value}))
    assert source.diagnostics == []
    assert source.records[0][field] == expected
    assert type(source.records[0][field]) is type(expected)


def test_missing_and_empty_values_are_absent_and_extra_fields_are_kept():
    source = read("p.csv", "id,name,revenue,crm_id\np1,,,C-7\np2,Bo\n")
    assert source.diagnostics == []
    assert source.records == [{"id": "p1", "crm_id": "C-7"}, {"id": "p2", "name": "Bo"}]

    text = '{"id": "p1", "name": null, "revenue": "", "crm": {"x": [1]}}\n\n  \n{"id": 7}\n'
    source = read("p.jsonl", text)
    assert source.diagnostics == []
    assert source.records == [{"id": "p1", "crm": {"x": [1]}}, {"id": "7"}]


def test_ids_are_stripped_strings_and_never_coerced():
    fields = dict(FIELDS, id=parse_field_type("number"))
    source = read_partners("p.csv", "id,name\n 007 ,Bo\n", fields, "id", TZ)
    assert source.records == [{"id": "007", "name": "Bo"}]


def test_csv_details_bom_crlf_blank_lines_multiline_cells_and_short_rows():
    text = '\ufeffid,name,revenue\r\np1,"two\r\nlines",5\r\n\r\np2\r\n'
    source = read("p.csv", text)
    assert source.diagnostics == []
    assert source.records == [{"id": "p1", "name": "two\r\nlines", "revenue": 5}, {"id": "p2"}]


def test_a_row_with_a_bad_value_is_kept_without_that_value():
    source = read("p.csv", "id,name,revenue\np1,Acme,lots\n")
    assert source.records == [{"id": "p1", "name": "Acme"}]
    assert problems(source) == [(2, 9, "field 'revenue': expected a number, got 'lots'")]


# --- positions: CSV ----------------------------------------------------------------------------

CSV_ERRORS = [
    # (text, [(line, col, message)])
    (
        "id,name,revenue\np1,Acme,lots\n",
        [(2, 9, "field 'revenue': expected a number, got 'lots'")],
    ),
    (
        'id,name,revenue\np1,"Acme, ""Oy""",lots\n',
        [(2, 19, "field 'revenue': expected a number, got 'lots'")],
    ),
    (
        'id,name,tier\np1,"Acme\nGroup","bronze"\n',
        [(3, 8, "field 'tier': 'bronze' is not one of silver, gold, platinum")],
    ),
    (
        "id,active,joined_at,last_login\np1,maybe,2026-02-30,soon\n",
        [
            (2, 4, "field 'active': expected true or false, got 'maybe'"),
            (2, 10, "field 'joined_at': expected a date (YYYY-MM-DD), got '2026-02-30'"),
            (2, 21, "field 'last_login': expected a datetime (ISO 8601), got 'soon'"),
        ],
    ),
    ("id,scores\np1,1;x\n", [(2, 4, "field 'scores': expected a number, got 'x'")]),
    ("id,revenue\np1,inf\n", [(2, 4, "field 'revenue': expected a finite number, got 'inf'")]),
    (
        "id,last_login\np1,0001-01-01T00:00+05:00\n",
        [(2, 4, "field 'last_login': '0001-01-01T00:00+05:00' is out of range")],
    ),
    ("name,id\nAcme,\n", [(2, 6, "missing id: the 'id' cell is empty")]),
    ("name,id\nAcme\n", [(2, 1, "missing id: the 'id' cell is empty")]),
    ("id,name\n  ,Acme\n", [(2, 1, "missing id: the 'id' cell is empty")]),
    (
        "name,id\nA,p1\nB,p2\nC,p1\n",
        [(4, 3, "duplicate id 'p1' (first on line 2)")],
    ),
    ("id,name\np1,Acme,extra,more\n", [(2, 9, "this row has 4 cells but the header has 2")]),
    ("name,email\nAcme,a@x\n", [(1, 1, "the header has no id column 'id'")]),
    ("\n\nID,name\n", [(3, 1, "the header has no id column 'id'; did you mean 'ID'?")]),
    ("", [(1, 1, "the partner source has no header row (it needs an 'id' column)")]),
    ("id,name,name\n", [(1, 9, "column 'name' appears twice in the header")]),
    (
        'id,name\np1,ok\np2,"never closed\np3,x\n',
        [(3, 4, "unterminated quoted cell: the closing '\"' is missing")],
    ),
    ("id,name\np1,a\rb\np2,ok\n", [(2, 5, "not valid CSV: a carriage return inside an unquoted cell")]),
]


@pytest.mark.parametrize("text, expected", CSV_ERRORS)
def test_csv_errors_are_reported_at_the_cell(text, expected):
    assert problems(read("partners.csv", text)) == expected


def test_csv_reports_all_problems_in_one_run_and_keeps_the_good_rows():
    text = "id,revenue,tier\np1,1,gold\np2,x,gold\n,3,gold\np3,4,bronze\np1,5,gold\np4,6,silver\n"
    source = read("p.csv", text)
    assert [(line, col) for line, col, _ in problems(source)] == [(3, 4), (4, 1), (5, 6), (6, 1)]
    assert [r["id"] for r in source.records] == ["p1", "p2", "p3", "p4"]


def test_csv_spans_cover_the_cell_for_the_caret():
    source = read("p.csv", 'id,name,revenue\np1,"A, B",12k\n')
    span = source.diagnostics[0].span
    assert (span.line, span.col, span.end_line, span.end_col) == (2, 11, 2, 14)


# --- positions: JSONL --------------------------------------------------------------------------

JSONL_ERRORS = [
    ('{"id": "p1", "revenue": "lots"}', [(1, 25, "field 'revenue': expected a number, got 'lots'")]),
    (
        '  {"id":"p1","name":"a\\"revenue\\": 1","revenue" :  "x"}',
        [(1, 52, "field 'revenue': expected a number, got 'x'")],
    ),
    (
        '{"id": "p1", "tags": {"a": "revenue"}, "revenue": true}',
        [
            (1, 22, "field 'tags': expected a list, got an object"),
            (1, 51, "field 'revenue': expected a number, got true"),
        ],
    ),
    ('{"id": "p1", "revenue": 1, "revenue": "x"}', [(1, 39, "field 'revenue': expected a number, got 'x'")]),
    ('{"id": "p1", "tier": "gld"}', [(1, 22, "field 'tier': 'gld' is not one of silver, gold, platinum")]),
    ('{"id": "p1", "name": ["a"]}', [(1, 22, "field 'name': expected a string, got a list")]),
    ('{"id": "p1", "revenue": NaN}', [(1, 25, "not valid JSON: NaN is not valid JSON")]),
    ('{"name": "Acme"}', [(1, 1, "missing id: no 'id' value")]),
    ('  {"id": "  ", "name": "Acme"}', [(1, 10, "missing id: no 'id' value")]),
    ('{"id": null}', [(1, 8, "missing id: no 'id' value")]),
    ('{"id": 1.5}', [(1, 8, "'id' must be a string, got 1.5")]),
    ('{"id": ["p1"]}', [(1, 8, "'id' must be a string, got a list")]),
    (
        '{"id": "p1"}\n{"id": "p2"}\n\n{"name": "x", "id": "p1"}',
        [(4, 21, "duplicate id 'p1' (first on line 1)")],
    ),
    ('{"id": "p1",}', [(1, 13, "not valid JSON: Expecting property name enclosed in double quotes")]),
    ('{"id": "p1"} x', [(1, 14, "not valid JSON: Extra data")]),
    ("[1, 2]", [(1, 1, "expected a JSON object, got a list")]),
    ('  "p1"', [(1, 3, "expected a JSON object, got 'p1'")]),
    ("\n\n  7\n", [(3, 3, "expected a JSON object, got 7")]),
    ("[" * 100_000, [(1, 1, "not valid JSON: nested too deeply")]),
]


@pytest.mark.parametrize("text, expected", JSONL_ERRORS)
def test_jsonl_errors_are_reported_at_the_value(text, expected):
    assert problems(read("partners.jsonl", text)) == expected


def test_unknown_extension_is_one_error():
    assert problems(read("partners.xlsx", "id\np1\n")) == [
        (1, 1, "unsupported partner source 'partners.xlsx': use a .csv or .jsonl file")
    ]


# --- properties --------------------------------------------------------------------------------

def _assert_only_diagnostics(source: PartnerSource, text: str) -> None:
    lines = text.count("\n") + 1
    for record in source.records:
        assert isinstance(record["id"], str) and record["id"]
    for d in source.diagnostics:
        assert d.severity == "error"
        assert 1 <= d.span.line <= lines and d.span.col >= 1


csv_like_text = st.text(st.sampled_from('id,name,revenue,tier,"\n\r \t;x1.-[]{}:gold\ufeff'), max_size=200)
json_like_text = st.text(
    st.sampled_from('{}[]",: \n\tid"name"revenue"0123456789.eE-+truefalsenullNaN\\u'),
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), csv_like_text))
def test_any_text_as_csv_gives_diagnostics_never_an_exception(text):
    _assert_only_diagnostics(read("p.csv", text), text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=200), json_like_text))
def test_any_text_as_jsonl_gives_diagnostics_never_an_exception(text):
    _assert_only_diagnostics(read("p.jsonl", text), text)


cell_text = st.text(alphabet=st.sampled_from('ab ,"\n;é'), max_size=8)


def _csv_cell(value: str) -> str:
    """How csv.writer writes one cell in the middle of a row."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([value, ""])
    return out.getvalue()[: -len(",\n")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(cell_text, cell_text), min_size=1, max_size=6), st.data())
def test_csv_round_trip_and_bad_cell_positions(rows, data):
    """Rows written by csv.writer read back as written; a bad revenue planted in one row is
    reported exactly where its cell starts."""
    bad = data.draw(st.integers(0, len(rows) - 1))
    text, offset_of_bad = "id,name,revenue,email\n", -1
    for n, (name, email) in enumerate(rows):
        prefix = f"p{n}," + _csv_cell(name) + ","
        if n == bad:
            offset_of_bad = len(text) + len(prefix)
        text += prefix + ("oops" if n == bad else str(n)) + "," + _csv_cell(email) + "\n"
    source = read("p.csv", text)
    assert [d.message for d in source.diagnostics] == ["field 'revenue': expected a number, got 'oops'"]
    span = source.diagnostics[0].span
    assert (span.line, span.col) == SourceText("p.csv", text).position(offset_of_bad)
    for n, (name, email) in enumerate(rows):
        expected = {"id": f"p{n}"} | ({"name": name} if name else {}) | ({"revenue": n} if n != bad else {})
        assert source.records[n] == expected | ({"email": email} if email else {})


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text('a"\\ :,{}é\u2028', max_size=6))
json_values = st.recursive(
    json_scalars,
    # any key but one holding U+0000, which no store keeps (a value error of its own, tested apart)
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=3), inner,
        max_size=3),
    max_leaves=6,
)
extra_keys = st.text('ab"\\:', max_size=5)  # never "id" or "revenue"


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(extra_keys, json_values, max_size=4),
    st.integers(0, 4),
    st.sampled_from([(", ", ": "), (",", ":"), (" ,  ", " :\t")]),
    st.booleans(),
)
def test_jsonl_bad_value_position_in_any_object(extra, where, separators, ascii_only):
    """Whatever surrounds it (escapes, nesting, spacing), a bad value is found where it starts."""
    items = list(extra.items())
    items.insert(min(where, len(items)), ("revenue", "oops"))
    items.insert(0, ("id", "p1"))
    comma, colon = separators
    line, bad_offset = "{", -1
    for n, (key, value) in enumerate(items):
        line += (comma if n else "") + json.dumps(key, ensure_ascii=ascii_only) + colon
        if key == "revenue":
            bad_offset = len(line)
        line += json.dumps(value, ensure_ascii=ascii_only)
    line += "}"
    source = read("p.jsonl", line)
    assert [(d.span.line, d.span.col) for d in source.diagnostics] == [(1, bad_offset + 1)]
    assert source.records[0] == {"id": "p1"} | {k: v for k, v in extra.items() if v is not None and v != ""}


raw_cells = st.one_of(
    st.text(st.sampled_from("0123456789.-+eE ;[]\"TZ:yesnotruefalsgldvip"), max_size=25),
    st.sampled_from(["2026-07-01", "2026-07-01T09:00", "2026-03-29T03:30", "2026-10-25T03:30+03:00", "nan", "1e999"]),
    json_values,
    st.floats(),
)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(sorted(FIELDS)), raw_cells)
def test_fast_conversions_agree_with_coerce(field, raw):
    """The per-row fast paths are an optimisation only: whenever one gives a value, it is the
    value that the general coercion gives."""
    from dsl.records import _coerce, _converter

    if raw is None or raw == "":  # the readers treat these as missing before converting
        return
    type_ = FIELDS[field]
    try:
        fast = _converter(type_, TZ)(raw)
    except Exception:
        return
    assert fast == _coerce(type_, raw, TZ)
    assert type(fast) is type(_coerce(type_, raw, TZ))


# --- streaming (PartnerReader) -----------------------------------------------------------------


def _lines(text: str) -> list[str]:
    return io.StringIO(text, newline="\n").readlines()


def test_the_reader_reads_record_by_record():
    """A record is there as soon as its lines are: the reader never reads ahead (a source of
    any size is read in constant memory)."""
    taken = []

    def source():
        for n, line in enumerate(["id,name\n", 'p1,"two\n', 'lines"\n'] + [f"p{n},x\n" for n in range(2, 10**6)]):
            taken.append(n)
            yield line

    rows = PartnerReader("p.csv", FIELDS, "id", TZ).rows(source())
    assert next(rows) == (2, "p1", {"id": "p1", "name": "two\nlines"}, 'p1,"two\nlines"\n')
    assert len(taken) == 3
    assert next(rows)[:3] == (4, "p2", {"id": "p2", "name": "x"}) and len(taken) == 4


@pytest.mark.parametrize("path, text", [
    ("p.csv", "\ufeffid,name\np1,a\n"),
    ("p.jsonl", '\ufeff{"id": "p1", "name": "a"}\n'),
])
def test_the_reader_takes_any_iterable_of_lines_and_drops_a_bom(path, text):
    reader = PartnerReader(path, FIELDS, "id", TZ)
    assert [record for _, _, record, _ in reader.rows(_lines(text))] == [{"id": "p1", "name": "a"}]
    assert reader.diagnostics == [] and reader.ok


def _with_duplicates_found_by_the_caller(path: str, text: str, batch: int) -> PartnerSource:
    """What the import does: a reader that remembers no ids, and a caller that finds the
    duplicates in batches (here with a dict; the import asks the store) and reports them."""
    reader = PartnerReader(path, FIELDS, "id", TZ, duplicates=False)
    first: dict[str, int] = {}
    kept, pending = [], []

    def flush():
        for line, pid, record, row_text in pending:
            if pid in first:
                reader.duplicate(line, pid, row_text, first[pid])
            else:
                first[pid] = line
                kept.append(record)
        pending.clear()

    for row in reader.rows(_lines(text)):
        pending.append(row)
        if len(pending) == batch:
            flush()
    flush()
    return PartnerSource(kept, reader.diagnostics)


def _full(source: PartnerSource) -> list:
    """The diagnostics in the order users see them (the workspace sorts them by position and
    message): two problems of one cell may be found in either order."""
    return sorted(((d.span, d.severity, d.message) for d in source.diagnostics),
                  key=lambda d: (d[0].line, d[0].col, d[2]))


@pytest.mark.parametrize("path, text", [
    ("p.csv", "name,id\nA,p1\nB,p2\nC,p1\n"),
    ("p.csv", 'id,revenue,tier\np1,1,gold\np1,x,"bronze\nb"\np2,2,gold\n,3,gold\np2,y,z,w\n'),
    ("p.jsonl", '{"id": "p1"}\n{"revenue": "x", "id": "p1", "tier": "b"}\n{"id": "p1"}\n'),
])
@pytest.mark.parametrize("batch", [1, 2, 100])
def test_duplicates_found_by_the_caller_read_as_the_reader_reports_them(path, text, batch):
    expected = read(path, text)
    assert any("duplicate id" in d.message for d in expected.diagnostics)
    got = _with_duplicates_found_by_the_caller(path, text, batch)
    assert (got.records, _full(got)) == (expected.records, _full(expected))


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=120), csv_like_text,
                 st.lists(st.sampled_from(["id,name,revenue\n", "p1,", "p2,", "x,", "1\n", '"', "\n", "\r",
                                           "p1,a,1\n", "p1,b,x\n", ",,\n"]), max_size=25).map("".join)),
       st.integers(1, 4))
def test_csv_duplicates_found_by_the_caller_are_reported_as_the_reader_would(text, batch):
    expected = read("p.csv", text)
    got = _with_duplicates_found_by_the_caller("p.csv", text, batch)
    assert (got.records, _full(got)) == (expected.records, _full(expected))


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_like_text,
                 st.lists(st.sampled_from(['{"id": "p1"}\n', '{"id": "p2", "revenue": "x"}\n', '{"id": 1}\n',
                                           '{"revenue": 1, "id": "p1"}\n', "\n", "[]\n", '{"id": "1"}\n']),
                          max_size=12).map("".join)),
       st.integers(1, 4))
def test_jsonl_duplicates_found_by_the_caller_are_reported_as_the_reader_would(text, batch):
    expected = read("p.jsonl", text)
    got = _with_duplicates_found_by_the_caller("p.jsonl", text, batch)
    assert (got.records, _full(got)) == (expected.records, _full(expected))


@pytest.mark.parametrize("name, text, col", [
    ("p.csv", "id,name\np1,Ai\x00no\n", 4),
    ("p.jsonl", '{"id": "p1", "name": "Ai\\u0000no"}\n', 22),
], ids=["csv", "jsonl"])
def test_a_null_character_in_a_value_is_an_error_at_its_value(name, text, col):
    """U+0000 cannot be stored in PostgreSQL's text, so neither store takes it: both stores hold
    the same records, and the import of this source is refused (the previous records stay)."""
    source = read(name, text)
    assert [(d.span.line, d.span.col, d.message) for d in source.diagnostics] == [
        (2 if name == "p.csv" else 1, col, "field 'name': holds a control character (U+0000 null); the value is dropped")]
