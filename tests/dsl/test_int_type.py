"""The `int` field type (a whole number; `number` stays any number) and unknown field types in
engine.yaml: one error each, at the type's own line and column, the other fields still known."""

from __future__ import annotations

import json
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.workspace import load_workspace
from dsl.checker import Scope, _join, check_text
from dsl.parser import parse
from dsl.records import read_partners
from dsl.types import INT, NUMBER, STRING, VALID_FIELD_TYPES, coerce, list_of, parse_field_type, record
from dsl.yamlload import load_yaml
from engine.cli import main
from tests.dsl.test_sql import HELSINKI, NOW, Store, python_ids

TZ = ZoneInfo("Europe/Helsinki")


# --- The type -----------------------------------------------------------------------------------


def test_int_is_a_number_that_is_whole_and_is_named_int() -> None:
    assert parse_field_type("int") == INT and parse_field_type(" int ") == INT
    assert INT.kind == "number" and INT != NUMBER
    assert str(INT) == "int" and str(NUMBER) == "number"
    assert parse_field_type("list[int]") == list_of(INT) and str(list_of(INT)) == "list[int]"


def test_the_other_types_print_as_before() -> None:
    """Audience keys hash the schema's reprs: adding int must not change the others'."""
    assert repr(NUMBER) == "Type(kind='number', item=None, values=(), fields=())"
    assert repr(INT) == "Type(kind='number', item=None, values=(), fields=(), integral=True)"


