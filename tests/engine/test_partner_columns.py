"""The partner schema's fields in typed columns (engine/store/columns.py), and audiences
pushed down over them, in part or whole (engine/audiences.py). Each test runs on both stores.

- The columns hold, for every present partner, exactly what the record-reading SQL reads,
  after any sequence of imports (records added, changed, removed, back again): hypothesis.
- A schema change (a field added, removed, retyped) rebuilds them at the next tick.
- Partial push-down: rulesets that mix conjuncts SQL can express with ones it cannot select
  exactly what the Python back end selects over every record: hypothesis.
- The audience comes back in natural order from SQL itself.
"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.audience import natural_key
from dsl.runtime import Context
from engine.audiences import audience_ids, pushed_down
from engine.compiled import partner_layout
from engine.store.columns import INDEXES_KEY, LAYOUT_KEY, TABLE
from engine.tick import StoreFacts

from tests.engine.test_tick import EMAIL, campaign, partner, partners_csv, rewrite, set_campaign, set_partners, workspace

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
HELLO = EMAIL.format(id="hello")
IDS = ["p1", "p2", "p10", "p9", "a", "p01", "x7y", "p003"]


def _context(engine, compiled):
    at = engine.clock.now()
    return Context(now=at, tz=compiled.tz, facts=StoreFacts(engine.store, engine.plan, compiled.id, None, at))


def _python(engine, compiled) -> list[str]:
    """The audience as the Python back end selects it over every present record."""
    records = [engine.book.get(pid) for pid, (_, present) in engine.store.partner_hashes().items() if present]
    ctx = _context(engine, compiled)
    return sorted(compiled.audience.select([r for r in records if r], ctx, engine.plan.groups, []), key=natural_key)


def _columns_hold_the_records(engine) -> None:
    """Every present partner has a row, no one else; each column equals the record's read."""
    store = engine.store
    layout = partner_layout(engine.plan, store.dialect)
    assert store.has_partner_columns(layout)
    present = {pid for pid, (_, here) in store.partner_hashes().items() if here}
    rows = [pid for (pid,) in store.db.execute(f"SELECT id FROM {TABLE} ORDER BY key")]
    assert rows == sorted(present, key=natural_key)
    differs = "IS DISTINCT FROM" if store.dialect == "postgresql" else "IS NOT"
    for column in layout.columns:
        read = store.native(column.read).replace("data", "p.data")
        differing = store.db.execute(f"SELECT c.id FROM {TABLE} c JOIN partners p ON p.id = c.id "
                                     f"WHERE c.{column.name} {differs} ({read})", column.params).fetchall()
        assert differing == [], (column.field, differing)


edits = st.lists(st.one_of(
    st.tuples(st.just("set"), st.sampled_from(IDS), st.sampled_from(["silver", "gold", ""]),
              st.sampled_from(["0", "150", "2.5", ""]), st.sampled_from(["fi", "en", "Ö\u212a"])),
    st.tuples(st.just("drop"), st.sampled_from(IDS)),
), min_size=1, max_size=8)


@SETTINGS
@given(steps=edits)
def test_the_columns_follow_every_import(tmp_path_factory, make_engine, steps):
    tmp_path = tmp_path_factory.mktemp("columns")
    rows = {pid: partner(pid) for pid in IDS[:3]}
    engine = make_engine(workspace(tmp_path, {"gold": campaign(steps=HELLO, audience='gold: partner.tier == "gold"')},
                                   partners_csv(*rows.values())))
    engine.tick()
    _columns_hold_the_records(engine)
    for action in steps:
        if action[0] == "set":
            _, pid, tier, revenue, language = action
            rows[pid] = partner(pid, tier=tier, revenue=revenue, language=language)
        else:
            rows.pop(action[1], None)
        set_partners(engine, *rows.values())
        engine.clock.advance(timedelta(hours=1))
        engine.tick()
        _columns_hold_the_records(engine)
        compiled = engine.plan.campaigns["gold"]
        assert audience_ids(engine.store, engine.plan, engine.book, compiled, _context(engine, compiled), taken=()) \
            == _python(engine, compiled)


