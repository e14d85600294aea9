"""SPEC §11's experiment and policy keys in the file tools: `engine fmt` (their place in the
canonical order, comments kept, idempotent), `engine diff` (a split is a step; variants and split
paths by key and in file order; values compared by meaning) and `engine schema` (the new models,
and the rules the models check in code)."""

from __future__ import annotations

import re
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.building import build
from campaigns.diff import Change, diff_campaigns, render, textconv
from campaigns.fmt import format_campaign, format_settings
from campaigns.jsonschema import CLOCK_PATTERN, SLUG_PATTERN, campaign_schema, settings_schema
from campaigns.model import Campaign, Settings
from dsl.ids import is_slug
from dsl.parser import parse
from dsl.printer import to_source
from dsl.yamlload import load_yaml
from tests.campaigns.test_diff import line_of
from tests.campaigns.test_fmt import (COMMENT_TEXT, Flow, Node, Scalar, comment_set, decorate, flow_mapping,
                                      mapping, render as render_yaml)
from tests.campaigns.test_jsonschema import as_json, check

TOP_ORDER = ["name", "description", "owner", "active", "window", "timezone", "audience", "trigger", "reenroll",
             "exclusive", "previously_treated", "exit_when", "exit_on_audience_loss", "holdout", "goal",
             "quiet_hours", "send_days", "priority", "transactional", "steps", "monitor"]

# --- engine fmt ---------------------------------------------------------------------------------

MESSY = """\
# the campaign
steps:
  - split:
      call-first: {goto: intro-call, weight: 30}   # a third, roughly
      email-first:
        # no goto: on with the next step
        weight: 70
    renamed_from: route
    id: path
  - id: welcome
    email:
      variants:
        short: {subject: "Welcome!", weight: 50}
        long:
          template: long.html.j2
          subject: Welcome to the programme
          weight: 50        # as likely as short
      body: Hi
      subject: Welcome
  - id: intro-call
    activity: {kind: call}
  - id: nudge
    sms: {variants: {b: {text: Hello, weight: 1}, a: {weight: 1}}, text: Hi}
  - id: note
    popup: {variants: {x: {body: B2, title: T2, weight: 2}}, body: B, title: T, pages: [home]}
  - id: mail
    letter: {variants: {v2: {template: b.txt.j2, weight: 1}}, template: a.txt.j2}
monitor: {alert: [ops@example.com]}
transactional: false
priority: 5
send_days: [mon, tue, wed, thu, fri]
quiet_hours: {to: "08:00", from: "21:00"}   # partner-local
goal:
  exit: false
  within: 30d
  where: event.amount>0
  event: invoice.paid
holdout: 10%
audience:
  rulesets: {all: "true"}
name: Experiments
"""

CANONICAL = """\
# the campaign
name: Experiments
audience:
  rulesets: {all: "true"}
holdout: 10%
goal:
  event: invoice.paid
  where: event.amount > 0
  within: 30d
  exit: false
quiet_hours: {from: "21:00", to: "08:00"}   # partner-local
send_days: [mon, tue, wed, thu, fri]
priority: 5
transactional: false
steps:
  - id: path
    renamed_from: route
    split:
      call-first: {weight: 30, goto: intro-call}   # a third, roughly
      email-first:
        # no goto: on with the next step
        weight: 70
  - id: welcome
    email:
      subject: Welcome
      body: Hi
      variants:
        short: {weight: 50, subject: "Welcome!"}
        long:
          weight: 50        # as likely as short
          subject: Welcome to the programme
          template: long.html.j2
  - id: intro-call
    activity: {kind: call}
  - id: nudge
    sms: {text: Hi, variants: {b: {weight: 1, text: Hello}, a: {weight: 1}}}
  - id: note
    popup: {pages: [home], title: T, body: B, variants: {x: {weight: 2, title: T2, body: B2}}}
  - id: mail
    letter: {template: a.txt.j2, variants: {v2: {weight: 1, template: b.txt.j2}}}
monitor: {alert: [ops@example.com]}
"""


