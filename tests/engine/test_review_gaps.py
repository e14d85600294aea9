"""Issue 12, the review gaps, through the real CLI (exit codes and output): `engine test` dates the
first step as the trigger would, prints bodies with --show-body and marks partners a campaign
without a trigger would not enroll by itself; operations on the wall clock far from the store's
last tick say so; `engine plan` reports the next firing of cron and `at` campaigns; passes of
`engine test` live in the committed campaigns/.tested.json."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.cli import main
from engine.testing import copy_workspace, rewrite
from tests.engine.test_tick import campaign, email, partner, partners_csv, wait, workspace

EXAMPLES = Path(__file__).parents[2] / "examples"
NOTE = re.compile(r"^engine: note: operating at the wall clock (\S+); the last tick was at (\S+); pass --at to choose$")


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys, *argv: str) -> tuple[int, dict, str]:
    code, out, err = run(capsys, *argv)
    return code, json.loads(out), err


def steps(partner_result: dict) -> list[tuple[str, str, str]]:
    return [(s["step"], s["at"], s["status"]) for s in partner_result["steps"]]


# --- 1. engine test starts where the trigger would ------------------------------------------------


@pytest.mark.no_store
def test_a_cron_campaign_starts_at_the_crons_next_firing(capsys, ws):
    code, result, _ = run_json(capsys, "-w", str(ws), "test", "renewal-reminder", "--partner", "p006",
                               "--at", "2026-07-01", "--json")
    assert code == 0
    assert result["at"] == "2026-06-30T21:00:00Z"  # --at as given: Helsinki midnight, a Wednesday
    assert result["trigger"] == {"kind": "cron", "cron": "0 9 * * MON", "starts_at": "2026-07-06T06:00:00Z"}
    [p006] = result["partners"]
    assert (p006["enrolls"], p006["by_itself"], p006["note"]) == (True, True, None)
    assert steps(p006)[:2] == [("reminder", "2026-07-06T06:00:00Z", "would_execute"),  # Monday 09:00 Helsinki
                               ("second-reminder", "2026-07-13T06:00:00Z", "would_execute")]
    code, out, _ = run(capsys, "-w", str(ws), "test", "renewal-reminder", "--partner", "p006", "--at", "2026-07-01")
    assert code == 0
    assert out.splitlines()[:4] == [
        "renewal-reminder from 2026-06-30T21:00:00Z: passed",
        'trigger: cron "0 9 * * MON" fires next at 2026-07-06T06:00:00Z: the enrollments start then',
        "",
        "partner p006: renewal-due; enrolls",
    ]
    assert "  2026-07-06T06:00:00Z  reminder" in out
    # at a firing time itself, that firing
    code, result, _ = run_json(capsys, "-w", str(ws), "test", "renewal-reminder", "--partner", "p006",
                               "--at", "2026-07-06T09:00", "--json")
    assert result["trigger"]["starts_at"] == "2026-07-06T06:00:00Z"


@pytest.mark.no_store
def test_the_cron_is_read_on_the_campaigns_own_clock(capsys, tmp_path):
    text = campaign("cron: \"0 9 * * *\"", email(), extra="timezone: America/New_York\n")
    root = workspace(tmp_path, {"daily": text}, partners_csv(partner("p1")))  # the workspace is on UTC
    code, result, _ = run_json(capsys, "-w", str(root), "test", "daily", "--at", "2026-07-01T00:00Z", "--json")
    assert code == 0
    assert result["trigger"]["starts_at"] == "2026-07-01T13:00:00Z"  # 09:00 EDT
    assert steps(result["partners"][0]) == [("hello", "2026-07-01T13:00:00Z", "would_execute")]


@pytest.mark.no_store
def test_a_cron_that_never_fires_enrolls_nobody(capsys, tmp_path):
    root = workspace(tmp_path, {"never": campaign("cron: \"0 0 30 2 *\"", email())}, partners_csv(partner("p1")))
    code, result, _ = run_json(capsys, "-w", str(root), "test", "never", "--at", "2026-07-01T00:00Z", "--json")
    assert code == 0 and result["trigger"]["starts_at"] is None
    [p1] = result["partners"]
    assert (p1["enrolls"], p1["by_itself"], p1["steps"], p1["finished"]) == (True, False, [], None)
    assert p1["note"] == 'would not be enrolled: the cron trigger "0 0 30 2 *" does not fire in the ten years after --at'
    code, out, _ = run(capsys, "-w", str(root), "test", "never", "--at", "2026-07-01T00:00Z")
    assert code == 0
    assert 'trigger: cron "0 0 30 2 *" does not fire in the ten years after 2026-07-01T00:00:00Z: nobody is enrolled' in out
    assert f"partner p1: all; {p1['note']}" in out


@pytest.mark.no_store
def test_an_at_campaign_starts_at_its_at_time_or_at_once_when_it_has_passed(capsys, ws):
    code, result, _ = run_json(capsys, "-w", str(ws), "test", "summer-webinar", "--partner", "p001",
                               "--at", "2026-07-01", "--json")
    assert code == 0
    assert result["trigger"] == {"kind": "at", "at": "2026-08-20T07:00:00Z", "starts_at": "2026-08-20T07:00:00Z"}
    assert steps(result["partners"][0])[:2] == [("invite-popup", "2026-08-20T07:00:00Z", "would_execute"),
                                                ("invite", "2026-08-20T07:00:00Z", "would_execute")]
    code, out, _ = run(capsys, "-w", str(ws), "test", "summer-webinar", "--partner", "p001", "--at", "2026-07-01")
    assert out.splitlines()[1] == "trigger: at 2026-08-20T07:00:00Z: the enrollments start then"
    # its time already past: a campaign first seen active then fires once, at that tick (--at)
    code, result, _ = run_json(capsys, "-w", str(ws), "test", "summer-webinar", "--partner", "p001",
                               "--at", "2026-09-01T12:00", "--json")
    assert result["trigger"]["starts_at"] == "2026-09-01T09:00:00Z"
    assert steps(result["partners"][0])[0] == ("invite-popup", "2026-09-01T09:00:00Z", "would_execute")


@pytest.mark.no_store
def test_audience_and_event_campaigns_start_at_the_given_time(capsys, ws):
    for cid, trigger in (("partner-onboarding", {"kind": "audience", "starts_at": "2026-06-30T21:00:00Z"}),
                         ("payment-failed", {"kind": "event", "event": "invoice.payment_failed",
                                             "starts_at": "2026-06-30T21:00:00Z"})):
        code, result, _ = run_json(capsys, "-w", str(ws), "test", cid, "--partner", "p001", "--at", "2026-07-01", "--json")
        assert code == 0 and result["trigger"] == trigger
        assert result["partners"][0]["steps"][0]["at"] == "2026-06-30T21:00:00Z"
        assert result["partners"][0]["by_itself"] is True


# --- 2. --show-body ----------------------------------------------------------------------------------


@pytest.mark.no_store
def test_show_body_prints_each_rendered_message_in_full(capsys, ws):
    argv = ["-w", str(ws), "test", "renewal-reminder", "--partner", "p006", "--at", "2026-07-01"]
    code, plain, _ = run(capsys, *argv)
    assert code == 0 and "Arctic HVAC Oy:n kumppanisopimus" not in plain  # the subject only
    code, full, _ = run(capsys, *argv, "--show-body")
    assert code == 0
    lines = full.splitlines()
    at = lines.index("  2026-07-06T06:00:00Z  reminder             would_execute  "
                     "Kumppanisopimuksesi on uusittavana, Ville Koskinen")
    assert lines[at + 1:at + 7] == [
        " " * 26 + "to: ville@arctic-hvac.fi",
        " " * 26 + "subject: Kumppanisopimuksesi on uusittavana, Ville Koskinen",
        " " * 26 + "language: fi",
        " " * 26 + "| Hei Ville Koskinen,",
        " " * 26 + "|",
        " " * 26 + "| Arctic HVAC Oy:n kumppanisopimus on uusittavana. Uusi sopimus",
    ]
    assert " " * 26 + "to: +358401110006" in lines  # the SMS
    assert " " * 26 + "task for anna.virtanen@example.com: Renewal follow-up: Arctic HVAC Oy" in lines
    assert " " * 26 + "responses: renewed, needs-demo, churned" in lines
    # the JSON has the bodies with or without the option
    code, with_flag, _ = run_json(capsys, *argv, "--json", "--show-body")
    code, without, _ = run_json(capsys, *argv, "--json")
    assert with_flag == without
    assert without["partners"][0]["steps"][0]["message"]["body"].startswith("Hei Ville Koskinen,\n\nArctic HVAC Oy:n")


# --- 3. a campaign with no trigger -------------------------------------------------------------------


@pytest.mark.no_store
def test_partners_of_a_campaign_without_a_trigger_are_marked(capsys, ws):
    code, result, _ = run_json(capsys, "-w", str(ws), "test", "demo-invite", "--partner", "p001", "--partner", "p002",
                               "--at", "2026-07-01", "--json")
    assert code == 0
    assert result["trigger"] == {"kind": None, "starts_at": "2026-06-30T21:00:00Z"}
    p001, p002 = result["partners"]
    note = ("would not be enrolled by itself (the campaign has no trigger): start it (engine start demo-invite "
            "--partner p001) or add it to the target group (engine group demo-invite add p001)")
    assert (p001["enrolls"], p001["by_itself"], p001["note"]) == (True, False, note)
    assert p001["steps"][0]["at"] == "2026-06-30T21:00:00Z"  # what a start at --at would do
    assert (p002["enrolls"], p002["by_itself"], p002["note"]) == (False, False, None)  # paid: not in the audience
    code, out, _ = run(capsys, "-w", str(ws), "test", "demo-invite", "--partner", "p001", "--partner", "p002",
                       "--at", "2026-07-01")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].startswith("no trigger: the campaign enrolls nobody by itself")
    assert f"partner p001: not-yet-paying; {note}" in lines
    assert "partner p002: no ruleset or group; not enrolled (no match)" in lines


# --- 4. the wall clock far from the last tick ---------------------------------------------------


def notes(err: str) -> list[tuple[str, str]]:
    return [m.groups() for line in err.splitlines() if (m := NOTE.match(line))]


def test_an_operation_on_the_wall_clock_far_from_the_last_tick_says_so(capsys, ws):
    code, _, err = run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01")
    assert code == 0 and notes(err) == []  # no last tick yet
    code, out, err = run(capsys, "-w", str(ws), "explain", "partner-onboarding", "--partner", "p001")
    assert code == 0
    [(used, last)] = notes(err)
    assert last == "2026-06-30T21:00:00Z"
    assert abs(datetime.fromisoformat(used) - datetime.now(UTC)) < timedelta(minutes=5)
    assert len(err.splitlines()) == 1
    # an operation (start) and a reading one (consent) alike; with --at, not
    code, out, err = run(capsys, "-w", str(ws), "start", "demo-invite", "--partner", "p003", "--as", "alice")
    assert code == 0 and out.startswith("active: partner p003 in demo-invite") and len(notes(err)) == 1
    code, _, err = run(capsys, "-w", str(ws), "consent", "--partner", "p001", "--at", "2026-07-01T01:00")
    assert code == 0 and notes(err) == []
    code, _, err = run(capsys, "-w", str(ws), "consent", "--partner", "p001")
    assert code == 0 and len(notes(err)) == 1


def test_no_note_within_a_day_of_the_last_tick_and_one_when_it_is_ahead(capsys, ws):
    now = datetime.now(UTC)
    code, _, err = run(capsys, "-w", str(ws), "tick", "--at", (now - timedelta(hours=23)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert code == 0 and notes(err) == []
    code, _, err = run(capsys, "-w", str(ws), "consent", "--partner", "p001")
    assert code == 0 and notes(err) == []
    ahead = (now + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code, _, err = run(capsys, "-w", str(ws), "tick", "--at", ahead)
    assert code == 0
    code, _, err = run(capsys, "-w", str(ws), "consent", "--partner", "p001")
    assert code == 0 and [last for _, last in notes(err)] == [ahead]


@pytest.mark.sqlite_only("the store's file must not be made by a command that fails on its arguments")
def test_the_note_never_makes_a_store(capsys, ws):
    code, _, err = run(capsys, "-w", str(ws), "respond", "x:p1:1:s:1", "yes", "--duration", "soon")
    assert code == 2 and "--duration" in err and notes(err) == []
    assert not (ws / ".engine" / "state.db").exists()


# --- 5. engine plan: the next firing of cron and `at` campaigns ----------------------------------------


def test_plan_reports_the_next_firings_and_whom_they_would_enroll(capsys, ws):
    assert main(["-w", str(ws), "tick", "--at", "2026-07-01"]) == 0
    capsys.readouterr()
    code, result, err = run_json(capsys, "-w", str(ws), "plan", "--at", "2026-07-01T01:00", "--json")
    assert code == 0 and result["changes"] == 0 and notes(err) == []
    entries = {c["campaign"]: c for c in result["campaigns"]}
    assert entries["renewal-reminder"]["next_firing"] == {
        "kind": "cron", "trigger": "0 9 * * MON", "at": "2026-07-06T06:00:00Z", "due": False, "enrolls": 5,
        "sample": ["p010", "p014", "p018", "p021", "p029"], "note": None}  # p006 is onboarding (exclusive)
    assert entries["summer-webinar"]["next_firing"] == {
        "kind": "at", "trigger": "2026-08-20T07:00:00Z", "at": "2026-08-20T07:00:00Z", "due": False, "enrolls": 21,
        "sample": ["p001", "p004", "p005", "p009", "p012"], "note": None}
    assert entries["pay-by-portal"]["next_firing"] == {
        "kind": "at", "trigger": "2026-07-07T07:00:00Z", "at": "2026-07-07T07:00:00Z", "due": False, "enrolls": 28,
        "sample": ["p001", "p004", "p005", "p006", "p007"], "note": None}
    assert {cid for cid, e in entries.items() if e["next_firing"] is not None} == {
        "pay-by-portal", "renewal-reminder", "summer-webinar"}
    code, out, _ = run(capsys, "-w", str(ws), "plan", "--at", "2026-07-01T01:00")
    assert code == 0
    assert out.splitlines() == [
        "pay-by-portal:",
        ("  next firing (at 2026-07-07T07:00:00Z) at 2026-07-07T07:00:00Z would enroll 28 partners "
         "(e.g. p001, p004, p005, p006, p007)"),
        "renewal-reminder:",
        ('  next firing (cron "0 9 * * MON") at 2026-07-06T06:00:00Z would enroll 5 partners '
         "(e.g. p010, p014, p018, p021, p029)"),
        "summer-webinar:",
        ("  next firing (at 2026-08-20T07:00:00Z) at 2026-08-20T07:00:00Z would enroll 21 partners "
         "(e.g. p001, p004, p005, p009, p012)"),
        "no changes",
    ]
    # once it is due, the next tick would enroll them: a change (exit 4)
    code, result, _ = run_json(capsys, "-w", str(ws), "plan", "--at", "2026-07-07", "--json")
    renewal = {c["campaign"]: c for c in result["campaigns"]}["renewal-reminder"]["next_firing"]
    assert code == 4 and (renewal["at"], renewal["due"], renewal["enrolls"]) == ("2026-07-06T06:00:00Z", True, 5)
    code, out, _ = run(capsys, "-w", str(ws), "plan", "--at", "2026-07-07")
    assert code == 4 and "at 2026-07-06T06:00:00Z (due: the next tick fires it) would enroll 5 partners" in out
    # after the tick that fires it: the following Monday, with everyone enrolled already
    assert main(["-w", str(ws), "tick", "--at", "2026-07-07"]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "-w", str(ws), "plan", "--at", "2026-07-07")
    assert code == 0
    assert '  next firing (cron "0 9 * * MON") at 2026-07-13T06:00:00Z would enroll nobody' in out.splitlines()


def test_plan_of_an_at_campaign_that_fired_was_drafted_or_whose_window_closes(capsys, tmp_path):
    once = campaign("at: 2026-07-02T00:00Z", email())
    late = campaign("at: 2026-07-05T00:00Z", email(), extra="window: {start: 2026-07-01, end: 2026-07-03}\n")
    later = campaign("at: 2026-07-09T00:00Z", email() + wait("1d") + email("again"))
    root = workspace(tmp_path, {"once": once, "late": late, "later": later}, partners_csv(partner("p1"), partner("p2")))
    assert main(["-w", str(root), "tick", "--at", "2026-07-03T00:00Z"]) == 0
    assert main(["-w", str(root), "draft", "later", "--at", "2026-07-03T00:00Z", "--as", "alice"]) == 0
    capsys.readouterr()
    code, result, _ = run_json(capsys, "-w", str(root), "plan", "--at", "2026-07-03T01:00Z", "--json")
    assert code == 0
    firings = {c["campaign"]: c["next_firing"] for c in result["campaigns"]}
    assert firings["once"] == {"kind": "at", "trigger": "2026-07-02T00:00:00Z", "at": None, "due": False, "enrolls": 0,
                               "sample": [], "note": "it fired already: a one-shot fires once"}
    assert (firings["late"]["at"], firings["late"]["enrolls"], firings["late"]["note"]) == (
        "2026-07-05T00:00:00Z", 0, "the campaign's window has closed by then: it enrolls nobody")
    assert firings["later"]["note"] == "returned to draft (engine draft): it does not fire until its file is edited"
    code, out, _ = run(capsys, "-w", str(root), "plan", "--at", "2026-07-03T01:00Z")
    assert "  next firing (at 2026-07-02T00:00:00Z): none, it fired already: a one-shot fires once" in out.splitlines()
    # edited after the draft: scheduled again, at its time
    rewrite(root / "campaigns" / "later.yaml", later.replace("name: Test", "name: Later"))
    code, result, _ = run_json(capsys, "-w", str(root), "plan", "--at", "2026-07-03T01:00Z", "--json")
    later_firing = {c["campaign"]: c["next_firing"] for c in result["campaigns"]}["later"]
    assert (later_firing["at"], later_firing["enrolls"], later_firing["sample"]) == ("2026-07-09T00:00:00Z", 2, ["p1", "p2"])


def test_plan_without_at_says_when_it_plans_far_from_the_last_tick(capsys, ws):
    assert main(["-w", str(ws), "tick", "--at", "2026-07-01"]) == 0
    capsys.readouterr()
    code, _, err = run_json(capsys, "-w", str(ws), "plan", "--json")
    assert code in (0, 4) and [last for _, last in notes(err)] == ["2026-06-30T21:00:00Z"]


# --- 6. the record of passes is committed with the campaigns --------------------------------------------


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes().replace(b"\r\n", b"\n")).hexdigest()


def checklist_warnings(capsys, root: Path) -> set[str]:
    code, result, _ = run_json(capsys, "check", str(root), "--json")
    assert code == 0
    return {Path(e["path"]).stem for e in result["errors"]
            if e["severity"] == "warning" and "was never run through `engine test`" in e["message"]}


@pytest.mark.no_store
def test_passes_live_in_campaigns_tested_json_and_count_on_every_clone(capsys, ws, tmp_path):
    tested = ws / "campaigns" / ".tested.json"
    before = checklist_warnings(capsys, ws)
    assert {"partner-onboarding", "renewal-reminder"} <= before
    for cid in ("renewal-reminder", "partner-onboarding"):
        code, _, _ = run(capsys, "-w", str(ws), "test", cid, "--at", "2026-07-01")
        assert code == 0
    hashes = {cid: sha(ws / "campaigns" / f"{cid}.yaml") for cid in ("partner-onboarding", "renewal-reminder")}
    assert tested.read_text(encoding="utf-8") == (
        "{\n"
        f'  "partner-onboarding": {{\n    "hash": "{hashes["partner-onboarding"]}"\n  }},\n'
        f'  "renewal-reminder": {{\n    "hash": "{hashes["renewal-reminder"]}"\n  }}\n'
        "}\n")
    assert not (ws / ".engine").exists()  # nothing of one clone's own
    stamp = tested.stat().st_mtime_ns
    assert main(["-w", str(ws), "test", "renewal-reminder", "--at", "2026-08-01"]) == 0  # another time, same content
    capsys.readouterr()
    assert tested.stat().st_mtime_ns == stamp  # not even rewritten
    assert checklist_warnings(capsys, ws) == before - {"partner-onboarding", "renewal-reminder"}
    # another clone: the file comes along with the campaigns, .engine/ does not
    clone = copy_workspace(ws, tmp_path / "clone")
    assert checklist_warnings(capsys, clone) == before - {"partner-onboarding", "renewal-reminder"}
    # ... even when it checks the files out with CRLF line endings
    path = clone / "campaigns" / "renewal-reminder.yaml"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert "renewal-reminder" not in checklist_warnings(capsys, clone)
    # an edit needs another test
    rewrite(path, path.read_text(encoding="utf-8").replace("every Monday morning", "every Monday"))
    assert "renewal-reminder" in checklist_warnings(capsys, clone)


@pytest.mark.no_store
def test_check_and_fmt_ignore_the_record_and_the_old_local_one_is_not_read(capsys, ws):
    nurture = ws / "campaigns" / "nurture.yaml"
    (ws / ".engine").mkdir()
    (ws / ".engine" / "tested.json").write_text(json.dumps({"nurture": {"hash": sha(nurture), "at": "2026-07-01T00:00:00Z"}}))
    assert main(["-w", str(ws), "test", "partner-onboarding", "--partner", "p001", "--at", "2026-07-01"]) == 0
    capsys.readouterr()
    assert "nurture" in checklist_warnings(capsys, ws)  # a pass only one clone knew of is not read
    code, result, _ = run_json(capsys, "check", str(ws), "--json")
    assert not any(".tested.json" in e["path"] or ".tested.json" in e["message"] for e in result["errors"])
    code, out, _ = run(capsys, "fmt", "--check", str(ws))
    assert code == 0 and ".tested.json" not in out
    # a pass of a campaign whose file is gone is dropped at the next write
    (ws / "campaigns" / "gone.yaml").write_text(nurture.read_text(encoding="utf-8"), encoding="utf-8")
    assert main(["-w", str(ws), "test", "gone", "--at", "2026-07-01"]) == 0
    (ws / "campaigns" / "gone.yaml").unlink()
    assert main(["-w", str(ws), "test", "nurture", "--at", "2026-07-01"]) == 0
    capsys.readouterr()
    assert sorted(json.loads((ws / "campaigns" / ".tested.json").read_text())) == ["nurture", "partner-onboarding"]


@pytest.mark.no_store
def test_a_failing_test_records_nothing_and_a_read_only_record_is_a_warning(capsys, ws):
    path = ws / "campaigns" / "demo-invite.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace('"Let\'s book your product demo, {{ partner.name }}"',
                                                             '"{{ 1 / 0 }}"'), encoding="utf-8")
    code, out, _ = run(capsys, "-w", str(ws), "test", "demo-invite", "--partner", "p001", "--at", "2026-07-01")
    assert code == 1 and "FAILED" in out.splitlines()[0]
    assert not (ws / "campaigns" / ".tested.json").exists()
    (ws / "campaigns" / ".tested.json").mkdir()  # cannot be replaced by a file
    code, out, err = run(capsys, "-w", str(ws), "test", "nurture", "--at", "2026-07-01")
    assert code == 0 and "passed" in out.splitlines()[0]
    assert "warning: the pass was not recorded in campaigns/.tested.json" in err
