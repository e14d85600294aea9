"""Campaign statistics (SPEC §8 and §11 ``engine stats``): per step, language and variant, what
was sent and what partners did with it, the activities and responses per step, the campaign's
In-Campaign %, and for a campaign with a goal its conversions, holdout and experiments.

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
- ``variant`` (each step row, after the SPEC §8 keys): rows are per step, language and variant;
  the variant is the key of the step's variant a message carried (its outbox payload's
  ``variant``, a pop-up's ``variant`` column), null for a step without variants. An engagement
  event counts for the variant of the step's latest message to that partner, as for the
  language. A step with variants has a row for each of its variants, sent or not. Rows are in
  file order of the steps, then of a step's variants (a row without a variant first), then by
  language.
- ``goal`` (SPEC §11; null for a campaign without a goal, or whose file is gone): the campaign's
  enrollments that a goal counts (active, paused or finished; not scheduled or removed), split
  by :func:`campaigns.policy.held_out` into the *treated* group, whose numbers are the block's
  own ``enrolled`` / ``converted`` / ``conversion_pct``, and the ``holdout`` group (with no
  ``holdout:`` in the file everyone is treated and the holdout is 0 of 0). ``lift_pct`` is the
  treated group's relative lift over the holdout's rate, ``p_value`` a two-sided two-proportion
  z-test of treated against holdout, both null when either side is empty (and the lift when the
  holdout's rate is 0): :mod:`campaigns.experiment`. ``by_variant``: per variant of the
  campaign's message steps (file order, then keys only the store has), the enrollments that
  received it (the first executed run of the step) and how many of them converted; keyed by
  the variant's key, or ``step/variant`` for every variant when two steps share a key; ``{}``
  without variants. ``summary``: the comparisons in plain words, best variant against the next
  best per step and the campaign against its holdout (:func:`campaigns.experiment.plain_words`).

The keys of SPEC §8 and §11 (``campaign``, ``in_campaign_pct``, ``steps`` and the keys of each
step row, ``goal`` and its keys) are exactly as the SPEC lists them, in that order; ``variant``
comes after the SPEC's keys of a step row, ``summary`` after the goal's, and ``in_campaign``,
``activities`` and ``mailing_responses`` after ``goal``.
"""

from __future__ import annotations

from datetime import datetime
from fractions import Fraction
from typing import Any, Iterable

from campaigns.experiment import (Group, conversion_pct, lift_pct, number_text, p_text, pct_text, plain_words,
                                  two_proportion_p_value)
from campaigns.shapes import Campaign
from campaigns.policy import held_out

from .compiled import CompiledCampaign, CompiledWorkspace
from .monitor import in_campaign, last_measure
from .partners import PartnerBook
from .store import Store

ROW_KEYS = ("sent", "opens", "unique_opens", "clicks", "unique_clicks", "bounces", "read", "unread")
CHANNEL_OF = {"email": "email", "sms": "sms", "popup": "popup", "letter": "letter"}


def campaign_stats(store: Store, plan: CompiledWorkspace, book: PartnerBook, campaign_id: str,
                   at: datetime, *, measure: bool = True) -> dict[str, Any]:
    """``engine stats``: the counts per step (and variant, and language), the goal, activities
    and mailing responses, and the In-Campaign % measured now (``measure``; without it, as the
    last tick measured it, with no details: what a page can afford on a large audience)."""
    rows: dict[tuple[str, str, str | None], dict[str, Any]] = {}

    def row(step: str, channel: str, language: str, variant: str | None) -> dict[str, Any]:
        key = (step, language, variant)
        if key not in rows:
            rows[key] = {"step": step, "channel": channel, "language": language, **dict.fromkeys(ROW_KEYS, 0),
                         "variant": variant}
        return rows[key]

    channels: dict[str, str] = {}
    compiled = plan.campaigns.get(campaign_id)
    variants: dict[str, list[str]] = {}
    if compiled is not None:
        channels = {s.id: CHANNEL_OF[s.kind] for s in compiled.campaign.action_steps if s.kind in CHANNEL_OF}
        variants = variant_keys(compiled.campaign)
    for step, channel, language, variant, status, n in store.message_counts(campaign_id):
        channels.setdefault(step, channel)
        if status == "sent":
            row(step, channel, language or "default", variant)["sent"] += n
    for step, language, variant, shown, read in store.popup_counts(campaign_id):
        channels.setdefault(step, "popup")
        r = row(step, "popup", language, variant)
        r.update(sent=r["sent"] + shown, read=r["read"] + read, unread=r["unread"] + shown - read)
    for step, language, variant, kind, total, unique in store.engagement_counts(campaign_id):
        r = row(step, channels.get(step, "email"), language, variant)
        if kind == "opened":
            r["opens"] += total
            r["unique_opens"] += unique
        elif kind == "clicked":
            r["clicks"] += total
            r["unique_clicks"] += unique
        else:
            r["bounces"] += total
    for step, channel in channels.items():  # a step (or a variant) nothing was sent for yet still has its row
        for variant in variants.get(step) or [None]:
            if not any(key[0] == step and (variant is None or key[2] == variant) for key in rows):
                row(step, channel, "default", variant)
    order = {step: i for i, step in enumerate(channels)}

    def position(r: dict[str, Any]) -> tuple:  # file order of steps, then of variants, then languages
        keys = variants.get(r["step"], [])
        variant = r["variant"]
        return (order.get(r["step"], len(order)), r["step"], variant is not None,
                keys.index(variant) if variant in keys else len(keys), variant or "", r["language"])

    steps = sorted(rows.values(), key=position)
    if measure:
        measured = in_campaign(store, plan, book, compiled, at, details=True) if _runs(compiled) else None
        pct, details = (measured.pct, measured.details()) if measured else (None, None)
    else:
        last = last_measure(store, campaign_id) if _runs(compiled) else None
        pct, details = (last["pct"] if last else None), None
    responses = store.responses(campaign=campaign_id)
    return {"campaign": campaign_id, "in_campaign_pct": pct,
            "steps": steps,
            "goal": goal_stats(store, compiled),
            "in_campaign": details,
            "activities": activity_counts(compiled, store.activities(campaign_id)),
            "mailing_responses": mailing_counts(compiled, [r for r in responses if r["kind"] == "mailing"])}


