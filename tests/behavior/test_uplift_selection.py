"""Choosing an uplift candidate per promotion arm: worlds where a baseline is the truth keep it,
worlds with signal choose what ranks above random; the simple learners' known answers.

`campaign` builds data in the shape of a real e-mail campaign (MineThatData's: recency in
months, past spend, bought men's / women's merchandise, new customer, zip-code kind, channel;
two e-mail arms against one control; visit and conversion outcomes), whose real file is not
reachable offline, with the effect planted per world.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.uplift import default_classifier, qini_coefficient
from behavior.uplift_learners import CellMeanUplift, DRLearner, ResponseModel
from behavior.uplift_selection import BASELINES, SIMPLICITY, ArmData, select_arm, serve, split_arm
from behavior.uplift_training import cell_of, train_arms

ARMS = ("mens", "womens")


def campaign(n: int, world: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(features, meta) of n customers split evenly into the two e-mail arms and the control.
    meta: customer, arm (None for control), cell (spend segment x zip kind), conversion and,
    per arm, the planted uplift `tau_<arm>`.

    Worlds: "none" (the e-mails change nothing), "cells" (the effect depends only on the cell),
    "hetero" (each e-mail moves the buyers of its own merchandise, more the longer since they bought).
    """
    rng = np.random.default_rng(seed)
    recency = rng.integers(1, 13, n)
    history = np.round(rng.lognormal(5.0, 0.9, n), 2)
    mens = rng.random(n) < 0.55
    womens = ~mens | (rng.random(n) < 0.3)
    newbie = rng.random(n) < 0.5
    zip_code = rng.choice(["Urban", "Suburban", "Rural"], n, p=[0.4, 0.45, 0.15])
    channel = rng.choice(["Phone", "Web", "Multichannel"], n, p=[0.44, 0.44, 0.12])
    segment = np.digitize(history, [100, 200, 350, 500, 750, 1000])
    X = pd.DataFrame({"recency": recency.astype(float), "history": history, "mens": mens.astype(float),
                      "womens": womens.astype(float), "newbie": newbie.astype(float),
                      "urban": (zip_code == "Urban").astype(float), "web": (channel == "Web").astype(float),
                      "noise": rng.normal(size=n)})
    arm = rng.choice(np.array([*ARMS, None], dtype=object), n)
    base = 0.08 + 0.06 * (recency <= 3) + 0.03 * (history > 300)
    tau = {}
    for a, buyer in zip(ARMS, (mens, womens)):
        if world == "none":
            tau[a] = np.zeros(n)
        elif world == "cells":
            tau[a] = np.where(zip_code == "Urban", 0.12, 0.0) + np.where(segment >= 4, 0.06, -0.03)
        else:
            tau[a] = 0.15 * buyer * (recency > 6) - 0.04 * (X["noise"].to_numpy() > 1)
    own = np.select([arm == a for a in ARMS], [tau[a] for a in ARMS], 0.0)
    y = (rng.random(n) < np.clip(base + own, 0, 1)).astype(int)
    meta = pd.DataFrame({"customer": np.arange(n), "arm": arm, "converted": y,
                         "cell": [f"{s}|{z}" for s, z in zip(segment, zip_code)],
                         **{f"tau_{a}": tau[a] for a in ARMS}})
    return X, meta


def _arm(X: pd.DataFrame, meta: pd.DataFrame, arm: str) -> tuple[ArmData, pd.DataFrame]:
    """One arm's rows: its treated customers and the shared control."""
    rows = ((meta["arm"] == arm) | meta["arm"].isna()).to_numpy()
    m = meta[rows].reset_index(drop=True)
    t = (m["arm"] == arm).to_numpy(int)
    return ArmData(X[rows].reset_index(drop=True), m["cell"].to_numpy(), m["converted"].to_numpy(), t,
                   np.zeros(len(m), int)), m


