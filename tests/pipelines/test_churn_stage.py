"""The churn stage through the runner, on a small synthetic lake."""

from datetime import datetime, timedelta, timezone

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines import stages
from pipelines.config import ChurnConfig, Config
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import Stage, run_pipeline
from pipelines.stages import churn
from pipelines.synth_files import write_synth


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from behavior.store.datahome import DataHome

    root = tmp_path_factory.mktemp("churn")
    write_synth(root / "synth", users=2500, months=18, seed=5)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    return home


@pytest.fixture()
def registered(monkeypatch):
    table = dict(stages.STAGES)
    table["churn"] = Stage("churn", ("features", "loyalty", "segments"), churn.run)
    monkeypatch.setattr(stages, "STAGES", table)   # restored after the test


def test_report_and_output_through_the_runner(lake, registered):
    captured = {}
    real = churn.run

    def spy(ctx):
        out = real(ctx)
        captured["out"], captured["bundle"] = out.output, {a.file: t for a, t in out.artifacts.items()}
        return out

    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"), spy)
    rep = run_pipeline(lake, Config(), stages=["churn"])
    ch = rep["churn"]
    assert ch["horizon_days"] == 90 and "skipped" not in ch, ch.get("notes")
    assert set(ch["test"]) >= {"roc_auc", "pr_auc", "brier", "lift_at_10pct"}
    assert set(ch["baselines"]) == {"recency", "frequency", "bgnbd_expected_purchases", "bgnbd_p_alive",
                                    "bgnbd_p_no_purchase"}
    assert all("roc_auc" in b and "brier" in b for b in ch["baselines"].values())
    assert set(ch["beats_baselines"]) == {"roc_auc", "brier"} and ch["train_rows"] > 0
    sel = ch["selection"]
    assert sel["chosen"] == ch["served"] and {c["name"] for c in sel["candidates"]} == {*ch["baselines"], *ch["models"]}
    assert ch["test"]["roc_auc"] == pytest.approx(next(c["value"] for c in sel["candidates"] if c["chosen"]), abs=1e-4)
    assert all(g["roc_auc_gain"] > 0 and g["interval"][0] <= g["interval"][1] for g in ch["beat"].values())
    assert ch["calibrator"]["chosen"] in ("isotonic", "platt", "beta") and ch["distinct_scores"] > 100
    assert ch["cutoffs"]["train"] and ch["cutoffs"]["test"] > max(ch["cutoffs"]["train"])
    assert sum(r["count"] for r in ch["calibration"]) == ch["test"]["n"]
    gain = ch["gain_curve"]
    assert set(gain) == {"share", "model", *ch["baselines"]} and len(gain["share"]) == 21
    for name in ("model", *ch["baselines"]):
        curve = gain[name]
        assert curve[0] == 0 and curve[-1] == 1 and all(a <= b for a, b in zip(curve, curve[1:]))
    assert gain["model"][2] > gain["share"][2]    # the top 10% hold more than 10% of the churners
    assert rep["stages"]["churn"]["rows"] > 0
    out = captured["out"].to_pandas()
    assert list(out.columns) == ["user_id", "churn_probability", "churn_reasons"]
    assert out["churn_probability"].between(0, 1).all() and out["user_id"].is_unique
    assert out["churn_reasons"].str.len().gt(0).any()
    cohort = captured["bundle"]["cohort_retention.parquet"].to_pandas()
    assert (cohort.loc[cohort["months_since"] == 0, "retention"] == 1).all()
    curves = captured["bundle"]["retention_curves.parquet"].to_pandas()
    assert curves["segment"].nunique() > 1 and curves["retention"].between(0, 1).all()
    bundle = lake.bundles / rep["bundle_version"]
    if (bundle / "cohort_retention.parquet").exists():   # once publish writes every bundle entry
        assert pq.read_table(bundle / "cohort_retention.parquet").num_rows == len(cohort)


