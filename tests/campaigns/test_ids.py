"""Ids are checked where they enter (issue 18): campaign ids (file names), step ids and partner
ids, each bad one a located error; a campaign with a bad id does not run, the others do; a
partner source with a bad id is not imported, and the store keeps the records it had."""

from __future__ import annotations

import json
import shutil
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.workspace import load_workspace
from dsl.ids import MAX_PARTNER_ID, MAX_SLUG, check_partner_id, check_slug, is_slug
from engine.cli import main
from engine.testing import rewrite

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

CAMPAIGN = """\
name: T
description: a campaign of the id tests
audience:
  rulesets:
    everyone: partner.revenue >= 0
trigger: {audience: true}
steps:
  - id: hello
    email: {subject: "Hi", body: "Hello"}
"""


@pytest.fixture()
def workspace(tmp_path: Path) -> Path:
    """The example workspace, with its campaigns replaced by one that enrolls everyone."""
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("broken", ".engine"))
    for path in (root / "campaigns").glob("*.yaml"):
        path.unlink()
    (root / "campaigns" / "good.yaml").write_text(CAMPAIGN)
    return root


def check(root: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """Exit code and the error headlines of `engine check`, paths relative to the workspace."""
    code = main(["check", str(root)])
    out = capsys.readouterr()
    assert "internal error" not in out.out + out.err and "Traceback" not in out.out + out.err
    return code, [line.replace(f"{root}/", "") for line in out.out.splitlines() if ": error: " in line]


def tick(root: Path, at: str, capsys: pytest.CaptureFixture) -> dict:
    code = main(["-w", str(root), "tick", "--at", at, "--json"])
    out = capsys.readouterr()
    assert "internal error" not in out.out + out.err, out.err
    assert code in (0, 1), out.err
    return json.loads(out.out)


def sent_campaigns(root: Path) -> set[str]:
    outbox = root / ".engine" / "outbox" / "email.jsonl"
    lines = outbox.read_text().splitlines() if outbox.exists() else []
    return {json.loads(line)["campaign"] for line in lines}


def sent_partners(root: Path) -> set[str]:
    outbox = root / ".engine" / "outbox" / "email.jsonl"
    return {json.loads(line)["partner"] for line in outbox.read_text().splitlines()}


# --- The rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["welcome", "intro-call", "a", "step_2", "v1.2", "0day", "x" * MAX_SLUG])
def test_slugs(text: str) -> None:
    assert check_slug(text, "step id") is None


@pytest.mark.parametrize("text", ["", "hello\n", "a:b", "two words", "-dash", ".hidden", "tab\there", "ä", "x" * (MAX_SLUG + 1),
                                  "\ud800", "a/b"])
def test_not_slugs(text: str) -> None:
    problem = check_slug(text, "step id")
    assert problem is not None and "\n" not in problem and "\ud800" not in problem


@given(st.text())
@settings(max_examples=500, deadline=None)
def test_a_slug_never_holds_a_colon_or_anything_unprintable(text: str) -> None:
    if is_slug(text):
        assert ":" not in text and text.isascii() and text.isprintable() and text == text.strip()
    else:
        assert check_slug(text, "campaign id")


@pytest.mark.parametrize("text", ["p001", "ACME:42", "Müller GmbH", "a b", "x" * MAX_PARTNER_ID, "42", "名前"])
def test_partner_ids(text: str) -> None:
    assert check_partner_id(text) is None


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("p8\r\nX", "U+000D carriage return"),
    ("p8\n", "U+000A line feed"),
    ("a\0b", "U+0000 null"),
    ("a\x85b", "U+0085"),
    ("a\u2028b", "line break (U+2028"),
    ("X\ud800Y", "lone surrogate (U+D800)"),
    (" p1", "whitespace"),
    ("p1\u00a0", "whitespace"),
    ("x" * (MAX_PARTNER_ID + 1), f"at most {MAX_PARTNER_ID} characters"),
])
def test_not_partner_ids(text: str, words: str) -> None:
    problem = check_partner_id(text)
    assert problem is not None and words in problem
    assert problem.isprintable() and "\ud800" not in problem  # the message itself can be printed


