"""The verdict statistics (falign.kit.effects) on cases computed by hand, and the classes they give."""

import math

import numpy as np
import pytest

from falign.kit import effects

T2 = 6.2053468    # the t quantile at 0.9875 with 2 degrees of freedom (a 97.5 % two-sided interval, 3 seeds)


def test_paired_effect_is_the_mean_relative_difference_with_a_t_interval():
    good, bad = [0.9, 1.6, 2.1], [1.0, 2.0, 3.0]           # relative differences 0.1, 0.2, 0.3
    e = effects.paired(good, bad)
    half_width = T2 * 0.1 / math.sqrt(3)                     # sd 0.1 over 3 seeds
    assert e.estimate == pytest.approx(0.2)
    assert (e.low, e.high) == pytest.approx((0.2 - half_width, 0.2 + half_width))
    assert e.n == 3 and e.level == 0.975 and e.method == "paired t over seeds"


def test_higher_is_better_flips_the_sign():
    e = effects.paired([0.8, 0.8], [0.5, 0.5], better="higher")     # AUC 0.8 against 0.5
    assert e.estimate == pytest.approx(0.6) and e.low == e.high == pytest.approx(0.6)


def test_a_consistent_paired_effect_with_a_large_seed_spread_is_reproduced():
    """Seeds differ a lot from each other, but the better arm wins within every seed by about 10 %:
    paired, the effect is clear; judged as independent arms it would be lost in the spread."""
    bad = np.array([1.0, 3.0, 5.0])
    good = bad * np.array([0.89, 0.90, 0.91])
    e = effects.paired(good, bad)
    assert effects.classify(e, paper=0.12) == effects.REPRODUCED
    assert effects.classify(effects.unpaired(good, bad), paper=0.12) == effects.UNDECIDED


def test_a_null_effect_with_a_tight_interval_is_absent_at_the_papers_size():
    bad = np.array([2.0, 2.1, 1.9, 2.05, 1.95])
    good = bad * np.array([1.01, 0.99, 1.005, 0.995, 1.0])      # no effect, within 1 %
    e = effects.paired(good, bad)
    assert e.low < 0 < e.high
    assert effects.classify(e, paper=0.30) == effects.ABSENT     # the paper's 30 % is ruled out
    assert effects.classify(e, paper=0.005) == effects.UNDECIDED  # a tiny paper effect is not
    assert effects.classify(e, paper=None) == effects.UNDECIDED  # nothing published: cannot be "absent"


def test_reversed_smaller_and_untestable():
    assert effects.classify(effects.paired([1.2, 1.3, 1.25], [1.0, 1.1, 1.05])) == effects.REVERSED
    clear = effects.paired([0.9, 0.91, 0.89], [1.0, 1.0, 1.0])    # about 10 %
    assert effects.classify(clear, paper=0.5) == effects.REPRODUCED and effects.smaller_than_paper(clear, 0.5)
    assert not effects.smaller_than_paper(clear, 0.1)
    # the regime cannot show less than a 20 % difference; the paper's 5 % is below it
    assert effects.classify(clear, paper=0.05, floor=0.2) == effects.UNTESTABLE


def test_one_seed_has_no_interval_and_is_undecided():
    e = effects.paired([1.0], [2.0])
    assert e.estimate == pytest.approx(0.5) and not e.has_interval and e.method == effects.ONE_SEED
    assert effects.classify(e, paper=0.5) == effects.UNDECIDED


def test_welch_interval_against_scipy_by_hand():
    good, bad = np.array([1.0, 1.2, 1.1]), np.array([2.0, 2.4, 2.2, 2.1])
    e = effects.unpaired(good, bad)
    v1, v2 = good.var(ddof=1) / 3, bad.var(ddof=1) / 4
    dof = (v1 + v2) ** 2 / (v1 ** 2 / 2 + v2 ** 2 / 3)
    from scipy import stats
    half = stats.t.ppf(0.9875, dof) * math.sqrt(v1 + v2) / bad.mean()
    assert e.estimate == pytest.approx((bad.mean() - good.mean()) / bad.mean())
    assert (e.low, e.high) == pytest.approx((e.estimate - half, e.estimate + half))


def test_against_a_fixed_reference():
    e = effects.against([4.0, 4.1, 3.9], 4.45)              # ours below a published 4.45
    assert e.estimate == pytest.approx(0.45 / 4.45) and e.low > 0


def test_non_finite_values_are_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        effects.paired([1.0, float("nan")], [2.0, 2.0])


def test_paired_arms_need_as_many_values():
    with pytest.raises(ValueError, match="shared seed"):
        effects.paired([1.0, 1.1], [2.0, 2.1, 2.2])


def test_a_beaten_arm_at_zero_has_no_relative_effect():
    for e in (effects.paired([0.1, 0.2], [0.0, 0.1], better="higher"), effects.unpaired([0.1], [0.0, 0.0]),
              effects.against([0.1, 0.2], 0.0)):
        assert np.isnan(e.estimate) and not e.has_interval and e.method == effects.ZERO
        assert effects.classify(e, paper=0.1) == effects.UNDECIDED