def test_as_of_too_early_gives_a_note_not_a_crash(lake, registered):
    first = duckdb.sql(f"SELECT min(paid_at) FROM read_parquet('{lake.lake}/payments/**/*.parquet')").fetchall()[0][0]
    rep = run_pipeline(lake, Config(), as_of=first + timedelta(days=80), stages=["churn"])
    ch = rep["churn"]
    assert "too little history" in ch["skipped"] and ch["notes"]
    assert "test" not in ch


def test_a_class_without_examples_is_a_note_not_a_crash(tmp_path):
    """Every customer buys every week for a year and a half: nobody churns, so there is no
    churned example to learn from; the run completes and says so."""
    import numpy as np
    import pandas as pd

    from behavior.store.datahome import DataHome

    weeks = pd.date_range("2024-01-01", "2025-06-30", freq="7D", tz="UTC")
    users = [f"u{i:03d}" for i in range(300)]
    rng = np.random.default_rng(0)
    rows = pd.DataFrame([(u, f"i{rng.integers(0, 30)}", t + pd.Timedelta(hours=int(rng.integers(0, 24))), 10.0)
                         for u in users for t in weeks], columns=["user_id", "item_id", "paid_at", "amount"])
    rows.to_parquet(tmp_path / "weekly.parquet")
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "weekly.parquet"], IngestOptions(defaults={"currency": "EUR"}))
    rep = run_pipeline(home, Config(), stages=["churn"])
    section = rep["churn"]
    assert "fewer than" in section["skipped"] and "churned" in section["skipped"]
    assert any("skipped" in n for n in section["notes"])


def test_above_the_cap_the_cutoff_datasets_are_a_sample_of_customers(lake, registered, monkeypatch):
    """With more customers than `[churn] max_model_users`, each cutoff dataset holds only sampled customers,
    and their features are exactly those computed over the whole log; every customer is scored."""
    from behavior.features import FEATURE_COLUMNS, user_features

    seen = []
    real = churn.planned_datasets

    def spy(engine, payments, users, plan, *args, **kwargs):
        for rows, (frame, capped) in zip(plan, real(engine, payments, users, plan, *args, **kwargs)):
            whole = user_features(engine, "payments", rows.cutoff).to_pandas()
            seen.append((payments, rows.cutoff, frame, whole, capped))
            yield frame, capped

    monkeypatch.setattr(churn, "planned_datasets", spy)
    out = {}
    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"),
                                   lambda ctx: out.setdefault("t", churn.run(ctx)))
    rep = run_pipeline(lake, Config(churn=ChurnConfig(max_model_users=800)), stages=["churn"])
    ch = rep["churn"]
    customers = rep["stages"]["features"]["rows"]
    assert customers > 1600 and ch["model_users"]["sampled"] == 800
    assert ch["model_users"]["customers"] == customers and ch["model_users"]["needed"] == customers
    assert "skipped" not in ch and seen and all(p == "_churn_payments" for p, *_ in seen)
    sample = set()
    for _, cutoff, frame, whole, _ in seen:
        sample |= set(frame["user_id"])
        assert 0 < len(frame) < len(whole) and (frame["cutoff"] == cutoff).all()
        mine = whole[whole["user_id"].isin(frame["user_id"])].reset_index(drop=True)
        got = frame.sort_values("user_id").reset_index(drop=True)
        pd.testing.assert_frame_equal(got[list(FEATURE_COLUMNS)], mine[list(FEATURE_COLUMNS)])
    assert len(sample) <= 800 and ch["test_rows"] == len(seen[-1][4])
    scored = out["t"].output.to_pandas()
    assert len(scored) == customers and scored["churn_probability"].notna().all()


