"""The long fuzz run of issue 18: campaign YAML, expressions, templates, partner files, events
and command lines against the engine, with the property of tests/fuzz/runner.py (exit code in
{0, 1, 2, 3}, no internal error or traceback, no hang, bounded memory, the control campaign
still delivers).

    python bench/fuzz.py --cases 50000 --seed 1 --jobs 2
    python bench/fuzz.py --cases 2000 --kinds yaml,template --out /tmp/fuzz-out
    python bench/fuzz.py --replay /tmp/fuzz-out/yaml-timeout-1-42     # one saved case again
    python bench/fuzz.py --corpus                                     # the regression corpus

Case ``i`` of seed ``s`` is the same whatever ``--jobs`` is (``tests.fuzz.generators.
generate_case``). Every failing case is saved (at most ``--keep`` per distinct failure) under
``--out`` with a ``repro.sh``; at the end the first case of each distinct failure is run again in
fresh ``python -m engine`` processes (``--confirm``), so a failure that only the in-process
harness shows is reported as unconfirmed, not as the engine's. Exit 1 when anything failed.

The code under test is the one beside this file (its parent directory goes first on sys.path).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz.generators import KINDS, generate_case
from tests.fuzz.runner import FAILURE_TYPES, Runner, load_case, save_reproducer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=1000, help="number of cases (default 1000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--start", type=int, default=0, help="first case index (to resume or split a run)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    parser.add_argument("--out", type=Path, default=None, help="where reproducers and summary.json go "
                        "(default: a new directory under the temporary directory)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch space for the case workspaces "
                        "(default: /dev/shm when it exists)")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds per command (default 20)")
    parser.add_argument("--memory-mb", type=int, default=1024, help="address space per command above the "
                        "harness's own (default 1024)")
    parser.add_argument("--keep", type=int, default=3, help="reproducers saved per distinct failure and worker (default 3)")
    parser.add_argument("--confirm", type=int, default=1, help="cases of each distinct failure run again in fresh "
                        "interpreters (default 1; 0: none)")
    parser.add_argument("--replay", type=Path, help="run one saved case (a reproducer directory or case.json) and show it")
    parser.add_argument("--corpus", action="store_true", help="run the regression corpus (tests/fuzz/corpus)")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    args = parser.parse_args(argv)
    unknown = set(args.kinds.split(",")) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))} (known: {', '.join(KINDS)})")
    return args


def scratch(args: argparse.Namespace) -> Path:
    base = args.workdir or (Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir()))
    return Path(tempfile.mkdtemp(prefix="engine-fuzz-", dir=base))


def summarize(result, index: int) -> dict:
    return {"index": index, "kind": result.case.kind, "note": result.case.note[:300], "elapsed": result.elapsed,
            "commands": len(result.case.commands), "cpu": result.cpu, "peak_rss_mb": result.peak_rss_mb,
            "control": result.control_delivered, "saved": result.saved,
            "failures": [(f.type, f.signature, f.detail[:500]) for f in result.failures]}


def worker(number: int, jobs: int, args: argparse.Namespace, base: Path, workdir: Path, queue) -> None:
    runner = Runner(workdir / f"w{number}", base, timeout=args.timeout, memory_mb=args.memory_mb, save_dir=args.out)
    kinds = tuple(args.kinds.split(","))
    kept: Counter = Counter()
    try:
        for index in range(args.start + number, args.start + args.cases, jobs):
            run_one(runner, args, base, kinds, kept, index, queue)
    finally:
        queue.put(None)  # this worker is done (also when it broke)


def run_one(runner: Runner, args: argparse.Namespace, base: Path, kinds: tuple[str, ...], kept: Counter, index: int,
            queue) -> None:
    try:
        case = generate_case(args.seed, index, kinds)
        result = runner.run(case, save=False)
    except Exception as exc:  # noqa: BLE001 - a bug of the harness, not of the engine: reported apart
        queue.put({"index": index, "kind": kinds[index % len(kinds)], "harness_error": f"{type(exc).__name__}: {exc}",
                   "failures": [], "elapsed": 0.0, "cpu": 0.0, "peak_rss_mb": 0.0, "saved": None, "control": None,
                   "commands": 0, "note": ""})
        return
    if result.failures:
        signature = result.failures[0].signature
        if kept[signature] < args.keep:
            kept[signature] += 1
            result.saved = str(save_reproducer(result, base, args.out))
    queue.put(summarize(result, index))


def run(args: argparse.Namespace) -> int:
    workdir = scratch(args)
    args.out = args.out or Path(tempfile.mkdtemp(prefix=f"engine-fuzz-out-{args.seed}-"))
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    main_runner = Runner(workdir / "main", timeout=args.timeout, memory_mb=args.memory_mb, save_dir=args.out)
    base = main_runner.base
    prepared = time.monotonic() - t0
    print(f"fuzz: seed {args.seed}, cases {args.start}..{args.start + args.cases - 1}, kinds {args.kinds}, "
          f"jobs {args.jobs}, timeout {args.timeout:g} s, memory {args.memory_mb} MiB; base prepared in {prepared:.1f} s; "
          f"reproducers in {args.out}", file=sys.stderr)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=worker, args=(n, args.jobs, args, base, workdir, queue), daemon=True)
                 for n in range(args.jobs)]
    start = time.monotonic()
    for p in processes:
        p.start()
    summaries: list[dict] = []
    running, last = len(processes), 0.0
    tty = sys.stderr.isatty()
    try:
        while running:
            item = queue.get()
            if item is None:
                running -= 1
                continue
            summaries.append(item)
            now = time.monotonic()
            if not args.quiet and (now - last > (1 if tty else 30) or len(summaries) == args.cases):
                last = now
                failed = sum(bool(s["failures"]) for s in summaries)
                signatures = len({f[1] for s in summaries for f in s["failures"]})
                rate = len(summaries) / (now - start)
                eta = (args.cases - len(summaries)) / rate if rate else 0
                line = (f"[{len(summaries)}/{args.cases}] {rate:.1f} cases/s, {failed} failing cases, "
                        f"{signatures} distinct failures, eta {eta / 60:.1f} min")
                print(("\r" + line + " " * 8) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted: the summary covers the cases run so far", file=sys.stderr)
        for p in processes:
            p.terminate()
    for p in processes:
        p.join(timeout=5)
    if tty and not args.quiet:
        print(file=sys.stderr)
    elapsed = time.monotonic() - start
    try:
        return report(args, summaries, elapsed, main_runner)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the scratch copies (reproducers are in --out)


def report(args: argparse.Namespace, summaries: list[dict], elapsed: float, runner: Runner) -> int:
    by_kind = Counter(s["kind"] for s in summaries)
    failing_by_kind = Counter(s["kind"] for s in summaries if s["failures"])
    types: dict[str, Counter] = defaultdict(Counter)
    signatures: dict[str, dict] = {}
    for s in summaries:
        for kind_of_failure, signature, detail in s["failures"]:
            types[s["kind"]][kind_of_failure] += 1
            entry = signatures.setdefault(signature, {"signature": signature, "type": kind_of_failure, "count": 0,
                                                      "kinds": Counter(), "detail": detail, "examples": []})
            entry["count"] += 1
            entry["kinds"][s["kind"]] += 1
            if s["saved"] and s["saved"] not in entry["examples"] and len(entry["examples"]) < 3:
                entry["examples"].append(s["saved"])
    # confirm each distinct failure in fresh interpreters
    if args.confirm:
        for entry in signatures.values():
            entry["confirmed"] = None
            for example in entry["examples"][: args.confirm]:
                try:
                    from tests.fuzz.runner import CaseResult, Failure

                    data = json.loads((Path(example) / "result.json").read_text())
                    result = CaseResult(load_case(Path(example)), failures=[Failure(**f) for f in data["failures"]])
                    entry["confirmed"] = runner.confirm(result)
                    entry["confirmed_as"] = result.confirmed_as
                except Exception as exc:  # noqa: BLE001 - a harness problem, reported as such
                    entry["confirmed"] = f"could not confirm: {exc}"
                if entry["confirmed"] is True:
                    break
    n = len(summaries)
    rate = n / elapsed if elapsed else 0.0
    out = sys.stdout
    print(f"\n== fuzz summary: {n} cases in {elapsed:.0f} s = {rate:.1f} cases/s ({args.jobs} job(s)), seed {args.seed}", file=out)
    print(f"{'kind':10} {'cases':>7} {'failing':>8}  " + "  ".join(f"{t}" for t in FAILURE_TYPES), file=out)
    for kind in KINDS:
        if by_kind[kind]:
            print(f"{kind:10} {by_kind[kind]:7} {failing_by_kind[kind]:8}  "
                  + "  ".join(f"{types[kind][t]:{len(t)}}" for t in FAILURE_TYPES), file=out)
    total_types = Counter()
    for counter in types.values():
        total_types.update(counter)
    print(f"{'all':10} {n:7} {sum(failing_by_kind.values()):8}  "
          + "  ".join(f"{total_types[t]:{len(t)}}" for t in FAILURE_TYPES), file=out)
    cpu = sum(s["cpu"] for s in summaries)
    load = os.getloadavg()[0]
    print(f"CPU in the engine's commands: {cpu / max(n, 1) * 1000:.0f} ms per case ({cpu:.0f} s in all; "
          f"{args.jobs * elapsed:.0f} core-s elapsed; load average now {load:.1f} on {os.cpu_count()} cores)", file=out)
    peak = max((s["peak_rss_mb"] for s in summaries), default=0.0)
    slowest = max(summaries, key=lambda s: s["elapsed"], default=None)
    print(f"peak memory of a command above the harness: {peak:.0f} MiB; slowest case {slowest['elapsed']:.1f} s"
          if slowest else "", file=out)
    if signatures:
        print(f"\n{len(signatures)} distinct failures (type | command | exception or symptom), most frequent first:", file=out)
        for entry in sorted(signatures.values(), key=lambda e: -e["count"]):
            confirmed = entry.get("confirmed")
            mark = {True: "confirmed", False: "NOT confirmed in a fresh process", None: "not re-run"}.get(confirmed, confirmed)
            if confirmed is True and entry["type"] not in entry.get("confirmed_as", [entry["type"]]):
                mark += f" (as {', '.join(entry['confirmed_as'])})"
            print(f"- {entry['count']:5}x {entry['signature']}  [{', '.join(f'{k} {v}' for k, v in entry['kinds'].items())}; "
                  f"{mark}]", file=out)
            print(f"         {entry['detail'][:300]!r}", file=out)
            for example in entry["examples"][:1]:
                print(f"         reproducer: {example}", file=out)
    harness = [s for s in summaries if s.get("harness_error")]
    if harness:
        print(f"\nHARNESS ERRORS (bugs of the fuzz suite, not of the engine) in {len(harness)} cases, e.g. case "
              f"{harness[0]['index']}: {harness[0]['harness_error']}", file=out)
    print(f"\nreproducers: {args.out}" if signatures else "\nno failures", file=out)
    summary = {"seed": args.seed, "cases": n, "elapsed": elapsed, "cases_per_second": rate, "jobs": args.jobs,
               "by_kind": by_kind, "failing_by_kind": failing_by_kind, "types": {k: dict(v) for k, v in types.items()},
               "signatures": [dict(e, kinds=dict(e["kinds"])) for e in signatures.values()]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return 1 if signatures or harness else 0


def replay(args: argparse.Namespace, paths: list[Path]) -> int:
    workdir = scratch(args)
    runner = Runner(workdir / "main", timeout=args.timeout, memory_mb=args.memory_mb, save_dir=None)
    failed = 0
    for path in paths:
        case = load_case(path)
        result = runner.run(case, save=False)
        print(f"== {path}: {case.kind}: {case.note[:200]}")
        for command, res in zip(case.commands, result.results):
            print(f"$ engine {' '.join(command.argv)!s}"[:400])
            print(f"  exit {res.exit_code}{' (timeout)' if res.timed_out else ''}"
                  f"{f' signal {res.signal}' if res.signal else ''}, {res.elapsed:.2f} s, +{res.peak_rss_mb:.0f} MiB"
                  + (f", control {res.control_before} → {res.control_after}" if command.control else ""))
            for text in (res.stdout, res.stderr):
                if text.strip():
                    print("  | " + "\n  | ".join(text.strip()[-3000:].splitlines()[-40:]))
        for failure in result.failures:
            print(f"  FAIL {failure.type}: {failure.detail[:500]}")
        print("  ok" if result.ok else "")
        failed += not result.ok
    shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.replay:
        return replay(args, [args.replay])
    if args.corpus:
        return replay(args, sorted((ROOT / "tests" / "fuzz" / "corpus").glob("*.json")))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
