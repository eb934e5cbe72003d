"""Every plot returns a figure with a title and labelled axes, on report-shaped input and on
empty or degenerate input (a run without promotions, without a churn model, an empty lake)."""

from __future__ import annotations

import functools
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from matplotlib.figure import Figure

from behavior import plots as P
from behavior.plots.retention import reason_kind
from behavior.segments import SEGMENTS, segment_migration

MONTHS = pd.date_range("2025-01-01", periods=6, freq="MS")


def assert_readable(fig: Figure) -> None:
    """A title, and on every plotting axes (colour bars aside) an x and a y label (or an axis
    shared with an axes that has one); it renders to PNG."""
    assert isinstance(fig, Figure)
    suptitle = fig._suptitle.get_text() if fig._suptitle else ""
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert axes
    for ax in axes:
        assert suptitle or ax.get_title(loc="left") or ax.get_title(), "a plot without a title"
        assert any(s.get_ylabel() for s in ax.get_shared_y_axes().get_siblings(ax)), \
            f"no y label on {ax.get_title(loc='left')!r}"
        assert any(s.get_xlabel() for s in ax.get_shared_x_axes().get_siblings(ax)), \
            f"no x label on {ax.get_title(loc='left')!r}"
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=40)   # low resolution: the layout is what is tested
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"


def monthly() -> pd.DataFrame:
    n = len(MONTHS)
    return pd.DataFrame({"month": MONTHS, "payments": np.arange(100, 100 + n), "customers": np.arange(50, 50 + n),
                         "lines": np.arange(200, 200 + n), "sales": np.linspace(1000, 2000, n),
                         "refunds": np.full(n, 10.0), "failed_payments": np.full(n, 2),
                         "failure_rate": np.full(n, 0.02), "refund_lines": np.full(n, 3),
                         "refund_rate": np.full(n, 0.015)})


def profiles() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    r, f, m = (rng.integers(1, 6, n) for _ in range(3))
    return pd.DataFrame({"user_id": [f"u{i}" for i in range(n)], "r_score": r, "f_score": f, "m_score": m,
                         "segment": rng.choice(SEGMENTS, n), "loyalty_score": rng.uniform(0, 100, n),
                         "churn_probability": rng.uniform(0, 1, n),
                         "churn_reasons": rng.choice(["no purchase for 120 days; P(alive) 0.05",
                                                      "payments down 60% vs previous 90 days", ""], n)})


CHURN = {"test": {"roc_auc": 0.8, "brier": 0.17, "lift_at_10pct": 1.7, "churn_rate": 0.5},
         "calibration": [{"bin": b, "lower": b / 10, "upper": (b + 1) / 10, "count": 10 + b,
                          "mean_predicted": b / 10 + 0.05, "observed": b / 10 + 0.04} for b in range(10)],
         "gain_curve": {"share": list(np.linspace(0, 1, 21)), "model": list(np.sqrt(np.linspace(0, 1, 21))),
                        "recency": list(np.linspace(0, 1, 21) ** 0.7)}}
RECOMMEND = {"selected": "blend", "k": 10,
             "models": {name: {"precision@10": p, "recall@10": 2 * p, "ndcg@10": 1.5 * p, "map@10": p,
                               "coverage": c} for name, p, c in (("blend", 0.09, 0.7), ("popularity", 0.02, 0.01))},
             "test": {"days": 30, "blend": {"precision@10": 0.1, "recall@10": 0.3, "ndcg@10": 0.25, "map@10": 0.2,
                                            "coverage": 0.7},
                      "popularity": {"precision@10": 0.02, "recall@10": 0.06, "ndcg@10": 0.04, "map@10": 0.02,
                                     "coverage": 0.0}}}
EFFECTIVENESS = {"p1": {"name": "Voucher", "target": "any", "status": "estimated", "n_treatment": 300,
                        "n_control": 300, "conversion": {"lift": 0.05, "lift_ci": [0.01, 0.09]},
                        "revenue_per_user": {"lift": 2.0, "lift_ci": [-0.5, 4.5]}},
                 "p2": {"status": "cannot be estimated", "reason": "it has no assignments"}}


