"""Campaign statistics (SPEC §8 ``engine stats``): per step and language, what was sent and
what partners did with it, and the campaign's In-Campaign %.

- ``sent`` counts messages their transport took (a queued or failed one is not sent); for a
  pop-up, those shown; for a letter, the rows written.
- ``opens`` / ``clicks`` / ``bounces`` count imported events (``unique_*``: distinct partners).
  An event counts for the language of the step's latest message to that partner.
- ``read`` / ``unread``: pop-ups marked read (``engine popup read`` or a ``read`` event) or not.
- In-Campaign %: as the monitor measures it (:mod:`engine.monitor`), as of now.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .compiled import CompiledWorkspace
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
    return {"campaign": campaign_id, "in_campaign_pct": in_campaign_pct(store, plan, book, campaign_id, at),
            "steps": steps}


def in_campaign_pct(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_id: str,
                    at: datetime) -> float | None:
    """The monitor's measure (see :mod:`engine.monitor`); null for a campaign that does not
    run or an audience with nobody eligible."""
    compiled = plan.campaigns.get(campaign_id)
    if compiled is None:
        return None
    return in_campaign(store, plan, book, compiled, at).pct
