"""Intervals of promotion lift: known answers, coverage over simulated campaigns, CUPED."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from behavior import experiment_stats as S
from behavior.promotions import CANNOT, NO_AMOUNTS, effectiveness
from behavior.synth_promotions import response_probabilities


def test_welch_interval_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 2.0, 300), rng.normal(0.7, 1.0, 500)
    got = S.mean_difference(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert got["ci"] == pytest.approx([ci.low, ci.high], abs=1e-6)
    assert got["p_value"] == pytest.approx(ref.pvalue, abs=1e-6)
    assert got["diff"] == pytest.approx(a.mean() - b.mean(), abs=1e-6)


def test_relative_lift_by_hand():
    t, c = np.array([1, 1, 0, 0] * 50, float), np.array([1, 0, 0, 0] * 50, float)  # 0.5 vs 0.25
    got = S.relative_difference(t, c)
    assert got["relative"] == pytest.approx(1.0)
    se = np.sqrt(t.var(ddof=1) / 200 / 0.25 ** 2 + 0.5 ** 2 * c.var(ddof=1) / 200 / 0.25 ** 4)
    assert got["ci"] == pytest.approx([1 - 1.959964 * se, 1 + 1.959964 * se], abs=1e-5)
    assert S.relative_difference(t, np.zeros(10))["relative"] is None


def test_cuped_reduces_variance_by_the_squared_correlation():
    rng = np.random.default_rng(2)
    x = rng.gamma(2.0, 10.0, 4000)
    y = 0.5 * x + rng.normal(0, 5, 4000)
    adj, theta, reduction = S.cuped(y, x)
    assert theta == pytest.approx(np.cov(y, x, ddof=0)[0, 1] / x.var())
    assert reduction == pytest.approx(np.corrcoef(y, x)[0, 1] ** 2, abs=1e-9)
    assert adj.mean() == pytest.approx(y.mean())


def test_skewed_revenue_is_bootstrapped_when_its_skew_moves_the_interval_and_close_to_welch_when_not():
    rng = np.random.default_rng(3)
    spend = lambda n: np.where(rng.random(n) < 0.1, rng.lognormal(3, 1.5, n), 0.0)  # noqa: E731
    t, c = spend(300), rng.normal(7, 1, 300)    # the treatment's whales are not matched in the control
    r = S.revenue_difference(t, c, seed=5)
    assert r["method"] == "bootstrap" and r["skewness"] > S.SKEWED and r["ci"][0] < r["diff"] < r["ci"][1]
    assert r["ci"] == S.bootstrap_difference(t, c, seed=5)     # the same resamples as always
    a, b = rng.normal(10, 1, 800), rng.normal(10, 1, 800)
    assert S.revenue_difference(a, b)["method"] == "welch"
    boot = S.bootstrap_difference(a, b)
    assert boot == pytest.approx(S.mean_difference(a, b)["ci"], abs=0.03)


def test_the_shape_of_the_difference_is_that_of_the_exact_bootstrap_distribution():
    """Every resample of two tiny groups enumerated (3^3 x 2^2 equally likely differences):
    their skewness and excess kurtosis are `difference_shape`'s."""
    import itertools

    t, c = np.array([0.0, 0.0, 3.0]), np.array([1.0, 2.5])
    diffs = [np.mean(a) - np.mean(b) for a in itertools.product(t, repeat=3) for b in itertools.product(c, repeat=2)]
    skew, kurt = S.difference_shape(t, c)
    assert skew == pytest.approx(stats.skew(diffs), abs=1e-12)
    assert kurt == pytest.approx(stats.kurtosis(diffs), abs=1e-12)
    assert S.difference_shape(np.ones(5), np.zeros(4)) == (0.0, 0.0)


