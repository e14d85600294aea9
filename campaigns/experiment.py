"""What an experiment's numbers say (SPEC §11, ``engine stats``): conversion rates, the lift of
a campaign over its holdout, a two-sided two-proportion z-test, and the same in plain words for
a marketer. Pure functions of counts, no I/O; :mod:`engine.stats` counts, this module judges.

A group is ``(converted, enrolled)``: how many of its enrollments reached the goal, of how many.

Decisions where SPEC is silent:

- **Rounding.** Percentages, lifts and differences are rounded to one decimal, half away from
  zero, from the exact counts (``1 of 16`` is ``6.3``, not Python's half-even ``6.2``); they are
  computed from unrounded rates, so ``lift_pct`` of 123/1000 against 10/110 is 35.3, not the
  35.2 that 12.3 against the rounded 9.1 would give.
- **The z-test** is the textbook one: pooled rate ``p = (a + b) / (n_a + n_b)``, standard error
  ``√(p (1 − p) (1/n_a + 1/n_b))``, ``z = (a/n_a − b/n_b) / SE``, two-sided ``p = 2 Φ(−|z|)``
  (``statistics.NormalDist``). None when a side is empty; 1.0 when nobody or everybody converted
  on both sides (the SE is 0: no evidence of a difference). Like every z-test it is an
  approximation that wants a few conversions on each side; the sizes are always printed beside it.
- **Lift** is relative: ``(treated − holdout) / holdout × 100`` in percent; None when the
  holdout's rate is 0 or unknown (a lift over nothing is undefined).
- **Plain words** (:func:`plain_words`), one line per comparison:

  - per step with variants, the variant with the best rate against the next best (ties keep
    file order): ``variant long converts 4.1 points better than short; p = 0.03, n = 1 204``,
    where *points* are percentage points, ``n`` counts the two compared groups together, and
    numbers are grouped by thousands with a space. With fewer than two variants received yet:
    ``variants short, long: too early to compare (fewer than two have been received)``; when
    none of them converted: ``variants short, long: nobody has converted yet``.
  - the campaign against its holdout (when it has one): ``the campaign converts 3.2 points
    better than its holdout (lift 45.0 %); p = 0.01, n = 2 000``, or ``worse than``, or ``the
    same as`` when the difference rounds to 0.0 points; no lift when the holdout's rate is 0.
    An empty side says so: ``the holdout has no partners yet: no lift to measure``; and no
    conversion on either side: ``nobody has converted yet, in the campaign or in its holdout``.
  - ``p`` is rounded to two decimals, ``p < 0.01`` below 0.01. When ``p ≥ 0.05`` the line ends
    ``; not significant yet (the difference may be chance)``: the usual 5 % level, and "yet"
    because more partners may settle it.
"""

from __future__ import annotations

import math
from fractions import Fraction
from statistics import NormalDist
from typing import Iterable, Mapping, Sequence

Group = tuple[int, int]  # (converted, enrolled)

SIGNIFICANT = 0.05  # a p-value below this is significant
NOT_SIGNIFICANT = "; not significant yet (the difference may be chance)"
_NORMAL = NormalDist()


def conversion_pct(converted: int, enrolled: int) -> float | None:
    """``converted`` of ``enrolled`` in percent, one decimal; None when nobody is enrolled."""
    _check(converted, enrolled)
    return None if enrolled == 0 else _round1(Fraction(100 * converted, enrolled))