@functools.cache
def model_choice_report() -> dict:
    """A `selection` section as `Choice.report()` writes it: two baselines, two models, the model chosen."""
    from behavior.model_choice import choose, resamples, score_per_unit

    rng = np.random.default_rng(5)
    idx = resamples(400, 50)
    base = rng.normal(0.3, 0.1, 400)
    return choose("ndcg@10", [score_per_unit("popularity", base - 0.2, idx, baseline=True),
                              score_per_unit("buy_again", base, idx, baseline=True, simplicity=1),
                              score_per_unit("als", base + 0.05 + rng.normal(0, 0.02, 400), idx, simplicity=2),
                              score_per_unit("bpr", base - 0.05, idx, simplicity=3)]).report()


UPLIFT = {"qini": 0.15, "arms": {"p1": {
    "target": "any", "chosen": "t_learner", "rows": {"train": 600, "valid": 200, "test": 200},
    "test": {"t_learner": {"qini": 0.15, "uplift_at_30pct": 0.1}, "response": {"qini": 0.05, "uplift_at_30pct": 0.05}},
    "qini_curve_test": {"chosen": {"share": [0, 0.5, 1], "incremental": [0, 30, 40]},
                        "response": {"share": [0, 0.5, 1], "incremental": [0, 15, 40]}}}}}


@functools.cache
def full_cases():
    mig = segment_migration(profiles()[["user_id", "segment"]],
                            profiles().assign(segment=lambda p: p["segment"].sample(frac=1, random_state=1).values)
                            [["user_id", "segment"]])
    channels = pd.DataFrame({"month": np.repeat(MONTHS, 2), "channel": ["app", "web"] * len(MONTHS),
                             "payments": 10, "share": 0.5})
    cohort = pd.DataFrame([{"cohort_month": c, "months_since": k, "cohort_size": 100, "active_users": 100 - 10 * k,
                            "retention": 1 - k / 10} for i, c in enumerate(MONTHS) for k in range(len(MONTHS) - i)])
    curves = pd.DataFrame([{"segment": s, "months_since": k, "users": 100, "active_users": 50, "retention": 0.5}
                           for s in SEGMENTS[:3] for k in range(4)])
    merchants = pd.DataFrame({"merchant_id": ["m1", "m2", "m3"], "customers": [10, 200, 3000],
                              "revenue": [100.0, 2000.0, 50000.0], "repeat_customer_rate": [0.1, 0.2, 0.3],
                              "retention_90d": [np.nan, 0.05, 0.1]})
    curve = pd.DataFrame({"budget_users": [10, 20, 30], "targets": [10, 20, 25], "incremental_conversions": [3, 5, 6],
                          "incremental_profit": [30.0, 45.0, 50.0], "cost": [5.0, 10.0, 12.0]})
    examples = pd.DataFrame({"user_id": ["u1"] * 2 + ["u2"], "rank": [1, 2, 1], "item_id": ["i1", "i2", "i3"],
                             "category": ["food", "food", ""], "score": [1.0, 0.5, 0.1],
                             "source": ["model", "model", "fallback"], "bought_before": [True, False, False],
                             "because": ["", "i1", ""]})
    return {
        "monthly_volume": lambda: P.plot_monthly_volume(monthly(), "EUR"),
        "failure_refund_rates": lambda: P.plot_failure_refund_rates(monthly()),
        "channel_mix": lambda: P.plot_channel_mix(channels),
        "weekday_hour": lambda: P.plot_weekday_hour(pd.DataFrame({"weekday": [0, 6], "hour": [9, 23],
                                                                  "payments": [5, 7]})),
        "basket_sizes": lambda: P.plot_basket_sizes(
            pd.DataFrame({"items": [1, 2, 10], "payments": [5, 3, 1], "share": [0.55, 0.35, 0.1]}),
            pd.DataFrame({"lower": [1.0, 10.0], "upper": [10.0, 100.0], "payments": [4, 5]}), "EUR"),
        "top": lambda: P.plot_top(pd.DataFrame({"key": ["a", "b"], "revenue": [10.0, 5.0], "payments": [2, 1],
                                                "customers": [2, 1], "revenue_share": [2 / 3, 1 / 3]})),
        "rfm_distribution": lambda: P.plot_rfm_distribution(profiles()),
        "segment_sizes": lambda: P.plot_segment_sizes({"Champions": 10, "Lost": 5}),
        "segment_migration": lambda: P.plot_segment_migration(mig, "2025-01-01", "2025-04-01"),
        "loyalty_tiers": lambda: P.plot_loyalty_tiers(profiles()),
        "merchant_loyalty": lambda: P.plot_merchant_loyalty(merchants, "EUR"),
        "merchant_health": lambda: P.plot_merchant_health(MERCHANT_SIDE, "EUR"),
        "cohort_retention": lambda: P.plot_cohort_retention(cohort),
        "retention_curves": lambda: P.plot_retention_curves(curves),
        "calibration": lambda: P.plot_calibration(CHURN),
        "gain_lift": lambda: P.plot_gain_lift(CHURN),
        "churn_reasons": lambda: P.plot_churn_reasons(profiles()),
        "recommender_metrics": lambda: P.plot_recommender_metrics(RECOMMEND),
        "coverage": lambda: P.plot_coverage(RECOMMEND),
        "recommendation_examples": lambda: P.plot_recommendation_examples(examples),
        "promotion_lift": lambda: P.plot_promotion_lift(EFFECTIVENESS, "EUR"),
        "qini": lambda: P.plot_qini(UPLIFT),
        "targeting_what_if": lambda: P.plot_targeting_what_if(curve, "EUR"),
        "model_choice": lambda: P.plot_model_choice(model_choice_report(), "Recommendations"),
    }


