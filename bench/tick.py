"""How long does a tick take with many partners, when everything is due and when nothing is?

    python bench/tick.py [--partners 100000] [--repeat 5] [--runs 3] [--as-written] [--tracemalloc]
                         [--flow | --flow-only] [--polls 3] [--caps | --caps-only]
    python bench/tick.py --profile [LINES] [--flow-only | --caps-only]

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

``--flow`` (``--flow-only``: nothing else) adds flow control against the straight line, on the
same partners, in ``--runs`` rounds that interleave the two (which one goes first alternates).
Both campaigns have the same two email steps (hello, then again 30 days later). Between them
the flow one has a branch (platinum jump to `again`, the Swedish-speaking others end, the rest
fall through) and a wait-for (``revenue >= 250000``: true for about half at the tick that
reaches it; the others are asked again at every tick and end at ``at_most: 30d``). Each round
ticks both workspaces, enrolled beforehand, at the same times, in a fresh process each: T0+1h
(everything due), ``--polls`` ticks during the 30 days (nothing due; the flow's waiting
enrollments are asked their condition), and T0+1h+30d (the second emails, the wait-fors'
``at_most``).

A step, in these rates, is a message step (an email executed), as in the all-due row: the
branches, wait-fors, polls and the step runs recorded skipped are the work flow control adds
on the way to the messages, so the ratio is what it costs. (Counting every step run recorded
would credit the flow with its cheap skipped runs: 4 per enrollment against 2, and
hide that cost.) The flow sends fewer emails (those who end miss `again`); the rate is per
email sent. A round's rate is its emails over the time of all its ticks (polls included); the
ratio flow / straight line is taken per round, and its median and min-max printed.
``--profile LINES --flow-only`` profiles the flow's first tick and its ticks while waiting.

``--caps`` (``--caps-only``: nothing else) adds a frequency cap against none, built the same
way: the same partners, the same two campaigns in both workspaces (the tick benchmark's
hello, and again 30 days later; and a newsletter to the gold and platinum partners, about 2/3,
with a reminder two days after it), enrolled beforehand; one workspace has no policies, the
other engine.yaml's ``policies: {frequency: {email: {max: 2, per: 7d}}}``. Each round ticks
both, interleaved, at T0+1h (hello and news: two emails, within the cap), T0+1h+2d (the
reminders: a third email in 7 days, so the capped workspace skips every one, reason
``frequency_cap``) and T0+1h+30d (again: the earlier sends are out of its window). A step, in
these rates, is a message step executed or skipped (the tick's ``executed + skipped``; every
step of these campaigns is a message): the cap's work is deciding, so a capped skip is a step
done, and both workspaces do the same number of steps. The ratio capped / uncapped is taken
per round, and its median and min-max printed. ``--profile LINES --caps-only`` profiles each
tick of both workspaces (the capped one first).
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
from collections.abc import Callable
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

# Appended to SETTINGS with --caps: reached by every partner who gets hello and news.
POLICIES = """\
policies:
  frequency:
    email: {max: 2, per: 7d}
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

# The same emails as CAMPAIGN (with its first wait), with flow control between them. Of the
# partners (tier and language uniform, revenue uniform in 0..500,000): platinum (1/3) jump over
# the wait-for to `again`; Swedish-speaking others (2/9) end (no `again`); the rest (4/9) fall
# through to the wait-for, true at once for about half, asked at every later tick for the others.
FLOW_CAMPAIGN = """\
name: Tick benchmark, flow control
description: The two emails of the tick benchmark, with a branch and a wait-for.
active: true
audience:
  rulesets:
    everyone: partner.revenue >= 0
trigger:
  at: {at}
steps:
  - wait: 1h
  - id: hello
    email:
      subject: "Hello {{{{ partner.name }}}}"
      body: |
        Hi {{{{ partner.name }}}},

        this is the first message of the tick benchmark.
  - id: route
    branch:
      - {{when: 'partner.tier == "platinum"', goto: again}}
      - {{when: 'partner.language == "sv"', goto: end}}
  - id: paid
    wait: {{for: 'partner.revenue >= 250000', at_most: 30d}}
  - id: again
    email:
      subject: "Still there, {{{{ partner.name }}}}?"
      body: "Hi {{{{ partner.name }}}}, this is the second message."
"""