def _choose(world: str, seed: int, n: int = 30000, arm: str = "womens"):
    X, meta = campaign(n, world, seed)
    data, m = _arm(X, meta, arm)
    parts, _ = split_arm(pd.Series(pd.NaT, index=m.index), data.t, data.y, seed)
    return select_arm(data, parts, seed), data, m, parts


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_without_any_effect_no_complex_learner_is_chosen(seed):
    result, data, *_ = _choose("none", seed)
    assert result.choice.chosen in ("random", "cell_mean")
    # the served uplift is a constant or a shrunk cell mean close to the (null) overall lift
    assert abs(result.served.uplift(data.X, data.cells).mean()) < 0.02


@pytest.mark.slow
def test_heterogeneous_uplift_chooses_a_model_that_ranks_above_random():
    result, data, m, parts = _choose("hetero", 3)
    chosen = result.choice.chosen
    assert chosen != "random"
    te = parts == "test"
    truth = m["tau_womens"].to_numpy()[te]
    served = result.served.uplift(data.X[te], data.cells[te])
    assert np.corrcoef(served, truth)[0, 1] > 0.5
    test = result.report["test"]
    assert test[chosen]["qini"] > 0.05 > abs(test["random"]["qini"])


@pytest.mark.slow
def test_an_effect_by_cell_only_chooses_the_cell_mean_learner():
    result, *_ = _choose("cells", 4)
    assert result.choice.chosen == "cell_mean"
    rows = {c["name"]: c for c in result.choice.report()["candidates"]}
    assert rows["random"]["gain_vs_chosen"][1] < 0          # the cells beat no targeting


def test_selection_reports_every_candidate_with_its_interval_in_simplicity_order():
    result, *_ = _choose("hetero", 5, n=9000)
    rep = result.choice.report()
    assert [c["name"] for c in rep["candidates"]] == list(SIMPLICITY) and rep["metric"] == "qini"
    assert {c["name"] for c in rep["candidates"] if c["baseline"]} == BASELINES
    assert all(c["low"] <= c["value"] <= c["high"] for c in rep["candidates"])
    assert set(result.report["test"]) == set(SIMPLICITY) and result.report["chosen"] == rep["chosen"]


