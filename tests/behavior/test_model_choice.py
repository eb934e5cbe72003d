"""The shared choice rule: a model replaces a baseline only when better beyond the noise."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from behavior.model_choice import choose, resamples, score_metric, score_per_unit


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
