"""Every command's --help prints and exits 0 (a bare '%' in a help string once crashed it)."""

import argparse

import pytest

from engine.cli import build_parser, main

pytestmark = pytest.mark.no_store


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += commands(sub, prefix + (name,))
    return found


@pytest.mark.parametrize("command", commands(build_parser()), ids=lambda c: " ".join(c) or "engine")
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as exit:
        main([*command, "--help"])
    out, err = capsys.readouterr()
    assert exit.value.code == 0 and out.startswith("usage: engine") and err == ""
