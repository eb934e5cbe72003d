"""The promotions stage on a synthetic lake with planted heterogeneous effects, and bad inputs."""

from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from behavior.uplift import ClassTransformation, default_classifier, qini_coefficient
from behavior.uplift_selection import SIMPLICITY
from behavior.uplift_training import model_matrix
from pipelines.config import Config, PromotionsConfig
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import open_context, run_pipeline
from pipelines.stages import promotions as stage
from pipelines.synth_files import write_synth

VALUE, CONTACT = 20.0, 0.2


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    from behavior.store.datahome import DataHome

    root = tmp_path_factory.mktemp("promotions")
    write_synth(root / "synth", users=16000, months=18, seed=11, promo_assign_rate=0.3)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    return home, root / "synth"


SCORED: dict = {}   # what the report's run scored every customer with (`stage._scores`'s arguments)


@pytest.fixture(scope="module")
def report(lake):
    home, _ = lake
    scores = stage._scores

    def keep(*args):
        SCORED["args"] = args
        return scores(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stage, "_scores", keep)
        return run_pipeline(home, Config(), stages=["promotions"])


def test_effectiveness_covers_the_planted_lift(lake, report):
    _, synth = lake
    import json

    truth = json.loads((synth / "truth.json").read_text())["promotions"]
    eff = report["promotions"]["effectiveness"]
    assert set(eff) == set(truth)
    for pid, e in eff.items():
        assert e["status"] == "estimated", e
        lo, hi = e["conversion"]["lift_ci"]
        # the analysis of the final data finds exactly the generator's observed lift ...
        assert e["conversion"]["lift"] == pytest.approx(truth[pid]["observed_lift"], abs=1e-6)
        assert e["incremental"]["redemptions"] == truth[pid]["redemptions"]
        # ... and its interval holds the true (expected) lift of the assigned users
        assert lo <= truth[pid]["true_lift"] <= hi, (pid, e["conversion"], truth[pid]["true_lift"])
        assert e["segments"] and e["cuped"]["revenue"]["variance_reduction"] > 0


def test_uplift_chooses_per_arm_and_ranks_above_random(report):
    """Each arm reports every candidate's validation Qini with its interval; where planted
    uplift is found, the chosen candidate ranks the held-out users above random."""
    up = report["promotions"]["uplift"]
    assert set(up["arms"]) == set(up["selection"]) == set(report["promotions"]["effectiveness"])
    for pid, arm in up["arms"].items():
        sel = up["selection"][pid]
        assert [c["name"] for c in sel["candidates"]] == list(SIMPLICITY)
        assert sel["chosen"] == arm["chosen"] == up["selected"][pid] and sel["metric"] == "qini"
        assert all(c["low"] <= c["value"] <= c["high"] for c in sel["candidates"])
        assert arm["split"]["kind"] == "random"        # the synthetic assignments all happen at the start
        assert len(arm["by_decile_test"]) == 10 and arm["rows"]["test"] > 500
        curve = arm["qini_curve_test"]["chosen"]
        assert curve["share"][0] == 0 and curve["share"][-1] == 1 and curve["incremental"][0] == 0
    models = [a for a in up["arms"].values() if a["chosen"] != "random"]
    assert models and all(a["test"][a["chosen"]]["qini"] > 0 for a in models)
    assert up["qini"] > 0.02
    assert up["served"] and set(up["trained_on"]) == set(up["served"])


def test_top_30pct_captures_more_true_profit_than_random_and_likeliest_buyers(lake):
    """On held-out users, with the planted individual lift (tau) and P(convert | treated) (p1)."""
    home, synth = lake
    ctx = open_context(home, Config(), None)
    section = {"effectiveness": {}, "uplift": {}, "notes": []}
    arms = list(stage._evaluate(ctx, stage._entries(ctx.con, ctx.as_of, section), section, []))
    X = pd.concat([features for features, _ in arms], ignore_index=True)
    meta = pd.concat([m for _, m in arms], ignore_index=True)
    y, t = meta["converted"].to_numpy(int), meta["treated"].to_numpy(int)
    # a user's rows of several promotions stay on one side
    te = (pd.util.hash_pandas_object(meta["user_id"], index=False) % 5 == 0).to_numpy()
    tr = ~te
    model = ClassTransformation().fit(X[tr], y[tr], t[tr])
    redeem = default_classifier().fit(X[tr & (t == 1)], meta["redeemed"].to_numpy(int)[tr & (t == 1)])
    buyers = default_classifier().fit(X[tr], y[tr])

    truth = pq.read_table(synth / "truth_users.parquet").to_pandas().set_index("user_id")
    held = meta[te].reset_index(drop=True)
    costs = {pid: e["cost_per_redemption"] for pid, e in section["effectiveness"].items()}
    coupon = held["promotion_id"].map(costs).to_numpy(float)
    tau = np.array([truth.at[u, f"tau_{p}"] for u, p in zip(held["user_id"], held["promotion_id"])])
    p1 = np.array([truth.at[u, f"p1_{p}"] for u, p in zip(held["user_id"], held["promotion_id"])])
    true_profit = VALUE * tau - coupon * p1 - CONTACT
    expected = VALUE * model.predict(X[te]) - coupon * redeem.predict_proba(X[te])[:, 1] - CONTACT
    k = int(0.3 * len(held))

    def captured(score):
        return true_profit[np.argsort(-score, kind="stable")[:k]].sum()

    ours = captured(expected)
    random_ = 0.3 * true_profit.sum()
    likeliest = captured(buyers.predict_proba(X[te])[:, 1])
    assert ours > random_ and ours > likeliest, (ours, random_, likeliest)
    assert qini_coefficient(y[te], t[te], model.predict(X[te])) > 0.05


