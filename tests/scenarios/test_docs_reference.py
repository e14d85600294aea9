"""The reference pages in docs/ stay true: they are read here and compared with the code.

* docs/language.md: every function of the registry (dsl/functions.py) has its signature there,
  and no other function is listed; every operator is in the precedence table, in the order of
  dsl.nodes.PRECEDENCE; every example (the tables with the columns ``expression | result``) is
  type-checked and evaluated, by the compiled code, its closure form and the reference
  interpreter, for the sample partner the page documents, and must give the documented result
  (or the documented error of ``engine check``, or warning); every template example renders as
  shown; every filter, test and variable templates have is named.
* docs/campaign-files.md: every key of the JSON Schemas of campaign files and of engine.yaml is
  in one of its key tables (each object's keys together in one table), and no table lists a
  key that does not exist; every ``yaml`` block of the docs is a whole campaign file (or an
  engine.yaml) that passes ``engine check`` in a copy of the example workspace, and the
  campaigns pass ``engine test`` too.
* docs/cli.md: every command of ``build_parser()`` has its ``### engine NAME`` section, naming
  each of its options and choices, and no section documents a command that does not exist;
  the exit codes are those of engine.console; every ``engine`` line of its ``sh`` blocks runs,
  in order, on a copy of the example workspace, with the exit code it documents.
* Every link of README.md and docs/*.md points inside the repository, at a file (and heading)
  that exists.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo

import pytest

from campaigns.jsonschema import campaign_schema, settings_schema
from campaigns.model import PartnerSettings
from dsl.checker import Scope, check_text
from dsl.compile import compile_closures, compile_expression
from dsl.functions import SIGNATURES
from dsl.nodes import PRECEDENCE, Call, ListExpr, Literal, Node, Unary
from dsl.parser import parse
from dsl.runtime import BINARY, Context, kind, same
from dsl.templates import TEMPLATE_NAMES, environment, render_inline
from dsl.types import coerce, record, to_utc
from dsl.yamlload import load_yaml
from engine.cli import build_parser, main
from engine.console import INPUT_ERROR, OK, REFUSED, USAGE_ERROR
from engine.testing import copy_workspace
from tests.dsl import reference

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
LANGUAGE = DOCS / "language.md"
CAMPAIGN_FILES = DOCS / "campaign-files.md"
CLI = DOCS / "cli.md"
README = ROOT / "README.md"
EXAMPLES = ROOT / "examples"

no_store = pytest.mark.no_store


# --- Reading markdown ---------------------------------------------------------------------------

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of that language, in order."""
    return [body for lang, body in FENCE.findall(text) if lang.strip() == language]


