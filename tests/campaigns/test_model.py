"""Campaign and settings models: shape validation with located, helpful diagnostics."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.building import build
from campaigns.model import Campaign, Settings, Step, Until, Wait
from dsl.diagnostics import SourceError
from dsl.yamlload import load_yaml

GOOD = """\
name: Partner onboarding
active: true
window: {start: 2026-07-01, end: 2026-12-31}
audience:
  rulesets:
    gold-fi: partner.tier in ["gold", "platinum"] and partner.country == "FI"
  groups: [summit-2026]
  dedupe: [email]
trigger:
  at: 2026-07-01T09:00
reenroll: 90d
steps:
  - id: welcome
    email:
      subject: "Welcome, {{ partner.name }}"
      body: Hello
      translations:
        fi: {subject: "Tervetuloa"}
  - wait: 3d
  - wait: {until: "09:00"}
  - id: call
    activity:
      kind: call
      responses:
        yes: {result: successful, follow_up: demo}
monitor: {in_campaign_min: 85%, alert: ops@example.com}
"""


def load(text: str, model=Campaign):
    return build(model, load_yaml("c.yaml", text))


def test_a_good_campaign_builds_and_knows_its_spans() -> None:
    campaign, problems = load(GOOD)
    assert problems == []
    assert campaign is not None
    assert campaign.trigger.kind == "at" and campaign.trigger.at == datetime(2026, 7, 1, 9, 0)
    assert campaign.reenroll == timedelta(days=90)
    assert [type(s) for s in campaign.steps] == [Step, Wait, Wait, Step]
    assert isinstance(campaign.steps[2].wait, Until)
    assert campaign.monitor.in_campaign_min == 85.0 and campaign.monitor.alert == ["ops@example.com"]
    assert str(campaign.steps[0].email.span("subject")) == "c.yaml:15:16"
    assert str(campaign.audience.span()) == "c.yaml:5:3"
    assert str(campaign.steps[3].activity.responses["yes"].span("follow_up")) == "c.yaml:25:46"


@pytest.mark.parametrize(
    "snippet, position, message",
    [
        ("naem: x\n", "1:1", "unknown key 'naem'; did you mean 'name'?"),
        ("trigger: {audiance: true}\n", "1:11", "unknown key 'audiance'; did you mean 'audience'?"),
        ("trigger: {audience: true, cron: '0 9 * * *'}\n", "1:10", "at most one kind"),
        ("trigger: {cron: 'every day'}\n", "1:17", "not a valid cron expression"),
        ("reenroll: sometimes\n", "1:11", "reenroll is never, after_exit or a duration"),
        ("audience: {dedupe: [emial]}\n", "1:21", "'emial' is not one of email, company; did you mean 'email'?"),
        ("steps:\n  - id: a\n    email: {subjct: x, body: y}\n", "3:13", "unknown key 'subjct'; did you mean 'subject'?"),
        ("steps:\n  - id: a\n    email: {subject: x}\n", "3:12", "exactly one of 'template' or 'body'"),
        ("steps:\n  - id: a\n    sms: {text: x}\n    letter: {template: y}\n", "2:5", "exactly one of email, sms"),
        ("steps:\n  - wait: 3 days\n", "2:11", "not a duration"),
        ("steps:\n  - wait: {until: '25:00'}\n", "2:19", "not a local time"),
        ("steps:\n  - id: a\n    activity: {kind: cal}\n", "3:22", "did you mean 'call'?"),
        ("window: {start: 2026-07-01, end: 2026-06-01}\n", "1:9", "ends before it starts"),
        ("timezone: Europe/Helsinky\n", "1:11", "unknown timezone"),
        ("- a list\n", "1:1", "expected a mapping"),
    ],
)
def test_shape_errors_are_located(snippet: str, position: str, message: str) -> None:
    campaign, problems = load(snippet)
    assert campaign is None
    assert any(message in d.message and f"{d.span.line}:{d.span.col}" == position for d in problems), [
        d.headline() for d in problems
    ]


def test_six_responses_are_too_many() -> None:
    responses = "\n".join(f"        r{i}: {{result: ok}}" for i in range(6))
    _, problems = load(f"steps:\n  - id: a\n    activity:\n      kind: task\n      responses:\n{responses}\n")
    assert [d.message for d in problems] == ["at most 5 responses per step, this one has 6"]


def test_settings_validate_transports_and_roles() -> None:
    text = "partners:\n  fields:\n    tier: {enum: []}\nchannels:\n  email: {transport: smtp}\nusers:\n  bob: {roles: [viewr]}\n"
    _, problems = load(text, Settings)
    messages = [d.message for d in problems]
    assert any("smtp transport needs 'host' and 'from'" in m for m in messages)
    assert any("did you mean 'viewer'" in m for m in messages)


campaign_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    | st.sampled_from(["3d", "09:00", "email", "call", "2026-07-01", "partner.x == 1", "never"]),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(
        st.sampled_from(["name", "steps", "id", "email", "wait", "until", "audience", "rulesets", "trigger",
                         "cron", "at", "subject", "body", "activity", "kind", "responses", "result", "window",
                         "start", "monitor", "reenroll", "translations", "x"]),
        children,
        max_size=4,
    ),
    max_leaves=25,
)


@given(campaign_like)
@settings(max_examples=300, deadline=None)
def test_any_yaml_gives_a_model_or_diagnostics_never_an_exception(value) -> None:
    text = yaml.safe_dump(value)
    try:
        document = load_yaml("fuzz.yaml", text)
    except SourceError:
        return
    campaign, problems = build(Campaign, document)
    assert (campaign is None) == bool(problems)
    for d in problems:
        assert d.span.line >= 1 and d.message