def test_uplift_scores_for_every_customer_and_trained_target(lake, report):
    home, _ = lake
    bundle = home.root / "artifacts" / "bundles" / report["bundle"] if "bundle" in report else None
    scores = None
    for path in (home.root / "artifacts" / "bundles").glob("*/uplift_scores.parquet"):
        scores = pq.read_table(path).to_pandas()
    assert scores is not None, bundle
    up = report["promotions"]["uplift"]
    assert set(scores["target"]) == set(up["trained_on"])
    per_target = scores.groupby("target")["user_id"].nunique()
    assert (per_target == report["stages"]["features"]["rows"]).all()
    assert scores["p_redeem"].between(0, 1).all() and scores["uplift"].between(-1, 1).all()


def _scores_target_by_target(features: pa.Table, served: dict, affinity_now: pa.Table) -> pa.Table:
    """The uplift scores as the stage computed them before its one pass over blocks of customers:
    every customer per target at once, the affinities and segments mapped by user_id, one cell
    text per row, every row of a cell or response bin predicted by itself."""
    feats = features.to_pandas()
    segments_now = stage._segments_at(feats).to_numpy()   # the segment of each row, in the rows' order
    numeric = model_matrix(feats, np.zeros(len(feats)), False)
    out = []
    for target, s in served.items():
        mine = affinity_now.filter(pc.equal(affinity_now.column("category"), target)).to_pandas()
        affinity = (np.ones(len(feats)) if target == "any"
                    else feats["user_id"].map(mine.set_index("user_id")["share"]).fillna(0.0).to_numpy(float))
        Xn = numeric.assign(target_affinity=affinity, target_is_any=float(target == "any"))[list(s.columns)]
        band = (np.full(len(feats), "any", dtype=object) if target == "any"
                else np.where(affinity <= 0, "none", np.where(affinity < 0.25, "low", "high")).astype(object))
        cells = (pd.Series(segments_now, dtype="object").fillna("no history").to_numpy().astype(str).astype(object)
                 + " | " + band).astype(object)
        m = s.model
        uplift = {"random": lambda: m.model.predict(np.zeros(len(Xn))), "cell_mean": lambda: m.model.predict(cells),
                  "response": lambda: m.bins.predict(np.digitize(m.model.predict(Xn), m.edges))}.get(
                      m.name, lambda: m.model.predict(Xn))()
        out.append(pd.DataFrame({"user_id": feats["user_id"], "target": target, "uplift": uplift,
                                 "p_redeem": m.p_redeem(Xn)}))
    return pa.Table.from_pandas(pd.concat(out, ignore_index=True), schema=stage.SCHEMA, preserve_index=False)


@pytest.mark.parametrize("rows", [1_000, stage.SCORE_ROWS])
def test_scores_in_blocks_are_the_scores_of_every_customer_at_once(report, monkeypatch, rows):
    """The one pass over blocks of customers on threads gives every customer's uplift and
    P(redeem) per target, bit for bit, as scoring each target on all customers at once."""
    features, served, affinity_now = SCORED["args"]
    assert len(served) >= 2 and len(features) > 3 * 1_000
    monkeypatch.setattr(stage, "SCORE_ROWS", rows)
    got = stage._scores(features, served, affinity_now)
    assert got.schema == stage.SCHEMA
    assert got.equals(_scores_target_by_target(features, served, affinity_now))