def without_code(text: str) -> str:
    """The text with fenced blocks and inline code blanked out (links inside them are code)."""
    text = FENCE.sub("", text)
    return re.sub(r"(`+).*?\1", "", text, flags=re.S)


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, title, offset) of every heading outside code blocks."""
    found = []
    fenced = [(m.start(), m.end()) for m in FENCE.finditer(text)]
    for m in re.finditer(r"^(#{1,6})[ \t]+(.+?)[ \t]*$", text, re.M):
        if not any(start <= m.start() < end for start, end in fenced):
            found.append((len(m.group(1)), m.group(2), m.start()))
    return found


def section(text: str, title: str) -> str:
    """The text under the heading ``title`` up to the next heading of the same level or higher."""
    marks = headings(text)
    for i, (level, name, offset) in enumerate(marks):
        if name == title:
            end = next((o for lv, _, o in marks[i + 1:] if lv <= level), len(text))
            return text[offset:end]
    raise AssertionError(f"no heading {title!r}")


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


def tables(text: str) -> list[Table]:
    """Every markdown table outside code blocks; ``\\|`` in a cell is a ``|``."""
    found: list[Table] = []
    lines = FENCE.sub("", text).splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1]):
            header = cells(lines[i])
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(cells(lines[i]))
                i += 1
            found.append(Table(header, rows))
        else:
            i += 1
    return found


def cells(line: str) -> list[str]:
    parts = re.split(r"(?<!\\)\|", line.strip())[1:-1]
    return [p.strip().replace("\\|", "|") for p in parts]


def code_spans(text: str) -> list[str]:
    return [m.group(2) for m in re.finditer(r"(`+)(.+?)\1", text, flags=re.S)]


def first_code(cell: str) -> str | None:
    spans = code_spans(cell)
    return spans[0] if spans else None


# --- docs/language.md: the sample ----------------------------------------------------------------


class Facts:
    """The sample partner's history as the page documents it."""

    def __init__(self, history: Mapping[str, Any], tz):
        self.history = history
        self.ended = {name: to_utc(datetime.fromisoformat(at.replace("Z", "+00:00")), tz)
                      for name, at in (history.get("ended") or {}).items()}
        self.now: datetime | None = None

    def _has(self, what: str, name: str) -> bool:
        return name in (self.history.get(what) or [])

    def in_group(self, partner, name):
        return self._has("groups", name)

    def in_campaign(self, partner, campaign_id):
        return self._has("enrolled", campaign_id)

    def was_in_campaign(self, partner, campaign_id, within: timedelta | None = None):
        if self._has("enrolled", campaign_id):
            return True
        ended = self.ended.get(campaign_id)
        if ended is None:
            return False
        return within is None or ended >= self.now - within

    def opened(self, partner, step):
        return self._has("opened", step) or self._has("clicked", step)

    def clicked(self, partner, step):
        return self._has("clicked", step)

    def bounced(self, partner, step):
        return self._has("bounced", step)

    def responded(self, partner, step):
        return step in (self.history.get("responses") or {})

    def response(self, partner, step):
        return (self.history.get("responses") or {}).get(step)

    def variant(self, partner, step):
        return (self.history.get("variants") or {}).get(step)

    def split(self, partner, step):
        return (self.history.get("paths") or {}).get(step)


@dataclass
class Sample:
    tz: Any
    now: datetime
    fields: dict
    partner: dict
    event: dict
    scope: Scope
    facts: Facts

    def context(self) -> Context:
        return Context(now=self.now, tz=self.tz, event=self.event, facts=self.facts)


@cache
def sample() -> Sample:
    """The sample of the section "The examples on this page", read as the engine reads a
    partner record: the raw values coerced to the schema's types."""
    found = blocks(section(read(LANGUAGE), "The examples on this page"), "yaml")
    assert len(found) == 1, "the section has one yaml block: the sample"
    data = load_yaml("docs/language.md", found[0]).data
    tz = ZoneInfo(data["timezone"])
    now = to_utc(datetime.fromisoformat(data["now"].replace("Z", "+00:00")), tz)
    settings = PartnerSettings.model_validate({"fields": data["fields"]})
    assert not settings.type_problems()
    types = settings.types()
    partner = {name: coerce(types[name], raw, tz) for name, raw in data["partner"].items()}
    assert set(data["partner"]) <= set(types), "the sample record uses only declared fields"
    event = dict(data["event"])
    event["at"] = to_utc(datetime.fromisoformat(event["at"].replace("Z", "+00:00")), tz)
    workspace = data["workspace"]
    scope = Scope(partner=record(types), event=True, steps=tuple(workspace["steps"]),
                  groups=tuple(workspace["groups"]), campaigns=tuple(workspace["campaigns"]),
                  variant_steps=tuple(workspace["variant_steps"]), splits=tuple(workspace["splits"]))
    facts = Facts(data["history"], tz)
    facts.now = now
    for name in ("groups", "enrolled", "ended", "opened", "clicked", "bounced", "responses", "variants",
                 "paths"):
        assert name in data["history"], f"the sample's history lists {name}"
    return Sample(tz, now, data["fields"], partner, event, scope, facts)


def examples(path: Path = LANGUAGE) -> list[tuple[str, str]]:
    """(expression, result) of every row of every ``expression | result`` table."""
    rows = []
    for table in tables(read(path)):
        if [h.lower() for h in table.header[:2]] == ["expression", "result"]:
            for row in table.rows:
                expression = first_code(row[0])
                assert expression is not None, f"an example row without an expression: {row}"
                rows.append((expression, row[1]))
    return rows


