"""The drawn flow (engine.web.diagram): one node per step in file order and `end`, an arrow down
where a node falls through, an arrow on the right for each jump (branch case, split path,
response goto) with its label; every text escaped; the same campaign, the same SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from markupsafe import Markup

from campaigns.building import build
from campaigns.model import Campaign
from campaigns.workspace import load_workspace
from dsl.yamlload import load_yaml
from engine.web.diagram import flow_svg

pytestmark = pytest.mark.no_store  # pure functions: no store
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SVG = "{http://www.w3.org/2000/svg}"

BRANCHED = """\
name: Branched
steps:
  - id: welcome
    email: {subject: Hi, body: Hello}
  - wait: 3d
  - id: route
    branch:
      - {when: partner.revenue > 10, goto: call}
      - {when: partner.revenue > 5, goto: end}
      - {else: nudge}
  - id: skipped
    sms: {text: hi}
  - id: nudge
    sms: {text: hello}
  - wait: {until: "09:00"}
  - id: call
    activity:
      kind: call
      responses:
        yes: {result: successful, goto: letter}
        no: {result: unsuccessful}
  - id: settle
    wait: {for: partner.revenue > 20, at_most: 2d}
  - id: letter
    letter: {template: letter.txt.j2}
"""


def campaign(text: str) -> Campaign:
    model, problems = build(Campaign, load_yaml("flow.yaml", text))
    assert model is not None, problems
    return model


def parsed(svg: Markup) -> ET.Element:
    assert isinstance(svg, Markup)
    return ET.fromstring(str(svg))  # well-formed XML, or this raises


def nodes(root: ET.Element) -> list[tuple[str | None, str]]:
    return [(g.get("data-step"), g.get("class")) for g in node_groups(root)]


def node_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if "node" in g.get("class").split()]


def edges(root: ET.Element, kind: str) -> list[tuple[str, str, str | None]]:
    return [(g.get("data-from"), g.get("data-to"), g.get("data-label")) for g in root.iter(f"{SVG}g")
            if f"edge-{kind}" in g.get("class").split()]


def texts(element: ET.Element) -> list[str]:
    return [t.text for t in element.iter(f"{SVG}text")]


def test_a_branch_gives_one_node_per_step_in_file_order_and_its_cases_as_jumps():
    root = parsed(flow_svg(campaign(BRANCHED)))
    assert root.tag == f"{SVG}svg" and root.get("role") == "img"
    assert root.get("aria-label") == "Flow of campaign Branched" == root.find(f"{SVG}title").text
    assert root.find(f"{SVG}style") is not None
    assert nodes(root) == [("welcome", "node node-email"), (None, "node node-wait"), ("route", "node node-branch"),
                           ("skipped", "node node-sms"), ("nudge", "node node-sms"), (None, "node node-wait"),
                           ("call", "node node-activity"), ("settle", "node node-wait_for"),
                           ("letter", "node node-letter"), ("end", "node node-end")]
    assert sorted(edges(root, "jump")) == [("call", "letter", "yes"), ("route", "call", "case 1"),
                                           ("route", "end", "case 2"), ("route", "nudge", "else")]
    # a branch ending in `else` never falls through; a wait without an id is named by its place
    assert edges(root, "next") == [("welcome", "#1", None), ("#1", "route", None), ("skipped", "nudge", None),
                                   ("nudge", "#5", None), ("#5", "call", None), ("call", "settle", None),
                                   ("settle", "letter", None), ("letter", "end", None)]


def test_nodes_show_their_kind_id_and_wait():
    root = parsed(flow_svg(campaign(BRANCHED)))
    by_index = {g.get("data-index"): texts(g) for g in node_groups(root)}
    assert by_index["0"] == ["email", "welcome"]
    assert by_index["1"] == ["wait 3d"]
    assert by_index["2"] == ["branch", "route"]
    assert by_index["5"] == ["wait until 09:00"]
    assert by_index["6"] == ["activity · call", "call"]
    assert by_index["7"] == ["wait for partner.revenue > 20", "settle · at most 2d"]
    assert by_index["9"] == ["end"]


def test_a_split_draws_its_paths_with_their_shares():
    text = """\
