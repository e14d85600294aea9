"""Who may import events and mark pop-ups read (issue 18, item 14; SPEC §7).

The examples list the users alice (marketing) and bob (viewer). `engine events import` needs the
events or marketing role, `engine popup read` the marketing or events role, both with `--as USER`
(default $ENGINE_USER) like every operation; a refusal exits 3 with `engine: refused: <why>` and
changes nothing, and the audit log records who acted. The rule lives in one table,
engine.operations.ROLES."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from campaigns.enrollment import Refused
from engine.api import Engine
from engine.cli import build_parser, main
from engine.operations import ROLES, resolve_user
from engine.testing import copy_workspace, dump_store, rewrite

EXAMPLES = Path(__file__).parents[2] / "examples"

# an opt-in that a viewer must not be able to forge, and a trigger event
FORGED = [
    {"type": "opted_in", "at": "2026-07-01T09:00:00Z", "partner": "p003", "data": {"channel": "email"}, "id": "forged-1"},
    {"type": "invoice.payment_failed", "at": "2026-07-01T09:00:00Z", "partner": "p001", "data": {"amount": 500},
     "id": "forged-2"},
]


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("ENGINE_USER", raising=False)
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def run(capsys, ws: Path, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(ws), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def events_file(tmp_path: Path, events: list[dict]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    return path


def log_entries(capsys, ws: Path, action: str) -> list[dict]:
    code, out, err = run(capsys, ws, "log", "--json")
    assert code == 0, err
    return [e for e in json.loads(out) if e["action"] == action]


def started(capsys, ws: Path, until: str = "2026-07-05") -> None:
    code, _, err = run(capsys, ws, "run", "--from", "2026-07-01", "--until", until, "--every", "1d")
    assert code == 0, err


# --- events import -------------------------------------------------------------------------------


@pytest.mark.parametrize("who, reason", [
    ([], "engine.yaml lists users: say who you are with --as USER (one of alice, bob)"),
    (["--as", "bob"], "user 'bob' may not import events: that needs the events role or the marketing role (they have viewer)"),
    (["--as", "mallory"], "unknown user 'mallory'"),
])
def test_an_import_without_the_role_is_refused_and_changes_nothing(capsys, ws, tmp_path, who, reason):
    started(capsys, ws)
    before = dump_store(ws)
    path = events_file(tmp_path, FORGED)
    code, out, err = run(capsys, ws, "events", "import", str(path), *who, "--at", "2026-07-05T12:00Z")
    assert code == 3, err
    assert err.startswith("engine: refused: ") and reason in err and err.count("\n") == 1 and out == ""
    assert dump_store(ws) == before  # no event, no consent, no log entry


def test_an_import_as_a_marketing_user_is_logged_with_its_user(capsys, ws, tmp_path):
    started(capsys, ws)
    path = events_file(tmp_path, FORGED)
    code, out, err = run(capsys, ws, "events", "import", str(path), "--as", "alice", "--at", "2026-07-05T12:00Z")
    assert (code, out) == (0, "imported 2 events, 0 already known, 0 bad lines skipped\n"), err
    [entry] = log_entries(capsys, ws, "events.import")
    assert entry["user"] == "alice" and entry["detail"]["imported"] == 2
    code, out, _ = run(capsys, ws, "consent", "--partner", "p003", "--json", "--at", "2026-07-05T12:00Z")
    assert any(e["source"] == "event:forged-1" for e in json.loads(out)["ledger"])


def test_engine_user_names_the_importer_when_there_is_no_as(capsys, ws, tmp_path, monkeypatch):
    monkeypatch.setenv("ENGINE_USER", "alice")
    code, _, err = run(capsys, ws, "events", "import", str(events_file(tmp_path, FORGED)), "--at", "2026-07-05T12:00Z")
    assert code == 0, err
    assert [e["user"] for e in log_entries(capsys, ws, "events.import")] == ["alice"]
    monkeypatch.setenv("ENGINE_USER", "bob")
    code, _, err = run(capsys, ws, "events", "import", str(events_file(tmp_path, FORGED)), "--at", "2026-07-05T12:00Z")
    assert code == 3 and "user 'bob' may not import events" in err


def test_without_users_anyone_imports_and_the_log_names_them(capsys, ws, tmp_path, monkeypatch):
    settings = ws / "engine.yaml"
    text = settings.read_text(encoding="utf-8")
    rewrite(settings, text[: text.index("\nusers:")] + "\n")
    monkeypatch.setenv("ENGINE_USER", "carol")
    code, _, err = run(capsys, ws, "events", "import", str(events_file(tmp_path, FORGED)), "--at", "2026-07-05T12:00Z")
    assert code == 0, err
    assert [e["user"] for e in log_entries(capsys, ws, "events.import")] == ["carol"]


def test_a_refusal_comes_before_reading_the_file(capsys, ws, tmp_path):
    """A user without the role learns nothing about the file (not even that its lines are bad)."""
    path = tmp_path / "bad.jsonl"
    path.write_text("not json\n", encoding="utf-8")
    code, _, err = run(capsys, ws, "events", "import", str(path), "--as", "bob")
    assert code == 3 and "not valid JSON" not in err


# --- popup read ----------------------------------------------------------------------------------


def a_popup(capsys, ws: Path) -> dict:
    started(capsys, ws, "2026-07-15")
    code, out, err = run(capsys, ws, "popups", "--partner", "p001", "--json")
    assert code == 0, err
    popups = json.loads(out)
    assert popups, "the examples show p001 a pop-up (portal-note) in its first two weeks"
    return popups[0]


@pytest.mark.parametrize("who, reason", [
    ([], "say who you are with --as USER"),
    (["--as", "bob"], "user 'bob' may not mark pop-ups read: that needs the marketing role or the events role (they have viewer)"),
])
def test_marking_a_popup_read_needs_the_role(capsys, ws, who, reason):
    popup = a_popup(capsys, ws)
    before = dump_store(ws)
    code, out, err = run(capsys, ws, "popup", "read", popup["id"], "--partner", "p001", *who, "--at", "2026-07-15T12:00Z")
    assert code == 3 and err.startswith("engine: refused: ") and reason in err, err
    assert dump_store(ws) == before


def test_a_popup_read_by_a_marketing_user_is_logged_as_that_user_for_the_partner(capsys, ws):
    popup = a_popup(capsys, ws)
    code, out, err = run(capsys, ws, "popup", "read", popup["id"], "--partner", "p001", "--as", "alice",
                         "--at", "2026-07-15T12:00Z")
    assert code == 0, err
    [entry] = log_entries(capsys, ws, "popup.read")
    assert (entry["user"], entry["partner"], entry["detail"]["popup"]) == ("alice", "p001", popup["id"])


# --- the rule, the API and the help --------------------------------------------------------------


def plan_with(users: dict[str, list[str]]) -> SimpleNamespace:
    return SimpleNamespace(settings=SimpleNamespace(users={n: SimpleNamespace(roles=r) for n, r in users.items()}))


def test_one_table_says_which_roles_each_action_needs():
    assert ROLES["operate"][1] == ("marketing",)
    assert set(ROLES["events.import"][1]) == {"events", "marketing"}
    assert set(ROLES["popup.read"][1]) == {"marketing", "events"}
    plan = plan_with({"feed": ["events"], "alice": ["marketing"], "bob": ["viewer"]})
    assert resolve_user(plan, "feed", "events.import") == "feed"  # type: ignore[arg-type]
    assert resolve_user(plan, "feed", "popup.read") == "feed"  # type: ignore[arg-type]
    assert resolve_user(plan, "alice", "events.import") == "alice"  # type: ignore[arg-type]
    with pytest.raises(Refused, match="may not operate campaigns: that needs the marketing role"):
        resolve_user(plan, "feed", "operate")  # type: ignore[arg-type]
    with pytest.raises(Refused, match="may not import events"):
        resolve_user(plan, "bob", "events.import")  # type: ignore[arg-type]


def test_the_python_api_checks_a_user_when_one_is_given(ws, tmp_path):
    """Without a user the API's import is the program's own feed (simulations, tests), logged as
    engine; with one, the same rule as the command line."""
    path = events_file(tmp_path, FORGED)
    with Engine.open(ws) as engine:
        with pytest.raises(Refused, match="may not import events"):
            engine.import_events(path, at="2026-07-05T12:00Z", user="bob")
        assert engine.import_events(path, at="2026-07-05T12:00Z").imported == 2
        assert [e["user"] for e in engine.log() if e["action"] == "events.import"] == ["engine"]


@pytest.mark.no_store
@pytest.mark.parametrize("command, role", [(["events", "import"], "events or marketing role"),
                                           (["popup", "read"], "marketing or events role")])
def test_the_help_names_the_role_and_what_as_means(command, role):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command[0]]  # type: ignore[union-attr]
    text = " ".join(sub._subparsers._group_actions[0].choices[command[1]].format_help().split())  # type: ignore[union-attr]
    assert "--as USER" in text and role in text
    assert "a declaration, not authentication" in text
