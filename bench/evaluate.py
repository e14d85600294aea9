"""How fast is a compiled ruleset next to the lambda a careful human would write?

    python bench/evaluate.py [--records N] [--runs R] [--show-code]

Evaluates each audience ruleset below over generated partner records (with missing fields and
nulls) and prints records/second for the compiled expression, a hand-written lambda of the
same null-safe meaning, and the closures the compiler falls back to for very deep expressions.
Each ruleset has a target: the compiled expression at least that fraction of the lambda's
speed (the ratio of the medians). The exit status is 1 when a ruleset misses its target.

Times are this process's CPU time (``time.process_time``), which on an idle machine is the
elapsed time and on a busy one leaves out the time other processes ran instead. A busy machine
still disturbs the figures (shared caches, frequency): the load average is printed with them,
and rounds interleave the contenders so that noise slows them alike.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsl.compile import compile_closures, compile_expression  # noqa: E402
from dsl.parser import parse  # noqa: E402
from dsl.runtime import Context  # noqa: E402

Record = dict[str, Any]
SINCE = date(2020, 1, 1)


@dataclass(frozen=True)
class Ruleset:
    name: str
    text: str
    by_hand: Callable[[Record], bool]  # what a careful human writes: null-safe, no type checks
    target: float  # compiled records/s at least this times the lambda's


RULESETS = [
    Ruleset(
        "comparisons",
        'partner.tier in ["gold", "platinum"] and partner.revenue >= 10000 and partner.country == "FI"',
        lambda r: (
            r.get("tier") in ("gold", "platinum")
            and r.get("revenue") is not None
            and r["revenue"] >= 10000
            and r.get("country") == "FI"
        ),
        0.7,
    ),
    Ruleset(
        "functions",
        'contains(lower(partner.company), "oy") and partner.joined_at >= 2020-01-01'
        " and coalesce(partner.revenue, 0) >= 10000",
        lambda r: (
            "oy" in (r.get("company") or "").lower()
            and (joined := r.get("joined_at")) is not None
            and joined >= SINCE
            and (r.get("revenue") or 0) >= 10000
        ),
        0.6,
    ),
]

COMPANIES = ["Lumiverkko Oy", "Nordic Widgets OY", "Oyster Bay Ltd", "Kuusi Ab", "Fjord AS", "Acme GmbH",
             "Tieto ja Taito oy", "Boyd & Sons", "Example Inc"]


def records(count: int, seed: int = 20260701) -> list[Record]:
    """Partner records like a real export: some fields missing, some null. Dates are
    ``datetime.date``, as the record layer holds them."""
    rng = random.Random(seed)
    first_day = date(2015, 1, 1)
    out = []
    for i in range(count):
        record: Record = {"id": f"p{i}"}
        roll = rng.random()
        if roll < 0.9:
            record["tier"] = rng.choice(["silver", "gold", "platinum"])
        elif roll < 0.95:
            record["tier"] = None
        roll = rng.random()
        if roll < 0.85:
            record["revenue"] = rng.choice([rng.randint(0, 50_000), round(rng.uniform(0, 50_000), 2)])
        elif roll < 0.95:
            record["revenue"] = None
        if rng.random() < 0.9:
            record["country"] = rng.choice(["FI", "FI", "SE", "NO", "DK", "DE"])
        roll = rng.random()
        if roll < 0.85:
            record["company"] = rng.choice(COMPANIES)
        elif roll < 0.93:
            record["company"] = None
        roll = rng.random()
        if roll < 0.85:
            record["joined_at"] = first_day + timedelta(days=rng.randint(0, 11 * 365))
        elif roll < 0.93:
            record["joined_at"] = None
        out.append(record)
    return out


def timed(runs: int, **contenders: Callable[[], int]) -> dict[str, tuple[list[float], int]]:
    """CPU seconds of each contender in each of ``runs`` rounds, and its (same every time) result.
    Rounds interleave the contenders, so a noisy machine slows them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, set[int]] = {name: set() for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            start = time.process_time()
            results[name].add(run())
            seconds[name].append(time.process_time() - start)
    for name, found in results.items():
        assert len(found) == 1, (name, found)
    return {name: (seconds[name], results[name].pop()) for name in contenders}


def rate(count: int, seconds: list[float]) -> str:
    """Records/second: the median, and the range from the slowest run to the fastest."""
    return (f"{count / statistics.median(seconds):>12,.0f}"
            f"   {count / max(seconds):>11,.0f} – {count / min(seconds):<11,.0f}")


def bench(ruleset: Ruleset, partners: list[Record], runs: int, show_code: bool) -> bool:
    """Print one ruleset's figures; whether it met its target."""
    compiled = compile_expression(parse(ruleset.text))
    closures = compile_closures(parse(ruleset.text)).test
    ctx = Context(now=datetime(2026, 7, 1, 9, tzinfo=UTC), tz=ZoneInfo("Europe/Helsinki"))
    test, by_hand = compiled.test, ruleset.by_hand

    timings = timed(
        runs,
        compiled=lambda: sum(1 for r in partners if test(r, ctx)),
        by_hand=lambda: sum(1 for r in partners if by_hand(r)),
        closures=lambda: sum(1 for r in partners if closures(r, ctx)),
    )
    counts = {name: count for name, (_, count) in timings.items()}
    assert len(set(counts.values())) == 1, counts
    assert not ctx.warnings, ctx.warnings[:3]

    ratio = statistics.median(timings["by_hand"][0]) / statistics.median(timings["compiled"][0])
    passed = ratio >= ruleset.target
    print(f"== {ruleset.name}: {ruleset.text}")
    if show_code:
        print(compiled.source)
    print(f"{len(partners):,} records, {counts['compiled']:,} match; {runs} runs; "
          f"load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())} (1/5/15 min)")
    print(f"{'evaluator':<22}{'median rec/s':>12}   {'min – max rec/s':^25}")
    for name, label in (("compiled", "compiled expression"), ("by_hand", "hand-written lambda"),
                        ("closures", "closures (fallback)")):
        print(f"{label:<22}{rate(len(partners), timings[name][0])}")
    print(f"ratio compiled/lambda (medians): {ratio:.2f}x, target >= {ruleset.target}x: "
          f"{'PASS' if passed else 'FAIL'}\n")
    return passed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--show-code", action="store_true", help="print the generated Python")
    args = parser.parse_args(argv)

    partners = records(args.records)
    results = [bench(ruleset, partners, args.runs, args.show_code) for ruleset in RULESETS]
    print("all targets met" if all(results) else "TARGET MISSED")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