def campaign_model(text: str) -> dict:
    model, problems = build(Campaign, load_yaml("c.yaml", text))
    assert not problems, [p.headline() for p in problems]
    dump = model.model_dump(warnings=False)
    if dump["goal"] is not None:
        for key in ("when", "where"):
            if dump["goal"][key] is not None:
                dump["goal"][key] = to_source(parse(dump["goal"][key]))
    return dump


def test_fmt_puts_the_new_keys_in_their_canonical_places():
    formatted = format_campaign(MESSY)
    assert formatted == CANONICAL
    assert format_campaign(CANONICAL) == CANONICAL  # idempotent
    assert comment_set(formatted) == comment_set(MESSY)
    assert campaign_model(formatted) == campaign_model(MESSY)
    assert list(yaml.safe_load(formatted)) == [k for k in TOP_ORDER if k in yaml.safe_load(formatted)]


def test_fmt_keeps_the_order_of_variants_and_split_paths_they_are_meaningful():
    """Weights are taken in file order (SPEC §11): fmt never sorts variants or split paths."""
    text = ("steps:\n  - id: s\n    split: {zz: {weight: 1}, aa: {weight: 2}, mm: {weight: 3}}\n"
            "  - id: e\n    email: {subject: S, body: B, variants: {z: {weight: 1}, a: {weight: 1}}}\n")
    assert format_campaign(text) == text


def test_fmt_normalises_the_goal_expressions():
    text = "goal:\n  within: 2w\n  when: partner.paid==true and not(partner.active)\n"
    assert format_campaign(text) == "goal:\n  when: partner.paid == true and not partner.active\n  within: 2w\n"


def test_fmt_of_engine_yaml_policies():
    text = """\
results: [successful, failed]
policies:                        # every campaign's messages
  send_days: [mon, tue, wed, thu, fri]
  quiet_hours: {to: "08:00", from: "21:00"}
  on_cap: defer
  frequency:
    sms: {per: 1d, max: 1}
    email:
      per: 7d                    # a week
      max: 2
timezone: UTC
"""
    expected = """\
timezone: UTC
policies:                        # every campaign's messages
  frequency:
    sms: {max: 1, per: 1d}
    email:
      max: 2
      per: 7d                    # a week
  on_cap: defer
  quiet_hours: {from: "21:00", to: "08:00"}
  send_days: [mon, tue, wed, thu, fri]
results: [successful, failed]
"""
    assert format_settings(text) == expected
    assert format_settings(expected) == expected
    model, problems = build(Settings, load_yaml("engine.yaml", expected))
    assert not problems and model.policies.frequency["email"].max == 2


# A property test like test_fmt's, over the new keys: random key order, flow or block style,
# comments anywhere; fmt keeps the model and the comments and is stable.


def _variants(data, fields: dict[str, str]) -> Node | Flow:
    keys = data.draw(st.lists(st.sampled_from(["short", "long", "b-2", "x_y"]), min_size=1, max_size=3, unique=True))
    entries = []
    for i, key in enumerate(keys):
        pairs = [("weight", str(i + 1))] + [(k, v) for k, v in fields.items() if data.draw(st.booleans())]
        if data.draw(st.booleans()):
            entries.append((key, flow_mapping(data, pairs)))
        else:
            entries.append((key, mapping(data, {k: Scalar(v) for k, v in pairs}, {})))
    return Node(entries)


