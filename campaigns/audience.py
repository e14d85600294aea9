"""Who may be enrolled in a campaign, and who may be contacted on which channel.

A campaign's audience is compiled once (:func:`compile_audience`) and then asked about each
partner: the partners that match any ruleset or are in one of its static groups, less those
excluded by engine.yaml, by the campaign, or as test contacts, one per email or company.
Evaluation never raises on data (SPEC §4); compiling expects expressions that
:mod:`campaigns.workspace` has already checked.

Decisions where the SPEC is silent:

- Exclusions win over inclusion, in this order: engine.yaml's ``exclude`` (never contacted by
  any campaign), then ``audience.exclude``, then inactive contacts, then test contacts
  (``partner.test == true``) when ``include_test`` is false.
- Active contacts only, by default: when the partner schema has a bool field ``active``, a
  partner whose ``active`` is false (not empty: unknown counts as active) is never enrolled,
  unless the audience says ``include_inactive: true``. Manual starts and follow-ups are
  people's choices and ignore it, as they ignore the rulesets.
- ``dedupe`` runs over the partners that match, so when the oldest partner with an email is
  excluded the next one gets the message. "Oldest" is the smallest id in natural order (``p2``
  before ``p10``; ties such as ``p01``/``p1`` by plain text). Emails and companies compare
  trimmed and case-insensitively; a partner without one is never a duplicate. With both keys,
  a partner is kept when no older kept partner shares its email or its company.
- Consent: only ``email`` and ``sms`` are gated. The latest ledger entry wins, else the
  channel's consent expression, else no: a workspace without ``consent.email`` sends marketing
  email only to partners who opted in through the ledger. Pop-ups, activities and letters need
  no consent (they are not marketing messages to the partner's address).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Iterable, Mapping

from dsl.compile import Compiled, compile_expression
from dsl.functions import inputs
from dsl.ids import natural_key
from dsl.nodes import Node
from dsl.runtime import Context
from dsl.types import BOOL

from .shapes import Campaign, Settings

GATED_CHANNELS = ("email", "sms")
INACTIVE_CONTACT = "inactive contact"  # the exclusion of partners whose `active` field is false
INACTIVE_RULE = "partner.active == false"
NO_GROUPS: Mapping[str, frozenset[str]] = {}


@dataclass(frozen=True)
class AudienceMatch:
    """Why a partner is or is not in the audience (for `engine test` and `engine explain`)."""

    rulesets: tuple[str, ...]  # the rulesets that match
    groups: tuple[str, ...]  # the campaign's groups the partner is in
    excluded_by: str | None  # what keeps them out, if anything

    @property
    def matches(self) -> bool:
        return bool(self.rulesets or self.groups) and self.excluded_by is None


@dataclass(frozen=True)
class CompiledAudience:
    """A campaign's audience and the workspace's consent rules, compiled once."""

    rulesets: tuple[tuple[str, Compiled], ...]
    groups: tuple[str, ...]
    exclusions: tuple[tuple[str, Compiled], ...]  # (what it is called, condition)
    include_test: bool
    dedupe: tuple[str, ...]
    consent: Mapping[str, Compiled]  # channel → consent expression
    id_field: str = "id"
    # the parsed rulesets and exclusions, for the back ends that translate them (SQL)
    ruleset_nodes: tuple[tuple[str, Node], ...] = ()
    exclusion_nodes: tuple[tuple[str, Node], ...] = ()

    @cached_property
    def inputs(self) -> frozenset[str]:
        """What membership depends on besides the records (:func:`dsl.functions.inputs`);
        worked out once, as every tick asks."""
        found = frozenset(("groups",)) if self.groups else frozenset()
        for _, node in self.ruleset_nodes + self.exclusion_nodes:
            found |= inputs(node)
        return found

    def matches(self, partner: Mapping, ctx: Context, groups: Mapping[str, frozenset[str]] = NO_GROUPS) -> bool:
        """Whether the partner is in the audience (before dedupe, which needs the others)."""
        included = any(rule.test(partner, ctx) for _, rule in self.rulesets) or bool(self.member_of(partner, groups))
        return included and self.excluded_by(partner, ctx) is None

    def explain(self, partner: Mapping, ctx: Context, groups: Mapping[str, frozenset[str]] = NO_GROUPS) -> AudienceMatch:
        return AudienceMatch(tuple(self.matching_rulesets(partner, ctx)), self.member_of(partner, groups),
                             self.excluded_by(partner, ctx))

    def matching_rulesets(self, partner: Mapping, ctx: Context) -> list[str]:
        return [name for name, rule in self.rulesets if rule.test(partner, ctx)]

    def member_of(self, partner: Mapping, groups: Mapping[str, frozenset[str]]) -> tuple[str, ...]:
        """The campaign's groups that list the partner (a group not loaded lists nobody)."""
        partner_id = partner.get(self.id_field)
        return tuple(g for g in self.groups if partner_id in groups.get(g, ()))

    def excluded_by(self, partner: Mapping, ctx: Context) -> str | None:
        for name, rule in self.exclusions:
            if rule.test(partner, ctx):
                return name
        if not self.include_test and partner.get("test") is True:
            return "test contact"
        return None

    def select(self, partners: Iterable[Mapping], ctx: Context,
               groups: Mapping[str, frozenset[str]] = NO_GROUPS, already: Iterable[Mapping] = ()) -> list[str]:
        """The ids of the partners in the audience, deduplicated, in the order given.
        ``already``: partners the campaign has (enrolled): their emails and companies are
        taken, so a newcomer sharing one is a duplicate even when their id is older."""
        matching = [p for p in partners if p.get(self.id_field) is not None and self.matches(p, ctx, groups)]
        kept = {id(p) for p in dedupe(matching, self.dedupe, self.id_field, already)}
        return [str(p[self.id_field]) for p in matching if id(p) in kept]

    def consents(self, channel: str, partner: Mapping, ledger_latest: bool | None, ctx: Context) -> bool:
        """Whether the partner may get a message on ``channel``: the latest consent ledger
        entry, else the channel's consent expression, else no. Only email and SMS ask."""
        if channel not in GATED_CHANNELS:
            return True
        if ledger_latest is not None:
            return ledger_latest
        rule = self.consent.get(channel)
        return rule is not None and rule.test(partner, ctx)


