"""Planted-truth checks of the synthetic generator (behavior.synth).

Each statistical check compares what the generated tables show with what the planted
parameters imply, with a tolerance of several standard errors for the sample size, so a
wrong generator fails them while the fixed seeds keep them deterministic.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from behavior.errors import InputError
from behavior.schema import CHANNELS, GROUPS, STATUSES, TABLES
from behavior.synth import SynthConfig, SynthData, generate
from behavior.synth_catalog import CATEGORIES, STAPLE

CANONICAL = ("payments", "items", "users", "promotions", "assignments")
STAPLE_OF = dict(zip(CATEGORIES, STAPLE))


@pytest.fixture(scope="module")
def data() -> SynthData:
    return generate(SynthConfig(users=4000, seed=7))


@pytest.fixture(scope="module")
def promo_data() -> SynthData:
    """Many assigned users, so that promotion effects are measurable."""
    return generate(SynthConfig(users=6000, seed=11, promo_assign_rate=0.4, n_promotions=3))


@pytest.fixture(scope="module")
def untasted() -> SynthData:
    return generate(SynthConfig(users=4000, seed=7, taste_strength=0.0))


def success_payments(d: SynthData) -> pd.DataFrame:
    """One row per successful payment: user, time, total, first category."""
    pay = d.tables["payments"]
    s = pay[pay["status"] == "success"]
    return s.groupby("payment_id", sort=False).agg(
        user_id=("user_id", "first"),
        paid_at=("paid_at", "first"),
        total=("amount", "sum"),
        category=("category", "first"),
        promotion_id=("promotion_id", "first"),
    )


def days_between(later: pd.Series, earlier) -> np.ndarray:
    return ((later - earlier).dt.total_seconds() / 86_400).to_numpy()


# ---------------------------------------------------------------- reproducibility, config


def test_same_config_gives_identical_output_and_another_seed_does_not():
    cfg = SynthConfig(users=800, months=12, seed=3)
    a, b = generate(cfg), generate(cfg)
    assert a.tables.keys() == b.tables.keys()
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    assert a.truth == b.truth
    c = generate(SynthConfig(users=800, months=12, seed=4))
    assert not a.tables["payments"].equals(c.tables["payments"])
    assert not a.tables["items"].equals(c.tables["items"])


@pytest.mark.parametrize(
    "kwargs",
    [{"users": 0}, {"months": 0}, {"alpha": 0.0}, {"q": 1.0}, {"taste_strength": 1.5}, {"fail_rate": -0.1},
     {"start": "not a date"}, {"items": 5}, {"currency": "euro"}],
)
def test_invalid_config_is_rejected(kwargs):
    with pytest.raises(InputError):
        SynthConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [{"users": 1, "months": 1}, {"users": 50, "months": 2, "n_promotions": 0}, {"users": 30, "n_promotions": 25}],
)
def test_tiny_and_odd_configs_still_generate(kwargs):
    d = generate(SynthConfig(**kwargs))
    assert len(d.tables["users"]) == kwargs["users"]
    assert (d.tables["payments"]["status"] == "success").any()
    json.dumps(d.truth, allow_nan=False)


# ---------------------------------------------------------------- schema


def test_tables_have_the_canonical_columns_and_types(data):
    for name in CANONICAL:
        df = data.tables[name]
        table = TABLES[name]
        assert tuple(df.columns) == table.names, name
        for column in table.columns:
            dtype = df[column.name].dtype
            if column.type == "string":
                assert dtype == "str" or dtype == object, (name, column.name, dtype)
            elif column.type == "int":
                assert dtype == np.int32, (name, column.name, dtype)
            elif column.type == "decimal":
                assert dtype == np.float64
                values = df[column.name].to_numpy()
                assert np.allclose(values, np.round(values, 2), rtol=0, atol=1e-9)
            elif column.type == "timestamp":
                assert str(dtype) == "datetime64[us, UTC]", (name, column.name, dtype)
            elif column.type == "bool":
                assert dtype == bool
            if column.required or column.is_id and column.name != "promotion_id":
                assert df[column.name].notna().all(), (name, column.name)
            if column.choices:
                assert set(df[column.name].unique()) <= set(column.choices)
        assert not df.duplicated(list(table.key)).any(), name


def test_payment_lines_are_well_formed(data):
    pay = data.tables["payments"]
    assert pay["paid_at"].is_monotonic_increasing
    assert set(pay["status"]) == set(STATUSES)
    assert set(pay["channel"]) <= set(CHANNELS) - {"other"}
    assert (pay["currency"] == "EUR").all()
    assert pay["payment_id"].str.fullmatch(r"p\d{9}").all()
    assert pay["user_id"].str.fullmatch(r"u\d{7}").all()
    # line numbers run 1..n inside each payment; one time, user, channel, status per payment
    g = pay.groupby("payment_id")
    assert (g["line_no"].max() == g.size()).all() and (g["line_no"].min() == 1).all()
    assert (g[["paid_at", "user_id", "channel", "status"]].nunique() == 1).all().all()
    assert g.size().max() <= 4
    # quantities mostly 1, sometimes 2-3; success lines carry at least a cent
    ok = pay[pay["status"] == "success"]
    assert ok["quantity"].between(1, 3).all() and (ok["quantity"] == 1).mean() > 0.85
    assert (ok["amount"] >= 0.01).all()
    # observation window
    start, end = pd.Timestamp(data.truth["observation_start"]), pd.Timestamp(data.truth["observation_end"])
    assert (pay["paid_at"] >= start).all() and (pay["paid_at"] < end).all()
    assert end - start == pd.Timedelta(days=731)  # 2024-01-01 + 24 months


def test_lines_agree_with_the_items_table(data):
    items = data.tables["items"].set_index("item_id")
    pay = data.tables["payments"]
    assert pay["item_id"].isin(items.index).all()
    assert (pay["category"].to_numpy() == items.loc[pay["item_id"], "category"].to_numpy()).all()
    assert (pay["merchant_id"].to_numpy() == items.loc[pay["item_id"], "merchant_id"].to_numpy()).all()
    # one payment, one merchant; a merchant sells in one category
    assert (pay.groupby("payment_id")["merchant_id"].nunique() == 1).all()
    assert (items.groupby("merchant_id")["category"].nunique() == 1).all()
    assert items.index.str.fullmatch(r"i\d{6}").all() and items["merchant_id"].str.fullmatch(r"m\d{5}").all()
    assert set(items["category"]) == set(CATEGORIES) and len(CATEGORIES) == 20
    assert 0.005 < 1 - items["active"].mean() < 0.08
    assert (items["price"] > 0).all()


def test_truth_is_json_and_counts_match(data):
    truth = json.loads(json.dumps(data.truth, allow_nan=False))
    assert truth["time_unit"] == "day" and truth["seed"] == 7
    assert truth["bgnbd"] == {"r": 0.9, "alpha": 40.0, "a": 0.8, "b": 12.0}
    assert set(truth["gamma_gamma"]) == {"p", "q", "v"}
    for name in CANONICAL:
        assert truth["counts"][name] == len(data.tables[name])
    assert truth["config"]["users"] == 4000 and truth["config"]["items"] == len(data.tables["items"])
    assert set(truth["promotions"]) == set(data.tables["promotions"]["promotion_id"])
    assert len(data.tables["_truth_users"]) == 4000


# ---------------------------------------------------------------- BG/NBD


def test_latent_rates_and_dropouts_follow_the_priors(data):
    tu, cfg = data.tables["_truth_users"], SynthConfig()
    n = len(tu)
    lam_sd = math.sqrt(cfg.r) / cfg.alpha
    assert abs(tu["lambda"].mean() - cfg.r / cfg.alpha) < 5 * lam_sd / math.sqrt(n)
    assert abs(tu["lambda"].var() / tu["lambda"].mean() ** 2 - 1 / cfg.r) < 0.25  # Gamma shape r
    m = cfg.a / (cfg.a + cfg.b)
    p_sd = math.sqrt(m * (1 - m) / (cfg.a + cfg.b + 1))
    assert abs(tu["p_dropout"].mean() - m) < 5 * p_sd / math.sqrt(n)


def _latents_and_repeats(d: SynthData) -> tuple[pd.DataFrame, np.ndarray]:
    """Truth of the users never assigned to a promotion (promotions add purchases only to assigned
    users; assignment is random, so these are a fair sample) and their repeat purchases in the data."""
    tu = d.tables["_truth_users"].set_index("user_id")
    tu = tu[~tu.index.isin(d.tables["assignments"]["user_id"])]
    pays = success_payments(d)
    repeats = pays.groupby("user_id").size().reindex(tu.index, fill_value=0).to_numpy() - 1
    t = days_between(pd.Series(pd.Timestamp(d.truth["observation_end"]), index=tu.index), tu["acquired_at"])
    return tu.assign(t=t), repeats


def test_repeat_purchases_match_the_bgnbd_expectation(data):
    """Given each user's lambda, p and time observed t, E[repeats] = (1 - exp(-lambda p t)) / p."""
    tu, repeats = _latents_and_repeats(data)
    lam, p, t = tu["lambda"].to_numpy(), tu["p_dropout"].to_numpy(), tu["t"].to_numpy()
    diff = repeats - (1 - np.exp(-lam * p * t)) / p
    assert abs(diff.sum()) < 4 * diff.std() * math.sqrt(len(diff))