def _experiment_steps(data) -> Node:
    items = []
    for i in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["split", "email", "sms", "popup", "letter"]))
        step_id = {"id": Scalar(f"step-{i}")}
        if kind == "split":
            paths = []
            for j, key in enumerate(data.draw(st.lists(st.sampled_from(["a", "b", "c-d"]), min_size=1, max_size=3,
                                                        unique=True))):
                pairs = [("weight", str(j + 1))] + ([("goto", "end")] if data.draw(st.booleans()) else [])
                paths.append((key, flow_mapping(data, pairs) if data.draw(st.booleans())
                               else mapping(data, {k: Scalar(v) for k, v in pairs}, {})))
            items.append((None, mapping(data, {**step_id, "split": Node(paths)},
                                        {"renamed_from": Scalar("old-split")})))
            continue
        required, fields = {
            "email": ({"subject": Scalar("S"), "body": Scalar("B")}, {"subject": '"Hi!"', "body": "B2"}),
            "sms": ({"text": Scalar("T")}, {"text": "T2"}),
            "popup": ({"pages": Flow("[home]"), "title": Scalar("T"), "body": Scalar("B")}, {"title": "T2"}),
            "letter": ({"template": Scalar("a.txt.j2")}, {"template": "b.txt.j2"}),
        }[kind]
        action = mapping(data, {**required, "variants": _variants(data, fields)}, {})
        items.append((None, mapping(data, {**step_id, kind: action}, {})))
    return Node(items, seq=True)


@st.composite
def experiment_files(draw) -> str:
    class Data:
        def draw(self, strategy):
            return draw(strategy)

    data = Data()
    goal = data.draw(st.sampled_from([
        lambda: mapping(data, {"when": Scalar(data.draw(st.sampled_from(["partner.paid", "(partner.paid)==true"]))),
                               "within": Scalar("30d")}, {"exit": Scalar("false")}),
        lambda: mapping(data, {"event": Scalar("invoice.paid"), "within": Scalar("2w")},
                        {"where": Scalar("event.amount>0"), "exit": Scalar("true")}),
    ]))()
    top = {
        "name": Scalar("E"),
        "holdout": Scalar(data.draw(st.sampled_from(["10%", "2.5%", "0"]))),
        "goal": goal,
        "quiet_hours": data.draw(st.sampled_from([Flow('{from: "21:00", to: "08:00"}'),
                                                  Node([("to", Scalar('"07:30"')), ("from", Scalar("'22:00'"))])])),
        "send_days": data.draw(st.sampled_from([Flow("[mon, tue]"), Node([(None, Scalar("sat")), (None, Scalar("sun"))],
                                                                        seq=True)])),
        "priority": Scalar(data.draw(st.sampled_from(["-3", "0", "12"]))),
        "transactional": Scalar(data.draw(st.sampled_from(["true", "false"]))),
        "steps": _experiment_steps(data),
        "exit_when": Scalar("partner.paid"),
    }
    root = mapping(data, {"steps": top.pop("steps")}, top)  # always steps: the variants and splits are there
    decorate(data, root)
    header = draw(st.lists(COMMENT_TEXT, max_size=2))
    if header and draw(st.booleans()):
        header.append("")
    return render_yaml(data, root, header, [])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(experiment_files())
def test_generated_experiment_files_keep_model_and_comments_and_are_stable(text: str):
    model = campaign_model(text)
    formatted = format_campaign(text, "gen.yaml")
    assert format_campaign(formatted, "gen.yaml") == formatted
    assert campaign_model(formatted) == model
    assert comment_set(formatted) == comment_set(text)
    data = yaml.safe_load(formatted) or {}
    assert list(data) == [k for k in TOP_ORDER if k in data]
    before = yaml.safe_load(text) or {}
    for old, new in zip(before.get("steps", []), data.get("steps", [])):
        if "split" in new:
            assert list(new) == [k for k in ("id", "renamed_from", "split") if k in new]
            assert list(new["split"]) == list(old["split"])  # the author's order of paths
            for path in new["split"].values():
                assert list(path) == [k for k in ("weight", "goto") if k in path]
            continue
        action = next(v for k, v in new.items() if k != "id")
        old_action = next(v for k, v in old.items() if k != "id")
        assert list(action["variants"]) == list(old_action["variants"])  # the author's order of variants
        for variant in action["variants"].values():
            assert next(iter(variant)) == "weight"
    if "goal" in data:
        assert list(data["goal"]) == [k for k in ("when", "event", "where", "within", "exit") if k in data["goal"]]
    if isinstance(data.get("quiet_hours"), dict):
        assert list(data["quiet_hours"]) == ["from", "to"]