def _con(promotions: pd.DataFrame, assignments: pd.DataFrame):
    con = duckdb.connect()
    con.execute("SET TimeZone='UTC'")
    con.register("promotions", promotions)
    con.register("assignments", assignments)
    return con


def test_bad_assignments_give_a_reason_not_an_effect():
    t0 = pd.Timestamp("2025-03-01", tz="UTC")
    promos = pd.DataFrame({"promotion_id": ["p_nocontrol", "p_both", "p_ok", "p_running", "p_noassign"],
                           "name": "x", "starts_at": [t0] * 5,
                           "ends_at": [t0 + pd.Timedelta(days=14)] * 3 + [t0 + pd.Timedelta(days=400), t0 + pd.Timedelta(days=9)],
                           "target": "any", "cost_per_redemption": 1.0})
    users = [f"u{i}" for i in range(100)]
    rows = [("p_nocontrol", u, "treatment") for u in users]
    rows += [("p_both", u, "treatment" if i % 2 else "control") for i, u in enumerate(users)]
    rows += [("p_both", "u0", "treatment")]
    rows += [("p_ok", u, "treatment" if i % 2 else "control") for i, u in enumerate(users)]
    rows += [("p_running", u, "treatment" if i % 2 else "control") for i, u in enumerate(users)]
    rows += [("p_ghost", u, "control") for u in users[:10]]
    assignments = pd.DataFrame(rows, columns=["promotion_id", "user_id", "group"])
    section = {"effectiveness": {}}
    ok = stage._entries(_con(promos, assignments), datetime(2025, 6, 1, tzinfo=timezone.utc), section)
    eff = section["effectiveness"]
    assert [p["promotion_id"] for p in ok] == ["p_ok"]
    assert eff["p_nocontrol"]["status"] == "cannot be estimated" and "no control group" in eff["p_nocontrol"]["reason"]
    assert "1 users are assigned to both" in eff["p_both"]["reason"]
    assert eff["p_running"]["status"] == "running"
    assert "no assignments" in eff["p_noassign"]["reason"]
    assert "not in the promotions table" in eff["p_ghost"]["reason"] and eff["p_ghost"]["n_assignments"] == 10
    for e in eff.values():
        assert "conversion" not in e


def test_without_promotion_tables_the_stage_says_so(tmp_path):
    from behavior.store.datahome import DataHome

    write_synth(tmp_path / "synth", users=800, months=12, seed=2)
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "synth" / "payments.parquet"], IngestOptions())
    rep = run_pipeline(home, Config(), stages=["promotions"])
    assert rep["promotions"]["effectiveness"] == {}
    assert "no assignments and no promotions table" in rep["promotions"]["uplift"]["skipped"]


def test_affinity_of_one_category_equals_its_rows_of_the_whole_table(lake):
    """The stage fetches one category's affinities at a time (at 100M lines the whole table is
    ~35M rows): the values must be those of the published (user, category, share) table."""
    import pyarrow as pa

    from behavior.features import as_of_literal
    from behavior.promotions import category_affinity_sql

    home, _ = lake
    ctx = open_context(home, Config(), None)
    try:
        whole = ctx.engine.arrow(category_affinity_sql("payments", as_of_literal(ctx.as_of)))
        frame = whole.to_pandas()
        users = pd.Series(["nobody", *frame["user_id"].drop_duplicates().head(500)])
        for category in frame["category"].value_counts().index[:3]:
            want = users.map(frame[frame["category"] == category].set_index("user_id")["share"]).fillna(0.0)
            got_at = stage._affinity_at(ctx.engine, ctx.as_of, category, users)
            got_now = stage._affinity_now(whole, category, users)
            np.testing.assert_array_equal(got_at, want.to_numpy())
            np.testing.assert_array_equal(got_now, want.to_numpy())
            assert got_at[0] == 0 and 0 < (got_at > 0).sum() < len(users)
        assert (stage._affinity_now(whole, "any", users) == 1).all()
        assert isinstance(whole, pa.Table)
    finally:
        ctx.con.close()


# the published affinity as one query over every line (a window over the counts), the reference
WINDOW_AFFINITY = """
    SELECT user_id, category, share FROM (
        SELECT user_id, category, count(*)::DOUBLE / sum(count(*)) OVER (PARTITION BY user_id) AS share
        FROM payments WHERE status = 'success' AND paid_at < {as_of}
        GROUP BY user_id, category)
    WHERE category IS NOT NULL ORDER BY user_id, category"""