def test_a_schema_change_rebuilds_the_columns(tmp_path, make_engine):
    rows = [partner(pid, revenue=str(i * 100)) for i, pid in enumerate(IDS)]
    engine = make_engine(workspace(tmp_path, {"big": campaign(steps=HELLO, audience="big: partner.revenue >= 300")},
                                   partners_csv(*rows)))
    engine.tick()
    before = engine.store.meta(LAYOUT_KEY)
    yaml_path = engine.root / "engine.yaml"
    text = yaml_path.read_text()
    for change in (lambda t: t.replace("    revenue: number\n", "    revenue: string\n"),  # retyped
                   lambda t: t.replace("    revenue: string\n", ""),  # removed
                   lambda t: t.replace("    name: string\n", "    name: string\n    revenue: number\n")):  # added
        text = change(text)
        rewrite(yaml_path, text)
        if "revenue: number" not in text:
            set_campaign(engine, "big", campaign(steps=HELLO, audience='big: partner.tier == "gold"'))
        else:
            set_campaign(engine, "big", campaign(steps=HELLO, audience="big: partner.revenue >= 300"))
        engine.clock.advance(timedelta(hours=1))
        engine.tick()
        assert engine.store.meta(LAYOUT_KEY) != before
        before = engine.store.meta(LAYOUT_KEY)
        _columns_hold_the_records(engine)
        compiled = engine.plan.campaigns["big"]
        query = pushed_down(engine.store, engine.plan, compiled, _context(engine, compiled))
        assert query is not None and query.columns
        assert audience_ids(engine.store, engine.plan, engine.book, compiled, _context(engine, compiled), taken=()) \
            == _python(engine, compiled)


def test_a_store_from_before_the_columns_gets_them_at_the_next_tick(tmp_path, make_engine):
    """An older store: partners without sort keys, no columns table. The next tick builds it."""
    rows = [partner(pid, revenue=str(i * 100)) for i, pid in enumerate(IDS)]
    engine = make_engine(workspace(tmp_path, {"big": campaign(steps=HELLO, audience="big: partner.revenue >= 300")},
                                   partners_csv(*rows)))
    engine.tick()
    with engine.store.transaction():
        engine.store.db.execute(f"DROP TABLE {TABLE}")
        engine.store.db.execute("UPDATE partners SET sort_key = NULL")
        engine.store.db.execute("DELETE FROM meta WHERE key = ?", (LAYOUT_KEY,))
    engine.clock.advance(timedelta(hours=1))
    engine.tick()
    _columns_hold_the_records(engine)
    keys = dict(engine.store.db.execute("SELECT id, sort_key FROM partners").fetchall())
    assert keys == {pid: natural_key(pid) for pid in IDS}


def test_the_columns_that_rulesets_compare_get_an_index(tmp_path, make_engine):
    engine = make_engine(workspace(tmp_path, {"gold": campaign(
        steps=HELLO, audience='gold: partner.tier == "gold" and partner.revenue >= 100 and len(partner.name) > 1')},
        partners_csv(partner("p1"))))
    engine.tick()
    layout = partner_layout(engine.plan, engine.store.dialect)
    names = {c.field: c.name for c in layout.columns}
    indexed = set(json.loads(engine.store.meta(INDEXES_KEY)))  # and what engine.yaml's exclude compares
    assert {names["tier"], names["revenue"]} <= indexed and names["name"] not in indexed
    set_campaign(engine, "gold", campaign(steps=HELLO, audience='gold: partner.language == "fi"'))
    engine.clock.advance(timedelta(hours=1))
    engine.tick()
    now_indexed = set(json.loads(engine.store.meta(INDEXES_KEY)))
    assert now_indexed == indexed - {names["tier"], names["revenue"]} | {names["language"]}