# With --caps, a second campaign beside CAMPAIGN (with its first wait): the gold and platinum
# partners (2/3) get the news with hello at T0+1h, and a reminder two days later (a third email
# in 7 days: over a cap of 2 per 7d).
NEWS_CAMPAIGN = """\
name: Tick benchmark, news
description: The news for gold and platinum partners, and a reminder two days later.
active: true
audience:
  rulesets:
    members: partner.tier != "silver"
trigger:
  at: {at}
steps:
  - wait: 1h
  - id: news
    email:
      subject: "News for you, {{{{ partner.name }}}}"
      body: |
        Hi {{{{ partner.name }}}},

        this is the news of the tick benchmark.
  - wait: 2d
  - id: reminder
    email:
      subject: "In case you missed it, {{{{ partner.name }}}}"
      body: "Hi {{{{ partner.name }}}}, this is the reminder."
"""

FIRST = ["Aino", "Mikko", "Sanna", "Erik", "Linnea", "Jonas", "Helmi", "Oskar", "Maria", "Ville"]
LAST = ["Korhonen", "Nieminen", "Virtanen", "Andersson", "Lindqvist", "Mäkinen", "Berg", "Laine"]


def make_workspace(root: Path, count: int, first_wait: bool, flow: bool = False, news: bool = False,
                   caps: bool = False) -> list[dict[str, Any]]:
    """engine.yaml, campaigns/bench.yaml and partners.csv; the same bytes for the same count
    (``flow``: the campaign with flow control; ``news``: campaigns/news.yaml too; ``caps``: the
    frequency cap of POLICIES; the same partners). The partners."""
    rng = random.Random(SEED)
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(SETTINGS + (POLICIES if caps else ""))
    at = T0.strftime("%Y-%m-%dT%H:%M")
    (root / "campaigns" / "bench.yaml").write_text(FLOW_CAMPAIGN.format(at=at) if flow else CAMPAIGN.format(
        at=at, first_wait="  - wait: 1h\n" if first_wait else ""))
    if news:
        (root / "campaigns" / "news.yaml").write_text(NEWS_CAMPAIGN.format(at=at))
    lines, partners = ["id,name,email,language,tier,revenue,supplier_emails"], []
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        revenue = rng.choice([rng.randrange(0, 500_000), round(rng.uniform(0, 500_000), 2)])
        language, tier = rng.choice(["en", "fi", "sv"]), rng.choice(["silver", "gold", "platinum"])
        email = f"{first.lower()}.{i}@example.com"
        lines.append(f"p{i:06d},{first} {last},{email},{language},{tier},{revenue},true")
        partners.append({"language": language, "tier": tier, "revenue": revenue})
    (root / "partners.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return partners


def flow_paths(partners: list[dict[str, Any]]) -> dict[str, int]:
    """How many partners take each way through FLOW_CAMPAIGN (worked out from their records)."""
    jump = sum(p["tier"] == "platinum" for p in partners)
    end = sum(p["tier"] != "platinum" and p["language"] == "sv" for p in partners)
    through = [p for p in partners if p["tier"] != "platinum" and p["language"] != "sv"]
    paid = sum(p["revenue"] >= 250_000 for p in through)
    return {"jump": jump, "end": end, "paid": paid, "wait": len(through) - paid}


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


# --- flow control against the straight line --------------------------------------------------------


def expect_ticks(phase: str, outcome: dict[str, Any], wanted: list[dict[str, int]]) -> None:
    """Each tick of the phase did what it is about: ``wanted`` gives each tick's counts."""
    assert len(outcome["reports"]) == len(wanted), (phase, len(outcome["reports"]))
    for at, (report, counts) in enumerate(zip(outcome["reports"], wanted)):
        expect(f"{phase}, tick {at + 1}", {"reports": [report]}, **counts)


def flow_times(polls: int) -> list[datetime]:
    """T0+1h (all due), ``polls`` ticks spread over the 30 days (nothing due), T0+1h+30d."""
    due_at = T0 + timedelta(hours=1)
    return [due_at] + [due_at + WAIT * (i + 1) / (polls + 1) for i in range(polls)] + [due_at + WAIT]


def flow_expected(kind: str, n: int, paths: dict[str, int], polls: int) -> list[dict[str, int]]:
    """Each tick's report for the straight line or the flow, over flow_times(polls)."""
    if kind == "straight":
        last = {"executed": n, "finished": n, "delivered": n}
        return [{"executed": n, "delivered": n}] + [{}] * polls + [last]
    jump, end, paid, wait = paths["jump"], paths["end"], paths["paid"], paths["wait"]
    first = {"executed": 2 * n + jump + 2 * paid,  # hello and route; again; paid and again
             "skipped": jump + 2 * end,  # paid jumped over; paid and again, ended
             "finished": jump + end + paid, "delivered": n + jump + paid}
    return [first] + [{}] * polls + [{"executed": 2 * wait, "finished": wait, "delivered": wait}]


Partners = list[dict[str, Any]]


def prepare_pair(tmp: Path, n: int, options: dict[str, dict[str, Any]],
                 enrolled: Callable[[Partners], int]) -> tuple[dict[str, Path], Partners]:
    """Two workspaces (kind → make_workspace's options), imported and enrolled (not timed, each
    in a fresh process): each round ticks a copy. ``enrolled``: how many the partners enroll at
    T0. The workspaces and the partners."""
    ready = {kind: tmp / f"{kind}-ready" for kind in options}
    for kind, root in ready.items():
        partners = make_workspace(root, n, first_wait=True, **options[kind])
    for kind, root in ready.items():
        outcome = run_worker(root, [T0 - timedelta(hours=1), T0])
        expect_ticks(f"{kind}: import, enroll", outcome, [{}, {"enrolled": enrolled(partners)}])
    return ready, partners


def compare_rounds(tmp: Path, ready: dict[str, Path], times: list[datetime],
                   expected: dict[str, list[dict[str, int]]], runs: int,
                   extra: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """``runs`` rounds, each ticking both workspaces (a copy of each of ``ready``) at the same
    times, which goes first alternating; each workspace's ticks in one fresh process, checked
    against ``expected`` (kind → each tick's counts). kind → the rounds' outcomes."""
    outcomes: dict[str, list[dict[str, Any]]] = {kind: [] for kind in ready}
    for run in range(runs):
        for kind in list(ready) if run % 2 == 0 else list(reversed(ready)):
            root = tmp / f"{kind}-{run}"
            shutil.copytree(ready[kind], root)
            outcomes[kind].append(run_worker(root, times, **extra))
            expect_ticks(kind, outcomes[kind][-1], expected[kind])
            shutil.rmtree(root)
    return outcomes


def prepare_flow(tmp: Path, n: int) -> tuple[dict[str, Path], dict[str, int]]:
    """Both workspaces, imported and enrolled (not timed): each round ticks a copy."""
    ready, partners = prepare_pair(tmp, n, {"straight": {}, "flow": {"flow": True}}, len)
    return ready, flow_paths(partners)


def run_flow(tmp: Path, n: int, runs: int, polls: int, extra: dict[str, Any]) -> dict[str, Any]:
    """``runs`` rounds, each ticking both campaigns at the same times (compare_rounds)."""
    ready, paths = prepare_flow(tmp, n)
    expected = {kind: flow_expected(kind, n, paths, polls) for kind in ready}
    outcomes = compare_rounds(tmp, ready, flow_times(polls), expected, runs, extra)
    return {"outcomes": outcomes, "paths": paths, "polls": polls, "runs": runs}


def emails(outcome: dict[str, Any]) -> int:
    """Message steps over the round's ticks (each email executed is delivered in its tick)."""
    return sum(r["delivered"] for r in outcome["reports"])


def executed(outcome: dict[str, Any]) -> int:
    """Steps executed over the round's ticks: messages, branches evaluated, waits-for ended (the
    tick report's `executed`; the steps a jump passes over are recorded skipped, not counted)."""
    return sum(r["executed"] for r in outcome["reports"])


def step_runs(outcome: dict[str, Any]) -> int:
    """Step runs recorded over the round's ticks: executed or skipped."""
    return sum(r["executed"] + r["skipped"] for r in outcome["reports"])


def spread(values: list[float], unit: str = "", digits: int = 0) -> str:
    """The median (min–max), as the project quotes them."""
    f = f"{{:,.{digits}f}}"
    return (f"{f.format(statistics.median(values))}{unit} "
            f"({f.format(min(values))}–{f.format(max(values))}{unit})")


def table_header(tracemalloc: bool) -> str:
    return (f"{'':<40}{'median':>11}{'min':>11}{'max':>11}{'runs':>5}  {'rate':<22}{'peak RSS':>9}"
            + (f"{'heap':>13}" if tracemalloc else ""))


def round_rates(outcomes: list[dict[str, Any]], count: Callable[[dict[str, Any]], int]) -> list[float]:
    """Each round's ``count`` over the time of all its ticks."""
    return [count(o) / sum(o["seconds"]) for o in outcomes]


def print_rates(rates: dict[str, list[float]], unit: str, ratio: str, note: str = "") -> None:
    """Each kind's rate per round, median (min–max), then the second kind's over the first's
    (taken per round) under the label ``ratio``."""
    base, other = rates
    for kind, values in rates.items():
        print(f"  {kind + ' ' + unit:<26}{spread(values)}")
    ratios = [o / b for o, b in zip(rates[other], rates[base])]
    print(f"  {ratio:<26}{spread(ratios, '×', 2)}" + (f"   ({note})" if note else ""))


def print_flow(flow: dict[str, Any], n: int, tracemalloc: bool) -> None:
    outcomes, paths, polls = flow["outcomes"], flow["paths"], flow["polls"]
    jump, end, paid, wait = paths["jump"], paths["end"], paths["paid"], paths["wait"]
    straight, flowing = outcomes["straight"][0], outcomes["flow"][0]
    print(f"Flow control against the straight line: {flow['runs']} rounds, the two campaigns interleaved "
          f"(which goes first alternates), each ticked in a fresh process at T0+1h, {polls} times during "
          "the 30 days, and at T0+1h+30d.")
    print(f"Flow, after hello: {jump:,} platinum jump to `again`, {end:,} others in Swedish end, "
          f"{paid + wait:,} fall through to the wait-for: true at once for {paid:,}, asked at each later "
          f"tick for {wait:,} (at_most at T0+1h+30d).")
    print("Two rates: steps/s counts the steps executed (emails, branches evaluated, waits-for ended: the "
          "tick's `executed`; the steps a jump passes over are recorded skipped and not counted); emails/s "
          "counts the emails alone, so the branches, waits-for, polls and skipped runs are all overhead there.")
    print(f"Emails: {emails(straight):,} straight, {emails(flowing):,} with flow control. Step runs "
          f"recorded (executed or skipped): {step_runs(straight):,} and {step_runs(flowing):,} "
          f"({step_runs({'reports': flowing['reports'][:1]}):,} of them in the flow's first tick).")
    print()

    def at(kind: str, index: int) -> list[float]:
        return [o["seconds"][index] for o in outcomes[kind]]

    def polling(kind: str) -> list[float]:
        return [s for o in outcomes[kind] for s in o["seconds"][1:-1]]

    def heap(kind: str, part: slice) -> list[float] | None:
        return [h for o in outcomes[kind] for h in o["heap_mb"][part]] or None

    def sent(kind: str, index: int) -> int:
        return outcomes[kind][0]["reports"][index]["delivered"]

    print(table_header(tracemalloc))
    for kind in ("straight", "flow"):
        print(row(f"{kind}: T0+1h, {sent(kind, 0):,} emails", at(kind, 0), sent(kind, 0), "emails/s",
                  heap=heap(kind, slice(0, 1))))
        if polls:
            label, count = (f"flow: {polls} ticks, {wait:,} waits asked", wait) if kind == "flow" else \
                (f"straight: {polls} ticks while waiting", None)
            print(row(label, polling(kind), count, "asked/s", heap=heap(kind, slice(1, -1))))
        print(row(f"{kind}: T0+1h+30d, {sent(kind, -1):,} emails", at(kind, -1), sent(kind, -1), "emails/s",
                  heap=heap(kind, slice(-1, None))))
    for kind in ("straight", "flow"):
        print(all_ticks_row(kind, outcomes[kind], executed))
    print()
    print("Per round (all its ticks), median (min–max):")
    print_rates({kind: round_rates(outcomes[kind], executed) for kind in ("straight", "flow")}, "steps/s",
                "flow / straight", "issue: at least 0.80×")
    print_rates({kind: round_rates(outcomes[kind], emails) for kind in ("straight", "flow")}, "emails/s",
                "flow / straight, emails")


def all_ticks_row(kind: str, outcomes: list[dict[str, Any]], count: Callable[[dict[str, Any]], int]) -> str:
    """The time of all a round's ticks, its ``count`` (steps) per second, and the peak RSS."""
    ticks, steps = len(outcomes[0]["seconds"]), count(outcomes[0])
    return row(f"{kind}: all {ticks} ticks, {steps:,} steps", [sum(o["seconds"]) for o in outcomes], steps,
               "steps/s", [o["peak_mb"] for o in outcomes])


# --- a frequency cap against none --------------------------------------------------------------------


CAPS_KINDS = {"uncapped": {"news": True}, "capped": {"news": True, "caps": True}}


CAPS_TICKS = ("T0+1h", "T0+1h+2d", "T0+1h+30d")


def caps_times() -> list[datetime]:
    """CAPS_TICKS: T0+1h (hello and news), T0+1h+2d (the reminders), T0+1h+30d (again)."""
    due_at = T0 + timedelta(hours=1)
    return [due_at, due_at + timedelta(days=2), due_at + WAIT]


def news_members(partners: list[dict[str, Any]]) -> int:
    """The partners NEWS_CAMPAIGN enrolls (gold and platinum)."""
    return sum(p["tier"] != "silver" for p in partners)


def caps_expected(kind: str, n: int, news: int) -> list[dict[str, int]]:
    """Each tick's report over caps_times(): the capped workspace skips every reminder."""
    reminders = {"skipped": news} if kind == "capped" else {"executed": news, "delivered": news}
    return [{"executed": n + news, "delivered": n + news}, {**reminders, "finished": news},
            {"executed": n, "delivered": n, "finished": n}]


def prepare_caps(tmp: Path, n: int) -> tuple[dict[str, Path], int]:
    """Both workspaces, imported and enrolled (not timed); the news' members."""
    ready, partners = prepare_pair(tmp, n, CAPS_KINDS, lambda people: len(people) + news_members(people))
    return ready, news_members(partners)


def run_caps(tmp: Path, n: int, runs: int, extra: dict[str, Any]) -> dict[str, Any]:
    """``runs`` rounds, each ticking both workspaces at caps_times() (compare_rounds)."""
    ready, news = prepare_caps(tmp, n)
    expected = {kind: caps_expected(kind, n, news) for kind in ready}
    outcomes = compare_rounds(tmp, ready, caps_times(), expected, runs, extra)
    return {"outcomes": outcomes, "news": news, "runs": runs}


def print_caps(caps: dict[str, Any], n: int, tracemalloc: bool) -> None:
    outcomes, news = caps["outcomes"], caps["news"]
    print(f"A frequency cap against none: {caps['runs']} rounds, the two workspaces interleaved (which goes "
          "first alternates), each ticked in a fresh process at T0+1h, T0+1h+2d and T0+1h+30d.")
    print(f"Both: {n:,} partners enrolled in the tick benchmark (hello, again 30 days later), {news:,} "
          "of them in the news (news with hello, a reminder 2 days later); the capped workspace has email: "
          f"{{max: 2, per: 7d}}, which skips the {news:,} reminders.")
    print("steps/s counts the message steps executed or skipped (the tick's executed + skipped: a capped "
          "skip is a step decided); both workspaces do the same steps.")
    print()
    print(table_header(tracemalloc))
    for kind in CAPS_KINDS:
        for index, tick in enumerate(CAPS_TICKS):
            report = outcomes[kind][0]["reports"][index]
            capped = f", {report['skipped']:,} capped" if report["skipped"] else ""
            seconds = [o["seconds"][index] for o in outcomes[kind]]
            print(row(f"{kind}: {tick}, {report['executed']:,} emails{capped}", seconds,
                      step_runs({"reports": [report]}), "steps/s",
                      heap=[o["heap_mb"][index] for o in outcomes[kind] if o["heap_mb"]] or None))
    for kind in CAPS_KINDS:
        print(all_ticks_row(kind, outcomes[kind], step_runs))
    print()
    print("Per round (all its ticks), median (min–max):")
    print_rates({kind: round_rates(outcomes[kind], step_runs) for kind in CAPS_KINDS}, "steps/s",
                "capped / uncapped", "issue: at least 0.80×")


# --- profiles ----------------------------------------------------------------------------------------


def profile_flow(tmp: Path, n: int, polls: int, lines: int) -> None:
    """The flow's first tick, then its ticks while waiting (at least 2), in cProfile."""
    ready, paths = prepare_flow(tmp, n)
    root, times = ready["flow"], flow_times(max(polls, 2))
    expected = flow_expected("flow", n, paths, max(polls, 2))
    top = f"cProfile, top {lines} cumulative"
    print(f"=== flow: T0+1h, {n:,} enrollments through the branch ({top}) ===", flush=True)
    expect_ticks("flow", run_worker(root, times[:1], profile=lines), expected[:1])
    print(f"=== flow: {len(times) - 2} ticks while {paths['wait']:,} enrollments wait, in one "
          f"process, the first one cold ({top}) ===", flush=True)
    expect_ticks("flow", run_worker(root, times[1:-1], profile=lines), expected[1:-1])


def profile_caps(tmp: Path, n: int, lines: int) -> None:
    """Each tick of caps_times(), each in a fresh process, in cProfile: the capped workspace's,
    then the uncapped's."""
    ready, news = prepare_caps(tmp, n)
    top = f"cProfile, top {lines} cumulative"
    for kind in ("capped", "uncapped"):
        expected = caps_expected(kind, n, news)
        for tick, at, counts in zip(CAPS_TICKS, caps_times(), expected):
            print(f"=== {kind}: tick at {tick}, {counts} ({top}) ===", flush=True)
            expect_ticks(kind, run_worker(ready[kind], [at], profile=lines), [counts])


def load() -> str:
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5,
                        help="none-due ticks (in-process, and through the CLI)")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of the import, enroll and all-due phases (and rounds of --flow)")
    parser.add_argument("--as-written", action="store_true",
                        help="also one tick at T0 that imports, enrolls and executes N emails at once")
    parser.add_argument("--flow", action="store_true",
                        help="also flow control (a branch, a wait-for) against the straight line, "
                             "steps/s and their ratio per round")
    parser.add_argument("--flow-only", action="store_true", help="only the --flow comparison")
    parser.add_argument("--polls", type=int, default=3,
                        help="--flow: ticks during the 30-day wait, asking the wait-fors (default 3)")
    parser.add_argument("--caps", action="store_true",
                        help="also a frequency cap (email 2 per 7d, reached) against none, steps/s and their "
                             "ratio per round")
    parser.add_argument("--caps-only", action="store_true", help="only the --caps comparison")
    parser.add_argument("--tracemalloc", action="store_true", help="also the Python heap peak (slower ticks)")
    parser.add_argument("--profile", type=int, nargs="?", const=15, metavar="LINES",
                        help="print the top cumulative cProfile entries of the all-due and none-due ticks "
                             "instead (with --flow-only: the flow's first tick and ticks while waiting; with "
                             "--caps-only: each tick of the capped and the uncapped workspace)")
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
    load_before, flow, caps = load(), None, None
    only = args.flow_only or args.caps_only  # the comparisons alone, not the phases of one campaign

    with tempfile.TemporaryDirectory() as tmp:
        pristine, written = Path(tmp) / "pristine", Path(tmp) / "as-written"
        if not only:
            make_workspace(pristine, n, first_wait=True)
        if args.as_written and not only:
            make_workspace(written, n, first_wait=False)

        if args.profile and only:
            if args.flow_only:
                profile_flow(Path(tmp), n, args.polls, args.profile)
            if args.caps_only:
                profile_caps(Path(tmp), n, args.profile)
            return 0
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
        if not only:
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
        if args.flow or args.flow_only:
            flow = run_flow(Path(tmp), n, args.runs, args.polls, extra)
        if args.caps or args.caps_only:
            caps = run_caps(Path(tmp), n, args.runs, extra)

    def tick_seconds(outcomes: list[dict[str, Any]]) -> list[float]:
        return [o["seconds"][0] for o in outcomes]

    def memory(outcomes: list[dict[str, Any]], key: str = "peak_mb") -> list[float]:
        return [o[key] for o in outcomes]

    def heap(outcomes: list[dict[str, Any]]) -> list[float] | None:
        return [h for o in outcomes for h in o["heap_mb"]] or None

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    print(f"Ticks over {n:,} partners, at {revision()}")
    print(f"{cpus} CPUs ({usable} usable), Python {platform.python_version()}, "
          f"SQLite {sqlite3.sqlite_version}; load average (1/5/15 min) {load_before} at the start, "
          f"{load()} at the end")
    print("Each phase in a fresh process; peak RSS is that process's (interpreter, engine, workspace).")
    if args.tracemalloc:
        print("tracemalloc on: tick times are inflated; 'heap' is the Python heap peak during the tick.")
    print()
    if not only:
        print(table_header(args.tracemalloc))
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
    if flow is not None:
        if not only:
            print()
        print_flow(flow, n, args.tracemalloc)
    if caps is not None:
        if not only or flow is not None:
            print()
        print_caps(caps, n, args.tracemalloc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
