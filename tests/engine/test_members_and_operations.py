"""Target groups that really remove, member lists, several campaigns at once, `startable`,
`execute`, refusals, active contacts only, free results, `init`, and operations before the first
tick (issue 12), through the command line: exit code, output, and the store afterwards.

The workspaces are test_tick's (partner schema with ``active: bool``, consent ``partner.ok``),
with users alice (marketing) and bob (viewer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.testing import dump_store, rewrite
from tests.engine.test_tick import campaign, email, partner, partners_csv, wait, workspace

T0 = "2026-07-01T00:00Z"
USERS = "users:\n  alice: {roles: [marketing]}\n  bob: {roles: [viewer]}\n"
TWO_STEPS = email("hello") + wait("5d") + email("bye")
MEMBERS_ONLY = campaign(trigger="", steps=TWO_STEPS)  # no trigger: the target group is who it has
EVERYONE = campaign(steps=TWO_STEPS)


@pytest.fixture(autouse=True)
def _no_engine_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ENGINE_USER", raising=False)


def run(root: Path, capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["-w", str(root), *argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused_unchanged(root: Path, capsys, *argv: str) -> str:
    """Run a command that must be refused (exit 3) without changing the store; its stderr."""
    before = dump_store(root)
    code, _, err = run(root, capsys, *argv)
    assert (code, dump_store(root) == before) == (3, True), err
    assert err.startswith("engine: refused: ") and err.count("\n") == 1
    return err


def as_alice(at: str) -> tuple[str, ...]:
    return ("--as", "alice", "--at", at)


def made(tmp_path: Path, make_engine, campaigns: dict[str, str], *rows, groups: dict[str, list[str]] | None = None):
    root = workspace(tmp_path, campaigns, partners_csv(*(rows or [partner(p) for p in ("p1", "p2", "p3")])), USERS)
    for name, ids in (groups or {}).items():
        (root / "groups").mkdir(exist_ok=True)
        (root / "groups" / f"{name}.csv").write_text("id\n" + "".join(f"{i}\n" for i in ids), encoding="utf-8")
    return make_engine(root, at=T0)


def emails(engine, cid: str) -> list[tuple[str, str]]:
    return [(m["partner"], m["step"]) for m in engine.outbox("email", campaign=cid)]


def latest(engine, pid: str, cid: str) -> tuple:
    e = engine.status(partner=pid, campaign=cid)["enrollments"][-1]
    return e["status"], e["reason"], e["started"]


# --- target groups that remove --------------------------------------------------------------------


def test_removing_members_ends_only_the_enrollments_the_target_group_started(tmp_path, make_engine, capsys):
    engine = made(tmp_path, make_engine, {"promo": MEMBERS_ONLY})
    engine.tick(T0)
    for pid in ("p1", "p2"):
        engine.group("promo", "add", pid, user="alice", at=T0)
    engine.start("promo", "p3", user="alice", at=T0)  # a person's start: not the group's
    engine.group("promo", "add", "p3", user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    assert sorted(emails(engine, "promo")) == [("p1", "hello"), ("p2", "hello"), ("p3", "hello")]

    before = dump_store(engine.root)
    code, out, _ = run(engine.root, capsys, "group", "promo", "keep-filter", 'partner.id == "p2"', "--dry-run",
                       *as_alice("2026-07-02T00:00Z"))
    assert (code, out) == (0, "promo keep-filter (dry run): 0 would be added, 2 would go, leaving 1 members; "
                              "1 of them would leave the campaign too\n"
                              "  - p1  (enrollment removed: target_group)\n  - p3\n")
    assert dump_store(engine.root) == before

    code, out, _ = run(engine.root, capsys, "group", "promo", "keep-filter", 'partner.id == "p2"', "--json",
                       *as_alice("2026-07-02T00:00Z"))
    assert code == 0 and json.loads(out)["ended"] == ["p1"]
    assert latest(engine, "p1", "promo") == ("removed", "target_group", "group")
    assert latest(engine, "p3", "promo") == ("active", None, "manual")  # started by alice: stays
    assert [(e["action"], e["partner"], e["detail"]["reason"]) for e in engine.log("promo")
            if e["action"] == "remove"] == [("remove", "p1", "target_group")]

    engine.tick("2026-07-10T00:00Z")
    assert sorted(emails(engine, "promo")) == [("p1", "hello"), ("p2", "bye"), ("p2", "hello"), ("p3", "bye"),
                                               ("p3", "hello")]


def test_a_partner_leaving_the_static_group_file_leaves_the_campaign_at_the_next_tick(tmp_path, make_engine):
    engine = made(tmp_path, make_engine, {"promo": MEMBERS_ONLY}, groups={"vip": ["p1", "p2"]})
    engine.tick(T0)
    engine.group("promo", "add-group", "vip", user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    rewrite(engine.root / "groups" / "vip.csv", "id\np2\n")
    engine.tick("2026-07-02T00:00Z")
    assert engine.store.members("promo") == {"p2": "group:vip"}
    assert latest(engine, "p1", "promo") == ("removed", "target_group", "group")
    engine.tick("2026-07-10T00:00Z")
    assert sorted(emails(engine, "promo")) == [("p1", "hello"), ("p2", "bye"), ("p2", "hello")]
    assert [(e["action"], e["detail"]) for e in engine.log("promo") if e["action"] == "group.left"] == [
        ("group.left", {"removed": 1, "ended": 1})]


def test_remove_campaign_removes_the_members_another_campaign_has(tmp_path, make_engine, capsys):
    engine = made(tmp_path, make_engine, {"promo": MEMBERS_ONLY, "other": MEMBERS_ONLY})
    engine.tick(T0)
    for pid in ("p1", "p2", "p3"):
        engine.group("promo", "add", pid, user="alice", at=T0)
    engine.group("other", "add", "p1", user="alice", at=T0)
    engine.start("other", "p3", user="alice", at=T0)
    code, out, err = run(engine.root, capsys, "group", "promo", "remove-campaign", "other", *as_alice(T0))
    assert (code, out) == (0, "promo remove-campaign: 0 added, 2 removed, 1 members now; 0 of them left the "
                              "campaign too\n  - p1\n  - p3\n"), err
    assert engine.store.members("promo") == {"p2": "partner"}


# --- engine members ---------------------------------------------------------------------------------


def test_members_lists_members_and_enrollees_with_origin_status_and_steps_a_page_at_a_time(tmp_path, make_engine, capsys):
    follow = campaign(trigger="", steps=email("ask").replace(
        "    email: {", "    email: {responses: {yes: {result: successful, follow_up: promo}}, "))
    rows = [partner(f"p{i}") for i in range(1, 6)] + [partner("p6", tier="silver")]
    engine = made(tmp_path, make_engine, {"promo": campaign(steps=TWO_STEPS, audience='gold: partner.tier == "gold"'),
                                          "ask": follow}, *rows)
    engine.tick(T0)  # p1..p5 enrolled by the trigger (automatic)
    engine.group("promo", "add", "p6", user="alice", at="2026-07-01T01:00Z")  # a member, not enrolled yet
    engine.start("ask", "p6", user="alice", at="2026-07-01T01:00Z")
    engine.tick("2026-07-01T02:00Z")  # p6: "ask" sent, and enrolled in promo as a member
    [ask] = [m["id"] for m in engine.outbox("email", campaign="ask")]
    engine.remove("promo", ["p2", "p6"], user="alice", at="2026-07-01T03:00Z")
    engine.respond(ask, "yes", user="alice", at="2026-07-01T04:00Z")  # follow-up: p6 in promo again

    code, out, err = run(engine.root, capsys, "members", "promo", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert (data["total"], data["pages"]) == (6, 1)
    found = {m["partner"]: (m["member"], m["status"], m["origin"], m["executed"]) for m in data["members"]}
    assert found == {"p1": (False, "active", "automatic", ["hello"]), "p2": (False, "removed", "automatic", ["hello"]),
                     "p3": (False, "active", "automatic", ["hello"]), "p4": (False, "active", "automatic", ["hello"]),
                     "p5": (False, "active", "automatic", ["hello"]), "p6": (True, "active", "follow_up", [])}

    code, out, _ = run(engine.root, capsys, "members", "promo", "--per-page", "2", "--page", "2")
    assert out.splitlines()[0] == "promo: 6 members and enrollees, page 2 of 3"
    assert [line.split()[0] for line in out.splitlines()[2:4]] == ["p3", "p4"]
    assert out.splitlines()[-1] == "… --page 3 for the next 2"

    code, out, _ = run(engine.root, capsys, "members", "promo", "--status", "removed", "--json")
    assert [m["partner"] for m in json.loads(out)["members"]] == ["p2"]
    engine.group("promo", "add", "p2", user="alice", at="2026-07-01T05:00Z")
    code, out, _ = run(engine.root, capsys, "members", "promo", "--status", "removed")
    assert "p2       partner" in out
    assert run(engine.root, capsys, "members", "nope")[0] == 1
    assert run(engine.root, capsys, "members", "promo", "--page", "0")[0] == 2
    _, out, _ = run(engine.root, capsys, "status", "--partner", "p6")  # the text says follow_up, as the JSON does
    assert [line.split()[5] for line in out.splitlines()[2:] if line.split()[1] == "promo"] == ["group", "follow_up"]


def test_status_text_shows_how_each_enrollment_started(tmp_path, make_engine, capsys):
    engine = made(tmp_path, make_engine, {"promo": MEMBERS_ONLY, "all": EVERYONE})
    engine.tick(T0)
    engine.group("promo", "add", "p1", user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    _, out, _ = run(engine.root, capsys, "status", "--partner", "p1")
    started = {line.split()[1]: line.split()[5] for line in out.splitlines()[2:]}
    assert started == {"all": "automatic", "promo": "group"}


# --- several campaigns, startable, refusals -------------------------------------------------------------


def test_pause_resume_remove_take_several_campaigns_all_or_nothing(tmp_path, make_engine, capsys):
    engine = made(tmp_path, make_engine, {"a": MEMBERS_ONLY, "b": MEMBERS_ONLY, "c": MEMBERS_ONLY})
    engine.tick(T0)
    engine.start("a", "p1", user="alice", at=T0)
    engine.start("b", "p1", user="alice", at=T0)
    refused_unchanged(engine.root, capsys, "pause", "a", "b", "c", "--partner", "p1", *as_alice("2026-07-01T01:00Z"))
    code, out, err = run(engine.root, capsys, "pause", "a", "b", "--partner", "p1", *as_alice("2026-07-01T01:00Z"))
    assert (code, out) == (0, "paused: partner p1 in a (enrollment 1)\npaused: partner p1 in b (enrollment 1)\n"), err
    code, out, _ = run(engine.root, capsys, "remove", "a", "b", "--partner", "p1", *as_alice("2026-07-01T02:00Z"))
    assert code == 0 and [latest(engine, "p1", c)[0] for c in "ab"] == ["removed", "removed"]
    assert run(engine.root, capsys, "remove", "a", "nope", "--partner", "p1", *as_alice("2026-07-01T02:00Z"))[0] == 1


def test_startable_lists_where_the_partner_can_still_be_started_and_why_not(tmp_path, make_engine, capsys):
    off = MEMBERS_ONLY.replace("name: Test\n", "name: Off\nactive: false\n")
    engine = made(tmp_path, make_engine, {"a": MEMBERS_ONLY, "b": MEMBERS_ONLY, "off": off, "broken": "steps: 3\n"})
    engine.tick(T0)
    engine.start("a", "p1", user="alice", at=T0)
    code, out, err = run(engine.root, capsys, "startable", "--partner", "p1", "--json")
    assert code == 0, err
    found = {c["campaign"]: (c["startable"], c["why_not"]) for c in json.loads(out)["campaigns"]}
    assert found["b"] == (True, None)
    assert found["a"] == (False, "already in it (scheduled, active or paused)")
    assert found["off"][0] is False and "not active" in found["off"][1]
    assert found["broken"] == (False, "the campaign file has errors (see engine check)")
    code, out, _ = run(engine.root, capsys, "startable", "--partner", "p1")
    assert out.splitlines()[0] == "partner p1 can be started in 1 of 4 campaigns"
    assert run(engine.root, capsys, "startable", "--partner", "nobody")[0] == 1


def test_start_is_refused_in_an_inactive_campaign_and_additions_to_a_locked_one_shot(tmp_path, make_engine, capsys):
    off = MEMBERS_ONLY.replace("name: Test\n", "name: Off\nactive: false\n")
    once = campaign(trigger="at: 2026-07-01T06:00", steps=email("hello"), audience='one: partner.id == "p1"')
    engine = made(tmp_path, make_engine, {"off": off, "once": once})
    engine.tick(T0)
    err = refused_unchanged(engine.root, capsys, "start", "off", "--partner", "p1", *as_alice(T0))
    assert "campaign off is not active" in err
    engine.tick("2026-07-01T07:00Z")  # once fires: it sent, so it is locked
    assert emails(engine, "once") == [("p1", "hello")]
    for argv in (("start", "once", "--partner", "p2"), ("group", "once", "add", "p2"),
                 ("group", "once", "add-filter", "true")):
        err = refused_unchanged(engine.root, capsys, *argv, *as_alice("2026-07-01T08:00Z"))
        assert "started sending at 2026-07-01T06:00:00Z and is locked" in err
    code, out, _ = run(engine.root, capsys, "group", "once", "add-filter", "false", *as_alice("2026-07-01T08:00Z"))
    assert code == 0  # adds no one: nothing to refuse


# --- engine execute ----------------------------------------------------------------------------------


def test_execute_fires_the_trigger_now_and_sends_at_once_inside_the_window_only(tmp_path, make_engine, capsys):
    weekly = campaign(trigger="cron: '0 9 * * MON'", steps=email("hello"), audience='gold: partner.tier == "gold"',
                      extra="window: {start: 2026-07-01, end: 2026-07-31}\n")
    events = campaign(trigger="event: signed", steps=email("hello"))
    members = MEMBERS_ONLY
    engine = made(tmp_path, make_engine, {"weekly": weekly, "events": events, "members": members},
                  partner("p1"), partner("p2"), partner("p3", tier="silver"))
    engine.tick(T0)  # a Wednesday: the cron's first Monday is 6 July
    assert refused_unchanged(engine.root, capsys, "execute", "weekly", "--as", "bob", "--at", "2026-07-01T10:00Z")
    code, out, err = run(engine.root, capsys, "execute", "weekly", "--json", *as_alice("2026-07-01T10:00Z"))
    assert code == 0, err
    assert {k: json.loads(out)[k] for k in ("enrolled", "executed", "delivered")} == {
        "enrolled": 2, "executed": 2, "delivered": 2}
    assert [(m["partner"], m["at"]) for m in engine.outbox("email", campaign="weekly")] == [
        ("p1", "2026-07-01T10:00:00Z"), ("p2", "2026-07-01T10:00:00Z")]
    assert [e["action"] for e in engine.log("weekly")][-1] == "execute"

    err = refused_unchanged(engine.root, capsys, "execute", "weekly", *as_alice("2026-08-03T10:00Z"))
    assert "only inside its window, 2026-07-01 to 2026-07-31" in err
    assert "import them" in refused_unchanged(engine.root, capsys, "execute", "events", *as_alice("2026-07-01T10:00Z"))

    engine.group("members", "add", "p3", user="alice", at="2026-07-01T10:00Z")
    code, out, _ = run(engine.root, capsys, "execute", "members", *as_alice("2026-07-01T11:00Z"))
    assert out == "executed members at 2026-07-01T11:00:00Z: 1 enrolled, 1 steps executed, 0 skipped, 0 failed\n"
    assert emails(engine, "members") == [("p3", "hello")]


# --- active contacts only -------------------------------------------------------------------------------


def test_inactive_partners_are_never_enrolled_unless_the_audience_includes_them(tmp_path, make_engine, capsys):
    opted_in = campaign(steps=email("hello")).replace("audience:\n", "audience:\n  include_inactive: true\n")
    engine = made(tmp_path, make_engine, {"all": EVERYONE, "opted": opted_in, "promo": MEMBERS_ONLY},
                  partner("p1"), partner("p2", active=False), partner("p3", active=None))
    engine.group("promo", "add", "p2", user="alice", at=T0)
    engine.tick(T0)
    assert sorted(emails(engine, "all")) == [("p1", "hello"), ("p3", "hello")]  # empty: not known to be inactive
    assert sorted(emails(engine, "opted")) == [("p1", "hello"), ("p2", "hello"), ("p3", "hello")]
    assert emails(engine, "promo") == []
    code, out, _ = run(engine.root, capsys, "explain", "all", "--partner", "p2", "--json")
    assert json.loads(out)["exclude"]["by"] == "inactive contact"
    engine.start("all", "p2", user="alice", at="2026-07-01T01:00Z")  # a person's choice: allowed
    assert latest(engine, "p2", "all")[0] == "active"


# --- results ----------------------------------------------------------------------------------------------


def test_complete_takes_a_free_result_for_an_activity_without_responses(tmp_path, make_engine, capsys):
    task = campaign(trigger="", steps="  - id: visit\n    activity: {kind: task, assignee: rep@example.com, subject: Visit}\n"
                                      "  - id: call\n    activity: {kind: call, assignee: rep@example.com, subject: Call,"
                                      " responses: {done: {result: successful}}}\n")
    engine = made(tmp_path, make_engine, {"task": task})
    engine.tick(T0)
    engine.start("task", "p1", user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    ids = {a["step"]: a["id"] for a in engine.activities(campaign="task")}
    code, out, err = run(engine.root, capsys, "complete", ids["visit"], "--result", "met the CFO", *as_alice("2026-07-02T00:00Z"))
    assert (code, out) == (0, f"completed: activity {ids['visit']} (task / visit, partner p1): met the CFO\n"), err
    [done] = [a for a in engine.activities(campaign="task") if a["step"] == "visit"]
    assert (done["status"], done["result"], done["response"]) == ("completed", "met the CFO", None)
    assert "completed already" in refused_unchanged(engine.root, capsys, "complete", ids["visit"], "--result", "x",
                                                    *as_alice("2026-07-02T00:00Z"))
    assert "engine respond" in refused_unchanged(engine.root, capsys, "complete", ids["call"], "--result", "x",
                                                 *as_alice("2026-07-02T00:00Z"))
    assert run(engine.root, capsys, "complete", "nope", "--result", "x", *as_alice("2026-07-02T00:00Z"))[0] == 1


def test_a_response_records_one_of_the_declared_results_and_the_mailing_shows_it(tmp_path, make_engine, capsys):
    asking = campaign(trigger="", steps=email("ask").replace(
        "    email: {", "    email: {responses: {yes: {result: successful}, later: {result: call-back}}, "))
    root = workspace(tmp_path, {"ask": asking}, partners_csv(partner("p1")), USERS)
    code, out, err = run(root, capsys, "check")
    assert code == 1 and "error: unknown result 'call-back': a response records one of successful, unsuccessful, " \
                         "postponed, failed" in out + err
    rewrite(root / "engine.yaml", (root / "engine.yaml").read_text() + "results: [successful, call-back]\n")
    assert "unknown result" not in "".join(run(root, capsys, "check")[1:])
    engine = make_engine(root, at=T0)
    engine.start("ask", "p1", user="alice", at=T0)
    engine.tick("2026-07-01T01:00Z")
    [mail] = engine.outbox("email", campaign="ask")
    engine.respond(mail["id"], "later", user="alice", at="2026-07-02T00:00Z")
    code, out, _ = run(engine.root, capsys, "mailings", "--campaign", "ask", "--json")
    assert [(m["response"], m["result"]) for m in json.loads(out)] == [("later", "call-back")]


# --- before the first tick, and engine init ------------------------------------------------------------------


def test_operations_and_reads_work_before_the_first_tick(tmp_path, make_engine, capsys):
    engine = made(tmp_path, make_engine, {"promo": MEMBERS_ONLY})
    root = engine.root
    assert run(root, capsys, "explain", "promo", "--partner", "p1")[0] == 0
    assert run(root, capsys, "group", "promo", "add", "p2", *as_alice(T0))[0] == 0
    code, out, err = run(root, capsys, "start", "promo", "--partner", "p1", *as_alice(T0))
    assert (code, out) == (0, "active: partner p1 in promo (enrollment 1)\n"), err
    rewrite(root / "partners.csv", partners_csv(partner("p1"), partner("p2"), partner("p9")))  # the CRM's new export
    assert run(root, capsys, "start", "promo", "--partner", "p9", *as_alice("2026-07-01T00:30Z"))[0] == 0
    engine.tick("2026-07-01T01:00Z")
    assert sorted(emails(engine, "promo")) == [("p1", "hello"), ("p2", "hello"), ("p9", "hello")]


@pytest.mark.no_store
def test_init_writes_a_workspace_that_checks_and_ticks_and_refuses_to_overwrite(tmp_path, capsys):
    target = tmp_path / "new"
    code = main(["init", str(target)])
    out, _ = capsys.readouterr()
    assert code == 0 and "wrote" in out
    assert (target / ".gitignore").read_text() == ".engine/\n"
    assert main(["-w", str(target), "check"]) == 0
    assert main(["-w", str(target), "tick", "--at", "2026-07-01T09:00Z"]) == 0
    sent = [json.loads(line) for line in (target / ".engine" / "outbox" / "email.jsonl").read_text().splitlines()]
    assert sorted(m["partner"] for m in sent) == ["p001", "p002"]  # p003 is inactive
    capsys.readouterr()

    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and ".engine" not in p.parts}
    assert main(["init", str(target)]) == 1
    assert capsys.readouterr().err.startswith("engine: error: ")
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file() and ".engine" not in p.parts} == before

    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / ".gitignore").write_text("*.pyc", encoding="utf-8")
    assert main(["init", str(kept)]) == 0
    assert (kept / ".gitignore").read_text() == "*.pyc\n.engine/\n"