@pytest.mark.parametrize("spec, words", [
    ("integer", ("unknown field type 'integer' for field 'seats' (valid types: string, number, int, bool, date, "
                 "datetime, list[string], list[number], list[int], {enum: [...]}); did you mean 'int'?")),
    ("float", "unknown field type 'float' for field 'seats' (valid types: "),
    ("Number", "did you mean 'number'?"),
    ("list[float]", "unknown field type 'list[float]'"),
    (5, "unknown field type '5' for field 'seats'"),
    (None, "unknown field type 'null' for field 'seats'"),
    ({"type": "int"}, "unknown field type '{\"type\": \"int\"}'"),
    ({"enum": []}, "an enum for field 'seats' needs a non-empty list of values"),
])
def test_an_unknown_type_names_the_field_and_the_valid_types(spec, words: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_field_type(spec, "seats")
    assert words in str(caught.value)


# --- Values -------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    ("12", 12), ("-3", -3), ("+7", 7), (" 12 ", 12), ("0", 0), ("12.0", 12), ("1e3", 1000),
    (12, 12), (12.0, 12), (-0.0, 0), (10**30, 10**30), ("", None), (None, None),
])
def test_whole_numbers_are_read_as_ints(raw, expected) -> None:
    value = coerce(INT, raw, TZ)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("raw, message", [
    ("12.5", "expected an integer, got '12.5'"),
    (12.5, "expected an integer, got 12.5"),
    ("x", "expected an integer, got 'x'"),
    ("inf", "expected an integer, got 'inf'"),
    (float("nan"), "expected an integer, got NaN"),
    (True, "expected an integer, got true"),
    ([1], "expected an integer, got a list"),
    ("9" * 5000, "expected an integer, got '999"),
])
def test_anything_else_is_refused_with_a_reason(raw, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        coerce(INT, raw, TZ)
    assert str(caught.value).startswith(message)


def _outcome(type_, raw):
    try:
        return True, coerce(type_, raw, TZ)
    except ValueError:
        return False, None


@given(st.one_of(
    st.integers(),
    st.floats(),
    st.integers().map(str),
    st.floats().map(str),
    st.text(alphabet="0123456789.-+e _xE", max_size=8),
    st.text(max_size=6),
    st.booleans(),
))
@settings(max_examples=500, deadline=None)
def test_int_accepts_exactly_the_whole_numbers_that_number_accepts(raw) -> None:
    ok, value = _outcome(INT, raw)
    as_number_ok, as_number = _outcome(NUMBER, raw)
    whole = as_number_ok and (as_number is None or as_number - as_number == 0 and as_number == int(as_number))
    assert ok == whole, (raw, value, as_number)
    if ok and value is not None:
        assert type(value) is int and value == as_number


@given(st.integers())
def test_every_integer_is_read_back_as_itself(n: int) -> None:
    assert coerce(INT, n, TZ) == n
    assert coerce(INT, str(n), TZ) == n


def test_the_partner_source_reports_a_bad_int_at_its_cell() -> None:
    fields = {"seats": INT, "revenue": NUMBER}
    csv = read_partners("p.csv", "id,seats,revenue\np1,12,1.5\np2,-3,2\np3,12.5,3\np4,x,4\n", fields, "id", TZ)
    assert [r.get("seats") for r in csv.records] == [12, -3, None, None]
    assert [(d.span.line, d.span.col, d.message) for d in csv.diagnostics] == [
        (4, 4, "field 'seats': expected an integer, got '12.5'"),
        (5, 4, "field 'seats': expected an integer, got 'x'"),
    ]
    lines = [{"id": "p1", "seats": 12}, {"id": "p2", "seats": 12.0}, {"id": "p3", "seats": 12.5}]
    jsonl = read_partners("p.jsonl", "\n".join(map(json.dumps, lines)), fields, "id", TZ)
    assert [r.get("seats") for r in jsonl.records] == [12, 12, None]
    assert type(jsonl.records[1]["seats"]) is int
    assert [(d.span.line, d.message) for d in jsonl.diagnostics] == [(3, "field 'seats': expected an integer, got 12.5")]


# --- Expressions --------------------------------------------------------------------------------

SCOPE = Scope(record({"id": STRING, "seats": INT, "revenue": NUMBER, "name": STRING, "counts": list_of(INT)}))


@pytest.mark.parametrize("text", [
    "partner.seats > 10",
    "partner.seats == partner.revenue",
    "partner.seats <= 2.5",
    "partner.seats * 2 + partner.revenue / 3 > 1",
    "-partner.seats < 0",
    "partner.seats in [1, 2.5, partner.revenue]",
    "partner.seats in partner.counts",
    "2.5 in partner.counts",
    "coalesce(partner.seats, partner.revenue, 0) >= 1",
    "len(partner.name) == partner.seats",
    "partner.name[partner.seats] == \"x\"",
])
def test_an_int_field_is_a_number_in_expressions(text: str) -> None:
    _, found = check_text(text, SCOPE)
    assert found == []


def test_messages_name_the_int_type() -> None:
    _, found = check_text('partner.seats == "many"', SCOPE)
    assert [d.message for d in found] == ["cannot compare int with string: partner.seats is an int; "
                                          "compare it with a number such as 100, without quotes"]
    _, found = check_text("partner.seats", SCOPE)
    assert [d.message for d in found] == ["a condition must be true or false, but this is an int"]


def test_int_and_number_join_to_number() -> None:
    assert _join(INT, NUMBER) == NUMBER and _join(NUMBER, INT) == NUMBER and _join(INT, INT) == INT
    assert _join(INT, STRING) is None


@pytest.mark.parametrize("text", [
    "partner.seats > 10", "partner.seats == 12", "partner.seats != 12", "partner.seats == partner.revenue",
    "partner.seats in [3, 12]", "partner.seats + 1 > partner.revenue", "partner.seats % 2 == 0",
    "3 in partner.counts", "partner.seats == null",
])
def test_sql_selects_what_python_selects_for_an_int_field(text: str) -> None:
    schema = {"id": STRING, "seats": INT, "revenue": NUMBER, "counts": list_of(INT)}
    records = [
        {"id": "p1", "seats": 12, "revenue": 12.0, "counts": [1, 3]},
        {"id": "p2", "seats": -3, "revenue": 100, "counts": []},
        {"id": "p3"},
        {"id": "p4", "seats": 10**15 + 1, "revenue": 0.5, "counts": [3]},
    ]
    store = Store()
    stored = store.put(records)
    node = parse(text)
    assert store.select(store.to_sql(node, schema)) == python_ids(node, stored, NOW, HELSINKI)


# --- engine.yaml: an unknown type is one error at its own place ----------------------------------

ENGINE_YAML = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  fields:
    name: string
    seats: int
    revenue: integer   # not a type
    country: string
consent:
  email: partner.seats > 0
channels:
  email: {transport: file}
"""

CAMPAIGN = """\
name: Seats
description: partners with many seats
audience:
  rulesets:
    big: partner.seats >= 10 and partner.country == "FI"
    rich: partner.revenue > 1000 and partner.name != ""
trigger: {audience: true}
steps:
  - id: hello
    email: {subject: "Hi {{ partner.name }}", body: "{{ partner.seats }} seats"}
"""

PARTNERS = "id,name,email,seats,revenue,country\np1,Acme,a@example.com,12,5000,FI\np2,Bo,b@example.com,3,12.5,SE\n"


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML)
    (root / "campaigns" / "seats.yaml").write_text(CAMPAIGN)
    (root / "partners.csv").write_text(PARTNERS)
    return root


def test_one_bad_type_is_one_error_and_the_other_fields_stay_known(workspace: Path) -> None:
    loaded = load_workspace(workspace)
    (found,) = loaded.errors
    assert (Path(found.span.path).name, found.span.line, found.span.col) == ("engine.yaml", 7, 14)
    assert found.message.startswith(f"unknown field type 'integer' for field 'revenue' (valid types: {VALID_FIELD_TYPES})")
    assert found.message.endswith("; did you mean 'int'?")
    assert loaded.schema["seats"] == INT and loaded.schema["name"] == STRING
    assert loaded.schema["revenue"].kind == "any"


def test_every_bad_type_is_reported_at_its_own_line(workspace: Path) -> None:
    settings_file = workspace / "engine.yaml"
    settings_file.write_text(settings_file.read_text().replace("name: string", "name: text")
                             .replace("country: string", "country: {enum: []}"))
    loaded = load_workspace(workspace)
    assert [(d.span.line, d.span.col, d.message.split(" (")[0]) for d in loaded.errors] == [
        (5, 11, "unknown field type 'text' for field 'name'"),
        (7, 14, "unknown field type 'integer' for field 'revenue'"),
        (8, 14, "an enum for field 'country' needs a non-empty list of values"),
    ]


def test_engine_check_prints_one_located_error_and_exits_1(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["check", str(workspace)])
    out = capsys.readouterr()
    assert "internal error" not in out.out + out.err
    errors = [line.replace(f"{workspace}/", "") for line in out.out.splitlines() if ": error: " in line]
    assert code == 1
    assert len(errors) == 1, out.out
    assert errors[0].startswith("engine.yaml:7:14: error: unknown field type 'integer' for field 'revenue'")


def test_engine_tick_refuses_a_bad_type_like_any_settings_error(workspace: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    code = main(["-w", str(workspace), "tick", "--at", "2026-07-01T00:00"])
    out = capsys.readouterr()
    assert code == 1
    assert "engine.yaml:7:14: error: unknown field type 'integer'" in out.err
    assert not (workspace / ".engine" / "outbox").exists()


def test_with_the_type_fixed_the_int_field_runs(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    settings_file = workspace / "engine.yaml"
    settings_file.write_text(settings_file.read_text().replace("revenue: integer", "revenue: number"))
    assert main(["check", str(workspace)]) == 0
    assert main(["-w", str(workspace), "tick", "--at", "2026-07-01T00:00", "--json"]) == 0
    capsys.readouterr()
    sent = [json.loads(line) for line in (workspace / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()]
    assert sorted(m["partner"] for m in sent) == ["p1"]


def test_the_settings_model_keeps_every_field_of_a_bad_schema() -> None:
    from campaigns.building import build
    from campaigns.model import Settings

    settings_model, problems = build(Settings, load_yaml("engine.yaml", ENGINE_YAML))
    assert problems == [] and settings_model is not None
    assert list(settings_model.partners.type_problems()) == ["revenue"]
    assert settings_model.partners.types()["seats"] == INT
