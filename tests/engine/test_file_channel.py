"""File transport: exactly-once lines under kills (SIGKILL) and concurrent writers, real processes."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from engine.channels.file import append_once, append_rows_once, read_lines, read_rows

pytestmark = pytest.mark.no_store  # the file transport alone: no store
WORKER = Path(__file__).with_name("_append_worker.py")
COLUMNS = ["id", "name", "address"]


def ids_of(path: Path) -> list[str]:
    return [line["id"] for line in read_lines(path)]


def csv_ids(path: Path) -> list[str]:
    return [row["id"] for row in read_rows(path)]


# --- unit ------------------------------------------------------------------------------------


def test_appends_lines_and_creates_directories(tmp_path):
    out = tmp_path / ".engine" / "outbox" / "email.jsonl"
    assert append_once(out, [{"id": "a", "to": "x@example.com"}, {"id": "b", "n": 1}]) == ["a", "b"]
    assert append_once(out, [{"id": "c"}]) == ["c"]
    assert out.read_bytes() == b'{"id":"a","to":"x@example.com"}\n{"id":"b","n":1}\n{"id":"c"}\n'
    assert ids_of(out) == ["a", "b", "c"]


def test_known_ids_are_skipped_whether_committed_or_in_the_tail(tmp_path):
    out = tmp_path / "o.jsonl"
    append_once(out, [{"id": "a"}, {"id": "b"}])
    # redelivery without marking (a kill after the call returned): nothing is written twice
    assert append_once(out, [{"id": "b"}, {"id": "a"}, {"id": "c"}]) == ["c"]
    # lines of an interrupted call (appended, not yet indexed) are found in the tail
    with open(out, "ab") as f:
        f.write(b'{"id":"d"}\n{"id":"e"}\n')
    assert append_once(out, [{"id": "e"}, {"id": "f"}, {"id": "d"}]) == ["f"]
    assert ids_of(out) == ["a", "b", "c", "d", "e", "f"]


def test_half_written_last_line_is_repaired(tmp_path):
    out = tmp_path / "o.jsonl"
    append_once(out, [{"id": "a"}])
    with open(out, "ab") as f:
        f.write(b'{"id":"b","body":"Hei P\xc3')  # torn mid-line, even mid-character
    assert read_lines(out) == [{"id": "a"}]  # readers skip the partial line
    assert append_once(out, [{"id": "b", "body": "Hei Päivi"}]) == ["b"]
    assert read_lines(out) == [{"id": "a"}, {"id": "b", "body": "Hei Päivi"}]


def test_torn_line_in_a_fresh_file_is_repaired(tmp_path):
    out = tmp_path / "o.jsonl"
    out.write_bytes(b'{"id":"a"}\n{"id":')  # killed during the very first call
    assert append_once(out, [{"id": "a"}, {"id": "b"}]) == ["b"]
    assert ids_of(out) == ["a", "b"]


def test_duplicates_within_a_batch_are_written_once(tmp_path):
    out = tmp_path / "o.jsonl"
    assert append_once(out, [{"id": "a", "v": 1}, {"id": "b"}, {"id": "a", "v": 2}]) == ["a", "b"]
    assert read_lines(out) == [{"id": "a", "v": 1}, {"id": "b"}]


def test_unicode_and_json_format(tmp_path):
    out = tmp_path / "o.jsonl"
    rec = {"id": "ü1", "subject": "Tervetuloa ✓", "body": "rivi 1\nrivi 2\u2028", "at": object()}
    append_once(out, [rec])
    line = out.read_bytes().decode("utf-8")
    assert line.count("\n") == 1 and line.endswith("\n") and "Tervetuloa ✓" in line  # not \u-escaped
    assert read_lines(out)[0]["body"] == "rivi 1\nrivi 2\u2028"
    assert append_once(out, [{"id": "ü1"}]) == []


def test_bad_records_raise_before_writing(tmp_path):
    out = tmp_path / "o.jsonl"
    with pytest.raises(ValueError, match="no 'id'"):
        append_once(out, [{"id": "a"}, {"to": "x"}])
    with pytest.raises(ValueError, match="no 'id'"):
        append_once(out, [{"id": None}])
    assert not out.exists() or out.read_bytes() == b""


def test_a_corrupt_complete_line_raises_and_changes_nothing(tmp_path):
    out = tmp_path / "o.jsonl"
    append_once(out, [{"id": "a"}])
    with open(out, "ab") as f:
        f.write(b"not json\n")
    before = out.read_bytes()
    with pytest.raises(ValueError, match="not a JSON object"):
        append_once(out, [{"id": "b"}])
    assert out.read_bytes() == before


def test_index_is_rebuilt_when_deleted_or_file_replaced(tmp_path):
    out = tmp_path / "o.jsonl"
    append_once(out, [{"id": "a"}, {"id": "b"}])
    for name in ("o.jsonl.idx", "o.jsonl.idx-wal", "o.jsonl.idx-shm"):
        (tmp_path / name).unlink(missing_ok=True)
    assert append_once(out, [{"id": "b"}, {"id": "c"}]) == ["c"]
    out.rename(tmp_path / "o.jsonl.1")  # rotated away: a new file starts empty
    assert append_once(out, [{"id": "a"}, {"id": "d"}]) == ["a", "d"]
    assert ids_of(out) == ["a", "d"]


def test_csv_header_once_quoting_unicode_and_dedup(tmp_path):
    out = tmp_path / "letters" / "onboarding" / "letter.csv"
    rows = [{"id": 1, "name": "Päivi", "address": "Katu 1\nHelsinki"}, {"id": 2, "name": None}]
    assert append_rows_once(out, COLUMNS, rows) == ["1", "2"]
    assert append_rows_once(out, COLUMNS, [{"id": 2}, {"id": 3, "name": 'say "hi", ✓'}, {"id": 3}]) == ["3"]
    assert out.read_bytes().decode().count("id,name,address") == 1
    assert read_rows(out) == [
        {"id": "1", "name": "Päivi", "address": "Katu 1\nHelsinki"},
        {"id": "2", "name": "", "address": ""},
        {"id": "3", "name": 'say "hi", ✓', "address": ""},
    ]


def test_csv_torn_record_is_repaired(tmp_path):
    out = tmp_path / "l.csv"
    append_rows_once(out, COLUMNS, [{"id": "a", "name": "x"}])
    with open(out, "ab") as f:
        f.write(b'b,"Katu 1\nHel')  # ends inside a quoted field, past a newline
    assert csv_ids(out) == ["a"]
    assert append_rows_once(out, COLUMNS, [{"id": "b", "address": "Katu 1\nHelsinki"}]) == ["b"]
    with open(out, "ab") as f:
        f.write(b'c,"Katu 2\n')  # ends with a newline, still inside quotes
    assert append_rows_once(out, COLUMNS, [{"id": "c"}, {"id": "b"}]) == ["c"]
    assert csv_ids(out) == ["a", "b", "c"]


def test_csv_header_must_match_and_key_must_be_a_column(tmp_path):
    out = tmp_path / "l.csv"
    append_rows_once(out, COLUMNS, [{"id": "a"}])
    with pytest.raises(ValueError, match="header"):
        append_rows_once(out, ["id", "other"], [{"id": "b"}])
    with pytest.raises(ValueError, match="key column"):
        append_rows_once(out, ["name"], [{"id": "b"}])
    assert csv_ids(out) == ["a"]


def test_threads_in_one_process(tmp_path):
    out = tmp_path / "o.jsonl"

    def deliver(first: int) -> None:
        for i in range(first, first + 200, 4):
            append_once(out, [{"id": f"m{j:05d}"} for j in range(i, i + 4)])

    threads = [threading.Thread(target=deliver, args=(k * 100,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids_of(out)) == expected(400)


# --- real processes --------------------------------------------------------------------------


def start_worker(mode: str, out: Path, store: Path, start: int, stop: int, seed: int, env=None):
    args = [sys.executable, str(WORKER), mode, str(out), str(store), str(start), str(stop), str(seed)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, env={**os.environ, **(env or {})})


def run_with_kills(mode: str, tmp: Path, n: int, kills: int, seed: int) -> Path:
    """Start the worker, SIGKILL it at a random moment once it is working, restart; after `kills`
    kills let it finish. n is large enough that it cannot finish within `kills` short runs."""
    rng = random.Random(seed)
    out, store = tmp / f"out.{mode}", tmp / "store.json"
    progress = []
    for attempt in range(kills + 1):
        proc = start_worker(mode, out, store, 0, n, seed * 1000 + attempt)
        assert proc.stdout.readline() == b"ready\n"
        if attempt < kills:
            time.sleep(rng.uniform(0, 0.02))
            proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
        progress.append(json.loads(store.read_text())["delivered"] if store.exists() else 0)
        if attempt < kills:
            assert proc.returncode == -signal.SIGKILL, (attempt, proc.returncode, rest, progress)
    assert (proc.returncode, rest) == (0, b"done\n"), progress
    assert progress[kills // 2] > 0, progress  # the kills landed while it was delivering
    return out


def expected(n: int) -> list[str]:
    return [f"m{i:05d}" for i in range(n)]


def test_sigkill_at_random_moments_gives_every_id_exactly_once(tmp_path):
    out = run_with_kills("json", tmp_path, n=12_000, kills=30, seed=1)
    lines = out.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line)["id"] for line in lines[:-1]] == expected(12_000)
    assert append_once(out, [{"id": "m00000"}]) == []


def test_sigkill_csv_variant(tmp_path):
    out = run_with_kills("csv", tmp_path, n=4000, kills=10, seed=2)
    assert csv_ids(out) == expected(4000)


def test_killed_after_the_call_returned_but_before_marking(tmp_path):
    """The record is in the file but the store does not know: redelivery must not repeat it."""
    out, store = tmp_path / "o.jsonl", tmp_path / "store.json"
    for call in (3, 1, 2):
        proc = start_worker("json", out, store, 0, 60, seed=call, env={"KILL_AFTER_CALL": str(call)})
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
    proc = start_worker("json", out, store, 0, 60, seed=9)
    assert proc.communicate(timeout=30)[0] == b"ready\ndone\n"
    assert ids_of(out) == expected(60)


@pytest.mark.parametrize("mode", ["json", "csv"])
def test_two_processes_appending_overlapping_ids(tmp_path, mode):
    out = tmp_path / f"o.{mode}"
    a = start_worker(mode, out, tmp_path / "a.json", 0, 600, seed=1)
    b = start_worker(mode, out, tmp_path / "b.json", 300, 900, seed=2)
    assert a.communicate(timeout=60)[0] == b"ready\ndone\n"
    assert b.communicate(timeout=60)[0] == b"ready\ndone\n"
    got = ids_of(out) if mode == "json" else csv_ids(out)
    assert sorted(got) == expected(900)  # each id exactly once
    assert [i for i in got if i < "m00300"] == expected(300)  # each writer's own ids in its order
