"""API keys of the web API (engine.apikeys, `engine apikey`): a key is printed once and the store
keeps only a salted scrypt hash; a key verifies as its user until it is revoked, and a revoke
through any connection refuses it from the next request on, even in a process that remembers
the key as verified; the last use is recorded at most once a minute without waiting for a
tick; anything a client sends is refused, never an exception; the command's outputs, exit
codes and audit log lines.

Each test builds a tiny workspace under ``tmp_path``: UTC, no campaigns, and (unless a test
says otherwise) the users alice (marketing) and bob (viewer).
"""

from __future__ import annotations

import getpass
import hashlib
import json
import re
import string
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import apikeys
from engine.api import Engine
from engine.cli import main
from engine.clock import iso
from engine.testing import dump_store

UTC = timezone.utc
T0 = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
KEY = re.compile(r"ek_[a-z0-9]{10}_[A-Za-z0-9_-]{43}")
URLSAFE = string.ascii_letters + string.digits + "-_"

USERS_YAML = """\
users:
  alice: {roles: [marketing]}
  bob: {roles: [viewer]}
"""


def build_workspace(root: Path, *, users: bool = True) -> Path:
    (root / "campaigns").mkdir(parents=True)
    (root / "engine.yaml").write_text("timezone: UTC\n" + (USERS_YAML if users else ""), encoding="utf-8")
    (root / "partners.csv").write_text("id,name\np1,Ann\n", encoding="utf-8")
    return root


@pytest.fixture(autouse=True)
def _engine_user(monkeypatch: pytest.MonkeyPatch) -> None:
    """Who runs `engine apikey` comes from the test, never from the environment."""
    monkeypatch.delenv("ENGINE_USER", raising=False)


@pytest.fixture
def new_engine(tmp_path: Path, make_engine) -> Callable[..., Engine]:
    count = 0

    def make(*, users: bool = True) -> Engine:
        nonlocal count
        count += 1
        return make_engine(build_workspace(tmp_path / f"source-{count}", users=users), at="2026-07-01T09:00")

    return make


@pytest.fixture
def engine(new_engine) -> Engine:
    return new_engine()


def second(engine: Engine, store_url: str | None) -> Engine:
    """Another Engine on the same workspace and store: another connection, as another process has."""
    return Engine.open(engine.root, store=store_url)


