"""Shared fixtures: the engine's own pytest plugin (make_engine, engine, store_url). The tests in
tests/engine and tests/scenarios run once per store, SQLite and PostgreSQL (their conftest.py;
see engine.testing for ENGINE_TEST_POSTGRES and ENGINE_REQUIRE_POSTGRES)."""

pytest_plugins = ["engine.testing"]
