"""The partner import: streamed, all or nothing, a hash per record, a revision per import."""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.partners as partners_module
from dsl.records import read_partners
from engine.api import Engine
from engine.partners import PartnerImport, import_partners
from engine.store import Conflict
from engine.store.sqlite import SQLiteStore
from engine.testing import rewrite

SETTINGS = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  id: id
  fields:
    name: string
    revenue: number
    tier: {enum: [silver, gold, platinum]}
    joined_at: date
"""
HEADER = "id,name,revenue,tier,joined_at"
T0 = datetime(2026, 7, 1, 6, 0, tzinfo=timezone.utc)


def csv_text(records: dict[str, tuple]) -> str:
    return HEADER + "\n" + "".join(f"{pid},{','.join(map(str, values))}\n" for pid, values in records.items())


def big(count: int, **changes: tuple) -> dict[str, tuple]:
    records = {f"p{i:05d}": (f"Name {i}", i * 10, ["silver", "gold", "platinum"][i % 3], "2024-01-01")
               for i in range(count)}
    records.update(changes)
    return records


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "source"
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text(SETTINGS, encoding="utf-8")
    (root / "partners.csv").write_text(csv_text({"p1": ("Acme", 100, "gold", "2024-01-01")}), encoding="utf-8")
    return root


@pytest.fixture
def engine(workspace: Path, make_engine) -> Engine:
    return make_engine(workspace)


class Importer:
    """Writes the engine's partner source and imports it, an hour later each time."""

    def __init__(self, engine: Engine):
        self.engine, self.at = engine, T0

    @property
    def source(self) -> Path:
        return self.engine.plan.root / "partners.csv"

    def __call__(self, text: str | None = None) -> PartnerImport:
        if text is not None:
            rewrite(self.source, text)
        self.at += timedelta(hours=1)
        return import_partners(self.engine.store, self.engine.plan, self.at)


@pytest.fixture
def load(engine: Engine) -> Importer:
    return Importer(engine)


def stored(engine: Engine) -> dict[str, tuple[dict, bool, int]]:
    """id → (record as JSON data, present, revision) of every stored partner."""
    rows = engine.store.db.execute("SELECT id, data, removed_at, revision FROM partners").fetchall()
    return {pid: (json.loads(data), removed is None, revision) for pid, data, removed, revision in rows}


def present(engine: Engine) -> dict[str, dict]:
    return {pid: data for pid, (data, here, _) in stored(engine).items() if here}


def expected_records(text: str) -> dict[str, dict]:
    from zoneinfo import ZoneInfo
    from dsl.types import parse_field_type

    fields = {"name": parse_field_type("string"), "revenue": parse_field_type("number"),
              "tier": parse_field_type({"enum": ["silver", "gold", "platinum"]}),
              "joined_at": parse_field_type("date")}
    source = read_partners("partners.csv", text, fields, "id", ZoneInfo("Europe/Helsinki"))
    assert source.ok, source.diagnostics
    return {r["id"]: json.loads(json.dumps(r, default=str)) for r in source.records}


# --- changed, removed, revision ----------------------------------------------------------------


def test_a_first_import_adds_every_record_with_the_first_revision(engine, load):
    text = csv_text(big(12))
    result = load(text)
    assert (result.changed, result.removed, result.diagnostics, result.revision) == (sorted(big(12)), [], [], 1)
    assert engine.store.partner_revision() == 1
    assert present(engine) == expected_records(text)
    assert {revision for _, _, revision in stored(engine).values()} == {1}
    assert list(engine.store.partners_changed_since(0)) == sorted(big(12))
    assert list(engine.store.partners_changed_since(1)) == []
    assert engine.store.partner_count() == 12


