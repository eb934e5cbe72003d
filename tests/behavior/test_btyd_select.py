"""Choosing the BTYD transaction model on a holdout (behavior.btyd_select), on histories drawn
from BG/NBD and from MBG/NBD with known parameters, and the hand-off of the fitted model."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from behavior.btyd import BetaGeoFitter, ModifiedBetaGeoFitter
from behavior.btyd_select import (
    METRIC,
    MODELS,
    choice_sample,
    compare_on_holdout,
    new_model,
    transaction_model,
    with_transaction_model,
)

CUTOFF, HOLDOUT = 360.0, 90


def histories(n: int, modified: bool, seed: int, r=4.0, alpha=100.0, a=1.0, b=2.0):
    """Calibration summary at CUTOFF and the holdout purchases of `n` customers drawn from
    BG/NBD (no dropout at the first purchase) or MBG/NBD (dropout after every purchase,
    the first included); first purchases uniform in [0, 180) days."""
    rng = np.random.default_rng(seed)
    rows, later = [], []
    for i in range(n):
        lam, p = rng.gamma(r, 1 / alpha), rng.beta(a, b)
        start = rng.uniform(0, 180)
        t, times = start, []
        alive = not (modified and rng.random() < p)
        while alive:
            t += rng.exponential(1 / lam)
            if t >= CUTOFF + HOLDOUT:
                break
            times.append(t)
            alive = rng.random() >= p
        before = [s for s in times if s < CUTOFF]
        rows.append((f"u{i:05d}", len(before), (before[-1] - start) if before else 0.0, CUTOFF - start))
        later += [(f"u{i:05d}", int(s - CUTOFF)) for s in times if s >= CUTOFF]
    calib = pd.DataFrame(rows, columns=["user_id", "frequency", "recency", "T"])
    return calib, pd.DataFrame(later, columns=["user_id", "day"])


@pytest.fixture(scope="module")
def bg_data():
    return histories(8000, modified=False, seed=1)


@pytest.fixture(scope="module")
def mbg_data():
    return histories(8000, modified=True, seed=2)


def test_bgnbd_is_kept_on_bgnbd_data(bg_data):
    sel = compare_on_holdout(*bg_data, HOLDOUT)
    assert sel.chosen == "bgnbd"
    rep = sel.report()
    assert rep["metric"] == METRIC and rep["chosen"] == "bgnbd"
    assert [c["name"] for c in rep["candidates"]] == list(MODELS)


def test_mbgnbd_is_chosen_when_one_time_buyers_drop_out(mbg_data):
    sel = compare_on_holdout(*mbg_data, HOLDOUT)
    assert sel.chosen == "mbgnbd" and not sel.forced
    low, high = next(c for c in sel.report()["candidates"] if c["name"] == "bgnbd")["gain_vs_chosen"]
    assert high < 0   # BG/NBD is worse beyond the bootstrap noise


def test_holdout_reports_totals_and_the_repeat_purchase_curve(mbg_data):
    calib, days = mbg_data
    sel = compare_on_holdout(calib, days, HOLDOUT)
    ho = sel.holdout
    assert ho["model"] == "mbgnbd" and ho["customers"] == len(calib) and ho["actual_total"] == len(days)
    assert ho["params"] == ho["candidates"]["mbgnbd"]["params"]
    curve = ho["curve"]
    assert curve["days"][0] == 7 and curve["days"][-1] == HOLDOUT
    assert curve["actual"][-1] == len(days) and curve["actual"] == sorted(curve["actual"])
    for name in MODELS:
        assert len(curve[name]) == len(curve["days"]) and curve[name][-1] == ho["candidates"][name]["expected_total"]
    assert sum(b["customers"] for b in ho["by_frequency"]) == len(calib)


def test_a_large_holdout_is_chosen_on_a_sample_and_reported_over_everyone(mbg_data):
    """Above `max_customers` the candidates are fitted and chosen on that many customers (the
    same choice here); the holdout's figures still cover every customer, with the candidates'
    curves equal to their expectations at each day; at or below it nothing changes."""
    calib, days = mbg_data
    full = compare_on_holdout(calib, days, HOLDOUT)
    same = compare_on_holdout(calib, days, HOLDOUT, max_customers=len(calib))
    assert same.holdout == {**full.holdout, "choice_customers": len(calib)} and same.report() == full.report()
    part = compare_on_holdout(calib, days, HOLDOUT, max_customers=3000)
    ho = part.holdout
    assert part.chosen == full.chosen == "mbgnbd" and part.report()["n_boot"] == 200
    assert ho["choice_customers"] == 3000 and ho["customers"] == len(calib) and ho["actual_total"] == len(days)
    assert sum(b["customers"] for b in ho["by_frequency"]) == len(calib)
    assert ho["params"] != full.holdout["params"]                      # fitted on the sample ...
    assert ho["mse"] == pytest.approx(full.holdout["mse"], rel=0.02)   # ... and as good on everyone
    sample = calib.iloc[choice_sample(len(calib), 3000)]
    model = new_model("mbgnbd").fit(*(sample[c].to_numpy(float) for c in ("frequency", "recency", "T")))
    x, tx, T = (calib[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    assert ho["params"] == {k: round(v, 6) for k, v in model.params_.items()}
    assert ho["curve"]["mbgnbd"] == [
        round(float(model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T).sum()), 1)
        for t in ho["curve"]["days"]]
    assert len(set(choice_sample(len(calib), 3000))) == 3000


def test_the_config_forces_a_model_and_the_report_says_so(mbg_data):
    sel = compare_on_holdout(*mbg_data, HOLDOUT, forced="bgnbd")
    assert sel.chosen == "bgnbd" and sel.holdout["model"] == "bgnbd" and sel.forced
    rep = sel.report()
    assert rep["chosen"] == "bgnbd"
    assert any("forces" in n and "would choose mbgnbd" in n for n in rep["notes"])
    with pytest.raises(ValueError, match="unknown transaction model"):
        compare_on_holdout(*mbg_data, HOLDOUT, forced="pareto")


def test_too_few_customers_keep_the_simpler_model_and_say_why(mbg_data):
    calib, days = mbg_data
    sel = compare_on_holdout(calib.head(50), days, HOLDOUT)
    assert sel.chosen == "bgnbd" and "fewer than 100" in sel.holdout["skipped"]
    assert sel.report()["candidates"] == [] and sel.report()["notes"]
    assert sel.report()["summary"] == f"served bgnbd without a comparison: {sel.notes[-1]}"


def test_the_fitted_model_travels_with_the_table(mbg_data):
    calib, _ = mbg_data
    model = new_model("mbgnbd").fit(calib["frequency"], calib["recency"], calib["T"])
    table = with_transaction_model(pa.table({"user_id": calib["user_id"]}), model)
    back = transaction_model(table)
    assert type(back) is ModifiedBetaGeoFitter and back.params_ == model.params_
    x, tx, T = (calib[c] for c in ("frequency", "recency", "T"))
    assert np.array_equal(back.conditional_probability_alive(x, tx, T), model.conditional_probability_alive(x, tx, T))
    assert transaction_model(pa.table({"user_id": ["u1"]})) is None and transaction_model(None) is None
    assert isinstance(new_model("bgnbd"), BetaGeoFitter)


def test_churn_features_use_the_handed_on_model(mbg_data):
    from behavior.churn import add_bgnbd

    calib, _ = mbg_data
    fitted = new_model("mbgnbd").fit(calib["frequency"], calib["recency"], calib["T"])
    shifted = calib.assign(T=calib["T"] + 30)   # scored later than fitted: the fitted model is used as it is
    out = add_bgnbd(shifted, 90, model=fitted)
    x, tx, T = (shifted[c] for c in ("frequency", "recency", "T"))
    assert np.array_equal(out["p_alive"], fitted.conditional_probability_alive(x, tx, T))
    # an unfitted model names the kind fitted on the frame (the churn cutoffs): MBG/NBD, one-time buyers < 1
    refit = add_bgnbd(shifted, 90, model=new_model("mbgnbd"))
    assert (refit.loc[shifted["frequency"] == 0, "p_alive"] < 1).all()
    assert not np.array_equal(refit["p_alive"], out["p_alive"])
    assert (add_bgnbd(shifted, 90).loc[shifted["frequency"] == 0, "p_alive"] == 1).all()   # default BG/NBD
