"""How many open-pixel hits and events-API posts per second does `engine serve` take, and how
long does one wait?

    python bench/serve.py [--seconds 10] [--clients 16] [--runs 3] [--store URL] [--client wrk|asyncio]

It builds a workspace of 200 partners with `web.base_url` set, ticks once so that each partner
gets an HTML email (with its pixel), starts `engine serve --tick-every 0` as its own process on
127.0.0.1, and loads it from `--clients` concurrent connections:

* pixel: `GET /o/TOKEN` of the partners' messages, round robin (each hit stores an `opened`);
* events: `POST /api/events`, one `opened` event each with its own id (each stores an event and
  writes the audit log).

The load comes from wrk (Debian's `wrk` package; scripts in bench/wrk/) for `--seconds` a run,
or, where wrk is missing or with `--client asyncio`, from one asyncio httpx client sending a
bounded number of requests. Either way nothing loops without an end. A run reports requests/s
and the p50 and p99 latency; the figures are the median and the spread (min–max) of `--runs`
runs against one server, after a warm-up, with the machine's load average at the start.

The client shares the machine: httpx spends about twice the server's CPU on each request, so
with `--client asyncio` on 2 cores the figure is the client's limit, not the server's; wrk
spends a small fraction of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-signing-key"
PARTNERS = 200

SETTINGS = """\
timezone: UTC
partners:
  fields: {{name: string, email: string, ok: bool}}
consent: {{email: partner.ok}}
users:
  feed: {{roles: [events]}}
web:
  base_url: http://127.0.0.1:{port}
"""
CAMPAIGN = """\
name: Bench
audience:
  rulesets:
    all: "true"
trigger:
  audience: true
steps:
  - id: hello
    email: {subject: Hello, template: hello.html.j2}
