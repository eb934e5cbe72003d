"""Target lists: budget, profit ranking, holdout, eligibility, fallback rule; bad inputs."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.errors import InputError
from behavior.targeting import MODEL, RULE, Economics, eligible_mask, rule_score, select_targets

ECON = Economics(value_per_conversion=20.0, coupon_cost=3.0, contact_cost=0.5)


def _candidates(n, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"user_id": [f"u{i:05d}" for i in range(n)], "uplift": rng.uniform(-0.2, 0.5, n),
                         "p_redeem": rng.uniform(0, 1, n)})


def test_profit_formula_drops_sure_things_and_do_not_disturbs():
    c = pd.DataFrame({"user_id": ["persuadable", "sure_thing", "do_not_disturb", "lost_cause"],
                      "uplift": [0.4, 0.0, -0.2, 0.0], "p_redeem": [0.5, 0.9, 0.1, 0.0]})
    out = select_targets(c, ECON, budget_users=10, holdout_share=0.0)
    assert list(out.targets["user_id"]) == ["persuadable"]
    assert out.targets["expected_profit"].iloc[0] == pytest.approx(20 * 0.4 - 3 * 0.5 - 0.5)
    assert out.counts["non_positive"] == 3 and out.expected["incremental_conversions"] == pytest.approx(0.4)


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 300), users=st.integers(1, 400), share=st.floats(0, 0.9), seed=st.integers(0, 10))
def test_user_budget_holdout_and_ranking_hold_for_any_input(n, users, share, seed):
    c = _candidates(n, seed)
    out = select_targets(c, ECON, budget_users=users, holdout_share=share, seed=seed)
    t, h = out.targets, out.holdout
    assert len(t) <= users and not set(t["user_id"]) & set(h["user_id"])
    both = pd.concat([t, h]).sort_values("rank")
    assert (both["expected_profit"] > 0).all() and both["expected_profit"].is_monotonic_decreasing
    assert list(both["rank"]) == list(range(1, len(both) + 1))
    positive = int((ECON.profit(c["uplift"].to_numpy(), c["p_redeem"].to_numpy()) > 0).sum())
    assert len(t) == users or len(both) == positive  # the budget is used up, or every positive user is in
    if len(both) < positive:  # a binding budget: the list ends on a targeted user
        assert both["user_id"].iloc[-1] in set(t["user_id"])


def test_holdout_is_random_share_of_the_would_be_targets():
    out = select_targets(_candidates(20000), ECON, budget_users=3000, holdout_share=0.1, seed=1)
    share = len(out.holdout) / (len(out.holdout) + len(out.targets))
    assert share == pytest.approx(0.1, abs=0.015)
    # held-out users are spread over the ranking like the targets (comparable groups)
    assert out.holdout["expected_profit"].mean() == pytest.approx(out.targets["expected_profit"].mean(), rel=0.05)


def test_money_budget_counts_contact_and_expected_coupon_cost():
    c = _candidates(5000, 2)
    out = select_targets(c, ECON, budget_money=100.0, holdout_share=0.0)
    cost = (ECON.contact_cost + ECON.coupon_cost * out.targets["p_redeem"]).sum()
    assert cost <= 100.0 + 1e-9 and out.expected["cost"] == pytest.approx(cost, abs=0.01)
    assert cost > 100.0 - (ECON.contact_cost + ECON.coupon_cost)   # and nearly used up


@pytest.mark.parametrize("kwargs", [dict(budget_users=0), dict(budget_users=-3), dict(budget_money=0.0),
                                    dict(budget_money=-10.0), dict(), dict(budget_users=5, budget_money=5.0)])
def test_bad_budgets_are_clear_errors(kwargs):
    with pytest.raises(InputError, match="budget"):
        select_targets(_candidates(10), ECON, **kwargs)


def test_bad_economics_and_holdout():
    with pytest.raises(InputError, match="coupon_cost"):
        Economics(10.0, coupon_cost=-1.0)
    with pytest.raises(InputError, match="holdout_share"):
        select_targets(_candidates(10), ECON, budget_users=3, holdout_share=1.0)


def test_eligibility_and_rule():
    mask = eligible_mask(np.array([False, True, False, False]), np.array([np.nan, np.nan, 3.0, 45.0]), 30)
    assert list(mask) == [True, False, False, True]
    score = rule_score(np.array([0.5, 0.0, np.nan]), np.array([0.8, 0.9, 0.5]), np.array([100.0, 50.0, 10.0]))
    assert list(score) == [40.0, 0.0, 0.0]
    c = pd.DataFrame({"user_id": ["a", "b", "c"], "score": score})
    out = select_targets(c, ECON, budget_users=5, holdout_share=0.0, method=RULE)
    assert list(out.targets["user_id"]) == ["a"] and out.expected["incremental_profit"] is None
    assert out.method == RULE and any("cannot be estimated" in n for n in out.notes) and MODEL != RULE


def test_budget_curve_grows_until_every_profitable_user_is_targeted():
    from behavior.targeting import budget_curve

    c = pd.DataFrame({"user_id": [f"u{i}" for i in range(6)], "uplift": [0.5, 0.4, 0.3, 0.2, 0.0, -0.1],
                      "p_redeem": 0.5})
    curve = budget_curve(c, Economics(10.0, coupon_cost=2.0), [2, 4, 6, 0])
    assert curve["budget_users"].tolist() == [2, 4, 6]
    assert curve["targets"].tolist() == [2, 4, 4]            # 4 users have a positive expected profit
    # profit = 10 x uplift - 2 x 0.5 per target
    assert curve["incremental_profit"].tolist() == pytest.approx([7.0, 10.0, 10.0])
    assert curve["incremental_conversions"].tolist() == pytest.approx([0.9, 1.4, 1.4])
