"""The accuracy table's reading of a run report: `selection` sections first, the older report
shapes otherwise, skipped stages with their reason; and the forward checks on known data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from behavior.accuracy import hanley_mcneil, report_rows
from behavior.accuracy_forward import forward_rows
from behavior.model_choice import choose, resamples, score_per_unit


def _choice_report(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    idx = resamples(400, 100, seed)
    base = rng.normal(0.30, 0.1, 400)
    return choose("roc_auc", [score_per_unit("recency", base, idx, baseline=True),
                              score_per_unit("model", base + 0.1, idx)]).report()


CHURN_OLD = {"horizon_days": 90,
             "test": {"roc_auc": 0.8, "n": 1000, "churn_rate": 0.4},
             "baselines": {"recency": {"roc_auc": 0.75, "n": 1000, "churn_rate": 0.4}}}


def test_hanley_mcneil_known_answer():
    # Hanley and McNeil (1982), table 2: AUC 0.8 with 50 of each class has a standard error of 0.0447
    low, high = hanley_mcneil(0.8, 50, 50)
    assert (high - low) / 2 == pytest.approx(1.959964 * 0.0447, abs=5e-4)
    assert hanley_mcneil(0.99, 5, 5)[1] <= 1.0
    with pytest.raises(ValueError):
        hanley_mcneil(0.7, 0, 10)


def test_a_selection_section_is_preferred_to_the_older_comparison():
    report = {"stages": {"churn": {"seconds": 1}}, "churn": {**CHURN_OLD, "selection": _choice_report()}}
    rows = [r for r in report_rows(report) if r["stage"] == "churn"]
    assert {r["candidate"] for r in rows} == {"recency", "model"}
    assert all(r["source"] == "selection" for r in rows)
    assert [r["candidate"] for r in rows if r["served"]] == ["model"]
    assert next(r for r in rows if r["candidate"] == "recency")["baseline"]


def test_without_a_selection_the_churn_comparison_gets_hanley_mcneil_intervals():
    rows = report_rows({"stages": {"churn": {}}, "churn": CHURN_OLD})
    model = next(r for r in rows if r["candidate"] == "model")
    assert model["served"] and not model["baseline"] and model["source"] == "report"
    assert (model["low"], model["high"]) == pytest.approx(hanley_mcneil(0.8, 400, 600))
    assert next(r for r in rows if r["candidate"] == "recency")["baseline"]


def test_recommender_and_uplift_without_selection_and_nested_selections():
    report = {
        "stages": {},
        "recommend": {"selected": "als", "k": 10, "models": {"popularity": {"ndcg@10": 0.1}, "als": {"ndcg@10": 0.2}}},
        "promotions": {"uplift": {"selected": "t_learner", "models": {"t_learner": {"test": {"qini": 0.1}}},
                                  "baseline": {"purchase_probability": {"test": {"qini": 0.05}}}}},
        "merchants": {"churn": {"test_rows": 10, "selection": _choice_report(1)}},
        "loyalty": {"selection": _choice_report(2)},     # a stage the table does not name still shows
    }
    rows = report_rows(report)
    rec = {r["candidate"]: r for r in rows if r["stage"] == "recommend"}
    assert rec["als"]["served"] and rec["popularity"]["baseline"] and rec["als"]["low"] is None
    up = {r["candidate"]: r for r in rows if r["stage"] == "promotions.uplift"}
    assert up["t_learner"]["served"] and up["purchase_probability"]["baseline"] and up["t_learner"]["value"] == 0.1
    assert {r["source"] for r in rows if r["stage"] in ("merchants.churn", "loyalty")} == {"selection"}
    assert len([r for r in rows if r["stage"] == "loyalty"]) == 2


def test_each_uplift_arms_selection_gives_its_rows():
    report = {"stages": {}, "promotions": {"uplift": {"selection": {"p1": _choice_report(1), "p2": _choice_report(2)},
                                                       "arms": {"p1": {}, "p2": {}}}}}
    rows = report_rows(report)
    assert {r["stage"] for r in rows} == {"promotions.uplift.p1", "promotions.uplift.p2"}
    assert all(r["source"] == "selection" for r in rows) and len(rows) == 4


def test_skipped_stages_say_why():
    report = {"stages": {"recommend": {"skipped": "only 1 item"}},
              "recommend": {"skipped": "only 1 item"},
              "promotions": {"uplift": {"skipped": "no assignments"}}}
    rows = report_rows(report)
    assert {"stage": "recommend", "skipped": "only 1 item"} in rows
    assert {"stage": "promotions.uplift", "skipped": "no assignments"} in rows


def _bgnbd_customers(n: int, seed: int) -> pd.DataFrame:
    """Customers drawn from BG/NBD over 365 days, then their purchase days over the next 180."""
    rng = np.random.default_rng(seed)
    lam, drop = rng.gamma(0.8, 1 / 20, n), rng.beta(1.0, 8.0, n)
    T = rng.integers(30, 366, n).astype(float)
    rows = []
    for i in range(n):
        t, times = 0.0, [0.0]       # the first purchase starts the clock; after each one, dropout
        while rng.random() >= drop[i]:
            t += rng.exponential(1 / lam[i])
            if t >= T[i] + 180:
                break
            times.append(t)
        before = [x for x in times if x < T[i]]
        rows.append({"frequency": len(before) - 1, "recency": before[-1], "T": T[i],
                     "holdout": sum(1 for x in times if x >= T[i])})
    return pd.DataFrame(rows)


def test_forward_checks_rank_and_total_on_bgnbd_data():
    data = _bgnbd_customers(1500, 0)
    served = pd.Series(data["holdout"].eq(0).astype(float) * 0.5 + np.random.default_rng(1).random(len(data)) * 0.6)
    rows, totals = forward_rows(data, served, 180, n_boot=100)
    by = {(r["stage"], r.get("candidate")): r for r in rows}
    y = data["holdout"].eq(0).astype(int)
    assert by[("churn (forward 180 d)", "churn_probability")]["value"] == pytest.approx(roc_auc_score(y, served), abs=1e-4)
    assert by[("churn (forward 180 d)", "churn_probability")]["served"]
    for r in rows:
        assert r["low"] <= r["value"] <= r["high"], r
    fit = by[("loyalty (forward 180 d)", "bgnbd")]
    assert 0.8 < fit["value"] < 1.25                  # BG/NBD on its own data: the total is about right
    assert totals["actual"] == int(data["holdout"].sum()) and totals["churned"] == int(y.sum())
