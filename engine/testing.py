"""pytest fixtures for testing campaigns: an engine on a temporary copy of a workspace, with a
clock that only moves when the test says so. Enable them in a ``conftest.py``::

    pytest_plugins = ["engine.testing"]

    def test_welcome_goes_out(make_engine):
        engine = make_engine("path/to/workspace", at="2026-07-01T00:00")
        engine.tick()
        assert [m["partner"] for m in engine.outbox("email")] == ["p001"]

    @pytest.mark.workspace("path/to/workspace", at="2026-07-01T00:00")
    def test_same_with_a_marker(engine):
        engine.clock.advance(timedelta(days=3)); engine.tick()

The copy leaves out ``.engine/`` (state never leaks between tests) and is deleted afterwards.

**Both stores.** A test that uses these fixtures (or ``store_url``) runs once per store:
``[sqlite]``, each workspace copy with its own ``.engine/state.db``, and ``[postgresql]``, each
copy with an empty store of its own (a schema) in the database that ``ENGINE_TEST_POSTGRES``
names (a URL such as ``postgresql:///engine_test``; see :func:`postgres_store`, and
:func:`separate_store` for more workspaces in one test). Without that variable the PostgreSQL
variants are skipped, unless ``ENGINE_REQUIRE_POSTGRES=1`` makes that a failure (CI). During a
test ``ENGINE_STORE`` names its store (unset for SQLite), so `engine` commands it runs, in the
same process or as subprocesses, use that store too. ``@pytest.mark.sqlite_only(reason)``
keeps a test on SQLite (it reads the .db file itself...), ``@pytest.mark.postgres_only(reason)``
on PostgreSQL (several workers on one server...); ``@pytest.mark.no_store`` marks tests that
open no store at all (they run once).
"""

from __future__ import annotations

import importlib.util
import os
import re
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from .api import Engine, copy_workspace
from .clock import FixedClock, parse_time

DEFAULT_START = "2026-07-01T00:00"
TEST_POSTGRES = "ENGINE_TEST_POSTGRES"  # a PostgreSQL URL: the store tests run on it too
REQUIRE_POSTGRES = "ENGINE_REQUIRE_POSTGRES"  # "1": a run that cannot use PostgreSQL fails
STORE_VARIABLE = "ENGINE_STORE"


def rewrite(path: Path, text: str) -> None:
    """Replace a workspace file (a campaign edited between two ticks) and move its modification
    time at least a second forward, so the engine sees the change even when the file system's
    clock has not moved since the last write."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text, encoding="utf-8")
    later = max(path.stat().st_mtime_ns, before + 1_000_000_000)
    os.utime(path, ns=(later, later))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "workspace(path, at=...): the workspace and start time of the `engine` fixture")
    config.addinivalue_line("markers", "sqlite_only(reason): run only on the SQLite store, for the reason given")
    config.addinivalue_line("markers", "postgres_only(reason): run only on the PostgreSQL store, for the reason given")
    config.addinivalue_line("markers", "no_store: opens no store; runs once, not once per store")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each test that uses ``store_url`` (make_engine and engine do) once per store."""
    if "store_url" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("no_store") is not None:
        return
    kinds = ["sqlite", "postgresql"]
    for name, only in (("sqlite_only", "sqlite"), ("postgres_only", "postgresql")):
        marker = metafunc.definition.get_closest_marker(name)
        if marker is not None:
            if not (marker.args or marker.kwargs.get("reason")):
                raise pytest.UsageError(f"{metafunc.definition.nodeid}: {name} needs a reason")
            kinds = [only]
    if kinds == ["sqlite"]:
        return  # as before this plugin knew of PostgreSQL: no [sqlite] in the test's id
    metafunc.parametrize("store_url", kinds, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str | None]:
    """The store of this test: None for SQLite (each workspace's own file), or the URL of a
    fresh PostgreSQL schema, dropped afterwards. ``ENGINE_STORE`` is set to it (unset for
    SQLite) for the test's duration."""
    if getattr(request, "param", "sqlite") == "sqlite":
        monkeypatch.delenv(STORE_VARIABLE, raising=False)
        yield None
        return
    with postgres_store() as url:
        monkeypatch.setenv(STORE_VARIABLE, url)
        yield url


