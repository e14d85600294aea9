"""Issue 12, "the language as a newcomer meets it": each message names what is wrong, where,
and what to write instead. Every case goes through `engine check` (exit 1, the message at its
path:line:col), as a newcomer would meet it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from dsl.diagnostics import SourceError, alternatives, did_you_mean
from dsl.yamlload import load_yaml
from engine.cli import main

ENGINE_YAML = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  fields:
    name: string
    country: string
    county: string
    count: int
    zip: string
    balance: number
    seats: int
    joined_at: date
    last_login: datetime
    active: bool
    tier: {enum: [silver, gold, platinum]}
    tags: list[string]
    scores: list[number]
consent:
  email: partner.active
channels:
  email: {transport: file}
"""

PARTNERS = ("id,name,country,county,count,zip,balance,seats,joined_at,last_login,active,tier,tags,scores\n"
            "p1,Acme,FI,Uusimaa,1,00100,150,3,2026-01-05,2026-06-01T10:00:00Z,true,gold,vip,1\n")

# A campaign whose one ruleset is the expression under test: it starts at line 5, column 8.
RULESET = """\
name: T
description: one ruleset under test
audience:
  rulesets:
    r: {expression}
trigger: {{audience: true}}
steps:
  - id: hello
    email: {{subject: "Hi", body: "Hello {{{{ unsubscribe_url }}}}"}}
"""
LINE, COLUMN = 5, 8

FUNCTIONS = ("bounced, clicked, coalesce, contains, days_since, ends_with, in_campaign, in_group, len, lower, "
             "matches, opened, responded, response, split, starts_with, upper, variant, was_in_campaign")


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML)
    (root / "partners.csv").write_text(PARTNERS)
    return root


def check(capsys: pytest.CaptureFixture, root: Path, name: str, text: str) -> tuple[int, list[str]]:
    """`engine check` of a workspace with one campaign file: the exit code and the errors,
    each as 'campaigns/NAME.yaml:LINE:COL: error: MESSAGE'."""
    (root / "campaigns" / f"{name}.yaml").write_text(text)
    code = main(["check", str(root)])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err
    return code, [line.replace(f"{root}/", "") for line in out.splitlines() if ": error: " in line]


def only_error(capsys: pytest.CaptureFixture, root: Path, text: str, name: str = "t") -> str:
    code, errors = check(capsys, root, name, text)
    assert code == 1 and len(errors) == 1, errors
    return errors[0]


# --- 1. Type errors name the field, its declared type, and the fix ------------------------------


@pytest.mark.parametrize("expression, operator, message", [
    ('partner.balance >= "100"', ">=",
     'cannot compare number with string: partner.balance is a number; write 100 without quotes'),
    ('partner.seats == "3"', "==", 'cannot compare int with string: partner.seats is an int; write 3 without quotes'),
    ('partner.balance > "lots"', ">",
     ("cannot compare number with string: partner.balance is a number; compare it with a number such as 100, "
     "without quotes")),
    ('partner.joined_at < "2026-01-01"', "<",
     "cannot compare date with string: partner.joined_at is a date; write 2026-01-01 without quotes"),
    ('partner.last_login >= "2026-06-01T09:00"', ">=",
     "cannot compare datetime with string: partner.last_login is a datetime; write 2026-06-01T09:00 without quotes"),
    ('partner.joined_at < "2026-1-1"', "<",
     ("cannot compare date with string: partner.joined_at is a date; compare it with a date such as 2026-01-31, "
     "without quotes")),
    ('partner.active == "true"', "==",
     "cannot compare bool with string: partner.active is a bool; write true without quotes"),
    ('partner.active != "yes"', "!=",
     "cannot compare bool with string: partner.active is a bool; compare it with true or false, without quotes"),
    ("partner.zip == 100", "==", 'cannot compare string with number: partner.zip is a string; write "100" in quotes'),
    ("partner.tier == 1", "==",
     'cannot compare string with number: partner.tier is a string, one of "silver", "gold", "platinum"'),
    ('partner.balance == partner.name', "==",
     "cannot compare number with string: partner.balance is a number, partner.name is a string"),
    ('partner.tags == "vip"', "==",
     ('cannot compare list[string] with string: partner.tags is a list[string]; to look for an item, '
     'write "vip" in partner.tags')),
    ('partner.balance in ["100", "200"]', "in",
     "cannot look for a number in a list[string]: partner.balance is a number; write [100, 200]"),
])
def test_a_type_error_says_what_the_field_is_and_how_to_write_the_value(capsys, workspace, expression, operator, message):
    found = only_error(capsys, workspace, RULESET.format(expression=expression))
    col = COLUMN + expression.index(f" {operator} ") + 1
    assert found == f"campaigns/t.yaml:{LINE}:{col}: error: {message}"


