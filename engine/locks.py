"""Locked one-shot campaigns (SPEC §1: "an email that is sending is locked; copy it to change it").

When an ``at`` campaign fires, the store keeps what its audience, trigger and steps were. From
then on a change to any of them in the file is an error at the changed line (a new `at` time
would send it again), for ``engine check`` and for every
tick; the tick leaves that campaign alone (its enrollments wait) and runs the others. Undoing the
change unlocks it again; other fields (name, description, owner, window, monitor) may change.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Mapping

from campaigns.shapes import Campaign
from dsl.diagnostics import Diagnostic, error

LOCKED_PARTS = ("audience", "trigger", "steps")


def snapshot(campaign: Campaign) -> str:
    """The locked parts of the campaign file as written (canonical JSON of the YAML data)."""
    data = campaign.document.data if campaign.document is not None else {}
    data = data if isinstance(data, dict) else {}
    return json.dumps({part: data.get(part) for part in LOCKED_PARTS}, sort_keys=True, default=str)


def lock_error(campaign_id: str, campaign: Campaign, locked_at: str, locked: str) -> Diagnostic | None:
    """The error at the first changed line, or None when the locked parts are as they were."""
    old = json.loads(locked)
    now = json.loads(snapshot(campaign))
    for part in LOCKED_PARTS:
        path = _first_change(old.get(part), now.get(part), (part,))
        if path is not None:
            assert campaign.document is not None
            message = (f"campaign '{campaign_id}' is locked: it started sending at {locked_at}, so its {part} cannot "
                       f"change; copy it to a new file (a new campaign) to change it, or undo this change")
            return error(campaign.document.span(path), message)
    return None


def _first_change(old: Any, new: Any, path: tuple) -> tuple | None:
    """The path (in the new data) of the first difference, in document order."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in new:
            if key not in old:
                return path + (key,)
            found = _first_change(old[key], new[key], path + (key,))
            if found is not None:
                return found
        return path if set(old) - set(new) else None
    if isinstance(old, list) and isinstance(new, list):
        for i, (a, b) in enumerate(zip(old, new)):
            found = _first_change(a, b, path + (i,))
            if found is not None:
                return found
        if len(new) > len(old):
            return path + (len(old),)
        return path if len(old) > len(new) else None
    return None if json.dumps(old, sort_keys=True, default=str) == json.dumps(new, sort_keys=True, default=str) else path


def stored_locks(database: Path | str) -> Mapping[str, tuple[str, str]]:
    """campaign → (locked at, snapshot) from a store on disk (or a PostgreSQL URL), read-only;
    {} without one (so that `engine check` never creates a store)."""
    if isinstance(database, str):
        try:
            from .store.postgres import stored_locks as from_server
        except ModuleNotFoundError:  # no psycopg: no store to read
            return {}
        return from_server(database)
    if not database.is_file():
        return {}
    try:
        db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return {c: (at, content) for c, at, content in db.execute("SELECT campaign, locked_at, content FROM locks")}
        finally:
            db.close()
    except sqlite3.Error:  # an older store without the table, or one being created right now
        return {}