def test_an_audience_comes_back_in_natural_order_from_sql(tmp_path, make_engine):
    engine = make_engine(workspace(tmp_path, {"all": campaign(steps=HELLO, audience="all: partner.revenue >= 0")},
                                   partners_csv(*(partner(pid) for pid in IDS))))
    engine.tick()
    compiled = engine.plan.campaigns["all"]
    ctx = _context(engine, compiled)
    query = pushed_down(engine.store, engine.plan, compiled, ctx)
    assert query is not None and query.columns and not query.partial
    from_sql = [pid for pid, _ in engine.store.partners_where(query.sql, query.params, columns=True)]
    assert from_sql == ["a", "p01", "p1", "p2", "p003", "p9", "p10", "x7y"] == sorted(IDS, key=natural_key)
    assert audience_ids(engine.store, engine.plan, engine.book, compiled, ctx, taken=()) == from_sql


# --- partial push-down ----------------------------------------------------------------------------


def test_what_sql_cannot_say_is_checked_in_python_on_the_rows_sql_found(tmp_path, make_engine):
    rows = [partner(pid, tier="gold" if i % 2 else "silver") for i, pid in enumerate(IDS)]
    engine = make_engine(workspace(tmp_path, {
        "other": campaign(steps=HELLO, audience='first: partner.id in ["p1", "p2", "a"]'),
        "mixed": campaign(trigger="", steps=HELLO, audience='r: partner.tier == "gold" and was_in_campaign("other")'),
    }, partners_csv(*rows)))
    engine.tick()
    compiled = engine.plan.campaigns["mixed"]
    ctx = _context(engine, compiled)
    query = pushed_down(engine.store, engine.plan, compiled, ctx)
    assert query is not None and query.partial and query.columns
    assert "was_in_campaign" not in query.sql and len(list(engine.store.partners_where(
        query.sql, query.params, columns=True))) == 4  # the gold ones: Python asks the store for the rest
    assert audience_ids(engine.store, engine.plan, engine.book, compiled, ctx, taken=()) == ["p2"] == \
        _python(engine, compiled)

PUSHED = ['partner.tier == "gold"', "partner.revenue >= 150", 'partner.language != "en"', "partner.paid == false",
          'starts_with(partner.name, "P")']
KEPT = ['in_campaign("other")', 'was_in_campaign("other")', 'matches(partner.language, "^(fi|Ö)")',
        'lower(partner.language) == "ök"']
conjunct = st.sampled_from(PUSHED + KEPT)
rulesets = st.lists(st.lists(conjunct, min_size=1, max_size=3).map(" and ".join), min_size=1, max_size=2)


@SETTINGS
@given(rules=rulesets, exclude=st.sampled_from(["", 'partner.revenue == 0', 'in_campaign("other")']),
       people=st.lists(st.tuples(st.sampled_from(IDS), st.sampled_from(["silver", "gold"]),
                                 st.sampled_from(["0", "150", "2.5"]), st.sampled_from(["fi", "en", "Ö\u212a"]),
                                 st.booleans()), min_size=1, max_size=6))
def test_partial_push_down_selects_what_python_selects(tmp_path_factory, make_engine, rules, exclude, people):
    tmp_path = tmp_path_factory.mktemp("partial")
    rows = {pid: partner(pid, tier=tier, revenue=revenue, language=language, paid=paid)
            for pid, tier, revenue, language, paid in people}
    lines = "\n".join(f"r{i}: {json.dumps(rule)}" for i, rule in enumerate(rules))
    mixed = campaign(trigger="", steps=HELLO, audience=lines)
    if exclude:
        mixed = mixed.replace("  rulesets:", f"  exclude: {json.dumps(exclude)}\n  rulesets:", 1)
    campaigns = {"mixed": mixed,
                 "other": campaign(steps=HELLO, audience='everyone: partner.tier == "gold"')}
    engine = make_engine(workspace(tmp_path, campaigns, partners_csv(*rows.values())))
    engine.tick()
    compiled = engine.plan.campaigns.get("mixed")
    assert compiled is not None, engine.plan.workspace.diagnostics
    ctx = _context(engine, compiled)
    query = pushed_down(engine.store, engine.plan, compiled, ctx)
    pushable = [any(part in PUSHED for part in rule.split(" and ")) for rule in rules]
    if all(pushable):
        assert query is not None
    assert audience_ids(engine.store, engine.plan, engine.book, compiled, ctx, taken=()) == _python(engine, compiled)