def _supported_by_reference(node: Node) -> bool:
    """The reference interpreter knows was_in_campaign with one argument only."""
    return not any(isinstance(n, Call) and n.function == "was_in_campaign" and len(n.args) > 1 for n in node.walk())


def evaluate(text: str) -> tuple[Any, list[str], list[str]]:
    """The value (the same from the generated code, the closures and the reference
    interpreter), the run-time warnings and the check warnings of one expression."""
    s = sample()
    node, diagnostics = check_text(text, s.scope, expect=None)
    errors = [d.message for d in diagnostics if d.severity == "error"]
    assert node is not None and not errors, f"{text}: engine check says {errors}"
    results = []
    for compiled in (compile_expression(node), compile_closures(node)):
        ctx = s.context()
        results.append((compiled(s.partner, ctx), len(ctx.warnings), ctx.warnings))
    value, warnings, messages = results[0]
    assert _same(results[1][0], value) and results[1][1] == warnings, f"{text}: the closures say {results[1][0]!r}"
    if _supported_by_reference(node):
        expected, ref_warnings = reference.evaluate(node, s.partner, now=s.now, tz=s.tz, event=s.event, facts=s.facts)
        assert _same(expected, value) and len(ref_warnings) == warnings, f"{text}: the reference interpreter says {expected!r}"
    return value, messages, [d.message for d in diagnostics if d.severity == "warning"]


def documented_value(text: str) -> Any:
    """A result written as a literal: a literal, a negated one, or a list of literals."""
    node = parse(text)

    def literal(n: Node) -> bool:
        if isinstance(n, Literal):
            return True
        if isinstance(n, Unary) and n.op == "-":
            return literal(n.operand)
        return isinstance(n, ListExpr) and all(literal(i) for i in n.items)

    assert literal(node), f"the result {text!r} is not written as a literal"
    s = sample()
    return compile_closures(node)({}, Context(now=s.now, tz=s.tz))


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return kind(a) == kind(b) and same(a, b, sample().tz) is True


@no_store
def test_the_sample_partner_is_complete():
    s = sample()
    assert s.partner["id"] == "p001" and s.now.tzinfo is not None
    assert {name for name in s.fields} - set(s.partner), "the sample shows missing fields too"


@no_store
@pytest.mark.parametrize("expression, result", examples(), ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None)
def test_every_language_example_gives_the_documented_result(expression: str, result: str):
    if result.startswith("error:"):
        message = result[len("error:"):].strip().strip("`")
        node, diagnostics = check_text(expression, sample().scope, expect=None)
        errors = [d.message for d in diagnostics if d.severity == "error"]
        assert any(message in e for e in errors), f"{expression}: expected an error {message!r}, engine check says {errors}"
        return
    written = first_code(result)
    assert written is not None, f"{expression}: the result cell names no value: {result!r}"
    value, warnings, check_warnings = evaluate(expression)
    expected = documented_value(written)
    assert _same(value, expected), f"{expression} is {value!r}, the page says {written}"
    assert bool(warnings) == ("run-time warning" in result), f"{expression}: run-time warnings {warnings}"
    assert bool(check_warnings) == ("check warning" in result), f"{expression}: check warnings {check_warnings}"


@no_store
def test_the_examples_cover_every_function_literal_and_operator():
    nodes = [parse(e) for e, r in examples() if not r.startswith("error:")]
    called = {n.function for node in nodes for n in node.walk() if isinstance(n, Call)}
    assert set(SIGNATURES) - called == set(), "functions without a working example"
    kinds = {n.kind for node in nodes for n in node.walk() if isinstance(n, Literal)}
    assert {"number", "string", "bool", "null", "date", "datetime", "duration"} <= kinds
    assert any(isinstance(n, ListExpr) for node in nodes for n in node.walk())
    operators = {getattr(n, "op", None) for node in nodes for n in node.walk()}
    assert set(BINARY) | {"and", "or", "not", "-"} <= operators


SIGNATURE = re.compile(r"^([a-z_][a-z0-9_]*)\((.*)\) → (.+)$")
PARAMETER_TYPES = {
    "string": "string", "number": "number", "temporal": "date | datetime", "duration": "duration",
    "sized": "string | list", "container": "string | list", "any": "any",
    "step": "step", "group": "group", "campaign": "campaign",
    "variant_step": "step with variants", "split_step": "split step",
}


