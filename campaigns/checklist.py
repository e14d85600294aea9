"""The launch checklist (SPEC §1 "a launch checklist", issue 6), run by ``engine check``.

A campaign goes live when its file is merged with ``active: true`` (or without ``active:``), so
every active campaign must be ready to launch:

- errors: it has a ``name``, a ``description``, an audience with at least one ruleset or
  group, and at least one step that does something (email, sms, popup, activity, letter; waits
  alone do nothing);
- a warning: its current content (the sha256 of the file's bytes, line endings read as
  ``\n``: a checkout that writes CRLF has the same hash) passed ``engine test``
  (``engine check --strict`` makes it an error). ``engine test`` records its passes in
  ``campaigns/.tested.json``, committed with the campaigns, so every clone gives the same answer.

Each diagnostic points at the place to fix: the key that is there but empty (``name:``,
``audience:``, ``steps: []``), else the file's first line. Drafts (``active: false``) are not
checked, and neither are files whose shape is wrong (``engine check`` already reports those).

The function is pure: the caller passes what ``engine test`` recorded (see
:func:`engine.dryrun.tested_hashes`); the only thing read is the campaign files' bytes, for
their hash, unless the caller passes the hashes too. ``campaigns/.tested.json`` is not a
campaign file: ``engine check`` and ``engine fmt`` read only ``campaigns/*.yaml`` / ``*.yml``.
"""

from __future__ import annotations

import hashlib
from typing import Mapping

from dsl.diagnostics import Diagnostic, error, warning
from dsl.source import Span

from .shapes import Campaign
from .workspace import CampaignFile, Workspace

DRAFT_HINT = "or set `active: false` while it is a draft"


def launch_checklist(workspace: Workspace, tested: Mapping[str, str], *,
                     hashes: Mapping[str, str] | None = None) -> list[Diagnostic]:
    """The checklist's diagnostics for every active campaign of the workspace, in file order.

    ``tested``: campaign id → the content hash of its last passing ``engine test``.
    ``hashes``: campaign id → its current content hash, when the caller has them already
    (default: the sha256 of each file's bytes)."""
    found: list[Diagnostic] = []
    for cid in sorted(workspace.files):
        file = workspace.files[cid]
        campaign = file.campaign
        if campaign is None or not campaign.active:
            continue
        found.extend(_required(cid, campaign, file))
        current = hashes.get(cid) if hashes is not None else None
        if current is None:
            current = content_hash(file)
        if tested.get(cid) != current:
            found.append(warning(_first_line(campaign, file),
                                 f"campaign {cid} was never run through `engine test` in its current form"))
    return found


def content_hash(file: CampaignFile) -> str:
    """The sha256 (hex) of the campaign file's bytes with each CRLF read as LF (git's
    ``core.autocrlf`` checks a file out either way: the same content, the same hash on every
    clone); of its text as loaded when the file can no longer be read."""
    try:
        data = file.path.read_bytes()
    except OSError:
        document = file.campaign.document if file.campaign is not None else None
        data = document.source.text.encode("utf-8") if document is not None else b""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def _required(cid: str, campaign: Campaign, file: CampaignFile) -> list[Diagnostic]:
    found: list[Diagnostic] = []
    if not _text(campaign.name):
        found.append(error(_key(campaign, file, "name"),
                           f"active campaign {cid} has no name: add `name:` {DRAFT_HINT}"))
    if not _text(campaign.description):
        found.append(error(_key(campaign, file, "description"),
                           f"active campaign {cid} has no description: add `description:` saying what it is for, {DRAFT_HINT}"))
    audience = campaign.audience
    if not audience.rulesets and not audience.groups:
        found.append(error(_key(campaign, file, "audience"),
                           f"active campaign {cid} has an audience with no ruleset and no group: it would reach "
                           f"nobody; add `audience.rulesets` or `audience.groups`, {DRAFT_HINT}"))
    if not campaign.action_steps:
        what = "only waits" if campaign.steps else "no step"
        found.append(error(_key(campaign, file, "steps"),
                           f"active campaign {cid} has {what}: add at least one email, sms, popup, activity or "
                           f"letter step, {DRAFT_HINT}"))
    return found


def _text(value: str | None) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _key(campaign: Campaign, file: CampaignFile, key: str) -> Span:
    """The key when the file writes it (``name:`` with no value), else the file's first line."""
    document = campaign.document
    if document is not None and isinstance(document.data, dict) and key in document.data:
        return document.key_span((key,))
    return _first_line(campaign, file)


def _first_line(campaign: Campaign, file: CampaignFile) -> Span:
    document = campaign.document
    if document is None:
        return Span(str(file.path), 1, 1, 1, 1)
    source = document.source
    end = source.text.find("\n")
    return source.span(0, end if end >= 0 else len(source.text))