"""
TEMPLATE = '<html><body><p>Hi {{ partner.name }}</p><a href="{{ unsubscribe_url }}">Unsubscribe</a></body></html>\n'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(directory: Path, port: int) -> Path:
    root = directory / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "templates").mkdir()
    (root / "engine.yaml").write_text(SETTINGS.format(port=port))
    (root / "campaigns" / "bench.yaml").write_text(CAMPAIGN)
    (root / "templates" / "hello.html.j2").write_text(TEMPLATE)
    rows = "\n".join(f"p{n},P{n},p{n}@example.com,true" for n in range(PARTNERS))
    (root / "partners.csv").write_text(f"id,name,email,ok\n{rows}\n")
    return root


def engine(root: Path, *args: str, env: dict) -> str:
    done = subprocess.run([sys.executable, "-m", "engine", "-w", str(root), *args], env=env, capture_output=True,
                          text=True, check=True)
    return done.stdout


def pixels(root: Path) -> list[str]:
    lines = (root / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()
    return [json.loads(line)["body"].split('<img src="', 1)[1].split('"', 1)[0] for line in lines]


async def load(make_request, total: int, clients: int) -> tuple[float, list[float]]:
    """``total`` requests from ``clients`` workers; (wall seconds, per-request seconds)."""
    latencies: list[float] = []
    queue = iter(range(total))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def worker() -> None:
            for n in queue:  # shared: each request number is taken once
                began = time.perf_counter()
                response = await make_request(client, n)
                latencies.append(time.perf_counter() - began)
                if response.status_code >= 300:
                    raise RuntimeError(f"{response.status_code}: {response.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - began, latencies


def wrk(script: str, base: str, seconds: float, clients: int, *args: str) -> dict:
    """One wrk run: its figures, as the script's `done` prints them."""
    done = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--latency", "-s",
                           str(ROOT / "bench" / "wrk" / script), base, "--", *args],
                          capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode:
        raise RuntimeError(f"wrk failed: {done.stderr.strip() or done.stdout.strip()}")
    figures = json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])
    if figures["errors"] or figures["bad_status"]:
        raise RuntimeError(f"wrk saw {figures['errors']} errors and {figures['bad_status']} bad statuses")
    return figures


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10, help="seconds a wrk run lasts (default 10)")
    parser.add_argument("--requests", type=int, default=4000, help="requests an asyncio run sends (default 4000)")
    parser.add_argument("--client", choices=["wrk", "asyncio"], default="wrk" if shutil.which("wrk") else "asyncio",
                        help="the load generator (default: wrk when installed)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--runs", type=int, default=3, help="runs per route (default 3)")
    parser.add_argument("--store", help="an empty PostgreSQL database's URL (default: the workspace's SQLite file)")
    args = parser.parse_args()
    load_average = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        root = workspace(Path(tmp), port)
        env = {**os.environ, "ENGINE_SECRET": SECRET, "PYTHONPATH": str(ROOT)}
        if args.store:
            env["ENGINE_STORE"] = args.store
        engine(root, "tick", "--at", "2026-07-01T09:00", env=env)
        urls = pixels(root)
        key = engine(root, "apikey", "create", "feed", env=env).strip()
        log = (Path(tmp) / "serve.log").open("w")  # a file, not a pipe: a full pipe would stop the server
        server = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(root), "serve", "--port", str(port),
                                   "--tick-every", "0"], env=env, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(f"{base}/openapi.json", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            message_ids = [json.loads(line)["id"] for line in
                           (root / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()]
            headers = {"Authorization": f"Bearer {key}"}
            run_id = [0]

            async def pixel(client: httpx.AsyncClient, n: int) -> httpx.Response:
                return await client.get(urls[n % len(urls)])

            async def event(client: httpx.AsyncClient, n: int) -> httpx.Response:
                mid = message_ids[n % len(message_ids)]
                body = {"id": f"bench-{run_id[0]}-{n}", "type": "opened", "at": "2026-07-01T10:00:00Z",
                        "partner": mid.split(":")[1], "message": mid}
                return await client.post(f"{base}/api/events", json=body, headers=headers)

            how = (f"wrk, {args.seconds:g} s a run" if args.client == "wrk" else
                   f"an asyncio httpx client, {args.requests} requests a run")
            print(f"engine serve on {'PostgreSQL' if args.store else 'SQLite'}: {args.clients} connections from {how}, "
                  f"{args.runs} runs; load average at start {load_average[0]:.2f} {load_average[1]:.2f} "
                  f"{load_average[2]:.2f}, {os.cpu_count()} cores")
            paths = Path(tmp) / "pixels.txt"
            paths.write_text("".join(urlsplit(u).path + "\n" for u in urls))
            messages = Path(tmp) / "messages.txt"
            messages.write_text("".join(f"{m.split(':')[1]} {m}\n" for m in message_ids))
            for name, make, script, extra in (("pixel  GET /o/TOKEN", pixel, "pixel.lua", [str(paths)]),
                                              ("events POST /api/events", event, "events.lua", [str(messages), key])):
                rates, p50s, p99s = [], [], []
                for run in range(args.runs + 1):  # the first is the warm-up
                    run_id[0] += 1
                    if args.client == "wrk":
                        seconds = 2 if run == 0 else args.seconds
                        found = wrk(script, base, seconds, args.clients, *extra, *([str(run_id[0])] if script == "events.lua" else []))
                        rate, p50, p99 = found["requests"] / found["seconds"], found["p50_ms"], found["p99_ms"]
                    else:
                        total = 200 if run == 0 else args.requests
                        wall, latencies = asyncio.run(load(make, total, args.clients))
                        rate, p50, p99 = total / wall, percentile(latencies, 50) * 1000, percentile(latencies, 99) * 1000
                    if run:
                        rates.append(rate), p50s.append(p50), p99s.append(p99)
                print(f"{name:24} {statistics.median(rates):7.0f} req/s ({min(rates):.0f}–{max(rates):.0f})   "
                      f"p50 {statistics.median(p50s):5.1f} ms ({min(p50s):.1f}–{max(p50s):.1f})   "
                      f"p99 {statistics.median(p99s):5.1f} ms ({min(p99s):.1f}–{max(p99s):.1f})")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
