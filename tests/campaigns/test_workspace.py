"""Loading a whole workspace: cross-file checks, salvage of broken files, and no exception for
any content of a campaign file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.workspace import find_root, load_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine"))
    return root


def write_campaign(root: Path, name: str, text: str) -> Path:
    path = root / "campaigns" / f"{name}.yaml"
    path.write_text(text)
    return path


def messages(root: Path) -> list[str]:
    return [f"{Path(d.span.path).name}:{d.span.line}:{d.span.col}: {d.message}" for d in load_workspace(root).diagnostics]


def test_the_examples_load_into_runnable_campaigns() -> None:
    workspace = load_workspace(EXAMPLES)
    assert workspace.ok
    assert set(workspace.campaigns) >= {"partner-onboarding", "renewal-reminder", "payment-failed", "summer-webinar"}
    assert workspace.partners is not None and len(workspace.partners.records) >= 30
    assert workspace.schema["tier"].values == ("silver", "gold", "platinum")


def test_event_is_only_known_in_an_event_trigger(workspace: Path) -> None:
    write_campaign(workspace, "x", "audience:\n  rulesets:\n    big: event.amount > 100\nsteps: []\n")
    (found,) = messages(workspace)
    assert found.startswith("x.yaml:3:10:") and "'event' is only available" in found


def test_an_event_trigger_condition_may_use_the_event(workspace: Path) -> None:
    write_campaign(workspace, "x", "trigger:\n  event: invoice.paid\n  when: event.amount > 100\nsteps: []\n")
    assert messages(workspace) == []


def test_step_functions_in_settings_are_refused(workspace: Path) -> None:
    settings_file = workspace / "engine.yaml"
    settings_file.write_text(settings_file.read_text().replace("email: partner.supplier_emails", 'email: opened("welcome")', 1))
    found = messages(workspace)
    assert any("engine.yaml" in m and "only available inside a campaign" in m for m in found), found


def test_a_broken_file_is_not_run_but_the_others_are(workspace: Path) -> None:
    write_campaign(workspace, "broken", "name: [unclosed\n")
    loaded = load_workspace(workspace)
    assert not loaded.ok
    assert "broken" not in loaded.campaigns and "partner-onboarding" in loaded.campaigns


def test_shape_errors_do_not_hide_cross_file_errors(workspace: Path) -> None:
    write_campaign(
        workspace,
        "x",
        "reenroll: sometimes\naudience:\n  groups: [summit-2062]\nsteps:\n  - id: a\n    email: {subject: hi}\n"
        "  - id: b\n    when: opened(\"a\") and opened(\"c\")\n    sms: {text: hi}\n",
    )
    found = messages(workspace)
    assert any("x.yaml:1:11: reenroll" in m for m in found)
    assert any(m.startswith("x.yaml:3:12: unknown group 'summit-2062'") and "did you mean 'summit-2026'?" in m for m in found)
    assert any("x.yaml:8:34: unknown step 'c'" in m for m in found)
    assert not any("unknown step 'a'" in m for m in found)  # step a is broken, but it exists


def test_find_root_walks_up_to_engine_yaml(workspace: Path) -> None:
    assert find_root(workspace / "campaigns" / "nurture.yaml") == workspace.resolve()
    assert find_root(workspace) == workspace.resolve()


campaign_text = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from([
            "name: x", "active: true", "audience:", "  rulesets:", "    a: partner.tier == 'gold'",
            "    b: partner.", "  groups: [summit-2026, nope]", "trigger:", "  cron: '0 9 * * MON'", "  at: 2026-13-01",
            "steps:", "  - id: a", "    email: {subject: '{{ partner.name }}', body: '{% if %}'}", "  - wait: 3d",
            "  - wait: {until: '9'}", "    activity: {kind: call, responses: {a: {result: successful, follow_up: nurture}}}",
            "    when: opened('a')", "    letter: {template: nope.j2}", "reenroll: 90d", "  - id: a", "- x", "  ", "\t",
            "window: {start: 2026-07-01}", "    sms: {text: '{{ parnter }}'}", "exit_when: 1 +", "monitor: {in_campaign_min: 200%}",
        ]),
        max_size=14,
    ).map("\n".join),
)


@given(campaign_text)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_campaign_file_gives_diagnostics_never_an_exception(workspace: Path, text: str) -> None:
    write_campaign(workspace, "fuzz", text)
    loaded = load_workspace(workspace, only=[workspace / "campaigns" / "fuzz.yaml"], check_partners=False)
    for d in loaded.diagnostics:
        assert d.span.line >= 1 and d.span.col >= 1 and d.message


def test_odd_files_are_reported_not_crashed_on(workspace: Path) -> None:
    (workspace / "campaigns" / "folder.yaml").mkdir()
    (workspace / "campaigns" / "binary.yaml").write_bytes(b"\xff\xfe\x00name: x")
    write_campaign(workspace, "escape", "steps:\n  - id: a\n    letter: {template: ../partners.csv}\n")
    found = messages(workspace)
    assert any(m.startswith("binary.yaml:1:1: not UTF-8 text") for m in found), found
    assert any(m.startswith("escape.yaml:3:24: template '../partners.csv' is outside templates/") for m in found), found
    assert not any("folder.yaml" in m for m in found)


def test_an_at_time_outside_the_window_is_a_warning(workspace: Path) -> None:
    write_campaign(workspace, "x", "window: {start: 2026-07-01, end: 2026-07-31}\ntrigger: {at: 2026-08-01T09:00}\nsteps: []\n")
    loaded = load_workspace(workspace)
    (found,) = [d for d in loaded.diagnostics if d.span.path.endswith("x.yaml")]
    assert (found.severity, found.span.line, found.span.col) == ("warning", 2, 15)
    assert "outside the campaign window (2026-07-01 to 2026-07-31)" in found.message
    assert loaded.ok  # a warning does not stop the campaign


def test_a_message_step_without_a_consent_expression_is_a_warning(workspace: Path) -> None:
    settings_file = workspace / "engine.yaml"
    settings_file.write_text(settings_file.read_text().replace("  sms: partner.sms_opt_in", "", 1))
    write_campaign(workspace, "x", "steps:\n  - id: a\n    sms: {text: hi}\n")
    found = [d for d in load_workspace(workspace).diagnostics if d.span.path.endswith("x.yaml")]
    assert [(d.severity, d.span.line, d.span.col) for d in found] == [("warning", 3, 5)]
    assert "no consent expression for sms" in found[0].message
