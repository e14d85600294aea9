"""Audiences at database speed: typed partner columns and partial push-down (issue 17).

    python bench/audience.py [--partners 1000000] [--rounds 5] [--store postgresql:///engine_test]

Builds bench/tick.py's deterministic partners (ids p000000…, tier, language, revenue, email) in
a temporary workspace with two campaigns, imports them once (timed), then in a fresh process
measures in interleaved rounds:

    baseline     the SQL the engine generated before typed columns: the ruleset compiled over
                 the JSON record (dsl.sql.to_sql without columns), ids fetched: kept here as
                 the yardstick
    columns      the same ruleset compiled over the typed columns, ids fetched
    audience     the engine's whole audience (engine.audiences.audience_ids: query, order)
    + matches    the same ruleset with a `matches()` clause added, its whole audience: a
                 pattern of plain characters and classes (`"^[a-m]"`: a GLOB on SQLite), and
                 one that needs Python's `re` (`"^[a-m][a-z]*\\.[0-9]+@"`: SQLite calls it from
                 SQL). PostgreSQL's regular expressions are not Python's, so there both stay
                 in Python (partial push-down).

and prints medians with min–max, the ratios of medians, the load average, and the issue's
targets: audience ≤ 0.3× baseline; audience with matches() ≤ 1.5× the audience without it
(each pattern).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from scale import Schemas  # noqa: E402
from tick import T0, make_workspace, revision, rss_mb  # noqa: E402

RULESET = 'partner.tier in ["gold", "platinum"] and partner.language == "fi" and partner.revenue >= 100000'
MATCHES = {"gold-fi-glob": 'matches(partner.email, "^[a-m]")',
           "gold-fi-re": 'matches(partner.email, "^[a-m][a-z]*\\\\.[0-9]+@")'}
CAMPAIGN = """\
name: {name}
description: An audience the benchmark measures.
audience:
  rulesets:
    rule: {rule}
  include_test: true
steps:
  - id: hello
    email: {{subject: "Hello", body: "Hi"}}
