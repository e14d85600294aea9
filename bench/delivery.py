"""How fast does the outbox reach real servers on loopback, and what do claims and the
one-outcome-at-a-time rule cost?

    python bench/delivery.py [--messages 2000] [--runs 5] [--compare REV]

For each transport (file, an aiosmtpd SMTP server, a stdlib HTTP receiver for the SMS webhook)
it builds a workspace of N partners whose campaign sends one message each, ticks once with the
server not listening (every message is committed and waits in the outbox), starts the server,
and times the tick that hands all N over (``Engine.tick`` through the Python API). Each run is
a fresh process with a fresh store; the figures are the median and the spread (min–max) of
``--runs`` runs, with the machine's load average when the run began.

``--compare REV`` also measures git revision REV (checked out into a temporary worktree) in the
same run, interleaving the two, and prints the ratio of the medians (this tree / REV).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import revisions  # bench/revisions.py: --compare REV

ROOT = Path(__file__).resolve().parents[1]
TRANSPORTS = ("file", "smtp", "webhook")
T0, T1 = "2026-07-01T09:00:00Z", "2026-07-01T11:00:00Z"

SETTINGS = """\
timezone: UTC
partners:
  source: partners.csv
  id: id
  fields: {{name: string, email: string, phone: string, ok: bool}}
consent: {{email: partner.ok, sms: partner.ok}}
channels:
  email: {email}
  sms: {sms}
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
    {channel}: {body}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace(directory: Path, transport: str, n: int, port: int) -> Path:
    root = directory / "ws"
    (root / "campaigns").mkdir(parents=True)
    channel = "sms" if transport == "webhook" else "email"
    email = (f"{{transport: smtp, host: 127.0.0.1, port: {port}, from: bench@example.com, starttls: false}}"
             if transport == "smtp" else "{transport: file}")
    sms = f'{{transport: webhook, url: "http://127.0.0.1:{port}/sms"}}' if transport == "webhook" else "{transport: file}"
    (root / "engine.yaml").write_text(SETTINGS.format(email=email, sms=sms), encoding="utf-8")
    body = ('{text: "Hi {{ partner.name }}"}' if channel == "sms"
            else '{subject: "Hello {{ partner.name }}", body: "Hello {{ partner.name }}, welcome."}')
    (root / "campaigns" / "bench.yaml").write_text(CAMPAIGN.format(channel=channel, body=body), encoding="utf-8")
    rows = ["id,name,email,phone,ok"] + [f"p{i:05d},Name {i},p{i}@example.com,+358{i:07d},true" for i in range(n)]
    (root / "partners.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


class Receiver:
    """The server of a transport (nothing for the file transport), counting what it takes."""

    def __init__(self, transport: str):
        self.transport, self.port, self.count = transport, free_port(), 0
        self._stop = lambda: None

    def start(self) -> None:
        if self.transport == "smtp":
            from aiosmtpd.controller import Controller

            receiver = self

            class Handler:
                async def handle_DATA(self, server, session, envelope):  # noqa: N802
                    receiver.count += 1
                    return "250 OK"

            controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
            controller.start()
            self._stop = controller.stop
        elif self.transport == "webhook":
            receiver = self

            class Hook(BaseHTTPRequestHandler):
                protocol_version = "HTTP/1.1"

                def do_POST(self) -> None:  # noqa: N802
                    self.rfile.read(int(self.headers.get("Content-Length", "0")))
                    receiver.count += 1
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args) -> None:
                    pass

            httpd = ThreadingHTTPServer(("127.0.0.1", self.port), Hook)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            self._stop = lambda: (httpd.shutdown(), httpd.server_close())

    def stop(self) -> None:
        self._stop()


def measure(transport: str, n: int) -> dict:
    """One run, in this process: seconds of the tick that delivers N waiting messages."""
    from engine.api import Engine

    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as scratch:
        receiver = Receiver(transport)
        root = workspace(Path(scratch), transport, n, receiver.port)
        with Engine.open(root) as engine:
            if transport == "file":  # nothing to be down: commit first, deliver in the timed tick
                from engine import tick as tick_module

                real = tick_module.Tick._deliver
                tick_module.Tick._deliver = lambda self: None
                engine.tick(T0)
                tick_module.Tick._deliver = real
            else:
                engine.tick(T0)  # the server is not listening: all N wait
            receiver.start()
            try:
                began = time.perf_counter()
                report = engine.tick(T1)
                seconds = time.perf_counter() - began
            finally:
                receiver.stop()
        assert report.delivered == n, (report.delivered, n)
        assert transport == "file" or receiver.count == n, (receiver.count, n)
    return {"seconds": seconds}


def run_once(code_root: Path, transport: str, n: int) -> float:
    """A fresh process of this script, on the code at ``code_root``."""
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    done = subprocess.run([sys.executable, __file__, "--one", transport, "--messages", str(n)],
                          cwd=code_root, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({code_root}, {transport}):\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--transports", default=",".join(TRANSPORTS))
    parser.add_argument("--compare", metavar="REV", help="also measure this git revision, interleaved")
    parser.add_argument("--one", metavar="TRANSPORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        sys.path.insert(0, os.getcwd())
        print(json.dumps(measure(args.one, args.messages)))
        return
    with revisions.trees(args.compare) as trees:
        print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{args.messages} messages a run, {args.runs} runs; cpus: {os.cpu_count()}")
        for transport in args.transports.split(","):
            times: dict[str, list[float]] = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, tree in trees.items():  # interleaved: load changes hit both alike
                    times[name].append(run_once(tree, transport, args.messages))
            medians = {}
            for name, found in times.items():
                medians[name] = statistics.median(found)
                print(f"{transport:8} {name:12} median {medians[name]:.3f} s  (min–max {min(found):.3f}–{max(found):.3f})"
                      f"  {args.messages / medians[name]:,.0f} messages/s")
            if len(trees) == 2:
                print(f"{transport:8} ratio (this tree / {args.compare}): {medians['this tree'] / medians[args.compare]:.2f}×")

if __name__ == "__main__":
    main()
