"""The compiled workspace kept in .engine/plan.pickle (engine.plan_cache): used only for the very
files it was made from, never trusted when someone else could have written it, and a plan read
from it behaves as a freshly loaded one (the rest of the suite ticks through it as well)."""

from __future__ import annotations

import os
import pickle
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest

from campaigns import model, shapes
from engine import plan_cache
from engine.api import _load_plan, load_plan
from engine.testing import rewrite

pytestmark = pytest.mark.no_store

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A copy of the example workspace with the state folder a first tick makes."""
    root = Path(shutil.copytree(EXAMPLES, tmp_path / "ws", ignore=shutil.ignore_patterns(".engine")))
    (root / ".engine").mkdir()
    return root


def plain(value):
    """A part of a campaign (a model, or the campaigns.shapes part the cache restores) as plain
    data: its class of campaigns.shapes and its fields, all the way down."""
    if isinstance(value, shapes.Located):
        fields = type(value).model_fields if hasattr(type(value), "model_fields") else [
            name for name in value.__dict__ if not name.startswith("_") and name not in ("flow",)]
        shape = next(c for c in type(value).__mro__ if c.__module__ == "campaigns.shapes")
        return shape.__name__, {name: plain(getattr(value, name)) for name in fields}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def counting(calls: list[Path]):
    def load(root: Path):
        calls.append(root)
        return _load_plan(root)

    return load


def test_the_second_load_of_the_same_files_is_read_from_the_cache(root):
    calls: list[Path] = []
    first = plan_cache.cached_plan(root, counting(calls))
    second = plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 1
    assert (root / ".engine" / plan_cache.NAME).stat().st_mode & 0o777 == 0o600
    assert second.fingerprint == first.fingerprint
    assert sorted(second.campaigns) == sorted(first.campaigns)
    for cid, compiled in first.campaigns.items():
        cached = second.campaigns[cid]
        assert plain(cached.campaign) == plain(compiled.campaign)
        assert cached.content_hash == compiled.content_hash
        assert [name for name, _ in cached.audience.rulesets] == [name for name, _ in compiled.audience.rulesets]
    assert second.workspace.diagnostics == first.workspace.diagnostics
    assert second.groups == first.groups


def test_a_cached_plan_is_made_of_parts_not_models(root):
    """What a tick reads back from the cache needs no pydantic: every model is stored as its
    part of campaigns.shapes, with the same fields, behaviour and spans."""
    fresh = _load_plan(root)
    plan_cache.cached_plan(root, _load_plan)
    cached = plan_cache.cached_plan(root, lambda r: pytest.fail("loaded again"))
    assert plain(cached.settings) == plain(fresh.settings)
    for cid, compiled in fresh.campaigns.items():
        campaign = cached.campaigns[cid].campaign
        assert type(campaign) is shapes.Campaign
        assert not any(isinstance(s, model.Located) for s in campaign.steps)
        assert [s.kind for s in campaign.action_steps] == [s.kind for s in compiled.campaign.action_steps]
        assert [n.key for n in campaign.flow.nodes] == [n.key for n in compiled.campaign.flow.nodes]
    assert cached.settings.partners.types() == fresh.settings.partners.types()


def test_every_model_has_its_part_as_first_base():
    models = [c for c in vars(model).values() if isinstance(c, type) and issubclass(c, model.Located)
              and c is not model.Located]
    assert len(models) > 30
    for cls in models:
        assert cls.__mro__[1] is getattr(shapes, cls.__name__), cls


def test_compiled_expressions_from_the_cache_give_the_same_answers(root):
    from dsl.runtime import Context

    fresh = _load_plan(root)
    plan_cache.cached_plan(root, _load_plan)
    cached = plan_cache.cached_plan(root, lambda r: pytest.fail("loaded again"))
    partners = [{"id": "p1", "tier": "gold", "language": "fi", "revenue": 250000, "country": "FI"},
                {"id": "p2", "tier": "silver", "language": "en", "revenue": None, "country": "SE"}, {}]
    ctx = Context(now=datetime(2026, 7, 1, 9, tzinfo=timezone.utc), tz=cached.tz)
    compared = 0
    for cid, compiled in fresh.campaigns.items():
        pairs = zip(compiled.audience.rulesets + compiled.audience.exclusions,
                    cached.campaigns[cid].audience.rulesets + cached.campaigns[cid].audience.exclusions)
        for (name, rule), (_, again) in pairs:
            assert again.source == rule.source
            assert [again(p, ctx) for p in partners] == [rule(p, ctx) for p in partners], name
            compared += 1
    assert compared >= len(fresh.campaigns)


def test_spans_of_a_cached_plan_are_read_from_the_file_when_asked(root):
    fresh = _load_plan(root)
    plan_cache.cached_plan(root, _load_plan)
    cached = plan_cache.cached_plan(root, lambda r: pytest.fail("loaded again"))
    for cid, compiled in fresh.campaigns.items():
        again = cached.campaigns[cid].campaign
        assert type(again.document).__name__ == "DocumentOnDemand"
        assert again.span("name") == compiled.campaign.span("name")
        assert [s.span() for s in again.steps] == [s.span() for s in compiled.campaign.steps]
        assert again.key_span("steps") == compiled.campaign.key_span("steps")


def test_a_changed_file_is_loaded_again_even_with_the_same_size_and_time(root):
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    path = sorted((root / "campaigns").glob("*.yaml"))[0]
    text = path.read_text(encoding="utf-8")
    status = path.stat()
    changed = text.replace("name: ", "name: X", 1)
    changed = changed[: len(text)] if len(changed) > len(text) else changed
    assert changed != text
    path.write_text(changed[:-1] + ("#" if text[-1] != "#" else "\n"), encoding="utf-8")  # same size
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))  # and the same time
    plan = plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2  # the new files are the cached ones now
    assert plan.fingerprint  # a plan, not an error


@pytest.mark.parametrize("where", ["engine.yaml", "templates", "groups"])
def test_every_kind_of_workspace_file_is_part_of_the_key(root, where):
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    if where == "engine.yaml":
        rewrite(root / "engine.yaml", (root / "engine.yaml").read_text(encoding="utf-8") + "\n# edited\n")
    elif where == "templates":
        (root / "templates" / "new.txt.j2").write_text("Hello {{ partner.name }}\n", encoding="utf-8")
    else:
        group = sorted((root / "groups").glob("*.csv"))[0]
        rewrite(group, group.read_text(encoding="utf-8") + "p999\n")
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2


def test_another_engine_version_does_not_read_the_cache(root, monkeypatch):
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    monkeypatch.setattr(plan_cache, "_code_stamp", lambda: "another version of the engine")
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2


def test_an_attachment_that_changes_makes_the_plan_load_again(root):
    (root / "files").mkdir()
    (root / "files" / "prices.pdf").write_bytes(b"%PDF-1.4\n")
    path = root / "campaigns" / "with-file.yaml"
    path.write_text('name: With a file\naudience:\n  rulesets:\n    all: "true"\nsteps:\n  - id: prices\n'
                    '    email: {subject: Prices, body: Attached, attachments: [files/prices.pdf]}\n', encoding="utf-8")
    calls: list[Path] = []
    assert "with-file" in plan_cache.cached_plan(root, counting(calls)).campaigns
    (root / "files" / "prices.pdf").unlink()
    plan = plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2
    assert "with-file" not in plan.campaigns  # its attachment is missing: an error, as without the cache
    assert any("prices.pdf" in d.message for d in plan.workspace.errors)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other key"])
def test_a_damaged_cache_is_a_miss_and_is_written_again(root, damage):
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    path = root / ".engine" / plan_cache.NAME
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00\xff" * 100, "empty": b"",
                      "other key": b"0" * 64 + data[data.index(b"\n"):]}[damage])
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2
    assert path.read_bytes().split(b"\n", 1)[0] == data.split(b"\n", 1)[0]  # written again, for these files
    plan_cache.cached_plan(root, lambda r: pytest.fail("the file written again was not used"))


def test_a_cache_someone_else_may_write_is_never_unpickled(root, tmp_path):
    plan_cache.cached_plan(root, _load_plan)
    path = root / ".engine" / plan_cache.NAME
    key = path.read_bytes().split(b"\n", 1)[0]
    marker = tmp_path / "code ran"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "pwned"))

    path.write_bytes(key + b"\n" + pickle.dumps({"plan": Evil(), "attachments": []}))
    os.chmod(path, 0o664)  # group-writable: someone else may have written it
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 1
    assert not marker.exists()


def test_a_workspace_without_state_gets_no_cache_folder(root):
    (root / ".engine").rmdir()
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2
    assert not (root / ".engine").exists()


def test_without_a_writable_engine_folder_the_workspace_is_loaded_every_time(root):
    (root / ".engine").rmdir()
    (root / ".engine").write_text("not a folder", encoding="utf-8")
    calls: list[Path] = []
    plan_cache.cached_plan(root, counting(calls))
    plan_cache.cached_plan(root, counting(calls))
    assert len(calls) == 2
    assert list(root.glob(".engine*")) == [root / ".engine"]


def test_a_plan_that_cannot_be_pickled_is_not_kept(root, monkeypatch):
    def unpicklable(root: Path):
        plan = _load_plan(root)
        object.__setattr__(plan, "templates_dir", lambda: None)  # a lambda: pickle cannot store it
        return plan

    calls: list[Path] = []
    plan_cache.cached_plan(root, lambda r: calls.append(r) or unpicklable(r))
    assert not (root / ".engine" / plan_cache.NAME).exists()
    assert list((root / ".engine").glob("*.tmp")) == []


def test_the_bundled_workspace_can_be_cached(tmp_path):
    """Nothing in its plan falls back to no cache (a closure the pickler does not know)."""
    root = Path(shutil.copytree(EXAMPLES, tmp_path / "ws", ignore=shutil.ignore_patterns(".engine")))
    plan = _load_plan(root)
    plan_cache._dumps({"plan": plan, "attachments": plan_cache._attachments(plan)})
    (root / ".engine").mkdir()
    load_plan(root)
    assert (root / ".engine" / plan_cache.NAME).exists()


def test_a_workspace_whose_settings_are_broken_is_refused_every_time_and_never_cached(tmp_path):
    """examples/broken: engine.yaml has an error, so there is no plan to keep."""
    from dsl.diagnostics import SourceError

    root = Path(shutil.copytree(EXAMPLES / "broken", tmp_path / "ws", ignore=shutil.ignore_patterns(".engine")))
    (root / ".engine").mkdir()
    for _ in range(2):
        with pytest.raises(SourceError, match="engine.yaml"):
            load_plan(root)
    assert list((root / ".engine").iterdir()) == []


@pytest.mark.parametrize("text", ['partner.tier in ["gold", "platinum"] and partner.revenue >= 100000',
                                  'matches(partner.email, "^[a-m]") or partner.joined_at < 2020-01-01T09:00',
                                  "not " * 250 + "(partner.revenue >= 1)"])
def test_a_compiled_expression_is_stored_as_its_code_or_its_tree(text):
    """Generated code goes into the cache compiled (marshal), so neither lark nor Python's
    compiler runs on a hit; an expression too deep for Python's compiler (evaluated by closures)
    goes in as its tree."""
    from dsl.compile import compile_expression
    from dsl.parser import parse
    from dsl.runtime import Context

    compiled = compile_expression(parse(text))
    assert (compiled.source is None) == text.startswith("not ")  # too deep for Python's compiler
    again = pickle.loads(plan_cache._dumps({"rule": compiled}))["rule"]
    assert again.source == compiled.source
    ctx = Context(now=datetime(2026, 7, 1, 9, tzinfo=timezone.utc), tz=timezone.utc)
    partners = [{"tier": "gold", "revenue": 200000, "email": "ann@example.com"},
                {"tier": "silver", "revenue": 0, "email": "zed@example.com", "joined_at": datetime(2019, 1, 1)},
                {}]
    assert [again(p, ctx) for p in partners] == [compiled(p, ctx) for p in partners]
    assert [again.test(p, ctx) for p in partners] == [compiled.test(p, ctx) for p in partners]
