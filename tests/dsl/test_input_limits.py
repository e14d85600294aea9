"""Limits on what a campaign file may say (issue 18): every date, duration and number bounded,
no lone surrogate, no alias bomb, no nesting deep enough to reach Python's recursion limit.
Each is one located error from `engine check` (exit 1, never a traceback), and a file that
`check` accepts never stops a tick: the other campaigns keep running."""

from __future__ import annotations

import json
import resource
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.checker import Scope, check_text
from dsl.diagnostics import SourceError
from dsl.parser import MAX_NUMBER_DIGITS, parse, parse_duration
from dsl.types import DATE, MAX_DURATION, NUMBER, STRING, record
from dsl.yamlload import MAX_ALIAS_VALUES, MAX_DEPTH, load_yaml
from engine.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCOPE = Scope(record({"id": STRING, "name": STRING, "revenue": NUMBER, "joined_at": DATE}), steps=("hello",))

CAMPAIGN = """\
name: T
description: a campaign of the limit tests
audience:
  rulesets:
    everyone: partner.revenue >= 0
trigger: {audience: true}
steps:
  - id: hello
    email: {subject: "Hi", body: "Hello"}
"""


def problems(text: str) -> list[str]:
    """'col message' of each error of one expression."""
    _, found = check_text(text, SCOPE)
    return [f"{d.span.col} {d.message}" for d in found if d.severity == "error"]


# --- Durations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["36500d", "5214w", "876000h", "52560000m"])
def test_a_hundred_years_is_the_longest_duration(text: str) -> None:
    assert parse_duration(text) <= MAX_DURATION
    assert problems(f"partner.joined_at < today - {text}") == []


@pytest.mark.parametrize("text", ["36501d", "5215w", "999999999d", "100000000000d", "9" * 5000 + "m"])
def test_longer_durations_are_refused_naming_the_limit(text: str) -> None:
    with pytest.raises(ValueError, match="at most 36500d"):
        parse_duration(text)
    (problem,) = problems(f"partner.joined_at < today - {text}")
    assert problem.startswith("29 ") and "a duration is at most 36500d (100 years)" in problem


@given(st.integers(min_value=0, max_value=10**30), st.sampled_from("mhdw"))
@settings(max_examples=300, deadline=None)
def test_a_duration_parses_within_the_limit_or_is_refused(count: int, unit: str) -> None:
    try:
        value = parse_duration(f"{count}{unit}")
    except ValueError as exc:
        assert "at most 36500d" in str(exc)
    else:
        assert timedelta(0) <= value <= MAX_DURATION
    _, found = check_text(f"now - {count}{unit} < now", SCOPE)  # never raises
    assert all(d.span.col == 7 for d in found)


# --- Dates and numbers in expressions ----------------------------------------------------------


@pytest.mark.parametrize("literal", ["1900-01-01", "2199-12-31", "2026-07-01T09:00", "2199-12-31T23:59Z"])
def test_dates_in_range(literal: str) -> None:
    assert problems(f"partner.joined_at < {literal}") == []


@pytest.mark.parametrize("literal", ["9999-12-31", "0001-01-01", "1899-12-31", "2200-01-01T00:00", "9999-12-31T23:59:59Z"])
def test_dates_out_of_range_are_located_errors(literal: str) -> None:
    assert problems(f"partner.joined_at < {literal}") == [
        f"21 {literal} is out of range: dates must be between 1900-01-01 and 2199-12-31"]


@given(st.integers(min_value=1, max_value=9999))
@settings(max_examples=200, deadline=None)
def test_a_date_of_any_year_is_checked_without_raising(year: int) -> None:
    found = problems(f"partner.joined_at < {year:04}-06-15")
    assert found == ([] if 1900 <= year <= 2199 else [f"21 {year:04}-06-15 is out of range: dates must be between "
                                                     "1900-01-01 and 2199-12-31"])


def test_numbers_have_at_most_thirty_digits() -> None:
    assert problems("partner.revenue > " + "9" * MAX_NUMBER_DIGITS + ".5") == []
    for number in ("9" * (MAX_NUMBER_DIGITS + 1), "9" * 5000, "9" * 400 + ".5"):
        assert problems(f"partner.revenue > {number}") == [
            f"19 number too large: at most {MAX_NUMBER_DIGITS} digits before the decimal point"]


# --- Lone surrogates ---------------------------------------------------------------------------


@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uDC00"])
def test_a_lone_surrogate_escape_is_a_located_error(escape: str) -> None:
    (problem,) = problems(f'partner.name == "ab{escape}"')
    assert problem.startswith("20 ") and "lone surrogate" in problem