def test_no_repeat_and_alive_probabilities_match_bgnbd(data):
    """BG/NBD: P(no repeat) = exp(-lambda t) (no dropout before a first repeat); P(alive) = exp(-lambda p t)."""
    tu, repeats = _latents_and_repeats(data)
    lam, p, t = tu["lambda"].to_numpy(), tu["p_dropout"].to_numpy(), tu["t"].to_numpy()
    for observed, prob in ((repeats == 0, np.exp(-lam * t)), (tu["alive_at_end"].to_numpy(), np.exp(-lam * p * t))):
        assert abs(observed.sum() - prob.sum()) < 4 * math.sqrt((prob * (1 - prob)).sum())


def test_birth_is_the_first_purchase_and_dropout_the_last(data):
    tu = data.tables["_truth_users"].set_index("user_id")
    users = data.tables["users"].set_index("user_id")
    pays = success_payments(data)
    first = pays.groupby("user_id")["paid_at"].min()
    assert (first.reindex(tu.index) == tu["acquired_at"]).all()
    assert (users["signup_at"] <= tu["acquired_at"]).all()
    # acquisition spread over the first 75% of the window, growing
    days = days_between(tu["acquired_at"], pd.Timestamp(data.truth["observation_start"]))
    assert days.max() < 0.75 * 731 and (days < 0.375 * 731).mean() < 0.45
    # BG/NBD: nobody drops out before a repeat purchase; the dead drop right after their last purchase
    repeats = tu["n_purchases"] - 1
    assert tu.loc[repeats == 0, "alive_at_end"].all()
    dead = tu[~tu["alive_at_end"]]
    assert 0.1 < len(dead) / len(tu) < 0.8
    natural = data.tables["payments"]
    natural = natural[(natural["status"] == "success") & natural["user_id"].isin(dead.index)]
    last = natural.groupby("user_id")["paid_at"].max()
    # a promotion may add a purchase after dropout; otherwise the last purchase is the dropout
    assert (last.reindex(dead.index) >= dead["dropout_at"]).all()
    assert (last.reindex(dead.index) == dead["dropout_at"]).mean() > 0.9


