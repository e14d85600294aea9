"""How fast is a compiled ruleset next to the lambda a careful human would write?

    python bench/evaluate.py [--records N] [--runs R]

Evaluates one audience ruleset over generated partner records (with missing fields and nulls)
and prints records/second for both. The target: the compiled expression at least half as fast
as the hand-written lambda.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dsl.compile import compile_closures, compile_expression  # noqa: E402
from dsl.parser import parse  # noqa: E402
from dsl.runtime import Context  # noqa: E402

RULESET = 'partner.tier in ["gold", "platinum"] and partner.revenue >= 10000 and partner.country == "FI"'
TARGET = 0.5


# What a careful human writes: null-safe, no type checks.
by_hand: Callable[[dict[str, Any]], bool] = lambda r: (  # noqa: E731
    r.get("tier") in ("gold", "platinum")
    and r.get("revenue") is not None
    and r["revenue"] >= 10000
    and r.get("country") == "FI"
)


def records(count: int, seed: int = 20260701) -> list[dict[str, Any]]:
    """Partner records like a real export: some fields missing, some null."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        record: dict[str, Any] = {"id": f"p{i}"}
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
        out.append(record)
    return out


def timed(runs: int, **contenders: Callable[[], int]) -> dict[str, tuple[float, int]]:
    """Median seconds of each contender over ``runs`` rounds, and its (same every time) result.
    Rounds interleave the contenders, so a noisy machine slows them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in contenders}
    results: dict[str, set[int]] = {name: set() for name in contenders}
    for _ in range(runs):
        for name, run in contenders.items():
            start = time.perf_counter()
            results[name].add(run())
            seconds[name].append(time.perf_counter() - start)
    for name, found in results.items():
        assert len(found) == 1, (name, found)
    return {name: (statistics.median(seconds[name]), results[name].pop()) for name in contenders}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--show-code", action="store_true", help="print the generated Python")
    args = parser.parse_args(argv)

    partners = records(args.records)
    compiled = compile_expression(parse(RULESET))
    closures = compile_closures(parse(RULESET)).test
    ctx = Context(now=datetime(2026, 7, 1, 9, tzinfo=timezone.utc), tz=ZoneInfo("Europe/Helsinki"))
    test = compiled.test

    timings = timed(
        args.runs,
        compiled=lambda: sum(1 for r in partners if test(r, ctx)),
        by_hand=lambda: sum(1 for r in partners if by_hand(r)),
        closures=lambda: sum(1 for r in partners if closures(r, ctx)),
    )
    (ours, our_count), (theirs, their_count) = timings["compiled"], timings["by_hand"]
    assert our_count == their_count == timings["closures"][1], (our_count, their_count, timings["closures"][1])
    assert not ctx.warnings, ctx.warnings[:3]

    ratio = theirs / ours
    print(f"ruleset: {RULESET}")
    if args.show_code:
        print(compiled.source)
    print(f"{len(partners):,} records, {our_count:,} match; median of {args.runs} runs\n")
    print(f"{'evaluator':<22}{'records/s':>14}")
    print(f"{'compiled expression':<22}{len(partners) / ours:>14,.0f}")
    print(f"{'hand-written lambda':<22}{len(partners) / theirs:>14,.0f}")
    print(f"{'closures (fallback)':<22}{len(partners) / timings['closures'][0]:>14,.0f}")
    print(f"\nratio compiled/lambda: {ratio:.2f}x (target >= {TARGET}x)")
    return 0 if ratio >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