# --- engine diff ------------------------------------------------------------------------------------

BASE = textwrap.dedent("""\
    name: Experiments
    audience:
      rulesets: {all: "true"}
    holdout: 10%
    goal:
      when: partner.paid == true
      within: 30d
    quiet_hours: {from: "21:00", to: "08:00"}
    send_days: [mon, tue, wed, thu, fri]
    steps:
      - id: path
        split:
          call-first: {weight: 30, goto: intro-call}
          email-first: {weight: 70}
      - id: welcome
        email:
          subject: Welcome
          body: Hi
          variants:
            short: {weight: 50, subject: "Welcome!"}
            long: {weight: 50, subject: Welcome to the programme}
      - id: intro-call
        activity: {kind: call}
    """)


def edit(old: str, new: str, text: str = BASE) -> str:
    assert text.count(old) == 1, old
    return text.replace(old, new)


def changes(old: str, new: str) -> list[tuple]:
    return [(c.kind, c.path, c.old, c.new) for c in diff_campaigns(old, new)]


def test_a_changed_weight_reads_well():
    new = edit("short: {weight: 50,", "short: {weight: 70,")
    result = diff_campaigns(BASE, new)
    line = line_of(new, "short: {weight: 70")
    assert result == [Change("steps.welcome.email.variants.short.weight", "changed", 50, 70, line)]
    assert render(result) == f"~ steps.welcome.email.variants.short.weight (line {line}): 50 → 70"


def test_variants_added_removed_changed_and_reordered_by_key():
    short = '        short: {weight: 50, subject: "Welcome!"}\n'
    long = "        long: {weight: 50, subject: Welcome to the programme}\n"
    added = edit(long, long + "        plain: {weight: 10}\n")
    assert changes(BASE, added) == [("added", "steps.welcome.email.variants.plain", None, {"weight": 10})]
    removed = edit(short, "")
    assert changes(BASE, removed) == [
        ("removed", "steps.welcome.email.variants.short", {"weight": 50, "subject": "Welcome!"}, None)]
    text = edit("long: {weight: 50, subject: Welcome to the programme}", "long: {weight: 50, subject: Hello}")
    assert changes(BASE, text) == [
        ("changed", "steps.welcome.email.variants.long.subject", "Welcome to the programme", "Hello")]
    # the order of variants decides who gets which (weights in file order): a move is a change
    swapped = edit(short + long, long + short)
    result = diff_campaigns(BASE, swapped)
    assert [(c.kind, c.path, c.old, c.new) for c in result] == [("moved", "steps.welcome.email.variants.long", 2, 1)]
    assert render(result) == f"↕ steps.welcome.email.variants.long (line {line_of(swapped, 'long: {')}): position 2 → 1"
    # another layout of the same variants is no change
    block = edit(short, "        short:\n          subject: 'Welcome!'\n          weight: 50\n")
    assert diff_campaigns(BASE, block) == []


