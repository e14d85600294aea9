"""Who is in a campaign's audience, asked of the store: pushed down to SQL as far as the
expressions allow, the rest evaluated in Python over the rows SQL returned.

The audience (:class:`campaigns.audience.CompiledAudience`) is: any ruleset, or one of the
campaign's static groups, less engine.yaml's exclude, ``audience.exclude`` and test contacts;
then one partner per email or company (``dedupe``). Rulesets and exclusions go to the store as
one condition made by the expression language's SQL back end (:mod:`dsl.sql`), so a million
records are filtered where they live; group members (a list of ids) and dedupe (an order over
the matching partners) are done here.

**Where SQL reads.** The store keeps the schema's fields in typed columns
(:mod:`engine.store.columns`); a condition over them costs a fraction of one that decodes each
JSON record. A store whose columns are not (yet) of this schema, or a field without a column
(of an unknown type), makes the condition read the records instead.

**Partial push-down.** A ruleset is split at its top-level ``and``: the parts SQL can express
exactly go to SQL, the others (``in_campaign`` and the other facts, ``matches`` on PostgreSQL)
stay in Python, which checks every row SQL returned against the whole audience. An exclusion
goes to SQL only whole (SQL may only narrow the rows down). Parts that call Python from SQL
(SQLite's ``lower``/``upper``/``matches``) come last, so that they run on the fewest rows.
When nothing at all can go to SQL, the records are evaluated a chunk at a time.

The ids come back in natural order (``p2`` before ``p10``): from the columns' own order when
SQL found them all, else sorted here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence

from campaigns.audience import dedupe, natural_key
from dsl.nodes import Attribute, Binary, Literal, Name, Node
from dsl.runtime import Context

from .compiled import CompiledCampaign, CompiledWorkspace, audience_schema, decoder, partner_layout
from .partners import PartnerBook
from .store import Store

if TYPE_CHECKING:
    from dsl.sql import Condition

CHUNK = 5000
TEST_CONTACT = Binary("==", Attribute(Name("partner"), "test"), Literal("bool", True, "true"))  # partner.test == true


@dataclass(frozen=True)
class Query:
    """A campaign's rulesets-less-exclusions as one SQL condition and its parameters: over the
    typed ``columns`` or the records; ``partial`` when Python must check the rows it selects."""

    sql: str
    params: tuple
    columns: bool = False
    partial: bool = False


_TIMELESS: dict[tuple, tuple[object, Query | None]] = {}  # (audience, dialect, over columns) → its query


def pushed_down(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, ctx: Context) -> Query | None:
    """The audience before groups and dedupe as one condition in the store's dialect, as of
    ``ctx.now``; None when SQL could narrow nothing down (a ruleset with no part it can
    express). An audience that reads no clock is translated once (every tick samples it
    again)."""
    audience = compiled.audience
    layout = partner_layout(plan, store.dialect)
    columns = store.has_partner_columns(layout)
    if "clock" in audience.inputs:
        return _translate(store, plan, compiled, ctx, layout.names if columns else None)
    key = (id(audience), store.dialect, columns)
    cached = _TIMELESS.get(key)
    if cached is None or cached[0] is not audience:  # the entry keeps its audience: an id is never reused meanwhile
        if len(_TIMELESS) > 256:
            _TIMELESS.clear()
        query = _translate(store, plan, compiled, ctx, layout.names if columns else None)
        cached = _TIMELESS[key] = (audience, query)
    return cached[1]


def _translate(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, ctx: Context,
               columns: Mapping[str, str] | None) -> Query | None:
    """Over the columns when every part that SQL can express has them, else over the records."""
    from dsl.sql import NoColumn  # the translator is imported by the first audience that needs it

    if columns is not None:
        try:
            return _condition(store, plan, compiled, ctx, columns)
        except NoColumn:  # a field of an unknown type: the records have it
            pass
    return _condition(store, plan, compiled, ctx, None)


def _condition(store: Store, plan: CompiledWorkspace, compiled: CompiledCampaign, ctx: Context,
               columns: Mapping[str, str] | None) -> Query | None:
    from dsl.sql import NoColumn, Unsupported, to_sql
    from dsl.sql_sqlite import calls_python

    audience = compiled.audience
    schema = audience_schema(plan)
    partial = False

    def sql(node: Node) -> Condition | None:
        """The node as SQL, or None: Python decides it (NoColumn goes up: records, then)."""
        nonlocal partial
        try:
            return to_sql(node, schema, now=ctx.now, tz=ctx.tz, dialect=store.dialect, columns=columns)
        except NoColumn:
            raise
        except Unsupported:
            partial = True
            return None

    rules = []
    for _, ruleset in audience.ruleset_nodes:
        parts = [part for part in map(sql, conjuncts(ruleset)) if part is not None]
        parts.sort(key=lambda part: calls_python(part.sql))  # on the fewest rows
        rules.append(parts)
    exclusions = [node for _, node in audience.exclusion_nodes]
    if not audience.include_test:
        exclusions.append(TEST_CONTACT)
    excluded = [condition for condition in map(sql, exclusions) if condition is not None]
    if any(not parts for parts in rules):
        return None  # SQL would narrow nothing down: the records, a chunk at a time
    included = " OR ".join("(" + " AND ".join(f"({p.sql})" for p in parts) + ")" for parts in rules)
    text = f"({included or '1 = 0'})" + "".join(f" AND ({rule.sql}) IS NOT TRUE" for rule in excluded)
    params = tuple(p for parts in rules for rule in parts for p in rule.params) + \
        tuple(p for rule in excluded for p in rule.params)
    return Query(text, params, columns=columns is not None, partial=partial)


def conjuncts(node: Node) -> list[Node]:
    """``a and b and c`` as [a, b, c]: the ruleset is true only where each of them is."""
    if isinstance(node, Binary) and node.op == "and":
        return conjuncts(node.left) + conjuncts(node.right)
    return [node]


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
        query = pushed_down(store, plan, compiled, ctx)
        records = _matching(store, plan, book, compiled, ctx, query, fields=(plan.id_field, *audience.dedupe))
        kept = dedupe(records, audience.dedupe, plan.id_field, already)  # in natural order
        ids = [str(r[plan.id_field]) for r in kept]
        if not_in:
            left_out = store.partners_in(compiled.id, tuple(not_in))
            ids = [pid for pid in ids if pid not in left_out]
        return ids
    query = pushed_down(store, plan, compiled, ctx)
    if query is not None and query.columns and not query.partial and not audience.groups:
        skip = (compiled.id, tuple(not_in)) if not_in else None  # SQL gives them in natural order, once each
        return [pid for pid, _ in store.partners_where(query.sql, query.params, not_in=skip, columns=True)]
    ids = {str(r[plan.id_field]) for r in _matching(store, plan, book, compiled, ctx, query,
                                                     fields=(plan.id_field,), not_in=not_in)}
    return sorted(ids, key=natural_key)


def _matching(store: Store, plan: CompiledWorkspace, book: PartnerBook, compiled: CompiledCampaign, ctx: Context,
              query: Query | None, *, fields: Sequence[str], not_in: Sequence[str] = ()) -> Iterator[Mapping]:
    """The partners of the audience before dedupe, each as a record holding ``fields``."""
    audience = compiled.audience
    skip = (compiled.id, tuple(not_in)) if not_in else None
    if query is not None:
        whole = query.partial or fields != (plan.id_field,)
        decode = decoder(plan.settings.partners.types()) if whole else None
        rows = store.partners_where(query.sql, query.params, with_data=whole, not_in=skip, columns=query.columns)
        for pid, data in rows:
            if decode is None:
                yield {plan.id_field: pid}
                continue
            partner = decode(data)
            if not query.partial or audience.matches(partner, ctx, plan.groups):
                yield _only(partner, fields)
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
