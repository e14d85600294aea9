"""What a tick did, counted as it commits: :class:`TickReport`, and how a unit of work that
rolls back takes its counts back (see :meth:`engine.tick_state.TickState.unit`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dsl.diagnostics import Diagnostic

from .clock import iso


class CampaignFailed(Exception):
    """A campaign's own work failed at run time: it alone stops (see :meth:`engine.tick_state.TickState.unit`)."""

    def __init__(self, campaign: str, cause: BaseException):
        super().__init__(f"{campaign}: {cause}")
        self.campaign, self.cause = campaign, cause


@dataclass
class _Unit:
    counts: tuple
    failed: bool = False


@dataclass
class TickReport:
    at: datetime
    enrolled: int = 0
    executed: int = 0
    skipped: int = 0
    finished: int = 0
    failed: int = 0
    delivered: int = 0  # messages their transport took
    retried: int = 0  # delivery attempts that failed for now (tried again later)
    undeliverable: int = 0  # messages a transport refused for good
    deferred: int = 0  # message steps quiet hours, send days or a frequency cap moved later
    converted: int = 0  # enrollments that reached their campaign's goal
    alerts: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # from expressions meeting unexpected data
    diagnostics: list[Diagnostic] = field(default_factory=list)  # bad input the tick worked around

    def to_json(self) -> dict[str, Any]:
        return {"at": iso(self.at), "enrolled": self.enrolled, "executed": self.executed, "skipped": self.skipped,
                "finished": self.finished, "failed": self.failed, "delivered": self.delivered,
                "delivery": {"sent": self.delivered, "retry": self.retried, "failed": self.undeliverable},
                "deferred": self.deferred, "converted": self.converted,
                "alerts": self.alerts, "warnings": len(self.warnings),
                "errors": [d.to_json() for d in self.diagnostics]}

    COUNTS = ("enrolled", "executed", "skipped", "finished", "failed", "delivered", "retried", "undeliverable",
              "deferred", "converted")

    def counts(self) -> tuple:
        """What :meth:`restore` takes back to: the counts, and how long the lists are."""
        return tuple(getattr(self, name) for name in self.COUNTS) + (len(self.alerts), len(self.warnings))

    def restore(self, counts: tuple) -> None:
        for name, value in zip(self.COUNTS, counts):
            setattr(self, name, value)
        del self.alerts[counts[-2]:]
        del self.warnings[counts[-1]:]

    def add(self, other: "TickReport") -> None:
        for name in self.COUNTS:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.alerts += other.alerts
        self.warnings += other.warnings
        self.diagnostics += other.diagnostics
