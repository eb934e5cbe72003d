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


def test_a_large_holdout_is_chosen_on_as_many_customers_as_the_interval_needs(bg_data, mbg_data):
    """Above `max_customers` the choice's bootstrap starts on that many customers and takes four
    times as many while the other model's interval to the chosen one reaches 0, up to all; the
    fits and the holdout's figures are always those of every customer."""
    calib, days = bg_data
    full = compare_on_holdout(calib, days, HOLDOUT)
    assert full.holdout["choice_customers"] == len(calib) == 8000
    clear = compare_on_holdout(calib, days, HOLDOUT, max_customers=500)   # MBG/NBD clearly worse on 500
    assert clear.chosen == full.chosen == "bgnbd" and clear.holdout == {**full.holdout, "choice_customers": 500}
    lo, hi = next(c for c in clear.report()["candidates"] if c["name"] == "mbgnbd")["gain_vs_chosen"]
    full_lo, full_hi = next(c for c in full.report()["candidates"] if c["name"] == "mbgnbd")["gain_vs_chosen"]
    assert hi < 0 and hi - lo > 2 * (full_hi - full_lo)
    assert compare_on_holdout(calib, days, HOLDOUT, max_customers=1000).holdout["choice_customers"] == 4000
    calib, days = mbg_data   # MBG/NBD better, but not beyond the noise of fewer than all 8,000
    full = compare_on_holdout(calib, days, HOLDOUT)
    grown = compare_on_holdout(calib, days, HOLDOUT, max_customers=3000)
    assert grown.chosen == full.chosen == "mbgnbd" and grown.report() == full.report()
    assert grown.holdout == full.holdout and grown.holdout["choice_customers"] == len(calib)
    sample = choice_sample(len(calib), 3000)
    assert len(set(sample)) == 3000 and list(sample) == sorted(sample)
    x, tx, T = (calib[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    model = new_model("mbgnbd").fit(x, tx, T)
    assert full.holdout["curve"]["mbgnbd"] == [
        round(float(model.conditional_expected_number_of_purchases_up_to_time(t, x, tx, T).sum()), 1)
        for t in full.holdout["curve"]["days"]]


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