def two_proportion_p_value(conv_a: int, n_a: int, conv_b: int, n_b: int) -> float | None:
    """The two-sided p-value of a pooled two-proportion z-test of ``conv_a / n_a`` against
    ``conv_b / n_b``; None when either side is empty, 1.0 when the pooled rate is 0 or 1."""
    _check(conv_a, n_a)
    _check(conv_b, n_b)
    if n_a == 0 or n_b == 0:
        return None
    pooled = (conv_a + conv_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 1.0
    z = (conv_a / n_a - conv_b / n_b) / se
    return min(1.0, max(0.0, 2 * _NORMAL.cdf(-abs(z))))


def lift_pct(treated_pct: float | Fraction | None, holdout_pct: float | Fraction | None) -> float | None:
    """The treated group's relative lift over the holdout, ``(t − h) / h × 100``, one decimal;
    None when the holdout's rate is 0 or missing (or the treated one is missing)."""
    if treated_pct is None or holdout_pct is None or holdout_pct == 0:
        return None
    treated, holdout = Fraction(treated_pct), Fraction(holdout_pct)
    return _round1((treated - holdout) / holdout * 100)


def plain_words(treated: Group | None = None, holdout: Group | None = None,
                experiments: Iterable[Mapping[str, Group]] = ()) -> list[str]:
    """The comparisons in words (the module's docstring): one line per experiment (label →
    group, one mapping per step with variants, in file order), then one for the campaign
    against its holdout when ``holdout`` is given (None: the campaign has no holdout)."""
    lines = [line for variants in experiments if (line := _variant_line(variants)) is not None]
    if holdout is not None:
        lines.append(_holdout_line(treated or (0, 0), holdout))
    return lines


def number_text(n: int) -> str:
    """``1 204``: a whole number grouped by thousands with a space."""
    return f"{n:,}".replace(",", " ")


def p_text(p: float | None) -> str:
    """``p = 0.03``, ``p < 0.01``, or ``p = -`` when there is none."""
    if p is None:
        return "p = -"
    return "p < 0.01" if p < 0.01 else f"p = {p:.2f}"


def pct_text(value: float | None) -> str:
    """``12.3 %`` or ``-``."""
    return "-" if value is None else f"{value} %"


# --- the lines -------------------------------------------------------------------------------


def _variant_line(variants: Mapping[str, Group]) -> str | None:
    if len(variants) < 2:
        return None  # one variant: nothing to compare it with, ever
    received = [(label, group) for label, group in variants.items() if group[1] > 0]
    if len(received) < 2:
        return f"variants {', '.join(variants)}: too early to compare (fewer than two have been received)"
    ranked = sorted(received, key=lambda item: -_rate(item[1]))  # stable: ties keep file order
    (best, (conv_a, n_a)), (other, (conv_b, n_b)) = ranked[0], ranked[1]
    if conv_a == 0:
        return f"variants {', '.join(variants)}: nobody has converted yet"
    points = _round1((_rate((conv_a, n_a)) - _rate((conv_b, n_b))) * 100)
    how = "the same as" if points == 0 else f"{points} points better than"
    return _with_p(f"variant {best} converts {how} {other}", two_proportion_p_value(conv_a, n_a, conv_b, n_b),
                   n_a + n_b)


def _holdout_line(treated: Group, holdout: Group) -> str:
    if holdout[1] == 0:
        return "the holdout has no partners yet: no lift to measure"
    if treated[1] == 0:
        return "no treated partners yet: no lift to measure"
    if treated[0] == holdout[0] == 0:
        return "nobody has converted yet, in the campaign or in its holdout"
    points = _round1((_rate(treated) - _rate(holdout)) * 100)
    if points == 0:
        how = "the same as"
    else:
        how = f"{abs(points)} points {'better' if points > 0 else 'worse'} than"
    lift = lift_pct(_rate(treated) * 100, _rate(holdout) * 100)
    line = f"the campaign converts {how} its holdout" + (f" (lift {lift} %)" if lift is not None else "")
    return _with_p(line, two_proportion_p_value(*treated, *holdout), treated[1] + holdout[1])


def _with_p(line: str, p: float | None, n: int) -> str:
    line += f"; {p_text(p)}, n = {number_text(n)}"
    if p is not None and p >= SIGNIFICANT:
        line += NOT_SIGNIFICANT
    return line


# --- helpers -----------------------------------------------------------------------------------


def _rate(group: Sequence[int]) -> Fraction:
    converted, enrolled = group
    return Fraction(converted, enrolled) if enrolled else Fraction(0)


def _round1(value: Fraction) -> float:
    """One decimal, half away from zero, from an exact value (never ``-0.0``)."""
    tenths = abs(value) * 10
    rounded = math.floor(tenths + Fraction(1, 2))
    return (rounded if value >= 0 else -rounded) / 10 if rounded else 0.0


def _check(converted: int, enrolled: int) -> None:
    if enrolled < 0 or converted < 0 or converted > enrolled:
        raise ValueError(f"{converted} converted of {enrolled} enrolled is not a group")