def test_only_changed_records_count_and_carry_the_new_revision(engine, load):
    load(csv_text(big(10)))
    before = stored(engine)
    records = big(10, p00003=("Renamed", 30, "platinum", "2024-01-01"), p00010=("New", 1, "gold", "2025-05-05"))
    del records["p00007"]
    result = load(csv_text(records))
    assert (result.changed, result.removed, result.revision) == (["p00003", "p00010"], ["p00007"], 2)
    after = stored(engine)
    assert after["p00007"] == (before["p00007"][0], False, 2)  # kept, marked removed
    assert after["p00003"][0]["name"] == "Renamed" and after["p00003"][2] == 2
    for pid in set(before) - {"p00003", "p00007"}:
        assert after[pid] == before[pid]  # untouched: same data, still revision 1
    assert list(engine.store.partners_changed_since(1)) == ["p00003", "p00007", "p00010"]
    assert list(engine.store.partners_changed_since(2)) == []
    assert sorted(engine.store.partners_changed_since(0)) == sorted([*records, "p00007"])
    entry = [e for e in engine.store.log_entries() if e["action"] == "partners.import"][-1]
    assert entry["detail"] == {"source": "partners.csv", "changed": 2, "removed": 1, "total": 10}


def test_an_unchanged_reimport_changes_nothing_and_keeps_the_revision(engine, load):
    records = big(10)
    load(csv_text(records))
    before, log = stored(engine), engine.store.log_entries()
    assert load(csv_text(records)) == PartnerImport(revision=1)  # the same bytes: only hashed
    reordered = HEADER + "\r\n" + "".join(
        f"{pid},{','.join(map(str, values))}\r\n" for pid, values in reversed(list(records.items())))
    assert load(reordered) == PartnerImport(revision=1)  # other bytes, the same records: parsed
    assert load(reordered.replace(",2024-01-01", ",2024-01-01 ")) == PartnerImport(revision=1)  # same dates
    assert stored(engine) == before and engine.store.log_entries() == log
    assert engine.store.partner_revision() == 1


def test_a_removed_partner_that_comes_back_counts_as_changed(engine, load):
    records = big(3)
    load(csv_text(records))
    gone = dict(records)
    del gone["p00001"]
    assert load(csv_text(gone)).removed == ["p00001"]
    back = load(csv_text(records))
    assert (back.changed, back.removed, back.revision) == (["p00001"], [], 3)
    assert stored(engine)["p00001"][1:] == (True, 3)
    assert list(engine.store.partners_changed_since(2)) == ["p00001"]


def test_an_emptied_source_removes_everyone(engine, load):
    load(csv_text(big(3)))
    result = load(HEADER + "\n")
    assert (result.changed, result.removed, result.revision) == ([], sorted(big(3)), 2)
    assert present(engine) == {} and engine.store.partner_count() == 0


def test_the_changes_are_read_page_by_page_in_revision_and_id_order(engine, load):
    load(csv_text(big(7)))
    load(csv_text(big(7, p00002=("x", 1, "gold", "2024-01-01"), p00000=("y", 1, "gold", "2024-01-01"))))
    changes = list(engine.store.partner_changes(0, batch=2))
    assert changes == [(pid, True) for pid in ["p00001", "p00003", "p00004", "p00005", "p00006", "p00000", "p00002"]]
    assert list(engine.store.partner_changes(1, batch=1)) == [("p00000", True), ("p00002", True)]


# --- all or nothing ----------------------------------------------------------------------------


def test_an_error_at_the_end_of_a_big_source_imports_nothing(engine, load, monkeypatch):
    monkeypatch.setattr(partners_module, "BATCH", 1000)  # many batches staged before the error
    load(csv_text(big(5000)))
    before, log = stored(engine), engine.store.log_entries()
    edited = big(5000, p00001=("Changed", 1, "gold", "2024-01-01"))
    text = csv_text(edited) + "p09999,Last,lots,gold,2024-01-01\n"
    result = load(text)
    assert result == PartnerImport(diagnostics=result.diagnostics, revision=1)
    assert [d.headline() for d in result.diagnostics] == [
        f"{load.source}:5002:13: error: field 'revenue': expected a number, got 'lots'"]
    assert stored(engine) == before and engine.store.log_entries() == log
    fixed = load(text.replace(",lots,", ",7,"))  # fixed: the source is imported again
    assert (fixed.changed, fixed.revision) == (["p00001", "p09999"], 2)