@pytest.mark.parametrize("seed", range(4))
def test_where_the_bootstrap_is_skipped_its_interval_is_welchs_within_its_own_scatter(seed):
    """Skewed revenue (most users 0, lognormal spend, group skewness 6 to 10) in groups of
    20,000: the rule skips the bootstrap, and the 2,000-resample percentile interval it would
    have reported lies within three of its own Monte Carlo standard deviations (0.060 standard
    errors each) of Welch's at both ends; 300 users of the treatment against a control without
    its skew, and the rule bootstraps."""
    rng = np.random.default_rng(seed)
    spend = lambda n, share: np.where(rng.random(n) < share, rng.lognormal(3, 1.0, n), 0.0)  # noqa: E731
    t, c = spend(20_000, 0.45), spend(20_000, 0.3)
    r = S.revenue_difference(t, c, seed=seed)
    assert r["method"] == "welch" and r["skewness"] > S.SKEWED
    assert not S.bootstrap_moves_interval(*S.difference_shape(t, c))
    boot = np.array(S.bootstrap_difference(t, c, seed=seed))
    assert np.abs(boot - np.array(r["ci"])).max() / r["se"] < 3 * 0.0597
    assert S.bootstrap_moves_interval(*S.difference_shape(t[:300], np.full(300, c.mean())))


def test_the_rule_keeps_the_bootstrap_where_the_skew_is_beyond_its_scatter():
    # 95%, 2,000 resamples: scatter sqrt(0.025 * 0.975 / 2000) / phi(1.96) = 0.05973 standard errors;
    # a skewness g alone moves each end by g (1.96^2 - 1) / 6 - g^2 (...) : 0.126 is about the edge
    assert not S.bootstrap_moves_interval(0.12, 0.0)
    assert S.bootstrap_moves_interval(0.14, 0.0) and S.bootstrap_moves_interval(-0.14, 0.0)
    assert S.bootstrap_moves_interval(0.0, 1.0)      # (1.96^3 - 3 x 1.96) / 24 = 0.0688 from the kurtosis
    assert not S.bootstrap_moves_interval(0.0, 0.8)
    assert S.bootstrap_moves_interval(0.12, 0.0, resamples=20_000)    # more resamples, less scatter


def _campaign(rng, n: int) -> tuple[pd.DataFrame, float]:
    """A small randomized campaign with planted heterogeneous effects (the generator's response
    types); returns per-user outcomes and the true average lift of these users."""
    frequency = rng.poisson(4.0, n).astype(float)
    recency = rng.exponential(30.0, n)
    affinity = rng.beta(2, 3, n)
    probs = response_probabilities(frequency, recency, affinity, 1.0)
    natural = np.clip(0.05 + 0.02 * frequency, 0, 0.6)
    p1 = natural + (1 - natural) * (probs[:, 0] + probs[:, 1])
    p0 = natural + (1 - natural) * (probs[:, 1] + probs[:, 2])
    treated = rng.permutation(n) < n // 2
    converted = rng.random(n) < np.where(treated, p1, p0)
    revenue = converted * rng.gamma(2.0, 15.0, n)
    out = pd.DataFrame({"group": np.where(treated, "treatment", "control"), "converted": converted,
                        "revenue": revenue, "redeemed": converted & treated,
                        "pre_spend": rng.gamma(1.0, 20.0, n), "pre_converted": rng.random(n) < natural})
    return out, float(np.mean(p1 - p0))


def test_interval_covers_the_true_lift_in_at_least_90_of_100_small_campaigns():
    rng = np.random.default_rng(20261125)
    covered = 0
    for _ in range(100):
        outcomes, truth = _campaign(rng, 800)
        lo, hi = effectiveness(outcomes, 2.0)["conversion"]["lift_ci"]
        covered += lo <= truth <= hi
    assert covered >= 90, covered


def test_effectiveness_entry_and_cannot_estimate_without_control():
    rng = np.random.default_rng(4)
    outcomes, _ = _campaign(rng, 2000)
    e = effectiveness(outcomes, 3.0, segments=pd.Series(np.where(np.arange(2000) % 2, "a", "b")))
    assert e["status"] == "estimated" and e["n_treatment"] + e["n_control"] == 2000
    inc = e["incremental"]
    assert inc["redemptions"] == int(outcomes["redeemed"].sum())
    assert inc["net_revenue"] == pytest.approx(inc["revenue"] - 3.0 * inc["redemptions"], abs=0.02)
    assert inc["conversions"] == pytest.approx(e["conversion"]["lift"] * e["n_treatment"], abs=0.01)
    assert set(e["segments"]) == {"a", "b"} and e["cuped"]["revenue"]["variance_reduction"] >= 0
    only_treated = outcomes.assign(group="treatment")
    e = effectiveness(only_treated)
    assert e["status"] == CANNOT and "control group" in e["reason"] and "conversion" not in e


