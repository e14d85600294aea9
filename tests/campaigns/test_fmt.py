"""engine fmt (campaigns.fmt): canonical layout of campaign files that keeps every comment.

What is checked, on the example workspace and on generated campaign files: formatting keeps
the loaded model (expressions compared in their canonical text, which is what fmt writes),
keeps every comment, and is idempotent; and the layout itself: key order, indentation,
expression spacing, where comments go, errors.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from campaigns.building import build
from campaigns.model import Branch, Campaign, Case, Response, Settings, Step, Wait, WaitFor
from dsl.diagnostics import SourceError
from campaigns.fmt import FmtResult, format_campaign, format_paths, format_settings
from dsl.parser import parse
from dsl.printer import to_source
from dsl.yamlload import load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
EXAMPLE_CAMPAIGNS = sorted((EXAMPLES / "campaigns").glob("*.yaml"))

SPEC_ORDER = [
    "name", "description", "owner", "active", "window", "timezone", "audience", "trigger", "reenroll",
    "exclusive", "previously_treated", "exit_when", "exit_on_audience_loss",
    "holdout", "goal", "quiet_hours", "send_days", "priority", "transactional",  # SPEC §11, before the steps
    "steps", "monitor",
]


# --- Helpers: comments, models ------------------------------------------------------------------


def comments(text: str) -> list[str]:
    """Every comment of a YAML text, found without the formatter's own scanner: quotes are
    followed across lines, block scalars (``|``/``>``) skipped by their indentation."""
    found: list[str] = []
    quote: str | None = None
    block_parent: int | None = None  # while inside a block scalar: its key's column
    for line in text.split("\n"):
        stripped = line.lstrip(" ")
        indent = len(line) - len(stripped)
        if block_parent is not None:
            if not stripped or indent > block_parent:
                continue
            block_parent = None
        key_col = indent
        while stripped.startswith("- "):  # `- - key:` puts the key further right
            key_col += 2 + (len(stripped[2:]) - len(stripped[2:].lstrip(" ")))
            stripped = stripped[2:].lstrip(" ")
        i, value_end = 0, None
        while i < len(line):
            ch = line[i]
            if quote:
                if quote == "'" and ch == "'" and line[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                if quote == '"' and ch == "\\":
                    i += 2
                    continue
                if ch == quote:
                    quote = None
            elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
                found.append(line[i:].rstrip())
                value_end = i
                break
            elif ch in "'\"" and (i == 0 or line[i - 1] in " \t[{,:-"):
                quote = ch
            i += 1
        head = line[:value_end].rstrip() if value_end is not None else line.rstrip()
        # a block scalar's header is the whole value (`key: |`, `- >-`), not a `>` ending a plain one
        if quote is None and re.search(r"(^|:\s+|(^|\s)-\s+)[|>][0-9+-]*$", head.lstrip()):
            block_parent = key_col
    return found


def comment_set(text: str) -> Counter:
    return Counter(comments(text))


def normalised(dump: dict) -> dict:
    """A campaign's model_dump with every expression in its canonical text."""

    def canon(value):
        return to_source(parse(value)) if isinstance(value, str) else value

    audience = dump["audience"]
    audience["rulesets"] = {k: canon(v) for k, v in audience["rulesets"].items()}
    audience["exclude"] = canon(audience["exclude"])
    if dump["trigger"] is not None:
        dump["trigger"]["when"] = canon(dump["trigger"]["when"])
    dump["exit_when"] = canon(dump["exit_when"])
    for step in dump["steps"]:
        if "when" in step:
            step["when"] = canon(step["when"])
        if isinstance(step.get("wait"), dict) and "for_" in step["wait"]:
            step["wait"]["for_"] = canon(step["wait"]["for_"])
        for case in step.get("branch", []):
            case["when"] = canon(case["when"])
    return dump


def campaign_model(text: str) -> dict:
    model, problems = build(Campaign, load_yaml("c.yaml", text))
    assert not problems, [p.headline() for p in problems]
    return normalised(model.model_dump(warnings=False))  # (steps: a union pydantic warns about)


def settings_model(text: str) -> dict:
    model, problems = build(Settings, load_yaml("engine.yaml", text))
    assert not problems, [p.headline() for p in problems]
    dump = model.model_dump(warnings=False)
    for key in ("email", "sms"):
        if dump["consent"][key] is not None:
            dump["consent"][key] = to_source(parse(dump["consent"][key]))
    if dump["exclude"] is not None:
        dump["exclude"] = to_source(parse(dump["exclude"]))
    return dump


def top_keys(text: str) -> list:
    return list(yaml.safe_load(text).keys())


def test_the_comment_collector_sees_what_yaml_sees():
    text = (
        "# head\n"
        "a: 'x # not' # yes 1\n"
        'b: "y # no\n  still # no"  # yes 2\n'
        "c: |  # yes 3\n"
        "  # content, not a comment\n"
        "  text\n"
        "  # content too\n"
        "# yes 4\n"
        "d: u#v  # yes 5\n"
        "e:\n  - f: >-\n      # content\n    # yes 6\n"
    )
    assert comments(text) == ["# head", "# yes 1", "# yes 2", "# yes 3", "# yes 4", "# yes 5", "# yes 6"]


# --- The example workspace ----------------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLE_CAMPAIGNS, ids=lambda p: p.name)
def test_examples_keep_their_model_and_comments_and_are_stable(path: Path):
    text = path.read_text()
    formatted = format_campaign(text, str(path))
    assert campaign_model(formatted) == campaign_model(text)
    assert comments(text), "the examples are commented"
    assert comment_set(formatted) == comment_set(text)
    assert format_campaign(formatted, str(path)) == formatted


