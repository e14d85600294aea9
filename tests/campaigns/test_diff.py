"""engine diff's library: the semantic diff of two campaign files, git revisions, textconv."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from dsl.diagnostics import SourceError
from campaigns.diff import Change, diff_campaigns, load_revision, render, textconv
from dsl.yamlload import load_yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "campaigns").glob("*.yaml"))

BASE = textwrap.dedent("""\
    # A campaign for the diff tests.
    name: Onboarding
    description: Welcome new partners.
    active: true
    window: {start: 2026-07-01, end: 2026-12-31}

    audience:
      rulesets:
        gold-fi: partner.tier in ["gold", "platinum"] and partner.country == "FI"
        big-spenders: partner.revenue >= 100000
      groups: [summit-2026]
      exclude: partner.active == false

    trigger:
      cron: "0 9 * * MON"

    exclusive: true

    steps:
      - id: welcome
        email:
          subject: "Welcome, {{ partner.name }}"
          template: welcome.html.j2
          translations:
            fi: {subject: "Tervetuloa, {{ partner.name }}", template: welcome.fi.html.j2}
      - wait: 3d
      - id: reminder
        when: not opened("welcome")
        email:
          subject: "Did you see our welcome?"
          body: "Hi {{ partner.name }}"
      - wait: {until: "09:00"}
      - id: intro-call
        activity:
          kind: call
          assignee: "{{ partner.account_manager }}"
          subject: Intro call
          responses:
            interested: {result: successful, follow_up: demo-invite}
            not-now: {result: postponed, follow_up: nurture}
            declined: {result: unsuccessful}
      - id: nudge
        sms: {text: "Hi {{ partner.name }}"}

    monitor:
      in_campaign_min: 90%
      alert: [ops@example.com]
    """)


def edit(old: str, new: str, text: str = BASE) -> str:
    """``text`` with ``old`` (which must occur once) replaced by ``new``."""
    assert text.count(old) == 1, old
    return text.replace(old, new)


def line_of(text: str, fragment: str) -> int:
    """The 1-based line on which ``fragment`` (occurring once) starts."""
    assert text.count(fragment) == 1, fragment
    return text[: text.index(fragment)].count("\n") + 1


def changes(old: str, new: str) -> list[tuple]:
    return [(c.kind, c.path, c.old, c.new) for c in diff_campaigns(old, new)]


# --- No changes --------------------------------------------------------------------------------


def test_same_file_has_no_changes() -> None:
    assert diff_campaigns(BASE, BASE) == []
    for path in EXAMPLES:
        text = path.read_text()
        assert diff_campaigns(text, text) == [], path.name


REFORMATTED = textwrap.dedent("""\
    monitor: {alert: ops@example.com, in_campaign_min: 90}   # one address, a plain number
    steps:
    -   id: welcome
        email:
            translations:
                fi:
                    template: 'welcome.fi.html.j2'
                    subject: 'Tervetuloa, {{ partner.name }}'
            template: "welcome.html.j2"
            subject: 'Welcome, {{ partner.name }}'
    -   wait: 72h                     # the same three days
    -   email: {body: "Hi {{ partner.name }}", subject: Did you see our welcome?}
        when: "not  opened( 'welcome' )"
        id: reminder
    -   wait:
            until: '9:00'
    -   activity:
            responses:
                declined: {result: unsuccessful}
                not-now: {follow_up: nurture, result: postponed}
                interested:
                    follow_up: demo-invite
                    result: successful
            subject: "Intro call"
            assignee: "{{ partner.account_manager }}"
            kind: call
        id: intro-call
    -   id: nudge
        sms:
            text: >-
                Hi {{ partner.name }}
    exclusive: yes
    trigger: {cron: 0 9 * * MON}
    audience:
        exclude: "partner.active==false"
        groups:
        - summit-2026
        rulesets:
            big-spenders: |-
                partner.revenue >=
                    100000
            gold-fi: >-
                (partner.tier in ['gold','platinum'])
                and (partner.country == 'FI')
    window:
        end: "2026-12-31"
        start: 2026-07-01
    description: "Welcome new partners."
    name: 'Onboarding'
    """)


def test_formatting_is_no_change() -> None:
    """Key order, indentation, quoting, flow vs block style, comments, expression spacing,
    redundant parentheses, quote style of string literals, spelling of durations, times,
    percentages and booleans, and writing a default explicitly: none of them is a change."""
    assert diff_campaigns(BASE, REFORMATTED) == []
    assert diff_campaigns(REFORMATTED, BASE) == []
    assert textconv(BASE) == textconv(REFORMATTED)


@pytest.mark.parametrize("old, new", [
    ("name: Onboarding\n", "name: Onboarding   # the campaign's display name\n"),
    ('gold-fi: partner.tier in ["gold", "platinum"] and partner.country == "FI"',
     "gold-fi: \"partner.tier  in  ['gold','platinum']   and partner.country=='FI'\""),
    ("big-spenders: partner.revenue >= 100000", "big-spenders: (partner.revenue >= 100000)"),
    ("  - wait: 3d\n", "  - wait: 3d\n    # then a reminder\n"),
    ("exclusive: true\n", "exclusive: 'true'\n"),
    ("active: true\n", ""),  # the default
    ("description: Welcome new partners.\n", "description: 'Welcome new partners.'\n"),
    ('      subject: "Did you see our welcome?"', "      subject: 'Did you see our welcome?'"),
    ("window: {start: 2026-07-01, end: 2026-12-31}", "window:\n  end: 2026-12-31\n  start: '2026-07-01'"),
])
def test_single_formatting_edits_are_no_change(old: str, new: str) -> None:
    assert diff_campaigns(BASE, edit(old, new)) == []


def sorted_keys(data, keep_order: bool = False):
    """The data with every mapping's keys sorted, except those of ``variants`` and ``split``:
    their order means something (weights are taken in file order), so sorting them is a change."""
    if isinstance(data, dict):
        items = data.items() if keep_order else sorted(data.items(), key=lambda kv: str(kv[0]))
        return {k: sorted_keys(v, k in ("variants", "split")) for k, v in items}
    if isinstance(data, list):
        return [sorted_keys(v) for v in data]
    return data


def test_yaml_dumps_of_the_examples_have_no_changes() -> None:
    """Each example re-serialised: sorted keys, another layout, every comment gone."""
    for path in EXAMPLES:
        text = path.read_text()
        dumped = yaml.safe_dump(sorted_keys(load_yaml(str(path), text).data), sort_keys=False, allow_unicode=True,
                                default_flow_style=True, width=60)
        assert diff_campaigns(text, dumped) == [], path.name


def test_a_comment_keeping_round_trip_with_another_indentation_has_no_changes() -> None:
    """What `engine fmt` does (ruamel.yaml round trip, keys and comments kept)."""
    ruamel = pytest.importorskip("ruamel.yaml")
    for path in EXAMPLES:
        text = path.read_text()
        handler = ruamel.YAML()
        handler.indent(mapping=4, sequence=6, offset=4)
        handler.width = 4096
        out = io.StringIO()
        handler.dump(handler.load(text), out)
        assert out.getvalue() != text
        assert diff_campaigns(text, out.getvalue()) == [], path.name


# --- Audience ----------------------------------------------------------------------------------


def test_rulesets_added_removed_changed() -> None:
    new = edit("    big-spenders: partner.revenue >= 100000\n",
               "    big-spenders: partner.revenue>=250000\n    vip: contains(partner.tags, 'vip')\n")
    new = edit('    gold-fi: partner.tier in ["gold", "platinum"] and partner.country == "FI"\n', "", new)
    assert changes(BASE, new) == [
        ("changed", "audience.rulesets.big-spenders", "partner.revenue >= 100000", "partner.revenue >= 250000"),
        ("removed", "audience.rulesets.gold-fi",
         'partner.tier in ["gold", "platinum"] and partner.country == "FI"', None),
        ("added", "audience.rulesets.vip", None, 'contains(partner.tags, "vip")'),
    ]
    by_path = {c.path: c for c in diff_campaigns(BASE, new)}
    assert by_path["audience.rulesets.big-spenders"].line == line_of(new, "big-spenders")
    assert by_path["audience.rulesets.vip"].line == line_of(new, "vip:")
    assert by_path["audience.rulesets.gold-fi"].line == line_of(BASE, "gold-fi")  # in the old file


def test_groups_and_exclude() -> None:
    new = edit("  groups: [summit-2026]\n", "  groups: [summit-2026, webinar]\n")
    new = edit("  exclude: partner.active == false\n", "", new)
    assert changes(BASE, new) == [
        ("changed", "audience.groups", ["summit-2026"], ["summit-2026", "webinar"]),
        ("removed", "audience.exclude", "partner.active == false", None),
    ]


def test_a_ruleset_name_that_is_not_a_plain_word_is_quoted() -> None:
    new = edit("    big-spenders:", '    "big spenders.eu":')
    assert changes(BASE, new) == [
        ("removed", "audience.rulesets.big-spenders", "partner.revenue >= 100000", None),
        ("added", 'audience.rulesets["big spenders.eu"]', None, "partner.revenue >= 100000"),
    ]


# --- Trigger, window, top-level fields ---------------------------------------------------------


def test_trigger_changed_and_switched() -> None:
    new = edit('  cron: "0 9 * * MON"', '  cron: "0 10 * * MON"')
    [change] = diff_campaigns(BASE, new)
    assert (change.kind, change.path, change.old, change.new) == ("changed", "trigger.cron", "0 9 * * MON", "0 10 * * MON")
    assert change.line == line_of(new, "cron:")

    new = edit('  cron: "0 9 * * MON"', "  event: invoice.payment_failed\n  when: event.amount>100")
    assert changes(BASE, new) == [
        ("removed", "trigger.cron", "0 9 * * MON", None),
        ("added", "trigger.event", None, "invoice.payment_failed"),
        ("added", "trigger.when", None, "event.amount > 100"),
    ]


def test_trigger_removed_and_added_whole() -> None:
    new = edit('trigger:\n  cron: "0 9 * * MON"\n', "")
    assert changes(BASE, new) == [("removed", "trigger", {"cron": "0 9 * * MON"}, None)]
    assert changes(new, BASE) == [("added", "trigger", None, {"cron": "0 9 * * MON"})]


def test_window() -> None:
    new = edit("window: {start: 2026-07-01, end: 2026-12-31}", "window: {start: 2026-07-01, end: 2027-01-31}")
    [change] = diff_campaigns(BASE, new)
    assert (change.kind, change.path, change.old, change.new) == ("changed", "window.end", "2026-12-31", "2027-01-31")
    assert change.line == line_of(new, "window:")
    new = edit("window: {start: 2026-07-01, end: 2026-12-31}\n", "")
    assert changes(BASE, new) == [("removed", "window", {"start": "2026-07-01", "end": "2026-12-31"}, None)]


def test_top_level_fields_and_defaults() -> None:
    new = edit("name: Onboarding", "name: Partner onboarding")
    new = edit("exclusive: true\n", "", new)  # back to the default
    new = edit("monitor:\n", "reenroll: 90d\n\nmonitor:\n", new)
    new = edit("  in_campaign_min: 90%", "  in_campaign_min: 80%", new)
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("changed", "name", "Onboarding", "Partner onboarding"),
        ("changed", "reenroll", "never", "90d"),
        ("changed", "exclusive", True, False),
        ("changed", "monitor.in_campaign_min", "90%", "80%"),
    ]
    lines = {c.path: c.line for c in result}
    assert lines["name"] == line_of(new, "name:")
    assert lines["reenroll"] == line_of(new, "reenroll:")
    assert lines["monitor.in_campaign_min"] == line_of(new, "in_campaign_min")
    assert lines["exclusive"] >= 1  # not written any more: the nearest enclosing value


# --- Steps -------------------------------------------------------------------------------------


def test_step_field_changed_with_its_line() -> None:
    new = edit('      subject: "Did you see our welcome?"', '      subject: "Reminder: your welcome pack"')
    [change] = diff_campaigns(BASE, new)
    assert change == Change("steps.reminder.email.subject", "changed", "Did you see our welcome?",
                            "Reminder: your welcome pack", line_of(new, "Reminder: your welcome pack"))
    assert change.to_json() == {"path": "steps.reminder.email.subject", "kind": "changed",
                                "old": "Did you see our welcome?", "new": "Reminder: your welcome pack",
                                "line": line_of(new, "Reminder: your welcome pack")}


def test_step_condition_translation_and_kind() -> None:
    new = edit('    when: not opened("welcome")', '    when: not opened("welcome") and not clicked("welcome")')
    new = edit("fi: {subject: \"Tervetuloa, {{ partner.name }}\",", "fi: {subject: \"Hei, {{ partner.name }}\",", new)
    new = edit('    sms: {text: "Hi {{ partner.name }}"}', "    letter: {template: letter.txt.j2}", new)
    assert changes(BASE, new) == [
        ("changed", "steps.welcome.email.translations.fi.subject", "Tervetuloa, {{ partner.name }}",
         "Hei, {{ partner.name }}"),
        ("changed", "steps.reminder.when", 'not opened("welcome")', 'not opened("welcome") and not clicked("welcome")'),
        ("removed", "steps.nudge.sms", {"text": "Hi {{ partner.name }}"}, None),
        ("added", "steps.nudge.letter", None, {"template": "letter.txt.j2"}),
    ]


def test_step_added_and_removed() -> None:
    new = edit("  - id: nudge\n    sms: {text: \"Hi {{ partner.name }}\"}\n",
               "  - id: letter\n    letter: {template: letter.txt.j2}\n")
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("removed", "steps.nudge", {"sms": {"text": "Hi {{ partner.name }}"}}, None),
        ("added", "steps.letter", None, {"letter": {"template": "letter.txt.j2"}}),
    ]
    assert result[0].line == line_of(BASE, "id: nudge")
    assert result[1].line == line_of(new, "id: letter")


def test_renamed_step_is_removed_and_added() -> None:
    new = edit("  - id: reminder\n", "  - id: second-look\n")
    assert [(c.kind, c.path) for c in diff_campaigns(BASE, new)] == [
        ("removed", "steps.reminder"),
        ("removed", "steps.wait[after reminder]"),
        ("added", "steps.second-look"),
        ("added", "steps.wait[after second-look]"),
    ]


def test_step_moved_with_positions() -> None:
    """Moving a step to the front: the waits still follow welcome and reminder, so only the
    moved step is reported, with its old and new 1-based place in the steps list."""
    nudge = "  - id: nudge\n    sms: {text: \"Hi {{ partner.name }}\"}\n"
    new = edit(nudge, "")
    new = edit("  - id: welcome\n", nudge + "  - id: welcome\n", new)
    [change] = diff_campaigns(BASE, new)
    assert (change.kind, change.path, change.old, change.new) == ("moved", "steps.nudge", 6, 1)
    assert change.line == line_of(new, "id: nudge")


def test_only_the_steps_that_must_move_are_moved() -> None:
    """Swapping two neighbours moves one of them, and inserting a step moves nothing."""
    nudge = "  - id: nudge\n    sms: {text: \"Hi {{ partner.name }}\"}\n"
    call_start = "  - id: intro-call\n"
    new = edit(nudge, "")
    new = edit(call_start, nudge + call_start, new)
    assert changes(BASE, new) == [("moved", "steps.nudge", 6, 5)]

    inserted = edit("  - id: welcome\n", "  - id: teaser\n    sms: {text: Soon!}\n  - id: welcome\n")
    assert changes(BASE, inserted) == [("added", "steps.teaser", None, {"sms": {"text": "Soon!"}})]


def test_moved_and_changed_step_reports_both() -> None:
    nudge = "  - id: nudge\n    sms: {text: \"Hi {{ partner.name }}\"}\n"
    new = edit(nudge, "")
    new = edit("  - id: welcome\n", "  - id: nudge\n    sms: {text: \"Hello {{ partner.name }}\"}\n  - id: welcome\n", new)
    assert changes(BASE, new) == [
        ("moved", "steps.nudge", 6, 1),
        ("changed", "steps.nudge.sms.text", "Hi {{ partner.name }}", "Hello {{ partner.name }}"),
    ]


def test_activity_responses() -> None:
    new = edit("interested: {result: successful, follow_up: demo-invite}",
               "interested: {result: successful, follow_up: nurture}")
    new = edit("        declined: {result: unsuccessful}\n", "        wrong-number: {result: unsuccessful}\n", new)
    new = edit("not-now: {result: postponed, follow_up: nurture}", "not-now: {result: postponed}", new)
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("removed", "steps.intro-call.activity.responses.declined", {"result": "unsuccessful"}, None),
        ("changed", "steps.intro-call.activity.responses.interested.follow_up", "demo-invite", "nurture"),
        ("removed", "steps.intro-call.activity.responses.not-now.follow_up", "nurture", None),
        ("added", "steps.intro-call.activity.responses.wrong-number", None, {"result": "unsuccessful"}),
    ]
    assert result[1].line == line_of(new, "interested:")
    assert result[0].line == line_of(BASE, "declined:")


def test_waits_are_named_by_the_step_they_follow() -> None:
    new = edit("  - wait: 3d\n", "  - wait: 5d\n")
    new = edit('  - wait: {until: "09:00"}\n', '  - wait: {until: "10:30"}\n  - wait: 1h\n', new)
    new = edit("  - id: welcome\n", "  - wait: 2w\n  - id: welcome\n", new)
    result = diff_campaigns(BASE, new)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [
        ("added", "steps.wait[start]", None, "2w"),
        ("changed", "steps.wait[after welcome]", "3d", "5d"),
        ("changed", "steps.wait[after reminder]", {"until": "09:00"}, {"until": "10:30"}),
        ("added", "steps.wait[after reminder #2]", None, "1h"),
    ]
    assert [c.line for c in result] == [
        line_of(new, "wait: 2w"), line_of(new, "wait: 5d"), line_of(new, "10:30"), line_of(new, "wait: 1h"),
    ]
    removed = edit("  - wait: 3d\n", "")
    [change] = diff_campaigns(BASE, removed)
    assert (change.kind, change.path, change.old, change.line) == (
        "removed", "steps.wait[after welcome]", "3d", line_of(BASE, "wait: 3d"))


def test_survey_questions_by_id() -> None:
    survey = textwrap.dedent("""\
        steps:
          - id: feedback
            activity:
              kind: survey
              questions:
                - {id: q1, text: How was it?, answers: [good, bad]}
                - {id: q2, text: Again?, answers: [yes, no]}
        """)
    new = survey.replace("[good, bad]", "[good, ok, bad]").replace("- {id: q1", "- {id: q0, text: Hi?}\n        - {id: q1")
    assert changes(survey, new) == [
        ("added", "steps.feedback.activity.questions.q0", None, {"text": "Hi?"}),
        ("changed", "steps.feedback.activity.questions.q1.answers", ["good", "bad"], ["good", "ok", "bad"]),
    ]


# --- Odd inputs --------------------------------------------------------------------------------


def test_bad_yaml_raises_source_error() -> None:
    with pytest.raises(SourceError) as caught:
        diff_campaigns(BASE, "name: [unclosed\n", new_path="campaigns/x.yaml")
    assert caught.value.diagnostics[0].span.path == "campaigns/x.yaml"
    with pytest.raises(SourceError):
        diff_campaigns("name: a\nname: b\n", BASE)  # duplicate key
    with pytest.raises(SourceError):
        diff_campaigns(BASE, "- just\n- a list\n")
    with pytest.raises(SourceError):
        textconv("a: {")


def test_invalid_campaigns_are_still_diffed() -> None:
    """A file the models reject is compared as plain YAML where it does not fit them."""
    new = edit("exclusive: true\n", "exclusive: true\ncolour: blue\n")
    new = edit("    when: not opened(\"welcome\")", "    when: not opened(", new)
    assert changes(BASE, new) == [  # keys the models do not know come last
        ("changed", "steps.reminder.when", 'not opened("welcome")', "not opened("),
        ("added", "colour", None, "blue"),
    ]


def test_an_empty_file_is_no_campaign() -> None:
    added = diff_campaigns("", BASE)
    assert all(c.kind == "added" for c in added)
    assert {"name", "audience", "steps", "monitor"} <= {c.path for c in added}
    assert {c.kind for c in diff_campaigns(BASE, "# gone\n")} == {"removed"}


def test_render() -> None:
    new = edit('      subject: "Did you see our welcome?"', '      subject: "Reminder"')
    new = edit("    big-spenders: partner.revenue >= 100000\n", "", new)
    new = edit("  groups: [summit-2026]\n", "  groups: [summit-2026]\n  dedupe: [email]\n", new)
    nudge = "  - id: nudge\n    sms: {text: \"Hi {{ partner.name }}\"}\n"
    new = edit(nudge, "", new)
    new = edit("  - id: intro-call\n", nudge + "  - id: intro-call\n", new)
    text = render(diff_campaigns(BASE, new))
    assert text.splitlines() == [
        f'- audience.rulesets.big-spenders (old line {line_of(BASE, "big-spenders")}): "partner.revenue >= 100000"',
        f'~ audience.dedupe (line {line_of(new, "dedupe")}): [] → ["email"]',
        f'~ steps.reminder.email.subject (line {line_of(new, "Reminder")}): "Did you see our welcome?" → "Reminder"',
        f"↕ steps.nudge (line {line_of(new, 'id: nudge')}): position 6 → 5",
    ]
    assert render([]) == "no changes"


def test_changes_are_json_ready() -> None:
    new = REFORMATTED.replace("72h", "4d").replace("2026-12-31", "2027-06-30").replace("'platinum'", "'diamond'")
    result = diff_campaigns(BASE, new)
    document = json.loads(json.dumps({"changes": [c.to_json() for c in result]}))
    assert document["changes"] == [c.to_json() for c in result]
    assert [(c.path, c.old, c.new) for c in result] == [
        ("window.end", "2026-12-31", "2027-06-30"),
        ("audience.rulesets.gold-fi", 'partner.tier in ["gold", "platinum"] and partner.country == "FI"',
         'partner.tier in ["gold", "diamond"] and partner.country == "FI"'),
        ("steps.wait[after welcome]", "3d", "4d"),
    ]
    assert all(type(c.old) is str and type(c.new) is str for c in result)


# --- git revisions -----------------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    result = subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env,
                            capture_output=True, text=True, check=True)
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A workspace in git: the base campaign committed, then edited and committed again."""
    git(tmp_path, "init", "-q")
    (tmp_path / "campaigns").mkdir()
    (tmp_path / "engine.yaml").write_text("timezone: Europe/Helsinki\n")
    (tmp_path / "campaigns" / "x.yaml").write_text(BASE)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    (tmp_path / "campaigns" / "x.yaml").write_text(EDITED)
    git(tmp_path, "commit", "-q", "-a", "-m", "second")
    return tmp_path