def _two_arms(X: pd.DataFrame, meta: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`train_arms`' rows of the campaign's two e-mails, each against the shared control."""
    parts, metas = [], []
    for a, target in zip(ARMS, ("mens_wear", "womens_wear")):
        rows = ((meta["arm"] == a) | meta["arm"].isna()).to_numpy()
        m = meta[rows].assign(promotion_id=f"email_{a}", target=target, treated=lambda f, a=a: f["arm"] == a,
                              starts_at=pd.Timestamp("2025-03-01", tz="UTC"),
                              assigned_at=pd.Timestamp("2025-03-01", tz="UTC"), redeemed=0)
        parts.append(X[rows])
        metas.append(m)
    return pd.concat(parts, ignore_index=True), pd.concat(metas, ignore_index=True)


@pytest.mark.slow
def test_two_arms_of_one_campaign_are_chosen_and_served_separately():
    """The real failure: two e-mails against one control pooled into one model rank by neither."""
    X, meta = campaign(30000, "hetero", 6)
    section, served = train_arms(*_two_arms(X, meta))
    assert set(section["selection"]) == {"email_mens", "email_womens"}
    assert section["served"] == {"mens_wear": "email_mens", "womens_wear": "email_womens"}
    for a, target in zip(ARMS, ("mens_wear", "womens_wear")):
        s = served[target]
        assert section["selected"][s.promotion_id] != "random"
        score = s.model.uplift(X[list(s.columns)], meta["cell"].to_numpy())
        assert np.corrcoef(score, meta[f"tau_{a}"])[0, 1] > 0.4, a


def test_split_by_time_when_the_assignments_span_weeks_else_stratified_random():
    rng = np.random.default_rng(0)
    n = 2000
    t, y = rng.integers(0, 2, n), (rng.random(n) < 0.2).astype(int)
    at = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 60, n), unit="D")
    parts, how = split_arm(at, t, y)
    assert how["kind"] == "time"
    days = pd.Series(at)
    assert days[parts == "train"].max() <= days[parts == "valid"].min()
    assert days[parts == "valid"].max() <= days[parts == "test"].min()
    short = pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, 5, n), unit="D")
    parts, how = split_arm(short, t, y, seed=1)
    assert how["kind"] == "random" and "(< 28)" in how["detail"]
    for g in (0, 1):
        for o in (0, 1):
            stratum = parts[(t == g) & (y == o)]
            assert (stratum == "train").mean() == pytest.approx(0.6, abs=0.01)
            assert (stratum == "test").mean() == pytest.approx(0.2, abs=0.01)
    again, _ = split_arm(short, t, y, seed=1)
    assert (again == parts).all()


def test_cell_mean_shrinks_small_and_flat_cells_to_the_overall_lift():
    rng = np.random.default_rng(1)
    n = 60000
    cells = rng.choice(["a", "b", "c"], n)
    t = rng.integers(0, 2, n)
    flat = (rng.random(n) < 0.2 + 0.05 * t).astype(int)             # the same lift in every cell
    model = CellMeanUplift().fit(cells, flat, t)
    raw = np.array([flat[(cells == c) & (t == 1)].mean() - flat[(cells == c) & (t == 0)].mean() for c in "abc"])
    pred = model.predict(np.array(["a", "b", "c", "unseen"]))
    assert (np.abs(pred[:3] - model.overall_) <= np.abs(raw - model.overall_) + 1e-12).all()
    assert np.allclose(pred, model.overall_, atol=0.01) and pred[3] == model.overall_
    lift = np.where(cells == "a", 0.3, 0.0)
    y = (rng.random(n) < 0.2 + lift * t).astype(int)
    model = CellMeanUplift().fit(cells, y, t)
    a, b = model.predict(np.array(["a", "b"]))
    assert a == pytest.approx(0.3, abs=0.03) and b == pytest.approx(0.0, abs=0.03)
    tiny = np.concatenate([cells, ["d"] * 4])                      # a cell of 4 users: hardly moved
    tt, yy = np.concatenate([t, [1, 1, 0, 0]]), np.concatenate([y, [1, 1, 0, 0]])
    d = CellMeanUplift().fit(tiny, yy, tt).predict(np.array(["d"]))[0]
    assert abs(d - model.overall_) < 0.5 * abs(1.0 - model.overall_)


def test_dr_learner_recovers_a_planted_uplift_and_response_ignores_the_control():
    rng = np.random.default_rng(2)
    n = 16000
    X = pd.DataFrame({"x0": rng.normal(size=n), "x1": rng.normal(size=n)})
    tau = 0.3 * (X["x0"] > 0).to_numpy()
    t = (rng.random(n) < 0.4).astype(int)
    y = (rng.random(n) < 0.2 + t * tau).astype(int)
    pred = DRLearner().fit(X, y, t).predict(X)
    assert pred[X["x0"] > 0].mean() - pred[X["x0"] <= 0].mean() == pytest.approx(0.3, abs=0.07)
    assert qini_coefficient(y, t, pred) > 0.5 * qini_coefficient(y, t, tau)
    p1 = ResponseModel().fit(X, y, t).predict(X)
    assert p1[X["x0"] > 0].mean() == pytest.approx(0.5, abs=0.05)   # P(y | treated), not an uplift


def test_arms_chosen_on_two_threads_are_the_arms_chosen_one_at_a_time():
    X, meta = campaign(9000, "hetero", 7)
    rows = _two_arms(X, meta)
    (one, served_one), (two, served_two) = train_arms(*rows, workers=1), train_arms(*rows, workers=2)
    assert one == two and set(one["selection"]) == {"email_mens", "email_womens"}
    for target, s in served_one.items():
        Xs = X[list(s.columns)]
        np.testing.assert_array_equal(s.model.uplift(Xs, meta["cell"].to_numpy()),
                                      served_two[target].model.uplift(Xs, meta["cell"].to_numpy()))


def test_the_response_candidate_is_the_t_learners_treated_half():
    """The selection reuses the T-learner's classifier of the treated rows as the response model."""
    from behavior.uplift import TLearner

    X, meta = campaign(6000, "hetero", 8)
    data, _ = _arm(X, meta, "mens")
    fitted = ResponseModel(seed=3).fit(data.X, data.y, data.t)
    shared = ResponseModel.of_treated(TLearner(seed=3).fit(data.X, data.y, data.t).model_t_, seed=3)
    np.testing.assert_array_equal(shared.predict(data.X), fitted.predict(data.X))


def _cell_of_text_by_text(segments, target_affinity, target_is_any: bool) -> np.ndarray:
    """`cell_of` as it was written before it made each distinct cell's text once: one text per row."""
    a = np.asarray(target_affinity, float)
    band = (np.full(len(a), "any", dtype=object) if target_is_any
            else np.where(a <= 0, "none", np.where(a < 0.25, "low", "high")).astype(object))
    seg = pd.Series(segments, dtype="object").fillna("no history").to_numpy()
    return (seg.astype(str).astype(object) + " | " + band).astype(object)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["Champions", "At risk", "Lost", None, float("nan")]),
                          st.sampled_from([0.0, 0.1, 0.25, 0.9, 1.0])), max_size=40), st.booleans())
