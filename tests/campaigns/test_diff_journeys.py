"""engine diff and the flow keys: renames (`renamed_from`) as one change, branches, id'd waits,
waits-for and response gotos diffed like any other content."""

from __future__ import annotations

import json
import textwrap

from campaigns.diff import Change, diff_campaigns, render, textconv
from engine.cli import main
from tests.campaigns.test_diff import edit as edit_text, line_of

BASE = textwrap.dedent("""\
    name: Journeys
    audience:
      rulesets:
        all: "true"
    steps:
      - id: welcome
        email: {subject: Welcome, body: Hi}
      - wait: 2d
      - id: reminder
        email: {subject: Did you see it?, body: Hi}
      - wait: {for: opened("welcome"), at_most: 3d}
      - id: collector-call
        activity:
          kind: call
          subject: Call
          responses:
            disputed: {result: unsuccessful, goto: dispute-letter}
            paid: {result: successful, follow_up: thanks, goto: end}
      - id: route
        branch:
          - {when: response("collector-call") == "disputed", goto: dispute-letter}
          - {when: opened("welcome"), goto: upsell}
          - {else: end}
      - id: wait-open
        wait: {for: opened("welcome") or clicked("welcome"), at_most: 3d}
      - id: upsell
        sms: {text: More?}
      - id: dispute-letter
        letter: {template: dispute.txt.j2}
    """)


def edit(old: str, new: str, text: str = BASE) -> str:
    return edit_text(old, new, text)


def changes(old: str, new: str) -> list[tuple]:
    return [(c.kind, c.path, c.old, c.new) for c in diff_campaigns(old, new)]


def test_the_same_journey_has_no_changes_and_defaults_stay_out() -> None:
    assert diff_campaigns(BASE, BASE) == []
    flat = textconv(BASE)
    assert "renamed_from" not in flat
    assert "steps.route.branch[2].goto = \"upsell\"" in flat.splitlines()
    assert "steps.route.branch[1].when = response(\"collector-call\") == \"disputed\"" in flat.splitlines()
    assert "steps.wait[after reminder].at_most = \"3d\"" in flat.splitlines()
    assert "steps.wait-open.wait.for = opened(\"welcome\") or clicked(\"welcome\")" in flat.splitlines()
    # a wait-for is compared by value: 72h is 3d, quoting and spacing are no change
    same = edit('  - wait: {for: opened("welcome"), at_most: 3d}',
                "  - wait: {for: \"opened('welcome')\", at_most: 72h}")
    assert diff_campaigns(BASE, same) == []
    assert diff_campaigns(BASE, edit("      - {else: end}", "      - else: end")) == []


def test_a_rename_is_one_change() -> None:
    new = edit("  - id: reminder\n", "  - id: second-look\n    renamed_from: reminder\n")
    result = diff_campaigns(BASE, new)
    line = line_of(new, "id: second-look")
    assert result == [Change("steps.second-look", "renamed", "reminder", "second-look", line)]
    # the wait-for without an id that follows it keeps its name
    assert "steps.wait[after second-look].at_most = \"3d\"" in textconv(new).splitlines()
    assert render(result) == f'» steps.second-look (line {line_of(new, "id: second-look")}): renamed from "reminder"'
    assert result[0].to_json() == {"path": "steps.second-look", "kind": "renamed", "old": "reminder",
                                   "new": "second-look", "line": line_of(new, "id: second-look")}
    # a list of old ids, one of them the old file's: the other one is a change of renamed_from
    listed = edit("  - id: reminder\n", "  - id: second-look\n    renamed_from: [first-look, reminder]\n")
    assert changes(BASE, listed) == [("renamed", "steps.second-look", "reminder", "second-look"),
                                     ("changed", "steps.second-look.renamed_from", [], ["first-look"])]
    # without renamed_from: a removal and an addition, as before
    plain = edit("  - id: reminder\n", "  - id: second-look\n")
    assert [c[:2] for c in changes(BASE, plain)] == [
        ("removed", "steps.reminder"), ("removed", "steps.wait[after reminder]"),
        ("added", "steps.second-look"), ("added", "steps.wait[after second-look]")]


