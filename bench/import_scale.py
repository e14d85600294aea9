"""How long does importing N partners take, and how much memory does it need?

    python bench/import_scale.py [--partners 1000000] [--runs 1] [--profile [LINES]]

Generates (deterministically: fixed seed, the same bytes for the same N) a workspace with a
partners.csv of N partners, then runs the partner import alone (``engine.partners.import_partners``
through the Python API), each phase in a fresh process on the same store, and prints its time
and the peak resident set of the whole process (``resource.getrusage``):

    first        an empty store imports N partners
    touched      the same bytes again, the file touched: one hash of the file, nothing parsed
    rewritten    the same records in other bytes (CRLF line ends): parsed and compared, nothing
                 changes (the revision stays)
    1% changed   1% of the records (chosen by the seed) have another revenue and tier

``--runs`` repeats the whole sequence on fresh stores (medians are printed). ``--profile``
also prints the top cumulative cProfile entries of each phase (and inflates its times).

The generator is :func:`write_partners` / :func:`make_workspace` (:func:`partner_lines` for the
lines alone, :func:`changed_ids` for the records a ``changed`` share alters), for other
benchmarks to import: ``sys.path.insert(0, "bench")`` and ``from import_scale import make_workspace``.
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
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEED = 20260701
AT = datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc)  # the logical time of the imports

SETTINGS = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    email: string
    country: string
    language: string
    tier: {enum: [silver, gold, platinum]}
    revenue: number
    supplier_emails: bool
    joined_at: date
    tags: list[string]
consent:
  email: partner.supplier_emails
"""

HEADER = "id,name,email,country,language,tier,revenue,supplier_emails,joined_at,tags"
FIRST = ["Aino", "Mikko", "Sanna", "Erik", "Linnea", "Jonas", "Helmi", "Oskar", "Maria", "Ville"]
LAST = ["Korhonen", "Nieminen", "Virtanen", "Andersson", "Lindqvist", "Mäkinen", "Berg", "Laine"]
COUNTRIES = ["FI", "SE", "NO", "DK", "EE", "DE"]
TIERS = ["silver", "gold", "platinum"]
TAGS = ["vip", "summit", "beta", "reseller", "newsletter"]
EPOCH = date(2015, 1, 1)


def partner_lines(count: int, *, seed: int = SEED, changed: float = 0.0) -> Iterator[str]:
    """The lines (without line ends) of a partners.csv of ``count`` partners, header first; the
    same for the same arguments. Ids are ``p0000000``, ``p0000001``, ... in order. ``changed``:
    the share of records (chosen by the seed, the same ones whatever the share's other uses)
    whose revenue and tier differ from those of ``changed=0``; the rest are identical."""
    rng, picks = random.Random(seed), random.Random(seed + 1)
    yield HEADER
    for i in range(count):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        revenue = rng.choice([rng.randrange(0, 500_000), round(rng.uniform(0, 500_000), 2)])
        tier, country, language = rng.choice(TIERS), rng.choice(COUNTRIES), rng.choice(["en", "fi", "sv"])
        joined = EPOCH + timedelta(days=rng.randrange(0, 4000))
        tags = ";".join(rng.sample(TAGS, rng.randrange(0, 3)))
        opted_in = "true" if rng.random() < 0.8 else "false"
        if picks.random() < changed:
            revenue, tier = revenue + 1, TIERS[(TIERS.index(tier) + 1) % len(TIERS)]
        yield (f"p{i:07d},{first} {last},{first.lower()}.{i}@example.com,{country},{language},{tier},{revenue},"
               f"{opted_in},{joined.isoformat()},{tags}")


def changed_ids(count: int, *, seed: int = SEED, changed: float) -> list[str]:
    """The ids whose records :func:`partner_lines` changes for that share."""
    picks = random.Random(seed + 1)
    return [f"p{i:07d}" for i in range(count) if picks.random() < changed]


def write_partners(path: Path, count: int, *, seed: int = SEED, changed: float = 0.0, newline: str = "\n") -> None:
    """Write :func:`partner_lines` to ``path``, each line ended by ``newline``."""
    with open(path, "w", encoding="utf-8", newline="") as out:
        buffer: list[str] = []
        for line in partner_lines(count, seed=seed, changed=changed):
            buffer.append(line)
            if len(buffer) == 10_000:
                out.write(newline.join(buffer) + newline)
                buffer.clear()
        if buffer:
            out.write(newline.join(buffer) + newline)


def make_workspace(root: Path, count: int, *, seed: int = SEED, campaigns: dict[str, str] | None = None) -> None:
    """A workspace of ``count`` partners: engine.yaml (:data:`SETTINGS`), partners.csv and the
    given campaigns (file name without .yaml → text)."""
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(SETTINGS, encoding="utf-8")
    for name, text in (campaigns or {}).items():
        (root / "campaigns" / f"{name}.yaml").write_text(text, encoding="utf-8")
    write_partners(root / "partners.csv", count, seed=seed)