def test_a_split_is_a_step_and_its_paths_diff_by_key():
    assert changes(BASE, edit("call-first: {weight: 30, goto: intro-call}", "call-first: {weight: 40, goto: end}")) == [
        ("changed", "steps.path.split.call-first.weight", 30, 40),
        ("changed", "steps.path.split.call-first.goto", "intro-call", "end")]
    assert changes(BASE, edit("email-first: {weight: 70}", "email-first: {weight: 70, goto: intro-call}")) == [
        ("added", "steps.path.split.email-first.goto", None, "intro-call")]
    assert changes(BASE, edit("      email-first: {weight: 70}\n", "      email-first: {weight: 70}\n      sms-first: "
                                                                     "{weight: 5}\n")) == [
        ("added", "steps.path.split.sms-first", None, {"weight": 5})]
    removed = edit("  - id: path\n    split:\n      call-first: {weight: 30, goto: intro-call}\n"
                   "      email-first: {weight: 70}\n", "")
    assert changes(BASE, removed) == [
        ("removed", "steps.path", {"split": {"call-first": {"weight": 30, "goto": "intro-call"},
                                             "email-first": {"weight": 70}}}, None)]
    flat = textconv(BASE).splitlines()
    assert flat[flat.index('steps.path.split.call-first.weight = 30'):][:4] == [
        "steps.path.split.call-first.weight = 30", 'steps.path.split.call-first.goto = "intro-call"',
        "steps.path.split.email-first.weight = 70", 'steps.welcome.email.subject = "Welcome"']


def test_a_renamed_split_is_one_change():
    new = edit("  - id: path\n", "  - id: route\n    renamed_from: path\n")
    result = diff_campaigns(BASE, new)
    assert result == [Change("steps.route", "renamed", "path", "route", line_of(new, "id: route"))]
    assert render(result) == f'» steps.route (line {line_of(new, "id: route")}): renamed from "path"'
    # renamed and a weight changed: the rename, then the change under the new id
    both = edit("call-first: {weight: 30,", "call-first: {weight: 35,", new)
    assert changes(BASE, both) == [("renamed", "steps.route", "path", "route"),
                                   ("changed", "steps.route.split.call-first.weight", 30, 35)]


def test_holdout_goal_and_sending_rules_compare_by_value():
    same = edit("holdout: 10%", "holdout: 10")
    same = edit('quiet_hours: {from: "21:00", to: "08:00"}', "quiet_hours:\n  to: '8:00'\n  from: '21:00'", same)
    same = edit("send_days: [mon, tue, wed, thu, fri]", "send_days: [fri, thu, wed, tue, mon]", same)
    same = edit("  when: partner.paid == true\n  within: 30d\n", "  within: 720h\n  when: (partner.paid==true)\n", same)
    same = edit("name: Experiments\n", "name: Experiments\npriority: 0\ntransactional: no\n", same)
    assert diff_campaigns(BASE, same) == []
    new = edit("holdout: 10%", "holdout: 12.5%")
    new = edit("  within: 30d\n", "  within: 2w\n  exit: false\n", new)
    new = edit('{from: "21:00", to: "08:00"}', '{from: "22:00", to: "08:00"}', new)
    new = edit("send_days: [mon, tue, wed, thu, fri]", "send_days: [mon]", new)
    new = edit("name: Experiments\n", "name: Experiments\npriority: 3\ntransactional: true\n", new)
    assert changes(BASE, new) == [
        ("changed", "holdout", "10%", "12.5%"),
        ("changed", "goal.within", "30d", "2w"),
        ("changed", "goal.exit", True, False),
        ("changed", "quiet_hours.from", "21:00", "22:00"),
        ("changed", "send_days", ["mon", "tue", "wed", "thu", "fri"], ["mon"]),
        ("changed", "priority", 0, 3),
        ("changed", "transactional", False, True),
    ]
    assert render(diff_campaigns(BASE, edit("holdout: 10%", "holdout: 20%"))) == \
        f'~ holdout (line {line_of(BASE, "holdout")}): "10%" → "20%"'
    event = edit("  when: partner.paid == true\n", "  event: invoice.paid\n  where: event.amount > 0\n")
    assert changes(BASE, event) == [("removed", "goal.when", "partner.paid == true", None),
                                    ("added", "goal.event", None, "invoice.paid"),
                                    ("added", "goal.where", None, "event.amount > 0")]
    assert changes(BASE, edit("holdout: 10%\n", "")) == [("removed", "holdout", "10%", None)]


