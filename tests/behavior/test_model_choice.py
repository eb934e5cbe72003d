"""The shared choice rule: a model replaces a baseline only when better beyond the noise."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from behavior.model_choice import Scored, choose, report_selections, resamples, score_metric, score_per_unit, uncompared


def test_noise_alone_keeps_the_baseline():
    rng = np.random.default_rng(1)
    idx = resamples(2_000, 200, seed=0)
    base = rng.normal(0.30, 0.2, 2_000)
    model = base + rng.normal(0.002, 0.05, 2_000)       # a hair better on average, within the noise
    c = choose("ndcg@10", [score_per_unit("popularity", base, idx, baseline=True),
                           score_per_unit("als", model, idx)])
    assert c.chosen == "popularity" and not c.model_chosen
    rep = c.report()
    assert rep["chosen"] == "popularity" and len(rep["candidates"]) == 2
    als = next(r for r in rep["candidates"] if r["name"] == "als")
    assert als["gain_vs_chosen"][0] < 0 < als["gain_vs_chosen"][1]


def test_a_real_gain_chooses_the_model():
    rng = np.random.default_rng(2)
    idx = resamples(2_000, 200, seed=0)
    base = rng.normal(0.30, 0.2, 2_000)
    model = base + rng.normal(0.05, 0.05, 2_000)
    c = choose("ndcg@10", [score_per_unit("popularity", base, idx, baseline=True),
                           score_per_unit("als", model, idx)])
    assert c.chosen == "als" and c.model_chosen


def test_simplest_within_the_interval_of_the_best_with_a_non_mean_metric():
    rng = np.random.default_rng(3)
    n = 3_000
    y = rng.random(n) < 0.3
    signal = y + rng.normal(0, 1.0, n)
    scores = {"recency": signal + rng.normal(0, 0.05, n), "gbm": signal, "noise": rng.random(n)}
    idx = resamples(n, 100, seed=0)

    def auc(s):
        return lambda rows: roc_auc_score(y if rows is None else y[rows], s if rows is None else s[rows])

    cands = [score_metric("gbm", auc(scores["gbm"]), idx, simplicity=2),
             score_metric("noise", auc(scores["noise"]), idx, baseline=True, simplicity=0),
             score_metric("recency", auc(scores["recency"]), idx, baseline=True, simplicity=1)]
    c = choose("roc_auc", cands)
    assert c.chosen == "recency"     # the noise baseline is clearly worse; recency overlaps gbm


def test_candidates_must_share_resamples():
    with pytest.raises(ValueError, match="same bootstrap"):
        choose("m", [score_per_unit("a", np.ones(10), resamples(10, 5)),
                     score_per_unit("b", np.ones(10), resamples(10, 6))])


def _span(low: float, high: float, n: int = 41) -> np.ndarray:
    """n replicates of a paired difference whose 95% percentile interval is exactly (low, high)."""
    step = (high - low) / (n - 3)
    return np.linspace(low - step, high + step, n)


BASE = np.random.default_rng(0).normal(0.70, 0.01, 41)


def test_the_summary_of_a_chosen_model_names_the_best_baseline_it_beats_with_the_interval():
    c = choose("roc_auc", [Scored("recency", 0.700, BASE, baseline=True),
                           Scored("frequency", 0.650, BASE - 0.05, baseline=True, simplicity=1),
                           Scored("boosting", 0.712, BASE + _span(0.004, 0.020))])
    assert c.chosen == "boosting"
    assert c.summary() == "served boosting: beats recency by 0.012 ROC-AUC (95% interval 0.004 to 0.020)"
    rep = c.report()
    assert rep["summary"] == c.summary()
    rows = {r["name"]: r for r in rep["candidates"]}
    assert rows["recency"]["gain_vs_best"] == rows["recency"]["gain_vs_chosen"] == [-0.02, -0.004]


def test_the_summary_of_a_kept_baseline_gives_the_models_gain_within_its_uncertainty():
    c = choose("roc_auc", [Scored("recency", 0.700, BASE, baseline=True),
                           Scored("logistic", 0.699, BASE + _span(-0.006, 0.004))])
    assert c.summary() == ("kept the baseline recency: the model, logistic, gains \u22120.001 ROC-AUC "
                           "(95% interval \u22120.006 to 0.004), within its uncertainty")
    worse = choose("ndcg@10", [Scored("popularity", 0.300, BASE, baseline=True),
                               Scored("als", 0.290, BASE + _span(-0.016, -0.004)),
                               Scored("bpr", 0.200, BASE - 0.1)])
    assert worse.summary() == ("kept the baseline popularity: the best model, als, gains \u22120.010 nDCG@10 "
                               "(95% interval \u22120.016 to \u22120.004): it does worse")


def test_the_summary_without_baselines_or_models_says_so():
    mbgnbd = Scored("mbgnbd", -2.5838, BASE + _span(-0.0155, 0.0014), simplicity=1)
    twins = choose("neg_mse_holdout_purchases", [Scored("bgnbd", -2.5767, BASE), mbgnbd])
    assert twins.summary() == ("served bgnbd: the next candidate, mbgnbd, gains \u22120.007 negative MSE of holdout "
                               "purchases (95% interval \u22120.015 to 0.001), within its uncertainty")
    only_baselines = choose("qini", [Scored("response", 0.05, BASE, baseline=True),
                                     Scored("cell_mean", 0.01, BASE - 0.04, baseline=True, simplicity=1)])
    assert only_baselines.summary() == "served the baseline response: no model was among the candidates"
    assert uncompared("m", "bgnbd", "too little history")["summary"] == \
        "served bgnbd without a comparison: too little history"


def test_report_selections_finds_every_section_in_the_choice_shape():
    sel = choose("qini", [Scored("response", 0.05, BASE, baseline=True)]).report()
    report = {"run_id": "r", "churn": {"selection": sel, "test": {}},
              "promotions": {"uplift": {"selection": {"p1": sel, "p2": sel}, "arms": {"p1": {}}}},
              "merchants": {"churn": {"selection": sel}}, "recommend": {"selection": None}}
    assert [p for p, _ in report_selections(report)] == ["churn", "promotions.uplift.p1", "promotions.uplift.p2",
                                                          "merchants.churn"]
