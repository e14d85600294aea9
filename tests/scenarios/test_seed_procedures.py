"""One scenario per seed product (issue 12): each walks the product manual's procedure end to end
with the command line, on a copy of the example workspace, as a marketer (alice), a viewer (bob)
and the engine's ticks would. Times are Helsinki time (the workspace's zone) unless marked Z.

1. Partner campaign list: start on a future date, the per-step view, Skip, Run Again, Pause,
   Run (resume), Remove (reset) and start again, bulk remove, only marketing may start.
2. Marketing-activity execution: on demand, only inside the window; mailing records; the log
   entry of each generated batch; activities; a response's follow-up at once, and its result.
3. Campaign and target-group management: summary counts, members from a static group, another
   campaign and a filter, keep-filter, prunes, single contacts; removal ends what it started.
4. Partner messaging: consent (opted out: pop-up, no email), roles that get nothing, pop-ups on
   their pages until read and in the message center after, Sent / Opens / Clicks / Read.
5. Campaign launch: a sample record shows which rulesets match; the Test function before
   launch and the launch checklist that asks for it; the campaign runs until it is stopped;
   the In-Campaign % monitor's alert when it drops below its level, and what to do.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.testing import copy_workspace

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def cli(tmp_path: Path, store_url, capsys, monkeypatch):
    """``cli(*argv)`` runs `engine -w COPY ...` and returns (exit code, stdout, stderr);
    ``cli.json(*argv)`` the parsed JSON of a read command that must succeed."""
    monkeypatch.delenv("ENGINE_USER", raising=False)
    root = copy_workspace(EXAMPLES, tmp_path / "examples")

    class Cli:
        workspace = root

        def __call__(self, *argv: str) -> tuple[int, str, str]:
            code = main(["-w", str(root), *argv])
            out, err = capsys.readouterr()
            return code, out, err

        def json(self, *argv: str):
            code, out, err = self(*argv, "--json")
            assert code == 0, err
            return json.loads(out)

        def ok(self, *argv: str) -> str:
            code, out, err = self(*argv)
            assert code == 0, (argv, err)
            return out

    return Cli()


def alice(at: str) -> tuple[str, ...]:
    return ("--as", "alice", "--at", at)


def enrollments(cli, pid: str) -> list[tuple]:
    return [(e["campaign"], e["number"], e["status"], e["reason"], e["started"])
            for e in cli.json("status", "--partner", pid)["enrollments"]]


def test_partner_campaign_list(cli):
    cli.ok("tick", "--at", "2026-07-01T08:00")
    # only users with marketing access may start campaigns
    code, _, err = cli("start", "demo-invite", "--partner", "p003", "--as", "bob", "--at", "2026-07-01T09:00")
    assert code == 3 and "marketing role" in err
    # start with a future start date: scheduled until then
    assert cli.ok("start", "demo-invite", "--partner", "p003", "--on", "2026-07-03", *alice("2026-07-01T09:00")) == \
        "scheduled: partner p003 in demo-invite (enrollment 1) on 2026-07-02T21:00:00+00:00\n"
    startable = {c["campaign"]: c["startable"] for c in cli.json("startable", "--partner", "p003")["campaigns"]}
    assert startable["demo-invite"] is False and startable["nurture"] is True
    cli.ok("tick", "--at", "2026-07-03T09:00")
    steps = {s["step"]: s["status"] for s in cli.json("steps", "demo-invite", "--partner", "p003")["steps"]}
    assert steps == {"demo-confirmation": "skipped", "prepare-demo": "executed", "demo": "pending",
                     "demo-recap": "pending"}  # p003 never opted in to email
    # Skip (a pending step) and Run Again (an executed one)
    cli.ok("skip", "demo-invite", "demo-recap", "--partner", "p003", *alice("2026-07-03T10:00"))
    assert cli.ok("rerun", "demo-invite", "prepare-demo", "--partner", "p003", *alice("2026-07-03T10:00")) == \
        "executed: step prepare-demo of partner p003 in demo-invite ran again\n"
    assert len([a for a in cli.json("activities", "--partner", "p003") if a["step"] == "prepare-demo"]) == 2
    # Pause, then Run: what fell due meanwhile is due at the resume
    cli.ok("pause", "demo-invite", "--partner", "p003", *alice("2026-07-03T11:00"))
    cli.ok("tick", "--at", "2026-07-06T09:00")
    assert "demo" not in {a["step"] for a in cli.json("activities", "--partner", "p003")}
    cli.ok("resume", "demo-invite", "--partner", "p003", *alice("2026-07-06T10:00"))
    cli.ok("tick", "--at", "2026-07-06T10:00")
    assert [a["created_at"] for a in cli.json("activities", "--partner", "p003") if a["step"] == "demo"] == [
        "2026-07-06T07:00:00Z"]
    # Remove is a reset: the partner may be started again
    cli.ok("remove", "demo-invite", "--partner", "p003", *alice("2026-07-06T11:00"))
    cli.ok("start", "demo-invite", "--partner", "p003", *alice("2026-07-06T11:00"))
    assert enrollments(cli, "p003") == [("demo-invite", 1, "removed", "removed", "manual"),
                                        ("demo-invite", 2, "active", None, "manual")]
    # bulk remove: many partners at once, all or none
    cli.ok("start", "demo-invite", "--partner", "p010", *alice("2026-07-06T11:00"))
    code, _, _ = cli("remove", "demo-invite", "--partner", "p003", "--partner", "p012", *alice("2026-07-06T12:00"))
    assert code == 3 and enrollments(cli, "p003")[-1][2] == "active"  # p012 has none: nothing removed
    cli.ok("remove", "demo-invite", "--partner", "p003", "--partner", "p010", *alice("2026-07-06T12:00"))
    members = cli.json("members", "demo-invite", "--status", "removed")["members"]
    assert [m["partner"] for m in members] == ["p003", "p010"]


def test_marketing_activity_execution(cli):
    cli.ok("tick", "--at", "2026-07-01T08:00")
    # on demand, only inside the campaign's start-end window (August and September)
    code, _, err = cli("execute", "summer-webinar", *alice("2026-07-15T10:00"))
    assert code == 3 and "only inside its window" in err
    done = cli.json("execute", "summer-webinar", *alice("2026-08-03T10:00"))
    assert done["enrolled"] > 0 and done["executed"] > 0
    mailings = cli.json("mailings", "--campaign", "summer-webinar")
    assert len(mailings) > 0 and {m["at"] for m in mailings} == {"2026-08-03T07:00:00Z"}
    # each batch of generated records is one log entry; the execution itself too
    log = [(e["action"], e["user"], e["detail"].get("step")) for e in cli.json("log", "--campaign", "summer-webinar")]
    assert ("execute", "alice", None) in log and ("step.executed", "engine", "invite") in log
    # the same audience is not invited twice when the scheduled time comes
    cli.ok("tick", "--at", "2026-08-20T10:00")
    invited = [m["partner"] for m in cli.json("mailings", "--campaign", "summer-webinar") if m["step"] == "invite"]
    assert sorted(invited) == sorted(m["partner"] for m in mailings)

    # activities for reps; a response assigns the partner to the follow-up at once
    cli.ok("start", "partner-onboarding", "--partner", "p003", *alice("2026-07-01T09:00"))
    cli.ok("tick", "--at", "2026-07-05T09:00")
    [call] = [a for a in cli.json("activities", "--partner", "p003") if a["step"] == "intro-call"]
    out = cli.ok("respond", call["id"], "interested", *alice("2026-07-05T10:00"))
    assert "demo-invite" in out
    assert ("demo-invite", 1, "active", None, "follow_up") in enrollments(cli, "p003")
    # the response records its result on the activity
    cli.ok("tick", "--at", "2026-07-06T10:00")
    [prepare] = [a for a in cli.json("activities", "--partner", "p003") if a["step"] == "prepare-demo"]
    cli.ok("respond", prepare["id"], "ready", *alice("2026-07-06T11:00"))
    [prepare] = [a for a in cli.json("activities", "--partner", "p003") if a["step"] == "prepare-demo"]
    assert (prepare["status"], prepare["response"], prepare["result"]) == ("completed", "ready", "successful")


def test_campaign_and_target_group_management(cli):
    cli.ok("tick", "--at", "2026-07-01T08:00")
    summary = cli.json("status", "--campaign", "nurture")
    assert summary["number"] and summary["active"] is True and summary["target_group"]["members"] == 0
    # members from a static group, another campaign, a filter, one by one
    assert cli.json("group", "nurture", "add-group", "summit-2026", *alice("2026-07-01T09:00"))["added"] == [
        "p001", "p005", "p013", "p020", "p027", "p033"]
    cli.ok("start", "demo-invite", "--partner", "p024", *alice("2026-07-01T09:00"))
    assert cli.json("group", "nurture", "copy-campaign", "demo-invite", *alice("2026-07-01T09:00"))["added"] == ["p024"]
    assert cli.json("group", "nurture", "add-filter", 'partner.company == "Nordic Widgets AB"',
                    *alice("2026-07-01T09:00"))["added"] == ["p015", "p016"]
    cli.ok("group", "nurture", "add", "p038", *alice("2026-07-01T09:00"))  # a sales rep: a member, never enrolled
    # prune: one per company (the oldest id), opt-outs
    assert cli.json("group", "nurture", "dedupe", "company", *alice("2026-07-01T09:00"))["removed"] == ["p016"]
    assert cli.json("group", "nurture", "dedupe", "opt-outs", *alice("2026-07-01T09:00"))["removed"] == ["p024"]
    cli.ok("tick", "--at", "2026-07-01T10:00")
    members = {m["partner"]: m["status"] for m in cli.json("members", "nurture")["members"]}
    assert members == {"p001": "active", "p005": "active", "p013": "active", "p015": "active", "p020": "active",
                       "p027": "active", "p033": "active", "p038": "member"}  # p038: a sales rep, never enrolled
    # keep only members matching a filter: the others leave the campaign with their membership
    kept = cli.json("group", "nurture", "keep-filter", 'partner.country == "FI"', "--dry-run", *alice("2026-07-02T09:00"))
    assert kept["removed"] == kept["ended"] == ["p013", "p015", "p020", "p027"]
    cli.ok("group", "nurture", "keep-filter", 'partner.country == "FI"', *alice("2026-07-02T09:00"))
    cli.ok("group", "nurture", "remove", "p005", *alice("2026-07-02T09:00"))
    cli.ok("tick", "--at", "2026-07-20T09:00")
    sent = {(m["partner"], m["step"]) for m in cli.json("mailings", "--campaign", "nurture")}
    assert sent == {("p001", "case-study"), ("p033", "case-study")}
    assert [e for e in enrollments(cli, "p013") if e[0] == "nurture"][-1][2:4] == ("removed", "target_group")


def test_partner_messaging(cli):
    events = cli.workspace / "engagement.jsonl"
    cli.ok("tick", "--at", "2026-07-01T08:00")
    onboarding = {m["partner"] for m in cli.json("members", "partner-onboarding")["members"]}
    assert "p038" not in onboarding and "p039" not in onboarding  # sales rep, default lead owner: nothing
    assert "p008" not in onboarding  # deactivated
    # an opted-out partner gets the pop-up but not the email; the consent ledger says why
    cli.ok("start", "partner-onboarding", "--partner", "p003", *alice("2026-07-01T09:00"))
    cli.ok("tick", "--at", "2026-07-13T09:00")
    steps = {s["step"]: (s["status"], s["reason"]) for s in cli.json("steps", "partner-onboarding", "--partner", "p003")["steps"]}
    assert steps["welcome"] == ("skipped", "no_consent") and steps["portal-note"] == ("executed", None)
    assert cli.json("consent", "--partner", "p003")["channels"]["email"]["consent"] is False
    # the pop-up shows on its pages until read, and stays in the message center
    [popup] = cli.json("popups", "--partner", "p003")
    pages = popup["pages"]
    assert [p["id"] for p in cli.json("popups", "--partner", "p003", "--page", pages[0])] == [popup["id"]]
    cli.ok("popup", "read", popup["id"], "--partner", "p003", *alice("2026-07-13T10:00"))
    assert cli.json("popups", "--partner", "p003", "--page", pages[0]) == []
    assert [p["read_at"] for p in cli.json("popups", "--partner", "p003")] == ["2026-07-13T07:00:00Z"]
    # Sent / Opens / Clicks per email, Read / Unread per pop-up
    [welcome] = [m for m in cli.json("mailings", "--campaign", "partner-onboarding") if m["step"] == "welcome"][:1]
    events.write_text("\n".join(json.dumps(e) for e in (
        {"type": "opened", "at": "2026-07-10T08:00:00Z", "partner": welcome["partner"], "message": welcome["id"]},
        {"type": "clicked", "at": "2026-07-10T08:01:00Z", "partner": welcome["partner"], "message": welcome["id"]},
    )) + "\n", encoding="utf-8")
    cli.ok("events", "import", str(events), *alice("2026-07-13T11:00"))
    rows = cli.json("stats", "partner-onboarding")["steps"]  # one row per step and language

    def total(step: str, key: str) -> int:
        return sum(r[key] for r in rows if r["step"] == step)

    assert (total("welcome", "unique_opens"), total("welcome", "unique_clicks")) == (1, 1)
    assert total("welcome", "sent") == len([m for m in cli.json("mailings", "--campaign", "partner-onboarding")
                                           if m["step"] == "welcome"])
    assert (total("portal-note", "read"), total("portal-note", "unread")) == (1, total("portal-note", "sent") - 1)


def test_campaign_launch(cli):
    # a sample record: which rulesets match it, and why
    explained = cli.json("explain", "partner-onboarding", "--partner", "p001", "--at", "2026-07-01T08:00")
    assert [r["name"] for r in explained["rulesets"] if r["match"]] == ["gold-fi", "big-spenders"]
    # the launch checklist asks for a passing Test of the file as it is
    _, out, _ = cli("check")
    assert "campaign partner-onboarding was never run through `engine test`" in out
    cli.ok("test", "partner-onboarding", "--at", "2026-07-01T08:00")
    _, out, _ = cli("check")
    assert "campaign partner-onboarding was never run" not in out
    assert json.loads((cli.workspace / "campaigns" / ".tested.json").read_text())["partner-onboarding"]["hash"]
    # launched: it runs, tick after tick, until it is stopped
    cli.ok("tick", "--at", "2026-07-01T08:00")
    active = cli.json("members", "partner-onboarding", "--status", "active")["members"]
    assert len(active) > 10
    # the monitor: pausing a fifth of the audience drops In-Campaign % below 90 %
    paused = [m["partner"] for m in active[:len(active) // 5 + 1]]
    cli.ok("pause", "partner-onboarding", *[a for p in paused for a in ("--partner", p)], *alice("2026-07-01T09:00"))
    report = cli.json("tick", "--at", "2026-07-01T10:00")
    [alert] = report["alerts"]
    assert alert["campaign"] == "partner-onboarding" and alert["dropped"][0]["reason"] == "paused"
    assert alert["suggestion"]
    assert [a["campaign"] for a in cli.json("alerts", "--open")] == ["partner-onboarding"]
    # stopped: switched off in its file, nothing more runs
    path = cli.workspace / "campaigns" / "partner-onboarding.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace("active: true", "active: false", 1), encoding="utf-8")
    before = len(cli.json("mailings", "--campaign", "partner-onboarding"))
    cli.ok("tick", "--at", "2026-07-20T10:00")
    assert len(cli.json("mailings", "--campaign", "partner-onboarding")) == before
    assert "campaign.deactivated" in [e["action"] for e in cli.json("log", "--campaign", "partner-onboarding")]