def documented_signatures() -> dict[str, str]:
    found: dict[str, str] = {}
    for span in code_spans(read(LANGUAGE)):
        match = SIGNATURE.match(span)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} has two signatures on the page"
            found[match.group(1)] = span
    return found


def expected_signature(name: str) -> tuple[list[str], list[str], bool, str]:
    """(parameter types, optional parameter types, variadic, return type) as the page writes them."""
    s = SIGNATURES[name]
    returns = "any" if callable(s.returns) else str(s.returns)
    return [PARAMETER_TYPES[p] for p in s.params], [PARAMETER_TYPES[p] for p in s.optional], s.variadic, returns


def parsed_signature(text: str) -> tuple[list[str], list[str], bool, str]:
    """``name(a: T, b: U[, c: V]) → R``, ``name(a: T, ...) → R``."""
    match = SIGNATURE.match(text)
    assert match, text
    params = match.group(2)
    optional_part = re.search(r"\[,\s*(.*)\]$", params)
    optional = optional_part.group(1) if optional_part else ""
    required = params[:optional_part.start()] if optional_part else params
    variadic = required.rstrip().endswith("...")
    if variadic:
        required = required.rstrip()[:-3].rstrip().rstrip(",")

    def types(part: str) -> list[str]:
        return [p.split(":", 1)[1].strip() for p in part.split(",") if p.strip()] if part.strip() else []

    for p in [*required.split(","), *optional.split(",")]:
        assert not p.strip() or re.fullmatch(r"\s*[a-z_]+: [a-z |]+\s*", p), f"{text}: write each parameter as name: type"
    return types(required), types(optional), variadic, match.group(3).strip()


@no_store
def test_every_function_is_documented_with_its_signature():
    documented = documented_signatures()
    assert set(documented) == set(SIGNATURES), (
        f"missing: {sorted(set(SIGNATURES) - set(documented))}, not functions: {sorted(set(documented) - set(SIGNATURES))}")
    text = read(LANGUAGE)
    for name, signature in documented.items():
        assert parsed_signature(signature) == expected_signature(name), f"{signature}: the registry says {expected_signature(name)}"
        assert f"### {name}\n" in text, f"no section ### {name}"


OPERATOR_SPANS = {"x.name": "postfix", "x[i]": "postfix", "f(args)": "postfix", "-x": "neg"}


@no_store
def test_the_precedence_table_is_the_parser_s():
    table = next(t for t in tables(read(LANGUAGE)) if t.header[:2] == ["binds", "operators"])
    levels = []
    seen = set()
    for row in table.rows:
        spans = code_spans(row[1])
        ops = {OPERATOR_SPANS.get(s, s) for s in spans}
        assert len({PRECEDENCE[op] for op in ops}) == 1, f"one precedence per row: {row}"
        levels.append(PRECEDENCE[ops.pop()])
        seen.update(OPERATOR_SPANS.get(s, s) for s in spans)
    assert levels == sorted(levels) and len(set(levels)) == len(levels), "loosest first, one row per level"
    assert set(BINARY) | {"and", "or", "not", "neg", "postfix"} <= seen


# --- docs/language.md: templates ----------------------------------------------------------------


def template_examples() -> list[tuple[str, str]]:
    rows = []
    for table in tables(read(LANGUAGE)):
        if [h.lower() for h in table.header[:2]] == ["template", "output"]:
            rows.extend((first_code(r[0]), first_code(r[1]) or "") for r in table.rows)
    return rows


@no_store
@pytest.mark.parametrize("template, output", template_examples())
def test_every_template_example_renders_as_documented(template: str, output: str):
    s = sample()
    local = s.now.astimezone(s.tz)
    partner = dict.fromkeys(s.fields)
    partner.update(s.partner)
    variables = {
        "partner": partner,
        "campaign": {"id": "partner-onboarding", "name": "Partner onboarding", "number": 1, "owner": None},
        "step": {"id": "welcome", "kind": "email"},
        "now": local, "today": local.date(), "unsubscribe_url": "", "preferences_url": "",
    }
    rendered = render_inline(template, variables)
    assert rendered == output, f"{template} renders {rendered!r}, the page says {output!r}"