EMPTY = pd.DataFrame()
MERCHANT_SIDE = pd.DataFrame({"merchant_id": ["m1", "m2", "m3", "m4"],
                              "merchant_segment": ["steady", "at_risk", "growing", "dormant"],
                              "churn_risk": [0.1, 0.9, 0.05, np.nan], "revenue_90d": [5000.0, 800.0, 100.0, 0.0],
                              "share_of_wallet": [0.4, 0.7, 0.2, np.nan]})
DEGENERATE = {
    "monthly_volume": lambda: P.plot_monthly_volume(EMPTY),
    "monthly_volume_no_amounts": lambda: P.plot_monthly_volume(monthly().assign(sales=np.nan, refunds=np.nan)),
    "failure_refund_rates": lambda: P.plot_failure_refund_rates(None),
    "channel_mix": lambda: P.plot_channel_mix(EMPTY),
    "weekday_hour": lambda: P.plot_weekday_hour(EMPTY),
    "basket_sizes": lambda: P.plot_basket_sizes(EMPTY, None),
    "top": lambda: P.plot_top(EMPTY, "merchant_id"),
    "top_no_amounts": lambda: P.plot_top(pd.DataFrame({"key": ["a"], "revenue": [np.nan], "payments": [3],
                                                       "customers": [1], "revenue_share": [np.nan]})),
    "rfm_distribution": lambda: P.plot_rfm_distribution(EMPTY),
    "segment_sizes": lambda: P.plot_segment_sizes({}),
    "segment_migration": lambda: P.plot_segment_migration(EMPTY),
    "loyalty_tiers": lambda: P.plot_loyalty_tiers(EMPTY),
    "merchant_loyalty": lambda: P.plot_merchant_loyalty(EMPTY),
    "merchant_health": lambda: P.plot_merchant_health(EMPTY),
    "merchant_health_no_risk": lambda: P.plot_merchant_health(MERCHANT_SIDE.assign(churn_risk=np.nan)),
    "cohort_retention": lambda: P.plot_cohort_retention(EMPTY),
    "retention_curves": lambda: P.plot_retention_curves(EMPTY),
    "calibration_no_churn": lambda: P.plot_calibration(None),
    "calibration_skipped": lambda: P.plot_calibration({"skipped": "too little history"}),
    "gain_lift_skipped": lambda: P.plot_gain_lift({"skipped": "a single cutoff"}),
    "gain_lift_old_report": lambda: P.plot_gain_lift({"test": {}, "calibration": []}),
    "churn_reasons_skipped": lambda: P.plot_churn_reasons(profiles().assign(churn_probability=np.nan,
                                                                            churn_reasons=None)),
    "recommender_metrics": lambda: P.plot_recommender_metrics(None),
    "coverage": lambda: P.plot_coverage({}),
    "recommendation_examples": lambda: P.plot_recommendation_examples(EMPTY),
    "promotion_lift_none": lambda: P.plot_promotion_lift(None),
    "promotion_lift_not_estimable": lambda: P.plot_promotion_lift({"p2": EFFECTIVENESS["p2"]}),
    "qini_no_model": lambda: P.plot_qini({"skipped": "no randomized promotion"}),
    "targeting_what_if": lambda: P.plot_targeting_what_if(EMPTY),
    "model_choice_none": lambda: P.plot_model_choice(None),
    "model_choice_uncompared": lambda: P.plot_model_choice({"metric": "m", "chosen": "bgnbd", "candidates": []}),
}