def test_examples_are_already_in_the_canonical_layout_but_for_expression_parentheses():
    """The examples are written in the canonical layout; the one thing fmt changes is a pair of
    parentheses the printer drops (``a or b or (c and d)`` → ``a or b or c and d``)."""
    for path in EXAMPLE_CAMPAIGNS:
        text = path.read_text()
        formatted = format_campaign(text, str(path))
        changed = [(a, b) for a, b in zip(text.splitlines(), formatted.splitlines()) if a != b]
        assert len(text.splitlines()) == len(formatted.splitlines())
        for before, after in changed:
            assert before.replace("(", "").replace(")", "") == after.replace("(", "").replace(")", "")


def test_engine_yaml_keeps_its_settings_and_comments():
    text = (EXAMPLES / "engine.yaml").read_text()
    formatted = format_settings(text, "engine.yaml")
    assert settings_model(formatted) == settings_model(text)
    assert comment_set(formatted) == comment_set(text)
    assert format_settings(formatted) == formatted
    assert formatted == text  # already canonical


def test_settings_expressions_and_order():
    text = "exclude: partner.role in [\"a\",\"b\"]\nconsent:\n  sms: not(partner.x)\n  email: partner.y\ntimezone: UTC\n"
    assert format_settings(text) == (
        "timezone: UTC\nconsent:\n  email: partner.y\n  sms: not partner.x\nexclude: partner.role in [\"a\", \"b\"]\n"
    )


# --- Key order ----------------------------------------------------------------------------------


def test_the_campaign_layout_lists_every_model_field_in_spec_order():
    """SPEC §3's order, with SPEC §11's keys before the steps (campaigns.fmt.ORDER): the model
    lists those last, so the layout does not simply follow the model here."""
    from campaigns.fmt import _layouts

    assert list(_layouts()[0].keys) == SPEC_ORDER
    assert sorted(Campaign.model_fields) == sorted(SPEC_ORDER)


def test_top_level_keys_follow_the_spec_and_unknown_keys_come_last_in_their_order():
    text = (
        "zeta: 1\nsteps: []\nmonitor: {alert: [a@example.com]}\nexit_when: partner.paid\nalpha: 2\n"
        "trigger: {audience: true}\nname: N\nwindow: {start: 2026-07-01}\nactive: false\n"
    )
    out = format_campaign(text)
    assert top_keys(out) == ["name", "active", "window", "trigger", "exit_when", "steps", "monitor", "zeta", "alpha"]


def test_audience_trigger_and_step_keys_are_ordered():
    text = """\
audience:
  include_test: false
  dedupe: [email]
  exclude: partner.x == 1
  groups: [g]
  rulesets:
    zz: partner.a == 1
    aa: partner.b == 1
trigger:
  when: event.amount > 1
  event: invoice.paid
steps:
  - email: {body: b, subject: s}
    when: partner.c == 1
    id: first
  - {letter: {template: t.j2}, id: second}
  - id: third
    activity:
      responses:
        ok: {follow_up: nurture, result: successful}
      subject: s
      kind: call
"""
    assert format_campaign(text) == """\
audience:
  rulesets:
    zz: partner.a == 1
    aa: partner.b == 1
  groups: [g]
  exclude: partner.x == 1
  dedupe: [email]
  include_test: false
trigger:
  event: invoice.paid
  when: event.amount > 1
steps:
  - id: first
    when: partner.c == 1
    email: {subject: s, body: b}
  - {id: second, letter: {template: t.j2}}
  - id: third
    activity:
      kind: call
      subject: s
      responses:
        ok: {result: successful, follow_up: nurture}
"""


def test_wait_steps_and_unknown_keys_inside_known_mappings():
    text = "steps:\n  - wait: {until: '09:00'}\n  - color: red\n    sms: {text: t}\n    id: a\n"
    assert format_campaign(text) == "steps:\n  - wait: {until: '09:00'}\n  - id: a\n    sms: {text: t}\n    color: red\n"


# --- Flow control: ids on waits, renamed_from, wait-for, branch, goto ---------------------------

FLOW_EXAMPLE = """\
steps:
  - id: collector-call
    activity:
      kind: call
      responses:
        disputed: {result: unsuccessful, goto: dispute-letter}   # goto: a later step id or end
        promised: {result: successful, follow_up: nurture, goto: check}
  - id: wait-open                 # waits may carry an id
    renamed_from: old-wait        # a step, id'd wait or branch may say renamed_from (a string or a list)
    wait: {for: opened("welcome") or clicked("welcome"), at_most: 3d}
  - id: route
    branch:                       # first case whose `when` holds wins; none: next step
      - {when: response("collector-call") == "disputed", goto: dispute-letter}
      - {when: opened("welcome"), goto: upsell}
      - {else: end}
"""

