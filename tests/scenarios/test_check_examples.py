"""`engine check` over the bundled workspaces: examples/ is clean, examples/broken/ has a
mistake of every kind, each reported at its exact line and column."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from campaigns.workspace import load_workspace
from engine.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
BROKEN = EXAMPLES / "broken"

EXPECTED_BROKEN = """\
campaigns/demo-invite.yaml:1:1: error: active campaign demo-invite has no description: add `description:` saying what it is for, or set `active: false` while it is a draft
campaigns/demo-invite.yaml:1:1: warning: campaign demo-invite was never run through `engine test` in its current form
campaigns/demo-invite.yaml:5:33: warning: '<' with null is always false; to test for a missing value use == null
campaigns/demo-invite.yaml:8:5: warning: engine.yaml sets no web.base_url: this email carries no one-click unsubscribe (List-Unsubscribe) and no open or click tracking
campaigns/demo-invite.yaml:8:39: warning: this marketing email has no unsubscribe link: add {{ unsubscribe_url }} to its body
campaigns/not-yaml.yaml:4:6: error: invalid YAML: did not find expected ',' or ']'; the likely mistake is at line 3: the '[' at column 13 is never closed with ']', so line 4 is read as part of it
campaigns/onboarding.yaml:1:1: warning: campaign onboarding was never run through `engine test` in its current form
campaigns/onboarding.yaml:6:68: error: unknown field 'countyr' of partner; did you mean 'country'?
campaigns/onboarding.yaml:7:32: error: 'gld' is not a value of partner.tier (silver, gold, platinum); did you mean 'gold'?
campaigns/onboarding.yaml:8:26: error: cannot compare number with string: partner.revenue is a number; compare it with a number such as 100, without quotes
campaigns/onboarding.yaml:9:16: error: unknown function 'lenght'; did you mean 'len'? (functions: bounced, clicked, coalesce, contains, days_since, ends_with, in_campaign, in_group, len, lower, matches, opened, responded, response, split, starts_with, upper, variant, was_in_campaign)
campaigns/onboarding.yaml:10:25: error: unknown group 'summit-2025'; did you mean 'summit-2026'?
campaigns/onboarding.yaml:13:24: error: syntax error: unexpected end of expression
campaigns/onboarding.yaml:18:5: warning: engine.yaml sets no web.base_url: this email carries no one-click unsubscribe (List-Unsubscribe) and no open or click tracking
campaigns/onboarding.yaml:19:29: error: undefined template variable 'parnter'; did you mean 'partner'?
campaigns/onboarding.yaml:20:17: warning: this marketing email has no unsubscribe link: add {{ unsubscribe_url }} to its body
campaigns/onboarding.yaml:23:22: error: unknown step 'welcom' in this campaign; did you mean 'welcome'?
campaigns/onboarding.yaml:28:53: error: unknown follow-up campaign 'demo-invit'; did you mean 'demo-invite'?
campaigns/onboarding.yaml:30:9: error: duplicate step id 'welcome' (first used on line 17)
campaigns/onboarding.yaml:31:32: error: unknown field 'nmae' of partner; did you mean 'name'?
campaigns/shapes.yaml:6:25: error: unknown group 'vip-list' (no groups/vip-list.csv)
campaigns/shapes.yaml:9:11: error: reenroll is never, after_exit or a duration such as 90d, not 'sometimes'
campaigns/shapes.yaml:12:24: error: unknown template 'letter.txt.j2' (no templates/letter.txt.j2)
campaigns/shapes.yaml:15:13: error: 'survy' is not one of call, meeting, survey, work_order, task; did you mean 'survey'?
campaigns/shapes.yaml:16:7: error: unknown key 'subjct'; did you mean 'subject'?
campaigns/shapes.yaml:17:11: error: '3 days' is not a duration such as 30m, 12h, 3d or 2w
engine.yaml:19:16: error: unknown field 'sms_opt_in' of partner
partners.csv:3:30: error: field 'tier': 'golden' is not one of silver, gold, platinum
partners.csv:4:43: error: field 'revenue': expected a number, got 'lots'
partners.csv:4:48: error: field 'joined_at': expected a date (YYYY-MM-DD), got '2025-13-01'
templates/welcome.html.j2:2:39: error: unknown field 'account_manager' of partner
""".splitlines()


def engine(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True, text=True, cwd=ROOT, env=env)


def test_the_example_workspace_is_clean() -> None:
    result = engine("check", "examples/")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    workspace = load_workspace(EXAMPLES)
    assert workspace.diagnostics == []
    assert len(workspace.campaigns) >= 3


def test_the_broken_workspace_reports_every_mistake_at_its_position() -> None:
    result = engine("check", "examples/broken/")
    assert result.returncode == 1
    headlines = [line.removeprefix("examples/broken/") for line in result.stdout.splitlines() if line.startswith("examples/")]
    assert headlines == EXPECTED_BROKEN
    assert result.stdout.rstrip().endswith("24 errors, 7 warnings")
    assert "Traceback" not in result.stdout + result.stderr


def test_each_error_is_followed_by_its_source_line_and_a_caret() -> None:
    lines = engine("check", "examples/broken/").stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if "countyr" in line and "error" in line)
    assert lines[at + 1].strip().startswith('gold-fi: "partner.tier in')
    caret = lines[at + 2]
    assert caret.strip() == "^~~~~~~"
    assert lines[at + 1][caret.index("^") : caret.index("^") + 7] == "countyr"


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(BROKEN), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    first = report["errors"][0]
    assert set(first) == {"path", "line", "col", "message", "severity"}
    assert first["path"].endswith("campaigns/demo-invite.yaml") and first["severity"] == "error"  # no description
    assert len(report["errors"]) == len(EXPECTED_BROKEN)


def test_one_campaign_file_can_be_checked_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(BROKEN / "campaigns" / "demo-invite.yaml"), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    paths = {Path(e["path"]).name for e in report["errors"]}
    assert "onboarding.yaml" not in paths and "demo-invite.yaml" in paths


def test_strict_makes_warnings_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(BROKEN / "campaigns" / "demo-invite.yaml"), "--strict", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert {e["severity"] for e in report["errors"]} == {"error"}


def test_usage_errors_exit_2() -> None:
    assert engine("check", "no/such/dir").returncode == 2
    assert engine("frobnicate").returncode == 2
    assert engine("check", "--bogus").returncode == 2


def test_a_directory_without_engine_yaml_is_reported(tmp_path: Path) -> None:
    result = engine("check", str(tmp_path))
    assert result.returncode == 1
    assert "not a workspace" in result.stdout


def test_schema_is_json_schema_of_campaign_files() -> None:
    result = engine("schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    assert {"audience", "trigger", "steps", "window", "reenroll"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