def test_effectiveness_without_amounts_leaves_the_revenue_out_and_keeps_the_rest():
    outcomes, _ = _campaign(np.random.default_rng(4), 2000)
    full = effectiveness(outcomes, 3.0)
    bare = effectiveness(outcomes.assign(revenue=0.0, pre_spend=0.0), 3.0, amounts=False)
    assert bare["revenue_per_user"] == {"skipped": NO_AMOUNTS}
    assert bare["conversion"] == full["conversion"] and bare["cuped"]["conversion"] == full["cuped"]["conversion"]
    assert "revenue" not in bare["cuped"] and "revenue" not in bare["cuped"]["covariates"]
    assert bare["incremental"] == {k: full["incremental"][k] for k in
                                   ("conversions", "conversions_ci", "redemptions", "promotion_cost")}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 1e4)), min_size=0, max_size=80))
def test_effectiveness_never_crashes_and_intervals_hold_the_estimate(rows):
    frame = pd.DataFrame(rows, columns=["treated", "converted", "revenue"])
    frame["group"] = np.where(frame["treated"], "treatment", "control")
    frame["redeemed"] = frame["converted"] & frame["treated"]
    frame["pre_spend"] = frame["revenue"][::-1].to_numpy() if len(frame) else []
    frame["pre_converted"] = False
    e = effectiveness(frame)
    if e["status"] == "estimated":
        lo, hi = e["conversion"]["lift_ci"]
        assert lo <= e["conversion"]["lift"] <= hi
    else:
        assert e["reason"]


def test_confidence_sequence_known_answer():
    from behavior.experiment_stats import _cs_factor, confidence_sequence

    # n = n_star = 1000, alpha = 0.05: rho^2 = (5.991465 + ln 6.991465) / 1000 = 0.007936155,
    # factor = sqrt(2 * 8.936155 / 7.936155 * ln(sqrt(8.936155) / 0.05)) = 3.035209
    assert _cs_factor(1000, 0.05, 1000) == pytest.approx(3.035209, abs=1e-6)
    t = np.array([1.0, 0.0] * 250)           # mean 0.5, var 0.2505 (n-1)
    c = np.array([1.0, 0.0, 0.0, 0.0] * 125)  # mean 0.25
    cs = confidence_sequence(t, c, 0.05, 1000)
    se = np.sqrt(t.var(ddof=1) / 500 + c.var(ddof=1) / 500)
    assert cs["diff"] == pytest.approx(0.25)
    assert cs["ci"] == pytest.approx([0.25 - 3.035209 * se, 0.25 + 3.035209 * se], abs=1e-5)
    assert cs["anytime_valid"] and cs["n"] == 1000


def test_confidence_sequence_is_wider_than_the_fixed_n_interval_and_shrinks_with_n():
    from behavior.experiment_stats import _cs_factor

    widths = [_cs_factor(n, 0.05, 1000) / np.sqrt(n) for n in (100, 1000, 10_000, 100_000)]
    assert widths == sorted(widths, reverse=True)
    assert all(_cs_factor(n, 0.05, 1000) > 1.96 for n in (10, 1000, 10**6))


def test_confidence_sequence_covers_at_every_look_under_the_null():
    """Looking after every 50 users for 4,000 users: the fixed-n interval excludes 0 at some look
    in far more than 5% of null experiments; the confidence sequence in at most about 5%."""
    from behavior.experiment_stats import confidence_sequence

    rng = np.random.default_rng(7)
    runs, looks = 200, range(100, 4001, 100)
    cs_false = fixed_false = 0
    for _ in range(runs):
        t, c = rng.binomial(1, 0.1, 4000).astype(float), rng.binomial(1, 0.1, 4000).astype(float)
        cs_hit = fixed_hit = False
        for n in looks:
            ci = confidence_sequence(t[:n], c[:n], 0.05, 1000)["ci"]
            cs_hit |= ci[0] > 0 or ci[1] < 0
            se = np.sqrt(t[:n].var(ddof=1) / n + c[:n].var(ddof=1) / n)
            d = t[:n].mean() - c[:n].mean()
            fixed_hit |= abs(d) > 1.96 * se
        cs_false += cs_hit
        fixed_false += fixed_hit
    assert cs_false / runs <= 0.06
    assert fixed_false / runs > 2 * max(cs_false / runs, 0.05)