# Files already in the canonical layout: fmt leaves each exactly as it is.
FLOW_CANONICAL = {
    "example": FLOW_EXAMPLE,
    "block cases": """\
previously_treated: 30d
steps:
  # the call
  - id: call
    renamed_from: [phone, old-phone]
    when: partner.tier == "gold"
    activity:
      kind: call
      responses:
        ok:
          result: successful
          follow_up: nurture
          goto: end   # done
  - id: later
    renamed_from:
      - wait-2      # the first name
      - wait-1
    wait:
      # whichever comes first
      for: clicked("offer")
      at_most: 2w
  - id: morning
    wait: {until: "09:00"}
  - wait: 3d
  - id: route
    renamed_from: split
    branch:
      - when: partner.revenue >= 100000 and not opened("x")   # big ones
        goto: big
      # everyone else
      - else: end
  - id: big
    letter: {template: big.txt.j2}
""",
    "flow branch": """\
steps:
  - id: route
    branch: [{when: 'partner.tier in ["gold", "platinum"]', goto: end}, {else: end}]
  - {id: check, wait: {for: "opened(\\"welcome\\")", at_most: 1d}}
""",
    "experiments and policies": """\
# SPEC §11's keys: before the steps, in this order
name: Pay by portal
holdout: 10%                      # enrolled, but no message
goal:
  event: invoice.paid
  where: event.amount > 0
  within: 30d
  exit: false
quiet_hours: {from: "21:00", to: "08:00"}
send_days: [mon, tue, wed, thu, fri]
priority: 5
transactional: false
steps:
  - id: path
    renamed_from: route
    split:
      # the paths keep their order: weights are taken in file order
      call-first: {weight: 30, goto: nudge}
      email-first:
        weight: 70                # no goto: on with the next step
  - id: welcome
    email:
      subject: Welcome
      body: Hi
      variants:
        short: {weight: 50, subject: "Welcome!"}
        long:
          weight: 50
          subject: Welcome to the partner programme
          body: |
            Hello,
            welcome.
  - id: portal-note
    popup:
      pages: [dashboard]
      title: T
      body: B
      variants: {plain: {weight: 1}, bold: {weight: 1, title: "T!"}}
  - id: nudge
    sms:
      text: Hi
      variants:
        b: {weight: 1, text: Hello}
        a: {weight: 0}
  - id: letter
    letter: {template: a.txt.j2, variants: {v2: {weight: 2, template: b.txt.j2}, v1: {weight: 1}}}
""",
}


@pytest.mark.parametrize("name", list(FLOW_CANONICAL))
def test_flow_control_files_in_the_canonical_layout_are_left_as_they_are(name: str):
    text = FLOW_CANONICAL[name]
    assert format_campaign(text) == text
    assert campaign_model(text)  # the samples are valid campaigns


def test_flow_control_keys_are_ordered_and_expressions_normalised():
    text = """\
steps:
  - activity:
      responses:
        disputed: {goto: dispute-letter, result: unsuccessful}   # goto: a later step id or end
        promised: {goto: check, follow_up: nurture, result: successful}
      kind: call
    id: collector-call
  # the wait
  - wait: {at_most: 3d, for: opened( "welcome" )or clicked("welcome")}
    renamed_from: [old-wait, older-wait]        # a list
    id: wait-open
  - wait:
      at_most: 2d   # two days
      # the condition
      for: (clicked("x"))
    id: w2
  - when: partner.x==1
    letter: {template: t}
    renamed_from: l0
    id: l1
  - branch:                       # first case wins
      - {goto: dispute-letter, when: response("collector-call")=="disputed"}
      - goto: upsell   # block case
        when: opened("welcome")
      - else: end
    renamed_from: old-route
    id: route
"""
    expected = """\
steps:
  - id: collector-call
    activity:
      kind: call
      responses:
        disputed: {result: unsuccessful, goto: dispute-letter}   # goto: a later step id or end
        promised: {result: successful, follow_up: nurture, goto: check}
  # the wait
  - id: wait-open
    renamed_from: [old-wait, older-wait]        # a list
    wait: {for: opened("welcome") or clicked("welcome"), at_most: 3d}
  - id: w2
    wait:
      # the condition
      for: clicked("x")
      at_most: 2d   # two days
  - id: l1
    renamed_from: l0
    when: partner.x == 1
    letter: {template: t}
  - id: route
    renamed_from: old-route
    branch:                       # first case wins
      - {when: response("collector-call") == "disputed", goto: dispute-letter}
      - when: opened("welcome")
        goto: upsell   # block case
      - else: end
"""
    formatted = format_campaign(text)
    assert formatted == expected
    assert campaign_model(formatted) == campaign_model(text)
    assert comment_set(formatted) == comment_set(text)
    assert format_campaign(formatted) == formatted


def test_single_key_cases_keep_their_braces_in_a_flow_sequence():
    """ruamel.yaml would write ``[{when: a, goto: b}, else: end]``: a case reads like the others."""
    text = "steps:\n  - id: r\n    branch: [{goto: b, when: partner.a==1}, {else: end}]\n"
    assert format_campaign(text) == "steps:\n  - id: r\n    branch: [{when: partner.a == 1, goto: b}, {else: end}]\n"
    compact = "steps:\n  - id: r\n    branch: [{when: partner.a == 1, goto: b}, else: end]\n"
    assert format_campaign(compact) == "steps:\n  - id: r\n    branch: [{when: partner.a == 1, goto: b}, {else: end}]\n"


def test_the_partner_timezone_field_has_its_place_in_engine_yaml():
    text = "partners:\n  fields: {tz: string, seats: int}\n  timezone_field: tz\n  source: p.csv\n"
    assert format_settings(text) == "partners:\n  source: p.csv\n  timezone_field: tz\n  fields: {tz: string, seats: int}\n"


def test_fmt_check_passes_on_the_output_of_fmt(tmp_path: Path):
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "engine.yaml").write_text("timezone: UTC\n")
    messy = FLOW_EXAMPLE.replace("{result: unsuccessful, goto: dispute-letter}", "{goto: dispute-letter, result: unsuccessful}")
    (tmp_path / "campaigns" / "flow.yaml").write_text(messy)
    (tmp_path / "campaigns" / "canonical.yaml").write_text(FLOW_CANONICAL["block cases"])
    assert [p.name for p in format_paths([tmp_path], check=True).changed] == ["flow.yaml"]
    assert [p.name for p in format_paths([tmp_path]).changed] == ["flow.yaml"]
    assert (tmp_path / "campaigns" / "flow.yaml").read_text() == FLOW_EXAMPLE
    again = format_paths([tmp_path], check=True)
    assert again.ok and again.changed == []


