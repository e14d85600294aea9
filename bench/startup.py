"""How long does a whole `engine tick` process take when there is nothing to do, next to a bare
`python -c pass` (issue 17: at most 8× as long)?

    python bench/startup.py [--runs 15] [--compare REV]

Copies examples/ to a temporary directory and ticks it once at a fixed time (the store is
created, 21 partners are enrolled and sent their first step), then runs each command once more
to warm up. What is measured is the realistic case of a cron job or a timer: a second
`engine tick` at that time on the already-initialised store, with no file changed and nothing
due, so what remains is start-up (imports), loading the workspace and looking at the store.
Beside it `engine check` of the same workspace, `engine --help` (the command line alone) and
`python -c pass`, the yardstick. Every engine process is the `engine` console script of this
Python's environment (``python -m engine`` where there is none) with the tree first on
PYTHONPATH, and with bytecode cached as an installed engine has it: PYTHONDONTWRITEBYTECODE is
dropped and the cache goes to a temporary PYTHONPYCACHEPREFIX, so nothing in the repository is
written.

The commands take turns round by round (and with ``--compare REV`` the two trees too, REV from
a git worktree), so a change in the machine's load falls on all of them. It prints, for each,
the median and min–max wall time, the ratio of its median to that of `python -c pass`, and
the same ratio of CPU time (user + system, from ``os.wait4``: what a busy machine changes
least); the load average before and after; and pass or fail against 8× (wall time, medians)
for `engine tick`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import revisions  # bench/revisions.py: --compare REV

AT = "2026-07-01T09:00:00Z"  # the first tick's work is done then; a second tick at that time has none
TARGET = 8.0  # `engine tick` ≤ 8× `python -c pass` (wall time, medians)
BASE = "python -c pass"


def load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def engine_command() -> list[str]:
    """The `engine` console script next to this Python (``from engine.cli import main``: the tree
    on PYTHONPATH comes before the installed one), else ``python -m engine``."""
    script = Path(sys.executable).parent / "engine"
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "engine"]


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """One whole process: wall seconds and CPU seconds (its own user + system time)."""
    began = time.perf_counter()
    child = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    errors = child.stderr.read() if child.stderr is not None else b""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit {code}):\n{errors.decode(errors='replace')[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15: about half a minute)")
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision, interleaved")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-startup-"))
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env.setdefault("ENGINE_SECRET", "bench")  # the examples sign the links in their emails
    try:
        with revisions.trees(args.compare) as trees:
            commands = {BASE: ([sys.executable, "-c", "pass"], scratch, {**env, "PYTHONPYCACHEPREFIX": str(scratch / "pyc")})}
            for index, (name, tree) in enumerate(trees.items()):
                workspace = scratch / f"examples-{index}"  # a store for each tree: their schemas may differ
                shutil.copytree(revisions.ROOT / "examples", workspace, ignore=shutil.ignore_patterns(".engine"))
                tree_env = {**env, "PYTHONPATH": str(tree), "PYTHONPYCACHEPREFIX": str(scratch / f"pyc-{index}")}
                label = "" if len(trees) == 1 else f" ({name})"
                engine = engine_command()
                commands[f"engine tick{label}"] = ([*engine, "-w", str(workspace), "tick", "--at", AT], tree, tree_env)
                commands[f"engine check{label}"] = ([*engine, "-w", str(workspace), "check"], tree, tree_env)
                commands[f"engine --help{label}"] = ([*engine, "--help"], tree, tree_env)
            for _ in range(2):  # the first tick, then each command once more: bytecode, page cache
                for command, cwd, command_env in commands.values():
                    timed(command, cwd, command_env)
            print(f"load average before: {load()}; {args.runs} rounds; Python {sys.version.split()[0]}, "
                  f"{os.cpu_count()} CPUs; engine tick --at {AT} a second time: nothing due")
            wall: dict[str, list[float]] = {name: [] for name in commands}
            cpu: dict[str, list[float]] = {name: [] for name in commands}
            for _ in range(args.runs):
                for name, (command, cwd, command_env) in commands.items():  # interleaved
                    seconds, used = timed(command, cwd, command_env)
                    wall[name].append(seconds)
                    cpu[name].append(used)
            print(f"load average after:  {load()}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base, base_cpu = statistics.median(wall[BASE]), statistics.median(cpu[BASE])
    for name, values in wall.items():
        median = statistics.median(values)
        print(f"{name:30} median {median * 1000:6.1f} ms (min–max {min(values) * 1000:.1f}–{max(values) * 1000:.1f})"
              f"  {median / base:5.1f}×; CPU {statistics.median(cpu[name]) * 1000:6.1f} ms, "
              f"{statistics.median(cpu[name]) / base_cpu:5.1f}×")
    ratio = statistics.median(wall["engine tick" if "engine tick" in wall else "engine tick (this tree)"]) / base
    print(f"engine tick / {BASE} (wall, medians): {ratio:.1f}×: {'pass' if ratio <= TARGET else 'FAIL'} (≤ {TARGET:.0f}×)")
    sys.exit(0 if ratio <= TARGET else 1)


if __name__ == "__main__":
    main()