def rss_mb() -> float:
    """Peak resident set of this process so far, in MB (Linux: KiB, macOS: bytes). On Linux a
    process started by another inherits that one's peak (the kernel keeps the larger across
    ``exec``), so this script's main process never holds much: the sources are written line by
    line."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def cpu_seconds() -> float:
    """User and system CPU time of this process so far (on a busy machine, steadier than the
    elapsed time)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def revision() -> str:
    """The commit measured, and whether the engine's code differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "engine", "dsl"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "an unknown revision"
    return f"commit {head}" + (" (engine or dsl modified)" if dirty else "")


# --- one import, in a fresh process -----------------------------------------------------------------


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    from engine.api import Engine
    from engine.partners import import_partners

    engine = Engine.open(spec["root"])
    store, plan = engine.store, engine.plan
    baseline = rss_mb()
    profiler = None
    if spec.get("profile"):
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    start, cpu = time.perf_counter(), cpu_seconds()
    result = import_partners(store, plan, AT + timedelta(hours=spec["hour"]))
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    if profiler is not None:
        profiler.disable()
        import io
        import pstats
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(spec["profile"])
        print(out.getvalue(), file=sys.stderr)
    outcome = {"seconds": seconds, "cpu": cpu, "baseline_mb": baseline, "peak_mb": rss_mb(),
               "changed": len(result.changed),
               "removed": len(result.removed), "errors": [d.headline() for d in result.diagnostics],
               "revision": result.revision, "partners": store.partner_count()}
    engine.close()
    return outcome


def run_worker(root: Path, hour: int, **options: Any) -> dict[str, Any]:
    spec = {"root": str(root), "hour": hour, **options}
    with tempfile.NamedTemporaryFile("r", suffix=".json") as result:
        spec["out"] = result.name
        done = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], text=True,
                              stderr=None if options.get("profile") else subprocess.PIPE)
        if done.returncode != 0:
            sys.exit(f"worker failed ({done.returncode}) on {spec}:\n{done.stderr}")
        return json.loads(Path(result.name).read_text())


def touch(path: Path) -> None:
    """A new modification time, the same bytes (whatever the file system's time resolution)."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


# --- printing ---------------------------------------------------------------------------------------


def duration(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partners", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1, help="fresh stores, each through every phase")
    parser.add_argument("--profile", type=int, nargs="?", const=25, metavar="LINES",
                        help="print the top cumulative cProfile entries of each phase")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        Path(spec["out"]).write_text(json.dumps(worker(spec)))
        return 0

    n = args.partners
    phases: dict[str, list[dict[str, Any]]] = {"first": [], "touched": [], "rewritten": [], "changed": []}
    extra = {"profile": args.profile} if args.profile else {}
    with tempfile.TemporaryDirectory() as tmp:
        pristine = Path(tmp) / "pristine"
        started = time.perf_counter()
        make_workspace(pristine, n)
        variants = Path(tmp) / "variants"
        variants.mkdir()
        with open(pristine / "partners.csv", "rb") as lf, open(variants / "crlf.csv", "wb") as crlf:
            for chunk in iter(lambda: lf.read(1 << 20), b""):  # in pieces: see rss_mb
                crlf.write(chunk.replace(b"\n", b"\r\n"))
        write_partners(variants / "changed.csv", n, changed=0.01)
        generated = time.perf_counter() - started
        source_mb = (pristine / "partners.csv").stat().st_size / 2**20
        changed_n = len(changed_ids(n, changed=0.01))
        for run in range(args.runs):
            root = Path(tmp) / f"run-{run}"
            shutil.copytree(pristine, root)
            source = root / "partners.csv"
            phases["first"].append(first := run_worker(root, 0, **extra))
            assert first["changed"] == n and not first["errors"] and first["revision"] == 1, first
            touch(source)
            phases["touched"].append(same := run_worker(root, 1, **extra))
            assert same["changed"] == same["removed"] == 0 and same["revision"] == 1, same
            shutil.copyfile(variants / "crlf.csv", source)
            phases["rewritten"].append(same := run_worker(root, 2, **extra))
            assert same["changed"] == same["removed"] == 0 and same["revision"] == 1, same
            shutil.copyfile(variants / "changed.csv", source)
            phases["changed"].append(some := run_worker(root, 3, **extra))
            assert some["changed"] == changed_n and some["removed"] == 0 and some["revision"] == 2, some
            assert some["partners"] == n
            state_mb = sum(p.stat().st_size for p in (root / ".engine").glob("state.db*")) / 2**20
            shutil.rmtree(root)

    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    print(f"Partner import of {n:,} partners ({source_mb:,.0f} MB of CSV), at {revision()}")
    print(f"{cpus} CPUs ({usable} usable), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}")
    print("Each import in a fresh process; peak RSS is that whole process's (interpreter, engine, import);")
    print("CPU is the import's user + system time (the elapsed time also counts waiting for the disk).")
    print(f"Generating the sources took {duration(generated)}; the store is {state_mb:,.0f} MB after the last phase.")
    print()
    print(f"{'':<42}{'median':>10}{'min':>10}{'max':>10}{'CPU':>10}{'runs':>5}  {'rate':<20}{'peak RSS':>9}"
          f"{'after open':>12}")
    labels = {"first": f"first import: {n:,} new",
              "touched": "touched, same bytes (hash only)",
              "rewritten": "same records, other bytes (no change)",
              "changed": f"1% changed: {changed_n:,} records"}
    for phase, outcomes in phases.items():
        seconds = [o["seconds"] for o in outcomes]
        median = statistics.median(seconds)
        rate = f"{n / median:,.0f} records/s"
        cpu = statistics.median(o["cpu"] for o in outcomes)
        print(f"{labels[phase]:<42}{duration(median):>10}{duration(min(seconds)):>10}{duration(max(seconds)):>10}"
              f"{duration(cpu):>10}{len(seconds):>5}  {rate:<20}{max(o['peak_mb'] for o in outcomes):>6,.0f} MB"
              f"{statistics.median(o['baseline_mb'] for o in outcomes):>9,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