def test_the_formatted_file_has_no_changes_and_top_level_keys_come_in_fmt_order():
    assert diff_campaigns(MESSY, format_campaign(MESSY)) == []
    assert textconv(MESSY) == textconv(CANONICAL)
    tops = list(dict.fromkeys(line.split(" = ")[0].split(".")[0] for line in textconv(BASE).splitlines()))
    assert tops == [k for k in TOP_ORDER if k in tops]
    variant = [line for line in textconv(BASE).splitlines() if ".variants.short." in line]
    assert variant == ["steps.welcome.email.variants.short.weight = 50",
                       'steps.welcome.email.variants.short.subject = "Welcome!"']


# --- engine schema ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return campaign_schema()


def test_the_schema_has_the_new_keys_and_models(schema: dict):
    properties, defs = schema["properties"], schema["$defs"]
    for key in ("holdout", "goal", "quiet_hours", "send_days", "priority", "transactional"):
        assert key in properties, key
    assert {"$ref": "#/$defs/Split"} in properties["steps"]["items"]["oneOf"]
    assert list(defs["Split"]["properties"]) == ["id", "renamed_from", "split"]
    assert defs["Split"]["required"] == ["id", "split"]
    assert defs["Split"]["properties"]["split"]["additionalProperties"] == {"$ref": "#/$defs/SplitPath"}
    assert list(defs["SplitPath"]["properties"]) == ["weight", "goto"] and defs["SplitPath"]["required"] == ["weight"]
    for name in ("EmailVersion", "SmsVersion", "PopupVersion", "LetterVersion"):
        assert next(iter(defs[name]["properties"])) == "weight", name  # as fmt writes it
        assert defs[name]["required"] == ["weight"], name
        assert defs[name]["additionalProperties"] is False, name
    assert defs["Email"]["properties"]["variants"]["additionalProperties"] == {"$ref": "#/$defs/EmailVersion"}
    assert list(defs["Goal"]["properties"]) == ["when", "event", "where", "within", "exit"]
    assert list(defs["QuietHours"]["properties"]) == ["from", "to"]  # the alias, never from_
    assert properties["priority"]["minimum"] == -1_000_000 and properties["priority"]["maximum"] == 1_000_000
    policies = settings_schema()["$defs"]["Policies"]
    assert list(policies["properties"]) == ["frequency", "on_cap", "quiet_hours", "send_days"]
    assert policies["properties"]["frequency"]["propertyNames"] == {"enum": ["email", "sms", "popup", "letter"]}
    assert settings_schema()["$defs"]["QuietHours"]["properties"]["from"]["pattern"] == CLOCK_PATTERN


SAMPLE = textwrap.dedent("""\
    name: S
    holdout: 10%
    goal: {event: invoice.paid, where: event.amount > 0, within: 30d}
    quiet_hours: {from: "21:00", to: "8:00"}
    send_days: [mon, fri]
    priority: -2
    transactional: false
    steps:
      - id: path
        split: {a: {weight: 1, goto: end}, b: {weight: 0}}
      - id: welcome
        email: {subject: S, body: B, variants: {short: {weight: 1, subject: X}}}
      - id: nudge
        sms: {text: T, variants: {v.1: {weight: 3}}}
    """)