@contextmanager
def postgres_store() -> Iterator[str]:
    """An empty store in its own schema of the ``ENGINE_TEST_POSTGRES`` database, as a store URL.
    Skips the test without the variable; fails it when ``ENGINE_REQUIRE_POSTGRES=1`` or when the
    variable is set but the server cannot be used.

    Creating a store's tables costs a third of a second here, and dropping them a sixth, so
    the schemas of finished tests are emptied (every row deleted, the row numbers restarted:
    the store is as new) and handed to the next test; :func:`pytest_sessionfinish` drops them
    all. A schema that cannot be emptied (a test left a transaction open) is dropped instead.
    The test stores commit without waiting for the disk (``synchronous_commit=off``): they
    are thrown away."""
    base = os.environ.get(TEST_POSTGRES, "").strip()
    if not base:
        if os.environ.get(REQUIRE_POSTGRES, "").strip() not in ("", "0"):
            pytest.fail(f"{REQUIRE_POSTGRES} is set, but {TEST_POSTGRES} names no PostgreSQL database", pytrace=False)
        pytest.skip(f"PostgreSQL variant: set {TEST_POSTGRES}=postgresql:///DATABASE to run it")
    schemas = _schemas(base)
    schema = schemas.take()
    try:
        yield with_search_path(base, schema, "synchronous_commit=off")
    finally:
        schemas.give_back(schema)


@contextmanager
def separate_store() -> Iterator[str | None]:
    """A store for one more workspace of a test, apart from the test's own: None when the test
    runs on SQLite (each workspace has its own file), else an empty PostgreSQL store."""
    if os.environ.get(STORE_VARIABLE) is None:
        yield None
    else:
        with postgres_store() as url:
            yield url


class _Schemas:
    """This process's test schemas in one database: those free for the next test, and all."""

    def __init__(self, base: str):
        if importlib.util.find_spec("psycopg") is None:
            pytest.fail(f"{TEST_POSTGRES} is set, but psycopg is not installed (pip install -e '.[test]')",
                        pytrace=False)
        import psycopg
        problem = None
        try:
            self.admin = psycopg.connect(base, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            problem = f"{TEST_POSTGRES}={base}: cannot connect: {str(exc).strip().splitlines()[0]}"
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        self.admin.execute("SET lock_timeout = '20s'")
        self.prefix = f"engine_test_{os.getpid()}_"
        self.free: list[str] = []
        self.made: list[str] = []
        self.numbered = 0  # schemas named so far: a dropped one's name is not given again
        self.emptying: dict[str, str] = {}  # schema → the script that empties its tables
        for (schema,) in self.admin.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE 'engine#_test#_%' "
                                            "ESCAPE '#'").fetchall():
            pid = schema.split("_")[2]
            if pid.isdigit() and not _alive(int(pid)):  # left by a test run that was killed
                self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    def take(self) -> str:
        if self.free:
            return self.free.pop()
        schema = f"{self.prefix}{self.numbered}"
        self.numbered += 1
        self.admin.execute(f'CREATE SCHEMA "{schema}"')
        self.made.append(schema)
        return schema

    def give_back(self, schema: str) -> None:
        """Empty the schema's tables for the next test (or drop it when that fails)."""
        if schema not in self.emptying:  # its tables, once the store made them
            tables = [t for (t,) in self.admin.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))]
            keys = self.admin.execute("SELECT table_name, column_name FROM information_schema.columns "
                                      "WHERE table_schema = %s AND is_identity = 'YES'", (schema,)).fetchall()
            script = [f'DELETE FROM "{schema}"."{t}"' + (" WHERE key NOT LIKE 'schema.%'" if t == "meta" else "")
                      for t in tables]
            script += [f"SELECT setval(pg_get_serial_sequence('\"{schema}\".\"{t}\"', '{c}'), 1, false)"
                       for t, c in keys]
            if not tables:
                self.free.append(schema)
                return
            self.emptying[schema] = "BEGIN; " + "; ".join(script) + "; COMMIT"
        try:
            self.admin.execute(self.emptying[schema])
        except Exception:
            self.emptying.pop(schema, None)
            try:
                self.admin.execute("ROLLBACK")
            except Exception:
                pass
            self.drop(schema)
            return
        self.free.append(schema)

    def drop(self, schema: str) -> None:
        try:
            self.admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        except Exception:
            pass  # still in use: the end of the session tries again
        else:
            self.made.remove(schema)

    def drop_all(self) -> None:
        for schema in list(self.made):
            self.drop(schema)
        self.admin.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_SCHEMAS: dict[str, _Schemas] = {}