# --- Indentation --------------------------------------------------------------------------------


def test_two_space_indentation_and_indented_sequences():
    text = """\
audience:
    rulesets:
        a: partner.a == 1
    groups:
    -   g1
    -   g2
steps:
-   id: a
    sms:
        text: hi
-   wait: 3d
"""
    assert format_campaign(text) == """\
audience:
  rulesets:
    a: partner.a == 1
  groups:
    - g1
    - g2
steps:
  - id: a
    sms:
      text: hi
  - wait: 3d
"""


def test_block_scalars_are_reindented_with_their_text_unchanged():
    text = "steps:\n    -   id: a\n        email:\n            subject: s\n            body: |\n                Hi,\n\n                  indented line\n                bye\n"
    out = format_campaign(text)
    assert out == "steps:\n  - id: a\n    email:\n      subject: s\n      body: |\n        Hi,\n\n          indented line\n        bye\n"
    assert campaign_model(out) == campaign_model(text)


def test_long_lines_are_never_folded():
    long = "partner.tier == \"gold\" and " * 20 + "true"
    text = f"exit_when: {long}\ndescription: {'word ' * 60}end\n"
    out = format_campaign(text)
    assert len(out.splitlines()) == 2


# --- Expressions --------------------------------------------------------------------------------


def test_expression_spacing_is_normalised():
    text = 'audience:\n  rulesets:\n    gold: partner.tier in ["gold","platinum"]and x\n'
    assert format_campaign(text) == 'audience:\n  rulesets:\n    gold: partner.tier in ["gold", "platinum"] and x\n'


@pytest.mark.parametrize(
    "value, expected",
    [
        ("partner.a==1", "partner.a == 1"),
        ('"partner.a==1"', '"partner.a == 1"'),
        ("'partner.a==\"x\"'", "'partner.a == \"x\"'"),
        ("not(partner.a)", "not partner.a"),
        ("( partner.a )", "partner.a"),
        ("(true)", "'true'"),  # the new text would read as a boolean: ruamel.yaml quotes it
        ('"(null)"', '"null"'),
        ("|\n  partner.a >\n  1", "|-\n  partner.a > 1"),
        (">\n  partner.a and\n  partner.b", ">-\n  partner.a and partner.b"),
        ("true", "true"),
    ],
)
def test_expressions_keep_their_quoting_style(value: str, expected: str):
    assert format_campaign(f"exit_when: {value}\n") == f"exit_when: {expected}\n"


def test_every_expression_field_is_normalised():
    text = """\
audience:
  rulesets: {a: partner.a==1}
  exclude: partner.b==1
trigger: {event: e.x, when: event.c==1}
exit_when: partner.d==1
steps:
  - id: s
    when: partner.e==1
    sms: {text: "x==1"}
"""
    out = format_campaign(text)
    assert out.count(" == ") == 5
    assert 'text: "x==1"' in out  # templates are not expressions


# --- Comments -----------------------------------------------------------------------------------


def test_comments_travel_with_the_keys_they_describe():
    text = """\
# yaml-language-server: $schema=../campaign.schema.json
steps:
  # the only step
  - id: a        # hello
    sms: {text: hi}
# who gets it
audience:
  rulesets:
    a: partner.a == 1   # eol
  # not those
  exclude: partner.b == 1
name: N  # the name
"""
    assert format_campaign(text) == """\
# yaml-language-server: $schema=../campaign.schema.json
name: N  # the name
# who gets it
audience:
  rulesets:
    a: partner.a == 1   # eol
  # not those
  exclude: partner.b == 1
steps:
  # the only step
  - id: a        # hello
    sms: {text: hi}
"""


def test_comments_between_steps_blank_lines_and_closing_comments():
    text = """\
name: N

steps:
  - wait: 1d

  # second
  - id: b
    sms: {text: hi}
  # - id: c       (commented out: stays at the end of the steps)
  #   sms: {text: later}


audience: {rulesets: {a: partner.a == 1}}
"""
    out = format_campaign(text)
    assert out == """\
name: N

audience: {rulesets: {a: partner.a == 1}}

steps:
  - wait: 1d

  # second
  - id: b
    sms: {text: hi}
  # - id: c       (commented out: stays at the end of the steps)
  #   sms: {text: later}
"""


def test_end_of_line_comments_keep_their_column_or_move_two_spaces_right():
    text = "exit_when: partner.a==1          # aligned\nname: N # tight\n"
    # "# aligned" stays at column 34; "# tight" gets two spaces.
    assert format_campaign(text) == "name: N  # tight\nexit_when: partner.a == 1        # aligned\n"


def test_continued_end_of_line_comments_stay_aligned():
    text = """\
trigger:                          # at most one kind
                                  # or none at all
  audience: true
  # at: 2026-07-01T09:00          # one-shot
reenroll: never
"""
    assert format_campaign(text) == text


def test_comments_in_a_multi_line_flow_mapping_are_kept():
    text = "window: {start: 2026-07-01,  # from\n         end: 2026-12-31}    # to\nname: N\n"
    out = format_campaign(text)
    assert comment_set(out) == comment_set(text)
    assert out.startswith("name: N\nwindow: {start: 2026-07-01, end: 2026-12-31}  # from\n")


