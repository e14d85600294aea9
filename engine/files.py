"""The commands on files alone, without a store: `engine check`, `engine fmt`, `engine schema`,
`engine init`.
Kept apart from engine.commands so that they start without importing the runtime."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from dsl.diagnostics import Diagnostic, display_path
from dsl.ids import shown
from dsl.source import Span

from .console import INPUT_ERROR, OK, plural, print_diagnostics
from .errors import UsageError


# --- engine init -------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    """A new workspace in DIR: engine.yaml, a partner file, one campaign, .engine/ git-ignored."""
    from .skeleton import create_workspace

    root = Path(args.directory)
    if root.exists() and not root.is_dir():
        raise UsageError(f"{args.directory} is a file, not a directory")
    try:
        written = create_workspace(root)
    except FileExistsError as exc:
        print(f"engine: error: {display_path(str(exc.args[0]))} exists already: engine init writes a new workspace "
              "and changes no file of an existing one", file=sys.stderr)
        return INPUT_ERROR
    except OSError as exc:
        print(f"engine: error: cannot write the workspace: {exc.strerror or exc}", file=sys.stderr)
        return INPUT_ERROR
    for path in written:
        print(f"wrote {display_path(str(path))}")
    print(f"next: engine -w {display_path(str(root))} check, then engine -w {display_path(str(root))} tick")
    return OK


# --- engine check ------------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    """Validate workspaces or single campaign files and report every problem found."""
    from campaigns.workspace import SETTINGS_FILE, load_workspace

    targets, refused = _check_targets(args)
    diagnostics: list[Diagnostic] = []
    campaigns = 0
    for root, only in targets:
        workspace = load_workspace(root, only=only)
        diagnostics.extend(workspace.diagnostics)
        diagnostics.extend(_lock_errors(root, workspace))
        diagnostics.extend(_checklist(root, workspace, only))
        campaigns += len(workspace.files)
    diagnostics = sorted(set(diagnostics), key=lambda d: (d.span.path, d.span.line, d.span.col, d.message))
    if args.strict:
        diagnostics = [Diagnostic(d.span, "error", d.message) for d in diagnostics]
    errors = sum(d.severity == "error" for d in diagnostics) + len(refused)
    if args.json:
        print(json.dumps({"ok": errors == 0, "errors": [d.to_json() for d in refused + diagnostics]}, indent=2))
    else:
        for d in refused:  # one line each: the file was not checked, there is no line to show
            print(d.headline())
        print_diagnostics(diagnostics)
        warnings = len(diagnostics) - (errors - len(refused))
        if diagnostics or refused:
            print(f"{plural(errors, 'error')}, {plural(warnings, 'warning')}")
        elif targets and all(only == [] for _, only in targets):
            print(f"ok: settings checked ({SETTINGS_FILE}, groups, partner source)")
        else:
            print(f"ok: {plural(campaigns, 'campaign')} checked")
    return INPUT_ERROR if errors else OK


def _lock_errors(root: Path, workspace) -> list[Diagnostic]:
    """One-shot campaigns that started sending and whose steps or audience were edited since,
    as the workspace's store (if there is one) remembers them."""
    from .locks import lock_error, stored_locks
    from .store import store_location

    try:
        locks = stored_locks(store_location(os.environ.get("ENGINE_STORE") or workspace.settings.store, root))
    except ValueError:
        return []
    found = []
    for cid, campaign in workspace.campaigns.items():
        if cid in locks:
            problem = lock_error(cid, campaign, *locks[cid])
            if problem is not None:
                found.append(problem)
    return found


def _checklist(root: Path, workspace, only: list[Path] | None) -> list[Diagnostic]:
    """The launch checklist of the active campaigns that were checked."""
    from campaigns.checklist import launch_checklist

    from .dryrun import tested_hashes

    found = launch_checklist(workspace, tested_hashes(root))
    if only is None:
        return found
    wanted = {str(p.resolve()) for p in only}
    return [d for d in found if str(Path(d.span.path).resolve()) in wanted]


def _check_targets(args: argparse.Namespace) -> tuple[list[tuple[Path, list[Path] | None]], list[Diagnostic]]:
    """Each workspace to check, with the campaign files to limit it to (None: all of them; []:
    its settings only), and an error for each file given that is neither a campaign file of a
    workspace (``<root>/campaigns/*.yaml`` or ``.yml``, found by walking up to the nearest
    engine.yaml) nor a workspace's engine.yaml: such a file is not checked, so it is never "ok"."""
    from campaigns.workspace import SETTINGS_FILE, find_root

    if not args.paths:
        return [(Path(args.workspace), None)], []
    targets: dict[Path, list[Path] | None] = {}
    refused: list[Diagnostic] = []
    for raw in args.paths:
        path = Path(raw)
        try:
            there = path.exists()
        except OSError as exc:  # a name longer than the file system takes, say
            raise UsageError(f"cannot check {shown(raw)}: {exc.strerror or exc}") from None
        if not there:
            raise UsageError(f"no such file or directory: {raw}")
        if path.is_dir():
            targets[path] = None
            continue
        root = find_root(path)
        problem = _not_checkable(path, root)
        if problem is not None:
            refused.append(Diagnostic(Span(str(path), 1, 1), "error", problem))
            continue
        assert root is not None
        if targets.get(root, []) is not None:
            files = targets.setdefault(root, [])
            if path.resolve() != (root / SETTINGS_FILE).resolve():
                files.append(path)  # type: ignore[union-attr]
    return list(targets.items()), refused


def _not_checkable(path: Path, root: Path | None) -> str | None:
    """Why ``engine check`` cannot check the file ``path`` on its own, or None when it is a
    campaign file of the workspace at ``root`` or that workspace's engine.yaml."""
    from campaigns.workspace import SETTINGS_FILE

    if root is None:
        return f"not a campaign file: no {SETTINGS_FILE} in its directory or any above it, so it is in no workspace"
    resolved = path.resolve()
    if resolved == (root / SETTINGS_FILE).resolve():
        return None
    campaigns = root / "campaigns"
    files = {p.resolve() for p in campaigns.glob("*.y*ml") if p.suffix in (".yaml", ".yml") and p.is_file()}
    if resolved in files:
        return None
    return (f"not a campaign file: a workspace's campaign files are {display_path(str(campaigns))}/*.yaml or .yml "
            f"(beside its {SETTINGS_FILE}); give the workspace directory to check its other files")


# --- engine fmt --------------------------------------------------------------------------------


def cmd_fmt(args: argparse.Namespace) -> int:
    """Rewrite campaign files in the canonical layout, comments kept; --check only lists them."""
    from campaigns.fmt import format_paths

    paths = [Path(p) for p in args.paths] or [Path(args.workspace)]
    result = format_paths(paths, check=args.check)
    print_diagnostics(result.diagnostics, sys.stderr)
    for path in result.changed:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    if not result.changed and not result.diagnostics:
        print("ok: nothing to reformat")
    return INPUT_ERROR if result.diagnostics or (args.check and result.changed) else OK


# --- engine schema -----------------------------------------------------------------------------


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the JSON Schema of campaign files (or of engine.yaml) for editors."""
    from campaigns.jsonschema import campaign_schema, settings_schema

    schema = settings_schema() if args.kind == "settings" else campaign_schema()
    print(json.dumps(schema, indent=2))
    return OK
