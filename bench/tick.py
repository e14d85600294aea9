"""How long does a tick take with many partners, when everything is due and when nothing is?

    python bench/tick.py [--partners 100000] [--repeat 5] [--runs 3] [--as-written] [--tracemalloc]
    python bench/tick.py --profile [LINES]

Generates (deterministically, in a temporary directory) a workspace of N opted-in partners and
one campaign whose `at` trigger (T0) enrolls them all, then times ``Engine.tick`` through the
Python API. Each phase runs in a fresh process, so its peak resident set is its own:

    import    tick at T0-1h: reads partners.csv into the store (the trigger has not fired yet)
    enroll    tick at T0: the trigger fires and enrolls N (their first step is after `wait: 1h`)
    all due   tick at T0+1h: N email steps due, rendered, committed and delivered to the outbox
    none due  ticks at T0+2h, T0+3h, ...: N enrollments waiting 30 days, nothing to do
    as written (with --as-written; about as long as an all-due run): the campaign starts with its
              email (no wait), and one tick at T0 imports, enrolls and executes N emails

The destructive phases (import, enroll, all due) run ``--runs`` times on fresh copies of the
workspace; the none-due tick runs ``--repeat`` times in one process (after a first, cold tick)
and, when the CLI has an `engine tick` command, ``--repeat`` times through it.
``--profile`` prints the top cumulative cProfile entries of the all-due and none-due ticks
instead. ``--tracemalloc`` adds the Python heap peak of each tick (and slows the ticks down).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T0 = datetime(2026, 7, 1, 9, 0, tzinfo=timezone.utc)
WAIT = timedelta(days=30)
SEED = 20260701

SETTINGS = """\
timezone: UTC
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    language: string
    tier: {enum: [silver, gold, platinum]}
    revenue: number
    supplier_emails: bool
consent:
  email: partner.supplier_emails
"""

CAMPAIGN = """\
name: Tick benchmark
description: Everyone, at once, two emails a month apart.
active: true
audience:
  rulesets:
    everyone: partner.revenue >= 0
trigger:
  at: {at}
steps:
{first_wait}  - id: hello
    email:
      subject: "Hello {{{{ partner.name }}}}"
      body: |
        Hi {{{{ partner.name }}}},

        this is the first message of the tick benchmark.
  - wait: 30d
  - id: again
    email:
      subject: "Still there, {{{{ partner.name }}}}?"
      body: "Hi {{{{ partner.name }}}}, this is the second message."
"""

FIRST = ["Aino", "Mikko", "Sanna", "Erik", "Linnea", "Jonas", "Helmi", "Oskar", "Maria", "Ville"]
LAST = ["Korhonen", "Nieminen", "Virtanen", "Andersson", "Lindqvist", "Mäkinen", "Berg", "Laine"]


def make_workspace(root: Path, count: int, first_wait: bool) -> None:
    """engine.yaml, campaigns/bench.yaml and partners.csv; the same bytes for the same count."""
    rng = random.Random(SEED)
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(SETTINGS)
    (root / "campaigns" / "bench.yaml").write_text(CAMPAIGN.format(
        at=T0.strftime("%Y-%m-%dT%H:%M"), first_wait="  - wait: 1h\n" if first_wait else ""))
    lines = ["id,name,email,language,tier,revenue,supplier_emails"]
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        revenue = rng.choice([rng.randrange(0, 500_000), round(rng.uniform(0, 500_000), 2)])
        language, tier = rng.choice(["en", "fi", "sv"]), rng.choice(["silver", "gold", "platinum"])
        email = f"{first.lower()}.{i}@example.com"
        lines.append(f"p{i:06d},{first} {last},{email},{language},{tier},{revenue},true")
    (root / "partners.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def revision() -> str:
    """The commit measured, and whether the engine's code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "campaigns", "dsl"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown revision"
    return f"commit {head}" + (" (engine, campaigns or dsl modified)" if dirty else "")


def rss_mb() -> float:
    """Peak resident set of this process so far, in MB. On Linux, VmHWM of /proc/self/status:
    ``ru_maxrss`` is carried across fork and exec, so a worker started by a parent that holds
    the generated data would report the parent's peak as its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


# --- one phase, in a fresh process ----------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Open the workspace, tick at each of spec["times"]; times, reports and memory."""
    started = time.perf_counter()
    from engine.api import Engine  # noqa: E402  (timed: the cost of a fresh process)

    engine = Engine.open(spec["root"], store=spec.get("store"))
    opened = time.perf_counter() - started
    baseline = rss_mb()
    profiler = None
    if spec.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
    if spec.get("tracemalloc"):
        import tracemalloc
        tracemalloc.start()
    seconds, reports, heap = [], [], []
    for at in spec["times"]:
        if spec.get("tracemalloc"):
            tracemalloc.reset_peak()
        if profiler is not None:
            profiler.enable()
        start = time.perf_counter()
        report = engine.tick(datetime.fromisoformat(at))
        seconds.append(time.perf_counter() - start)
        if profiler is not None:
            profiler.disable()
        if spec.get("tracemalloc"):
            heap.append(tracemalloc.get_traced_memory()[1] / 2**20)
        reports.append(report.to_json())
    partners = engine.store.partner_count()
    engine.close()
    if profiler is not None:
        import io
        import pstats
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(spec["profile"])
        print(out.getvalue())
    return {"open": opened, "seconds": seconds, "reports": reports, "partners": partners,
            "baseline_mb": baseline, "peak_mb": rss_mb(), "heap_mb": heap}


