"""JSON Schema of campaign files and of engine.yaml, from the pydantic models.

Editors that speak yaml-language-server complete and validate campaign files with it: put
``# yaml-language-server: $schema=../.engine/campaign.schema.json`` at the top of a file after
``engine schema > .engine/campaign.schema.json`` (see the README).
"""

from __future__ import annotations

from typing import Any

from .model import Campaign, Settings

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def campaign_schema() -> dict[str, Any]:
    return _schema(Campaign, "Campaign file (campaigns/*.yaml)")


def settings_schema() -> dict[str, Any]:
    return _schema(Settings, "Workspace settings (engine.yaml)")


def _schema(model: type, title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": SCHEMA_DIALECT, "title": title, **{k: v for k, v in schema.items() if k != "title"}}
