"""The launch checklist of `engine check`: what an active campaign must have, and the warning
for content that never went through `engine test`."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from campaigns.checklist import content_hash, launch_checklist
from campaigns.workspace import load_workspace
from engine import dryrun
from engine.clock import parse_time
from engine.testing import copy_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SETTINGS = """\
timezone: Europe/Helsinki
partners:
  source: partners.csv
  fields:
    name: string
    email: string
    country: string
    supplier_emails: bool
consent:
  email: partner.supplier_emails
"""

COMPLETE = """\
name: Complete
description: Everything a launch needs.
active: true
audience:
  rulesets:
    finns: partner.country == "FI"
steps:
  - id: hello
    email: {subject: "Hello {{ partner.name }}", body: "Hi"}
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "campaigns").mkdir(parents=True)
    (root / "groups").mkdir()
    (root / "engine.yaml").write_text(SETTINGS)
    (root / "partners.csv").write_text("id,name,email,country,supplier_emails\np1,Pia,pia@example.fi,FI,true\n")
    (root / "groups" / "vip.csv").write_text("id\np1\n")
    return root


def write(root: Path, name: str, text: str) -> Path:
    path = root / "campaigns" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def found(root: Path, tested: dict[str, str] | None = None) -> list[str]:
    workspace = load_workspace(root)
    assert workspace.ok, [d.headline() for d in workspace.diagnostics]
    return [f"{Path(d.span.path).name}:{d.span.line}:{d.span.col}: {d.severity}: {d.message}"
            for d in launch_checklist(workspace, tested or {})]


def test_a_complete_campaign_only_needs_a_test(root: Path) -> None:
    path = write(root, "complete", COMPLETE)
    assert found(root) == [
        "complete.yaml:1:1: warning: campaign complete was never run through `engine test` in its current form"]
    assert found(root, {"complete": sha(path)}) == []
    assert found(root, {"complete": "0" * 64}) != []  # tested, but not in this form


def test_an_edit_after_the_test_needs_another_one(root: Path) -> None:
    path = write(root, "complete", COMPLETE)
    tested = {"complete": sha(path)}
    path.write_text(COMPLETE.replace("Hi", "Hi there"))
    assert found(root, tested) == [
        "complete.yaml:1:1: warning: campaign complete was never run through `engine test` in its current form"]


def test_missing_keys_are_errors_on_the_first_line(root: Path) -> None:
    write(root, "bare", "# a campaign that is nothing yet\nowner: me@example.com\n")
    assert [m.split(": ", 2)[:2] for m in found(root)] == [
        ["bare.yaml:1:1", "error"], ["bare.yaml:1:1", "error"], ["bare.yaml:1:1", "error"],
        ["bare.yaml:1:1", "error"], ["bare.yaml:1:1", "warning"]]
    messages = [m.split(": ", 2)[2] for m in found(root)]
    assert messages[0].startswith("active campaign bare has no name: add `name:`")
    assert messages[1].startswith("active campaign bare has no description")
    assert messages[2].startswith("active campaign bare has an audience with no ruleset and no group")
    assert messages[3].startswith("active campaign bare has no step")
    assert messages[4] == "campaign bare was never run through `engine test` in its current form"


def test_empty_keys_are_errors_at_the_key(root: Path) -> None:
    write(root, "empty", "active: true\nname:\ndescription: '  '\naudience: {exclude: partner.country == \"SE\"}\n"
                         "steps:\n  - wait: 1d\n")
    assert [m for m in found(root) if ": error: " in m] == [
        "empty.yaml:2:1: error: active campaign empty has no name: add `name:` or set `active: false` while it is a draft",
        "empty.yaml:3:1: error: active campaign empty has no description: add `description:` saying what it is for, "
        "or set `active: false` while it is a draft",
        "empty.yaml:4:1: error: active campaign empty has an audience with no ruleset and no group: it would reach "
        "nobody; add `audience.rulesets` or `audience.groups`, or set `active: false` while it is a draft",
        "empty.yaml:5:1: error: active campaign empty has only waits: add at least one email, sms, popup, activity "
        "or letter step, or set `active: false` while it is a draft",
    ]


def test_a_group_is_audience_enough_and_empty_steps_point_at_steps(root: Path) -> None:
    write(root, "grouped", "name: Grouped\ndescription: VIPs.\naudience:\n  groups: [vip]\nsteps: []\n")
    assert [m for m in found(root) if ": error: " in m] == [
        "grouped.yaml:5:1: error: active campaign grouped has no step: add at least one email, sms, popup, activity "
        "or letter step, or set `active: false` while it is a draft"]


def test_drafts_are_not_checked(root: Path) -> None:
    write(root, "draft", "active: false\nsteps: []\n")
    assert found(root) == []


def test_a_campaign_without_active_is_active(root: Path) -> None:
    write(root, "implicit", "steps: []\n")
    assert len([m for m in found(root) if ": error: " in m]) == 4


def test_files_with_shape_errors_are_left_to_engine_check(root: Path) -> None:
    write(root, "shapeless", "name: [not, text]\nsteps: []\n")
    workspace = load_workspace(root)
    assert not workspace.ok
    assert launch_checklist(workspace, {}) == []


def test_hashes_may_be_given_by_the_caller(root: Path) -> None:
    path = write(root, "complete", COMPLETE)
    workspace = load_workspace(root)
    assert content_hash(workspace.files["complete"]) == sha(path)
    assert launch_checklist(workspace, {"complete": "h"}, hashes={"complete": "h"}) == []


def test_a_crlf_checkout_has_the_hash_of_the_lf_one(root: Path) -> None:
    """git's core.autocrlf checks a file out with CRLF on one clone and LF on another: the pass
    recorded on one counts on the other."""
    path = root / "campaigns" / "crlf.yaml"
    lf = COMPLETE.replace("Complete", "Crlf").encode()
    path.write_bytes(lf.replace(b"\n", b"\r\n"))
    workspace = load_workspace(root)
    assert content_hash(workspace.files["crlf"]) == hashlib.sha256(lf).hexdigest()
    assert launch_checklist(workspace, {"crlf": hashlib.sha256(lf).hexdigest()}) == []


# --- the examples ---------------------------------------------------------------------------------


def test_the_active_examples_pass_the_checklist_but_were_never_tested() -> None:
    workspace = load_workspace(EXAMPLES)
    active = sorted(cid for cid, f in workspace.files.items() if f.campaign is not None and f.campaign.active)
    diagnostics = launch_checklist(workspace, {})
    assert [d.severity for d in diagnostics] == ["warning"] * len(active)
    assert [d.message for d in diagnostics] == [
        f"campaign {cid} was never run through `engine test` in its current form" for cid in active]
    assert [(Path(d.span.path).stem, d.span.line, d.span.col) for d in diagnostics] == [(cid, 1, 1) for cid in active]


def test_engine_test_passes_silence_the_warnings(tmp_path: Path) -> None:
    root = copy_workspace(EXAMPLES, tmp_path / "ws")
    at = parse_time("2026-07-01T00:00", load_workspace(root, check_partners=False).tz)
    for cid in ("partner-onboarding", "renewal-reminder"):
        assert dryrun.dry_run(root, cid, None, None, at)["passed"]
    workspace = load_workspace(root)
    left = {Path(d.span.path).stem for d in launch_checklist(workspace, dryrun.tested_hashes(root))}
    assert left == {"collections", "demo-invite", "nurture", "pay-by-portal", "payment-failed", "summer-webinar"}