steps:
  - id: path
    split:
      fast: {weight: 1, goto: last}
      slow: {weight: 2}
      none: {weight: 1, goto: end}
  - id: middle
    sms: {text: hi}
  - id: last
    sms: {text: bye}
"""
    root = parsed(flow_svg(campaign(text)))
    assert ("path", "node node-split") in nodes(root)
    assert sorted(edges(root, "jump")) == [("path", "end", "none 25%"), ("path", "last", "fast 25%")]
    step, = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge edge-next" and g.get("data-from") == "path"]
    assert (step.get("data-to"), texts(step)) == ("middle", ["slow 50%"])  # the paths that go on
    assert root.get("aria-label") == "Flow of campaign flow"  # no name: the file's


def test_stats_appear_under_their_step_whichever_keys_they_have():
    stats = {"welcome": {"sent": 120, "opened": 40, "clicks": 8}, "nudge": {"sent": 3, "bounces": 1},
             "route": {"sent": 9}}
    root = parsed(flow_svg(campaign(BRANCHED), stats))
    by_step = {g.get("data-step"): texts(g) for g in node_groups(root)}
    assert by_step["welcome"] == ["email", "welcome", "sent 120 · opens 40 · clicks 8"]
    assert by_step["nudge"] == ["sms", "nudge", "sent 3"]
    assert by_step["skipped"] == ["sms", "skipped"]
    assert by_step["route"] == ["branch", "route"]  # a branch sends nothing


def test_every_text_is_escaped():
    text = """\
name: "<script>alert('x')</script> & co"
steps:
  - id: call
    activity:
      kind: call
      responses:
        "<b>yes</b>": {result: successful, goto: end}
        "a\\"b": {result: postponed}
  - wait: {for: "partner.name != \\"<i>\\"", at_most: 1d}
"""
    svg = flow_svg(campaign(text))
    assert "<script>" not in svg and "<b>" not in svg and "<i>" not in svg
    root = parsed(svg)
    assert root.get("aria-label") == "Flow of campaign <script>alert('x')</script> & co"
    assert edges(root, "jump") == [("call", "end", "<b>yes</b>")]
    assert 'wait for partner.name != "<i>"' in texts(root)


def test_the_same_campaign_gives_the_same_svg_and_the_view_box_holds_every_node():
    svg = flow_svg(campaign(BRANCHED))
    assert svg == flow_svg(campaign(BRANCHED))
    root = parsed(svg)
    _, _, width, height = map(int, root.get("viewBox").split())
    for shape in root.iter(f"{SVG}rect"):
        assert int(shape.get("x")) + int(shape.get("width")) <= width
        assert int(shape.get("y")) + int(shape.get("height")) <= height
    tops = [int(g.find(f"{SVG}rect").get("y")) for g in node_groups(root) if g.find(f"{SVG}rect") is not None]
    assert tops == sorted(tops)  # top to bottom in file order


def test_an_empty_campaign_is_just_end():
    root = parsed(flow_svg(campaign("name: Empty\n")))
    assert nodes(root) == [("end", "node node-end")] and edges(root, "jump") == edges(root, "next") == []


def test_every_example_campaign_draws():
    workspace = load_workspace(EXAMPLES, check_partners=False)
    assert workspace.campaigns
    for cid, model in workspace.campaigns.items():
        root = parsed(flow_svg(model))
        assert len(nodes(root)) == len(model.steps) + 1, cid
    collections = parsed(flow_svg(workspace.campaigns["collections"]))
    assert ("collector-call", "dispute-letter", "disputed") in edges(collections, "jump")
    assert ("collector-call", "promise-check", "promised") in edges(collections, "jump")