def excludes_inactive(campaign: Campaign, settings: Settings) -> bool:
    """Whether the campaign leaves out partners whose ``active`` field is false."""
    return not campaign.audience.include_inactive and settings.partners.types().get("active") == BOOL


def compile_audience(campaign: Campaign, settings: Settings) -> CompiledAudience:
    """Parse and compile every expression the audience needs, once per campaign."""
    from dsl.parser import parse  # (lark: not for an audience read from the plan cache)

    audience = campaign.audience
    exclusions = [("exclude (engine.yaml)", settings.exclude), ("audience.exclude", audience.exclude)]
    if excludes_inactive(campaign, settings):
        exclusions.append((INACTIVE_CONTACT, INACTIVE_RULE))
    consent = {channel: getattr(settings.consent, channel) for channel in GATED_CHANNELS}
    rulesets = tuple((name, parse(text)) for name, text in audience.rulesets.items())
    excluded = tuple((name, parse(text)) for name, text in exclusions if text is not None)
    return CompiledAudience(
        rulesets=tuple((name, compile_expression(node)) for name, node in rulesets),
        groups=tuple(audience.groups),
        exclusions=tuple((name, compile_expression(node)) for name, node in excluded),
        include_test=audience.include_test,
        dedupe=tuple(audience.dedupe),
        consent={channel: _compile(text) for channel, text in consent.items() if text is not None},
        id_field=settings.partners.id,
        ruleset_nodes=rulesets,
        exclusion_nodes=excluded,
    )


def _compile(text: str) -> Compiled:
    from dsl.parser import parse

    return compile_expression(parse(text))


# --- Duplicates ---------------------------------------------------------------------------------


def dedupe(partners: Iterable[Mapping], keys: Iterable[str], id_field: str = "id",
           already: Iterable[Mapping] = ()) -> list[Mapping]:
    """One partner per email and/or company: the oldest (smallest natural id) is kept, unless
    a partner in ``already`` holds that email or company (they are kept, and not returned)."""
    keys = tuple(keys)
    if not keys:
        return list(partners)
    seen: dict[str, set[str]] = {key: set() for key in keys}
    taken = set()
    for partner in already:
        taken.add(str(partner.get(id_field)))
        for key in keys:
            value = _comparable(partner.get(key))
            if value is not None:
                seen[key].add(value)
    kept = []
    for partner in sorted((p for p in partners if str(p.get(id_field)) not in taken),
                          key=lambda p: natural_key(str(p[id_field]))):
        values = {key: _comparable(partner.get(key)) for key in keys}
        if any(value is not None and value in seen[key] for key, value in values.items()):
            continue
        kept.append(partner)
        for key, value in values.items():
            if value is not None:
                seen[key].add(value)
    return kept


def _comparable(value: object) -> str | None:
    """An email or company as compared for duplicates: trimmed, case-insensitive."""
    if not isinstance(value, str) or not value.strip():
        return None
    return value.strip().casefold()