def run_worker(root: Path, times: list[datetime], **options: Any) -> dict[str, Any]:
    spec = {"root": str(root), "times": [t.isoformat() for t in times], **options}
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        spec["out"] = result.name
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], text=True,
                              capture_output=not options.get("profile"))
        if done.returncode != 0:
            sys.exit(f"worker failed ({done.returncode}) on {spec}:\n{done.stderr}")
        return json.loads(Path(result.name).read_text())


def expect(phase: str, outcome: dict[str, Any], **counts: int) -> None:
    """Every tick of the phase did what the phase is about (and nothing went wrong)."""
    for report in outcome["reports"]:
        wanted = dict.fromkeys(("enrolled", "executed", "skipped", "finished", "failed", "delivered"), 0)
        wanted.update(counts)
        got = {key: report[key] for key in wanted}
        assert got == wanted and not report["errors"] and not report["warnings"], (phase, report)


# --- the CLI, if it has a tick command ------------------------------------------------------------


def cli_tick_command(root: Path) -> list[str] | None:
    """`engine tick -w DIR [--json] --at` (T to append) when the CLI has that command, else None."""
    shown = subprocess.run([sys.executable, "-m", "engine", "tick", "--help"], cwd=ROOT, capture_output=True,
                           text=True)
    if shown.returncode != 0 or "--at" not in shown.stdout:
        return None
    if "-w" in shown.stdout:  # the subcommand's own option (its default would override the global one)
        command = [sys.executable, "-m", "engine", "tick", "-w", str(root)]
    else:
        command = [sys.executable, "-m", "engine", "-w", str(root), "tick"]
    return command + (["--json"] if "--json" in shown.stdout else []) + ["--at"]


def timed_cli(root: Path, times: list[datetime]) -> list[float] | None:
    """Whole `engine tick` runs (interpreter start included), each at its own time."""
    command = cli_tick_command(root)
    if command is None:
        return None
    seconds = []
    for at in times:
        start = time.perf_counter()
        done = subprocess.run(command + [at.strftime("%Y-%m-%dT%H:%MZ")], check=True, capture_output=True,
                              text=True, cwd=ROOT)
        seconds.append(time.perf_counter() - start)
        if "--json" in command:
            expect("none due (CLI)", {"reports": [json.loads(done.stdout)]})
    return seconds


