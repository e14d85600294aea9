"""Every test here runs once per store, SQLite and PostgreSQL (see engine.testing): through the
``store_url`` fixture, which also points `engine` commands (``ENGINE_STORE``) at the test's store.
Modules that open no store say so with ``pytestmark = pytest.mark.no_store``."""

import pytest


@pytest.fixture(autouse=True)
def _on_each_store(store_url):
    return store_url
