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
- ``renamed_steps``: current enrollments waiting for a step under an id the file now lists in a
  step's ``renamed_from``: they continue at the new id as if nothing happened (not
  ``step_removed``), by old id: ``{"enrollments": 3, "steps": {"reminder": {"to": "second-look",
  "enrollments": 3}}}``;
- ``new_steps``: steps (a branch, a wait-for or an action step) that are new to the enrollments
  in flight (active or paused): ``will_not_run`` counts those already past it, for whom it never
  runs, ``will_run`` those who reach it later (a branch is then evaluated for them), by step:
  ``{"enrollments": 4, "steps": {"route": {"kind": "branch", "will_run": 3, "will_not_run": 1}}}``.
  The store does not keep the file the last tick saw, so a step counts as new when no enrollment
  in flight has a run of it or waits at it and at least one has passed it without running it
  (it was inserted before that one's position) or was past the last step (it was added at the
  end). A step inserted beyond every enrollment's position is not told apart from one nobody
  has reached yet: it runs as any later step does;
- ``experiments``: for a campaign with a ``holdout``, ``variants`` or a ``split`` (null for the
  others), what the file's experiment does to the current enrollments. Assignment is the SPEC's
  hash of the file as it is now, asked at each step: a split path or variant already recorded for
  an enrollment stays (the step ran), a later one follows the file, and so does the holdout,
  which is asked at each message step. The store does not keep the file the last tick saw, so
  what changed is told by the records that disagree with the file::

      {"holdout": {"pct": 20.0, "enrollments": 40, "held_out": 9,
                   "now_held_out": 4, "now_treated": 0} | None,
       "steps": {"path": {"kind": "split", "weights": {"call-first": 30, "email-first": 70},
                          "passed": 12, "changed": 5, "ahead": {"call-first": 8, "email-first": 20}}}}

  ``holdout``: of the current enrollments (scheduled, active, paused), how many the holdout now
  holds out, and of those with steps to go, how many received a message of the campaign and are
  now held out (their next message steps are skipped, reason ``holdout``: the holdout grew or the
  partner's hash moved) or had a message skipped for the holdout and are now treated (their next
  message steps run). Per split, and per step with variants, in step order: its ``weights`` (file
  order), ``passed``: enrollments that have its path or variant recorded, ``changed``: of those,
  how many the file as it is now would give another one (its weights, their order or its keys
  changed since; they keep theirs), ``ahead``: the enrollments that have not reached it, by the
  path or variant the file gives them (for variants, the partners the holdout holds out left
  out: they get no message). The holdout's flips count as changes: the next tick acts on them;
- ``locked``: the error of a one-shot campaign that started sending and whose steps, audience or
  trigger were edited;
