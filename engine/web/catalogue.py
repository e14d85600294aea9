"""The text of the pages, from the project's own language catalogue (``engine/web/text/*.yaml``).

One file per language, the same nested keys in each: ``en.yaml`` is complete, and a key another
language lacks is shown in English, so a translation can grow a page at a time (the campaigns'
own translations work the same way). Templates ask ``t("campaigns.title")``, with named values
filled in (``t("partner.heading", partner=pid)``); the result is plain text, escaped by the
page like any other value. A key that English lacks is a programming error: KeyError, caught by
the tests that render every page.

The language of a request is the first one its ``Accept-Language`` names that the catalogue has
(``fi-FI`` counts as ``fi``), else English.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

DEFAULT = "en"


@dataclass(frozen=True)
class Catalogue:
    texts: Mapping[str, Mapping[str, str]]  # language → dotted key → text

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(sorted(self.texts))

    def text(self, language: str, key: str, **values: Any) -> str:
        found = self.texts.get(language, {}).get(key)
        if found is None:
            found = self.texts[DEFAULT][key]  # KeyError: a key English lacks
        return found.format_map(values) if values else found

    def choose(self, accept_language: str | None) -> str:
        """The language of a request: the ``Accept-Language`` choice of the highest quality that
        the catalogue has (the first of equals), else English."""
        ranked = []
        for position, part in enumerate((accept_language or "").split(",")):
            tag, _, params = part.strip().partition(";")
            quality = 1.0
            if params.strip().startswith("q="):
                try:
                    quality = float(params.strip()[2:])
                except ValueError:
                    quality = 0.0
            ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
        for quality, _, language in sorted(ranked):
            if language in self.texts and quality < 0:  # q=0 (or unreadable): not acceptable
                return language
        return DEFAULT


@lru_cache(maxsize=1)
def catalogue() -> Catalogue:
    """Every language file of the package, read once."""
    folder = resources.files("engine.web") / "text"
    texts = {}
    for entry in folder.iterdir():
        if entry.name.endswith(".yaml"):
            texts[entry.name.removesuffix(".yaml")] = _flat(yaml.safe_load(entry.read_text(encoding="utf-8")) or {})
    return Catalogue(texts)


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flat(value, name + "."))
        else:
            flat[name] = str(value)
    return flat
