"""Shared fixtures: the engine's own pytest plugin (make_engine, engine, store_url). The tests in
tests/engine and tests/scenarios run once per store, SQLite and PostgreSQL (their conftest.py;
see engine.testing for ENGINE_TEST_POSTGRES and ENGINE_REQUIRE_POSTGRES)."""

pytest_plugins = ["engine.testing"]

import os

# The key that signs links in messages (engine.yaml's web.secret_env), for every test and the
# `engine` processes tests start; tests of a missing key remove it themselves.
os.environ.setdefault("ENGINE_SECRET", "test-signing-key")
