"""engine schema (campaigns.jsonschema): the JSON Schema of campaign files and of engine.yaml.

The flow-control keys appear as they are written in files (``for``, ``else``; ``renamed_from``
a string or a list; ``goto`` on responses; ``wait`` a duration, ``{until}`` or ``{for, at_most}``;
``branch`` steps; ``previously_treated`` a duration too), the example campaigns and the README's
flow-control example validate, and on every sample below the schema and the models agree.

Validation uses the ``jsonschema`` library when it is installed (it is not a dependency) and
always a small validator of the keywords the schema uses (``check``), which refuses a schema with
a keyword it does not know rather than ignore it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from campaigns.jsonschema import campaign_schema, settings_schema
from campaigns.building import build
from campaigns.model import Campaign
from dsl.yamlload import load_yaml
from tests.campaigns.test_fmt import FLOW_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"



# --- A small validator of the keywords the schema uses ------------------------------------------

ANNOTATIONS = {"$schema", "$defs", "title", "description", "default", "examples", "format"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def check(schema: Any, value: Any, root: dict | None = None) -> bool:
    """Whether ``value`` is valid against ``schema`` (JSON Schema 2020-12, the keywords used)."""
    root = schema if root is None else root
    if schema is True or schema is False:
        return schema
    unknown = set(schema) - ANNOTATIONS - set(KEYWORDS)
    assert not unknown, f"the test's validator does not know {sorted(unknown)}"
    return all(KEYWORDS[k](schema, v, value, root) for k, v in schema.items() if k in KEYWORDS)


def _ref(schema: dict, ref: str, value: Any, root: dict) -> bool:
    assert ref.startswith("#/$defs/")
    return check(root["$defs"][ref.removeprefix("#/$defs/")], value, root)


def _properties(schema: dict, properties: dict, value: Any, root: dict) -> bool:
    if not isinstance(value, dict):
        return True
    return all(check(properties[k], v, root) for k, v in value.items() if k in properties)


def _additional(schema: dict, additional: Any, value: Any, root: dict) -> bool:
    if not isinstance(value, dict):
        return True
    known = schema.get("properties", {})
    return all(check(additional, v, root) for k, v in value.items() if k not in known)


def _items(schema: dict, items: Any, value: Any, root: dict) -> bool:
    return not isinstance(value, list) or all(check(items, v, root) for v in value)


def _dependent(schema: dict, dependencies: dict, value: Any, root: dict) -> bool:
    if not isinstance(value, dict):
        return True
    return all(set(needed) <= set(value) for key, needed in dependencies.items() if key in value)


def _numeric(compare):
    return lambda s, limit, v, r: not TYPES["number"](v) or compare(v, limit)


KEYWORDS = {
    "$ref": _ref,
    "type": lambda s, t, v, r: any(TYPES[x](v) for x in ([t] if isinstance(t, str) else t)),
    "enum": lambda s, options, v, r: v in options,
    "const": lambda s, c, v, r: v == c,
    "pattern": lambda s, p, v, r: not isinstance(v, str) or re.search(p, v) is not None,
    "minimum": _numeric(lambda v, limit: v >= limit),
    "maximum": _numeric(lambda v, limit: v <= limit),
    "minItems": lambda s, n, v, r: not isinstance(v, list) or len(v) >= n,
    "maxProperties": lambda s, n, v, r: not isinstance(v, dict) or len(v) <= n,
    "minProperties": lambda s, n, v, r: not isinstance(v, dict) or len(v) >= n,
    "propertyNames": lambda s, inner, v, r: not isinstance(v, dict) or all(check(inner, k, r) for k in v),
    "required": lambda s, keys, v, r: not isinstance(v, dict) or set(keys) <= set(v),
    "dependentRequired": _dependent,
    "properties": _properties,
    "additionalProperties": _additional,
    "items": _items,
    "anyOf": lambda s, options, v, r: any(check(o, v, r) for o in options),
    "oneOf": lambda s, options, v, r: sum(check(o, v, r) for o in options) == 1,
    "not": lambda s, inner, v, r: not check(inner, v, r),
}


def as_json(data: Any) -> Any:
    """A file's data the way an editor's YAML server hands it to the schema (dates as text)."""
    return json.loads(json.dumps(data, default=str))


def campaign_data(text: str) -> Any:
    return as_json(load_yaml("c.yaml", text).data)


def model_accepts(text: str) -> bool:
    _, problems = build(Campaign, load_yaml("c.yaml", text))
    return not problems


def validators() -> list:
    """check, and jsonschema's validator when the library is there."""
    found = [lambda schema, value: check(schema, value)]
    try:
        import jsonschema
    except ImportError:
        return found
    found.append(lambda schema, value: jsonschema.Draft202012Validator(schema).is_valid(value))
    return found