@pytest.mark.parametrize("expression, argument, message", [
    ('"5" in partner.scores', "in partner",
     "cannot look for a string in a list[number]: partner.scores is a list[number]; write 5 without quotes"),
    ('days_since("2026-01-01") > 3', '"2026-01-01"',
     "days_since() needs a date or a datetime, but this is a string; write 2026-01-01 without quotes"),
    ('contains(partner.tags, 5)', "5",
     'cannot look for a number in a list[string]: partner.tags is a list[string]; write "5" in quotes'),
])
def test_a_literal_of_the_wrong_kind_is_shown_rewritten(capsys, workspace, expression, argument, message):
    quoted = expression.startswith('"')  # YAML would read it as a quoted value: quote it in single quotes
    found = only_error(capsys, workspace, RULESET.format(expression=f"'{expression}'" if quoted else expression))
    assert found == f"campaigns/t.yaml:{LINE}:{COLUMN + quoted + expression.index(argument)}: error: {message}"


def test_inside_a_double_quoted_yaml_value_the_suggested_string_uses_single_quotes(capsys, workspace):
    """A double quote there would end the YAML value (see the YAML messages below)."""
    found = only_error(capsys, workspace, RULESET.format(expression='"partner.zip == 100"'))
    assert found == (f"campaigns/t.yaml:{LINE}:{COLUMN + 13}: error: cannot compare string with number: "
                     "partner.zip is a string; write '100' in quotes")


def test_a_string_that_is_no_literal_once_unquoted_gets_no_rewrite(capsys, workspace):
    """"9999-12-31" unquoted would be a date out of range: no suggestion to write it."""
    found = only_error(capsys, workspace, RULESET.format(expression='partner.joined_at == "9999-12-31"'))
    assert "without quotes" in found and "write 9999-12-31" not in found


# --- 2. YAML errors point at the likely mistake ------------------------------------------------

CAMPAIGN_HEAD = "name: T\ndescription: yaml under test\n"


