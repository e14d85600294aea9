"""How many open-pixel hits and events-API posts per second does `engine serve` take, and how
long does one wait?

    python bench/serve.py [--requests 4000] [--clients 16] [--runs 3] [--store URL]

It builds a workspace of 200 partners with `web.base_url` set, ticks once so that each partner
gets an HTML email (with its pixel), starts `engine serve --tick-every 0` as its own process on
127.0.0.1, and sends it `--requests` requests from `--clients` concurrent clients (one asyncio
httpx client, a bounded number of requests: never an open-ended loop):

* pixel: `GET /o/TOKEN` of the partners' messages, round robin (each hit stores an `opened`);
* events: `POST /api/events`, one `opened` event each with its own id (each stores an event and
  writes the audit log).

Each request is timed from send to the last byte; a run reports requests/s (requests over the
wall time of the run) and the p50 and p99 latency. The figures are the median and the spread
(min–max) of `--runs` runs against one server, after a warm-up of 200 requests, with the
machine's load average at the start. The client runs on the same machine and takes CPU too:
on 2 cores the figures are the server's rate with a client beside it, not its ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4000, help="requests per run (default 4000)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--runs", type=int, default=3, help="runs per route (default 3)")
    parser.add_argument("--store", help="a store URL (default: the workspace's SQLite file)")
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
        server = subprocess.Popen([sys.executable, "-m", "engine", "-w", str(root), "serve", "--port", str(port),
                                   "--tick-every", "0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
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

            print(f"engine serve on {'PostgreSQL' if args.store else 'SQLite'}, {args.clients} clients, "
                  f"{args.requests} requests a run, {args.runs} runs; load average at start "
                  f"{load_average[0]:.2f} {load_average[1]:.2f} {load_average[2]:.2f}, {os.cpu_count()} cores")
            for name, make in (("pixel  GET /o/TOKEN", pixel), ("events POST /api/events", event)):
                asyncio.run(load(make, 200, args.clients))  # warm-up
                rates, p50s, p99s = [], [], []
                for _ in range(args.runs):
                    run_id[0] += 1
                    wall, latencies = asyncio.run(load(make, args.requests, args.clients))
                    rates.append(args.requests / wall)
                    p50s.append(percentile(latencies, 50) * 1000)
                    p99s.append(percentile(latencies, 99) * 1000)
                print(f"{name:24} {statistics.median(rates):7.0f} req/s ({min(rates):.0f}–{max(rates):.0f})   "
                      f"p50 {statistics.median(p50s):5.1f} ms ({min(p50s):.1f}–{max(p50s):.1f})   "
                      f"p99 {statistics.median(p99s):5.1f} ms ({min(p99s):.1f}–{max(p99s):.1f})")
        finally:
            server.terminate()
            server.wait(timeout=60)


if __name__ == "__main__":
    main()
