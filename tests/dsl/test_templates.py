"""Templates: static checks placed at the right line:col, sandboxed strict rendering."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl import templates
from dsl.source import ScalarText, SourceText
from dsl.template_render import plain_pieces
from dsl.templates import TemplateError, check_file, check_inline, environment, render_file, render_inline
from dsl.types import NUMBER, STRING, list_of, record
from dsl.yamlload import load_yaml

PARTNER = record({"id": STRING, "name": STRING, "email": STRING, "revenue": NUMBER, "tags": list_of(STRING)})


def inline(text: str, partner=PARTNER, templates_dir=None) -> list[tuple[int, int, str]]:
    """Check a template standing alone in a file of its own: (line, col, message)."""
    where = ScalarText(SourceText("t.txt", text), text, None, 0, len(text))
    return [(d.span.line, d.span.col, d.message) for d in check_inline(text, where, partner, templates_dir)]


def messages(found) -> list[str]:
    return [m for _, _, m in found]


# --- Static checks: names and fields -----------------------------------------------------------


def test_a_correct_template_has_no_problems():
    text = (
        "{% set greeting = 'Hi' %}{{ greeting }} {{ partner.name }} {{ partner['email'] }}\n"
        "{% for tag in partner.tags %}{{ loop.index }}:{{ tag | upper }}{% endfor %}\n"
        "{% macro line(x) %}{{ x }}{% endmacro %}{{ line(campaign.name) }} {{ step.id }} {{ now }} {{ today }}\n"
        "{{ range(3) | list }} {{ partner.revenue is number }}"
    )
    assert inline(text) == []


def test_unknown_partner_field_points_at_the_attribute():
    assert inline("Hi {{ partner.nmae }}!") == [(1, 15, "unknown field 'nmae' of partner; did you mean 'name'?")]


def test_unknown_partner_field_by_subscript_points_at_the_string():
    assert inline('Hi {{ partner["nmae"] }}') == [(1, 15, "unknown field 'nmae' of partner; did you mean 'name'?")]


def test_each_repeated_unknown_field_on_a_line_gets_its_own_column():
    text = "{{ partner.nmae }} and {{partner.nmae}}\n  {{ partner.name ~ partner.emial }}"
    assert [(line, col) for line, col, _ in inline(text)] == [(1, 12), (1, 34), (2, 29)]
    assert messages(inline(text))[2] == "unknown field 'emial' of partner; did you mean 'email'?"


def test_field_name_in_plain_text_does_not_confuse_the_column():
    text = "partner.nmae is {{ 'partner.nmae' }}: {{ partner.nmae }}"
    assert inline(text) == [(1, 50, "unknown field 'nmae' of partner; did you mean 'name'?")]


def test_a_schema_without_fields_allows_any_field():
    assert inline("{{ partner.anything }}", partner=record()) == []


def test_a_loop_variable_named_partner_is_not_the_record():
    assert inline("{% for partner in partner.tags %}{{ partner.x }}{% endfor %}") == []


def test_undefined_variable_with_did_you_mean():
    assert inline("Hello\n  {{ parnter.name }}") == [(2, 6, "undefined template variable 'parnter'; did you mean 'partner'?")]


def test_undefined_variable_is_reported_once_where_first_used():
    assert inline("{{ x.a }} {% if x %}{{ x }}{% endif %}") == [(1, 4, "undefined template variable 'x'")]


def test_undefined_variable_in_a_block_tag():
    assert inline("{% if promo %}yes{% endif %}") == [(1, 7, "undefined template variable 'promo'")]


def test_a_name_used_as_attribute_is_not_taken_for_the_variable():
    # 'name' appears first as partner.name: the undefined variable is the later bare 'name'.
    assert inline("{{ partner.name }} {{ name }}") == [(1, 23, "undefined template variable 'name'")]


def test_unknown_filter_with_did_you_mean():
    assert inline("{{ partner.name | uper }}") == [(1, 19, "unknown filter 'uper'; did you mean 'upper'?")]


def test_unknown_filter_in_a_filter_block_and_unknown_test():
    found = inline("{% filter uper %}x{% endfilter %}\n{{ partner.revenue is nmber }}")
    assert found == [
        (1, 11, "unknown filter 'uper'; did you mean 'upper'?"),
        (2, 23, "unknown test 'nmber'; did you mean 'number'?"),
    ]


def test_unknown_filter_does_not_hide_other_problems():
    found = inline("{{ partner.nmae | uper }}")
    assert [(line, col) for line, col, _ in found] == [(1, 12), (1, 19)]


def test_include_of_a_missing_template_without_a_directory():
    assert inline("{% include 'footer.html' %}") == [(1, 12, "unknown template 'footer.html' (no templates directory)")]


def test_include_of_a_missing_template_with_did_you_mean(tmp_path):
    (tmp_path / "footer.html").write_text("bye\n")
    found = inline('{% include "footer.html" %}\n{% import "foter.html" as f %}', templates_dir=tmp_path)
    assert found == [(2, 11, "unknown template 'foter.html' (no templates/foter.html); did you mean 'footer.html'?")]


def test_include_ignore_missing_and_lists_with_one_existing_name(tmp_path):
    (tmp_path / "b.html").write_text("b\n")
    assert inline("{% include 'a.html' ignore missing %}{% include ['a.html', 'b.html'] %}", templates_dir=tmp_path) == []


# --- Static checks: syntax errors --------------------------------------------------------------


@pytest.mark.parametrize(
    "text, line, col, message",
    [
        ("a\n  {{ partner.name partner }}", 2, 19, "expected token 'end of print statement', got 'partner'"),
        ("Hi {{ $ }}", 1, 7, "unexpected character '$'"),
        ("Hi {{ partner.name }", 1, 20, "unexpected '}'"),
        ("{{ f(1 }}", 1, 8, "unexpected '}', expected ')'"),
        ("x\n{{ partner.name | }}", 2, 19, "expected token 'name', got 'end of print statement'"),
        ("one\ntwo {{ partner.name", 2, 5, "unexpected end of template, expected 'end of print statement'"),
        ("text {# note", 1, 6, "missing end of comment tag"),
        ("{% iff partner %}{% endif %}", 1, 4, "unknown tag 'iff'; did you mean 'if'?"),
        ("a\n {% if partner.name %}\n b", 2, 2, "'if' block is not closed (expected 'elif' or 'else' or 'endif' before the end of the template)"),
        ("{% if x %}{% for y in z %}{% endfor %}\n{% endiff %}", 2, 4, "unknown tag 'endiff'; did you mean 'endif'?"),
        ("{% for x in z %}\n  {% endif %}", 2, 6,
         "'endif' does not belong here: the innermost open block is 'for' (expected 'endfor' or 'else')"),
        ("{% for x in z %}{% endfor %}\n {% else %}", 2, 5, "'else' does not belong here: no block is open"),
        ("{% block a %}{% endblock %} {% block a %}{% endblock %}", 1, 38, "block 'a' defined twice"),
        ("{{- partner.name -}}  \n {{-  a b }}", 2, 9, "expected token 'end of print statement', got 'b'"),
    ],
)
def test_syntax_errors_point_at_the_offending_token(text, line, col, message):
    found = inline(text)
    assert len(found) == 1
    assert found[0][:2] == (line, col)
    assert found[0][2].startswith("template syntax error: " + message)


def test_a_carriage_return_in_the_value_is_a_line_break_for_jinja():
    document = load_yaml("c.yaml", 'subject: "a\\r\\n{{ x y }}"\n')
    assert document.data["subject"] == "a\r\n{{ x y }}"
    [problem] = check_inline(document.data["subject"], document.scalar(("subject",)), PARTNER)
    assert str(problem.span) == "c.yaml:1:21"  # the 'y', after the escapes


# --- Inline templates inside YAML --------------------------------------------------------------

CAMPAIGN = """\
name: Welcome
steps:
  - id: welcome
    email:
      subject: "Welcome, \\"{{ partner.nmae }}\\""
      body: |
        Hello {{ partner.name }},

        your revenue is {{ partner.revenu | round }}.
        {{ partner.name | uper }}
  - id: nudge
    sms:
      text: Hi {{ parnter.name }}
  - id: note
    popup:
      title: 'It''s {{ partner.name }'