@pytest.mark.parametrize("body, position, message", [
    # a double quote inside a double-quoted value (and single inside single)
    ('audience:\n  rulesets:\n    fi: "partner.country == "FI""\n', "5:30",
     ("did not find expected key; the likely mistake is at line 5: a double quote inside a double-quoted value ends "
     "it (the one at column 29); write single quotes outside, 'partner.country == \"FI\"', or single quotes inside, "
     "\"partner.country == 'FI'\"")),
    ("audience:\n  rulesets:\n    fi: 'partner.country == 'FI''\n", "5:30",
     ("the likely mistake is at line 5: a single quote inside a single-quoted value ends it (the one at column 29); "
     "write double quotes outside, \"partner.country == 'FI'\", or double quotes inside, "
     "'partner.country == \"FI\"'")),
    ('steps:\n  - {id: a, when: "partner.country == "FI"", sms: {text: x}}\n', "4:40",
     ("did not find expected ',' or '}'; the likely mistake is at line 4: a double quote inside a double-quoted "
     "value ends it (the one at column 39); write single quotes outside, 'partner.country == \"FI\"', or single "
     "quotes inside, \"partner.country == 'FI'\"")),
    # indentation: a key that lines up with nothing, reported at it or at the key after it
    ("audience:\n  rulesets:\n    gold: partner.tier == \"gold\"\n   silver: partner.tier == \"silver\"\n", "6:4",
     ("did not find expected key; the likely mistake is at line 6: 'silver:' (3 spaces) and 'gold:' on line 5 (4) "
     "are both under 'rulesets:' on line 4 (2) but do not line up: the keys of one mapping line up")),
    ("audience:\n  rulesets:\n     gold: partner.tier == \"gold\"\n    silver: partner.tier == \"silver\"\n", "6:5",
     ("the likely mistake is at line 5: 'silver:' (4 spaces) and 'gold:' on line 5 (5) are both under 'rulesets:' "
     "on line 4 (2) but do not line up")),
    ("audience:\n rulesets:\n    gold: partner.tier == \"gold\"\n  exclude: partner.active\n", "6:3",
     ("the likely mistake is at line 4: 'rulesets:' (1 space) and 'exclude:' on line 6 (2) are keys of one mapping "
     "but do not line up")),
    ("audience:\n  exclude: partner.active == false\n    dedupe: [email]\n", "5:11",
     ("mapping values are not allowed in this context; the likely mistake is at line 5: 'dedupe:' (4 spaces) is "
     "indented more than 'exclude:' on line 4 (2), so it is read as more of that value; line the keys up (or quote "
     "the value, if the ':' belongs to it)")),
    ("audience:\n  rulesets:\n    a: partner.active\n  exclude: partner.active\n    dedupe: [email]\n", "7:11",
     "the likely mistake is at line 6 or 7: 'dedupe:' (4 spaces) is indented more than 'exclude:' on line 6 (2)"),
    ("steps:\n  - id: hello\n    email:\n      subject: Hi\n  body: Hello\n", "7:3",
     ("the likely mistake is at line 7: 'body:' lines up with the '-' on line 4, so it is not part of that item: "
     "keys inside a list item are indented past its '-'")),
    ("steps:\n  - id: hello\n    email: {subject: Hi, body: x}\n    - wait: 3d\n", "6:5",
     ("the likely mistake is at line 6: this '-' (4 spaces) and the '-' on line 4 (2) do not line up: the items of "
     "one list line up")),
    ("steps:\n - id: hello\n   sms: {text: Hi}\n  - wait: 3d\n", "6:3",
     "the likely mistake is at line 4: this '-' (2 spaces) and the '-' on line 4 (1) do not line up"),
    ("audience:\n  exclude: |\n  partner.active == false\n", "6:1",
     ("the likely mistake is at line 4 or 5: the text of 'exclude' (a | block) must be indented more than "
     "'exclude:' itself, and line 5 is not")),
    # a key without ':', reported at the next line
    ("owner me\nactive: true\n", "4:1",
     "could not find expected ':'; the likely mistake is at line 3: 'owner me' has no ':' after its key"),
    ("owner:me\nactive: true\n", "4:1",
     "the likely mistake is at line 3: 'owner:me' needs a space after the ':' of its key"),
    ("audience:\n  rulesets:\n    gold partner.tier == \"gold\"\n    silver: partner.tier == \"silver\"\n", "6:11",
     ("mapping values are not allowed in this context; the likely mistake is at line 5: "
     "'gold partner.tier == \"gold\"' has no ':' after its key, so lines 5 to 6 are read as one text (or, if line 5 "
     "is meant as text, 'silver:' is indented too far)")),
    # brackets and quotes left open, reported where the next key is swallowed
    ("audience:\n  rulesets: [gold\ntrigger: {audience: true}\n", "5:8",
     ("did not find expected ',' or ']'; the likely mistake is at line 4: the '[' at column 13 is never closed "
     "with ']', so line 5 is read as part of it")),
    ('owner: "me\nactive: true\nsteps: "x"\n', "5:9",
     ("the likely mistake is at line 3: the quote opened there (column 8) is not closed on that line, so the value "
     "runs on to line 5")),
    ('owner: "me\nactive: true\n', "5:1",
     ("found unexpected end of stream; the likely mistake is at line 3: the quote opened there (column 8) is never "
     "closed")),
    ("owner: Note: me\n", "3:12",
     ("the likely mistake is at line 3: a ': ' inside the value of 'owner' starts another key; quote the value: "
     "owner: \"Note: me\"")),
])
def test_a_yaml_error_points_at_the_likely_mistake(capsys, workspace, body, position, message):
    found = only_error(capsys, workspace, CAMPAIGN_HEAD + body)
    assert found.startswith(f"campaigns/t.yaml:{position}: error: invalid YAML: "), found
    assert message in found, found


@pytest.mark.parametrize("body, position", [
    ('owner: "me" and more\n', "3:13"),  # text after a closed quote, not inside it
    ('owner: "me"x\n', "3:12"),  # a stray character after the closing quote
    ("window: {start: 2026-07-01 end: 2026-12-31}\n", "3:31"),  # a missing comma: the brace is closed
    ("groups: [a, b,\n  c d: e\n", "5:1"),  # a list over two lines, open to the end
    ("owner: *nowhere\n", "3:8"),  # an alias of nothing
    ("a: b\n- c\n", "4:1"),  # a list where keys are
    ('owner: "\\q"\n', "3:9"),  # an unknown escape
    ("\towner: me\n", "3:1"),  # a tab
])
def test_other_yaml_errors_get_no_guess(capsys, workspace, body, position):
    found = only_error(capsys, workspace, CAMPAIGN_HEAD + body)
    assert found.startswith(f"campaigns/t.yaml:{position}: error: invalid YAML: "), found
    assert "likely mistake" not in found