@given(st.text(alphabet=st.characters(codec=None), max_size=30))
@settings(max_examples=1000, deadline=None)
def test_a_partner_id_passes_the_rule_or_is_reported(text: str) -> None:
    problem = check_partner_id(text)
    if problem is None:
        assert text and len(text) <= MAX_PARTNER_ID and text == text.strip()
        assert not any(unicodedata.category(c) in ("Cc", "Cs") or c in "\u2028\u2029" for c in text)
        text.encode("utf-8")  # can be stored and sent
    else:
        assert problem.isprintable()


# --- Step ids ----------------------------------------------------------------------------------


@pytest.mark.parametrize("written, shown", [('"hello\\n"', "'hello\\x0a'"), ('"a:b"', "'a:b'"), ('"a b"', "'a b'")])
def test_a_bad_step_id_is_located_and_the_campaign_does_not_run(workspace: Path, written: str, shown: str,
                                                                capsys: pytest.CaptureFixture) -> None:
    (workspace / "campaigns" / "bad.yaml").write_text(CAMPAIGN.replace("- id: hello", f"- id: {written}"))
    code, errors = check(workspace, capsys)
    assert code == 1
    assert errors == [f"campaigns/bad.yaml:8:9: error: {shown} is not a step id "
                      "(letters, digits, '-', '_' and '.', starting with a letter or a digit)"]
    tick(workspace, "2026-07-01T00:00", capsys)
    assert sent_campaigns(workspace) == {"good"}


def test_a_step_id_with_a_trailing_newline_in_a_block_scalar(workspace: Path) -> None:
    text = CAMPAIGN.replace("- id: hello", "- id: |\n      hello")
    (workspace / "campaigns" / "bad.yaml").write_text(text)
    loaded = load_workspace(workspace)
    assert "bad" not in loaded.campaigns and "good" in loaded.campaigns
    assert any("is not a step id" in d.message and d.span.line == 8 for d in loaded.errors)


# --- Campaign ids ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a:b", "two words", "tab\there", ".hidden", "-x", "x" * (MAX_SLUG + 1)])
def test_a_file_name_that_is_no_campaign_id_is_one_error_at_its_top(workspace: Path, name: str,
                                                                  capsys: pytest.CaptureFixture) -> None:
    (workspace / "campaigns" / f"{name}.yaml").write_text(CAMPAIGN)
    loaded = load_workspace(workspace)
    (problem,) = loaded.errors
    assert (Path(problem.span.path).name, problem.span.line, problem.span.col) == (f"{name}.yaml", 1, 1)
    assert "campaign id" in problem.message and "rename the file" in problem.message
    assert set(loaded.campaigns) == {"good"}
    code, errors = check(workspace, capsys)
    assert code == 1 and len(errors) == 1 and errors[0].endswith("rename the file")
    result = tick(workspace, "2026-07-01T00:00", capsys)
    assert result["enrolled"] > 0 and sent_campaigns(workspace) == {"good"}


def test_two_files_with_one_id(workspace: Path, capsys: pytest.CaptureFixture) -> None:
    (workspace / "campaigns" / "twice.yaml").write_text(CAMPAIGN)
    (workspace / "campaigns" / "twice.yml").write_text(CAMPAIGN)
    loaded = load_workspace(workspace)
    (problem,) = loaded.errors
    assert "campaign id 'twice' is also that of twice.yaml" in problem.message
    assert set(loaded.campaigns) == {"good"}
    tick(workspace, "2026-07-01T00:00", capsys)
    assert sent_campaigns(workspace) == {"good"}


# --- Partner ids and surrogates in the partner source ------------------------------------------


