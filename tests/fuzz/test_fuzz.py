"""The fuzz suite of issue 18, bounded for CI: one hypothesis test per input kind and the
regression corpus (tests/fuzz/corpus/*.json: the issue's known-bad inputs, each of which must
satisfy the property). The property and the meaning of "the other campaigns still deliver" per
input kind are in runner.py and generators.py; bench/fuzz.py is the long run.

    python -m pytest tests/fuzz                          # 6 kinds x ENGINE_FUZZ_EXAMPLES (8) + the corpus
    ENGINE_FUZZ_EXAMPLES=200 python -m pytest tests/fuzz -k kind
    ENGINE_FUZZ_SAVE=/tmp/fuzz-failures python -m pytest tests/fuzz   # keep reproducers

Every case runs on SQLite (the runner unsets ENGINE_STORE in its children). Hypothesis does not
shrink by default (each example forks a few engine commands; a failing case is saved as a
reproducer instead); ENGINE_FUZZ_SHRINK=1 turns shrinking on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from .generators import KINDS, Case, cases
from .runner import CaseResult, Runner

CORPUS = Path(__file__).parent / "corpus"
EXAMPLES = int(os.environ.get("ENGINE_FUZZ_EXAMPLES", "8"))
TIMEOUT = float(os.environ.get("ENGINE_FUZZ_TIMEOUT", "20"))
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if os.environ.get("ENGINE_FUZZ_SHRINK") else [])

pytestmark = pytest.mark.no_store


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> Runner:
    save = os.environ.get("ENGINE_FUZZ_SAVE")
    return Runner(tmp_path_factory.mktemp("fuzz"), timeout=TIMEOUT, save_dir=Path(save) if save else None)


def explain(result: CaseResult) -> str:
    lines = [f"{result.case.kind} case {result.case.note[:300]!r}"]
    for failure in result.failures:
        lines.append(f"  {failure.type} in command {failure.command}: {failure.detail[:800]}")
    for command, res in zip(result.case.commands, result.results):
        lines.append(f"  $ engine {' '.join(command.argv)[:300]} → exit {res.exit_code}"
                     f"{' (timeout)' if res.timed_out else ''}, {res.elapsed:.2f} s")
        tail = (res.stderr.strip() or res.stdout.strip())[-600:]
        if tail:
            lines.append("    " + tail.replace("\n", "\n    "))
    if result.saved:
        lines.append(f"  reproducer: {result.saved}")
    else:
        lines.append("  (set ENGINE_FUZZ_SAVE=DIR to keep a reproducer)")
    lines.append("  case: " + json.dumps(result.case.to_json())[:3000])
    return "\n".join(lines)


def check(runner: Runner, case: Case) -> None:
    result = runner.run(case)
    assert result.ok, explain(result)


def _kind_test(kind: str):
    @settings(max_examples=EXAMPLES, deadline=None, phases=PHASES, derandomize=False, print_blob=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
    @given(case=cases(kind))
    def test(runner: Runner, case: Case) -> None:
        check(runner, case)

    test.__name__ = f"test_fuzz_{kind}"
    test.__doc__ = f"Generated {kind} cases satisfy the property."
    return test


for _kind in KINDS:
    globals()[f"test_fuzz_{_kind}"] = _kind_test(_kind)


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.json"))


def test_corpus_is_there() -> None:
    items = {json.loads(p.read_text(encoding="utf-8")).get("issue_item") for p in corpus()}
    assert len(corpus()) >= 25 and {2, 3, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16, 17, 18} <= items


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.stem)
def test_corpus(runner: Runner, path: Path) -> None:
    """A known-bad input of issue 18: it satisfies the property (and the entry's expectations)."""
    case = Case.from_json(json.loads(path.read_text(encoding="utf-8")))
    case.seed = path.stem
    check(runner, case)
