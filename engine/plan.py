"""`engine plan`: what the files as they are now would change in the store, before a tick does it.

For each campaign file, against the store:

- ``state``: ``new`` (no tick has seen it), ``switched_on`` / ``switched_off`` (its ``active`` flag
  differs from what the last tick saw), ``broken`` (it has errors: it would not run), else
  ``unchanged``;
- ``audience``: for a campaign with an ``audience`` trigger (the next tick acts on it), partners
  (from the partner source as it is now) who match the audience and have no enrollment in the
  campaign, and partners with a current enrollment who no longer match; counts and the first
  few ids. Other campaigns show only how many partners match;
- ``removed_steps``: current enrollments waiting for a step that is no longer in the file (they
  would close it with ``step_removed``), by step;
- ``locked``: the error of a one-shot campaign that started sending and whose steps, audience or
  trigger were edited.

Nothing is written. ``changes`` counts the campaigns with anything to report; the CLI exits 4
when it is not zero (0 when nothing would change).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from campaigns.audience import natural_key
from dsl.records import read_partners
from dsl.runtime import Context

from .compiled import CompiledWorkspace
from .locks import lock_error
from .store import Store
from .facts import StoreFacts

SAMPLE = 5
CURRENT = ("scheduled", "active", "paused")


def plan_changes(store: Store, plan: CompiledWorkspace, at: datetime) -> dict[str, Any]:
    known = store.campaign_rows()
    locks = store.locks()
    partners = _partners(plan)
    found = []
    for cid in sorted(plan.workspace.files):
        entry: dict[str, Any] = {"campaign": cid, "state": "unchanged", "audience": None, "removed_steps": None,
                                 "locked": None}
        compiled = plan.campaigns.get(cid)
        if compiled is None:
            entry["state"] = "broken"
            found.append(entry)
            continue
        active = compiled.campaign.active
        if cid not in known:
            entry["state"] = "new"
        elif known[cid][1] != active:
            entry["state"] = "switched_on" if active else "switched_off"
        entry["audience"] = _audience(store, plan, compiled, partners, at, compiled.trigger == "audience")
        entry["removed_steps"] = _removed_steps(store, compiled)
        if cid in locks:
            problem = lock_error(cid, compiled.campaign, *locks[cid])
            entry["locked"] = problem.render(None) if problem is not None else None
        found.append(entry)
    changes = sum(1 for e in found if _changes(e))
    return {"at": at.isoformat().replace("+00:00", "Z"), "changes": changes, "campaigns": found}


def _changes(entry: dict[str, Any]) -> bool:
    audience = entry["audience"] or {}
    return bool(entry["state"] != "unchanged" or audience.get("newly_matching") or audience.get("no_longer_matching")
                or (entry["removed_steps"] or {}).get("enrollments") or entry["locked"])


def _partners(plan: CompiledWorkspace) -> list[dict]:
    settings = plan.settings.partners
    path = plan.root / settings.source
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return read_partners(str(path), text, settings.types(), settings.id, plan.tz).records


def _audience(store: Store, plan: CompiledWorkspace, compiled, partners: list[dict], at: datetime,
              sampled: bool) -> dict[str, Any]:
    ctx = Context(now=at, tz=compiled.tz, facts=StoreFacts(store, plan, compiled.id, None, at))
    matching = set(compiled.audience.select(partners, ctx, plan.groups))
    if not sampled:
        return {"matching": len(matching)}
    ever = store.partners_in(compiled.id, CURRENT + ("finished",))
    current = store.partners_in(compiled.id, CURRENT)
    newly = sorted(matching - ever, key=natural_key)
    gone = sorted(current - matching, key=natural_key)
    return {"matching": len(matching), "newly_matching": len(newly), "newly_sample": newly[:SAMPLE],
            "no_longer_matching": len(gone), "no_longer_sample": gone[:SAMPLE]}


def _removed_steps(store: Store, compiled) -> dict[str, Any]:
    waiting = Counter(e.next_step for e in store.enrollments_in(compiled.id, list(CURRENT))
                      if e.next_step is not None and e.next_step not in compiled.steps)
    return {"enrollments": sum(waiting.values()), "steps": dict(sorted(waiting.items()))}