- ``next_firing``: for an active ``cron`` or ``at`` campaign (null for the others), the trigger's
  next firing and whom it would enroll: ``{"kind": "cron"|"at", "trigger": the cron expression
  or the at time, "at": when it fires next (null: it does not), "due": it fires at or before the
  plan's time (the next tick fires it), "enrolls": how many, "sample": the first few ids,
  "note": why nobody or nothing, or null}``. The next firing is the tick's: a cron's first
  occurrence after the last one fired (or from when the campaign was switched on; a campaign the
  store has not seen active yet starts at the plan's time), an ``at`` time not fired yet (one
  already past fires at the next tick, taken to be the plan's time). Whom it enrolls: the
  audience as of the firing, from the partner source as it is now, who may be enrolled by a
  trigger then (not current, ``reenroll``, exclusivity), with the store's enrollments as they are
  now; nobody when the window is closed then. A firing of a campaign returned to draft (``engine
  draft``) and not edited since is none; a cron that does not fire in ten years neither.

Nothing is written. ``changes`` counts the campaigns with anything to report (a next firing counts
when it is due and enrolls someone: the next tick would); the CLI exits 4 when it is not zero (0
when nothing would change).
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from campaigns.audience import natural_key
from campaigns.enrollment import PastEnrollment, SkipReason, eligible_for_trigger, window_opens
from campaigns.shapes import Split, Step
from campaigns.policy import assign, held_out, is_message, weights
from campaigns.schedule import at_fire_time, next_cron_firing
from dsl.records import read_partners
from dsl.runtime import Context

from .clock import aware, from_iso, iso
from .compiled import CompiledWorkspace
from .locks import lock_error
from .store import Enrollment, Store
from .facts import StoreFacts

SAMPLE = 5
CURRENT = ("scheduled", "active", "paused")
IN_FLIGHT = ("active", "paused")  # a scheduled enrollment takes its first step when it starts


def plan_changes(store: Store, plan: CompiledWorkspace, at: datetime) -> dict[str, Any]:
    known = store.campaign_rows()
    locks = store.locks()
    partners = _partners(plan)
    found = []
    for cid in sorted(plan.workspace.files):
        entry: dict[str, Any] = {"campaign": cid, "state": "unchanged", "audience": None, "removed_steps": None,
                                 "locked": None, "renamed_steps": None, "new_steps": None, "next_firing": None,
                                 "experiments": None}
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
        current = store.enrollments_in(compiled.id, list(CURRENT))
        entry["removed_steps"] = _removed_steps(current, compiled)
        entry["renamed_steps"] = _renamed_steps(current, compiled)
        entry["new_steps"] = _new_steps(store, current, compiled)
        entry["next_firing"] = _next_firing(store, plan, compiled, partners, at, known.get(cid))
        entry["experiments"] = _experiments(store, current, compiled)
        if cid in locks:
            problem = lock_error(cid, compiled.campaign, *locks[cid])
            entry["locked"] = problem.render(None) if problem is not None else None
        found.append(entry)
    changes = sum(1 for e in found if _changes(e))
    return {"at": at.isoformat().replace("+00:00", "Z"), "changes": changes, "campaigns": found}


def _changes(entry: dict[str, Any]) -> bool:
    audience = entry["audience"] or {}
    return bool(entry["state"] != "unchanged" or audience.get("newly_matching") or audience.get("no_longer_matching")
                or (entry["removed_steps"] or {}).get("enrollments") or entry["locked"]
                or (entry.get("renamed_steps") or {}).get("enrollments")
                or (entry.get("new_steps") or {}).get("enrollments")
                or _holdout_flips((entry.get("experiments") or {}).get("holdout"))
                or bool((entry.get("next_firing") or {}).get("due") and entry["next_firing"]["enrolls"]))


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


def _next_firing(store: Store, plan: CompiledWorkspace, compiled, partners: list[dict], at: datetime,
                 row: tuple | None) -> dict[str, Any] | None:
    """The next firing of an active cron or `at` campaign and whom it would enroll (see the
    module's docstring); None for the other campaigns."""
    found = next_firing(store, compiled, at, row)
    if found is None or found["at"] is None or found["note"]:
        return found
    when, cid = from_iso(found["at"]), compiled.id
    ctx = Context(now=when, tz=compiled.tz, facts=StoreFacts(store, plan, cid, None, when))
    ids = sorted(compiled.audience.select(partners, ctx, plan.groups), key=natural_key)
    history = store.history(ids) if ids else {}
    enrolls = [pid for pid in ids if eligible_for_trigger(cid, compiled.campaign, [
        PastEnrollment(e.campaign, e.number, e.status, e.started_at, e.finished_at, plan.exclusive(e.campaign))
        for e in history.get(pid, [])], when)]
    found["enrolls"], found["sample"] = len(enrolls), enrolls[:SAMPLE]
    return found


def next_firing(store: Store, compiled, at: datetime, row: tuple | None) -> dict[str, Any] | None:
    """When an active cron or `at` campaign fires next, as of ``at`` (``row``: its row of
    ``store.campaign_rows()``): ``kind``, ``trigger``, ``at`` (None when it will not), ``due``
    and a ``note`` saying why not, or that its window will have closed; None for the other
    campaigns. `engine plan` adds whom it would enroll; the campaigns page shows the time."""
    trigger = compiled.campaign.trigger
    if trigger is None or (trigger.cron is None and trigger.at is None) or not compiled.campaign.active:
        return None
    cid = compiled.id
    if trigger.cron is not None:
        found: dict[str, Any] = {"kind": "cron", "trigger": trigger.cron}
    else:
        at_time = aware(trigger.at if trigger.at.tzinfo is not None else trigger.at.replace(tzinfo=compiled.tz))
        found = {"kind": "at", "trigger": iso(at_time)}
    found.update({"at": None, "due": False, "enrolls": 0, "sample": [], "note": None})
    draft = row[3] if row is not None else None
    if draft is not None and draft == compiled.content_hash:
        found["note"] = "returned to draft (engine draft): it does not fire until its file is edited"
        return found
    # active since (the tick that switched it on); not seen active yet, or a draft edited since:
    # the next tick starts it, taken to be at the plan's time
    since = row[2] if row is not None and row[1] and row[2] is not None and draft is None else at
    if trigger.cron is not None:
        last = store.last_firing(cid, "cron:")
        fired = from_iso(last[5:]) if last else None
        after, inclusive = (fired, False) if fired is not None and fired >= since else (since, True)
        when = next_cron_firing(trigger.cron, after, compiled.tz, inclusive=inclusive)
        if when is None:
            found["note"] = "the cron expression does not fire in the next ten years"
            return found
    else:
        if store.has_fired(cid, "at:" + iso(at_time)):
            found["note"] = "it fired already: a one-shot fires once"
            return found
        when = at_fire_time(at_time, since)
    found["at"], found["due"] = iso(when), when <= at
    if window_opens(when, compiled.campaign.window, compiled.tz) is None:
        found["note"] = "the campaign's window has closed by then: it enrolls nobody"
    return found


def firing_line(firing: dict[str, Any]) -> str:
    """The text line of ``next_firing`` (for `engine plan` without ``--json``)."""
    what = f"{firing['kind']} {firing['trigger']}" if firing["kind"] == "at" else f"cron \"{firing['trigger']}\""
    if firing["at"] is None:
        return f"next firing ({what}): none, {firing['note']}"
    when = f"next firing ({what}) at {firing['at']}" + (" (due: the next tick fires it)" if firing["due"] else "")
    if firing["note"]:
        return f"{when}: {firing['note']}"
    if not firing["enrolls"]:
        return f"{when} would enroll nobody"
    return f"{when} would enroll {firing['enrolls']} partners (e.g. {', '.join(firing['sample'])})"


def _removed_steps(current: list[Enrollment], compiled) -> dict[str, Any]:
    """Enrollments whose position (a step, a branch, a wait-for) left the file, renames followed."""
    waiting = Counter(e.next_step for e in current
                      if e.next_step is not None and compiled.flow.node(e.next_step) is None)
    return {"enrollments": sum(waiting.values()), "steps": dict(sorted(waiting.items()))}


def _renamed_steps(current: list[Enrollment], compiled) -> dict[str, Any]:
    """Enrollments waiting at an old id of a step: they continue at its new id."""
    steps: dict[str, dict[str, Any]] = {}
    for e in current:
        now = compiled.flow.resolve(e.next_step)
        if now is not None and now != e.next_step:
            steps.setdefault(e.next_step, {"to": now, "enrollments": 0})["enrollments"] += 1
    return {"enrollments": sum(s["enrollments"] for s in steps.values()), "steps": dict(sorted(steps.items()))}


def _new_steps(store: Store, current: list[Enrollment], compiled) -> dict[str, Any]:
    """The steps new to the enrollments in flight, and for how many of them each will or will
    not run, by the tick's rules: a step before an enrollment's position never runs for it, one
    after it runs when the enrollment gets there (see the module's docstring)."""
    flow = compiled.flow
    places = {e.id: place for e in current if e.status in IN_FLIGHT and (place := _place(flow, e)) is not None}
    moving = [e for e in current if e.id in places]
    ran = store.have_run({(e.id, name) for e in moving for node in flow.positions for name in flow.names(node.key)})
    waited_at = {flow.resolve(e.next_step) for e in moving}
    steps: dict[str, dict[str, Any]] = {}
    affected: set[int] = set()
    for node in flow.positions:
        names = flow.names(node.key)
        fresh = [e for e in moving if not any((e.id, name) in ran for name in names)]
        if len(fresh) < len(moving) or node.key in waited_at:
            continue  # run (or skipped) for someone, or someone waits at it: the store knows it
        past = [e for e in fresh if places[e.id] > node.index]
        if not past and not any(e.next_step is None for e in fresh):
            continue  # nobody has gone past it: it may be new, or just not reached yet
        ahead = [e for e in fresh if places[e.id] <= node.index]
        steps[node.key] = {"kind": node.kind, "will_run": len(ahead), "will_not_run": len(past)}  # type: ignore[index]
        affected.update(e.id for e in fresh)
    return {"enrollments": len(affected), "steps": steps}


def _experiments(store: Store, current: list[Enrollment], compiled) -> dict[str, Any] | None:
    """The holdout, splits and variants against the current enrollments (see the module's
    docstring); None for a campaign without any."""
    campaign, flow = compiled.campaign, compiled.flow
    choosers = [n for n in flow.positions
                if (n.kind == "split" and isinstance(n.item, Split))
                or (isinstance(n.item, Step) and getattr(n.item.action, "variants", None))]
    if not campaign.holdout and not choosers:
        return None
    runs = {e.id: store.step_runs(e.id) for e in current}
    out = {e.id: held_out(compiled.id, e.partner, campaign.holdout) for e in current}
    holdout = None
    if campaign.holdout:
        going = [e for e in current if e.next_step is not None]
        treated = {e.id for e in going if any(r.status == "executed" and _message(flow, r.step) for r in runs[e.id])}
        skipped = {e.id for e in going if any(r.reason == SkipReason.HOLDOUT for r in runs[e.id])}
        holdout = {"pct": campaign.holdout, "enrollments": len(current), "held_out": sum(out.values()),
                   "now_held_out": sum(1 for e in going if out[e.id] and e.id in treated),
                   "now_treated": sum(1 for e in going if not out[e.id] and e.id in skipped)}
    steps: dict[str, dict[str, Any]] = {}
    for node in choosers:
        split = node.kind == "split"
        options = weights(node.item.split if split else node.item.action.variants)
        field = "path" if split else "variant"
        names = set(flow.names(node.key))
        passed = changed = 0
        ahead: Counter = Counter()
        for e in current:
            mine = [r for r in runs[e.id] if r.step in names]
            recorded = next((r.detail[field] for r in reversed(mine) if r.status == "executed" and field in r.detail),
                            None)
            if recorded is not None:
                passed += 1
                changed += recorded != assign(compiled.id, node.key, e.partner, options)
            elif not mine and (split or not out[e.id]):
                place = _place(flow, e)
                if place is not None and place <= node.index:
                    ahead[assign(compiled.id, node.key, e.partner, options)] += 1
        steps[node.key] = {"kind": "split" if split else "variants", "weights": options, "passed": passed,
                           "changed": changed, "ahead": {key: ahead[key] for key in options if ahead[key]}}
    return {"holdout": holdout, "steps": steps}


def _message(flow, step: str) -> bool:
    node = flow.node(step)
    return node is not None and is_message(node.kind)


def _holdout_flips(holdout: dict[str, Any] | None) -> int:
    return (holdout["now_held_out"] + holdout["now_treated"]) if holdout else 0


def _place(flow, e: Enrollment) -> int | None:
    """Where in the file the enrollment goes on: the index of its position, or of the node after
    the last step it reached when it is past the end or its step left the file; None when it
    will go no further (the last step it reached left the file too)."""
    if e.next_step is not None:
        node = flow.node(e.next_step)
        if node is not None:
            return node.index
    if e.after_step is None:
        return 0
    reached = flow.node(e.after_step)
    return reached.index + 1 if reached is not None else None


def journey_lines(entry: dict[str, Any]) -> list[str]:
    """The text lines of ``renamed_steps`` and ``new_steps`` (for `engine plan` without ``--json``)."""
    lines = []
    for old, renamed in ((entry.get("renamed_steps") or {}).get("steps") or {}).items():
        lines.append(f"{renamed['enrollments']} enrollments wait for step {old}, renamed {renamed['to']}: "
                     "they continue there as if nothing happened")
    for key, new in ((entry.get("new_steps") or {}).get("steps") or {}).items():
        what = f"{new['kind'].replace('_', '-')} {key}" if new["kind"] in ("branch", "split", "wait_for") \
            else f"step {key}"
        if new["will_not_run"]:
            lines.append(f"{what} is new before the position of {new['will_not_run']} enrollments: "
                         "it will not run for them")
        if new["will_run"]:
            does = "be evaluated for them" if new["kind"] == "branch" else "choose their paths" \
                if new["kind"] == "split" else "run for them"
            lines.append(f"{what} is new after the position of {new['will_run']} enrollments: "
                         f"it will {does} when they reach it")
    lines.extend(experiment_lines(entry.get("experiments")))
    return lines


def experiment_lines(experiments: dict[str, Any] | None) -> list[str]:
    """The text lines of ``experiments``: only what disagrees with the store (an enrollment that
    changes sides of the holdout, a path or variant recorded that the file would not give now)."""
    if not experiments:
        return []
    lines = []
    holdout = experiments.get("holdout")
    if holdout:
        pct = f"{holdout['pct']:g}%"
        if holdout["now_held_out"]:
            lines.append(f"holdout {pct}: {holdout['now_held_out']} enrollments that received messages are now in "
                         "the holdout: their next message steps are skipped (reason holdout)")
        if holdout["now_treated"]:
            lines.append(f"holdout {pct}: {holdout['now_treated']} enrollments held out so far are no longer in "
                         "the holdout: their next message steps run")
    for key, step in experiments.get("steps", {}).items():
        if not step["changed"]:
            continue
        shares = ", ".join(f"{option} {weight}" for option, weight in step["weights"].items())
        what, got = (f"split {key}", "went down a path") if step["kind"] == "split" else \
            (f"variants of {key}", "received a variant")
        line = (f"{what} ({shares}): {step['changed']} of the {step['passed']} enrollments that {got} would "
                "get another one now (the weights, their order or the keys changed): they keep theirs")
        if step["ahead"]:
            line += "; those yet to reach it: " + ", ".join(f"{option} {n}" for option, n in step["ahead"].items())
        lines.append(line)
    return lines
