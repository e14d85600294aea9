"""`engine check` on experiments and policies: goal conditions are type-checked (a `where` sees
the event), variant texts are templates like the step's, and settings that quietly do less than
they seem to are warnings at their own line and column."""

from __future__ import annotations

from pathlib import Path

from campaigns.workspace import load_workspace

ENGINE_YAML = """\
timezone: UTC
partners:
  source: partners.csv
  fields: {name: string, email: string, language: string, paid: bool}
consent: {email: "true"}
web: {base_url: https://c.example.com}
"""


def diagnostics(tmp_path: Path, campaign: str) -> list[str]:
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    (tmp_path / "engine.yaml").write_text(ENGINE_YAML, encoding="utf-8")
    (tmp_path / "partners.csv").write_text("id,name,email,language,paid\n", encoding="utf-8")
    (tmp_path / "campaigns" / "c.yaml").write_text(campaign, encoding="utf-8")
    workspace = load_workspace(tmp_path)
    return [f"{d.span.line}:{d.span.col}: {d.severity}: {d.message}" for d in workspace.diagnostics
            if "description" not in d.message and "engine test" not in d.message]


HEAD = 'trigger: {audience: true}\naudience: {rulesets: {all: "true"}}\n'
EMAIL = '  - id: hi\n    email: {subject: Hi, body: "{{ unsubscribe_url }}"}\n'


def test_goal_conditions_are_type_checked_and_only_where_sees_the_event(tmp_path):
    found = diagnostics(tmp_path, HEAD + "goal:\n  when: partner.paid == 1\n  within: 30d\nsteps:\n" + EMAIL)
    assert found == ["4:22: error: cannot compare bool with number: partner.paid is a bool; compare it with true "
                     "or false"]
    event_goal = HEAD + "goal:\n  event: invoice.paid\n  where: event.amount > 10\n  within: 30d\nsteps:\n" + EMAIL
    assert diagnostics(tmp_path, event_goal) == []
    when_reads_event = HEAD + "goal:\n  when: event.amount > 10\n  within: 30d\nsteps:\n" + EMAIL
    assert [line.split(": ")[0] for line in diagnostics(tmp_path, when_reads_event)] == ["4:9"]


def test_a_variant_s_text_is_checked_as_a_template(tmp_path):
    campaign = HEAD + ('steps:\n  - id: hi\n    email:\n      subject: Hi\n      body: "{{ unsubscribe_url }}"\n'
                       '      variants:\n        a: {weight: 1, subject: "{{ partner.nme }}"}\n        b: {weight: 1}\n')
    assert diagnostics(tmp_path, campaign) == ["9:45: error: unknown field 'nme' of partner; did you mean 'name'?"]


def test_a_translation_that_replaces_a_variant_s_field_is_a_warning(tmp_path):
    campaign = HEAD + ('steps:\n  - id: hi\n    email:\n      subject: Hi\n      body: "{{ unsubscribe_url }}"\n'
                       '      translations:\n        fi: {subject: Hei}\n'
                       '      variants:\n        a: {weight: 1, subject: A}\n        b: {weight: 1, body: "B {{ unsubscribe_url }}"}\n')
    assert diagnostics(tmp_path, campaign) == [
        "11:33: warning: partners whose language is fi get the translation's subject, whatever their variant: "
        "give the translation no subject, or test in one language"]


def test_a_transactional_campaign_warns_about_what_it_ignores_and_needs_no_unsubscribe_link(tmp_path):
    campaign = (HEAD + "transactional: true\nholdout: 5%\nquiet_hours: {from: '21:00', to: '08:00'}\n"
                "steps:\n  - id: receipt\n    email: {subject: Receipt, body: Thanks}\n")
    assert diagnostics(tmp_path, campaign) == [
        "4:1: warning: this transactional campaign holds out 5% of its partners: they get none of its messages",
        "5:1: warning: a transactional campaign ignores quiet_hours: its messages go at their due time"]