def test_every_error_is_reported_as_the_reader_reports_it(engine, load, monkeypatch):
    """Duplicates (found by the store, in and across batches) and bad cells, in source order."""
    monkeypatch.setattr(partners_module, "BATCH", 2)
    load()
    text = (HEADER + "\n" + "p1,A,1,gold,2024-01-01\n" + "p2,B,x,gold,2024-01-01\n" + "p1,C,3,bronze,2024-01-01\n"
            + ",D,4,gold,2024-01-01\n" + "p3,E,5,gold,2024-01-01\n" + "p3,F,6,gold,2024-01-01\n"
            + 'p2,"G\nH",y,gold,2024-01-01\n' + "p4,I,8,gold,2024-01-01,extra\n")
    result = load(text)
    fields = engine.plan.settings.partners.types()
    expected = read_partners(str(load.source), text, fields, "id", engine.plan.tz).diagnostics
    assert len(expected) == 8 and sum("duplicate id" in d.message for d in expected) == 3
    assert result.diagnostics == expected
    assert present(engine) == expected_records(csv_text({"p1": ("Acme", 100, "gold", "2024-01-01")}))


def test_an_unreadable_or_unsupported_source_is_one_error_and_changes_nothing(engine, load):
    load()
    before = stored(engine)
    load.source.unlink()
    missing = load()
    assert [d.message for d in missing.diagnostics] == ["cannot read the partner source: No such file or directory"]
    load.source.write_bytes(b"id,name\np1,\xff\xfeAcme\n")  # bad UTF-8 is replaced, as before
    assert load().changed == ["p1"] and present(engine)["p1"]["name"] == "\ufffd\ufffdAcme"
    assert missing.revision == 1 and stored(engine)["p1"][2] == 2 and set(stored(engine)) == set(before)


def test_another_import_in_between_starts_this_one_again(engine, load, store_url, monkeypatch):
    """Two processes import the same new source: the one that applies it second finds the
    revision moved since it began, and begins again (and finds the work done)."""
    load(csv_text(big(4)))
    text = csv_text(big(4, p00002=("Other", 2, "gold", "2024-01-01")))
    rewrite(load.source, text)
    real, calls = type(engine.store).stage_partners, []

    def stage_after_another_import(store, rows):
        calls.append(store)
        if len(calls) == 1:  # the first batch of this import: the other one runs to its end
            with Engine.open(engine.plan.root, store=store_url) as other:
                done = import_partners(other.store, other.plan, T0 + timedelta(days=1))
                assert (done.changed, done.revision) == (["p00002"], 2)
        return real(store, rows)

    applied = []

    def upsert(store, *args):
        try:
            revision = real_upsert(store, *args)
        except Conflict:
            applied.append("conflict")
            raise
        applied.append(revision)
        return revision

    real_upsert = type(engine.store).upsert_partners
    monkeypatch.setattr(type(engine.store), "stage_partners", stage_after_another_import)
    monkeypatch.setattr(type(engine.store), "upsert_partners", upsert)
    result = load()
    assert applied == [2, "conflict"]  # the other import's, then this one's
    assert calls[0] is engine.store and calls[1] is not engine.store  # the other import's batch
    assert result == PartnerImport(revision=2)
    assert present(engine) == expected_records(text)
    assert engine.store.partner_revision() == 2


def test_a_jsonl_source_streams_the_same_way(engine, monkeypatch):
    monkeypatch.setattr(partners_module, "BATCH", 2)
    root = engine.plan.root
    rewrite(root / "engine.yaml", SETTINGS.replace("partners.csv", "partners.jsonl"))
    lines = [{"id": "p1", "name": "A", "revenue": 1}, {"id": "p2", "joined_at": "2024-02-03"},
             {"id": "p3", "tier": "gold"}, {"id": "p1", "name": "again"}]
    (root / "partners.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")
    plan = engine.plan  # reloaded: engine.yaml changed
    assert plan.settings.partners.source == "partners.jsonl"
    result = import_partners(engine.store, plan, T0)
    assert [d.headline() for d in result.diagnostics] == [
        f"{root / 'partners.jsonl'}:4:8: error: duplicate id 'p1' (first on line 1)"]
    (root / "partners.jsonl").write_text("\n".join(json.dumps(line) for line in lines[:3]) + "\n", encoding="utf-8")
    result = import_partners(engine.store, plan, T0)
    assert (result.changed, result.diagnostics) == (["p1", "p2", "p3"], [])
    assert present(engine)["p2"] == {"id": "p2", "joined_at": "2024-02-03"}


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                                                       max_size=3), max_leaves=6)
typed_values = json_values | st.dates() | st.datetimes(timezones=st.just(timezone.utc))