def test_a_file_of_comments_only():
    assert format_campaign("\n\n# one\n\n\n# two\n\n") == "# one\n\n# two\n"
    assert format_campaign("") == ""


def test_windows_line_endings_become_unix():
    assert format_campaign("steps: []\r\nname: N   # n\r\n") == "name: N   # n\nsteps: []\n"


def test_keep_chomped_block_scalars_keep_their_trailing_lines():
    text = "steps:\n  - id: a\n    email:\n      subject: s\n      body: |+\n        text\n\n\n  - wait: 1d\n"
    out = format_campaign(text)
    assert campaign_model(out) == campaign_model(text)
    assert format_campaign(out) == out


# --- Errors -------------------------------------------------------------------------------------


def test_invalid_yaml_is_a_located_source_error():
    with pytest.raises(SourceError) as caught:
        format_campaign("name: x\naudience: [a\n", "c.yaml")
    (diagnostic,) = caught.value.diagnostics
    assert diagnostic.span.path == "c.yaml" and diagnostic.span.line == 3
    assert "invalid YAML" in diagnostic.message


def test_every_expression_that_does_not_parse_is_reported_in_the_file():
    text = 'audience:\n  rulesets:\n    a: "partner.x == "\n    b: partner.y >>> 2\nexit_when: ok(\n'
    with pytest.raises(SourceError) as caught:
        format_campaign(text, "c.yaml")
    spots = [(d.span.line, d.span.col) for d in caught.value.diagnostics]
    assert spots == [(3, 21), (4, 19), (5, 15)]
    assert all(d.message.startswith("syntax error") for d in caught.value.diagnostics)


@pytest.mark.parametrize(
    "text, message",
    [("- a\n- b\n", "expected a mapping of keys, found a list"), ("name: a\nname: b\n", "duplicate key 'name'")],
)
def test_files_that_are_not_campaigns(text: str, message: str):
    with pytest.raises(SourceError, match=re.escape(message)):
        format_campaign(text)


def test_a_layout_that_would_change_the_meaning_is_refused():
    # A mapping shared by an alias holds an expression that is normalised in one place only.
    text = "audience:\n  rulesets: &r {x: partner.a==1}\nmonitor: {alert: *r}\n"
    with pytest.raises(SourceError, match="left as it is"):
        format_campaign(text)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet="ab:-#'\"|>[]{}&*!,. \n\t\\", max_size=60))
# A comment beside a top-level flow collection (no block entry: every comment goes in the
# header) once gained a blank line on the second run, from the file's final newline.
@example("{}#")
@example("{}#\n")
@example("{} #")
@example("{} # a")
@example("[]#")
@example("#\n{}\n")
@example("{}\n#\n\n")
@example("#\n\n{}\n\n#b\n")
def test_any_text_formats_or_is_a_source_error(text: str):
    try:
        out = format_campaign(text)
    except SourceError:
        return
    assert format_campaign(out) == out


# --- format_paths -------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine"))
    (root / "campaigns" / "messy.yaml").write_text("steps: []\nexit_when: partner.paid==true\nname: Messy\n")
    return root


def test_format_paths_check_lists_without_writing(workspace: Path):
    before = {p: p.read_text() for p in (workspace / "campaigns").glob("*.yaml")}
    result = format_paths([workspace], check=True)
    assert isinstance(result, FmtResult) and result.ok
    assert sorted(p.name for p in result.changed) == ["messy.yaml"]  # the examples are canonical
    assert {p: p.read_text() for p in before} == before


def test_format_paths_writes_and_then_has_nothing_to_do(workspace: Path):
    result = format_paths([workspace], check=False)
    assert sorted(p.name for p in result.changed) == ["messy.yaml"]  # the examples are canonical
    assert (workspace / "campaigns" / "messy.yaml").read_text() == "name: Messy\nexit_when: partner.paid == true\nsteps: []\n"
    again = format_paths([workspace], check=True)
    assert again.changed == [] and again.diagnostics == []


def test_format_paths_reports_broken_files_and_formats_the_rest(workspace: Path):
    broken = workspace / "campaigns" / "broken.yaml"
    broken.write_text("name: [\n")
    messy = workspace / "campaigns" / "messy.yaml"
    result = format_paths([broken, messy, workspace / "nope.yaml"], check=False)
    assert result.changed == [messy]
    assert not result.ok
    assert [(Path(d.span.path).name, d.span.line) for d in result.diagnostics] == [("broken.yaml", 2), ("nope.yaml", 1)]
    assert broken.read_text() == "name: [\n"


def test_format_paths_formats_engine_yaml_when_named(workspace: Path):
    settings_file = workspace / "engine.yaml"
    settings_file.write_text("users: {}\ntimezone: UTC\n")
    assert format_paths([workspace], check=True).changed == [workspace / "campaigns" / "messy.yaml"]
    result = format_paths([settings_file], check=False)
    assert result.changed == [settings_file]
    assert settings_file.read_text() == "timezone: UTC\nusers: {}\n"


def test_a_directory_that_is_not_a_workspace(tmp_path: Path):
    result = format_paths([tmp_path], check=True)
    assert not result.ok and "not a workspace" in result.diagnostics[0].message


# --- Generated campaign files -------------------------------------------------------------------
#
# A campaign is generated as a tree (mappings, sequences, scalars, each entry with optional
# comments above it and at the end of its line, blocks with closing comments), in random key
# orders, and written out with a random indentation, sequence style and quoting, and expressions
# with random spacing and redundant parentheses.

