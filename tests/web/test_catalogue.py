"""The pages' language catalogue: every key a template asks for is in English, another language
falls back to English key by key, and Accept-Language chooses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.web.catalogue import Catalogue, catalogue

pytestmark = pytest.mark.no_store

TEMPLATES = Path(__file__).resolve().parents[2] / "engine" / "web" / "templates"
KEYS = re.compile(r"""\bt\(\s*["']([a-z_]+\.[a-z_.]+)["']\s*[,)]""")  # whole keys, not "status." ~ s


def test_every_key_the_templates_ask_for_is_in_english():
    english = catalogue().texts["en"]
    asked = {key for path in TEMPLATES.rglob("*.html") for key in KEYS.findall(path.read_text(encoding="utf-8"))}
    assert len(asked) > 50
    assert sorted(asked - set(english)) == []


def test_a_key_english_lacks_is_an_error_not_a_blank():
    with pytest.raises(KeyError):
        catalogue().text("en", "campaigns.no_such_key")


def test_another_language_falls_back_to_english_key_by_key():
    texts = Catalogue({"en": {"site.campaigns": "Campaigns", "site.log_out": "Log out"},
                       "fi": {"site.campaigns": "Kampanjat"}})
    assert texts.text("fi", "site.campaigns") == "Kampanjat"
    assert texts.text("fi", "site.log_out") == "Log out"
    assert texts.text("sv", "site.campaigns") == "Campaigns"


def test_values_are_filled_in_and_accept_language_chooses():
    texts = Catalogue({"en": {"x.hi": "Hi {user}"}, "fi": {"x.hi": "Hei {user}"}})
    assert texts.text("fi", "x.hi", user="Aino") == "Hei Aino"
    assert texts.choose("fi-FI,fi;q=0.9,en;q=0.8") == "fi"
    assert texts.choose("de-DE, en;q=0.5") == "en"
    assert texts.choose("sv;q=0.9, fi;q=0.95") == "fi"
    assert texts.choose("fi;q=x") == "en" and texts.choose("fi;q=0") == "en"
    assert texts.choose("") == "en" and texts.choose(None) == "en"


def test_every_status_a_page_shows_has_its_text():
    english = catalogue().texts["en"]
    statuses = ("active", "draft", "locked", "error", "removed", "scheduled", "paused", "finished", "member")
    assert [s for s in statuses if f"status.{s}" not in english] == []
    assert {"campaigns.next_audience", "campaigns.next_event"} <= set(english)