def test_same_day_repeats_are_rare(data):
    assert data.truth["realized"]["same_day_repeat_share"] < 0.06


# ---------------------------------------------------------------- Gamma-Gamma


def test_spend_follows_gamma_gamma(data):
    cfg = SynthConfig()
    tu = data.tables["_truth_users"].set_index("user_id")
    pays = success_payments(data)
    nu = tu.loc[pays["user_id"], "nu"].to_numpy()
    # z * nu ~ Gamma(p, 1) for every transaction, whatever the user
    scaled = pays["total"].to_numpy() * nu
    n = len(scaled)
    assert abs(scaled.mean() - cfg.p) < 5 * math.sqrt(cfg.p / n)
    assert abs(scaled.var() - cfg.p) < 0.1 * cfg.p
    # nu ~ Gamma(q, rate v)
    assert abs(tu["nu"].mean() - cfg.q / cfg.v) < 5 * math.sqrt(cfg.q) / cfg.v / math.sqrt(len(tu))
    # mean spend per transaction p v / (q - 1)
    expected = cfg.p * cfg.v / (cfg.q - 1)
    assert abs(pays["total"].mean() / expected - 1) < 0.08
    assert data.truth["expected"]["mean_transaction_value"] == pytest.approx(expected)


def test_failed_attempts_repeat_the_following_success(data):
    """Every failed attempt is followed 1-10 minutes later by a success of the same user with the same lines."""
    pay = data.tables["payments"]
    totals = pay.groupby("payment_id", sort=False).agg(
        user_id=("user_id", "first"), paid_at=("paid_at", "first"), status=("status", "first"),
        total=("amount", "sum"), items=("item_id", tuple),
    )
    failed = totals[totals["status"] == "failed"]
    ok = totals[totals["status"] == "success"]
    rate = len(failed) / len(ok)
    assert abs(rate - 0.02) < 4 * math.sqrt(0.02 / len(ok))
    pairs = failed.reset_index().merge(ok.reset_index(), on=["user_id", "items", "total"], suffixes=("", "_ok"))
    lag = pairs["paid_at_ok"] - pairs["paid_at"]
    pairs = pairs[(lag >= pd.Timedelta(minutes=1) - pd.Timedelta(microseconds=1)) & (lag <= pd.Timedelta(minutes=10))]
    assert set(pairs["payment_id"]) == set(failed.index)
    assert pay.loc[pay["status"] == "failed", "promotion_id"].isna().all()