def test_customers_needed_make_the_earliest_cutoff_hold_the_rows_the_fit_uses():
    day = [datetime(2025, m, 1, tzinfo=timezone.utc) for m in (1, 2, 3, 4, 5, 6, 7, 8)]
    first = pa.array(day, pa.timestamp("us", tz="UTC"))
    # 2 of 8 customers at as_of had bought before March: 8 / 2 customers per row wanted
    assert churn.customers_needed(first, datetime(2025, 3, 1, tzinfo=timezone.utc), 1) == 4
    assert churn.customers_needed(first, datetime(2025, 3, 1, tzinfo=timezone.utc), 3) == 8   # never more than all
    assert churn.customers_needed(first, datetime(2025, 9, 1, tzinfo=timezone.utc), 5) == 5


def test_the_cutoff_datasets_are_built_for_the_customers_the_fit_and_the_choice_need(lake, registered, monkeypatch):
    """A fit of 300 rows and a choice on 200 customers need a sample of ceil(300 x customers /
    customers at the earliest training cutoff), not every customer: the cutoffs read that
    sample's lines and the datasets hold no one else."""
    from behavior import churn_choice as CC

    monkeypatch.setattr(CC, "MAX_UNITS", 200)
    out = {}
    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"),
                                   lambda ctx: out.setdefault("t", churn.run(ctx)))
    rep = run_pipeline(lake, Config(churn=ChurnConfig(max_train_rows=300)), stages=["churn"])
    ch = rep["churn"]
    assert "skipped" not in ch, ch.get("notes")
    customers = rep["stages"]["features"]["rows"]
    firsts = duckdb.sql(f"SELECT user_id, min(paid_at) AS f FROM read_parquet('{lake.lake}/payments/**/*.parquet') "
                        f"WHERE status = 'success' AND paid_at < TIMESTAMPTZ '{rep['as_of']}' GROUP BY user_id").df()
    earliest = pd.Timestamp(min(ch["cutoffs"]["train"]))
    at_earliest = int((firsts["f"] < earliest).sum())
    assert len(firsts) == customers and 0 < at_earliest < customers
    need = -(-300 * customers // at_earliest)
    assert ch["model_users"] == {"customers": customers, "needed": need, "sampled": need, "seed": 0}
    assert ch["test_rows"] <= need and ch["train_rows"] <= 300 * len(ch["cutoffs"]["train"])
    assert out["t"].output.num_rows == customers


def test_reasons_quote_the_loyalty_stages_expected_purchases_by_user_when_the_horizons_differ(lake, registered):
    """With 60-day churn labels and loyalty's 90-day horizon, the reasons quote the profile's
    expected purchases: the loyalty stage's column, found by user_id (here in an order of the
    customers unlike the loyalty table's), which is the loyalty model's figure over 90 days at as_of."""
    import numpy as np

    from behavior.btyd_select import transaction_model

    seen = {}

    def spy(ctx):
        seen["ctx"] = ctx
        return churn.run(ctx)

    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"), spy)
    rep = run_pipeline(lake, Config(churn=ChurnConfig(horizon_days=60)), stages=["churn"])
    assert rep["churn"]["label_days"] == 60 and "expected purchases are quoted over 90 days" in rep["churn"]["reasons_method"]
    ctx = seen["ctx"]
    loyalty, btyd = ctx.outputs["loyalty"], transaction_model(ctx.outputs["loyalty"])
    ids, now = churn._scoring_frame(ctx.outputs["features"], {"frequency", "recency", "T"}, 60, 0.0, btyd)
    back = np.arange(len(now))[::-1].copy()
    ids, now = ids.take(back), now.take(back).reset_index(drop=True)
    words, days = churn._profile_words(ctx, now, ids, btyd, 60)
    assert days == 90
    x, tx, T = (now[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    assert np.array_equal(words["expected_purchases"].to_numpy(),
                          btyd.conditional_expected_number_of_purchases_up_to_time(90, x, tx, T))
    assert not np.array_equal(words["expected_purchases"].to_numpy(), now["expected_purchases"].to_numpy())
    by_user = dict(zip(loyalty.column("user_id").to_pylist(), loyalty.column("expected_purchases").to_pylist()))
    assert words["expected_purchases"].tolist() == [by_user[u] for u in ids.to_pylist()]


def test_at_as_of_churn_takes_loyaltys_bgnbd_figures_which_are_the_models_bit_for_bit(lake, registered, monkeypatch):
    """Churn does not evaluate the BG/NBD model again at as_of: it takes P(alive) and (loyalty's
    horizon being the label window) the expected purchases from the loyalty stage's output.
    They must be what the model churn scores with (loyalty's fit, read back from its table)
    gives on the feature table's frequency, recency and T, bit for bit: this fails as soon as
    loyalty computes them any other way (other inputs, rounding, another horizon, a refit)."""
    import numpy as np

    from behavior import churn as C
    from behavior.btyd_select import transaction_model

    seen, calls = {}, []
    real_add = C.add_bgnbd

    def spy_add(frame, *args, **kwargs):
        calls.append(kwargs.get("known"))
        return real_add(frame, *args, **kwargs)

    def spy(ctx):
        seen["ctx"] = ctx
        out = churn.run(ctx)
        seen["out"] = out.output
        return out

    monkeypatch.setattr(C, "add_bgnbd", spy_add)
    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"), spy)
    rep = run_pipeline(lake, Config(), stages=["churn"])
    assert rep["churn"]["label_days"] == 90 == Config().loyalty.horizon_days and "skipped" not in rep["churn"]
    assert set(calls[-1]) == {"p_alive", "expected_purchases"}   # the scoring at as_of took them
    ctx = seen["ctx"]
    features, loyalty = ctx.outputs["features"], ctx.outputs["loyalty"]
    btyd = transaction_model(loyalty)
    known = churn.loyalty_figures(features, loyalty, 90, 90)
    x, tx, T = (features.column(c).to_numpy(zero_copy_only=False).astype(float) for c in ("frequency", "recency", "T"))
    assert np.isfinite(known["p_alive"]).all()
    assert np.array_equal(known["p_alive"], btyd.conditional_probability_alive(x, tx, T))
    assert np.array_equal(known["expected_purchases"],
                          btyd.conditional_expected_number_of_purchases_up_to_time(90, x, tx, T))
    # the scoring frame, and so the served scores and reasons, are those of the figures computed again
    columns = set(features.column_names)
    ids, taken = churn._scoring_frame(features, columns, 90, 0.0, btyd, known)
    _, computed = churn._scoring_frame(features, columns, 90, 0.0, btyd)
    pd.testing.assert_frame_equal(taken, computed, check_exact=True)
    assert seen["out"].column("user_id").equals(ids.cast(pa.string()))


def test_loyaltys_figures_are_found_by_user_and_only_those_of_the_label_window(lake, registered):
    """In another order of the customers than the feature table's, loyalty's figures are found by
    user_id; over another horizon than the label window its expected purchases are not taken;
    without a fitted loyalty model there is nothing to take."""
    seen = {}
    stages.STAGES["churn"] = Stage("churn", ("features", "loyalty", "segments"),
                                   lambda ctx: seen.setdefault("ctx", ctx) and churn.run(ctx))
    run_pipeline(lake, Config(), stages=["churn"])
    features, loyalty = seen["ctx"].outputs["features"], seen["ctx"].outputs["loyalty"]
    back = pa.array(range(loyalty.num_rows - 1, -1, -1))
    reversed_loyalty = loyalty.take(back).replace_schema_metadata(loyalty.schema.metadata)
    same = churn.loyalty_figures(features, loyalty, 90, 90)
    found = churn.loyalty_figures(features, reversed_loyalty, 90, 90)
    assert all(same[k].tolist() == found[k].tolist() for k in ("p_alive", "expected_purchases"))
    assert set(churn.loyalty_figures(features, loyalty, 90, 60)) == {"p_alive"}
    assert churn.loyalty_figures(features, loyalty.replace_schema_metadata({}), 90, 90) == {}
    assert churn.loyalty_figures(features, None, 90, 90) == {}
    assert churn.loyalty_figures(features, loyalty.slice(1), 90, 90) == {}   # a customer missing
