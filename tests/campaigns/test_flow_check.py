"""The flow's static checks (SPEC §11): jumps go forward to a step of the campaign or `end`, a
wait-for's condition can change, every step can be reached, renames name ids the file no longer
has; each problem at its own line and column, all of them in one run of `engine check`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from campaigns.flow import END, flow_of
from campaigns.workspace import load_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

HEAD = """\
name: T
description: flow checks
audience:
  rulesets:
    everyone: partner.revenue >= 0
steps:
"""


def problems(tmp_path: Path, steps: str) -> list[tuple[str, int, int, str]]:
    """(severity, line, col, message) of the campaign's diagnostics, launch checklist aside."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine", "campaigns"))
    (root / "campaigns").mkdir()
    (root / "campaigns" / "flow.yaml").write_text(HEAD + steps)
    workspace = load_workspace(root, check_partners=False)
    return [(d.severity, d.span.line, d.span.col, d.message) for d in workspace.diagnostics
            if d.span.path.endswith("flow.yaml") and "base_url" not in d.message and "unsubscribe" not in d.message]


LETTER = "  - id: {}\n    letter: {{template: letter.txt.j2}}\n"


def letters(*ids: str) -> str:
    return "".join(LETTER.format(i) for i in ids)


def test_a_well_formed_flow_has_no_problems(tmp_path):
    steps = ("  - id: route\n    branch:\n      - {when: partner.revenue > 10, goto: b}\n      - {else: end}\n"
             + letters("a") + "  - id: w\n    wait: {for: partner.revenue > 5, at_most: 3d}\n" + letters("b"))
    # `a` is jumped over by every path: a warning, not an error
    assert problems(tmp_path, steps) == [("warning", 11, 9, "this step is never reached: every path before it jumps past it"),
                                         ("warning", 13, 9, "this step is never reached: every path before it jumps past it")]


def test_jumps_backwards_to_themselves_and_to_unknown_steps_are_errors_at_their_target(tmp_path):
    steps = (letters("a") + "  - id: route\n    branch:\n"
             "      - {when: partner.revenue > 10, goto: a}\n"
             "      - {when: partner.revenue > 20, goto: route}\n"
             "      - {when: partner.revenue > 30, goto: bb}\n" + letters("b"))
    assert problems(tmp_path, steps) == [
        ("error", 11, 44, "a branch cannot jump back to step 'a' (line 7): jumps only go forward, to a later step or end"),
        ("error", 12, 44, "a branch cannot jump to itself: jumps only go forward, to a later step or end"),
        ("error", 13, 44, "unknown step 'bb'; did you mean 'b'?: a branch jumps to a step id of this campaign or to end"),
    ]


def test_a_response_goto_must_go_forward_too(tmp_path):
    steps = (letters("a") + "  - id: call\n    activity:\n      kind: call\n      responses:\n"
             "        again: {result: postponed, goto: a}\n        done: {result: successful, goto: end}\n")
    assert problems(tmp_path, steps) == [
        ("error", 13, 42, "a response cannot jump back to step 'a' (line 7): jumps only go forward, to a later step or end")]


def test_a_wait_for_whose_condition_can_never_change_is_an_error(tmp_path):
    steps = letters("a") + "  - wait: {for: 1 == 1, at_most: 3d}\n" + letters("b")
    (severity, line, col, message), = problems(tmp_path, steps)
    assert (severity, line, col) == ("error", 9, 17)
    assert message.startswith("this condition can never change")


def test_a_wait_for_needs_at_most_and_its_condition_type_checks(tmp_path):
    steps = letters("a") + "  - wait: {for: partner.revenue}\n  - wait: {for: partner.revnue > 1, at_most: 1d}\n"
    found = problems(tmp_path, steps)
    assert ("error", 9, 12, "missing required key 'at_most'") in found
    assert ("error", 10, 25, "unknown field 'revnue' of partner; did you mean 'revenue'?") in found


def test_renamed_from_must_name_an_id_the_file_no_longer_has(tmp_path):
    steps = (letters("a") + "  - id: b\n    renamed_from: a\n    letter: {template: letter.txt.j2}\n"
             "  - id: c\n    renamed_from: [old, gone]\n    letter: {template: letter.txt.j2}\n"
             "  - id: d\n    renamed_from: old\n    letter: {template: letter.txt.j2}\n")
    assert problems(tmp_path, steps) == [
        ("error", 10, 19, "'a' is the id of a step of this campaign (line 7): renamed_from names an id the file no longer has"),
        ("error", 16, 19, "'old' is renamed twice (also on line 12)"),
    ]


def test_end_is_reserved_and_wait_ids_share_the_step_ids_namespace(tmp_path):
    steps = letters("a") + "  - id: a\n    wait: 1d\n  - id: end\n    letter: {template: letter.txt.j2}\n"
    found = problems(tmp_path, steps)
    assert ("error", 9, 9, "duplicate step id 'a' (first used on line 7)") in found
    assert ("error", 11, 9, "'end' is not a step id: it is the jump target that finishes the enrollment") in found


@pytest.mark.parametrize("steps, keys", [
    ("  - wait: {for: partner.revenue > 1, at_most: 1d}\n", ["wait@start"]),
    (letters("a") + "  - wait: 1d\n  - wait: {for: partner.revenue > 1, at_most: 1d}\n"
     "  - wait: {for: partner.revenue > 2, at_most: 1d}\n", ["a", "wait@a", "wait@a.2"]),
])
def test_a_wait_for_without_an_id_is_named_after_the_step_before_it(tmp_path, steps, keys):
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine", "campaigns"))
    (root / "campaigns").mkdir()
    (root / "campaigns" / "flow.yaml").write_text(HEAD + steps)
    campaign = load_workspace(root, check_partners=False).campaigns["flow"]
    assert [n.key for n in flow_of(campaign).positions] == keys


def test_jumped_over_lists_the_positions_between_origin_and_target(tmp_path):
    steps = ("  - id: route\n    branch:\n      - {when: partner.revenue > 10, goto: pause}\n"
             + letters("a") + "  - wait: {for: partner.revenue > 5, at_most: 3d}\n  - id: pause\n    wait: 1d\n"
             + letters("b"))
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine", "campaigns"))
    (root / "campaigns").mkdir()
    (root / "campaigns" / "flow.yaml").write_text(HEAD + steps)
    flow = flow_of(load_workspace(root, check_partners=False).campaigns["flow"])
    assert [n.key for n in flow.jumped_over("route", "pause")] == ["a", "wait@a"]
    assert [n.key for n in flow.jumped_over("route", END)] == ["a", "wait@a", "b"]
    assert [n.key for n in flow.jumped_over("a", "b", inclusive=True)] == ["a", "wait@a"]
    assert flow.is_before("a", "b") and flow.is_before("b", "b") and not flow.is_before("b", "a")
    assert flow.is_before("b", END) and not flow.is_before(None, END)


@pytest.mark.parametrize("setting, message", [
    ("  timezone_field: zone\n", "timezone_field names no partner field: 'zone' is not in partners.fields; did you mean 'phone'?"),
    ("  timezone_field: revenue\n", "timezone_field 'revenue' must be a string field holding an IANA zone such as "
                                    "Europe/Helsinki, not a number field"),
])
def test_timezone_field_names_a_string_field(tmp_path, setting, message):
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine"))
    settings = root / "engine.yaml"
    settings.write_text(settings.read_text().replace("  id: id ", setting + "  id: id "))
    found = [(d.span.line, d.message) for d in load_workspace(root, check_partners=False).diagnostics
             if d.severity == "error"]
    assert found == [(9, message)]
