"""The example experiment (examples/campaigns/pay-by-portal.yaml) and its page, docs/experiments.md.

The README's first command simulates July on the example workspace; for pay-by-portal it must
print the goal block. The variants and the holdout are recomputed here from the hash the page
documents, independently of the engine (only hashlib, the campaign file read as plain YAML, and
partners.csv / events.jsonl read as plain CSV and JSON):

    h = int.from_bytes(sha256(f"{campaign}/{step}/{partner}".encode()).digest()[:8], "big") % W

with W the sum of the variants' weights (variants in file order, the first whose cumulative
weight exceeds h), and for the holdout the step name ``holdout``, W = 10000, held out when
h < pct × 100.

The page's own examples run as written: every ``yaml`` block is a whole campaign file
(``# campaigns/NAME.yaml``) or lines for engine.yaml (``# in engine.yaml``) and passes
``engine check`` in a copy of the example workspace (the campaigns ``engine test`` too); the
``engine`` lines of its ``sh`` blocks run in order on a copy of the example workspace, and the
outputs the page shows are the ones they print.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shlex
from collections import Counter
from functools import cache
from pathlib import Path

import pytest
import yaml

from engine.cli import main
from engine.console import OK
from engine.testing import copy_workspace
from tests.spec_assignment import spec_held_out, spec_pick

pytestmark = pytest.mark.no_store  # the page's commands and a simulation (its own store), not a store, are under test

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOC = ROOT / "docs" / "experiments.md"
CAMPAIGN = "pay-by-portal"
CAMPAIGN_FILE = EXAMPLES / "campaigns" / f"{CAMPAIGN}.yaml"
JULY = ["--from", "2026-07-01", "--until", "2026-08-01"]
INTERNAL_ROLES = {"sales_rep", "default_lead_owner"}  # engine.yaml's exclude

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


# --- the hash, recomputed ------------------------------------------------------------------------


def percentage(value) -> float:
    return float(str(value).rstrip("%"))


# --- the example workspace, read by hand ------------------------------------------------------------


@cache
def campaign_file() -> dict:
    return yaml.safe_load(CAMPAIGN_FILE.read_text(encoding="utf-8"))


def partners() -> list[dict[str, str]]:
    with (EXAMPLES / "partners.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def audience() -> list[str]:
    """pay-by-portal's audience as its file says: unpaid with email consent; not inactive, not an
    internal role, not a test contact; one per email address (the smallest id)."""
    kept: dict[str, str] = {}
    for p in sorted(partners(), key=lambda p: (len(p["id"]), p["id"])):
        if (p["paid"] == "false" and p["supplier_emails"] == "true" and p["active"] != "false"
                and p["role"] not in INTERNAL_ROLES and p["test"] != "true"):
            kept.setdefault(p["email"].strip().lower(), p["id"])
    return sorted(kept.values())


def events() -> list[dict]:
    lines = (EXAMPLES / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


# --- the simulation (the README's first command), run once --------------------------------------------


@cache
def simulated(tmp: Path, as_json: bool) -> str:
    root = copy_workspace(EXAMPLES, tmp / ("json" if as_json else "text"))
    argv = ["-w", str(root), "simulate", *JULY, "--events", str(root / "events.jsonl")] + (["--json"] if as_json else [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(argv)
    assert code == OK, out.getvalue()[-2000:]
    return out.getvalue()


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("experiment")


@pytest.fixture(scope="module")
def simulation(scratch) -> dict:
    return json.loads(simulated(scratch, True))


@pytest.mark.no_store
def test_the_simulation_prints_the_goal_block_of_the_experiment(scratch):
    out = simulated(scratch, False).splitlines()
    start = next(i for i, line in enumerate(out) if line.startswith(f"{CAMPAIGN} goal: "))
    block = out[start:start + 5]
    assert re.fullmatch(rf"{CAMPAIGN} goal: \d+ of \d+ converted \(.*\); holdout \d+ of \d+ \(.*\); lift .*, p = .*",
                        block[0]), block[0]
    assert [line.split(":")[0] for line in block[1:3]] == ["  variant plain", "  variant deadline"]
    assert block[3].startswith("variant ") and block[4].startswith("the campaign converts ")


@pytest.mark.no_store
def test_each_partner_gets_the_variant_the_hash_gives(simulation):
    step = campaign_file()["steps"][0]
    assert step["id"] == "nudge"
    variants = step["email"]["variants"]
    weights = {key: int(v["weight"]) for key, v in variants.items()}
    subjects = {key: v.get("subject", step["email"]["subject"]) for key, v in variants.items()}
    nudges = [m for m in simulation["messages"] if m["campaign"] == CAMPAIGN and m["step"] == "nudge"]
    assert nudges
    for message in nudges:
        expected = spec_pick(CAMPAIGN, "nudge", message["partner"], list(weights.items()))
        assert message["variant"] == expected, message["partner"]
        assert message["subject"] == subjects[expected]
    received = Counter(m["variant"] for m in nudges)
    assert set(received) == set(weights)  # both versions went out
    goal = simulation["goals"][CAMPAIGN]
    assert {key: g["enrolled"] for key, g in goal["by_variant"].items()} == dict(received)


@pytest.mark.no_store
def test_the_holdout_is_the_hash_s_and_gets_no_message(simulation):
    pct = percentage(campaign_file()["holdout"])
    everyone = [p["id"] for p in partners()]
    held = {p for p in everyone if spec_held_out(CAMPAIGN, p, pct)}
    messaged = {m["partner"] for m in simulation["messages"] if m["campaign"] == CAMPAIGN}
    assert held & messaged == set()
    enrolled = audience()
    held_in_audience = [p for p in enrolled if p in held]
    assert held_in_audience  # the example holds someone out
    goal = simulation["goals"][CAMPAIGN]
    assert goal["holdout"]["enrolled"] == len(held_in_audience)
    assert goal["enrolled"] == len(enrolled) - len(held_in_audience)
    # every treated partner got the first email, but those whose address bounced hard before it
    bounced = {e["partner"] for e in events() if e["type"] == "bounced" and (e.get("data") or {}).get("kind") == "hard"}
    nudged = {m["partner"] for m in simulation["messages"] if m["campaign"] == CAMPAIGN and m["step"] == "nudge"}
    assert nudged == set(enrolled) - held - bounced


@pytest.mark.no_store
def test_the_goal_counts_the_invoice_paid_events_of_treated_partners(simulation):
    goal = simulation["goals"][CAMPAIGN]
    start, within = "2026-07-07T07:00:00Z", "2026-08-06T07:00:00Z"  # the `at` trigger (10:00 Helsinki), + 30d
    paid = {e["partner"] for e in events() if e["type"] == "invoice.paid" and start <= e["at"] <= within}
    treated = set(audience()) - {p for p in audience() if spec_held_out(CAMPAIGN, p, percentage(campaign_file()["holdout"]))}
    assert goal["converted"] == len(paid & treated) > 0
    assert goal["summary"] and goal["p_value"] is not None
    # a partner who paid is not reminded afterwards: paying ends the enrollment
    reminded = {(m["partner"], m["at"]) for m in simulation["messages"] if m["campaign"] == CAMPAIGN
                and m["step"] == "reminder"}
    for event in events():
        if event["type"] == "invoice.paid" and event["partner"] in treated:
            assert not any(p == event["partner"] and at > event["at"] for p, at in reminded), event


# --- docs/experiments.md ------------------------------------------------------------------------------


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(DOC.read_text(encoding="utf-8")) if lang.strip() == language]


def yaml_blocks() -> list[tuple[str, str]]:
    """(target, text): target is ``campaigns/NAME.yaml`` or ``engine.yaml+`` (lines to add)."""
    found = []
    for body in blocks("yaml"):
        first = body.splitlines()[0]
        match = re.fullmatch(r"# (campaigns/[A-Za-z0-9][A-Za-z0-9_.-]*\.yaml|in engine\.yaml)\s*", first)
        assert match, f"a yaml block is a whole campaign file or lines for engine.yaml: {first!r}"
        found.append(("engine.yaml+" if match.group(1) == "in engine.yaml" else match.group(1), body))
    return found


def doc_workspace(tmp_path: Path) -> Path:
    root = copy_workspace(EXAMPLES, tmp_path / "examples")
    for target, body in yaml_blocks():
        if target == "engine.yaml+":
            with (root / "engine.yaml").open("a", encoding="utf-8") as f:
                f.write("\n" + body)
        else:
            (root / target).write_text(body, encoding="utf-8")
    return root


@pytest.mark.no_store
def test_every_yaml_block_passes_engine_check(tmp_path, capsys):
    found = yaml_blocks()
    assert len([t for t, _ in found if t.startswith("campaigns/")]) >= 4
    assert [t for t, _ in found].count("engine.yaml+") == 1
    root = doc_workspace(tmp_path)
    capsys.readouterr()
    main(["check", str(root), "--json"])
    report = json.loads(capsys.readouterr().out)
    errors = [e for e in report["errors"] if e["severity"] == "error"]
    assert errors == [], "\n".join(f"{e['path']}:{e['line']}:{e['col']}: {e['message']}" for e in errors)


@pytest.mark.no_store
@pytest.mark.parametrize("campaign", [Path(t).stem for t, _ in yaml_blocks() if t.startswith("campaigns/")])
def test_every_campaign_of_the_page_passes_engine_test(tmp_path, capsys, campaign):
    root = doc_workspace(tmp_path)
    code = main(["-w", str(root), "test", campaign, "--at", "2026-07-01T09:00"])
    assert code == OK, capsys.readouterr()


def sh_commands() -> list[tuple[str, list[str]]]:
    found = []
    for body in blocks("sh"):
        for line in body.splitlines():
            if line.startswith("engine "):
                found.append((line, shlex.split(line, comments=True)[1:]))
    return found


def text_block(starting: str) -> list[str]:
    return next(b for b in blocks("text") if b.startswith(starting)).rstrip("\n").splitlines()


def test_the_commands_of_the_page_run_and_print_what_it_shows(tmp_path, capsys, monkeypatch):
    commands = sh_commands()
    assert [words[2] for _, words in commands] == ["check", "simulate", "events", "run", "stats", "steps", "log"]
    copy_workspace(EXAMPLES, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENGINE_SECRET", "dev-only-key")
    monkeypatch.delenv("ENGINE_USER", raising=False)
    outputs = {}
    for line, words in commands:
        code = main(words)
        out = capsys.readouterr()
        assert code == OK, f"{line}\nexit {code}\n{out.out[-2000:]}\n{out.err[-2000:]}"
        outputs[words[2]] = out.out
    simulated_lines = outputs["simulate"].splitlines()
    shown = text_block(f"{CAMPAIGN} goal:")
    start = simulated_lines.index(shown[0])
    assert simulated_lines[start:start + len(shown)] == shown
    stats = outputs["stats"].rstrip("\n").splitlines()
    assert stats == text_block(f"{CAMPAIGN}: ")
    for excerpt in (text_block("goal: "), text_block("variant ")):  # "Reading engine stats" quotes it
        assert any(stats[i:i + len(excerpt)] == excerpt for i in range(len(stats))), excerpt
    steps = json.loads(outputs["steps"])
    assert {(s["step"], s["status"], s["reason"]) for s in steps["steps"]} == {
        ("nudge", "skipped", "holdout"), ("reminder", "skipped", "holdout")}
    assert spec_held_out(CAMPAIGN, steps["partner"], percentage(campaign_file()["holdout"]))
    assert "goal.converted" in outputs["log"]


def test_the_held_step_the_page_shows(tmp_path, capsys, monkeypatch):
    """The policies of the page in the example's engine.yaml: the first tick, at midnight in
    Helsinki, holds partner-onboarding's welcome email of p001 until 08:00."""
    root = copy_workspace(EXAMPLES, tmp_path / "examples")
    [policies] = [body for target, body in yaml_blocks() if target == "engine.yaml+"]
    with (root / "engine.yaml").open("a", encoding="utf-8") as f:
        f.write("\n" + policies)
    monkeypatch.setenv("ENGINE_SECRET", "dev-only-key")
    assert main(["-w", str(root), "tick", "--at", "2026-07-01T00:00"]) == OK
    capsys.readouterr()
    assert main(["-w", str(root), "steps", "partner-onboarding", "--partner", "p001", "--json"]) == OK
    welcome = json.loads(capsys.readouterr().out)["steps"][0]
    [shown] = blocks("json")
    assert welcome["step"] == "welcome" and welcome["status"] == "pending"
    assert {"held": welcome["held"]} == json.loads("{" + shown + "}")
    assert welcome["due_at"] == welcome["held"]["until"]
