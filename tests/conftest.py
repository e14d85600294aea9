"""Shared fixtures: the engine's own pytest plugin (make_engine, engine)."""

pytest_plugins = ["engine.testing"]