@no_store
def test_the_template_names_filters_and_tests_are_listed():
    text = section(read(LANGUAGE), "Templates")
    spans = set(code_spans(text))
    env = environment()
    assert set(TEMPLATE_NAMES) - spans == set()
    assert set(env.filters) - spans == set(), "filters not on the page"
    assert {t for t in env.tests if t.isidentifier()} - spans == set(), "tests not on the page"
    assert {g for g in env.globals} - spans == set(), "global functions not on the page"


# --- docs/campaign-files.md -----------------------------------------------------------------------


def objects(schema: Any) -> list[tuple[str, set[str]]]:
    """(title, property names) of every object schema, nested ones included."""
    found = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            if "properties" in node:
                found.append((node.get("title", name), set(node["properties"])))
            for key, value in node.items():
                walk(value, key)
        elif isinstance(node, list):
            for value in node:
                walk(value, name)

    walk(schema, "root")
    return found


def key_tables(path: Path) -> list[set[str]]:
    found = []
    for table in tables(read(path)):
        if table.header and table.header[0].lower() == "key":
            keys = set()
            for row in table.rows:
                key = first_code(row[0])
                assert key is not None and row[0] == f"`{key}`", f"a key cell is one key in backticks: {row[0]!r}"
                keys.add(key)
            found.append(keys)
    return found


@no_store
@pytest.mark.parametrize("which", ["campaign", "settings"])
def test_every_key_of_the_schema_is_documented(which: str):
    schema = campaign_schema() if which == "campaign" else settings_schema()
    documented = key_tables(CAMPAIGN_FILES)
    names = set().union(*documented)
    for title, keys in objects(schema):
        assert keys - names == set(), f"{title}: keys not in any key table: {sorted(keys - names)}"
        assert any(keys <= table for table in documented), f"{title}: no one key table lists all of {sorted(keys)}"


@no_store
def test_no_key_table_lists_a_key_that_does_not_exist():
    names = set()
    for schema in (campaign_schema(), settings_schema()):
        for _, keys in objects(schema):
            names |= keys
    documented = set().union(*key_tables(CAMPAIGN_FILES))
    assert documented - names == set(), f"key tables list keys no schema has: {sorted(documented - names)}"


def yaml_examples() -> list[tuple[str, str, str]]:
    """(page, file name, text) of every yaml block of the reference pages but the language
    sample: each is a whole campaign file (first line ``# campaigns/NAME.yaml``) or engine.yaml."""
    found = []
    for page in (LANGUAGE, CAMPAIGN_FILES):
        text = read(page)
        sample_block = blocks(section(text, "The examples on this page"), "yaml") if page == LANGUAGE else []
        for body in blocks(text, "yaml"):
            if body in sample_block:
                continue
            first = body.splitlines()[0] if body else ""
            match = re.fullmatch(r"# (campaigns/[A-Za-z0-9][A-Za-z0-9_.-]*\.yaml|engine\.yaml)\s*", first)
            assert match, f"{page.name}: a yaml block is a whole file, headed '# campaigns/NAME.yaml' or '# engine.yaml': {first!r}"
            found.append((page.name, match.group(1), body))
    return found


