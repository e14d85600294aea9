"""The SPEC's assignment formula (§11), written here apart from the engine's code
(campaigns.policy), so that tests can recompute who gets which variant, split path or holdout:

    h = int.from_bytes(sha256(f"{campaign}/{step}/{partner}".encode()).digest()[:8], "big") % W
"""

from __future__ import annotations

import hashlib


def spec_hash(campaign: str, step: str, partner: str, total: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{campaign}/{step}/{partner}".encode()).digest()[:8], "big") % total


def spec_pick(campaign: str, step: str, partner: str, options: list[tuple[str, int]]) -> str:
    """The option whose cumulative weight (file order) first exceeds the hash."""
    h = spec_hash(campaign, step, partner, sum(weight for _, weight in options))
    cumulative = 0
    for key, weight in options:
        cumulative += weight
        if cumulative > h:
            return key
    raise AssertionError("the weights add up to no more than the hash")


def spec_held_out(campaign: str, partner: str, pct: float) -> bool:
    """The holdout: step name ``holdout``, W = 10000, held out when h < pct × 100."""
    return spec_hash(campaign, "holdout", partner, 10_000) < pct * 100