def run(capsys, engine: Engine, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(engine.root), "apikey", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def changed(key: str, position: int) -> str:
    """The key with the character at ``position`` replaced by another url-safe one."""
    other = next(c for c in URLSAFE if c != key[position])
    return key[:position] + other + key[position + 1:]


# --- create, verify, revoke ---------------------------------------------------------------------


def test_a_key_verifies_as_its_user_until_it_is_revoked(engine):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    assert KEY.fullmatch(key) and key.startswith(f"ek_{key_id}_")
    assert apikeys.verify(engine.store, key, T0) == (key_id, "alice")
    assert apikeys.verify(engine.store, key, T0 + timedelta(seconds=1)) == (key_id, "alice")  # remembered

    other_id, other = apikeys.create(engine.store, "bob", T0)
    assert other_id != key_id and other != key
    assert apikeys.verify(engine.store, other, T0) == (other_id, "bob")

    assert apikeys.revoke(engine.store, key_id, T0 + timedelta(hours=1)) is True
    assert apikeys.verify(engine.store, key, T0 + timedelta(hours=1)) is None
    assert apikeys.verify(engine.store, other, T0 + timedelta(hours=1)) == (other_id, "bob")  # the other one lives
    assert apikeys.revoke(engine.store, key_id, T0 + timedelta(hours=2)) is False  # already: the first time stays
    assert engine.store.api_key(key_id)["revoked_at"] == iso(T0 + timedelta(hours=1))
    assert apikeys.revoke(engine.store, "nosuchkey1", T0) is False


def test_a_key_with_one_character_changed_is_refused(engine):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    assert apikeys.verify(engine.store, key, T0) == (key_id, "alice")  # the right key is remembered now
    secret_starts = len("ek_") + len(key_id) + 1
    positions = [0, 2, 3, 7, 12, 13, secret_starts, secret_starts + 1, secret_starts + 21, len(key) - 2, len(key) - 1]
    for position in positions:
        assert apikeys.verify(engine.store, changed(key, position), T0) is None, position
    assert apikeys.verify(engine.store, key + "A", T0) is None  # one more
    assert apikeys.verify(engine.store, key[:-1], T0) is None  # one fewer
    assert apikeys.verify(engine.store, f" {key}", T0) is None
    assert apikeys.verify(engine.store, key, T0) == (key_id, "alice")


def test_a_revoke_through_another_connection_refuses_the_next_request(engine, store_url):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    assert apikeys.verify(engine.store, key, T0) == (key_id, "alice")  # remembered in this process
    with second(engine, store_url) as other:
        assert apikeys.verify(other.store, key, T0) == (key_id, "alice")
        assert apikeys.revoke(other.store, key_id, T0 + timedelta(seconds=5)) is True
    assert apikeys.verify(engine.store, key, T0 + timedelta(seconds=6)) is None


def test_a_revoke_by_the_command_refuses_the_next_request(engine, capsys):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    assert apikeys.verify(engine.store, key, T0) == (key_id, "alice")
    code, out, err = run(capsys, engine, "revoke", key_id)
    assert (code, err) == (0, "") and out.startswith("revoked:")
    assert apikeys.verify(engine.store, key, T0 + timedelta(seconds=1)) is None


def test_the_store_never_holds_the_key(engine):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    secret = key[len(f"ek_{key_id}_"):]
    assert apikeys.verify(engine.store, key, T0 + timedelta(minutes=5)) == (key_id, "alice")
    engine.store.log(T0, "tester", "apikey.create", None, key_id=key_id, acts_as="alice")
    rows = repr(dump_store(engine.root))
    assert key_id in rows and secret not in rows and key not in rows
    stored = engine.store.api_key(key_id)
    assert stored["hash"] == hashlib.scrypt(secret.encode(), salt=bytes.fromhex(stored["salt"]),
                                            n=2**14, r=8, p=1).hex()
    if engine.store.dialect == "sqlite":  # nor any byte of its files
        for path in engine.store.path.parent.glob(engine.store.path.name + "*"):
            assert secret.encode() not in path.read_bytes(), path


def test_a_listing_shows_the_last_use_at_most_once_a_minute_and_never_the_hash(engine):
    first, key = apikeys.create(engine.store, "alice", T0)
    later, _ = apikeys.create(engine.store, "bob", T0 + timedelta(seconds=1))

    def last_use() -> str | None:
        return {k["id"]: k for k in apikeys.listing(engine.store)}[first]["last_used_at"]

    assert last_use() is None
    apikeys.verify(engine.store, key, T0 + timedelta(seconds=10))
    assert last_use() == iso(T0 + timedelta(seconds=10))
    apikeys.verify(engine.store, key, T0 + timedelta(seconds=40))  # within the minute: not written
    assert last_use() == iso(T0 + timedelta(seconds=10))
    apikeys.verify(engine.store, key, T0 + timedelta(seconds=75))
    assert last_use() == iso(T0 + timedelta(seconds=75))
    apikeys.verify(engine.store, changed(key, len(key) - 1), T0 + timedelta(minutes=10))  # a wrong key: no use
    assert last_use() == iso(T0 + timedelta(seconds=75))
    assert engine.store.touch_api_key(first, T0) is False  # the last use never moves back

    apikeys.revoke(engine.store, later, T0 + timedelta(minutes=3))
    listed = apikeys.listing(engine.store)
    assert listed == [
        {"id": first, "user": "alice", "created_at": iso(T0), "last_used_at": iso(T0 + timedelta(seconds=75)),
         "revoked_at": None},
        {"id": later, "user": "bob", "created_at": iso(T0 + timedelta(seconds=1)), "last_used_at": None,
         "revoked_at": iso(T0 + timedelta(minutes=3))},
    ]


def test_a_request_does_not_wait_for_a_tick_to_record_the_last_use(engine, store_url):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    with second(engine, store_url) as ticking, ticking.store.transaction():  # another process's write, under way
        ticking.store.set_meta("test.busy", "yes")
        began = time.monotonic()
        assert apikeys.verify(engine.store, key, T0 + timedelta(minutes=1)) == (key_id, "alice")
        assert time.monotonic() - began < 5
    recorded = engine.store.api_key(key_id)["last_used_at"]
    if engine.store.dialect == "sqlite":  # one writer at a time: the use went unrecorded, not waited for
        assert recorded is None
        assert engine.store.db.execute("PRAGMA busy_timeout").fetchone()[0] == 60_000  # waits as before
    else:  # the key's row only, no advisory lock: recorded beside the tick
        assert recorded == iso(T0 + timedelta(minutes=1))
    apikeys.verify(engine.store, key, T0 + timedelta(minutes=5))
    assert engine.store.api_key(key_id)["last_used_at"] == iso(T0 + timedelta(minutes=5))


# --- the store ----------------------------------------------------------------------------------


def test_the_store_keeps_keys_in_order_and_revokes_each_once(engine):
    store = engine.store
    with store.transaction():
        store.add_api_key("bbbbbbbbbb", "bob", "00", "11", T0)
        store.add_api_key("aaaaaaaaaa", "alice", "22", "33", T0)
        store.add_api_key("0000000000", "alice", "44", "55", T0 - timedelta(days=1))
    assert [k["id"] for k in store.api_keys()] == ["0000000000", "aaaaaaaaaa", "bbbbbbbbbb"]
    assert store.api_key("aaaaaaaaaa") == {"id": "aaaaaaaaaa", "user": "alice", "salt": "22", "hash": "33",
                                           "created_at": iso(T0), "last_used_at": None, "revoked_at": None}
    assert store.api_key("nope") is None
    with store.transaction():
        assert store.revoke_api_key("aaaaaaaaaa", T0) is True
        assert store.revoke_api_key("aaaaaaaaaa", T0 + timedelta(hours=1)) is False
        assert store.revoke_api_key("nope", T0) is False
    assert store.touch_api_key("bbbbbbbbbb", T0) is True
    assert store.touch_api_key("nope", T0) is False
    assert store.api_key("aaaaaaaaaa")["revoked_at"] == iso(T0)


def test_a_store_made_before_api_keys_gains_the_table(engine, store_url):
    apikeys.create(engine.store, "alice", T0)
    engine.store.db.execute("DROP TABLE api_keys")  # as an earlier version of the engine left it
    if engine.store.dialect == "postgresql":
        engine.store.set_meta("schema.postgresql", "an earlier schema")
    with second(engine, store_url) as reopened:
        assert reopened.store.api_keys() == []
        key_id, key = apikeys.create(reopened.store, "bob", T0)
        assert apikeys.verify(reopened.store, key, T0) == (key_id, "bob")


# --- what clients send --------------------------------------------------------------------------


def key_shaped(key_id: str | None = None) -> st.SearchStrategy[str]:
    ids = st.just(key_id) if key_id else st.text(alphabet=URLSAFE, min_size=0, max_size=14)
    return st.builds(lambda i, sep, s: f"ek_{i}{sep}{s}", ids, st.sampled_from(["_", "-", "", "__"]),
                     st.text(alphabet=URLSAFE, min_size=40, max_size=46))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_whatever_a_client_sends_is_refused_never_an_exception(engine, data):
    if not engine.store.api_keys():
        apikeys.create(engine.store, "alice", T0)
    [known] = engine.store.api_keys()
    presented = data.draw(st.one_of(
        st.text(), st.text(alphabet=URLSAFE + "ek_ \n\x00é", max_size=80), key_shaped(), key_shaped(known["id"]),
        st.binary(max_size=60), st.none(), st.integers(), st.lists(st.text(), max_size=2)))
    assert apikeys.verify(engine.store, presented, T0) is None


def test_text_shaped_like_a_key_with_surprising_characters_is_refused(engine):
    key_id, key = apikeys.create(engine.store, "alice", T0)
    for presented in (key + "\n", key.replace("ek_", "EK_"), key[:-1] + "\u0661", key[:-1] + "\udc80",
                      key.replace("_", "\x00", 1), "", "ek_", f"ek_{key_id}_", key * 2, key.encode()):
        assert apikeys.verify(engine.store, presented, T0) is None, repr(presented)


# --- engine apikey ------------------------------------------------------------------------------


def test_create_prints_the_key_alone_and_logs_who_made_it(engine, capsys, monkeypatch):
    monkeypatch.setenv("ENGINE_USER", "carol")
    code, out, err = run(capsys, engine, "create", "alice")
    assert code == 0
    key = out.strip()
    assert out == key + "\n" and KEY.fullmatch(key)  # KEY=$(engine apikey create alice)
    assert "only" in err and "once" in err and key not in err
    key_id, user = apikeys.verify(engine.store, key, T0)
    assert user == "alice" and key_id in err

    code, out, err = run(capsys, engine, "create", "bob", "--json")
    assert code == 0
    made = json.loads(out)
    assert set(made) == {"id", "user", "key"} and made["user"] == "bob"
    assert apikeys.verify(engine.store, made["key"], T0) == (made["id"], "bob")

    entries = [e for e in engine.log() if e["action"] == "apikey.create"]
    assert [(e["user"], e["campaign"], e["partner"], e["detail"]) for e in entries] == [
        ("carol", None, None, {"key_id": key_id, "acts_as": "alice"}),
        ("carol", None, None, {"key_id": made["id"], "acts_as": "bob"}),
    ]
    assert key not in json.dumps(engine.log()) and made["key"] not in json.dumps(engine.log())


def test_create_for_a_user_engine_yaml_does_not_list_exits_1(engine, capsys):
    code, out, err = run(capsys, engine, "create", "alise")
    assert (code, out) == (1, "")
    assert "unknown user 'alise'" in err and "did you mean 'alice'" in err
    code, out, err = run(capsys, engine, "create", "  ")
    assert (code, out) == (2, "") and "blank" in err
    assert engine.store.api_keys() == []
    assert not [e for e in engine.log() if e["action"].startswith("apikey.")]


def test_without_users_a_key_is_for_anyone_and_the_login_name_is_logged(new_engine, capsys):
    engine = new_engine(users=False)
    code, out, err = run(capsys, engine, "create", "dana")
    assert code == 0 and "dana" in err
    assert apikeys.verify(engine.store, out.strip(), T0)[1] == "dana"
    [entry] = [e for e in engine.log() if e["action"] == "apikey.create"]
    assert entry["user"] == getpass.getuser() and entry["detail"]["acts_as"] == "dana"


def test_list_shows_ids_users_and_last_use(engine, capsys):
    code, out, err = run(capsys, engine, "list")
    assert (code, err) == (0, "") and "no API keys" in out
    first, key = apikeys.create(engine.store, "alice", T0)
    later, _ = apikeys.create(engine.store, "bob", T0 + timedelta(seconds=1))
    apikeys.verify(engine.store, key, T0 + timedelta(minutes=2))
    apikeys.revoke(engine.store, later, T0 + timedelta(minutes=3))

    code, out, err = run(capsys, engine, "list")
    assert (code, err) == (0, "")
    header, *rows = out.splitlines()
    assert header.split() == ["id", "user", "created", "last", "used", "revoked"]
    assert [row.split() for row in rows] == [
        [first, "alice", iso(T0), iso(T0 + timedelta(minutes=2)), "-"],
        [later, "bob", iso(T0 + timedelta(seconds=1)), "-", iso(T0 + timedelta(minutes=3))],
    ]
    assert key not in out

    code, out, err = run(capsys, engine, "list", "--json")
    assert (code, err) == (0, "")
    assert json.loads(out) == {"keys": apikeys.listing(engine.store)}
    assert "hash" not in out and "salt" not in out


def test_revoke_is_logged_once_and_exits_0_again_or_1_for_an_unknown_id(engine, capsys, monkeypatch):
    monkeypatch.setenv("ENGINE_USER", "carol")
    key_id, key = apikeys.create(engine.store, "alice", T0)
    code, out, err = run(capsys, engine, "revoke", key_id)
    assert (code, err) == (0, "") and out.startswith(f"revoked: API key {key_id} of alice")
    code, out, err = run(capsys, engine, "revoke", key_id)
    assert (code, err) == (0, "") and "revoked already" in out
    code, out, err = run(capsys, engine, "revoke", key_id[:-1] + "x" if key_id[-1] != "x" else key_id[:-1] + "y")
    assert (code, out) == (1, "") and "unknown API key" in err and f"did you mean '{key_id}'" in err
    assert apikeys.verify(engine.store, key, T0) is None
    entries = [e for e in engine.log() if e["action"] == "apikey.revoke"]
    assert [(e["user"], e["detail"]) for e in entries] == [("carol", {"key_id": key_id, "acts_as": "alice"})]