EXPRESSIONS = [
    'partner.tier in ["gold", "platinum"] and partner.country == "FI"',
    "partner.revenue >= 100000",
    "not opened(\"welcome\")",
    'partner.paid == true or partner.active == false or partner.tier == "silver" and partner.revenue < 5000',
    "days_since(partner.joined_at) >= 330",
    'lower(coalesce(partner.language, "en")) == "en"',
    "partner.revenue * 2 - 1 > 10 % 3",
    "-partner.revenue < 0",
    "partner.joined_at < 2026-07-01 and now - 3d > 2026-01-01T09:00",
    "'vip' in partner.tags",
    "partner.tags[0] not in [\"x#y\", 'a: b']",
    "bounced(\"r\") or not (clicked(\"r\") or clicked(\"s\"))",
    "event.amount > 100",
]
_TOKEN = re.compile(
    r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\d{4}-\d\d-\d\dT\d\d:\d\d|\d{4}-\d\d-\d\d|\d+[mhdw]\b|\d+(?:\.\d+)?"
    r"|not\s+in\b|[A-Za-z_]\w*|==|!=|<=|>=|[<>()\[\],.+\-*/%]"
)
WORDS = st.sampled_from(["alpha", "beta", "x", "Gold partners", "a-b", "é", "fifty"])
COMMENT_TEXT = st.text(alphabet="ab xz:#'\"-[]{}|>é", max_size=14).map(lambda s: ("#" + s).rstrip())


def spaced(data, expression: str) -> str:
    """The expression with random spacing between its tokens (and redundant parentheses)."""
    tokens = _TOKEN.findall(expression)
    out = ""
    for token in tokens:
        word = re.match(r"\w", token) and out and re.search(r"\w$", out)
        gap = data.draw(st.sampled_from([" "] if word else ["", " ", "  "]))
        out += (gap if out else "") + token
    if data.draw(st.booleans()):
        out = f"( {out})"
    assert to_source(parse(out)) == to_source(parse(expression))
    return out


def quoted(data, text: str, expression: bool = False) -> str:
    """A YAML scalar for ``text``: plain if that reads back as the same string, else quoted."""
    styles = ["plain", "double", "single"]
    style = data.draw(st.sampled_from(styles))
    if style == "plain":
        try:
            if yaml.safe_load(f"k: {text}") == {"k": text} and not re.search(r"\s#|^[\s\"'!&*%@`?|>\[\]{},-]|\s$", text):
                return text
        except yaml.YAMLError:
            pass
        style = "double"
    if style == "double":
        return json.dumps(text, ensure_ascii=False)
    return "'" + text.replace("'", "''") + "'"


class Scalar:
    def __init__(self, text: str):
        self.text = text


class Block:
    """A ``|`` block scalar."""

    def __init__(self, lines: list[str], chomp: str = ""):
        self.lines, self.chomp = lines, chomp


class Flow:
    def __init__(self, text: str):
        self.text = text


class Multi:
    """A scalar written over several lines (plain or double-quoted)."""

    def __init__(self, lines: list[str]):
        self.lines = lines


class Node:
    """A block mapping (``entries`` of (key, value)) or sequence (keys None)."""

    def __init__(self, entries: list, seq: bool = False):
        self.entries, self.seq = entries, seq
        self.before: dict[int, list[str]] = {}
        self.eol: dict[int, str] = {}
        self.continued: dict[int, list[str]] = {}  # comment lines aligned under the eol comment
        self.closing: list[str] = []


def expression(data, pool=EXPRESSIONS) -> Scalar:
    return Scalar(quoted(data, spaced(data, data.draw(st.sampled_from(pool)))))


def mapping(data, required: dict, optional: dict) -> Node | Flow:
    keys = list(required) + [k for k in optional if data.draw(st.booleans())]
    order = data.draw(st.permutations(keys))
    if not order:
        return Flow("{}")  # an empty block mapping would read as null
    return Node([(k, {**required, **optional}[k]) for k in order])


def flow_scalar(data, text: str) -> str:
    """A scalar inside a flow collection: quoted when a flow indicator is in it."""
    if re.search(r"[,\[\]{}]", text):
        return json.dumps(text) if data.draw(st.booleans()) else "'" + text.replace("'", "''") + "'"
    return quoted(data, text)


def flow_mapping(data, pairs: list[tuple[str, str]]) -> Flow:
    """``{key: value, ...}`` in a random key order (values already written as scalars)."""
    return Flow("{" + ", ".join(f"{k}: {v}" for k, v in data.draw(st.permutations(pairs))) + "}")


def renamed_from(data) -> Scalar | Flow | Node:
    return data.draw(st.sampled_from([
        lambda: Scalar("old-name"),
        lambda: Flow("[old-b, old-a]"),
        lambda: Node([(None, Scalar("old-b")), (None, Scalar("old-a"))], seq=True),
    ]))()


def branch(data, i: int) -> Node | Flow:
    """A branch's cases: block mappings, flow mappings, or one flow sequence of flow mappings."""
    style = data.draw(st.sampled_from(["block", "flow items", "flow"]))
    cases: list = []
    for _ in range(data.draw(st.integers(1, 3))):
        when = spaced(data, data.draw(st.sampled_from(EXPRESSIONS)))
        goto = data.draw(st.sampled_from(["end", f"step-{i + 1}"]))
        if style == "block":
            cases.append(mapping(data, {"when": Scalar(quoted(data, when)), "goto": Scalar(goto)}, {}))
        else:
            cases.append(flow_mapping(data, [("when", flow_scalar(data, when)), ("goto", goto)]))
    if data.draw(st.booleans()):
        cases.append(Node([("else", Scalar("end"))]) if style == "block" else Flow("{else: end}"))
    if style == "flow":
        return Flow("[" + ", ".join(case.text for case in cases) + "]")
    return Node([(None, case) for case in cases], seq=True)