@pytest.fixture(scope="module")
def schema() -> dict:
    return campaign_schema()


# --- The flow-control keys as they appear -------------------------------------------------------


def test_a_step_is_an_action_step_a_wait_a_branch_or_a_split(schema: dict):
    assert schema["properties"]["steps"]["items"]["oneOf"] == [
        {"$ref": "#/$defs/Step"}, {"$ref": "#/$defs/Wait"}, {"$ref": "#/$defs/Branch"}, {"$ref": "#/$defs/Split"},
    ]
    defs = schema["$defs"]
    assert list(defs["Step"]["properties"])[:3] == ["id", "renamed_from", "when"]
    assert list(defs["Wait"]["properties"]) == ["id", "renamed_from", "wait"]
    assert defs["Wait"]["required"] == ["wait"]
    assert list(defs["Branch"]["properties"]) == ["id", "renamed_from", "branch"]
    assert defs["Branch"]["required"] == ["id", "branch"]
    assert defs["Branch"]["properties"]["branch"] == {
        "items": {"$ref": "#/$defs/Case"}, "minItems": 1, "title": "Branch", "type": "array",
    }


def test_wait_is_a_duration_a_local_time_or_a_condition_with_at_most(schema: dict):
    defs = schema["$defs"]
    duration, until, wait_for = defs["Wait"]["properties"]["wait"]["oneOf"]
    assert duration["type"] == "string" and duration["pattern"] == "^[0-9]+[mhdw]$"
    assert until == {"$ref": "#/$defs/Until"}
    assert wait_for == {"$ref": "#/$defs/WaitFor"}
    assert list(defs["WaitFor"]["properties"]) == ["for", "at_most"]  # the alias, never for_
    assert defs["WaitFor"]["required"] == ["for", "at_most"]
    assert defs["WaitFor"]["additionalProperties"] is False
    assert defs["WaitFor"]["properties"]["at_most"]["pattern"] == "^[0-9]+[mhdw]$"


def test_cases_responses_and_renames_are_spelled_as_in_files(schema: dict):
    defs = schema["$defs"]
    assert list(defs["Case"]["properties"]) == ["when", "goto", "else"]  # never else_
    assert defs["Case"]["additionalProperties"] is False
    assert list(defs["Response"]["properties"]) == ["result", "follow_up", "goto"]
    for name in ("Step", "Wait", "Branch"):
        renamed = defs[name]["properties"]["renamed_from"]["anyOf"]
        assert renamed == [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], name


def test_previously_treated_may_be_a_duration(schema: dict):
    options = schema["properties"]["previously_treated"]["anyOf"]
    assert {"enum": ["exclude", "include"], "type": "string"} in options
    assert any(o.get("pattern") == "^[0-9]+[mhdw]$" for o in options)


def test_settings_know_the_partner_timezone_field_and_the_int_type():
    partners = settings_schema()["$defs"]["PartnerSettings"]
    assert list(partners["properties"]) == ["source", "id", "timezone_field", "fields"]
    assert "| int |" in partners["properties"]["fields"]["description"]
    assert "list[int]" in partners["properties"]["fields"]["description"]


# --- Validation -------------------------------------------------------------------------------


def test_the_test_validator_knows_every_keyword_of_both_schemas(schema: dict):
    for whole in (schema, settings_schema()):
        def walk(node: Any) -> None:
            if isinstance(node, dict):
                assert not set(node) - ANNOTATIONS - set(KEYWORDS), sorted(set(node) - ANNOTATIONS - set(KEYWORDS))
                for key, value in node.items():
                    if key in ("properties", "$defs", "dependentRequired"):
                        for inner in value.values():
                            walk(inner)
                    elif key not in ("enum", "required", "default", "examples", "const"):
                        walk(value)
            elif isinstance(node, list):
                for inner in node:
                    walk(inner)

        walk(whole)


def test_jsonschema_accepts_the_schemas_when_installed():
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft202012Validator.check_schema(campaign_schema())
    jsonschema.Draft202012Validator.check_schema(settings_schema())


