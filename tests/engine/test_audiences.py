"""Audiences asked of the store (engine/audiences.py) and the incremental sampling of
`audience` triggers (``Triggers._sample_candidates``).

- Pushed down or not, the audience is the one the Python back end selects over every record:
  checked on the example workspace at several times, for every campaign.
- Incremental sampling enrolls exactly whom a full sample at every tick would: a hypothesis
  test drives two engines through the same random edits of partner records, enrollment
  operations, campaign edits and ticks, one sampling incrementally and one always in full,
  and compares every enrollment.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import engine.triggers as triggers_module
from campaigns.audience import natural_key
from campaigns.enrollment import Refused
from dsl.runtime import Context
from engine.audiences import audience_ids, pushed_down
from engine.clock import parse_time
from engine.tick import StoreFacts

from tests.engine.test_tick import EMAIL, campaign, partner, partners_csv, set_campaign, set_partners, workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def _context(engine, compiled, at):
    return Context(now=at, tz=compiled.tz, facts=StoreFacts(engine.store, engine.plan, compiled.id, None, at))


@pytest.mark.parametrize("at", ["2026-07-01T08:00", "2026-08-20T10:00", "2027-02-01T00:00"])
def test_the_store_selects_the_audience_the_python_back_end_selects(make_engine, at):
    engine = make_engine(EXAMPLES, at=at)
    engine.tick()
    when = parse_time(at, engine.plan.tz)
    records = [engine.book.get(pid) for pid in sorted(engine.store.partner_hashes())]
    for cid, compiled in engine.plan.campaigns.items():
        ctx = _context(engine, compiled, when)
        expected = compiled.audience.select([r for r in records if r is not None], ctx, engine.plan.groups, [])
        assert audience_ids(engine.store, engine.plan, engine.book, compiled, ctx, taken=()) == \
            sorted(expected, key=natural_key), cid


def test_audiences_become_one_query_over_the_typed_columns(make_engine):
    engine = make_engine(EXAMPLES)
    engine.tick()
    at = engine.clock.now()
    plan = engine.plan
    found = {cid: pushed_down(engine.store, plan, c, _context(engine, c, at)) for cid, c in plan.campaigns.items()}
    onboarding, renewal = found["partner-onboarding"], found["renewal-reminder"]
    assert onboarding is not None and onboarding.columns and not onboarding.partial
    assert renewal is not None and renewal.columns  # contains(partner.tags, …) too: a list has a column
    assert found["summer-webinar"] is None  # a ruleset of in_group() alone: SQL could narrow nothing down


# --- incremental sampling equals a full sample at every tick -------------------------------------

PARTNERS = [f"p{i}" for i in range(1, 7)]
STEPS = EMAIL.format(id="hello") + "  - wait: 2d\n" + EMAIL.format(id="again")
CAMPAIGNS = {
    "gold": campaign(audience='gold: partner.tier == "gold" and partner.revenue >= 100',
                     extra="reenroll: after_exit\nexit_when: partner.active == false\nexclusive: true\n",
                     steps=STEPS),
    "big": campaign(audience="big: partner.revenue >= 500",
                    extra="reenroll: 3d\nexclusive: true\n", steps=STEPS),
}

actions = st.lists(st.one_of(
    st.tuples(st.just("edit"), st.sampled_from(PARTNERS), st.sampled_from(["silver", "gold"]),
              st.sampled_from([50, 200, 900]), st.booleans()),
    st.tuples(st.just("drop"), st.sampled_from(PARTNERS)),
    st.tuples(st.just("remove"), st.sampled_from(PARTNERS), st.sampled_from(sorted(CAMPAIGNS))),
    st.tuples(st.just("retarget"), st.sampled_from([100, 300])),
    st.tuples(st.just("tick"), st.sampled_from([1, 5, 26, 49, 80])),
), min_size=3, max_size=14)


def _run(tmp_path: Path, make_engine, steps, name: str) -> list[tuple]:
    rows = {pid: partner(pid, tier="gold", revenue=200) for pid in PARTNERS}
    src = workspace(tmp_path, CAMPAIGNS, partners_csv(*rows.values()), name=f"src-{name}")
    engine = make_engine(src, at="2026-07-01T00:00", name=f"{tmp_path.name}-{name}")
    engine.tick()
    for action in steps:
        kind = action[0]
        if kind == "edit":
            _, pid, tier, revenue, active = action
            rows[pid] = partner(pid, tier=tier, revenue=revenue, active=active)
            set_partners(engine, *rows.values())
        elif kind == "drop":
            rows.pop(action[1], None)
            set_partners(engine, *rows.values())
        elif kind == "remove":
            try:
                engine.remove(action[2], [action[1]], user="marketing")
            except Refused:  # not in it now: refused in both runs alike
                pass
        elif kind == "retarget":
            set_campaign(engine, "gold", CAMPAIGNS["gold"].replace(">= 100", f">= {action[1]}"))
        else:
            engine.clock.advance(timedelta(hours=action[1]))
            engine.tick()
    engine.clock.advance(timedelta(hours=1))
    engine.tick()
    found = []
    for pid in PARTNERS:
        for e in engine.status(partner=pid)["enrollments"]:
            found.append((pid, e["campaign"], e["number"], e["status"], e["reason"], e["started_at"], e["finished_at"]))
    return found


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=actions)
def test_incremental_sampling_enrolls_whom_a_full_sample_at_every_tick_would(tmp_path_factory, make_engine,
                                                                            monkeypatch, steps):
    tmp_path = tmp_path_factory.mktemp("sampling")
    incremental = _run(tmp_path, make_engine, steps, "incremental")
    with monkeypatch.context() as patch:
        patch.setattr(triggers_module, "FULL_SAMPLE_EVERY", timedelta(0))  # every sample is a full one
        full = _run(tmp_path, make_engine, steps, "full")
    assert incremental == full


def test_between_full_samples_only_changed_partners_are_looked_at(tmp_path, make_engine, monkeypatch):
    rows = [partner(pid, tier="silver", revenue=200) for pid in PARTNERS]
    engine = make_engine(workspace(tmp_path, CAMPAIGNS, partners_csv(*rows)), at="2026-07-01T00:00")
    engine.tick()
    looked_at: list[set[str] | None] = []
    original = triggers_module.Triggers._sample_candidates

    def spy(self, compiled, state):
        found = original(self, compiled, state)
        if compiled.id == "gold":
            looked_at.append(found)
        return found

    monkeypatch.setattr(triggers_module.Triggers, "_sample_candidates", spy)
    engine.clock.advance(timedelta(hours=1))
    engine.tick()
    rows[2] = partner("p3", tier="gold", revenue=200)
    set_partners(engine, *rows)
    engine.clock.advance(timedelta(hours=1))
    report = engine.tick()
    assert looked_at == [set(), {"p3"}]
    assert report.enrolled == 1
    engine.clock.advance(timedelta(days=1))
    engine.tick()
    assert looked_at[-1] is None  # a day after the last full sample: a full one


def test_reenroll_after_a_duration_happens_at_the_first_tick_it_is_allowed_between_full_samples(tmp_path, make_engine):
    rows = [partner("p1", tier="silver", revenue=50)]
    engine = make_engine(workspace(tmp_path, CAMPAIGNS, partners_csv(*rows)), at="2026-07-01T00:00")
    engine.run("2026-07-01T04:00", every="1h", start="2026-07-01T00:00")  # full samples at midnight
    set_partners(engine, partner("p1", tier="silver", revenue=900))  # now in "big" (only)
    engine.run("2026-07-08T00:00", every="1h", start="2026-07-01T05:00")
    runs = [(e["number"], e["status"], e["started_at"], e["finished_at"])
            for e in engine.status(partner="p1", campaign="big")["enrollments"]]
    # hello at 05:00, again two days later (the end), and three days after that a new run
    assert runs[:2] == [(1, "finished", "2026-07-01T05:00:00Z", "2026-07-03T05:00:00Z"),
                        (2, "active", "2026-07-06T05:00:00Z", None)]