def variant_keys(campaign: Campaign) -> dict[str, list[str]]:
    """step → its variants' keys in file order, for the message steps that have variants."""
    found: dict[str, list[str]] = {}
    for step in campaign.action_steps:
        options = getattr(step.action, "variants", None)
        if options:
            found[step.id] = list(options)
    return found


def goal_stats(store: Store, compiled: CompiledCampaign | None) -> dict[str, Any] | None:
    """The ``goal`` block of :func:`campaign_stats` (the module's docstring); None for a
    campaign without a goal."""
    if compiled is None or compiled.campaign.goal is None:
        return None
    campaign, campaign_id = compiled.campaign, compiled.id
    treated, holdout = [0, 0], [0, 0]  # converted, enrolled
    counted: dict[int, bool] = {}  # enrollment → converted
    for enrollment, partner, _status, converted in store.goal_counts(campaign_id):
        group = holdout if held_out(campaign_id, partner, campaign.holdout) else treated
        group[0] += converted
        group[1] += 1
        counted[enrollment] = converted
    experiments = _variant_groups(store, campaign_id, variant_keys(campaign), counted)
    qualified = _shared_keys(experiments)
    labelled = [{(f"{step}/{key}" if qualified else key): group for key, group in groups.items()}
                for step, groups in experiments.items()]
    return {**_group(*treated),
            "by_variant": {label: _group(*group) for groups in labelled for label, group in groups.items()},
            "holdout": _group(*holdout),
            "lift_pct": lift_pct(_rate_pct(treated), _rate_pct(holdout)),
            "p_value": two_proportion_p_value(*treated, *holdout),
            "summary": plain_words((treated[0], treated[1]),
                                   (holdout[0], holdout[1]) if campaign.holdout else None, labelled)}


def goal_text(goal: dict[str, Any], label: str = "goal") -> list[str]:
    """The goal block as text lines (``engine stats``, ``engine simulate``)::

        goal: 123 of 1 000 converted (12.3 %); holdout 10 of 110 (9.1 %); lift 35.3 %, p = 0.33
          variant short: 40 of 600 converted (6.7 %)
        the campaign converts 3.2 points better than its holdout (lift 35.3 %); p = 0.33, ...
    """
    line = f"{label}: {_of(goal)} converted ({pct_text(goal['conversion_pct'])})"
    held = goal["holdout"]
    if held["enrolled"]:
        line += (f"; holdout {_of(held)} ({pct_text(held['conversion_pct'])}); "
                 f"lift {pct_text(goal['lift_pct'])}, {p_text(goal['p_value'])}")
    else:
        line += "; nobody in a holdout"
    lines = [line]
    lines += [f"  variant {key}: {_of(g)} converted ({pct_text(g['conversion_pct'])})"
              for key, g in goal["by_variant"].items()]
    return lines + list(goal.get("summary") or ())


def _of(group: dict[str, Any]) -> str:
    return f"{number_text(group['converted'])} of {number_text(group['enrolled'])}"


def _group(converted: int, enrolled: int) -> dict[str, Any]:
    return {"enrolled": enrolled, "converted": converted,
            "conversion_pct": conversion_pct(converted, enrolled)}


def _variant_groups(store: Store, campaign_id: str, keys: dict[str, list[str]],
                    counted: dict[int, bool]) -> dict[str, dict[str, Group]]:
    """step → variant → (converted, enrolled) over the counted enrollments that received it:
    the file's variants in file order (0 of 0 included), then keys only the store has."""
    groups: dict[str, dict[str, list[int]]] = {step: {key: [0, 0] for key in step_keys}
                                               for step, step_keys in keys.items()}
    for enrollment, chosen in sorted(store.step_details(campaign_id, list(keys)).items()):
        if enrollment not in counted:
            continue
        for step, key in chosen.items():
            group = groups[step].setdefault(key, [0, 0])
            group[0] += counted[enrollment]
            group[1] += 1
    return {step: {key: (g[0], g[1]) for key, g in found.items()} for step, found in groups.items()}


def _rate_pct(group: list[int]) -> Fraction | None:
    """A group's exact conversion rate in percent (lifts are computed from unrounded rates)."""
    return Fraction(100 * group[0], group[1]) if group[1] else None


def _shared_keys(experiments: dict[str, dict[str, Group]]) -> bool:
    """Whether two steps use one variant key (then every key is written ``step/variant``)."""
    seen: set[str] = set()
    for groups in experiments.values():
        if seen & set(groups):
            return True
        seen |= set(groups)
    return False


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

