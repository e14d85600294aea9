"""Two ``engine serve`` processes on one PostgreSQL store, both ticking on the wall clock while
partners keep arriving: no step runs twice, no message is written twice, and SIGTERM stops each
cleanly (SPEC §12: several serve processes on one PostgreSQL store are safe)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import httpx
import pytest

from engine.api import Engine

from ._served import free_port, workspace

pytestmark = pytest.mark.postgres_only("several serve processes share a store only on PostgreSQL")

ROUNDS, PER_ROUND = 8, 40


def _partners(count: int) -> str:
    rows = [f"p{n:04d},P{n},p{n}@example.com,+3584{n:04d},true,true" for n in range(count)]
    return "id,name,email,phone,supplier_emails,sms_opt_in\n" + "\n".join(rows) + "\n"


def _wait_up(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("engine serve did not start")


def test_two_serve_processes_never_run_a_step_twice(tmp_path, store_url):
    root = workspace(tmp_path, free_port())
    (root / "partners.csv").write_text(_partners(PER_ROUND), encoding="utf-8")
    ports = [free_port(), free_port()]
    processes = [subprocess.Popen([sys.executable, "-m", "engine", "-w", str(root), "serve", "--port", str(port),
                                   "--tick-every", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.getcwd()})
                 for port in ports]
    try:
        for port, process in zip(ports, processes):
            _wait_up(port, process)
        for n in range(2, ROUNDS + 1):  # new partners every half second: both processes find work
            time.sleep(0.5)
            (root / "partners.csv").write_text(_partners(n * PER_ROUND), encoding="utf-8")
        time.sleep(3)  # a last tick or two of each
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        outputs = [process.communicate(timeout=60) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    assert all("tick failed" not in err for _, err in outputs), outputs
    with Engine.open(root, store=store_url) as engine:
        sent = engine.outbox("email")
        runs = engine.store.db.execute("SELECT count(*) FROM step_runs WHERE status = 'executed'").fetchone()[0]
        enrolled = Counter(e.partner for e in engine.store.enrollments_in("welcome"))
    assert len(sent) == ROUNDS * PER_ROUND  # every partner's welcome, once
    assert Counter(m["id"] for m in sent).most_common(1)[0][1] == 1
    assert set(enrolled.values()) == {1}
    assert runs == ROUNDS * PER_ROUND  # one executed welcome step per partner, none twice
    lines = [json.loads(line) for line in (root / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()]
    assert len(lines) == len({line["id"] for line in lines}) == ROUNDS * PER_ROUND