@pytest.mark.parametrize("part_lines", [None, 40_000])
def test_the_published_affinity_is_the_whole_logs_read_part_after_part(lake, monkeypatch, part_lines):
    """`category_affinity.parquet` is read from the run's user parts, one query per part: the
    same table, bit for bit and in the same order, as one query over every line."""
    from behavior import features as F
    from behavior.features import UserParts, as_of_literal
    from tests.recording_engine import RecordingEngine

    if part_lines:
        monkeypatch.setattr(F, "PART_LINES", part_lines)
    home, _ = lake
    ctx = open_context(home, Config(), None)
    ctx.engine = RecordingEngine(ctx.con)
    ctx.user_parts = UserParts(ctx.engine, "payments", ctx.as_of)
    try:
        want = ctx.con.sql(WINDOW_AFFINITY.format(as_of=as_of_literal(ctx.as_of))).to_arrow_table()
        got = stage._category_affinity(ctx)
        assert got.equals(want) and got.num_rows > 10_000
        relations = [r for _, r in ctx.user_parts.relations()]
        reads = [s for s in ctx.engine.sql if "share" in s]
        assert len(reads) == len(relations) == (1 if part_lines is None else len(relations)) > 0
        assert part_lines is None or (len(relations) > 1 and all(r in s for r, s in zip(relations, reads)))
    finally:
        ctx.user_parts.close()
        ctx.con.close()


def test_segments_at_a_start_are_looked_up_by_position(lake):
    """Each assigned user's segment at a start, found by the user's row of the R, F and M table,
    is the population's segment of that user (null for a user without a payment before it)."""
    home, _ = lake
    ctx = open_context(home, Config(), None)
    try:
        starts = [row[0] for row in ctx.con.execute("SELECT starts_at FROM promotions ORDER BY starts_at").fetchall()]
        users = ctx.con.execute("SELECT DISTINCT user_id FROM assignments ORDER BY user_id").df()["user_id"]
        users = pd.concat([pd.Series(["nobody"]), users], ignore_index=True)
        rfm = stage._rfm_at(ctx, starts)
        at = stage._positions(users, rfm.column("user_id"))
        assert at[0] == -1 and (at[1:] >= 0).mean() > 0.9
        missing = 0
        for k in range(len(starts)):
            population = stage._rfm_of(rfm, k)
            want = users.map(pd.Series(stage._segments_at(population).to_numpy(), index=population["user_id"]))
            got = stage._segments_of(rfm, k, at)
            pd.testing.assert_series_equal(got, want, check_names=False)
            missing += int(want.isna().sum()) - 1
        assert missing > 0   # some assigned users had no payment yet before an early start
    finally:
        ctx.user_parts.close()
        ctx.con.close()


