"""The `engine` command: thin commands over the library.

Exit codes, for every command (SPEC §5): 0 ok, 1 the user's input is wrong (errors were
printed), 2 usage error, 3 an operation was refused.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

from dsl.diagnostics import Diagnostic, SourceError

OK, INPUT_ERROR, USAGE_ERROR, REFUSED = 0, 1, 2, 3


class UsageError(Exception):
    """A command line that cannot be carried out as written (exit code 2)."""


# --- engine check ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Validate workspaces or single campaign files and report every problem found."""
    from campaigns.workspace import load_workspace

    diagnostics: list[Diagnostic] = []
    campaigns = 0
    for root, only in _check_targets(args):
        workspace = load_workspace(root, only=only)
        diagnostics.extend(workspace.diagnostics)
        campaigns += len(workspace.files)
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.span.path, d.span.line, d.span.col, d.message))
    if args.strict:
        diagnostics = [Diagnostic(d.span, "error", d.message) for d in diagnostics]
    errors = sum(d.severity == "error" for d in diagnostics)
    if args.json:
        print(json.dumps({"ok": errors == 0, "errors": [d.to_json() for d in diagnostics]}, indent=2))
    else:
        print_diagnostics(diagnostics)
        warnings = len(diagnostics) - errors
        if diagnostics:
            print(f"{_plural(errors, 'error')}, {_plural(warnings, 'warning')}")
        else:
            print(f"ok: {_plural(campaigns, 'campaign')} checked")
    return INPUT_ERROR if errors else OK


def _check_targets(args: argparse.Namespace) -> list[tuple[Path, list[Path] | None]]:
    """Each workspace to check, with the campaign files to limit it to (None: all of them)."""
    from campaigns.workspace import find_root

    if not args.paths:
        return [(Path(args.workspace), None)]
    targets: dict[Path, list[Path] | None] = {}
    for raw in args.paths:
        path = Path(raw)
        if not path.exists():
            raise UsageError(f"no such file or directory: {raw}")
        if path.is_dir():
            targets[path] = None
            continue
        root = find_root(path) or Path(args.workspace)
        if targets.get(root, []) is not None:
            targets.setdefault(root, []).append(path)  # type: ignore[union-attr]
    return list(targets.items())


def print_diagnostics(diagnostics: Sequence[Diagnostic], stream=None) -> None:
    """Each diagnostic with its source line and a caret (SPEC §5)."""
    stream = stream or sys.stdout
    lines: dict[str, list[str]] = {}
    for d in diagnostics:
        if d.span.path not in lines:
            try:
                lines[d.span.path] = Path(d.span.path).read_text(encoding="utf-8", errors="replace").splitlines()
            except OSError:
                lines[d.span.path] = []
        source = lines[d.span.path]
        line = source[d.span.line - 1] if 0 < d.span.line <= len(source) else None
        print(d.render(line), file=stream)


# --- engine schema -----------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of campaign files (or of engine.yaml) for editors."""
    from campaigns.jsonschema import campaign_schema, settings_schema

    schema = settings_schema() if args.kind == "settings" else campaign_schema()
    print(json.dumps(schema, indent=2))
    return OK


# --- wiring ------------------------------------------------------------------------------------


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-w", "--workspace", default=argparse.SUPPRESS, help="workspace directory (default: .)")
    parser = argparse.ArgumentParser(
        prog="engine",
        description="Run marketing campaigns written as YAML files against partner records.",
        epilog="Run 'engine COMMAND --help' for a command's options.",
    )
    parser.add_argument("-w", "--workspace", default=os.environ.get("ENGINE_WORKSPACE", "."), help="workspace directory (default: .)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    check = commands.add_parser("check", parents=[common], help="validate campaign files, settings, templates and partners",
                                description="Validate the workspace (or the given workspaces / campaign files) and report every error as path:line:col.")
    check.add_argument("paths", nargs="*", metavar="PATH", help="workspace directories or campaign files (default: the workspace)")
    check.add_argument("--json", action="store_true", help='print {"ok", "errors": [{"path","line","col","message","severity"}]}')
    check.add_argument("--strict", action="store_true", help="treat warnings as errors")
    check.set_defaults(run=cmd_check)

    schema = commands.add_parser("schema", parents=[common], help="print the JSON Schema of campaign files",
                                 description="Print the JSON Schema of campaign files, for editors (yaml-language-server).")
    schema.add_argument("kind", nargs="?", choices=["campaign", "settings"], default="campaign", help="campaign files (default) or engine.yaml")
    schema.set_defaults(run=cmd_schema)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UsageError as exc:
        print(f"engine: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
    except SourceError as exc:
        print_diagnostics(exc.diagnostics, sys.stderr)
        return INPUT_ERROR
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line, details on demand
        if os.environ.get("ENGINE_DEBUG"):
            traceback.print_exc()
        print(f"engine: internal error: {type(exc).__name__}: {exc} (set ENGINE_DEBUG=1 for details)", file=sys.stderr)
        return INPUT_ERROR