def test_refunds_are_negative_later_copies_of_sold_lines(data):
    pay = data.tables["payments"]
    ref = pay[pay["status"] == "refund"]
    ok = pay[pay["status"] == "success"]
    assert len(ref) > 0
    assert (ref["amount"] < 0).all() and (ref["quantity"] < 0).all()
    assert (pay.loc[pay["status"] != "refund", "amount"] > 0).all()
    rate = len(ref) / len(ok)
    assert 0.011 < rate < 0.017  # 1.5% of lines, less those that would fall after the end
    orig = ok.assign(amount=-ok["amount"], quantity=-ok["quantity"])
    m = ref.merge(orig, on=["user_id", "item_id", "amount", "quantity", "merchant_id"], suffixes=("", "_orig"))
    m = m[(m["paid_at"] - m["paid_at_orig"]).between(pd.Timedelta(days=1), pd.Timedelta(days=30))]
    assert m.drop_duplicates(["payment_id", "line_no"]).shape[0] == len(ref)


# ---------------------------------------------------------------- users, channels, tastes


def test_opt_out_rate_and_channels(data):
    users = data.tables["users"]
    assert abs(users["marketing_opt_out"].mean() - 0.05) < 4 * math.sqrt(0.05 * 0.95 / len(users))
    assert users["user_id"].is_unique and users["user_id"].str.fullmatch(r"u\d{7}").all()
    # per-user channel habits: a user's channel mix is far more concentrated than the population's
    heads = data.tables["payments"].query("status == 'success' and line_no == 1")
    pop_hhi = (heads["channel"].value_counts(normalize=True) ** 2).sum()
    share = heads.groupby("user_id")["channel"].value_counts(normalize=True)
    active = heads.groupby("user_id").size() >= 10
    user_hhi = (share**2).groupby(level=0).sum()[active]
    assert user_hhi.mean() > pop_hhi + 0.15


def _category_hhi(d: SynthData) -> float:
    heads = d.tables["payments"].query("status == 'success' and line_no == 1")
    counts = heads.groupby(["user_id", "category"]).size()
    share = counts / counts.groupby(level=0).transform("sum")
    hhi = (share**2).groupby(level=0).sum()
    return float(hhi[counts.groupby(level=0).sum() >= 8].mean())


def test_taste_strength_concentrates_categories(data, untasted):
    assert _category_hhi(data) > _category_hhi(untasted) + 0.2
    assert data.truth["taste_strength"] == 0.8 and untasted.truth["taste_strength"] == 0.0


def _repeat_share(d: SynthData) -> tuple[float, float]:
    ok = d.tables["payments"].query("status == 'success'")
    again = ok.duplicated(["user_id", "item_id"])
    staple = ok["category"].map(STAPLE_OF).astype(bool)
    return float(again[staple].mean()), float(again[~staple].mean())