def test_an_item_target_is_described_by_its_category(lake):
    """An `item:<id>` promotion target is scored by the item's most frequent category (a query
    with a bound parameter: it failed on DuckDB 2, which has no fetch_arrow_table)."""
    from behavior.promotions import item_categories_sql

    home, _ = lake
    ctx = open_context(home, Config(), None)
    try:
        items = ctx.engine.frame(item_categories_sql("payments")).dropna()
        item, category = items.iloc[len(items) // 2][["item_id", "category"]]
        assert stage._target_category(ctx.engine, f"item:{item}") == category
        assert stage._target_category(ctx.engine, "item:no-such-item") == "any"
        assert stage._target_category(ctx.engine, "groceries") == "groceries"
    finally:
        ctx.con.close()


@pytest.mark.slow
def test_the_stage_reads_its_parameters_from_the_promotions_section(lake):
    home, _ = lake
    cfg = Config(promotions=PromotionsConfig(pre_days=30, min_train_per_group=10**9))
    section = run_pipeline(home, cfg, stages=["promotions"])["promotions"]
    assert "could train an uplift model" in section["uplift"]["skipped"]
    assert any("at least 1000000000 needed" in n for n in section["notes"])
    estimated = [e for e in section["effectiveness"].values() if e["status"] == "estimated"]
    assert estimated and all(e["cuped"]["covariates"]["conversion"] == "converted in the 30 days before the start"
                             for e in estimated)


@pytest.mark.parametrize("part_lines", [None, 40_000])
def test_features_at_a_start_are_the_population_rows_of_the_assigned_users(lake, monkeypatch, part_lines):
    """The stage computes the full features and the target affinity at a promotion start for
    the assigned users its arm's choice reads only, and the R, F and M columns (the segments
    rank the whole population) for everyone at every start in one pass: both must be the rows
    and columns of the population's feature table at that start (and `rfm_sql`'s at each
    start), in one part of the log or in several."""
    from behavior import features as F

    if part_lines:
        monkeypatch.setattr(F, "PART_LINES", part_lines)
    home, _ = lake
    ctx = open_context(home, Config(), None)
    try:
        pid, start = ctx.con.execute("SELECT promotion_id, starts_at FROM promotions ORDER BY starts_at DESC "
                                     "LIMIT 1").fetchone()
        users = ctx.con.execute("SELECT DISTINCT user_id FROM assignments WHERE promotion_id = ? ORDER BY user_id",
                                [pid]).df()["user_id"]
        used = np.arange(len(users)) % 3 != 0
        population = F.user_features(ctx.engine, "payments", start, ctx.user_parts).to_pandas().set_index("user_id")
        assert len(ctx.user_parts.relations()) == 1 if part_lines is None else len(ctx.user_parts.relations()) > 1
        category = population["top_category"].value_counts().index[0]
        # the lines of more users than one arm reads, up to a later time than its start (as the stage's)
        with stage._lines_of(ctx, users.to_numpy(), ctx.as_of):
            mine, affinity = stage._arm_inputs(ctx, start, category, users, used)
            assert (stage._arm_inputs(ctx, start, "any", users, used)[1] == 1).all()
        mine = mine.set_index("user_id")
        assert set(mine.index) == set(users[used]) & set(population.index) and len(mine) > 1000
        pd.testing.assert_frame_equal(mine, population.loc[mine.index])
        np.testing.assert_array_equal(affinity[used], stage._affinity_at(ctx.engine, start, category, users[used]))
        assert (affinity[~used] == 0).all() and (affinity[used] > 0).any()
        starts = [row[0] for row in ctx.con.execute("SELECT starts_at FROM promotions ORDER BY starts_at").fetchall()]
        assert len(starts) >= 3 and starts[-1] == start
        every = stage._rfm_at(ctx, starts)
        rfm = stage._rfm_of(every, len(starts) - 1).set_index("user_id").sort_index()
        pd.testing.assert_frame_equal(rfm, population[["recency_days", "n_payments", "net_spend"]].sort_index(),
                                      check_dtype=False)
        for k, at in enumerate(starts):   # each start's columns are rfm_sql's table at it, row for row
            alone = stage._per_user_at(ctx, at, F.rfm_sql).to_pandas()
            pd.testing.assert_frame_equal(stage._rfm_of(every, k), alone, check_dtype=False)
    finally:
        ctx.user_parts.close()
        ctx.con.close()


def test_a_small_arm_is_not_sampled(report):
    """At the default Qini half-width the lake's arms (about 4,800 users) need more validation
    users than they have: every assigned user is split and used."""
    up, eff = report["promotions"]["uplift"], report["promotions"]["effectiveness"]
    for pid, arm in up["arms"].items():
        assert arm["split"]["sample"]["sampled"] is False
        assert arm["split"]["sample"]["validation_users_needed"] > arm["rows"]["valid"]
        assert sum(arm["rows"].values()) == eff[pid]["n_treatment"] + eff[pid]["n_control"]


@pytest.mark.slow
def test_a_big_arm_is_sampled_and_every_customer_still_scored(lake, report):
    """With a half-width that these arms more than cover, each arm is trained and chosen on a
    sample (its test users kept whole), and the served models still score every customer
    (the eligible ones among them: targeting drops the opted-out at serving)."""
    home, _ = lake
    cfg = Config(promotions=PromotionsConfig(qini_half_width=0.15))
    run = run_pipeline(home, cfg, stages=["promotions"])
    up, before = run["promotions"]["uplift"], report["promotions"]["uplift"]
    assert set(up["arms"]) == set(before["arms"])
    for pid, arm in up["arms"].items():
        sample, rows = arm["split"]["sample"], arm["rows"]
        assert sample["sampled"] and rows["valid"] == sample["validation_users_needed"] == sample["valid"]
        assert rows["valid"] < before["arms"][pid]["rows"]["valid"] and rows["train"] < before["arms"][pid]["rows"]["train"]
        assert rows["test"] == before["arms"][pid]["rows"]["test"]
        assert up["selection"][pid]["chosen"] == arm["chosen"]
    bundle = home.root / "artifacts" / "bundles" / run["bundle_version"] / "uplift_scores.parquet"
    scores = pq.read_table(bundle).to_pandas()
    customers = set(scores["user_id"])
    assert len(customers) == run["stages"]["features"]["rows"] and set(scores["target"]) == set(up["trained_on"])
    for _, per in scores.groupby("target"):
        assert len(per) == len(customers) and set(per["user_id"]) == customers
        assert per["uplift"].notna().all() and per["p_redeem"].between(0, 1).all()
