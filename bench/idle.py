"""What does a tick cost when nothing is due? `engine simulate --every 1s` over an hour of the
example workspace: 3,601 ticks, nearly all idle.

    python bench/idle.py [--runs 5] [--compare REV]

Each run is a fresh ``python -m engine`` process on a copy of examples/. The per-tick cost is
(the hour at 1s − the same hour at 1h, 2 ticks) / 3,599: start-up, loading and the ticks that do
work cancel out. It prints the medians and the spread (min–max) of ``--runs`` runs, the machine's
load average at the start, and with ``--compare REV`` the same for git revision REV, in
interleaved runs, and the ratio.
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

SPAN = ("--from", "2026-06-30T23:00:00Z", "--until", "2026-07-01T00:00:00Z")
TICKS = 3601


def simulate(tree: Path, workspace: Path, every: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "ENGINE_SECRET": os.environ.get("ENGINE_SECRET", "bench")}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "-w", str(workspace), "simulate", *SPAN, "--every", every],
                          cwd=tree, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"simulate failed ({tree}):\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision, interleaved")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="engine-bench-idle-"))
    workspace = scratch / "examples"
    shutil.copytree(revisions.ROOT / "examples", workspace, ignore=shutil.ignore_patterns(".engine"))
    print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.runs} runs; "
          f"simulate {' '.join(SPAN)}: {TICKS:,} ticks at --every 1s, 2 at --every 1h")
    try:
        with revisions.trees(args.compare) as trees:
            hour = {name: [] for name in trees}
            base = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, tree in trees.items():  # interleaved: load changes hit both alike
                    hour[name].append(simulate(tree, workspace, "1s"))
                    base[name].append(simulate(tree, workspace, "1h"))
            per_tick = {}
            for name in trees:
                ticks = [(h - b) / (TICKS - 2) * 1000 for h, b in zip(hour[name], base[name])]
                per_tick[name] = statistics.median(ticks)
                print(f"{name:12} the hour at 1s: median {statistics.median(hour[name]):.2f} s "
                      f"(min–max {min(hour[name]):.2f}–{max(hour[name]):.2f}); an idle tick: median "
                      f"{per_tick[name]:.2f} ms ({min(ticks):.2f}–{max(ticks):.2f})")
            if len(trees) == 2:
                print(f"an idle tick, this tree / {args.compare}: {per_tick['this tree'] / per_tick[args.compare]:.2f}×")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