@pytest.mark.parametrize("name", sorted(full_cases()))
def test_every_plot_has_a_title_and_labelled_axes(name):
    fig = full_cases()[name]()
    assert_readable(fig)
    assert not any("no data" in t.get_text() for ax in fig.axes for t in ax.texts), name


@pytest.mark.parametrize("name", sorted(DEGENERATE))
def test_empty_or_degenerate_input_says_so_instead_of_failing(name):
    fig = DEGENERATE[name]()
    assert_readable(fig)


def test_merchant_health_ranks_by_revenue_at_stake():
    stake = P.revenue_at_stake(MERCHANT_SIDE)
    assert list(stake.round(6)[:3]) == [500.0, 720.0, 5.0] and np.isnan(stake[3])
    fig = P.plot_merchant_health(MERCHANT_SIDE, "EUR", top=2)
    bars = fig.axes[1].get_yticklabels()
    assert [t.get_text() for t in bars] == ["m1", "m2"]   # drawn bottom-up: the riskiest (m2) on top


def test_an_empty_plot_says_why():
    fig = P.plot_gain_lift({"skipped": "a single cutoff"})
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no data" in t and "a single cutoff" in t for t in texts)


def test_rates_are_drawn_on_percent_axes():
    fig = P.plot_failure_refund_rates(monthly())
    fig.canvas.draw()
    assert all(t.get_text().endswith("%") for t in fig.axes[0].get_yticklabels() if t.get_text())


def test_churn_reasons_are_counted_without_the_users_numbers():
    p = pd.DataFrame({"churn_probability": [0.9, 0.8, 0.1],
                      "churn_reasons": ["no purchase for 120 days; P(alive) 0.05",
                                        "no purchase for 200 days; payments down 60% vs previous 90 days",
                                        "no purchase for 300 days"]})
    counts = P.churn_reason_counts(p, min_probability=0.5).set_index("reason")["customers"].to_dict()
    assert counts == {"no purchase for … days": 2, "P(alive) …": 1, "payments down …% vs previous 90 days": 1}


def test_lift_table_reads_the_report_shape():
    t = P.lift_table(EFFECTIVENESS).set_index("promotion_id")
    assert t.loc["p1", "lift_low"] == 0.01 and t.loc["p1", "revenue_high"] == 4.5
    assert t.loc["p2", "status"] == "cannot be estimated" and np.isnan(t.loc["p2", "lift"])


def test_selection_table_reads_each_arms_candidates_from_the_report():
    from behavior.model_choice import choose, resamples, score_per_unit

    idx = resamples(50, 20)
    choice = choose("qini", [score_per_unit("random", np.zeros(50), idx, baseline=True),
                             score_per_unit("t_learner", np.linspace(0, 1, 50), idx, simplicity=3)])
    t = P.selection_table({**UPLIFT, "selection": {"p1": choice.report()}}).set_index("candidate")
    assert list(t.index) == ["random", "t_learner"] and t.loc["t_learner", "chosen"]
    assert t.loc["t_learner", "low"] <= t.loc["t_learner", "qini"] == 0.5 <= t.loc["t_learner", "high"]
    assert t.loc["t_learner", "test_qini"] == 0.15 and np.isnan(t.loc["random", "test_qini"])
    assert P.selection_table(None).empty


