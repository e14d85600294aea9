"""The render budget (time, output, value sizes), templates that resolve outside templates/, and
what `engine check` reports that only the sandbox would refuse (issue 18, items 8 and 16).

Budget tests assert on the outcome, never on elapsed time: each template here would run for
minutes or allocate gigabytes without its budget, so it can only pass by being stopped."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from dsl.source import ScalarText, SourceText
from dsl.templates import MAX_OUTPUT, TemplateError, check_file, check_inline, render_file, render_inline
from dsl.types import STRING, list_of, record
from engine.cli import main
from engine.testing import copy_workspace

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PARTNER = record({"name": STRING, "tags": list_of(STRING)})
NAMES = {"partner": {"name": "Ann", "tags": ["a", "b", "c"]}, "campaign": {"id": "c", "name": "C"}, "step": {"id": "s"}}
BUDGET = "template render exceeded its budget: "


def failure(text: str, templates_dir: Path | None = None) -> str:
    with pytest.raises(TemplateError) as caught:
        render_inline(text, NAMES, templates_dir)
    return str(caught.value)


def inline(text: str, templates_dir: Path | None = None) -> list[tuple[int, int, str]]:
    where = ScalarText(SourceText("t.txt", text), text, None, 0, len(text))
    return [(d.span.line, d.span.col, d.message) for d in check_inline(text, where, PARTNER, templates_dir)]


# --- Time ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        # 2**60 macro calls, no loop and no output
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}",
        # 900,000 iterations (under the loop limit) of a few milliseconds each, printing nothing
        ("{% for i in range(100000) %}{% for j in range(8) %}{% set x = ('ab' * 500000).replace('a', 'c') %}"
        "{% endfor %}{% endfor %}"),
        # 2**60 recursions of a recursive loop (each a call: its items are not counted as loops)
        "{% for x in [1, 1] recursive %}{% if loop.depth < 60 %}{{ loop([1, 1]) }}{% endif %}{% endfor %}",
    ],
    ids=["exponential-macro", "slow-loop", "recursive-loop"],
)
def test_a_render_that_runs_for_minutes_stops_after_its_time(text):
    assert failure(text) == f"inline template, line 1: {BUDGET}took longer than 2 s"


@pytest.mark.parametrize(
    "text",
    [
        # 10**10 iterations, no output and no call inside the inner loop
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
        # the same over iterators without a length (each item counted)
        "{% for a in range(100000)|map('string') %}{% for b in range(100000)|select %}{% endfor %}{% endfor %}",
        # a block holding every piece until its end
        "{% set s %}{% for a in range(100000) %}{% for b in range(100000) %}{{ '' }}{% endfor %}{% endfor %}{% endset %}",
    ],
    ids=["nested-loops", "nested-iterators", "set-block"],
)
def test_loops_stop_at_a_million_iterations(text):
    assert failure(text) == f"inline template, line 1: {BUDGET}loops over 1,000,000 iterations"


def test_a_million_iterations_are_allowed():
    text = "{% for a in range(1000) %}{% for b in range(999) %}{% endfor %}{% endfor %}done"
    assert render_inline(text, NAMES) == "done"


def test_each_render_has_its_own_time_even_in_threads():
    """The budget is per render and per thread (a context variable), not a process global."""
    results: list[str] = []

    def spin() -> None:
        try:
            render_inline("{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}", NAMES)
        except TemplateError as exc:
            results.append(str(exc))

    worker = threading.Thread(target=spin)
    worker.start()
    for _ in range(200):  # meanwhile, short renders in this thread are unaffected
        assert render_inline("{% for t in partner.tags %}{{ t }}{% endfor %}", NAMES) == "abc"
    worker.join()
    assert results and results[0].endswith("took longer than 2 s")


# --- Output --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}",
        "{% for i in range(1000) %}{% for j in range(900) %}xxxxxxxxxx{% endfor %}{% endfor %}",
        "{% macro m() %}{% for i in range(100000) %}0123456789abcdefghij{% endfor %}{% endmacro %}{{ m() }}",
        "{% set s %}{% for i in range(100000) %}0123456789abcdefghij{% endfor %}{% endset %}{{ s|length }}",
    ],
    ids=["printed", "printed-for-ever", "macro", "set-block"],
)
def test_output_over_the_limit_fails(text):
    assert failure(text).endswith(f"{BUDGET}output over 1,000,000 characters")


def test_output_just_under_the_limit_renders():
    assert len(render_inline("{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}", NAMES)) == MAX_OUTPUT


def test_a_huge_field_is_over_the_output_limit_on_every_path(tmp_path):
    names = {**NAMES, "partner": {"name": "x" * (MAX_OUTPUT + 1), "tags": []}}
    for text in ("{{ partner.name }}", "{{ partner.name | upper }}"):
        with pytest.raises(TemplateError, match="output over 1,000,000 characters"):
            render_inline(text, names)


# --- Values made before any output ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{{ 'a' * 10**9 }}", "'*' would make a value over 1,000,000 characters"),
        ("{{ 10**9 * 'a' }}", "'*' would make a value over 1,000,000 characters"),
        ("{{ ([1] * 10**9)|length }}", "'*' would make a value over 1,000,000 characters"),
        ("{% set y = [1] * 100000 %}{{ ([y] * 100000)|length }}", "'*' would make a value over 1,000,000 characters"),
        ("{{ ' '|center(10**10) }}", "filter 'center' would make a value over 1,000,000 characters"),
        ("{{ ' '|center(10000000000) }}", "filter 'center' would make a value over 1,000,000 characters"),
        ("{{ 'x'|indent(10**9) }}", "filter 'indent' would make a value over 1,000,000 characters"),
        ("{{ ('x\\n' * 500000)|indent(1000) }}", "filter 'indent' would make a value over 1,000,000 characters"),
        ("{{ ('x ' * 400000)|wordwrap(1, wrapstring='-' * 1000) }}", "filter 'wordwrap' would make a value"),
        ("{{ '%s'|format('x')|center(10**9) }}", "filter 'center' would make a value"),
        ("{{ '%0999999999d'|format(1) }}", "'%' formatting would make a value"),
        ("{{ '%*d' % (10**9, 1) }}", "'%' formatting would make a value"),
        ("{{ '%0999999999d' % 1 }}", "'%' formatting would make a value"),
        ("{{ '{:>999999999}'.format(1) }}", "format() would make a value"),
        ("{{ '{:>{}}'.format(1, 10**9) }}", "format() would make a value"),
        ("{{ ('{:>900000}' * 5).format(1, 2, 3, 4, 5) }}", "format() would make a value"),
        ("{{ '{x:>999999999}'.format_map({'x': 1}) }}", "format() would make a value"),
        ("{{ 'x'.ljust(10**9) }}", "ljust() would make a value"),
        ("{{ 'x'.zfill(10**9) }}", "zfill() would make a value"),
        ("{{ ('\t' * 1000).expandtabs(10**6) }}", "expandtabs() would make a value"),
        ("{{ ('-' * 100000).join(range(100000)|map('string')) }}", "join() would make a value"),
        ("{{ range(100000)|join('-' * 100000) }}", "filter 'join' would make a value"),
        ("{{ ('a' * 100000).replace('', 'b' * 100000) }}", "replace() would make a value"),
        ("{{ ('a' * 100000)|replace('a', 'b' * 100000) }}", "filter 'replace' would make a value"),
        ("{{ ('a' * 1000000).translate({97: 'bb'}) }}", "translate() would make a value"),
        ("{{ [1]|batch(10**9, 'x')|list }}", "filter 'batch' would make a value"),
        ("{{ [1]|slice(10**9, 'x')|list }}", "filter 'slice' would make a value"),
        ("{{ range(100000)|list|tojson(indent=100) }}", "filter 'tojson' would make a value"),
        ("{{ [1]|tojson(indent=10**9) }}", "filter 'tojson' indent over 100"),
        ("{% set x = [1] * 10 %}{{ ([x] * 100000)|sum(start=[])|length }}", "would make a value over 1,000,000"),
        ("{{ lipsum(10**6) }}", "lipsum() over 100 paragraphs"),
        ("{{ lipsum(1, max=10**9) }}", "lipsum() over 1,000 words a paragraph"),
        ("{{ range(10**9)|length }}", "range() over 100,000 numbers"),
        ("{{ range(10**30)|length }}", "range() over 100,000 numbers"),
        ("{{ 9 ** (9 ** 9) }}", "'**' would make a number of more than 4,300 digits"),
        ("{% set n = 10 ** 4000 %}{{ n * n }}", "'*' would make a number of more than 4,300 digits"),
        # doubling without a multiplication: '+', '~', literals, namespaces
        ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
         "'+' would make a value"),
        ("{% set ns = namespace(s='x') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
         "'~' would make a value"),
        ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
         "a list literal would make a value"),
        ("{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = {'a': ns.l, 'b': ns.l} %}{% endfor %}",
         "a dict literal would make a value"),
        ("{% set y = 'x' * 600000 %}{% set ns = namespace() %}{% set ns.a = y %}{% set ns.b = y %}",
         "{% set ns.b %} would make a value"),
        ("{% set y = 'x' * 600000 %}{{ dict(a=y, b=y)|length }}", "dict() would make a value"),
    ],
)
def test_operations_that_would_allocate_too_much_are_refused_before_they_do(text, reason):
    message = failure(text)
    assert message.startswith("inline template, line 1: " + BUDGET) and reason in message, message


def test_refusals_in_template_files_name_the_file_and_line(tmp_path):
    (tmp_path / "body.txt").write_text("Hello\n{% include 'big.txt' %}\n")
    (tmp_path / "big.txt").write_text("one\ntwo {{ 'a' * 10**9 }}\n")
    with pytest.raises(TemplateError) as caught:
        render_file("body.txt", NAMES, tmp_path)
    assert str(caught.value) == f"template 'big.txt', line 2: {BUDGET}'*' would make a value over 1,000,000 characters"


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'ab' * 3 }} {{ [1, 2] * 2 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ '%05.1f|%-4s|%(x)s' % {'x': 1} if false else '%05.1f' % 2.5 }}",
        "{{ '%s-%s'|format(partner.name, campaign.id) }} {{ '{:>6}|{:.2f}|{name}'.format('x', 3.14159, name=partner.name) }}",
        "{{ partner.name|center(11) }}|{{ 'a\nb'|indent(2, first=true) }}|{{ 'aaa bbb ccc'|wordwrap(4) }}",
        "{{ partner.tags|join(', ') }} {{ 'abc'|replace('b', 'xx') }} {{ [1, 2, 3]|batch(2, 0)|list }} {{ range(5)|slice(2)|list }}",
        "{{ {'a': [1, 2]}|tojson(2) }} {{ [[1], [2]]|sum(start=[]) }} {{ [1, 2]|sum }} {{ range(3)|list }}",
        ("{% set ns = namespace(n=0, l=[]) %}{% for t in partner.tags %}{% set ns.n = ns.n + 1 %}"
        "{% set ns.l = ns.l + [t] %}{% endfor %}{{ ns.n }} {{ ns.l }} {{ [partner.name, partner.tags] }} {{ (1, partner.name) }}"),
        ("{% for t in partner.tags recursive %}{{ loop.index }}/{{ loop.length }}{{ ',' if not loop.last }}{% endfor %}"
        "{% for k, v in {'a': 1}.items() %}{{ k ~ v ~ partner.name }}{% endfor %}{% for t in partner.tags if t != 'b' %}{{ t }}{% endfor %}"),
        ("{% macro row(x) %}[{{ x }}]{% endmacro %}{% set s %}{{ row(1) }}{{ row(2) }}{% endset %}{{ s }}"
        "{% filter upper %}{{ row(partner.name) }}{% endfilter %}{{ 'x'.ljust(3) }}|{{ ','.join(['a', 'b']) }}|{{ lipsum(1, false, 5, 6)|wordcount > 0 }}"),
    ],
)
def test_ordinary_templates_render_as_jinja_renders_them(text):
    expected = ImmutableSandboxedEnvironment(keep_trailing_newline=True).from_string(text).render(NAMES)
    assert render_inline(text, NAMES) == expected


# --- Templates outside templates/ (item 16) -------------------------------------------------------


@pytest.fixture
def linked(tmp_path: Path) -> Path:
    """templates/ with a link to a secret outside it, a link to a file inside it, and a file
    that includes the outside link."""
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0\n")
    templates = tmp_path / "ws" / "templates"
    templates.mkdir(parents=True)
    (templates / "ok.txt").write_text("ok {{ partner.name }}\n")
    os.symlink(secret, templates / "leak.txt")
    os.symlink(templates / "ok.txt", templates / "alias.txt")
    (templates / "wrapper.txt").write_text("Dear {{ partner.name }},\n{% include 'leak.txt' %}\n")
    return templates


def test_a_link_out_of_templates_is_refused_at_run_time_and_never_read(linked):
    with pytest.raises(TemplateError) as caught:
        render_file("leak.txt", NAMES, linked)
    assert str(caught.value) == "template 'leak.txt' resolves outside templates/ (a link?): refused, not read"
    with pytest.raises(TemplateError) as caught:
        render_file("wrapper.txt", NAMES, linked)
    assert "resolves outside templates/" in str(caught.value) and "root:x" not in str(caught.value)
    with pytest.raises(TemplateError, match="resolves outside"):
        render_inline("{% include 'leak.txt' ignore missing %}", NAMES, linked)


def test_a_link_inside_templates_is_followed(linked):
    assert render_file("alias.txt", NAMES, linked) == "ok Ann\n"
    assert render_inline("{% include 'alias.txt' %}", NAMES, linked) == "ok Ann\n"


def test_check_reports_links_out_of_templates_where_they_are_named(linked):
    assert inline("Hi\n  {% include 'leak.txt' %}", linked) == [
        (2, 14, ("template 'leak.txt' resolves outside templates/ (a link?): it would not be read; "
                "put the file itself in templates/"))]
    assert inline("{% include 'alias.txt' %}", linked) == []
    found = check_file(linked / "leak.txt", PARTNER, linked)
    assert [(d.span.path, d.span.line, d.span.col) for d in found] == [(str(linked / "leak.txt"), 1, 1)]
    assert "resolves outside templates/" in found[0].message
    found = check_file(linked / "wrapper.txt", PARTNER, linked)
    assert [(Path(d.span.path).name, d.span.line, d.span.col) for d in found] == [("wrapper.txt", 2, 12)]


# --- What only the sandbox would refuse, reported by check ----------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("{{ ''.__class__ }}", [(1, 7, "__class__")]),
        ("Hi\n{{ campaign.__globals__ }}", [(2, 13, "__globals__")]),
        ("{{ ().__class__.__mro__ }}", [(1, 7, "__class__"), (1, 17, "__mro__")]),
        ("{{ step._id }} {{ campaign['__dict__'] }}", [(1, 9, "_id"), (1, 28, "__dict__")]),
        ("{% for t in partner.tags %}{{ t.__len__() }}{% endfor %}", [(1, 33, "__len__")]),
    ],
)
def test_check_reports_attributes_the_sandbox_refuses(text, expected):
    assert inline(text) == [
        (line, col, f"'{name}' is refused in templates: the sandbox allows no attribute starting with '_'")
        for line, col, name in expected
    ]


def test_check_leaves_partner_fields_and_keys_to_their_own_checks():
    assert inline("{{ campaign['_key'] }} {{ partner['name'] }} {{ step.id }}") == []
    assert [m for _, _, m in inline("{{ partner.__class__ }}")] == ["unknown field '__class__' of partner"]


def test_a_refused_attribute_in_a_yaml_string_points_into_the_yaml_file(tmp_path):
    from dsl.yamlload import load_yaml

    document = load_yaml("c.yaml", 'name: x\nsubject: "Hi {{ campaign.__class__ }}"\n')
    where = document.scalar(("subject",))
    found = check_inline(where.value, where, PARTNER)
    assert [(d.span.path, d.span.line, d.span.col) for d in found] == [("c.yaml", 2, 26)]


# --- Through the CLI: one runaway campaign, the others still deliver ------------------------------

RUNAWAY = """\
name: Runaway
description: A campaign whose templates would stop the tick without a render budget.
active: true
audience:
  rulesets:
    one: partner.name == "Aino Korhonen"
