"""The command line around the web: what needs the signing key, and `engine check`'s warnings."""

from __future__ import annotations

import pytest

from engine.cli import main
from engine.testing import dump_store

from ._served import free_port, workspace


def test_tick_and_serve_refuse_without_the_key_and_change_nothing(tmp_path, monkeypatch, capsys):
    root = workspace(tmp_path, free_port())
    assert main(["-w", str(root), "tick", "--at", "2026-07-01T09:00"]) == 0  # with the key (tests/conftest.py)
    before = dump_store(root)
    monkeypatch.delenv("ENGINE_SECRET")
    capsys.readouterr()
    assert main(["-w", str(root), "tick", "--at", "2026-07-03T09:00"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ENGINE_SECRET" in err and "Traceback" not in err
    assert main(["-w", str(root), "serve", "--port", str(free_port())]) == 1
    assert "ENGINE_SECRET" in capsys.readouterr().err
    assert dump_store(root) == before


@pytest.mark.no_store
def test_simulate_needs_no_key(tmp_path, monkeypatch, capsys):
    root = workspace(tmp_path, free_port())
    monkeypatch.delenv("ENGINE_SECRET")
    assert main(["-w", str(root), "simulate", "--from", "2026-07-01T09:00", "--until", "2026-07-03T09:00"]) == 0


@pytest.mark.no_store
def test_check_warns_about_emails_without_unsubscribe(tmp_path, capsys):
    root = workspace(tmp_path, free_port(), {"plain": """\
name: Plain
active: false
steps:
  - id: hello
    email: {subject: Hi, body: "No way out."}
  - id: ok
    email: {subject: Hi, body: "Bye: {{ unsubscribe_url }}"}
"""})
    assert main(["check", str(root)]) == 0
    out = capsys.readouterr().out
    out = "\n".join(line for line in out.splitlines() if "plain.yaml" in line)
    assert "plain.yaml:5:" in out and "no unsubscribe link" in out
    assert out.count("no unsubscribe link") == 1 and "web.base_url" not in out
    (root / "engine.yaml").write_text((root / "engine.yaml").read_text().split("web:")[0])
    assert main(["check", str(root)]) == 0
    assert capsys.readouterr().out.count("sets no web.base_url") == 2  # one for each email step
