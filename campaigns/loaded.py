"""What loading a workspace gives: its settings, partner schema, campaign files (each with its
diagnostics) and groups.

Apart from :mod:`campaigns.workspace`, which loads them, so that a workspace read back from
the plan cache (:mod:`engine.plan_cache`) needs neither YAML nor the checkers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from dsl.diagnostics import Diagnostic
from dsl.types import Type

from .shapes import Campaign, Settings

if TYPE_CHECKING:
    from dsl.partner_check import PartnerCheck


@dataclass
class CampaignFile:
    """One file of campaigns/: its id, what was loaded, and what is wrong with it."""

    id: str
    path: Path
    campaign: Campaign | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.campaign is not None and not any(d.severity == "error" for d in self.diagnostics)


@dataclass
class Workspace:
    root: Path
    settings: Settings
    schema: dict[str, Type]
    files: dict[str, CampaignFile]
    groups: dict[str, Path]
    partners: PartnerCheck | None  # what checking the partner source found; not its records
    diagnostics: list[Diagnostic]

    @property
    def campaigns(self) -> dict[str, Campaign]:
        """The campaigns that may run: those whose file has no errors."""
        return {cid: f.campaign for cid, f in self.files.items() if f.ok and f.campaign is not None}

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.settings.timezone)

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"