trigger:
  audience: true
steps:
  - id: spin
    email:
      subject: "Hi {{ partner.name }}"
      body: "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(60) }}"
  - id: huge
    email:
      subject: "{{ ' '|center(10**10) }}"
      body: "{{ 'a' * 10**9 }}"
  - id: fine
    email:
      subject: "Still here, {{ partner.name }}"
      body: "ok"
"""

LEAKY = """\
name: Leaky
description: A campaign whose template is a link to a file outside the workspace.
active: true
audience:
  rulesets:
    everyone: partner.name != ""
trigger:
  audience: true
steps:
  - id: leak
    email:
      subject: "Hi"
      template: leak.txt
"""


def run(capsys, *args: str) -> tuple[int, str]:
    code = main(list(args))
    return code, capsys.readouterr().out


def test_a_runaway_template_fails_its_step_and_the_tick_goes_on(tmp_path, capsys):
    ws = copy_workspace(EXAMPLES, tmp_path / "ws")
    (ws / "campaigns" / "runaway.yaml").write_text(RUNAWAY, encoding="utf-8")
    (ws / "campaigns" / "leaky.yaml").write_text(LEAKY, encoding="utf-8")
    (tmp_path / "secret.txt").write_text("do not send\n")
    os.symlink(tmp_path / "secret.txt", ws / "templates" / "leak.txt")

    code, out = run(capsys, "-w", str(ws), "check", "--json")
    problems = [e for e in json.loads(out)["errors"] if e["severity"] == "error"]
    assert [(Path(e["path"]).name, e["line"], "resolves outside templates/" in e["message"]) for e in problems] == [
        ("leaky.yaml", 13, True)]  # where the campaign names it (the linked file is never read)

    code, out = run(capsys, "-w", str(ws), "tick", "--at", "2026-07-01T00:00", "--json")
    report = json.loads(out)  # the leaky campaign has an error: it is not run, the others are
    assert code == 1 and [Path(e["path"]).name for e in report["errors"]] == ["leaky.yaml"]
    assert report["failed"] == 2 and report["delivered"] > 1

    code, out = run(capsys, "-w", str(ws), "steps", "runaway", "--partner", "p001", "--json")
    steps = {s["step"]: (s["status"], s.get("error")) for s in json.loads(out)["steps"]}
    assert steps == {
        "spin": ("failed", f"inline template, line 1: {BUDGET}took longer than 2 s"),
        "huge": ("failed", f"inline template, line 1: {BUDGET}filter 'center' would make a value over 1,000,000 characters"),
        "fine": ("executed", None),
    }

    code, out = run(capsys, "-w", str(ws), "outbox", "--json")
    sent = json.loads(out)
    rows = sent if isinstance(sent, list) else sent.get("messages", [])
    by_campaign = {}
    for row in rows:
        by_campaign.setdefault(row["campaign"], []).append(row)
    assert by_campaign["partner-onboarding"] and all(r["status"] == "sent" for r in by_campaign["partner-onboarding"])
    assert [r["step"] for r in by_campaign["runaway"]] == ["fine"] and "leaky" not in by_campaign
    assert not any("do not send" in json.dumps(r) for r in rows)
