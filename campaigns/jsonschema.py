"""JSON Schema of campaign files and of engine.yaml, from the pydantic models.

Editors that speak yaml-language-server complete and validate campaign files with it: put
``# yaml-language-server: $schema=../.engine/campaign.schema.json`` at the top of a file after
``engine schema > .engine/campaign.schema.json`` (see the README).

Keys are spelled as in the files (``for``, ``else``, ``from``: the models' aliases). A step item
is one of ``Step``, ``Wait`` and ``Branch`` (``oneOf``: which one follows from the keys it has);
``wait`` is a duration, ``{until}`` or ``{for, at_most}``. Two rules the models check in code are
added here so that an editor flags them too: a branch case is ``{when, goto}`` or ``{else}``
alone, and a wait with ``renamed_from`` has an ``id``.
"""

from __future__ import annotations

from typing import Any

from .model import Campaign, Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def campaign_schema() -> dict[str, Any]:
    return _refine(_schema(Campaign, "Campaign file (campaigns/*.yaml)"))


def settings_schema() -> dict[str, Any]:
    return _schema(Settings, "Workspace settings (engine.yaml)")


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
    return schema
