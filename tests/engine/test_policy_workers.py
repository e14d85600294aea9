"""Frequency caps with several workers: `engine tick` processes racing on one store (on
PostgreSQL, batches of due steps run side by side) never let a partner get more messages than the
cap allows. Twenty campaigns each send every partner an email at the same instant, so one
partner's steps are spread over many batches, which the workers claim at once; the partner's
cap (12 a week) must still hold, and be used to the full. Each batch writes its step runs 0.3 s
late, so the workers' batches overlap (without the partner locks of engine.store.postgres, the
PostgreSQL run of this test fails)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from engine.api import Engine
from engine.clock import FixedClock, from_iso

CAMPAIGNS = 20
PARTNERS = 100
WORKERS = 2
AT = "2026-07-01T09:00:00Z"  # when every email is due
CAP = 12  # filled by about the third batch of four: the workers overlap on batches before that
SLOW_TICK = Path(__file__).with_name("_slow_tick.py")  # batches that take 0.3 s: the workers' overlap

ENGINE_YAML = """\
timezone: UTC
partners:
  source: partners.csv
  fields: {name: string, email: string}
consent: {email: "true"}
policies:
  frequency: {email: {max: 12, per: 7d}}
"""


def _workspace(root: Path) -> Path:
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(ENGINE_YAML, encoding="utf-8")
    rows = "\n".join(f"p{i:03d},P{i},p{i:03d}@example.com" for i in range(PARTNERS))
    (root / "partners.csv").write_text(f"id,name,email\n{rows}\n", encoding="utf-8")
    for n in range(CAMPAIGNS):
        (root / "campaigns" / f"c{n:02d}.yaml").write_text(
            f"trigger: {{audience: true}}\naudience: {{rulesets: {{all: \"true\"}}}}\npriority: {n % 4}\n"
            f"steps:\n  - wait: 1h\n  - id: hello\n    email: {{subject: \"From c{n:02d}\", body: Hi}}\n",
            encoding="utf-8")
    return root


@pytest.mark.postgres_only(reason="on SQLite one writer at a time runs batches one after another: no race to test")
def test_workers_racing_on_one_store_never_exceed_a_partner_s_cap(tmp_path, store_url):
    root = _workspace(tmp_path / "ws")
    env = {**os.environ}
    env.setdefault("ENGINE_STORE", f"sqlite:///{tmp_path / 'state.db'}")
    with Engine.open(root, store=env["ENGINE_STORE"], clock=FixedClock(AT)) as engine:
        engine.tick("2026-07-01T08:00:00Z")  # everyone enrolled, every email due at 09:00
    workers = [subprocess.Popen([sys.executable, str(SLOW_TICK), "0.3", "-w", str(root), "tick", "--at", AT, "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
               for _ in range(WORKERS)]
    outputs = [worker.communicate(timeout=300) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), [err for _, err in outputs]

    with Engine.open(root, store=env["ENGINE_STORE"], clock=FixedClock(AT)) as engine:
        messages = engine.outbox("email")
        runs = Counter(reason for (reason,) in engine.store.db.execute(
            "SELECT reason FROM step_runs WHERE step = 'hello'"))
    per_partner = Counter(m["partner"] for m in messages)
    assert set(per_partner.values()) == {CAP}, "every partner got exactly the cap's worth"
    assert len(per_partner) == PARTNERS
    assert runs == {None: CAP * PARTNERS, "frequency_cap": (CAMPAIGNS - CAP) * PARTNERS}
    assert all(from_iso(m["at"]) == from_iso(AT) for m in messages)