def test_a_surrogate_pair_is_one_character() -> None:
    node = parse('"\\ud83d\\ude00"')
    assert node.value == "\U0001F600"


def test_a_raw_surrogate_in_an_expression_is_a_located_error() -> None:
    (problem,) = problems('partner.name == "x\ud800"')  # a command line can carry one (surrogateescape)
    assert problem.startswith("19 ") and "lone surrogate" in problem


def test_a_surrogate_in_yaml_text_or_escape_is_located() -> None:
    with pytest.raises(SourceError, match=r"f.yaml:2:6: error: not UTF-8 text: a lone surrogate \(U\+D800\)"):
        load_yaml("f.yaml", "a: 1\nb: xy\ud800\n")
    with pytest.raises(SourceError, match=r"f.yaml:1:"):
        load_yaml("f.yaml", 'a: "x\\ud800"\n')


# --- YAML aliases and nesting ------------------------------------------------------------------


def billion_laughs() -> str:
    """Ten nested anchors, each used ten times by the next: 10**10 values when expanded."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "name: T\nx:\n" + "".join(f"  {line}\n" for line in lines)


def test_an_alias_bomb_is_refused_at_its_first_alias() -> None:
    """Refused where the first alias is (line 4), before anything is expanded: 10**10 values
    would never finish (so no clock is needed to tell)."""
    with pytest.raises(SourceError) as caught:
        load_yaml("bomb.yaml", billion_laughs())
    (problem,) = caught.value.diagnostics
    assert (problem.span.line, problem.span.col) == (4, 12)
    assert problem.message.startswith(f"aliases (*a0) expand this file to more than {MAX_ALIAS_VALUES} repeated values")


def test_small_aliases_still_load() -> None:
    document = load_yaml("f.yaml", "a: &shared {x: 1}\nb: *shared\nc: [*shared, *shared]\n")
    assert document.data == {"a": {"x": 1}, "b": {"x": 1}, "c": [{"x": 1}, {"x": 1}]}


def test_an_alias_inside_its_own_anchor_is_nesting_without_end() -> None:
    with pytest.raises(SourceError, match=r"f.yaml:1:4: error: nested too deeply"):
        load_yaml("f.yaml", "a: &a [*a]\n")


@pytest.mark.parametrize("text, line", [
    ("x: " + "[" * 600 + "]" * 600 + "\n", 1),
    ("x: " + "{a: " * 600 + "1" + "}" * 600 + "\n", 1),
    ("".join(" " * i + f"k{i}:\n" for i in range(600)), MAX_DEPTH + 1),
    ("x:\n" + "".join("  " * i + "- \n" for i in range(1, 600)), MAX_DEPTH + 1),
])
def test_deep_yaml_is_a_located_error(text: str, line: int) -> None:
    with pytest.raises(SourceError) as caught:
        load_yaml("deep.yaml", text)
    (problem,) = caught.value.diagnostics
    assert problem.span.line == line
    assert "nested too deeply" in problem.message


# --- Deep expressions --------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "not " * 600 + "true",
    "-" * 600 + "1 > 0",
    "1 in " + "[" * 600 + "1" + "]" * 600,
    "len(" * 600 + "partner.name" + ")" * 600 + " > 0",
    "partner.revenue" + " + 1" * 600 + " > 0",
    "(" * 100000 + "true" + ")" * 100000,
])
def test_deep_expressions_are_reported_not_raised(text: str) -> None:
    _, found = check_text(text, SCOPE)  # never a RecursionError
    assert all(d.span.line == 1 for d in found)
    if not text.startswith("("):
        assert any("nested too deeply (more than 300 levels)" in d.message for d in found)


# --- Through the CLI: check reports, tick runs the others ----------------------------------------

BAD_CAMPAIGNS = {
    "window-end": (CAMPAIGN.replace("name: T\n", "name: T\nwindow: {end: 9999-12-31}\n"), "2:15",
                   "9999-12-31 is out of range: dates must be between 1900-01-01 and 2199-12-31"),
    "window-start": (CAMPAIGN.replace("name: T\n", "name: T\nwindow: {start: 1066-10-14}\n"), "2:17",
                     "1066-10-14 is out of range"),
    "wait-long": (CAMPAIGN.replace("steps:\n", "steps:\n  - wait: 999999999d\n"), "8:11",
                  "999999999d is too long: a duration is at most 36500d (100 years)"),
    "wait-huge": (CAMPAIGN.replace("steps:\n", "steps:\n  - wait: 100000000000d\n"), "8:11",
                  "100000000000d is too long: a duration is at most 36500d (100 years)"),
    "wait-number": (CAMPAIGN.replace("steps:\n", "steps:\n  - wait: 1e300\n"), "8:11", "(write the unit)"),
    "waits-together": (CAMPAIGN.replace("steps:\n", "steps:\n  - wait: 20000d\n  - wait: 3d\n  - wait: 20000d\n"), "10:11",
                       "the waits of this campaign add up to more than 36500d (100 years)"),
    "reenroll": (CAMPAIGN.replace("name: T\n", "name: T\nreenroll: 99999999d\n"), "2:11",
                 "99999999d is too long: a duration is at most 36500d"),
    "expression-duration": (CAMPAIGN.replace("partner.revenue >= 0", "partner.joined_at < now - 100000000000d"), "5:41",
                            "100000000000d is too long"),
    "expression-date": (CAMPAIGN.replace("partner.revenue >= 0", "partner.joined_at < 9999-12-31"), "5:35",
                        "9999-12-31 is out of range"),
    "expression-number": (CAMPAIGN.replace("partner.revenue >= 0", "partner.revenue > " + "9" * 5000), "5:33",
                          "number too large"),
    "at": (CAMPAIGN.replace("{audience: true}", "{at: 9999-12-31T23:59}"), "6:15", "is out of range"),
    "surrogate": (CAMPAIGN.replace("partner.revenue >= 0", 'partner.name == "\\ud800"'), "5:32", "lone surrogate (U+D800)"),
    "yaml-surrogate": (CAMPAIGN.replace("name: T", 'name: "T\\ud800"'), "1:11", "invalid YAML"),
    "monitor": (CAMPAIGN + "monitor: {in_campaign_min: [1]}\n", "10:28", "a percentage such as 90%"),
    "cron-seconds": (CAMPAIGN.replace("{audience: true}", '{cron: "* * * * * *"}'), "6:17",
                     "is not a cron expression of five fields"),
    "deep-not": (CAMPAIGN.replace("partner.revenue >= 0", "not " * 600 + "true"), "5:15",
                 "expression is nested too deeply (more than 300 levels)"),
    "deep-yaml": (CAMPAIGN + "x: " + "[" * 600 + "]" * 600 + "\n", "10:67", "nested too deeply (more than 64 levels"),
    "bomb": (billion_laughs(), "4:12", "aliases (*a0) expand this file to more than"),
}


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine"))
    for path in (root / "campaigns").glob("*.yaml"):
        path.unlink()
    (root / "campaigns" / "good.yaml").write_text(CAMPAIGN)
    return root


@pytest.mark.parametrize("name", sorted(BAD_CAMPAIGNS))
def test_check_reports_each_limit_and_tick_runs_the_others(workspace: Path, name: str,
                                                          capsys: pytest.CaptureFixture) -> None:
    text, position, words = BAD_CAMPAIGNS[name]
    (workspace / "campaigns" / f"{name}.yaml").write_text(text)
    code = main(["check", str(workspace)])
    out = capsys.readouterr()
    assert code == 1
    assert "internal error" not in out.out + out.err and "Traceback" not in out.out + out.err
    errors = [line.replace(f"{workspace}/", "") for line in out.out.splitlines() if ": error: " in line]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"campaigns/{name}.yaml:{position}: error: ") and words in errors[0], errors[0]

    code = main(["-w", str(workspace), "tick", "--at", "2026-07-01T00:00", "--json"])
    out = capsys.readouterr()
    assert "internal error" not in out.out + out.err
    result = json.loads(out.out)
    assert [e["path"].rsplit("/", 1)[-1] for e in result["errors"]] == [f"{name}.yaml"]
    sent = (workspace / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()
    assert {json.loads(line)["campaign"] for line in sent} == {"good"}


def test_fmt_and_diff_refuse_the_bomb_without_expanding_it(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(billion_laughs())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["fmt", "--check", str(bomb)]) == 1
    out = capsys.readouterr()
    assert "bomb.yaml:4:12: error: aliases (*a0)" in out.out + out.err
    plain = tmp_path / "plain.yaml"
    plain.write_text(CAMPAIGN)
    assert main(["diff", str(plain), str(bomb)]) == 1
    out = capsys.readouterr()
    assert "bomb.yaml:4:12: error: aliases (*a0)" in out.out + out.err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: no gigabytes


def test_a_port_is_a_port(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    settings_file = workspace / "engine.yaml"
    settings_file.write_text(settings_file.read_text().replace(
        "email: {transport: file}", "email: {transport: smtp, host: localhost, port: 99999999999999999999, from: a@b.c}"))
    assert main(["check", str(workspace)]) == 1
    out = capsys.readouterr().out
    assert "engine.yaml:" in out and "less than or equal to 65535" in out