def _csv_row(pid: str, name: str = "New") -> str:
    return (f'"{pid}",{name},new@example.com,en,FI,New Oy,gold,125000,2026-06-20,2026-06-29T14:05,vip,'
            "true,true,+358,partner_admin,true,false,am@example.com,false\n")


def test_a_csv_id_with_a_line_break_is_reported_and_the_import_refused(workspace: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    partners = workspace / "partners.csv"
    before = partners.read_text()
    tick(workspace, "2026-07-01T00:00", capsys)
    first = sent_partners(workspace)
    line = before.count("\n") + 2
    rewrite(partners, before + _csv_row("p900") + _csv_row("p8\r\nX"))
    code, errors = check(workspace, capsys)
    assert code == 1
    assert errors == [f"partners.csv:{line}:1: error: partner id 'p8\\x0d\\x0aX' contains a control character "
                      "(U+000D carriage return)"]
    result = tick(workspace, "2026-07-08T00:00", capsys)
    assert any(e["path"].endswith("partners.csv") and e["line"] == line for e in result["errors"])
    assert "p900" not in sent_partners(workspace)  # the import was refused as a whole
    assert first <= sent_partners(workspace)
    rewrite(partners, before + _csv_row("p900"))  # fixed: imported at the next tick
    tick(workspace, "2026-07-09T00:00", capsys)
    assert "p900" in sent_partners(workspace)


def _jsonl_workspace(root: Path) -> Path:
    settings = root / "engine.yaml"
    settings.write_text(settings.read_text().replace("source: partners.csv", "source: partners.jsonl"))
    lines = [json.dumps({"id": f"p{i:03}", "name": f"P{i}", "email": f"p{i}@example.com", "revenue": 1000,
                         "supplier_emails": True, "active": True, "role": "partner_admin"}) for i in range(1, 6)]
    (root / "partners.jsonl").write_text("\n".join(lines) + "\n")
    return root / "partners.jsonl"


@pytest.mark.parametrize("bad, col, words", [
    ('{"id": "p9\\ud800", "revenue": 1}', 8, "partner id 'p9\\ud800' contains a lone surrogate (U+D800)"),
    ('{"id": "p9", "name": "X\\ud800Y"}', 22, "field 'name': holds a lone surrogate (U+D800)"),
    ('{"id": "p9", "extra": {"deep": ["\\udfff"]}}', 23, "field 'extra': holds a lone surrogate (U+DFFF)"),
    ('{"id": "p9", "\\ud800": 1}', 1, "a key holds a lone surrogate (U+D800)"),
    ('{"id": "p9\\r\\nX"}', 8, "partner id 'p9\\x0d\\x0aX' contains a control character (U+000D carriage return)"),
    ('{"id": "p9\\u0000"}', 8, "partner id 'p9\\x00' contains a control character (U+0000 null)"),
])
def test_a_bad_jsonl_record_is_reported_at_its_line_and_the_previous_records_kept(
        workspace: Path, bad: str, col: int, words: str, capsys: pytest.CaptureFixture) -> None:
    source = _jsonl_workspace(workspace)
    tick(workspace, "2026-07-01T00:00", capsys)
    assert sent_partners(workspace) == {f"p{i:03}" for i in range(1, 6)}
    good = json.dumps({"id": "p100", "name": "New", "email": "n@example.com", "revenue": 5,
                       "supplier_emails": True, "active": True, "role": "partner_admin"})
    rewrite(source, source.read_text() + good + "\n" + bad + "\n")
    code, errors = check(workspace, capsys)
    assert code == 1 and len(errors) == 1
    assert errors[0].startswith(f"partners.jsonl:7:{col}: error: {words}"), errors
    result = tick(workspace, "2026-07-08T00:00", capsys)
    assert any(e["path"].endswith("partners.jsonl") and e["line"] == 7 for e in result["errors"])
    assert "p100" not in sent_partners(workspace)  # nothing of the new source was imported
    code = main(["-w", str(workspace), "status", "--partner", "p001", "--json"])
    capsys.readouterr()
    assert code == 0  # the records the store had are still there