ACCEPTED = {
    "the sample": SAMPLE,
    "a when goal": edit("{event: invoice.paid, where: event.amount > 0, within: 30d}",
                        "{when: partner.paid, within: 30d, exit: false}", SAMPLE),
    "holdout as a number": edit("holdout: 10%", "holdout: 2.5", SAMPLE),
    "a goal without within (any time)": edit(", within: 30d}", "}", SAMPLE),
}
REFUSED = {
    "a goal with when and event": edit("{event: invoice.paid,", "{when: partner.paid, event: invoice.paid,", SAMPLE),
    "a goal with neither": edit("{event: invoice.paid, where: event.amount > 0, within: 30d}", "{within: 30d}", SAMPLE),
    "where without an event": edit("{event: invoice.paid, where: event.amount > 0, within: 30d}",
                                   "{when: partner.paid, where: event.amount > 0, within: 30d}", SAMPLE),
    "quiet hours not a time": edit('to: "8:00"', 'to: "8pm"', SAMPLE),
    "quiet hours without to": edit(', to: "8:00"}', "}", SAMPLE),
    "a variant without weight": edit("{weight: 1, subject: X}", "{subject: X}", SAMPLE),
    "a variant key that is not a slug": edit("short: {weight: 1", "'no way': {weight: 1", SAMPLE),
    "a split path key that is not a slug": edit("a: {weight: 1, goto: end}", "-a: {weight: 1, goto: end}", SAMPLE),
    "a negative weight": edit("b: {weight: 0}", "b: {weight: -1}", SAMPLE),
    "a path with an unknown key": edit("b: {weight: 0}", "b: {weight: 0, go: x}", SAMPLE),
    "an empty split": edit("split: {a: {weight: 1, goto: end}, b: {weight: 0}}", "split: {}", SAMPLE),
    "a split without id": edit("  - id: path\n    split:", "  - split:", SAMPLE),
    "a day that is not one": edit("send_days: [mon, fri]", "send_days: [monday]", SAMPLE),
    "a priority too high": edit("priority: -2", "priority: 1000001", SAMPLE),
}


def model_accepts(text: str) -> bool:
    _, problems = build(Campaign, load_yaml("c.yaml", text))
    return not problems


@pytest.mark.parametrize("name", [*ACCEPTED, *REFUSED])
def test_the_schema_and_the_models_agree_on_the_new_keys(schema: dict, name: str):
    text = ACCEPTED.get(name) or REFUSED[name]
    expected = name in ACCEPTED
    assert model_accepts(text) is expected, name
    assert check(schema, as_json(load_yaml("c.yaml", text).data)) is expected, name


def test_the_settings_schema_and_model_agree_on_policies():
    good = ("policies:\n  frequency: {email: {max: 2, per: 7d}}\n  on_cap: defer\n"
            "  quiet_hours: {from: '21:00', to: '08:00'}\n  send_days: [mon]\n")
    for text, expected in [(good, True), (good.replace("email:", "fax:"), False),
                           (good.replace("max: 2", "max: 0"), False), (good.replace("defer", "later"), False),
                           (good.replace("'08:00'", "'25:00'"), False)]:
        _, problems = build(Settings, load_yaml("engine.yaml", text))
        assert (not problems) is expected, text
        assert check(settings_schema(), as_json(load_yaml("engine.yaml", text).data)) is expected, text


@pytest.mark.parametrize("key", ["a", "A-1", "x_y.z", "9", "a" * 100, "a" * 101, "-a", ".a", "a b", "é", "a:b", ""])
def test_the_slug_pattern_is_the_rule_of_ids(key: str):
    assert (re.search(SLUG_PATTERN, key) is not None) is is_slug(key)


@pytest.mark.parametrize("clock", ["00:00", "8:00", "08:00", "23:59", "24:00", "8:0", "08:60", "8pm", " 08:00"])
def test_the_clock_pattern_is_the_rule_of_the_model(clock: str):
    _, problems = build(Campaign, load_yaml("c.yaml", f"quiet_hours: {{from: '{clock}', to: '08:00'}}\n"))
    assert (re.search(CLOCK_PATTERN, clock) is not None) is (not problems), clock


def test_every_new_model_is_in_the_schema(schema: dict):
    assert {"Split", "SplitPath", "Goal", "QuietHours", "EmailVersion", "SmsVersion", "PopupVersion",
            "LetterVersion"} <= set(schema["$defs"])
    assert {"Policies", "Cap", "QuietHours"} <= set(settings_schema()["$defs"])
