"""How long does `engine check` take on a workspace of many partners, and how much memory (issue 17)?

    python bench/check.py [--partners 1000000] [--runs 5] [--format csv|jsonl] [--errors N]

Builds the workspace of bench/tick.py's generator (engine.yaml, campaigns/bench.yaml and N
partners: ids p000000…, name, email, language, tier, revenue, supplier_emails) in a temporary
directory, then runs whole ``engine -w DIR check`` processes, one after the other, after one
to warm up (Python may cache bytecode, as an installed engine does). ``--format jsonl`` writes
the same partners as partners.jsonl (one JSON object a line, the numbers and booleans as JSON).
``--errors N`` (CSV) makes the last N rows' revenue "n/a": `engine check` then reports N errors,
each with its source line, and exits 1, which is what these runs expect.

Prints the median and min–max wall time, the CPU time (what the wall time would be on an idle
machine: `engine check` runs on one core), the peak resident set of each run (``ru_maxrss`` of
that child alone, from ``os.wait4``), the load average before and after, and pass or fail
against the targets: 1.5 s (median wall time) and 100 MB (largest peak).

The workspace is generated in a child process too: on Linux a child's ``ru_maxrss`` starts at
its parent's resident set when it is started (it is carried across fork and exec), so this
process stays small and holds no partners.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

TARGET_SECONDS = 1.5
TARGET_MB = 100.0


def make(root: Path, count: int, form: str, errors: int = 0) -> None:
    """bench/tick.py's workspace of ``count`` partners; as JSONL with ``form == "jsonl"``; the
    last ``errors`` rows with a revenue that is not a number."""
    from tick import make_workspace

    make_workspace(root, count, first_wait=True)
    if errors:
        source = root / "partners.csv"
        lines = source.read_text(encoding="utf-8").splitlines()
        column = lines[0].split(",").index("revenue")
        for i in range(len(lines) - errors, len(lines)):
            values = lines[i].split(",")
            values[column] = "n/a"
            lines[i] = ",".join(values)
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if form == "jsonl":
        types = {"revenue": float, "supplier_emails": lambda v: v == "true"}
        source = root / "partners.csv"
        with source.open(encoding="utf-8") as lines, (root / "partners.jsonl").open("w", encoding="utf-8") as out:
            names = next(lines).rstrip("\n").split(",")
            for line in lines:
                values = line.rstrip("\n").split(",")
                record = {name: types.get(name, str)(value) for name, value in zip(names, values)}
                if record["revenue"].is_integer():
                    record["revenue"] = int(record["revenue"])
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        source.unlink()
        settings = root / "engine.yaml"
        settings.write_text(settings.read_text().replace("source: partners.csv", "source: partners.jsonl"))


def build(root: Path, count: int, form: str, errors: int) -> None:
    command = [sys.executable, __file__, "--make", str(root), "--partners", str(count), "--format", form,
               "--errors", str(errors)]
    subprocess.run(command, check=True)


def run_check(root: Path, env: dict[str, str]) -> tuple[float, float, float, int, str]:
    """One whole `engine check` process: wall seconds, CPU seconds (user + system), its own
    peak RSS in MB, its exit code, and its last line of output."""
    command = [sys.executable, "-m", "engine", "-w", str(root), "check"]
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    output = child.stdout.read() if child.stdout is not None else b""
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss / 2**20 if sys.platform == "darwin" else usage.ru_maxrss / 2**10
    lines = output.decode(errors="replace").strip().splitlines()
    return seconds, usage.ru_utime + usage.ru_stime, peak, child.returncode, lines[-1] if lines else ""


def load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--partners", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    parser.add_argument("--errors", type=int, default=0, help="rows with a bad revenue at the end (CSV)")
    parser.add_argument("--make", metavar="DIR", help=argparse.SUPPRESS)  # the generating child
    args = parser.parse_args()
    if args.errors and args.format != "csv":
        parser.error("--errors is for --format csv")
    if args.make:
        make(Path(args.make), args.partners, args.format, args.errors)
        return

    from tick import revision

    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        root = Path(tmp) / "workspace"
        start = time.perf_counter()
        build(root, args.partners, args.format, args.errors)
        size = sum(p.stat().st_size for p in root.glob("partners.*"))
        print(f"engine check, {args.partners:,} partners ({args.format}, {size / 2**20:.0f} MB), {revision()}, "
              f"Python {platform.python_version()}, {os.cpu_count()} CPUs; generated in {time.perf_counter() - start:.1f} s")
        print(f"load average before: {load()}")
        run_check(root, env)  # warm-up: bytecode, page cache
        seconds, cpus, peaks = [], [], []
        for i in range(args.runs):
            wall, cpu, peak, code, last = run_check(root, env)
            seconds.append(wall)
            cpus.append(cpu)
            peaks.append(peak)
            print(f"  run {i + 1}: {wall:.3f} s (CPU {cpu:.3f} s), peak RSS {peak:.1f} MB, exit {code}: {last}")
            if code != (1 if args.errors else 0):
                sys.exit(f"engine check ended with exit {code}: {last}")
        print(f"load average after: {load()}")
    median, peak = statistics.median(seconds), max(peaks)
    time_ok, memory_ok = median <= TARGET_SECONDS, peak < TARGET_MB
    print(f"wall time: median {median:.3f} s (min–max {min(seconds):.3f}–{max(seconds):.3f} s, {len(seconds)} runs): "
          f"{'pass' if time_ok else 'FAIL'} (≤ {TARGET_SECONDS} s)")
    print(f"CPU time (user + system): median {statistics.median(cpus):.3f} s "
          f"(min–max {min(cpus):.3f}–{max(cpus):.3f} s): the wall time on an idle machine")
    print(f"peak RSS: {peak:.1f} MB (median {statistics.median(peaks):.1f} MB): "
          f"{'pass' if memory_ok else 'FAIL'} (< {TARGET_MB:.0f} MB)")
    sys.exit(0 if time_ok and memory_ok else 1)


if __name__ == "__main__":
    main()