"""
ROWS = ("baseline", "columns", "audience", "+ matches (glob)", "+ matches (re)")


def workspace(root: Path, count: int) -> None:
    make_workspace(root, count, first_wait=True)
    (root / "campaigns" / "gold-fi.yaml").write_text(CAMPAIGN.format(name="Gold in Finland", rule=RULESET))
    for cid, clause in MATCHES.items():
        (root / "campaigns" / f"{cid}.yaml").write_text(
            CAMPAIGN.format(name=f"Gold in Finland, {cid}", rule=f"{RULESET} and {clause}"))


def import_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from engine.api import Engine

    engine = Engine.open(spec["root"], store=spec.get("store"))
    start = time.perf_counter()
    engine.read_partners(T0)
    seconds = time.perf_counter() - start
    engine.close()
    return {"seconds": seconds, "peak_mb": rss_mb()}


def measure_worker(spec: dict[str, Any]) -> dict[str, Any]:
    from dsl.runtime import Context
    from dsl.sql import to_sql
    from engine.api import Engine
    from engine.audiences import audience_ids, pushed_down
    from engine.compiled import audience_schema
    from engine.tick import StoreFacts

    engine = Engine.open(spec["root"], store=spec.get("store"))
    plan, store = engine.plan, engine.store
    runs = {}
    for cid in ("gold-fi", *MATCHES):
        compiled = plan.campaigns[cid]
        ctx = Context(now=T0, tz=compiled.tz, facts=StoreFacts(store, plan, cid, None, T0))
        query = pushed_down(store, plan, compiled, ctx)
        assert query is not None and query.columns, f"{cid}: the bench ruleset must be pushed down to the columns"
        runs[cid] = (compiled, ctx, query)
    compiled, ctx, query = runs["gold-fi"]
    (_, node), = compiled.audience.ruleset_nodes
    old = to_sql(node, audience_schema(plan), now=T0, tz=ctx.tz, dialect=store.dialect)

    def ids(q) -> list[str]:
        return [pid for pid, _ in store.partners_where(q.sql, q.params, columns=q.columns)]

    measured = {
        "baseline": lambda: [pid for pid, _ in store.partners_where(old.sql, old.params)],
        "columns": lambda: ids(query),
        "audience": lambda: audience_ids(store, plan, engine.book, compiled, ctx, taken=()),
        **{f"+ matches ({cid.rsplit('-', 1)[1]})": _audience(store, plan, engine.book, *runs[cid][:2])
           for cid in MATCHES},
    }
    times: dict[str, list[float]] = {name: [] for name in ROWS}
    sizes: dict[str, int] = {}
    for _ in range(spec["rounds"]):  # interleaved: caches and the machine treat them alike
        for name, run in measured.items():
            start = time.perf_counter()
            found = run()
            times[name].append(time.perf_counter() - start)
            sizes[name] = len(found)
    assert sizes["baseline"] == sizes["columns"] == sizes["audience"], sizes
    engine.close()
    partial = [cid for cid in MATCHES if runs[cid][2].partial]
    return {"times": times, "sizes": sizes, "partial": partial, "peak_mb": rss_mb()}


def _audience(store, plan, book, compiled, ctx):
    from engine.audiences import audience_ids

    return lambda: audience_ids(store, plan, book, compiled, ctx, taken=())


def worker(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, f"--{kind}-worker", json.dumps(spec)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        sys.exit(f"{kind} worker failed:\n{done.stderr}")
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--store", help="a PostgreSQL database URL: the bench makes a scratch schema there and drops"
                        " it (default: the workspace's SQLite store)")
    parser.add_argument("--import-worker", help=argparse.SUPPRESS)
    parser.add_argument("--measure-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for kind, fn in (("import", import_worker), ("measure", measure_worker)):
        spec = getattr(args, f"{kind}_worker")
        if spec:
            print(json.dumps(fn(json.loads(spec))))
            return

    with tempfile.TemporaryDirectory(prefix="engine-audience-") as tmp:
        root = Path(tmp) / "ws"
        workspace(root, args.partners)
        schemas = Schemas(args.store) if args.store else None
        try:
            spec = {"root": str(root), "store": schemas and schemas.new(), "rounds": args.rounds}
            imported = worker("import", spec)
            load = os.getloadavg()
            result = worker("measure", spec)
            load_after = os.getloadavg()
        finally:
            if schemas is not None:
                schemas.drop()

    times, sizes = result["times"], result["sizes"]
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"Audiences over {args.partners:,} partners, {args.rounds} interleaved rounds, {revision()}, "
          f"{args.store and 'PostgreSQL' or 'SQLite'}; load average {load[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"import (typed columns included): {imported['seconds']:.1f} s, peak {imported['peak_mb']:.0f} MB")
    print(f"{'':18} {'median':>9} {'min–max':>17} {'rows':>9} {'÷ baseline':>11}")
    for name in ROWS:
        low, high = min(times[name]), max(times[name])
        print(f"{name:18} {median[name] * 1000:7.0f} ms {low * 1000:7.0f}–{high * 1000:.0f} ms {sizes[name]:9,}"
              f" {median[name] / median['baseline']:10.2f}×")
    if result["partial"]:
        print(f"matches() stayed in Python ({', '.join(result['partial'])}: partial push-down): the store's regular"
              " expressions are not Python's")
    ratio = median["audience"] / median["baseline"]
    print(f"audience ÷ baseline: {ratio:.2f}× (target ≤ 0.3×: {'met' if ratio <= 0.3 else 'NOT met'})")
    for name in ROWS[3:]:
        with_matches = median[name] / median["audience"]
        print(f"audience {name[2:]} ÷ without: {with_matches:.2f}× "
              f"(target ≤ 1.5×: {'met' if with_matches <= 1.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