# The second revision: reformatted throughout, plus exactly five changes.
EDITED = REFORMATTED
EDITED = edit("subject: Did you see our welcome?}", "subject: Did you see our welcome pack?}", EDITED)  # 1
EDITED = edit("partner.revenue >=\n                100000", "partner.revenue >=\n                250000", EDITED)  # 2
EDITED = edit('    exclude: "partner.active==false"\n', "", EDITED)  # 3
EDITED = edit("trigger: {cron: 0 9 * * MON}", "trigger: {cron: 0 8 * * MON}", EDITED)  # 4
EDITED = edit("-   id: nudge\n    sms:\n        text: >-\n            Hi {{ partner.name }}\n", "", EDITED)
EDITED = edit("-   id: welcome\n", "-   id: nudge\n    sms: {text: 'Hi {{ partner.name }}'}\n-   id: welcome\n",
              EDITED)  # 5


def test_diff_of_two_git_revisions_reports_exactly_the_changes_made(repo: Path) -> None:
    old_name, old_text = load_revision("HEAD~1:campaigns/x.yaml", repo)
    new_name, new_text = load_revision("HEAD:campaigns/x.yaml", repo)
    assert (old_name, old_text) == ("HEAD~1:campaigns/x.yaml", BASE)
    assert (new_name, new_text) == ("HEAD:campaigns/x.yaml", EDITED)
    result = diff_campaigns(old_text, new_text, old_name, new_name)
    assert [(c.kind, c.path, c.old, c.new, c.line) for c in result] == [
        ("changed", "audience.rulesets.big-spenders", "partner.revenue >= 100000", "partner.revenue >= 250000",
         line_of(EDITED, "big-spenders")),
        ("removed", "audience.exclude", "partner.active == false", None, line_of(BASE, "exclude:")),
        ("changed", "trigger.cron", "0 9 * * MON", "0 8 * * MON", line_of(EDITED, "trigger:")),
        ("moved", "steps.nudge", 6, 1, line_of(EDITED, "id: nudge")),
        ("changed", "steps.reminder.email.subject", "Did you see our welcome?", "Did you see our welcome pack?",
         line_of(EDITED, "welcome pack")),
    ]
    # The working tree (a plain file) against a revision gives the same.
    assert diff_campaigns(*[load_revision(s, repo)[1] for s in ("HEAD~1:campaigns/x.yaml", "campaigns/x.yaml")]) == result