def test_staples_are_rebought_and_durables_rarely(data):
    staple, durable = _repeat_share(data)
    assert staple > 0.35 and durable < 0.1


def _hit_rates(d: SynthData) -> tuple[float, float]:
    """Hit@10 on each user's last purchase: popularity vs the user's own most bought items."""
    heads = d.tables["payments"].query("status == 'success' and line_no == 1")
    heads = heads[heads.groupby("user_id")["user_id"].transform("size") >= 3]
    test = heads.groupby("user_id").tail(1)
    train = heads.drop(test.index)
    top = set(train["item_id"].value_counts().index[:10])
    pop_hit = test["item_id"].isin(top).mean()
    counts = train.groupby(["user_id", "item_id"]).size().rename("n").reset_index()
    counts = counts.sort_values(["user_id", "n"], ascending=[True, False]).groupby("user_id").head(10)
    own = set(zip(counts["user_id"], counts["item_id"]))
    own_hit = np.mean([(u, i) in own for u, i in zip(test["user_id"], test["item_id"])])
    return float(pop_hit), float(own_hit)


def test_purchases_are_predictable_beyond_popularity_only_with_taste(data, untasted):
    pop, own = _hit_rates(data)
    assert own > 2 * pop
    pop0, own0 = _hit_rates(untasted)
    assert own0 < pop0  # nothing personal to learn


