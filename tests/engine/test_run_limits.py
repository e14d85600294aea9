"""A run of ticks is refused, before its first tick, when it would be more than MAX_TICKS ticks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from campaigns.enrollment import Refused
from engine.cli import main
from engine.horizon import MAX_TICKS, check_run
from engine.testing import dump_store

T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


@pytest.mark.no_store
@pytest.mark.parametrize(("span", "every", "ticks"), [
    (timedelta(hours=MAX_TICKS - 1), timedelta(hours=1), MAX_TICKS),  # 0, 1, ..., end: the limit itself
    (timedelta(hours=MAX_TICKS - 1, minutes=1), timedelta(hours=1), MAX_TICKS + 1),  # a last, shorter interval
    (timedelta(0), timedelta(seconds=1), 1),
])
def test_the_count_is_that_of_the_ticks_run_makes(span, every, ticks):
    if ticks <= MAX_TICKS:
        check_run(T0, T0 + span, every)
    else:
        with pytest.raises(Refused, match=f"would be {ticks:,}"):
            check_run(T0, T0 + span, every)


def test_run_and_simulate_refuse_too_many_ticks_and_change_nothing(make_engine, capsys):
    engine = make_engine("examples")
    engine.tick()
    before = dump_store(engine.root)
    argv = ["-w", str(engine.root), "run", "--from", "2026-07-01", "--until", "2026-07-02", "--every", "1s"]
    assert main(argv) == 3
    assert "86,401" in capsys.readouterr().err
    assert dump_store(engine.root) == before
    assert main(["-w", str(engine.root), "simulate", "--from", "2026-07-01", "--until", "2026-07-02", "--every", "5s"]) == 3
    assert "17,281" in capsys.readouterr().err