@pytest.mark.parametrize("path", sorted((EXAMPLES / "campaigns").glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_campaigns_validate(schema: dict, path: Path):
    data = campaign_data(path.read_text())
    for valid in validators():
        assert valid(schema, data)


def test_the_example_engine_yaml_validates():
    data = as_json(load_yaml("engine.yaml", (EXAMPLES / "engine.yaml").read_text()).data)
    for valid in validators():
        assert valid(settings_schema(), data)


def test_the_flow_control_example_validates(schema: dict):
    assert model_accepts(FLOW_EXAMPLE)
    data = campaign_data(FLOW_EXAMPLE)
    for valid in validators():
        assert valid(schema, data)


def _variant(old: str, new: str) -> str:
    assert old in FLOW_EXAMPLE
    return FLOW_EXAMPLE.replace(old, new)


ACCEPTED = {
    "renames as a list": _variant("renamed_from: old-wait", "renamed_from: [old-wait, older-wait]"),
    "a step renamed": _variant("  - id: collector-call\n", "  - id: collector-call\n    renamed_from: call\n"),
    "a branch renamed": _variant("  - id: route\n", "  - id: route\n    renamed_from: [r1]\n"),
    "a duration wait with an id": _variant('{for: opened("welcome") or clicked("welcome"), at_most: 3d}', "3d"),
    "a wait until a local time": _variant('{for: opened("welcome") or clicked("welcome"), at_most: 3d}', '{until: "09:00"}'),
    "a plain wait": FLOW_EXAMPLE + "  - wait: 2d\n",
    "a branch without else": _variant("      - {else: end}\n", ""),
    "block style cases": _variant(
        "      - {when: opened(\"welcome\"), goto: upsell}\n", "      - when: opened(\"welcome\")\n        goto: upsell\n"),
    "previously_treated as a duration": "previously_treated: 30d\n" + FLOW_EXAMPLE,
    "previously_treated include": "previously_treated: include\n" + FLOW_EXAMPLE,
}
REFUSED = {
    "wait-for without at_most": _variant(", at_most: 3d}", "}"),
    "a wait with for and until": _variant(", at_most: 3d}", ', at_most: 3d, until: "09:00"}'),
    "a case without goto": _variant(', goto: upsell}', "}"),
    "a case without when": _variant('{when: opened("welcome"), goto: upsell}', "{goto: upsell}"),
    "else with a condition": _variant("{else: end}", '{when: opened("x"), else: end}'),
    "else with goto": _variant("{else: end}", "{goto: end, else: end}"),
    "a case with goto and else": _variant("{else: end}", '{when: opened("x"), goto: end, else: end}'),
    "an empty branch": _variant(
        "    branch:                       # first case whose `when` holds wins; none: next step\n"
        "      - {when: response(\"collector-call\") == \"disputed\", goto: dispute-letter}\n"
        "      - {when: opened(\"welcome\"), goto: upsell}\n"
        "      - {else: end}\n",
        "    branch: []\n"),
    "a branch without id": _variant("  - id: route\n", "  - renamed_from: x\n"),
    "a wait renamed without an id": _variant("  - id: wait-open                 # waits may carry an id\n", "  -\n"),
    "renamed_from a number": _variant("renamed_from: old-wait", "renamed_from: 12"),
    "a response with an unknown key": _variant("goto: check}", "goto: check, go_to: x}"),
    "a response without result": _variant("{result: unsuccessful, goto: dispute-letter}", "{goto: dispute-letter}"),
    "previously_treated in words": "previously_treated: 30 days\n" + FLOW_EXAMPLE,
}


@pytest.mark.parametrize("name", [*ACCEPTED, *REFUSED])
def test_the_schema_and_the_models_agree(schema: dict, name: str):
    text = ACCEPTED.get(name) or REFUSED[name]
    expected = name in ACCEPTED
    assert model_accepts(text) is expected, name
    data = campaign_data(text)
    for valid in validators():
        assert valid(schema, data) is expected, name


@pytest.mark.parametrize("text", [_variant("{for: ", "{for_: "), _variant("{else: end}", "{else_: end}")],
                         ids=["for_", "else_"])
def test_the_schema_knows_only_the_spelling_of_files(schema: dict, text: str):
    """``for_`` and ``else_`` are the models' field names, not keys of a file. (The models still
    take them, as every model takes its field names: ``populate_by_name``.)"""
    data = campaign_data(text)
    for valid in validators():
        assert valid(schema, data) is False