def test_popularity_is_skewed(data):
    counts = data.tables["payments"]["item_id"].value_counts()
    top = counts.iloc[: max(1, len(data.tables["items"]) // 10)].sum()
    assert top / counts.sum() > 0.25  # uniform popularity would give 0.1


# ---------------------------------------------------------------- promotions


def test_promotions_and_assignments(promo_data):
    d = promo_data
    promos = d.tables["promotions"].set_index("promotion_id")
    assign = d.tables["assignments"]
    users = d.tables["users"].set_index("user_id")
    tu = d.tables["_truth_users"].set_index("user_id")
    assert len(promos) == 3 and promos.loc["promo001", "target"] == "any"
    length = promos["ends_at"] - promos["starts_at"]
    assert length.between(pd.Timedelta(days=14), pd.Timedelta(days=28)).all()
    assert (promos["ends_at"] <= pd.Timestamp(d.truth["observation_end"])).all()
    assert (promos["cost_per_redemption"] > 0).all()
    assert set(assign["group"]) == set(GROUPS)
    for pid, rows in assign.groupby("promotion_id"):
        n_t = (rows["group"] == "treatment").sum()
        assert abs(2 * n_t - len(rows)) <= 1
        assert len(rows) == round(0.4 * 6000)
        assert (rows["assigned_at"] == promos.loc[pid, "starts_at"]).all()
        assert (tu.loc[rows["user_id"], "acquired_at"] < promos.loc[pid, "starts_at"]).all()
        assert not users.loc[rows["user_id"], "marketing_opt_out"].any()


def _conversions(d: SynthData) -> pd.DataFrame:
    """Assignments with `converted` computed from the payments (the documented definition)."""
    pays = success_payments(d).reset_index()
    pay = d.tables["payments"]
    cats = pay[pay["status"] == "success"].groupby("payment_id")["category"].agg(set)
    pays["categories"] = pays["payment_id"].map(cats)
    promos = d.tables["promotions"].set_index("promotion_id")
    out = []
    for pid, rows in d.tables["assignments"].groupby("promotion_id"):
        p = promos.loc[pid]
        w = pays[(pays["paid_at"] >= p["starts_at"]) & (pays["paid_at"] < p["ends_at"])]
        if p["target"] != "any":
            w = w[w["categories"].map(lambda c: p["target"] in c)]
        out.append(rows.assign(converted=rows["user_id"].isin(set(w["user_id"]))))
    return pd.concat(out, ignore_index=True)


def test_observed_conversion_matches_truth_and_types(promo_data):
    d = promo_data
    conv = _conversions(d)
    tu = d.tables["_truth_users"].set_index("user_id")
    for pid, rows in conv.groupby("promotion_id"):
        info = d.truth["promotions"][pid]
        treated = rows["group"] == "treatment"
        assert rows.loc[treated, "converted"].mean() == pytest.approx(info["observed_conversion_treatment"])
        assert rows.loc[~treated, "converted"].mean() == pytest.approx(info["observed_conversion_control"])
        kind = tu.loc[rows["user_id"], f"type_{pid}"].to_numpy()
        assert set(kind) <= {"persuadable", "sure_thing", "do_not_disturb", "lost_cause"}
        assert {k: int((kind == k).sum()) for k in info["type_counts"]} == info["type_counts"]
        t = treated.to_numpy()
        c = rows["converted"].to_numpy()
        # the planted response types, visible in the outcomes
        assert c[t & np.isin(kind, ["persuadable", "sure_thing"])].all()
        assert c[~t & np.isin(kind, ["sure_thing", "do_not_disturb"])].all()
        assert abs(c[t & (kind == "lost_cause")].mean() - c[~t & (kind == "lost_cause")].mean()) < 0.08
        # the experiment estimates the planted lift (difference of two proportions, 4 SE)
        se = math.sqrt(0.25 / t.sum() + 0.25 / (~t).sum())
        assert abs(info["observed_lift"] - info["true_lift"]) < 4 * se
        assert tu.loc[~tu.index.isin(rows["user_id"]), f"type_{pid}"].isna().all()


def test_promotions_lift_conversion_on_average(promo_data):
    conv = _conversions(promo_data)
    t = conv["group"] == "treatment"
    assert conv.loc[t, "converted"].mean() > conv.loc[~t, "converted"].mean() + 0.02
    heavy = [p for p in promo_data.truth["promotions"].values()
             if p["type_counts"]["persuadable"] > 2 * p["type_counts"]["do_not_disturb"]]
    assert heavy and all(p["true_lift"] > 0.02 and p["observed_lift"] > 0 for p in heavy)


def test_response_types_depend_on_observable_history(promo_data):
    """Lapsed users are more often persuadable, recent heavy buyers more often do-not-disturb."""
    d = promo_data
    pays = success_payments(d)
    promos = d.tables["promotions"].set_index("promotion_id")
    tu = d.tables["_truth_users"].set_index("user_id")
    lapsed_pers, recent_pers, lapsed_dnd, recent_dnd = [], [], [], []
    for pid, rows in d.tables["assignments"].groupby("promotion_id"):
        start = promos.loc[pid, "starts_at"]
        before = pays[pays["paid_at"] < start]
        recency = days_between(pd.Series(start, index=rows["user_id"]),
                               before.groupby("user_id")["paid_at"].max().reindex(rows["user_id"]))
        kind = tu.loc[rows["user_id"], f"type_{pid}"].to_numpy()
        lapsed = recency > 45
        lapsed_pers.append((kind[lapsed] == "persuadable").mean())
        recent_pers.append((kind[recency < 10] == "persuadable").mean())
        lapsed_dnd.append((kind[lapsed] == "do_not_disturb").mean())
        recent_dnd.append((kind[recency < 10] == "do_not_disturb").mean())
    assert np.mean(lapsed_pers) > 2 * np.mean(recent_pers)
    assert np.mean(recent_dnd) > 2 * np.mean(lapsed_dnd)


def test_redemptions_are_first_qualifying_purchases_of_treated_users(promo_data):
    d = promo_data
    pays = success_payments(d)
    promos = d.tables["promotions"].set_index("promotion_id")
    assign = d.tables["assignments"]
    pay = d.tables["payments"]
    assert pay.loc[pay["status"] != "success", "promotion_id"].isna().all()
    for pid, red in pays[pays["promotion_id"].notna()].groupby("promotion_id"):
        p = promos.loc[pid]
        treated = set(assign.query("promotion_id == @pid and group == 'treatment'")["user_id"])
        assert set(red["user_id"]) <= treated and red["user_id"].is_unique
        assert red["paid_at"].between(p["starts_at"], p["ends_at"], inclusive="left").all()
        if p["target"] != "any":
            lines = pay[pay["payment_id"].isin(red.index)]
            assert (lines.groupby("payment_id")["category"].agg(set).map(lambda c: p["target"] in c)).all()
        assert len(red) == d.truth["promotions"][pid]["redemptions"]