def wait_for(data) -> Node | Flow:
    condition = spaced(data, data.draw(st.sampled_from(EXPRESSIONS)))
    at_most = data.draw(st.sampled_from(["3d", "12h"]))
    if data.draw(st.booleans()):
        return flow_mapping(data, [("for", flow_scalar(data, condition)), ("at_most", at_most)])
    return mapping(data, {"for": Scalar(quoted(data, condition)), "at_most": Scalar(at_most)}, {})


def steps(data) -> Node:
    items = []
    for i in range(data.draw(st.integers(1, 4))):
        kinds = ["wait", "until", "wait_for", "branch", "email", "sms", "popup", "activity", "letter"]
        kind = data.draw(st.sampled_from(kinds))
        step_id = {"id": Scalar(f"step-{i}")}
        if kind in ("wait", "until", "wait_for"):
            if kind == "wait":
                wait: Node | Flow | Scalar = Scalar(data.draw(st.sampled_from(["3d", "12h", "2w"])))
            elif kind == "until":
                wait = Flow('{until: "09:00"}')
            else:
                wait = wait_for(data)
            named = data.draw(st.booleans())
            optional = {"renamed_from": renamed_from(data)} if named else {}
            items.append((None, mapping(data, {"wait": wait, **(step_id if named else {})}, optional)))
            continue
        if kind == "branch":
            items.append((None, mapping(data, {**step_id, "branch": branch(data, i)}, {"renamed_from": renamed_from(data)})))
            continue
        if kind == "email":
            body = Block(["Hi {{ partner.name }},", "", "  indented # not a comment", "bye"], data.draw(st.sampled_from(["", "-", "+"])))
            action = mapping(data, {"subject": Scalar(quoted(data, "Hi {{ partner.name }}")), "body": body}, {})
        elif kind == "sms":
            action = Flow("{text: " + json.dumps("Hi #1") + "}")
        elif kind == "popup":
            action = mapping(data, {"pages": Flow("[dashboard, deals]"), "title": Scalar("T"), "body": Scalar(quoted(data, "B: x"))}, {})
        elif kind == "activity":
            ok = flow_mapping(data, [("result", "successful"), ("goto", "end")]) if data.draw(st.booleans()) else Flow("{result: successful}")
            responses = Node([("ok", ok), ("later", Flow("{follow_up: nurture, result: postponed}"))])
            action = mapping(data, {"kind": Scalar("call")}, {"subject": Scalar("S"), "responses": responses})
        else:
            action = Flow("{template: letter.txt.j2}")
        optional = {"when": expression(data), "renamed_from": renamed_from(data)}
        items.append((None, mapping(data, {**step_id, kind: action}, optional)))
    return Node(items, seq=True)


def campaign(data) -> Node:
    audience = mapping(
        data,
        {},
        {
            "rulesets": mapping(data, {name: expression(data) for name in data.draw(st.lists(st.sampled_from(["gold", "big", "vip", "z1"]), unique=True, max_size=3))}, {}),
            "groups": data.draw(st.sampled_from([Flow("[summit-2026]"), Node([(None, Scalar("a")), (None, Scalar("b"))], seq=True)])),
            "exclude": expression(data),
            "dedupe": Flow("[email]"),
            "include_test": Scalar(data.draw(st.sampled_from(["true", "false"]))),
        },
    )
    trigger = data.draw(
        st.sampled_from(
            [
                lambda: Node([("audience", Scalar("true"))]),
                lambda: Node([("at", Scalar("2026-08-20T10:00"))]),
                lambda: Node([("cron", Scalar('"0 9 * * MON"'))]),
                lambda: mapping(data, {"event": Scalar("invoice.payment_failed")}, {"when": expression(data, ["event.amount > 100"])}),
            ]
        )
    )()
    top = {
        "name": Scalar(quoted(data, data.draw(WORDS))),
        "description": data.draw(
            st.sampled_from(
                [
                    Scalar(quoted(data, "A description: with a colon")),
                    Multi(["A description", "over two lines"]),
                    Multi(['"A quoted # description', "", 'over three lines"']),
                ]
            )
        ),
        "owner": Scalar("ops@example.com"),
        "active": Scalar(data.draw(st.sampled_from(["true", "false"]))),
        "window": data.draw(st.sampled_from([Flow("{start: 2026-07-01, end: 2026-12-31}"), Node([("end", Scalar("2026-12-31")), ("start", Scalar("2026-07-01"))])])),
        "timezone": Scalar("Europe/Helsinki"),
        "audience": audience,
        "trigger": trigger,
        "reenroll": Scalar(data.draw(st.sampled_from(["never", "after_exit", "90d"]))),
        "exclusive": Scalar("true"),
        "previously_treated": Scalar(data.draw(st.sampled_from(["include", "exclude", "30d"]))),
        "exit_when": expression(data),
        "exit_on_audience_loss": Scalar("false"),
        "steps": steps(data),
        "monitor": Node([("alert", Flow("[ops@example.com]")), ("in_campaign_min", Scalar("80%"))]),
    }
    return mapping(data, {}, top)


def decorate(data, node: Node) -> None:
    """Random comments above entries, at line ends and closing blocks; also in children."""
    for i, (_, value) in enumerate(node.entries):
        if data.draw(st.integers(0, 3)) == 0:
            node.before[i] = data.draw(st.lists(st.one_of(COMMENT_TEXT, st.just("")), min_size=1, max_size=3))
        if data.draw(st.integers(0, 2)) == 0:
            node.eol[i] = data.draw(COMMENT_TEXT)
            if not isinstance(value, Block) and data.draw(st.integers(0, 3)) == 0:
                node.continued[i] = data.draw(st.lists(COMMENT_TEXT, min_size=1, max_size=2))
        if isinstance(value, Node):
            decorate(data, value)
    if node.entries and data.draw(st.integers(0, 5)) == 0:
        node.closing = data.draw(st.lists(COMMENT_TEXT, min_size=1, max_size=2))


