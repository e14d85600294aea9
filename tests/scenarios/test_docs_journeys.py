"""The commands of docs/journeys.md run as written (on a copy of the example workspace), and the
campaign file it points to is the one in examples/."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from engine.cli import main
from engine.testing import copy_workspace

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "journeys.md"


def commands() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line.startswith("engine ")]


def test_the_commands_of_the_journeys_page_run(tmp_path, capsys):
    found = commands()
    assert [c[:4] for c in found] == [["engine", "-w", "examples", "check"], ["engine", "-w", "examples", "test"],
                                     ["engine", "-w", "examples", "simulate"]]
    root = copy_workspace(ROOT / "examples", tmp_path / "examples")
    for command in found:
        argv = [str(root) if a == "examples" else str(root / a[len("examples/"):]) if a.startswith("examples/") else a
                for a in command[1:]]
        assert main(argv) == 0, (command, capsys.readouterr())
    out = capsys.readouterr().out
    assert "final-notice" in out and "collector-call" in out


def test_the_page_links_only_inside_the_repository():
    for target in re.findall(r"\]\(([^)]+)\)", DOC.read_text(encoding="utf-8")):
        assert "://" not in target
        assert (DOC.parent / target).resolve().exists(), target
