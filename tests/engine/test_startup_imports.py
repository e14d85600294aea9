"""What a command imports at start-up (issue 17): only what it uses. Each command runs in a fresh
interpreter, which then names the modules it imported; bench/startup.py measures the time."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.no_store

ROOT = Path(__file__).resolve().parents[2]
RUN = """import json, sys
from engine.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(sys.modules)}))
"""
HEAVY = ("pydantic", "jinja2", "lark", "yaml", "ruamel", "croniter", "sqlite3", "campaigns", "fastapi", "uvicorn")
NOT_FOR_A_TICK = ("engine.groups", "engine.operations", "engine.stats", "engine.views", "engine.explain",
                  "engine.ingest", "engine.events", "engine.dryrun", "engine.files", "engine.review_commands",
                  "engine.web", "campaigns.fmt", "campaigns.diff", "fastapi", "ruamel")


def imported(*arguments: str, cwd: Path) -> set[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ENGINE_STORE": ""}  # the workspace's own SQLite store
    done = subprocess.run([sys.executable, "-c", RUN, *arguments], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["code"] == 0, done.stderr
    return set(result["modules"])


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == name or m.startswith(name + ".") for name in names))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    return Path(shutil.copytree(ROOT / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns(".engine")))


def test_help_imports_no_library_and_no_command(tmp_path):
    modules = imported("--help", cwd=tmp_path)
    assert loaded(modules, HEAVY) == []
    assert loaded(modules, ("engine.commands", "engine.files", "engine.api", "dsl.diagnostics")) == []


def test_a_tick_imports_neither_the_other_commands_nor_the_web(workspace):
    imported("-w", str(workspace), "tick", "--at", "2026-07-01T09:00:00Z", cwd=workspace)  # the work
    modules = imported("-w", str(workspace), "tick", "--at", "2026-07-01T09:00:00Z", cwd=workspace)  # none
    assert "engine.tick" in modules
    assert loaded(modules, NOT_FOR_A_TICK) == []


def test_a_tick_on_files_it_has_seen_reads_its_plan_from_the_cache(workspace):
    """No YAML, no expression parser, no jinja2, no pydantic: the plan comes from
    .engine/plan.pickle (engine.plan_cache), made of campaigns.shapes, and no step renders."""
    imported("-w", str(workspace), "tick", "--at", "2026-07-01T09:00:00Z", cwd=workspace)  # the work; .engine/
    imported("-w", str(workspace), "tick", "--at", "2026-07-01T09:00:00Z", cwd=workspace)  # keeps the plan
    modules = imported("-w", str(workspace), "tick", "--at", "2026-07-01T09:00:00Z", cwd=workspace)
    assert (workspace / ".engine" / "plan.pickle").is_file()
    assert loaded(modules, ("yaml", "lark", "jinja2", "dsl.yamlload", "dsl.parser", "dsl.checker", "dsl.templates",
                            "dsl.template_check", "dsl.template_render", "campaigns.workspace",
                            "campaigns.model", "pydantic", "pydantic_core")) == []


def test_check_imports_neither_the_runtime_nor_the_dry_run(workspace):
    modules = imported("-w", str(workspace), "check", cwd=workspace)
    assert "engine.files" in modules
    assert loaded(modules, ("engine.api", "engine.commands", "engine.tick", "engine.steps", "engine.links",
                            "engine.web", "fastapi")) == []