def render(data, root: Node, header: list[str], trailer: list[str]) -> str:
    indent = data.draw(st.sampled_from([2, 3, 4]))
    indentless = data.draw(st.booleans())  # `key:\n- item` rather than `key:\n  - item`
    lines: list[str] = list(header)

    def comment_lines(texts: list[str], col: int) -> None:
        for text in texts:
            lines.append(" " * col + text if text else "")

    def continued(i: int, node: Node, line: str) -> None:
        if i in node.eol and i in node.continued:
            column = line.rindex(node.eol[i])
            comment_lines(node.continued[i], column)

    def emit(node: Node, col: int, first_prefix: str | None = None) -> None:
        """Entries at ``col``; ``first_prefix`` is the `- ` line start of a sequence item."""
        for i, (key, value) in enumerate(node.entries):
            prefix = None
            if i == 0 and first_prefix is not None:
                prefix = first_prefix
            elif i in node.before:
                comment_lines(node.before[i], data.draw(st.sampled_from([col, 0])))
            eol = f"  {node.eol[i]}" if i in node.eol else ""
            start = prefix if prefix is not None else " " * col
            if node.seq:
                if isinstance(value, Node) and not value.seq:
                    emit(value, col + 2, start + "- ")
                    continue
                head = start + "- "
            else:
                head = start + f"{key}:"
            if isinstance(value, (Scalar, Flow)):
                sep = "" if node.seq else " "
                lines.append(head + sep + value.text + eol)
            elif isinstance(value, Multi):
                lines.append(head + ("" if node.seq else " ") + value.lines[0])
                lines.extend(" " * (col + indent) + text if text else "" for text in value.lines[1:-1])
                lines.append(" " * (col + indent) + value.lines[-1] + eol)
            elif isinstance(value, Block):
                lines.append(head + ("" if node.seq else " ") + "|" + value.chomp + eol)
                for text in value.lines:
                    lines.append(" " * (col + indent) + text if text else "")
                if value.chomp == "+":
                    lines.append("")
            else:
                lines.append(head.rstrip() + eol)
                continued(i, node, lines[-1])
                child = col if value.seq and indentless and not node.seq else col + indent
                emit(value, child)
                continue
            continued(i, node, lines[-1])
        if node.closing:
            comment_lines(node.closing, col)

    # Comments above the first entry would make a header; give it its own.
    root.before.pop(0, None)
    emit(root, 0)
    lines.extend(trailer)
    return "\n".join(lines) + "\n"


@st.composite
def campaign_files(draw) -> str:
    class Data:
        def draw(self, strategy):
            return draw(strategy)

    data = Data()
    root = campaign(data)
    if isinstance(root, Flow):
        root = Node([])
    decorate(data, root)
    header = draw(st.lists(COMMENT_TEXT, max_size=2))
    if header and draw(st.booleans()):
        header.append("")
    trailer = draw(st.lists(st.one_of(COMMENT_TEXT, st.just("")), max_size=2))
    return render(data, root, header, trailer)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(campaign_files())
def test_generated_campaigns_keep_model_and_comments_and_are_stable(text: str):
    model = campaign_model(text)  # the generator writes valid campaigns
    formatted = format_campaign(text, "gen.yaml")
    assert format_campaign(formatted, "gen.yaml") == formatted
    assert campaign_model(formatted) == model
    assert comment_set(formatted) == comment_set(text)
    keys = top_keys(formatted) if yaml.safe_load(formatted) else []
    assert keys == [k for k in SPEC_ORDER if k in keys]
    for step in (yaml.safe_load(formatted) or {}).get("steps", []):
        assert_flow_keys_in_order(step)


STEP_ORDER = ["id", "renamed_from", "when", "email", "sms", "popup", "activity", "letter"]
WAIT_ORDER = ["id", "renamed_from", "wait"]
BRANCH_ORDER = ["id", "renamed_from", "branch"]


def assert_flow_keys_in_order(step: dict) -> None:
    """A step's keys, and those of its wait-for, cases and responses, in the canonical order."""

    def in_order(mapping: dict, order: list[str]) -> None:
        assert list(mapping) == [k for k in order if k in mapping], (list(mapping), order)

    order = WAIT_ORDER if "wait" in step else BRANCH_ORDER if "branch" in step else STEP_ORDER
    in_order(step, order)
    if isinstance(step.get("wait"), dict):
        in_order(step["wait"], ["for", "at_most"] if "for" in step["wait"] else ["until"])
    for case in step.get("branch", []):
        in_order(case, ["when", "goto", "else"])
    for response in (step.get("activity") or {}).get("responses", {}).values():
        in_order(response, ["result", "follow_up", "goto"])


def test_the_step_models_list_their_fields_in_the_canonical_order():
    def keys(model) -> list[str]:
        return [info.alias or name for name, info in model.model_fields.items()]

    assert keys(Step) == STEP_ORDER
    assert keys(Wait) == WAIT_ORDER
    assert keys(Branch) == BRANCH_ORDER
    assert keys(WaitFor) == ["for", "at_most"]
    assert keys(Case) == ["when", "goto", "else"]
    assert keys(Response) == ["result", "follow_up", "goto"]
