"""Bad input at the edges of the command line (issue 18, items 10, 15, 17 and 18).

- An events file with bad lines (text that is not Unicode, control characters in ids, times out
  of range, sizes, nesting) imports every good line and reports each bad one at path:line:col,
  on both stores: nothing that reaches the store can make the import's transaction fail.
- Empty ids, absurd durations and times out of range are usage errors (exit 2, one line, no
  "internal error"), and change nothing.
- `engine check FILE` never says "ok" for a file it did not check.
- `engine diff` never lets a user's revision or path become an option of git.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from campaigns import diff as diff_module
from engine.cli import main
from engine.testing import copy_workspace, dump_store

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("ENGINE_USER", "alice")  # the examples' marketing user
    return copy_workspace(EXAMPLES, tmp_path / "ws")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code  # type: ignore[assignment]
    out, err = capsys.readouterr()
    return code, out, err


def event(n: int, **fields) -> dict:
    return {"type": "invoice.payment_failed", "at": "2026-07-01T09:00:00Z", "partner": "p001",
            "id": f"e{n}", "data": {"amount": 500}, **fields}


def good(n: int) -> bytes:
    return json.dumps(event(n)).encode() + b"\n"


# each bad line: its bytes, what starts at the column of its error, and pieces of its message
# (the wording of id rules is dsl.ids's)
BAD_LINES = [
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"s": "\ud800"}}',
     rb'"\ud800"', "a string in 'data' holds a lone surrogate (\\ud800)"),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"a": {"\udc00x": 1}}}',
     rb'"\udc00x"', "a key in 'data' holds a lone surrogate (\\udc00)"),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p0\ud80001"}',
     rb'"p0', ("'partner': ", "lone surrogate (U+D800)")),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p8\r\nX"}',
     rb'"p8', ("'partner': ", "U+000D carriage return")),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"s": "a\u0000b"}}',
     rb'"a\u', "holds a NUL character"),
    (rb'{"type": "opened", "at": "2026-07-01T09:00Z", "partner": "p001", "campaign": "nurture\u0007", "step": "x"}',
     rb'"nurture', ("'campaign': ", "campaign id")),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "id": "a\u2028b"}',
     rb'"a\u', "'id' must not contain a line break (U+2028"),
    (b'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"s": "caf\xe9"}}',
     b"\xe9", "not valid text: a byte that is not UTF-8 (0xe9)"),
    (rb'{"type": "x.y", "at": "9999-12-31T23:00:00Z", "partner": "p001"}',
     rb'"9999', "'at' is out of range: dates must be between 1900-01-01 and 2199-12-31"),
    (rb'{"type": "x.y", "at": "1800-01-01T00:00Z", "partner": "p001"}',
     rb'"1800', "'at' is out of range"),
    (b'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": ' + b'{"a": ' * 40 + b"1" + b"}" * 41,
     b'{"a"', "'data' nests more than 32 levels deep"),
    (rb'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"n": 1e400}}',
     rb'{"n"', "'data' holds a number out of range"),
    (b'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "data": {"s": "' + b"x" * 70_000 + b'"}}',
     b"{", "the line is longer than 64 KiB"),
    (b'{"a": ' * 100_000, b"{", "not valid JSON: nested too deeply"),
    (b'{"type": "x.y", "at": "2026-07-01T09:00Z", "partner": "p001", "id": "' + b"i" * 600 + b'"}',
     b'"iii', "'id' is longer than 512 bytes"),
]


def test_each_bad_line_is_reported_and_skipped_and_the_rest_imported(capsys, ws, tmp_path):
    assert run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00")[0] == 0
    lines = [good(0)]
    for n, (raw, _, _) in enumerate(BAD_LINES, 1):
        lines += [raw + b"\n", good(n)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(lines))

    code, out, err = run(capsys, "-w", str(ws), "events", "import", str(path), "--at", "2026-07-01T10:00Z")
    assert code == 1, err
    assert out == f"imported {len(BAD_LINES) + 1} events, 0 already known, {len(BAD_LINES)} bad lines skipped\n"
    assert "internal error" not in err and "Traceback" not in err
    headlines = [line for line in err.splitlines() if ": error: " in line]
    assert len(headlines) == len(BAD_LINES)
    for (raw, marker, message), headline, n in zip(BAD_LINES, headlines, range(1, len(BAD_LINES) + 1)):
        col = raw.index(marker) + 1  # the lines are ASCII up to their error
        pieces = (message,) if isinstance(message, str) else message
        assert headline.startswith(f"{path}:{2 * n}:{col}: error: "), (n, headline)
        assert all(piece in headline for piece in pieces), (n, headline)

    rows = dump_store(ws)["events"]
    assert sorted(r[0] for r in rows) == sorted(f"e{n}" for n in range(len(BAD_LINES) + 1))
    # the same file again: every good line known, the same bad lines
    code, out, _ = run(capsys, "-w", str(ws), "events", "import", str(path), "--at", "2026-07-01T11:00Z")
    assert code == 1 and out.startswith(f"imported 0 events, {len(BAD_LINES) + 1} already known")


def test_a_file_name_that_is_not_utf8_does_not_stop_the_import(capsys, ws, tmp_path):
    name = os.fsdecode(bytes(tmp_path) + b"/ev\xff.jsonl")
    try:
        Path(name).write_bytes(good(1))
    except (OSError, UnicodeEncodeError):
        pytest.skip("the file system does not take a name that is not UTF-8")
    code, out, err = run(capsys, "-w", str(ws), "events", "import", name, "--at", "2026-07-01T10:00Z")
    assert code == 0 and out.startswith("imported 1 events"), err


# --- usage errors: empty ids, absurd durations, times out of range ---------------------------------


@pytest.mark.parametrize("argv, message", [
    (["status", "--partner", ""], "argument --partner: must not be empty"),
    (["status", "--partner", "   "], "argument --partner: must not be empty"),
    (["status", "--campaign", ""], "argument --campaign: must not be empty"),
    (["steps", "", "--partner", "p001"], "argument C: must not be empty"),
    (["steps", "nurture", "--partner", " "], "argument --partner: must not be empty"),
    (["skip", "partner-onboarding", " ", "--partner", "p001"], "argument STEP: must not be empty"),
    (["pause", "nurture", "--partner", "p001", "--partner", ""], "argument --partner: must not be empty"),
    (["popup", "read", "", "--partner", "p001"], "argument ID: must not be empty"),
    (["test", "", "--partner", "p001"], "argument C: must not be empty"),
    (["run", "--until", "2026-07-02", "--every", "99999999999w"], "'99999999999w' is too long: a duration is at most 36500d"),
    (["run", "--until", "2026-07-02", "--every", "36501d"], "is too long"),
    (["run", "--until", "2026-07-02", "--every", "1" + "0" * 5000 + "s"], "is too long"),
    (["run", "--until", "2026-07-02", "--every", "0"], "'0' is not a positive duration"),
    (["run", "--until", "2026-07-02", "--every=-1h"], "'-1h' is not a positive duration"),
    (["run", "--until", "9999-12-31"], "--until: '9999-12-31' is out of range: dates must be between 1900-01-01 and 2199-12-31"),
    (["tick", "--at", "9999-12-31T23:59:59Z"], "--at: '9999-12-31T23:59:59Z' is out of range"),
    (["tick", "--at", "0001-01-01T00:00+01:00"], "is out of range"),
    (["test", "partner-onboarding", "--at", "9999-12-31T23:00Z"], "--at: '9999-12-31T23:00Z' is out of range"),
    (["start", "demo-invite", "--partner", "p001", "--on", "9999-01-01"], "'9999-01-01' is out of range"),
    (["start", "demo-invite", "--partner", "p001", "--on", "someday"], "'someday' is not a time"),
    (["events", "import", "events.jsonl", "--at", "2300-01-01"], "--at: '2300-01-01' is out of range"),
    (["respond", "x", "y", "--duration", "99999999999w"], "--duration: '99999999999w' is too long"),
])
def test_usage_errors_are_one_clear_line_and_change_nothing(capsys, ws, argv, message):
    assert run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00")[0] == 0
    before = dump_store(ws)
    argv = [str(ws / a) if a == "events.jsonl" else a for a in argv]
    code, out, err = run(capsys, "-w", str(ws), *argv)
    assert code == 2, (argv, code, err)
    last = err.strip().splitlines()[-1]
    assert message in last and "error:" in last, err
    assert "internal error" not in err and "Traceback" not in err
    assert dump_store(ws) == before


def test_a_partner_id_with_surrounding_blanks_is_that_partner(capsys, ws):
    assert run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00")[0] == 0
    code, out, err = run(capsys, "-w", str(ws), "status", "--partner", " p001 ", "--json")
    assert code == 0, err
    assert json.loads(out)["enrollments"]


# --- engine check FILE ---------------------------------------------------------------------------


@pytest.mark.no_store
@pytest.mark.parametrize("relative", ["other/bad.yaml", "partners.csv", "templates/welcome.html.j2",
                                      "campaigns/sub/nested.yaml", "campaigns/notes.txt"])
def test_check_of_a_file_that_is_no_campaign_file_is_an_error(capsys, ws, relative):
    path = ws / relative
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text((ws / "campaigns" / "nurture.yaml").read_text(encoding="utf-8") + "\nbogus: [\n",
                        encoding="utf-8")
    for argv in (["check", str(path)], ["check", str(path), "--json"]):
        code, out, err = run(capsys, *argv)
        assert code == 1, (argv, out, err)
        assert "ok" not in out.splitlines()[-1:] and not out.startswith("ok")
        if "--json" in argv:
            report = json.loads(out)
            assert report["ok"] is False
            assert [e["message"][:20] for e in report["errors"]] == ["not a campaign file:"]
        else:
            assert out.splitlines() == [f"{path}:1:1: error: not a campaign file: a workspace's campaign files are "
                                        f"{ws / 'campaigns'}/*.yaml or .yml (beside its engine.yaml); give the "
                                        "workspace directory to check its other files", "1 error, 0 warnings"]


@pytest.mark.no_store
def test_check_of_a_file_in_no_workspace_is_an_error(capsys, tmp_path):
    path = tmp_path / "lonely.yaml"
    path.write_text("name: x\n", encoding="utf-8")
    code, out, _ = run(capsys, "check", str(path))
    assert code == 1 and "no engine.yaml in its directory or any above it" in out.splitlines()[0]


@pytest.mark.no_store
def test_check_of_engine_yaml_checks_the_settings(capsys, ws):
    code, out, _ = run(capsys, "check", str(ws / "engine.yaml"))
    assert (code, out) == (0, "ok: settings checked (engine.yaml, groups, partner source)\n")
    settings = ws / "engine.yaml"
    settings.write_text(settings.read_text(encoding="utf-8").replace("timezone:", "timezon:", 1), encoding="utf-8")
    code, out, _ = run(capsys, "check", str(settings))
    assert code == 1 and "unknown key 'timezon'" in out


@pytest.mark.no_store
def test_check_of_a_campaign_file_still_checks_it(capsys, ws):
    path = ws / "campaigns" / "nurture.yaml"
    code, out, _ = run(capsys, "check", str(path))
    assert code == 0 and "not a campaign file" not in out
    path.write_text(path.read_text(encoding="utf-8") + "\nbogus: 1\n", encoding="utf-8")
    code, out, _ = run(capsys, "check", str(path))
    assert code == 1 and "bogus" in out


# --- engine diff and git -------------------------------------------------------------------------


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(ws: Path) -> Path:
    git(ws, "init", "-q")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@example.com", "add", ".")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "init")
    return ws


@pytest.mark.no_store
@pytest.mark.parametrize("spec", ["--output={out}:x", "HEAD:--output={out}", "--output={out}"])
def test_a_revision_is_never_an_option_of_git(capsys, repo, tmp_path, spec):
    out_file = tmp_path / "written"
    spec = spec.format(out=out_file)
    code, out, err = run(capsys, "-w", str(repo), "diff", "--", spec, "campaigns/nurture.yaml")
    assert code == 2 and err.startswith("engine: error: ") and err.count("\n") == 1, err
    assert not list(tmp_path.glob("written*"))


@pytest.mark.no_store
def test_every_git_invocation_ends_its_options_before_what_the_user_wrote(capsys, repo, monkeypatch):
    calls: list[list[str]] = []
    real = subprocess.run

    def spy(argv, *args, **kwargs):
        if argv and argv[0] == "git":
            calls.append(list(argv))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(diff_module.subprocess, "run", spy)
    code, out, err = run(capsys, "-w", str(repo), "diff", "HEAD:campaigns/nurture.yaml", "campaigns/nurture.yaml")
    assert code == 0 and out.strip() == "no changes", err
    assert calls and all(c.index("--end-of-options") == len(c) - 2 for c in calls)
    assert all(c[-1] == "HEAD:campaigns/nurture.yaml" for c in calls)


@pytest.mark.sqlite_only("a SQLite store's path")
@pytest.mark.parametrize("url", ["sqlite:///", "sqlite:///.engine", "sqlite:///partners.csv"])
def test_a_store_url_that_names_no_store_file_is_one_line(tmp_path, capsys, url):
    root = copy_workspace(Path(__file__).resolve().parents[2] / "examples", tmp_path / "ws")
    (root / ".engine").mkdir()
    code = main(["-w", str(root), "status", "--store", url])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and err.startswith("engine: error: ") and len(err.splitlines()) == 1
    assert "internal error" not in err


@pytest.mark.no_store
def test_an_argument_that_is_not_utf8_is_a_usage_error(capsys):
    code = main(["activities", "--assignee", b"\xff".decode("utf-8", "surrogateescape")])
    out, err = capsys.readouterr()
    assert (code, out, err) == (2, "", "engine: error: the argument '\\udcff' is not UTF-8 text\n")