def test_cell_of_is_the_text_of_each_row(rows, target_is_any):
    segments = [s for s, _ in rows]
    affinity = np.array([a for _, a in rows], float)
    got = cell_of(np.array(segments, dtype=object), affinity, target_is_any)
    want = _cell_of_text_by_text(np.array(segments, dtype=object), affinity, target_is_any)
    assert got.dtype == object and got.tolist() == want.tolist()


@pytest.mark.parametrize("name", ["random", "cell_mean", "response", "t_learner"])
def test_the_served_uplift_is_each_rows_prediction(name):
    """`ArmModel.uplift` predicts each distinct cell (or response bin) once and spreads it over the
    rows: the same values as predicting row by row."""
    X, meta = campaign(6000, "cells", 3)
    data, _ = _arm(X, meta, "mens")
    model = serve(name, data, seed=3)
    row_by_row = {"random": lambda: model.model.predict(np.zeros(len(X))),
                  "cell_mean": lambda: model.model.predict(meta["cell"].to_numpy()),
                  "response": lambda: model.bins.predict(np.digitize(model.model.predict(X), model.edges)),
                  "t_learner": lambda: model.model.predict(X)}[name]()
    got = model.uplift(X, meta["cell"].to_numpy())
    np.testing.assert_array_equal(got, row_by_row)
    assert name == "random" or len(np.unique(got)) > 1


@pytest.mark.parametrize("name", ["response", "t_learner"])
@pytest.mark.parametrize("every_conversion_redeemed", [True, False])
def test_redemptions_equal_to_conversions_share_the_models_classifier(name, every_conversion_redeemed):
    """When each treated conversion carried the promotion, P(redeem) is the model's own classifier
    of the treated rows (no second fit), and `predict` evaluates it once: the same values as a
    redemption classifier fitted apart and each method called alone."""
    X, meta = campaign(6000, "hetero", 5)
    data, _ = _arm(X, meta, "mens")
    redeemed = data.y * data.t
    if not every_conversion_redeemed:
        redeemed = redeemed * (np.arange(len(redeemed)) % 3 != 0)
    data = ArmData(data.X, data.cells, data.y, data.t, redeemed)
    model = serve(name, data, seed=2)
    inner = model.model.model_t_ if name == "t_learner" else model.model.model_
    assert (model.redeem is inner) is every_conversion_redeemed
    apart = default_classifier(2).fit(data.X[data.t == 1], redeemed[data.t == 1])
    uplift, p_redeem = model.predict(X, meta["cell"].to_numpy())
    np.testing.assert_array_equal(uplift, model.uplift(X, meta["cell"].to_numpy()))
    np.testing.assert_array_equal(p_redeem, apart.predict_proba(X)[:, 1])
    np.testing.assert_array_equal(p_redeem, model.p_redeem(X))
