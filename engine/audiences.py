"""Who is in a campaign's audience, asked of the store: pushed down as one SQL query when the
expressions allow it, else evaluated in Python over the records, streamed.

The audience (:class:`campaigns.audience.CompiledAudience`) is: any ruleset, or one of the
campaign's static groups, less engine.yaml's exclude, ``audience.exclude`` and test contacts;
then one partner per email or company (``dedupe``). Rulesets and exclusions go to the store as
one condition made by the expression language's SQL back end (:mod:`dsl.sql`), so a million
records are filtered where they live; group members (a list of ids) and dedupe (an order over
the matching partners) are done here. When any ruleset or exclusion cannot be translated
exactly (``matches``, ``in_campaign`` ...), the whole audience is evaluated by the Python back
end instead, a chunk of records at a time: same answer, more time.

The ids come back in natural order (``p2`` before ``p10``), whichever way they were found.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping, Sequence

from campaigns.audience import dedupe, natural_key
from dsl.parser import parse
from dsl.runtime import Context
from dsl.sql import Unsupported, to_sql
from dsl.types import BOOL

from .compiled import CompiledCampaign, CompiledWorkspace, decoder
from .partners import PartnerBook
from .store import Store

CHUNK = 5000
TEST_CONTACT = parse("partner.test == true")


@dataclass(frozen=True)
class Query:
    """A campaign's rulesets-less-exclusions as one SQL condition and its parameters."""

    sql: str
    params: tuple


_TIMELESS: dict[tuple[int, str], tuple[object, Query | None]] = {}  # (audience, dialect) → its query


def pushed_down(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, ctx: Context) -> Query | None:
    """The audience before groups and dedupe as one condition in the store's dialect, as of
    ``ctx.now``; None when some ruleset or exclusion cannot be translated exactly. An audience
    that reads no clock is translated once (every tick samples it again)."""
    audience = compiled.audience
    if "clock" in audience.inputs:
        return _translate(store, plan, compiled, ctx)
    key = (id(audience), store.dialect)
    cached = _TIMELESS.get(key)
    if cached is None or cached[0] is not audience:  # the entry keeps its audience: an id is never reused meanwhile
        if len(_TIMELESS) > 256:
            _TIMELESS.clear()
        cached = _TIMELESS[key] = (audience, _translate(store, plan, compiled, ctx))
    return cached[1]


def _translate(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, ctx: Context) -> Query | None:
    audience = compiled.audience
    schema = dict(plan.settings.partners.types())
    schema.setdefault("test", BOOL)  # not declared: a JSONL record may still say "test": true
    exclusions = [node for _, node in audience.exclusion_nodes]
    if not audience.include_test:
        exclusions.append(TEST_CONTACT)
    try:
        rules = [to_sql(node, schema, now=ctx.now, tz=ctx.tz, dialect=store.dialect) for _, node in audience.ruleset_nodes]
        excluded = [to_sql(node, schema, now=ctx.now, tz=ctx.tz, dialect=store.dialect) for node in exclusions]
    except Unsupported:
        return None
    included = " OR ".join(f"({rule.sql})" for rule in rules) or "1 = 0"
    sql = f"({included})" + "".join(f" AND ({rule.sql}) IS NOT TRUE" for rule in excluded)
    return Query(sql, tuple(p for rule in rules + excluded for p in rule.params))


def audience_ids(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign, ctx: Context,
                 *, taken: Iterable[str] | None = None, not_in: Sequence[str] = ()) -> list[str]:
    """The ids of the campaign's audience as of ``ctx.now``, in natural order.

    ``taken``: partners the campaign has: with dedupe, their emails and companies are theirs
    (a newcomer sharing one is a duplicate); default, its current enrollments. ``not_in``:
    statuses of enrollments in this campaign that leave a partner out of the answer (the
    sampling of an `audience` trigger asks only for partners it could enroll)."""
    audience = compiled.audience
    if audience.dedupe:
        if taken is None:
            taken = store.partners_in(compiled.id, ("scheduled", "active", "paused"))
        already = list(book.get_many(taken).values())
        records = _matching(store, plan, book, compiled, ctx, fields=(plan.id_field, *audience.dedupe))
        kept = dedupe(records, audience.dedupe, plan.id_field, already)
        ids = [str(r[plan.id_field]) for r in kept]
        if not_in:
            left_out = store.partners_in(compiled.id, tuple(not_in))
            ids = [pid for pid in ids if pid not in left_out]
        return sorted(ids, key=natural_key)
    ids = {str(r[plan.id_field]) for r in _matching(store, plan, book, compiled, ctx, fields=(plan.id_field,),
                                                     not_in=not_in)}
    return sorted(ids, key=natural_key)


def _matching(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign, ctx: Context,
              *, fields: Sequence[str], not_in: Sequence[str] = ()) -> Iterator[Mapping]:
    """The partners of the audience before dedupe, each as a record holding ``fields``."""
    audience = compiled.audience
    query = pushed_down(store, plan, compiled, ctx)
    skip = (compiled.id, tuple(not_in)) if not_in else None
    if query is not None:
        decode = decoder(plan.settings.partners.types()) if fields != (plan.id_field,) else None
        for pid, data in store.partners_where(query.sql, query.params, with_data=decode is not None, not_in=skip):
            yield _only(decode(data), fields) if decode else {plan.id_field: pid}
        members = {pid for group in audience.groups for pid in plan.groups.get(group, ())}
        if skip is not None and members:
            members -= store.partners_in(compiled.id, skip[1])
        for partner in book.get_many(sorted(members)).values():
            if audience.excluded_by(partner, ctx) is None:
                yield _only(partner, fields)
        return
    left_out = store.partners_in(compiled.id, skip[1]) if skip is not None else set()
    for chunk in book.chunks(CHUNK):
        for partner in chunk:
            if partner.get(plan.id_field) is not None and str(partner[plan.id_field]) not in left_out \
                    and audience.matches(partner, ctx, plan.groups):
                yield _only(partner, fields)


def _only(record: Mapping, fields: Sequence[str]) -> dict:
    return {name: record.get(name) for name in fields}


_KEYS: dict[tuple[str, str, str], str] = {}


def audience_key(plan: CompiledWorkspace, compiled: CompiledCampaign) -> str:
    """Changes whenever who is in the audience may change for a reason other than a record:
    the campaign file, the workspace's exclusion and partner schema, the group files."""
    cache = (plan.fingerprint, compiled.id, compiled.content_hash)
    if cache not in _KEYS:
        if len(_KEYS) > 1024:  # a long-lived process that saw many edits: start over
            _KEYS.clear()
        _KEYS[cache] = _audience_key(plan, compiled)
    return _KEYS[cache]


def _audience_key(plan: CompiledWorkspace, compiled: CompiledCampaign) -> str:
    settings = plan.settings
    parts = [compiled.content_hash, repr(settings.exclude), repr(sorted(settings.partners.types().items())),
             settings.partners.id]
    for name in sorted(plan.groups):
        parts.append(name + ":" + hashlib.sha256("\n".join(sorted(plan.groups[name])).encode()).hexdigest())
    return hashlib.sha256("\x00".join(map(str, parts)).encode()).hexdigest()
