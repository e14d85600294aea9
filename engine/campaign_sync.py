"""Which campaigns run this tick: the store's campaign rows follow the files first (new
campaigns, switches on or off, priorities), and drafts and locked campaigns whose steps or
audience were edited are held back; the others run."""

from __future__ import annotations

from .locks import lock_error
from .tick_state import ENGINE_USER, TickState


def sync_campaigns(state: TickState) -> None:
    """Record new campaigns and switches on or off; hold back drafts and locked campaigns
    whose steps or audience were edited; set the tick's running campaigns and when each was
    last switched on."""
    store, plan, at = state.store, state.plan, state.at
    held: set[str] = set()
    with store.transaction():
        known = store.campaign_rows()  # inside: another tick may be adding them right now
        locks = store.locks()
        priorities = store.priorities()
        for cid, compiled in plan.campaigns.items():
            campaign = compiled.campaign
            if cid not in known:
                store.add_campaign(cid, campaign.name, campaign.active, at)
            elif known[cid][1] != campaign.active:
                store.set_campaign_active(cid, campaign.name, campaign.active, at)
                if campaign.active:
                    store.resume_overdue(cid, at)
                store.log(at, ENGINE_USER, "campaign.activated" if campaign.active else "campaign.deactivated", cid)
            draft = known[cid][3] if cid in known else None
            if draft is not None and draft == compiled.content_hash:
                held.add(cid)
            elif draft is not None:  # edited since it returned to draft: scheduled again from now
                store.set_draft(cid, None, at)
                store.log(at, ENGINE_USER, "campaign.scheduled", cid)
            if priorities.get(cid, 0) != campaign.priority:
                store.set_priority(cid, campaign.priority)
            if cid in locks:
                problem = lock_error(cid, campaign, *locks[cid])
                if problem is not None:
                    state.report.diagnostics.append(problem)
                    held.add(cid)
    state.since.clear()
    state.since.update((cid, row[2]) for cid, row in store.campaign_rows().items())
    state.running[:] = sorted(cid for cid, c in plan.campaigns.items() if c.active and cid not in held)