"""


def _yaml_check(path: tuple) -> list[tuple[str, int, int, str]]:
    document = load_yaml("campaigns/welcome.yaml", CAMPAIGN)
    where = document.scalar(path)
    text = document.data
    for key in path:
        text = text[key]
    return [(str(d.span), d.span.line, d.span.col, d.message) for d in check_inline(text, where, PARTNER)]


def test_inline_error_in_a_double_quoted_yaml_string_points_into_the_yaml_file():
    # The escaped quote before the template shifts the column by one.
    assert _yaml_check(("steps", 0, "email", "subject")) == [
        ("campaigns/welcome.yaml:5:39", 5, 39, "unknown field 'nmae' of partner; did you mean 'name'?")
    ]


def test_inline_errors_in_a_block_scalar_point_at_their_lines():
    assert _yaml_check(("steps", 0, "email", "body")) == [
        ("campaigns/welcome.yaml:9:36", 9, 36, "unknown field 'revenu' of partner; did you mean 'revenue'?"),
        ("campaigns/welcome.yaml:10:27", 10, 27, "unknown filter 'uper'; did you mean 'upper'?"),
    ]


def test_inline_error_in_a_plain_yaml_string():
    assert _yaml_check(("steps", 1, "sms", "text")) == [
        ("campaigns/welcome.yaml:13:19", 13, 19, "undefined template variable 'parnter'; did you mean 'partner'?")
    ]


def test_inline_syntax_error_in_a_single_quoted_yaml_string():
    [(where, _, _, message)] = _yaml_check(("steps", 2, "popup", "title"))
    assert where == "campaigns/welcome.yaml:16:37"  # the lone '}' after the doubled quote
    assert message == "template syntax error: unexpected '}'"


# --- Template files ----------------------------------------------------------------------------


def test_file_template_problems_point_into_the_file(tmp_path):
    (tmp_path / "welcome.html.j2").write_text("<p>Hello {{ partner.name }}</p>\n<p>{{ partner.emial }}</p>\n")
    [problem] = check_file(tmp_path / "welcome.html.j2", PARTNER, tmp_path)
    assert problem.span.path == str(tmp_path / "welcome.html.j2")
    assert (problem.span.line, problem.span.col) == (2, 15)
    assert problem.message == "unknown field 'emial' of partner; did you mean 'email'?"


def test_file_template_include_checks(tmp_path):
    (tmp_path / "partials").mkdir()
    (tmp_path / "partials" / "footer.html").write_text("{% for t in partner.tags %}{{ t }}{% endfor %}\n{{ item }} {{ partner.nmae }}\n")
    (tmp_path / "welcome.html.j2").write_text(
        "{% for item in partner.tags %}{% include 'partials/footer.html' %}{% endfor %}\n{% extends 'base.html' %}\n"
    )
    found = sorted((d.span.path, d.span.line, d.span.col, d.message) for d in check_file(tmp_path / "welcome.html.j2", PARTNER, tmp_path))
    assert found == [
        # the included file uses the includer's loop variable 'item': not reported; its field is
        (str(tmp_path / "partials" / "footer.html"), 2, 23, "unknown field 'nmae' of partner; did you mean 'name'?"),
        (str(tmp_path / "welcome.html.j2"), 2, 12, "unknown template 'base.html' (no templates/base.html)"),
    ]


def test_an_included_file_is_checked_once_per_seen_set(tmp_path):
    (tmp_path / "footer.html").write_text("{{ partner.nmae }}\n{% include 'footer.html' %}\n")
    (tmp_path / "a.html").write_text("{% include 'footer.html' %}")
    (tmp_path / "b.html").write_text("{% include 'footer.html' %}")
    seen: set[str] = set()
    first = check_file(tmp_path / "a.html", PARTNER, tmp_path, seen)
    second = check_file(tmp_path / "b.html", PARTNER, tmp_path, seen)
    assert len(first) == 1 and second == [] and seen == {"footer.html"}


def test_a_file_that_is_not_utf8(tmp_path):
    (tmp_path / "bad.txt.j2").write_bytes(b"caf\xe9 {{ partner.name }}")
    [problem] = check_file(tmp_path / "bad.txt.j2", PARTNER, tmp_path)
    assert problem.message.startswith("not UTF-8 text")


# --- Rendering ---------------------------------------------------------------------------------

PARTNER_DATA = {"id": "p1", "name": "Ann <Co>", "email": "ann@example.com", "revenue": None, "tags": ["a", "b"]}


def test_render_inline_with_a_partner():
    text = "Hi {{ partner.name }} ({{ partner.tags | join(', ') }}) {{ campaign.name }}/{{ step.id }}"
    variables = {"partner": PARTNER_DATA, "campaign": {"id": "c", "name": "Welcome"}, "step": {"id": "s1"}}
    assert render_inline(text, variables) == "Hi Ann <Co> (a, b) Welcome/s1"


def test_a_null_field_renders_empty_and_or_gives_a_fallback():
    assert render_inline("[{{ partner.revenue }}] {{ partner.revenue or 'n/a' }}", {"partner": PARTNER_DATA}) == "[] n/a"


def test_a_field_named_like_a_dict_method_is_the_field():
    assert render_inline("{{ partner.items }} {{ partner.keys }}", {"partner": {"items": 3, "keys": "k"}}) == "3 k"


def test_a_field_missing_at_run_time_is_a_template_error():
    with pytest.raises(TemplateError) as caught:
        render_inline("Hello\n{{ partner.nickname }}", {"partner": PARTNER_DATA})
    assert str(caught.value) == "inline template, line 2: 'dict object' has no attribute 'nickname'"


def test_an_undefined_variable_at_run_time_is_a_template_error():
    with pytest.raises(TemplateError, match="'promo' is undefined"):
        render_inline("{{ promo }}", {"partner": PARTNER_DATA})


def test_the_sandbox_refuses_unsafe_access():
    with pytest.raises(TemplateError, match="unsafe"):
        render_inline("{{ partner.__class__.__mro__ }}", {"partner": PARTNER_DATA})
    with pytest.raises(TemplateError, match="unsafe"):
        render_inline("{{ partner.tags.append('x') }}", {"partner": PARTNER_DATA})
    assert PARTNER_DATA["tags"] == ["a", "b"]


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError: division by zero"),
        ("{{ partner.name", "syntax error: unexpected end of template"),
        ("{{ partner.name | uper }}", "syntax error: No filter named 'uper'"),
        ("{% include 'nope.html' %}", "template 'nope.html' not found"),
    ],
)
def test_every_render_failure_is_one_template_error_of_one_line(text, reason):
    with pytest.raises(TemplateError) as caught:
        render_inline(text, {"partner": PARTNER_DATA})
    assert reason in str(caught.value) and "\n" not in str(caught.value)


def test_render_file_escapes_html_only(tmp_path):
    for name in ("page.html", "page.html.j2", "page.xml", "letter.txt.j2", "sms.j2"):
        (tmp_path / name).write_text("{{ partner.name }}\n")
    variables = {"partner": PARTNER_DATA}
    assert render_file("page.html", variables, tmp_path) == "Ann &lt;Co&gt;\n"
    assert render_file("page.html.j2", variables, tmp_path) == "Ann &lt;Co&gt;\n"
    assert render_file("page.xml", variables, tmp_path) == "Ann &lt;Co&gt;\n"
    assert render_file("letter.txt.j2", variables, tmp_path) == "Ann <Co>\n"  # trailing newline kept
    assert render_file("sms.j2", variables, tmp_path) == "Ann <Co>\n"
    assert render_inline("{{ partner.name }}", variables, tmp_path) == "Ann <Co>"


def test_render_file_errors_name_the_template_that_failed(tmp_path):
    (tmp_path / "footer.html").write_text("ok\n{{ partner.nickname }}\n")
    (tmp_path / "welcome.html.j2").write_text("{% include 'footer.html' %}")
    with pytest.raises(TemplateError) as caught:
        render_file("welcome.html.j2", {"partner": PARTNER_DATA}, tmp_path)
    assert str(caught.value) == "template 'footer.html', line 2: 'dict object' has no attribute 'nickname'"
    with pytest.raises(TemplateError, match="^template 'missing.html' not found$"):
        render_file("missing.html", {"partner": PARTNER_DATA}, tmp_path)


def test_environment_is_cached_per_directory_and_sandboxed(tmp_path):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = environment(tmp_path)
    assert env is environment(str(tmp_path)) and env is not environment(None)
    assert isinstance(env, SandboxedEnvironment) and env.undefined is StrictUndefined
    assert templates.TEMPLATE_NAMES == ("partner", "campaign", "step", "now", "today", "unsubscribe_url",
                                        "preferences_url")


# Inline templates of text and `{{ name.field }}` only skip jinja's rendering machinery: the same
# output, and the same failures (which jinja itself then reports).

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=4),
                    st.dates(), st.lists(st.text(max_size=2), max_size=2))
_PLAIN_PIECES = st.sampled_from(
    ["{{ partner.name }}", "{{partner.tier}}", "{{- partner.name -}}", "{{ partner.items }}", "{{ partner.nick }}",
     "{{ campaign.name }}", "{{ step.id }}", "{{ promo.x }}", "{{ now.year }}", "{{ partner.__class__ }}",
     "{{ partner.name | upper }}", "Hello ", " ", "\n", "\r\n", ",", "é", "{% raw %}{{ x }}{% endraw %}", "{# c #}"]
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_PLAIN_PIECES, max_size=8).map("".join),
       st.dictionaries(st.sampled_from(["name", "tier", "items", "__class__"]), _VALUES))
def test_inline_templates_render_as_jinja_renders_them(text, fields):
    from datetime import datetime, timezone

    variables = {"partner": fields, "campaign": {"name": "C"}, "step": {"id": "s"},
                 "now": datetime(2026, 7, 1, tzinfo=timezone.utc)}
    try:
        expected = environment().from_string(text).render(variables)
    except Exception:
        expected = TemplateError
    try:
        got = render_inline(text, variables)
    except TemplateError:
        got = TemplateError
    assert got == expected


def test_a_subject_line_is_rendered_without_jinja_and_anything_more_with_it():
    assert plain_pieces("Hello {{ partner.name }}!") == (("Hello ", "!"), (("partner", "name"),))
    assert plain_pieces("{{ partner.name | upper }}") is None
    assert plain_pieces("{% if partner.name %}x{% endif %}") is None
    assert render_inline("Hello {{ partner.name }}!", {"partner": {"name": None}}) == "Hello !"


# --- Never raising -----------------------------------------------------------------------------

_PIECES = st.sampled_from(
    ["{{", "}}", "{%", "%}", "{#", "#}", "-", " ", "\n", "\r", "|", ".", "(", ")", "[", "]", "'", '"', "\\",
     "partner", "nmae", "if", "endif", "for", " in ", "set", "=", "include", "block", "raw", "endraw", "x", "1",
     "is", "not", "filter", "uper", "macro", "call", "caller", "loop", "extends", "import", "$", "é"]
)
_TEXT = st.one_of(st.text(), st.lists(_PIECES, max_size=30).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_random_text_only_ever_gives_diagnostics(text):
    where = ScalarText(SourceText("t.txt", text), text, None, 0, len(text))
    for problem in check_inline(text, where, PARTNER):
        assert problem.severity == "error" and problem.span.line >= 1 and problem.span.col >= 1
        assert not problem.message.startswith("cannot check template")


def _double_quoted(text: str) -> str:
    """A YAML double-quoted scalar: printable ASCII as is, everything else escaped."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_TEXT)
def test_random_text_in_a_quoted_yaml_string_only_ever_gives_diagnostics(text):
    document = load_yaml("c.yaml", "subject: " + _double_quoted(text) + "\n")
    for problem in check_inline(document.data["subject"], document.scalar(("subject",)), PARTNER):
        assert problem.span.path == "c.yaml" and problem.span.line >= 1


def test_mentions_follows_includes_once_and_never_raises(tmp_path):
    (tmp_path / "footer.j2").write_text("Leave: {{ unsubscribe_url }}")
    (tmp_path / "loop.j2").write_text("{% include 'loop.j2' %}" * 10)  # each file is read once
    assert templates.mentions("Hi {{ unsubscribe_url }}", "unsubscribe_url", tmp_path)
    assert templates.mentions("{% include 'loop.j2' %}{% include 'footer.j2' %}", "unsubscribe_url", tmp_path)
    assert not templates.mentions("{% include 'loop.j2' %}", "unsubscribe_url", tmp_path)
    for broken in ("{{ x|nofilter }}", "{% include '../secret' %}", "{{ " + "[" * 5000 + " }}", "{% if %}",
                   "{% include 'missing.j2' %}", "{% include name %}"):
        assert not templates.mentions(broken, "unsubscribe_url", tmp_path)