def test_no_guess_where_yaml_counts_lines_differently():
    """A lone carriage return (or U+2028) is a line break to YAML, not to our line numbers."""
    for text in ("a: b\r  c: d\n", "a: b\u2028  c: d\n"):
        with pytest.raises(SourceError) as caught:
            load_yaml("t.yaml", text)
        assert "likely mistake" not in caught.value.diagnostics[0].message
    with pytest.raises(SourceError) as caught:  # the same with \r\n: the guess is made
        load_yaml("t.yaml", "a: b\r\n  c: d\r\n")
    assert "the likely mistake is at line 2" in caught.value.diagnostics[0].message


def test_a_yaml_hint_is_in_the_json_output_too(capsys, workspace):
    (workspace / "campaigns" / "t.yaml").write_text(CAMPAIGN_HEAD + "owner me\nactive: true\n")
    assert main(["check", str(workspace), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (found,) = [e for e in report["errors"] if e["severity"] == "error"]
    assert (found["line"], found["col"]) == (4, 1)
    assert found["message"].endswith("the likely mistake is at line 3: 'owner me' has no ':' after its key")


def mutations(line: str) -> dict[str, str]:
    """The usual slips of a hand editing one line."""
    found = {"indent +1": " " + line, "indent +2": "  " + line}
    if line.startswith(" "):
        found["indent -1"] = line[1:]
    if line.startswith("  "):
        found["indent -2"] = line[2:]
    if ": " in line:
        found["no colon"] = line.replace(": ", " ", 1)
        found["no space after colon"] = line.replace(": ", ":", 1)
    for mark in ('"', "]", "}"):
        at = line.rstrip().rfind(mark)
        if at > 0 and (mark != "}" or "{{" not in line):
            found[f"no closing {mark}"] = line[:at] + line[at + 1 :]
    if '"' in line:
        found["a quote inside quotes"] = line.replace('"', '""', 1)
    return found


EXAMPLE_CAMPAIGNS = sorted((Path(__file__).resolve().parents[2] / "examples" / "campaigns").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLE_CAMPAIGNS, ids=lambda p: p.name)
def test_every_guess_on_a_broken_example_names_the_broken_line(path: Path):
    """Each example campaign, broken one line and one way at a time: whenever the message
    guesses, the line broken is the one it names (or one of the two it names)."""
    lines = path.read_text().splitlines(keepends=True)
    guessed = 0
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        for slip, broken in mutations(line).items():
            try:
                load_yaml(str(path), "".join(lines[: number - 1] + [broken] + lines[number:]))
                continue
            except SourceError as exc:
                message = exc.diagnostics[0].message
            guess = re.search(r"the likely mistake is at line (\d+)(?: or (\d+))?", message)
            if guess:
                guessed += 1
                assert number in {int(n) for n in guess.groups() if n}, (slip, number, message)
    assert guessed >= 50  # the guesses are not so careful that they never speak


def test_correct_yaml_with_quotes_inside_loads():
    text = 'a: "partner.country == \\"FI\\""\nb: \'partner.country == "FI"\'\nc: "it\'s"\nd: x # "q" here\n'
    assert load_yaml("ok.yaml", text).data == {
        "a": 'partner.country == "FI"', "b": 'partner.country == "FI"', "c": "it's", "d": "x"}


def test_a_guess_never_hides_the_error():
    """Random breakage around a nested quote: always one located error, never a crash."""
    for cut in range(1, 40):
        text = 'a:\n  b: "x == "FI""\n  c: [1, {d: "e"}]\n'[:cut] + '"\n  - ]'
        try:
            load_yaml("t.yaml", text)
        except SourceError as exc:
            assert exc.diagnostics and exc.diagnostics[0].message.startswith(("invalid YAML", "duplicate"))


# --- 3. "did you mean" offers up to three names ---------------------------------------------------


def test_did_you_mean_lists_up_to_three_close_names():
    assert did_you_mean("countyr", ["country", "county", "count", "zip"]) == \
        "; did you mean 'county', 'country' or 'count'?"
    assert did_you_mean("contry", ["country", "county", "zip"]) == "; did you mean 'country' or 'county'?"
    assert did_you_mean("nmae", ["name", "zip"]) == "; did you mean 'name'?"
    assert did_you_mean("Name", ["name", "nme"]) == "; did you mean 'name'?"  # only the case differs: that one
    assert did_you_mean("xyz", ["name"]) == ""
    assert did_you_mean("ab", ["abc", "abd", "abe", "abf"]).count("'") == 6  # three at most


def test_a_name_much_less_close_than_the_best_is_not_offered():
    ids = [f"p{i:03d}" for i in range(1, 31)]
    assert did_you_mean("p0001", ids) == "; did you mean 'p001'?"


def test_alternatives_read_as_a_sentence():
    assert alternatives(["a"]) == "'a'"
    assert alternatives(["a", "b"]) == "'a' or 'b'"
    assert alternatives(["a", "b", "c"]) == "'a', 'b' or 'c'"


def test_engine_check_offers_every_close_field(capsys, workspace):
    found = only_error(capsys, workspace, RULESET.format(expression='partner.countyr == "FI"'))
    assert found == (f"campaigns/t.yaml:{LINE}:{COLUMN + 8}: error: unknown field 'countyr' of partner; "
                     "did you mean 'county', 'country' or 'count'?")


def test_a_bare_field_name_is_offered_as_partner_fields(capsys, workspace):
    found = only_error(capsys, workspace, RULESET.format(expression='contry == "FI"'))
    assert found.endswith("unknown name 'contry'; did you mean 'partner.country', 'partner.county' or 'partner.count'?")


# --- 4. An unknown function lists the functions -------------------------------------------------


def test_an_unknown_function_lists_the_functions(capsys, workspace):
    found = only_error(capsys, workspace, RULESET.format(expression="lenght(partner.name) > 3"))
    assert found == (f"campaigns/t.yaml:{LINE}:{COLUMN}: error: unknown function 'lenght'; did you mean 'len'? "
                     f"(functions: {FUNCTIONS})")


def test_an_unknown_function_with_no_close_name_still_lists_them(capsys, workspace):
    found = only_error(capsys, workspace, RULESET.format(expression='is_vip(partner.name)'))
    assert found.endswith(f"error: unknown function 'is_vip' (functions: {FUNCTIONS})")


# --- 5. A follow_up that names a step of the same campaign ----------------------------------------

FOLLOW_UP = """\
name: Calls
description: a call, then a reminder
audience:
  rulesets: {{all: partner.active}}
trigger: {{audience: true}}
steps:
  - id: intro
    sms: {{text: "Hi"}}
  - id: call
    activity:
      kind: call
      subject: Call
      responses:
        later: {{result: postponed, follow_up: {target}}}
  - id: reminder
    sms: {{text: "Hi again"}}
"""


def test_a_follow_up_naming_a_later_step_suggests_goto(capsys, workspace):
    found = only_error(capsys, workspace, FOLLOW_UP.format(target="reminder"), name="calls")
    assert found == ("campaigns/calls.yaml:14:47: error: 'reminder' is a step of this campaign, not a campaign: "
                     "follow_up enrolls the partner in another campaign; to move on to that step, write goto: reminder")


def test_a_follow_up_naming_an_earlier_step_says_goto_only_jumps_forward(capsys, workspace):
    found = only_error(capsys, workspace, FOLLOW_UP.format(target="intro"), name="calls")
    assert found == ("campaigns/calls.yaml:14:47: error: 'intro' is a step of this campaign, not a campaign: "
                     "follow_up enrolls the partner in another campaign, and goto (which moves to a step of this "
                     "campaign) only jumps forward, to a later step")


def test_a_follow_up_naming_a_campaign_that_is_also_a_step_is_fine(capsys, workspace):
    (workspace / "campaigns" / "reminder.yaml").write_text(FOLLOW_UP.format(target="calls"))
    code, errors = check(capsys, workspace, "calls", FOLLOW_UP.format(target="reminder"))
    assert errors == [] and code == 0


def test_an_unknown_follow_up_campaign_keeps_its_message(capsys, workspace):
    found = only_error(capsys, workspace, FOLLOW_UP.format(target="remindr-campaign"), name="calls")
    assert found == "campaigns/calls.yaml:14:47: error: unknown follow-up campaign 'remindr-campaign'"


# --- The command line itself --------------------------------------------------------------------


def test_help_exits_0_and_a_bad_date_is_a_usage_error(capsys, workspace):
    with pytest.raises(SystemExit) as exit:
        main(["--help"])
    assert exit.value.code == 0 and capsys.readouterr().out.startswith("usage: engine")
    try:
        code = main(["-w", str(workspace), "start", "x", "--partner", "p", "--on", "notadate"])
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and "'notadate' is not a time" in err, err


def test_the_examples_in_this_file_are_valid_campaigns_once_fixed(capsys, workspace):
    """The fixes the messages suggest make `engine check` pass."""
    for fixed in ('partner.balance >= 100', 'partner.joined_at < 2026-01-01', 'partner.active == true',
                  'partner.zip == "100"', 'partner.active and "vip" in partner.tags', "partner.balance in [100, 200]"):
        code, errors = check(capsys, workspace, "t", RULESET.format(expression=fixed))
        assert (code, errors) == (0, []), (fixed, errors)