# --- printing ---------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def row(label: str, seconds: list[float], count: int | None = None, unit: str = "",
        mb: list[float] | None = None, heap: list[float] | None = None) -> str:
    median = statistics.median(seconds)
    rate = f"{count / median:,.0f} {unit}" if count else ""
    memory = f"{max(mb):,.0f} MB" if mb else ""
    text = (f"{label:<40}{duration(median):>11}{duration(min(seconds)):>11}{duration(max(seconds)):>11}"
            f"{len(seconds):>5}  {rate:<22}{memory:>9}")
    if heap:
        text += f"{max(heap):>10,.1f} MB"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="none-due ticks (in-process, and through the CLI)")
    parser.add_argument("--runs", type=int, default=3, help="runs of the import, enroll and all-due phases")
    parser.add_argument("--as-written", action="store_true",
                        help="also one tick at T0 that imports, enrolls and executes N emails at once")
    parser.add_argument("--tracemalloc", action="store_true", help="also the Python heap peak (slower ticks)")
    parser.add_argument("--profile", type=int, nargs="?", const=15, metavar="LINES",
                        help="print the top cumulative cProfile entries of the all-due and none-due ticks "
                             "instead")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        Path(spec["out"]).write_text(json.dumps(worker(spec)))
        return 0

    n, k = args.partners, args.repeat
    import_at, due_at = T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    idle = [due_at + timedelta(hours=h) for h in range(1, 2 * k + 2)]  # cold + k in-process, then k CLI
    assert idle[-1] < due_at + WAIT, "--repeat too large: the ticks must stay within the 30-day wait"
    extra = {"tracemalloc": True} if args.tracemalloc else {}

    with tempfile.TemporaryDirectory() as tmp:
        pristine, written = Path(tmp) / "pristine", Path(tmp) / "as-written"
        make_workspace(pristine, n, first_wait=True)
        if args.as_written:
            make_workspace(written, n, first_wait=False)

        if args.profile:
            root = Path(tmp) / "profile"
            shutil.copytree(pristine, root)
            expect("import", run_worker(root, [import_at]))
            expect("enroll", run_worker(root, [T0]), enrolled=n)
            top = f"cProfile, top {args.profile} cumulative"
            print(f"=== all due: {n:,} email steps, tick at T0+1h ({top}) ===", flush=True)
            expect("all due", run_worker(root, [due_at], profile=args.profile), executed=n, delivered=n)
            print(f"=== none due: {n:,} enrollments waiting, {k + 1} ticks in one process, "
                  f"the first one cold ({top}) ===", flush=True)
            expect("none due", run_worker(root, idle[:k + 1], profile=args.profile))
            return 0

        phases: dict[str, list[dict[str, Any]]] = {"import": [], "enroll": [], "due": []}
        for run in range(args.runs):
            root = Path(tmp) / f"run-{run}"
            shutil.copytree(pristine, root)
            phases["import"].append(run_worker(root, [import_at], **extra))
            expect("import", phases["import"][-1])
            assert phases["import"][-1]["partners"] == n
            phases["enroll"].append(run_worker(root, [T0], **extra))
            expect("enroll", phases["enroll"][-1], enrolled=n)
            phases["due"].append(run_worker(root, [due_at], **extra))
            expect("all due", phases["due"][-1], executed=n, delivered=n)
        waiting = Path(tmp) / "run-0"
        idle_run = run_worker(waiting, idle[:k + 1], **extra)
        expect("none due", idle_run)
        cli = timed_cli(waiting, idle[k + 1:])
        first = run_worker(written, [T0], **extra) if args.as_written else None
        if first is not None:
            expect("first tick", first, enrolled=n, executed=n, delivered=n)
        state_mb = (waiting / ".engine" / "state.db").stat().st_size / 2**20

    def tick_seconds(outcomes: list[dict[str, Any]]) -> list[float]:
        return [o["seconds"][0] for o in outcomes]

    def memory(outcomes: list[dict[str, Any]], key: str = "peak_mb") -> list[float]:
        return [o[key] for o in outcomes]

    def heap(outcomes: list[dict[str, Any]]) -> list[float] | None:
        return [h for o in outcomes for h in o["heap_mb"]] or None

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    print(f"Tick of one campaign over {n:,} partners, at {revision()}")
    print(f"{cpus} CPUs ({usable} usable), Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}")
    print("Each phase in a fresh process; peak RSS is that process's (interpreter, engine, workspace).")
    if args.tracemalloc:
        print("tracemalloc on: tick times are inflated; 'heap' is the Python heap peak during the tick.")
    print()
    print(f"{'':<40}{'median':>11}{'min':>11}{'max':>11}{'runs':>5}  {'rate':<22}{'peak RSS':>9}"
          + (f"{'heap':>13}" if args.tracemalloc else ""))
    print(row("import partners (tick T0-1h)", tick_seconds(phases["import"]), n, "partners/s",
              memory(phases["import"]), heap(phases["import"])))
    print(row("enroll: at-trigger fires (tick T0)", tick_seconds(phases["enroll"]), n, "enrollments/s",
              memory(phases["enroll"]), heap(phases["enroll"])))
    print(row(f"all due: {n:,} email steps (T0+1h)", tick_seconds(phases["due"]), n, "steps/s",
              memory(phases["due"]), heap(phases["due"])))
    print(row("none due: first tick after open", [idle_run["seconds"][0]], mb=[idle_run["peak_mb"]],
              heap=idle_run["heap_mb"][:1] or None))
    print(row("none due: next ticks, same process", idle_run["seconds"][1:],
              heap=idle_run["heap_mb"][1:] or None))
    if cli is None:
        print(f"{'none due: engine tick (CLI)':<40}   skipped: the CLI has no `engine tick --at` command")
    else:
        print(row("none due: engine tick (CLI, whole run)", cli))
    if first is not None:
        print(row("as written: import+enroll+N (tick T0)", first["seconds"], n, "steps/s (all in)",
                  [first["peak_mb"]], first["heap_mb"] or None))
    opens = [o["open"] for phase in phases.values() for o in phase] + [idle_run["open"]]
    print()
    print(f"fresh process: imports + Engine.open median {duration(statistics.median(opens))}, "
          f"RSS after open median {statistics.median(memory(phases['due'], 'baseline_mb')):,.0f} MB")
    print(f"state.db after the all-due tick: {state_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