def test_a_renamed_step_shows_its_own_changes_and_its_move() -> None:
    new = edit("  - id: reminder\n    email: {subject: Did you see it?, body: Hi}\n",
               "  - id: second-look\n    renamed_from: reminder\n    email: {subject: One more look, body: Hi}\n")
    new = edit("      - {else: end}", "      - {else: second-look}", new)
    assert changes(BASE, new) == [
        ("renamed", "steps.second-look", "reminder", "second-look"),
        ("changed", "steps.second-look.email.subject", "Did you see it?", "One more look"),
        ("changed", "steps.route.branch[3].else", "end", "second-look"),
    ]
    # moved and renamed: both reported, then the content
    reminder = "  - id: reminder\n    email: {subject: Did you see it?, body: Hi}\n"
    moved = edit(reminder, "")
    moved = edit("  - id: upsell\n", "  - id: nudge\n    renamed_from: reminder\n"
                 "    email: {subject: Did you see it?, body: Hi}\n  - id: upsell\n", moved)
    steps = [(c.kind, c.path, c.old, c.new) for c in diff_campaigns(BASE, moved) if "wait[" not in c.path]
    assert steps == [("renamed", "steps.nudge", "reminder", "nudge"), ("moved", "steps.nudge", 3, 7)]


def test_an_idd_wait_is_renamed_like_a_step() -> None:
    new = edit("  - id: wait-open\n", "  - id: wait-engaged\n    renamed_from: wait-open\n")
    new = edit("clicked(\"welcome\"), at_most: 3d}", "clicked(\"welcome\"), at_most: 5d}", new)
    assert changes(BASE, new) == [
        ("renamed", "steps.wait-engaged", "wait-open", "wait-engaged"),
        ("changed", "steps.wait-engaged.wait.at_most", "3d", "5d"),
    ]


def test_a_new_branch_is_added() -> None:
    route = "  - id: check\n    branch:\n      - {when: clicked(\"welcome\"), goto: upsell}\n"
    new = edit("  - id: reminder\n", route + "  - id: reminder\n")
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("added", "steps.check", None, {"branch": [{"when": 'clicked("welcome")', "goto": "upsell"}]}),
    ]
    assert result[0].line == line_of(new, "id: check")
    text = render(result)
    assert text == (f'+ steps.check (line {line_of(new, "id: check")}): '
                    '{"branch": [{"when": "clicked(\\"welcome\\")", "goto": "upsell"}]}')


def test_branch_cases_gotos_and_waits_for_change_one_by_one() -> None:
    new = edit("goto: upsell}", "goto: dispute-letter}")
    new = edit('{when: opened("welcome"), goto: dispute', "{when: 'clicked(\"welcome\")', goto: dispute", new)
    new = edit("disputed: {result: unsuccessful, goto: dispute-letter}", "disputed: {result: unsuccessful, goto: end}",
               new)
    new = edit("follow_up: thanks, goto: end}", "follow_up: thanks}", new)
    new = edit('  - wait: {for: opened("welcome"), at_most: 3d}', '  - wait: {for: opened("welcome"), at_most: 1w}',
               new)
    new = edit("      - {else: end}\n", "", new)
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("changed", "steps.wait[after reminder].at_most", "3d", "1w"),
        ("changed", "steps.collector-call.activity.responses.disputed.goto", "dispute-letter", "end"),
        ("removed", "steps.collector-call.activity.responses.paid.goto", "end", None),
        ("changed", "steps.route.branch[2].when", 'opened("welcome")', 'clicked("welcome")'),
        ("changed", "steps.route.branch[2].goto", "upsell", "dispute-letter"),
        ("removed", "steps.route.branch[3]", {"else": "end"}, None),
    ]
    assert result[1].line == line_of(new, "disputed:")
    # a wait changing its kind is one value
    kind = edit('  - wait: {for: opened("welcome"), at_most: 3d}', "  - wait: 3d")
    assert changes(BASE, kind) == [
        ("changed", "steps.wait[after reminder]", {"for": 'opened("welcome")', "at_most": "3d"}, "3d")]


def test_cli_text_and_json(tmp_path, capsys) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text(BASE, encoding="utf-8")
    new.write_text(edit("  - id: reminder\n", "  - id: second-look\n    renamed_from: reminder\n"), encoding="utf-8")
    assert main(["-w", str(tmp_path), "diff", str(old), str(new), "--json"]) == 0
    line = line_of(new.read_text(), "id: second-look")
    assert json.loads(capsys.readouterr().out) == {"changes": [
        {"path": "steps.second-look", "kind": "renamed", "old": "reminder", "new": "second-look", "line": line}]}
    assert main(["-w", str(tmp_path), "diff", str(old), str(new)]) == 0
    assert capsys.readouterr().out == f'» steps.second-look (line {line}): renamed from "reminder"\n'
