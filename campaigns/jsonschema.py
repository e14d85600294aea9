"""JSON Schema of campaign files and of engine.yaml, from the pydantic models.

Editors that speak yaml-language-server complete and validate campaign files with it: put
``# yaml-language-server: $schema=../.engine/campaign.schema.json`` at the top of a file after
``engine schema > .engine/campaign.schema.json`` (see the README).

Keys are spelled as in the files (``for``, ``else``, ``from``: the models' aliases). A step item
is one of ``Step``, ``Wait``, ``Branch`` and ``Split`` (``oneOf``: which one follows from the
keys it has); ``wait`` is a duration, ``{until}`` or ``{for, at_most}``; a split maps path keys to
``SplitPath`` (``{weight, goto}``), and the ``variants`` of an email, SMS, pop-up or letter map
variant keys to ``EmailVersion``, ``SmsVersion``, ``PopupVersion`` or ``LetterVersion`` (a
``weight`` and what the variant overrides). The campaign's ``holdout``, ``goal`` (``Goal``),
``quiet_hours`` (``QuietHours``), ``send_days``, ``priority`` and ``transactional`` are there,
and engine.yaml's ``policies`` (``Policies``: ``frequency`` of ``Cap``, ``on_cap``,
``quiet_hours``, ``send_days``).

Rules the models check in code are added here so that an editor flags them too: a branch case
is ``{when, goto}`` or ``{else}`` alone; a wait with ``renamed_from`` has an ``id``; a goal has
exactly one of ``when`` and ``event``, and ``where`` only with ``event``; quiet hours are
``"HH:MM"`` local times; variant and split path keys are slugs (as step ids are). (That the
weights add up to more than 0 is left to ``engine check``.)
"""

from __future__ import annotations

from typing import Any

from .model import Campaign, Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SLUG_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"  # dsl.ids.SLUG, at most MAX_SLUG characters
CLOCK_PATTERN = "^([01]?[0-9]|2[0-3]):[0-5][0-9]$"  # campaigns.model's local times ("21:00")


def campaign_schema() -> dict[str, Any]:
    return _refine(_schema(Campaign, "Campaign file (campaigns/*.yaml)"))


def settings_schema() -> dict[str, Any]:
    return _refine_shared(_schema(Settings, "Workspace settings (engine.yaml)"))


def _schema(model: type, title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": SCHEMA_DIALECT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}


def _refine(schema: dict[str, Any]) -> dict[str, Any]:
    """The shapes that model validators (not field types) decide, for the models that exist."""
    definitions = schema.get("$defs", {})
    case = definitions.get("Case")
    if case is not None and {"when", "goto", "else"} <= set(case.get("properties", {})):
        case["oneOf"] = [
            {"required": ["when", "goto"], "not": {"required": ["else"]}},
            {"required": ["else"], "maxProperties": 1},
        ]
    wait = definitions.get("Wait")
    if wait is not None and {"id", "renamed_from"} <= set(wait.get("properties", {})):
        wait["dependentRequired"] = {"renamed_from": ["id"]}
    goal = definitions.get("Goal")
    if goal is not None and {"when", "event", "where"} <= set(goal.get("properties", {})):
        goal["oneOf"] = [
            {"required": ["when"], "not": {"anyOf": [{"required": ["event"]}, {"required": ["where"]}]}},
            {"required": ["event"], "not": {"required": ["when"]}},
        ]
    for name in ("Email", "Sms", "Popup", "Letter"):
        variants = definitions.get(name, {}).get("properties", {}).get("variants")
        if isinstance(variants, dict) and variants.get("type") == "object":
            variants["propertyNames"] = {"pattern": SLUG_PATTERN}
        version = definitions.get(f"{name}Version", {})
        if "weight" in version.get("properties", {}):  # listed first, as engine fmt writes it
            version["properties"] = {"weight": version["properties"].pop("weight"), **version["properties"]}
    split = definitions.get("Split", {}).get("properties", {}).get("split")
    if isinstance(split, dict) and split.get("type") == "object":
        split["propertyNames"] = {"pattern": SLUG_PATTERN}
    return _refine_shared(schema)


def _refine_shared(schema: dict[str, Any]) -> dict[str, Any]:
    """What both schemas have: quiet hours (a campaign's, engine.yaml's policies')."""
    quiet = schema.get("$defs", {}).get("QuietHours")
    if quiet is not None:
        for key in ("from", "to"):
            if key in quiet.get("properties", {}):
                quiet["properties"][key]["pattern"] = CLOCK_PATTERN
    return schema
