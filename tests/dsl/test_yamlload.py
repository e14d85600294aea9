"""YAML loading: values keep their positions, scalars map back to file columns, bad YAML is
reported as our own error and nothing else."""

from __future__ import annotations

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from dsl.diagnostics import SourceError
from dsl.yamlload import load_yaml

DOCUMENT = """\
name: Onboarding
active: yes
window: {start: 2026-07-01}
count: 3
ratio: 2.5
nothing: ~
rules:
  quoted: "x\\ty \\u00e9 partner.countyr == 1"
  single: 'it''s partner.countyr'
  plain: partner.tier == "gold" and
    partner.countyr == "FI"
  block: |
    partner.tier == "gold"
      and partner.countyr == "FI"
  folded: >
    partner.tier == "gold"
    and partner.countyr == "FI"
"""


def test_scalars_follow_yaml_1_2_core_schema() -> None:
    data = load_yaml("c.yaml", DOCUMENT).data
    assert data["active"] == "yes"  # not YAML 1.1's boolean
    assert data["window"] == {"start": "2026-07-01"}  # dates are parsed by the models
    assert (data["count"], data["ratio"], data["nothing"]) == (3, 2.5, None)


def test_spans_of_keys_and_values() -> None:
    document = load_yaml("c.yaml", DOCUMENT)
    assert str(document.span(("window", "start"))) == "c.yaml:3:17"
    assert str(document.key_span(("rules", "plain"))) == "c.yaml:10:3"
    assert str(document.span(("rules", "missing"))) == str(document.span(("rules",)))


@pytest.mark.parametrize(
    "key, line, col",
    [("quoted", 8, 32), ("single", 9, 26), ("plain", 11, 13), ("block", 14, 19), ("folded", 17, 17)],
)
def test_offsets_inside_scalars_map_to_file_columns(key: str, line: int, col: int) -> None:
    document = load_yaml("c.yaml", DOCUMENT)
    scalar = document.scalar(("rules", key))
    assert scalar is not None
    offset = scalar.value.index("countyr")
    span = scalar.span(offset, offset + len("countyr"))
    assert (span.line, span.col) == (line, col)
    assert DOCUMENT.splitlines()[line - 1][col - 1 : col - 1 + 7] == "countyr"


@pytest.mark.parametrize(
    "text, position, message",
    [
        ("a: [1, 2\nb: 3\n", "2:2", "invalid YAML"),
        ("a: 1\na: 2\n", "2:1", "duplicate key 'a'"),
        ("a: 1\n b: 2\n", "2:3", "invalid YAML"),
        ("- a\nb: 1\n", "2:1", "invalid YAML"),
        ("a: *nowhere\n", "1:4", "invalid YAML"),
        ("? [a, b]\n: 1\n", "1:3", "a mapping key must be a plain value"),
    ],
)
def test_bad_yaml_is_a_located_source_error(text: str, position: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        load_yaml("bad.yaml", text)
    diagnostic = caught.value.diagnostics[0]
    assert f"{diagnostic.span.line}:{diagnostic.span.col}" == position
    assert message in diagnostic.message


def test_multiple_documents_are_refused() -> None:
    with pytest.raises(SourceError):
        load_yaml("two.yaml", "a: 1\n---\nb: 2\n")


@given(st.text(max_size=200))
@settings(max_examples=400, deadline=None)
def test_random_text_loads_or_raises_source_error(text: str) -> None:
    try:
        load_yaml("fuzz.yaml", text)
    except SourceError as exc:
        assert all(d.span.line >= 1 for d in exc.diagnostics)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=20,
)


@given(yaml_values, st.sampled_from([False, True]))
@settings(max_examples=200, deadline=None)
def test_dumped_yaml_loads_back_with_every_value_located(value, flow: bool) -> None:
    text = yaml.safe_dump(value, default_flow_style=flow, allow_unicode=True)
    document = load_yaml("dump.yaml", text)

    def paths(v, prefix=()):
        yield prefix
        if isinstance(v, dict):
            for k, item in v.items():
                yield from paths(item, prefix + (k,))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                yield from paths(item, prefix + (i,))

    for path in paths(document.data):
        assert path in document.locations
