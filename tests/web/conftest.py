"""The web tests run once per store, as tests/engine's do (see engine.testing); modules that
open no store say so with ``pytestmark = pytest.mark.no_store``."""

import pytest


@pytest.fixture(autouse=True)
def _on_each_store(store_url):
    return store_url