def _check(root: Path, capsys) -> dict:
    code = main(["check", str(root), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (OK, INPUT_ERROR)
    return report


@no_store
def test_every_campaign_example_passes_engine_check_and_engine_test(tmp_path, capsys):
    campaigns = [(page, name, body) for page, name, body in yaml_examples() if name.startswith("campaigns/")]
    names = [name for _, name, _ in campaigns]
    assert len(names) == len(set(names)), "each example campaign has a file name of its own"
    assert len(campaigns) >= 5
    root = copy_workspace(EXAMPLES, tmp_path / "examples")
    for _, name, body in campaigns:
        (root / name).write_text(body, encoding="utf-8")
    report = _check(root, capsys)
    errors = [e for e in report["errors"] if e["severity"] == "error"]
    assert errors == [], "\n".join(f"{e['path']}:{e['line']}:{e['col']}: {e['message']}" for e in errors)
    for page, name, _ in campaigns:
        campaign = Path(name).stem
        code = main(["-w", str(root), "test", campaign, "--at", "2026-07-01T09:00"])
        assert code == OK, (page, name, capsys.readouterr())
        capsys.readouterr()


@no_store
def test_every_engine_yaml_example_passes_engine_check(tmp_path, capsys):
    settings = [(page, body) for page, name, body in yaml_examples() if name == "engine.yaml"]
    assert settings, "campaign-files.md shows an engine.yaml"
    for i, (page, body) in enumerate(settings):
        root = copy_workspace(EXAMPLES, tmp_path / f"workspace-{i}")
        shutil.rmtree(root / "broken", ignore_errors=True)
        for campaign in (root / "campaigns").glob("*.yaml"):
            campaign.unlink()
        (root / "engine.yaml").write_text(body, encoding="utf-8")
        report = _check(root, capsys)
        assert report["ok"], (page, report["errors"])


# --- docs/cli.md ----------------------------------------------------------------------------------

GLOBAL_OPTIONS = {"-w", "--workspace", "--store", "-h", "--help"}


@dataclass
class Command:
    name: str  # "events import"
    options: set[str]
    choices: set[str]


def parser_commands(parser: argparse.ArgumentParser | None = None, prefix: str = "",
                    inherited: frozenset[str] = frozenset()) -> list[Command]:
    """Every command that runs (a parser without sub-commands), with the option strings of it
    and of the parsers above it, and the values its choices allow."""
    parser = parser or build_parser()
    options = set(inherited)
    choices: set[str] = set()
    subcommands = None
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subcommands = action
            continue
        options.update(action.option_strings)
        if action.choices:
            choices.update(str(c) for c in action.choices)
    if subcommands is None:
        return [Command(prefix.strip(), options - GLOBAL_OPTIONS, choices)]
    found = []
    for name, sub in subcommands.choices.items():
        found.extend(parser_commands(sub, f"{prefix} {name}", frozenset(options) if prefix else frozenset()))
    return found


def cli_sections() -> dict[str, str]:
    text = read(CLI)
    found = {}
    for level, title, _ in headings(text):
        match = re.fullmatch(r"`?engine ([a-z][a-z -]*?)`?", title)
        if level == 3 and match:
            assert match.group(1) not in found, f"two sections for engine {match.group(1)}"
            found[match.group(1)] = section(text, title)
    return found


@no_store
def test_every_command_has_a_section_naming_its_options():
    commands = parser_commands()
    sections = cli_sections()
    names = {c.name for c in commands}
    assert names - set(sections) == set(), f"commands without a '### engine NAME' section in docs/cli.md: {sorted(names - set(sections))}"
    assert set(sections) - names == set(), f"sections for commands that do not exist: {sorted(set(sections) - names)}"
    for command in commands:
        text = sections[command.name]
        spans = " ".join(code_spans(text)) + "\n" + "\n".join(blocks(text, "sh") + blocks(text, "text"))
        for option in sorted(command.options):
            assert re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", spans), f"engine {command.name}: {option} is not in its section"
        for choice in sorted(command.choices):
            assert re.search(rf"(?<![\w-]){re.escape(choice)}(?![\w-])", spans), f"engine {command.name}: {choice} is not in its section"
        assert blocks(text, "sh"), f"engine {command.name}: no example"


@no_store
def test_the_options_every_command_takes_and_the_exit_codes():
    text = read(CLI)
    first = min(offset for level, title, offset in headings(text) if title.startswith("engine ") or title.startswith("`engine "))
    for option in ("-w", "--workspace", "--store"):
        assert f"`{option}" in text[:first], f"{option} is described before the commands"
    from engine.review_commands import PLAN_CHANGES

    table = next(t for t in tables(text) if t.header[:2] == ["exit code", "means"])
    codes = [str(c) for c in (OK, INPUT_ERROR, USAGE_ERROR, REFUSED, PLAN_CHANGES)]
    assert [r[0].strip("`") for r in table.rows] == codes, f"the exit codes are {codes}"


NOT_RUN = "(not run by the docs test)"


def cli_examples(page: Path = CLI, language: str = "sh", prompt: str = "") -> list[tuple[str, list[str], int]]:
    """(line, arguments, expected exit code) of every ``engine`` line of the page's code blocks
    of that language (lines after ``prompt``, such as the README's ``$ ``). A line may end with
    ``# exit N``; one whose comment says it is not run (``engine serve`` runs until stopped,
    ``apikey revoke ID`` needs an id of the moment) is left out; ``> FILE`` is dropped."""
    found = []
    for body in blocks(read(page), language):
        for line in body.splitlines():
            if not line.startswith(prompt + "engine ") or NOT_RUN in line:
                continue
            line = line[len(prompt):]
            words = shlex.split(line, comments=True)
            if ">" in words:
                words = words[:words.index(">")]
            code = re.search(r"#.*\bexit (\d)\b", line)
            found.append((line, words[1:], int(code.group(1)) if code else OK))
    return found


def test_the_cli_examples_run(tmp_path, capsys, monkeypatch):
    """On a copy of the example workspace, in a git repository of its own (for `engine diff`
    REV:path), in the order of the page."""
    found = cli_examples()
    assert len(found) >= len(parser_commands()) - 1
    run_examples(found, tmp_path, capsys, monkeypatch)


def test_the_readme_examples_run(tmp_path, capsys, monkeypatch):
    """The README's ``$ engine ...`` lines, the same way (its history has two commits, for
    ``diff HEAD~1:...``)."""
    found = cli_examples(README, "", "$ ")
    assert len(found) >= 15
    run_examples(found, tmp_path, capsys, monkeypatch)


def run_examples(found: list[tuple[str, list[str], int]], tmp_path: Path, capsys, monkeypatch) -> None:
    root = copy_workspace(EXAMPLES, tmp_path / "examples")
    git = ["git", "-c", "user.name=docs", "-c", "user.email=docs@example.com", "-c", "commit.gpgsign=false"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "examples"],
                    ["commit", "-q", "--allow-empty", "-m", "a second commit"]):
        subprocess.run(git + command, cwd=root, check=True, capture_output=True)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENGINE_SECRET", "dev-only-key")
    monkeypatch.delenv("ENGINE_USER", raising=False)
    for line, words, expected in found:
        code = main(words)
        out = capsys.readouterr()
        assert code == expected, f"{line}\nexit {code}\n{out.out[-2000:]}\n{out.err[-2000:]}"


# --- Links ---------------------------------------------------------------------------------------


def slug(title: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]{2,}|`", "", title).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    for _, title, _ in headings(read(path)):
        base = slug(title)
        name, n = base, 1
        while name in found:
            name, n = f"{base}-{n}", n + 1
        found.add(name)
    return found


PAGES = [README, *sorted(DOCS.glob("*.md"))]


@no_store
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_stay_inside_the_repository_and_exist(page: Path):
    text = without_code(read(page))
    targets = re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text) + re.findall(r"^\s*\[[^\]]+\]:\s*(\S+)", text, re.M)
    assert not re.search(r"<(?:https?|mailto):", text), "no autolinks out of the repository"
    assert not re.search(r"(?<![\w/])https?://(?!127\.0\.0\.1|localhost|[\w.-]*example\.com)", text), \
        "no web addresses outside code (GitHub makes them links)"
    for target in targets:
        assert not re.match(r"[a-z][a-z0-9+.-]*:", target), f"{page.name}: {target} leaves the repository"
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        assert file.exists(), f"{page.name}: {target}: no such file"
        assert ROOT in file.parents or file == ROOT, f"{page.name}: {target} is outside the repository"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{page.name}: {target}: no such heading"


@no_store
def test_the_readme_links_the_reference_pages():
    text = read(ROOT / "README.md")
    for page in ("language.md", "campaign-files.md", "cli.md", "journeys.md", "reliability.md", "web.md", "pages.md"):
        assert f"(docs/{page})" in text
    assert "SPEC" not in text.replace("product specification", "")