def _schemas(base: str) -> _Schemas:
    if base not in _SCHEMAS:
        _SCHEMAS[base] = _Schemas(base)
    return _SCHEMAS[base]


def pytest_sessionfinish(session: pytest.Session) -> None:
    for schemas in _SCHEMAS.values():
        schemas.drop_all()
    _SCHEMAS.clear()


def with_search_path(url: str, schema: str, *settings: str) -> str:
    """The URL with ``options=-csearch_path=<schema>`` (its store lives in that schema), and
    other settings (``name=value``) for its sessions."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise ValueError(f"not a plain schema name: {schema!r}")
    options = "%20".join(f"-c{setting.replace('=', '%3D')}" for setting in (f"search_path={schema}", *settings))
    return f"{url}{'&' if '?' in url else '?'}options={options}"


@pytest.fixture
def make_engine(tmp_path: Path, store_url: str | None) -> Iterator[Callable[..., Engine]]:
    """``make_engine(workspace, at=...)``: an Engine on a fresh copy, its clock fixed at ``at``
    (read in the workspace's timezone unless it carries an offset). On PostgreSQL the first
    copy uses the test's store (the one `engine` commands find), each further copy a store of
    its own."""
    engines: list[Engine] = []
    with ExitStack() as stores:

        def make(workspace: str | Path, at: str = DEFAULT_START, *, name: str | None = None) -> Engine:
            root = copy_workspace(workspace, tmp_path / (name or f"workspace-{len(engines)}"))
            store = store_url if not engines else stores.enter_context(separate_store())
            engine = Engine.open(root, store=store, clock=FixedClock("1970-01-01T00:00Z"))
            engine.clock.set(parse_time(at, engine.plan.tz))  # type: ignore[attr-defined]
            engines.append(engine)
            return engine

        try:
            yield make
        finally:
            for engine in engines:
                engine.close()


def dump_store(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the store the workspace's commands use (``ENGINE_STORE``,
    else engine.yaml's), each table's rows sorted: to check that something changed nothing."""
    with Engine.open(root) as engine:
        store = engine.store
        if store.dialect == "sqlite":
            names = "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        else:
            names = ("SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
                     "ORDER BY table_name")
        tables = [name for (name,) in store.db.execute(names).fetchall()]
        return {t: sorted(store.db.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}


@pytest.fixture
def engine(request: pytest.FixtureRequest, make_engine: Callable[..., Engine]) -> Engine:
    """An Engine on a copy of the workspace named by ``@pytest.mark.workspace``."""
    marker = request.node.get_closest_marker("workspace")
    if marker is None or not marker.args:
        raise pytest.UsageError("the engine fixture needs @pytest.mark.workspace(PATH, at=...)")
    return make_engine(marker.args[0], marker.kwargs.get("at", DEFAULT_START))
