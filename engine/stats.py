"""Campaign statistics (SPEC §8 ``engine stats``): per step and language, what was sent and
what partners did with it, the activities and responses per step, and the campaign's
In-Campaign %.

- ``sent`` counts messages their transport took (a queued or failed one is not sent); for a
  pop-up, those shown; for a letter, the rows written.
- ``opens`` / ``clicks`` / ``bounces`` count imported events (``unique_*``: distinct partners).
  An event counts for the language of the step's latest message to that partner.
- ``read`` / ``unread``: pop-ups marked read (``engine popup read`` or a ``read`` event) or not.
- ``activities``: per activity step (in file order, then any step only the store still has),
  the activities ``created`` (one per run of the step), ``completed`` and ``open``, and how the
  completed ones were answered: ``responses`` (each response key the step lists, 0 included,
  plus any other key recorded) and ``results`` (successful, postponed...; an activity completed
  without a response has a result only).
- ``mailing_responses``: per email or SMS step that lists ``responses:`` (or has any recorded),
  the mailings answered (``responded``), by response key and by result.
- In-Campaign %: as the monitor measures it (:mod:`engine.monitor`), as of now, null for a
  campaign that does not run (a draft, a file with errors, a campaign whose file is gone);
  ``in_campaign`` adds how many are active of how many counted, the partners waiting for a cron
  or ``at`` occurrence, and the counted partners who are not active, by reason.

The keys of SPEC §8 (``campaign``, ``in_campaign_pct``, ``steps`` and the keys of each step row)
are exactly as the SPEC lists them; ``in_campaign``, ``activities`` and ``mailing_responses``
come after them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable

from .compiled import CompiledCampaign, CompiledWorkspace
from .monitor import in_campaign
from .partners import PartnerBook
from .store import Store

ROW_KEYS = ("sent", "opens", "unique_opens", "clicks", "unique_clicks", "bounces", "read", "unread")
CHANNEL_OF = {"email": "email", "sms": "sms", "popup": "popup", "letter": "letter"}


def campaign_stats(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_id: str,
                   at: datetime) -> dict[str, Any]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}

    def row(step: str, channel: str, language: str) -> dict[str, Any]:
        key = (step, language)
        if key not in rows:
            rows[key] = {"step": step, "channel": channel, "language": language, **dict.fromkeys(ROW_KEYS, 0)}
        return rows[key]

    channels: dict[str, str] = {}
    compiled = plan.campaigns.get(campaign_id)
    if compiled is not None:
        channels = {s.id: CHANNEL_OF[s.kind] for s in compiled.campaign.action_steps if s.kind in CHANNEL_OF}
    for step, channel, language, status, n in store.message_counts(campaign_id):
        channels.setdefault(step, channel)
        if status == "sent":
            row(step, channel, language or "default")["sent"] += n
    for step, language, shown, read in store.popup_counts(campaign_id):
        channels.setdefault(step, "popup")
        r = row(step, "popup", language)
        r.update(sent=r["sent"] + shown, read=r["read"] + read, unread=r["unread"] + shown - read)
    for step, language, kind, total, unique in store.engagement_counts(campaign_id):
        r = row(step, channels.get(step, "email"), language)
        if kind == "opened":
            r["opens"] += total
            r["unique_opens"] += unique
        elif kind == "clicked":
            r["clicks"] += total
            r["unique_clicks"] += unique
        else:
            r["bounces"] += total
    for step, channel in channels.items():  # a step nothing was sent for yet still has its row
        if not any(key[0] == step for key in rows):
            row(step, channel, "default")
    order = {step: i for i, step in enumerate(channels)}
    steps = sorted(rows.values(), key=lambda r: (order.get(r["step"], len(order)), r["step"], r["language"]))
    measured = in_campaign(store, plan, book, compiled, at, details=True) if _runs(compiled) else None
    responses = store.responses(campaign=campaign_id)
    return {"campaign": campaign_id, "in_campaign_pct": measured.pct if measured else None,
            "steps": steps,
            "in_campaign": measured.details() if measured else None,
            "activities": activity_counts(compiled, store.activities(campaign_id)),
            "mailing_responses": mailing_counts(compiled, [r for r in responses if r["kind"] == "mailing"])}


def activity_counts(compiled: CompiledCampaign | None, activities: Iterable[dict]) -> list[dict[str, Any]]:
    """Per activity step: created, completed, open, and the completed ones by response and result."""
    entries: dict[str, dict[str, Any]] = {}

    def entry(step: str, kind: str | None) -> dict[str, Any]:
        if step not in entries:
            entries[step] = {"step": step, "kind": kind, "created": 0, "completed": 0, "open": 0,
                             "responses": {}, "results": {}}
        return entries[step]

    for step in compiled.campaign.action_steps if compiled is not None else ():
        if step.kind == "activity":
            entry(step.id, step.activity.kind)["responses"] = dict.fromkeys(step.activity.responses, 0)
    for a in activities:
        e = entry(a["step"], a["kind"])
        e["created"] += 1
        if a["status"] == "completed":
            e["completed"] += 1
            if a["response"] is not None:
                e["responses"][a["response"]] = e["responses"].get(a["response"], 0) + 1
            if a["result"] is not None:
                e["results"][a["result"]] = e["results"].get(a["result"], 0) + 1
        else:
            e["open"] += 1
    return list(entries.values())


def mailing_counts(compiled: CompiledCampaign | None, responses: Iterable[dict]) -> list[dict[str, Any]]:
    """Per email or SMS step with responses: the mailings answered, by response key and result."""
    entries: dict[str, dict[str, Any]] = {}
    steps = {s.id: s for s in compiled.campaign.action_steps} if compiled is not None else {}
    for step in steps.values():
        if step.kind in ("email", "sms") and step.action.responses:
            entries[step.id] = {"step": step.id, "channel": step.kind, "responded": 0,
                                "responses": dict.fromkeys(step.action.responses, 0), "results": {}}
    for r in responses:
        known = steps.get(r["step"])
        e = entries.setdefault(r["step"], {"step": r["step"], "channel": known.kind if known else None,
                                           "responded": 0, "responses": {}, "results": {}})
        e["responded"] += 1
        e["responses"][r["response"]] = e["responses"].get(r["response"], 0) + 1
        e["results"][r["result"]] = e["results"].get(r["result"], 0) + 1
    return list(entries.values())


def in_campaign_pct(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_id: str,
                    at: datetime) -> float | None:
    """The monitor's measure (see :mod:`engine.monitor`); null for a campaign that does not
    run or when nobody counts."""
    compiled = plan.campaigns.get(campaign_id)
    if not _runs(compiled):
        return None
    return in_campaign(store, plan, book, compiled, at).pct


def in_campaign_pcts(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_ids: Iterable[str],
                     at: datetime) -> dict[str, float | None]:
    """:func:`in_campaign_pct` of each campaign (the `engine status` list)."""
    return {cid: in_campaign_pct(store, plan, book, cid, at) for cid in campaign_ids}


def _runs(compiled: CompiledCampaign | None) -> bool:
    return compiled is not None and compiled.campaign.active


def response_text(counts: dict[str, int]) -> str:
    """``interested 2, not-now 1, declined 0`` (for the text output)."""
    return ", ".join(f"{key} {n}" for key, n in counts.items()) or "-"

