"""The background tick of engine serve: stopping it waits for the tick in progress."""

from __future__ import annotations

from datetime import timedelta

from engine.api import Engine
from engine.clock import FixedClock
from engine.web.ticker import Ticker

from ._served import free_port, workspace

PARTNERS = 600


def test_stop_lets_the_running_tick_finish(tmp_path, store_url):
    root = workspace(tmp_path, free_port())
    rows = "".join(f"q{n},Q{n},q{n}@example.com,+3585{n:04d},true,true\n" for n in range(PARTNERS))
    (root / "partners.csv").write_text("id,name,email,phone,supplier_emails,sms_opt_in\n" + rows, encoding="utf-8")
    ticker = Ticker(root, store_url, FixedClock("2026-07-01T09:00Z"), timedelta(hours=1))
    ticker.start()
    assert ticker.ticking.wait(30)  # the first tick is under way: importing, enrolling, sending
    ticker.stop()  # asks for the end, then waits
    assert ticker.ticks == 1
    with Engine.open(root, store=store_url) as engine:
        assert len(engine.outbox("email")) == PARTNERS  # the whole tick, not part of it
        assert engine.status(campaign="welcome")["enrollments"]["active"] == PARTNERS
