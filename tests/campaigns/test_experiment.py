"""The numbers of experiments (SPEC §11, campaigns.experiment): conversion rates, lift, the
two-proportion z-test and the plain-words lines. Every expected p-value is computed here another
way (``math.erfc`` of |z|/√2, written out from the textbook formula) or read from a table; every
other expected value is worked out by hand in the comment beside it."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from campaigns.experiment import (NOT_SIGNIFICANT, conversion_pct, lift_pct, number_text, p_text, plain_words,
                                  two_proportion_p_value)


def reference_p(a: int, n: int, b: int, m: int) -> float:
    """The textbook pooled two-proportion z-test, two-sided, through the complementary error
    function: p = erfc(|z| / √2) (the same as 2 (1 − Φ(|z|)))."""
    p1, p2 = a / n, b / m
    pooled = (a + b) / (n + m)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n + 1 / m))
    return math.erfc(abs(z) / math.sqrt(2))


# --- the z-test ---------------------------------------------------------------------------------


def test_the_textbook_example_200_of_1000_against_250_of_1000():
    # pooled 450/2000 = 0.225; SE = √(0.225 · 0.775 · 2/1000) = √0.00034875 = 0.0186748...;
    # z = 0.05 / 0.0186748 = 2.67743; a normal table gives Φ(2.68) = 0.99632, so p ≈ 2 · 0.00368 = 0.0074
    p = two_proportion_p_value(200, 1000, 250, 1000)
    assert p == pytest.approx(0.0074, abs=0.0001)
    assert p == pytest.approx(0.0074196, abs=1e-6)
    assert p == pytest.approx(reference_p(200, 1000, 250, 1000), rel=1e-9)


@pytest.mark.parametrize("a, n, b, m, table", [
    (50, 100, 50, 100, 1.0),        # equal rates: z = 0
    (10, 100, 20, 100, 0.0477),     # z = −0.1 / √(0.15 · 0.85 · 0.02) = −1.9803: 2 (1 − Φ(1.98))
    (30, 200, 45, 180, 0.0145),     # pooled 75/380; z = (0.15 − 0.25) / 0.040892 = −2.4455: 2 · 0.00723
    (7, 16, 1, 4, 0.4936),          # small groups: z = 0.1875 / √(0.4 · 0.6 · 0.3125) = 0.68465: 2 · 0.2468
])
def test_p_values_agree_with_the_erfc_formula_and_the_table(a, n, b, m, table):
    p = two_proportion_p_value(a, n, b, m)
    assert p == pytest.approx(reference_p(a, n, b, m), rel=1e-9, abs=1e-12)
    assert p == pytest.approx(table, abs=0.0003)


def test_no_p_value_with_an_empty_side_and_1_when_nobody_or_everybody_converted():
    assert two_proportion_p_value(0, 0, 3, 10) is None
    assert two_proportion_p_value(3, 10, 0, 0) is None
    assert two_proportion_p_value(0, 0, 0, 0) is None
    assert two_proportion_p_value(0, 10, 0, 25) == 1.0  # pooled rate 0: SE 0
    assert two_proportion_p_value(10, 10, 25, 25) == 1.0  # pooled rate 1


def test_a_group_with_more_converted_than_enrolled_is_refused():
    with pytest.raises(ValueError):
        two_proportion_p_value(11, 10, 1, 10)
    with pytest.raises(ValueError):
        conversion_pct(-1, 10)


groups = st.integers(min_value=0, max_value=100_000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n)))


@given(groups, groups)
def test_p_is_a_probability_symmetric_in_the_groups_and_none_on_an_empty_side(first, second):
    p = two_proportion_p_value(*first, *second)
    if first[1] == 0 or second[1] == 0:
        assert p is None
        return
    assert p is not None and 0.0 <= p <= 1.0
    assert two_proportion_p_value(*second, *first) == pytest.approx(p, rel=1e-12, abs=1e-300)
    # the same as the reference wherever the reference is defined (SE above 0)
    if 0 < first[0] + second[0] < first[1] + second[1]:
        assert p == pytest.approx(reference_p(*first, *second), rel=1e-6, abs=1e-12)


@given(groups)
def test_a_group_against_itself_is_no_evidence(group):
    if group[1]:
        assert two_proportion_p_value(*group, *group) == pytest.approx(1.0)


# --- rates and lift -----------------------------------------------------------------------------


def test_conversion_pct_rounds_half_away_from_zero_from_the_exact_counts():
    assert conversion_pct(123, 1000) == 12.3
    assert conversion_pct(1, 16) == 6.3  # 6.25: half up, where round() would give 6.2
    assert conversion_pct(1, 3) == 33.3
    assert conversion_pct(2, 3) == 66.7
    assert conversion_pct(0, 5) == 0.0
    assert conversion_pct(5, 5) == 100.0
    assert conversion_pct(0, 0) is None


def test_lift_is_relative_to_the_holdout_and_none_without_a_holdout_rate():
    assert lift_pct(12.0, 8.0) == 50.0  # (12 − 8) / 8
    assert lift_pct(6.0, 8.0) == -25.0
    assert lift_pct(Fraction(123, 10), Fraction(1000, 110)) == 35.3  # 12.3 against 9.0909…: 35.30
    assert lift_pct(5.0, 5.0) == 0.0
    assert lift_pct(5.0, 0.0) is None
    assert lift_pct(5.0, None) is None
    assert lift_pct(None, 5.0) is None


@given(st.fractions(min_value=0, max_value=100), st.fractions(min_value=Fraction(1, 1000), max_value=100))
def test_lift_has_the_sign_of_the_difference(treated, holdout):
    lift = lift_pct(treated, holdout)
    assert lift is not None
    exact = (treated - holdout) / holdout * 100
    assert abs(Fraction(lift) - exact) <= Fraction(1, 20) + Fraction(1, 10**9)
    assert (lift > 0) <= (treated > holdout) and (lift < 0) <= (treated < holdout)


# --- plain words --------------------------------------------------------------------------------


def test_numbers_and_p_values_are_written_for_people():
    assert number_text(7) == "7"
    assert number_text(1204) == "1 204"
    assert number_text(1234567) == "1 234 567"
    assert p_text(0.0312) == "p = 0.03"
    assert p_text(0.0099) == "p < 0.01"
    assert p_text(1.0) == "p = 1.00"
    assert p_text(None) == "p = -"


def test_the_best_variant_against_the_next_best():
    # long 70/604 = 11.589 %, short 40/600 = 6.667 %, formal 20/400 = 5 %: long against short,
    # 4.92 points; z = 0.049228 / 0.016607 = 2.9642, p = 0.0030 (below 0.01); n = 604 + 600
    lines = plain_words(experiments=[{"short": (40, 600), "long": (70, 604), "formal": (20, 400)}])
    assert reference_p(70, 604, 40, 600) < 0.01
    assert lines == ["variant long converts 4.9 points better than short; p < 0.01, n = 1 204"]


def test_a_difference_that_may_be_chance_says_so():
    # b 11/100 against a 9/100: 2.0 points; z = 0.02 / √(0.1 · 0.9 · 0.02) = 0.4714, p = 0.6374
    assert reference_p(11, 100, 9, 100) == pytest.approx(0.6374, abs=0.0001)
    assert plain_words(experiments=[{"a": (9, 100), "b": (11, 100)}]) == [
        "variant b converts 2.0 points better than a; p = 0.64, n = 200" + NOT_SIGNIFICANT]
    assert NOT_SIGNIFICANT == "; not significant yet (the difference may be chance)"


def test_equal_variants_convert_the_same_and_ties_keep_file_order():
    assert plain_words(experiments=[{"a": (10, 100), "b": (10, 100)}]) == [
        "variant a converts the same as b; p = 1.00, n = 200" + NOT_SIGNIFICANT]


def test_nobody_converted_yet_says_so_instead_of_a_p_value():
    assert plain_words((0, 90), (0, 10), [{"a": (0, 40), "b": (0, 50)}]) == [
        "variants a, b: nobody has converted yet",
        "nobody has converted yet, in the campaign or in its holdout"]
    # one conversion anywhere is a comparison again
    assert plain_words((0, 90), (1, 10))[0].startswith("the campaign converts 10.0 points worse than")


def test_variants_not_received_yet_are_too_early_to_compare_and_one_variant_has_no_line():
    assert plain_words(experiments=[{"short": (3, 10), "long": (0, 0)}]) == [
        "variants short, long: too early to compare (fewer than two have been received)"]
    assert plain_words(experiments=[{"only": (3, 10)}]) == []


def test_the_campaign_against_its_holdout():
    # treated 250/1000 = 25 %, holdout 200/1000 = 20 %: 5.0 points better, lift 25.0 %, p = 0.0074
    assert plain_words((250, 1000), (200, 1000)) == [
        "the campaign converts 5.0 points better than its holdout (lift 25.0 %); p < 0.01, n = 2 000"]
    # treated 80/1000 = 8 %, holdout 30/300 = 10 %: 2.0 points worse, lift −20.0 %;
    # pooled 110/1300, z = −0.02 / 0.018321 = −1.0917, p = 0.2750
    assert reference_p(80, 1000, 30, 300) == pytest.approx(0.2750, abs=0.0001)
    assert plain_words((80, 1000), (30, 300)) == [
        "the campaign converts 2.0 points worse than its holdout (lift -20.0 %); p = 0.27, n = 1 300"
        + NOT_SIGNIFICANT]
    # a holdout nobody in converted: no lift; 12/100 against 0/50: z = 0.12 / 0.046989 = 2.5538, p = 0.0107
    assert plain_words((12, 100), (0, 50)) == [
        "the campaign converts 12.0 points better than its holdout; p = 0.01, n = 150"]
    # 12 % against 10 %: lift 20.0 %; z = 0.02 / 0.107068 = 0.1868, p = 0.8518
    assert plain_words((12, 100), (1, 10)) == [
        "the campaign converts 2.0 points better than its holdout (lift 20.0 %); p = 0.85, n = 110"
        + NOT_SIGNIFICANT]


def test_an_empty_side_has_no_lift_and_no_holdout_has_no_line():
    assert plain_words((12, 100), (0, 0)) == ["the holdout has no partners yet: no lift to measure"]
    assert plain_words((0, 0), (1, 10)) == ["no treated partners yet: no lift to measure"]
    assert plain_words(None, (1, 10)) == ["no treated partners yet: no lift to measure"]
    assert plain_words((12, 100), None) == []


def test_variant_lines_come_before_the_holdout_line():
    lines = plain_words((250, 1000), (200, 1000),
                        [{"a": (9, 100), "b": (11, 100)}, {"x": (1, 2), "y": (0, 0)}])
    assert [line.split()[0] for line in lines] == ["variant", "variants", "the"]