@pytest.mark.no_store
@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=5), typed_values, max_size=6))
def test_records_are_encoded_as_json_dumps_would(record):
    from engine.compiled import _iso, encode_partner

    expected = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_iso)
    assert encode_partner(record) == expected


@pytest.mark.no_store
def test_a_huge_record_is_encoded_whole():
    from engine.compiled import _iso, encode_partner

    record = {"id": "p1", "scores": list(range(300_000)), "joined_at": datetime(2026, 7, 1).date()}
    expected = json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_iso)
    assert encode_partner(record) == expected


# --- older stores ------------------------------------------------------------------------------


@pytest.mark.sqlite_only("builds a SQLite store file as an earlier version of the engine made it")
def test_a_store_from_before_revisions_gains_the_column_and_its_index(tmp_path):
    path = tmp_path / "state.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE partners (id TEXT PRIMARY KEY, data TEXT NOT NULL, hash TEXT NOT NULL,
                               updated_at TEXT NOT NULL, removed_at TEXT);
        INSERT INTO partners VALUES ('p1', '{"id":"p1"}', 'h', '2026-01-01T00:00:00Z', NULL);
    """)
    old.close()
    store = SQLiteStore(path)
    try:
        assert store.partner_revision() == 0
        assert store.db.execute("SELECT id, revision FROM partners").fetchall() == [("p1", 0)]
        indexes = {name for (name,) in store.db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "partners_revision" in indexes
        assert list(store.partners_changed_since(0)) == []
    finally:
        store.close()


# --- property: any sequence of edits -----------------------------------------------------------

IDS = [f"p{i}" for i in range(6)]
records = st.dictionaries(st.sampled_from(IDS), st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 2)), max_size=6)
# an edit: the next source (records, in this order), and whether it has a mistake: a bad cell
# at one of its rows, or a duplicate of one of its ids
edits = st.tuples(records, st.sampled_from([None, "bad cell", "duplicate"]), st.integers(0, 5), st.booleans())


def source_text(records: dict[str, tuple[str, int]], mistake: str | None, where: int, crlf: bool) -> str:
    lines = [f"{pid},{name},{revenue},gold,2024-01-01" for pid, (name, revenue) in records.items()]
    if mistake is not None and lines:
        at = where % len(lines)
        if mistake == "bad cell":
            lines[at] = lines[at].replace(",gold,", ",bronze,")
        else:
            lines.insert(where % (len(lines) + 1), lines[at])
    elif mistake is not None:
        lines = ["p9,x,oops,gold,2024-01-01"]
    end = "\r\n" if crlf else "\n"
    return end.join([HEADER, *lines]) + end


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(edits, min_size=1, max_size=5))
def test_after_any_sequence_of_edits_the_store_holds_the_last_good_source(engine, load, sequence):
    """Whatever the store held before (the examples share one store), after each import it holds
    the records of the last source without mistakes, the others marked removed; the revision
    moves exactly when something changed, and ``partners_changed_since`` the revision before
    gives exactly the ids whose stored record or presence differs."""
    for records, mistake, where, crlf in sequence:
        before, revision = stored(engine), engine.store.partner_revision()
        text = source_text(records, mistake, where, crlf)
        result = load(text)
        after = stored(engine)
        if mistake is not None:
            assert result.diagnostics and result == PartnerImport(diagnostics=result.diagnostics, revision=revision)
            assert after == before
            continue
        assert result.diagnostics == []
        assert present(engine) == expected_records(text)
        assert {pid for pid, (_, here, _) in after.items() if not here} == set(before) - set(records)
        differ = {pid for pid in after if before.get(pid, (None, False))[:2] != after[pid][:2]}
        assert set(engine.store.partners_changed_since(revision)) == differ
        assert sorted(result.changed + result.removed) == sorted(differ)
        assert result.revision == engine.store.partner_revision() == (revision + 1 if differ else revision)