def test_churn_reasons_fall_back_to_the_riskiest_quarter_when_nobody_reaches_the_threshold():
    p = profiles().assign(churn_probability=lambda f: f["churn_probability"] * 0.4)   # all below 50%
    fig = P.plot_churn_reasons(p)
    assert not any("no data" in t.get_text() for t in fig.axes[0].texts)
    assert f"of the {int((p['churn_probability'] >= p['churn_probability'].quantile(0.75)).sum()):,} customers" \
        in fig.axes[0].get_title(loc="left")


def test_model_choice_shows_each_candidates_difference_to_the_best_and_marks_the_served_one():
    sel = model_choice_report()
    t = P.model_choice_table(sel).set_index("candidate")
    assert sel["chosen"] == "als" and t.loc["als", "served"] and t.loc["buy_again", "baseline"]
    assert t.loc["als", "vs_best"] == 0 and t.loc["bpr", "vs_best"] == pytest.approx(-0.1, abs=0.01)
    assert t.loc["bpr", "vs_best_low"] <= t.loc["bpr", "vs_best"] <= t.loc["bpr", "vs_best_high"] < 0
    fig = P.plot_model_choice(sel, "Recommendations")
    labels = [x.get_text() for x in fig.axes[0].get_yticklabels()]
    assert labels[0].startswith("popularity (baseline)")      # the simplest on top, as the rule tries them
    assert [x for x in labels if "served" in x] == [f"als  {t.loc['als', 'value']:.3f} best  ← served"]
    assert fig.axes[0].get_title(loc="left") == "Recommendations\nserved: als"


def test_served_models_names_every_choice_of_a_report():
    sel = model_choice_report()
    report = {"loyalty": {"selection": sel}, "churn": {"selection": sel},
              "promotions": {"uplift": {"selection": {"p1": sel}}}, "merchants": {"churn": {"skipped": "few"}}}
    assert [(path, title) for path, title, _ in P.served_models(report)] == [
        ("loyalty", "Purchase model (expected purchases, P(alive), CLV)"), ("churn", "Churn probability"),
        ("promotions.uplift.p1", "Uplift of promotion p1")]


_REASON_TEXTS = ["no purchase for 120 days", "no purchase for 7 days", "P(alive) 0.05", "P(alive) 0.5", " ",
                 "payments down 60% vs previous 90 days", "one-time buyer", "only 2 payments in the last 90 days"]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(st.sampled_from([0.1, 0.5, 0.9, float("nan")]),
                               st.one_of(st.none(), st.lists(st.sampled_from(_REASON_TEXTS), max_size=3)
                                         .map("; ".join))), max_size=30),
       n=st.integers(1, 4))
# a tie in the counts: value_counts keeps the first appearance first (a stable sort)
@example(rows=[(0.5, " ; payments down 60% vs previous 90 days"),
               (0.5, "no purchase for 120 days; P(alive) 0.05; P(alive) 0.05"), (0.5, "no purchase for 120 days")], n=1)
def test_churn_reason_counts_are_the_per_customer_counts(rows, n):
    # the reference: every risky customer's reasons split, numbers taken out, counted with pandas
    p = pd.DataFrame({"churn_probability": [r[0] for r in rows], "churn_reasons": [r[1] for r in rows]},
                     columns=["churn_probability", "churn_reasons"])
    risky = p[p["churn_probability"].astype(float) >= 0.5]
    kinds = risky["churn_reasons"].dropna().astype(str).str.split("; ").explode()
    kinds = kinds[kinds.str.len() > 0].map(reason_kind) if len(kinds) else kinds
    got = P.churn_reason_counts(p, min_probability=0.5, n=n)
    if kinds.empty:
        assert got.empty
        return
    want = kinds.value_counts().head(n)
    assert got["reason"].tolist() == list(want.index)
    assert got["customers"].tolist() == want.tolist()
    assert got["share"].tolist() == (want.to_numpy() / max(len(risky), 1)).tolist()