def test_revision_paths_relative_to_cwd_and_root(repo: Path) -> None:
    campaigns = repo / "campaigns"
    assert load_revision("HEAD~1:./x.yaml", campaigns)[1] == BASE
    assert load_revision("HEAD~1:campaigns/x.yaml", campaigns)[1] == BASE  # from the root
    assert load_revision("x.yaml", campaigns) == ("x.yaml", EDITED)  # a file beside cwd
    assert load_revision(str(campaigns / "x.yaml"), repo)[1] == EDITED


def test_revision_errors_carry_gits_message(repo: Path) -> None:
    with pytest.raises(ValueError, match="invalid object name 'HEAD~5'"):
        load_revision("HEAD~5:campaigns/x.yaml", repo)
    with pytest.raises(ValueError, match="path 'campaigns/y.yaml' does not exist in 'HEAD'"):
        load_revision("HEAD:campaigns/y.yaml", repo)
    with pytest.raises(ValueError, match="not a file"):
        load_revision("HEAD:campaigns", repo)
    with pytest.raises(ValueError, match="no such file"):
        load_revision("campaigns/missing.yaml", repo)
    outside = repo.parent / "not-a-repo"
    outside.mkdir()
    with pytest.raises(ValueError, match="not a git repository") as caught:
        load_revision("HEAD:x.yaml", outside)
    assert "\n" not in str(caught.value)


def test_git_diff_with_textconv_driver_shows_semantic_lines(repo: Path) -> None:
    """The setup documented for `engine diff` as a git diff driver, with the library as the
    textconv command."""
    (repo / ".gitattributes").write_text("campaigns/*.yaml diff=campaign\n")
    script = repo.parent / "campaign-textconv.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom campaigns.diff import textconv\n"
                      "sys.stdout.write(textconv(open(sys.argv[1], encoding='utf-8').read()))\n")
    command = f'"{sys.executable}" "{script}"'
    out = git(repo, "-c", f"diff.campaign.textconv={command}", "diff", "HEAD~1", "HEAD", "--", "campaigns/x.yaml")
    changed = sorted(line for line in out.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---")))
    assert changed == sorted([
        "-audience.rulesets.big-spenders = partner.revenue >= 100000",
        "+audience.rulesets.big-spenders = partner.revenue >= 250000",
        "-audience.exclude = partner.active == false",
        "-trigger.cron = \"0 9 * * MON\"",
        "+trigger.cron = \"0 8 * * MON\"",
        "-steps.reminder.email.subject = \"Did you see our welcome?\"",
        "+steps.reminder.email.subject = \"Did you see our welcome pack?\"",
        "-steps.nudge.sms.text = \"Hi {{ partner.name }}\"",
        "+steps.nudge.sms.text = \"Hi {{ partner.name }}\"",
    ])


# --- textconv ----------------------------------------------------------------------------------


def test_textconv_of_an_example() -> None:
    text = (ROOT / "examples" / "campaigns" / "partner-onboarding.yaml").read_text()
    lines = textconv(text).splitlines()
    assert lines[:3] == [
        'name = "Partner onboarding"',
        'description = "Welcome gold and platinum partners in Finland and big partners everywhere, '
        'and book an intro call."',
        'owner = "channel-marketing@example.com"',
    ]
    for expected in [
        'audience.rulesets.gold-fi = partner.tier in ["gold", "platinum"] and partner.country == "FI"',
        'audience.groups = ["summit-2026"]',
        "trigger.audience = true",
        'window.end = "2026-12-31"',
        'steps.welcome.email.subject = "Welcome to the partner program, {{ partner.name }}"',
        'steps.welcome.email.translations.fi.template = "welcome.fi.html.j2"',
        'steps.wait[after welcome] = "3d"',
        'steps.wait[after welcome-nudge] = {"until": "09:00"}',
        'steps.intro-call.activity.responses.interested.follow_up = "demo-invite"',
        'steps.portal-note.when = not responded("intro-call")',
        'monitor.in_campaign_min = "90%"',
    ]:
        assert expected in lines
    # Canonical order: the steps in their order, each field once, one line per leaf.
    steps = [line.split(".")[1].split(" ")[0] for line in lines if line.startswith("steps.")]
    order = list(dict.fromkeys(steps))
    assert order == ["welcome", "wait[after", "welcome-nudge", "intro-call", "portal-note", "welcome-letter"]
    assert len(lines) == len(set(lines))
    assert all(" = " in line for line in lines)
    assert not any(line.startswith("#") or "\n" in line for line in lines)


def test_textconv_is_the_same_for_every_layout() -> None:
    for path in EXAMPLES:
        text = path.read_text()
        dumped = yaml.safe_dump(sorted_keys(load_yaml(str(path), text).data), sort_keys=False, allow_unicode=True)
        assert textconv(dumped) == textconv(text), path.name
