"""The recommender trained by Spark MLlib ALS (`[recommend] trainer = "spark_als"`), local[2].

Known answers: Spark's ratings are the driver's confidence weights (log, recency, bm25); MLlib's
user factors are the solutions of the equations `SparkALS` folds in with (so a new user is
folded in as MLlib would have trained them); on the synthetic lake with planted tastes the
Spark-trained ALS beats popularity on validation, and its bundle serves known and unseen users.
One local[2] session for the whole test run (tests/pipelines/conftest.py). Skipped only where
no Java runtime is found.
"""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest

from behavior.recommend.factors import ALS, SparkALS
from behavior.recommend.serving import ServingModel
from behavior.store.bundle import RECOMMENDER
from pipelines.config import Config, RecommendConfig
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import open_context
from pipelines.stages import recommend as stage
from pipelines.stages import recommend_run
from pipelines.synth_files import write_synth


@pytest.fixture(scope="module")
def ctx(spark, tmp_path_factory):
    """A Spark stage context over a synthetic lake (400 users, 10 months, planted tastes)."""
    root = tmp_path_factory.mktemp("spark-als-home")
    write_synth(root / "synth", users=400, months=10, seed=7)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    ctx = open_context(home, Config(recommend=RecommendConfig(trainer="spark_als")), None, "spark")
    yield ctx
    ctx.engine.close()
    ctx.con.close()


@pytest.fixture(scope="module")
def maps(ctx):
    users, items = stage._id_maps(ctx, ctx.as_of)
    return users, items


def test_spark_ratings_are_the_drivers_confidence_weights(ctx, maps):
    from pipelines.engines.spark_als import SparkALSTrainer

    users, items = maps
    end = ctx.as_of - timedelta(days=30)
    net, days = stage._interactions(ctx, users, items, None, end).matrices()
    trainer = SparkALSTrainer(ctx.engine, users, items)
    try:
        for scheme in ("log", "recency", "bm25"):   # count is log's net; these three have the arithmetic
            weighting = trainer.weighting(scheme, None, end)
            t = ctx.engine.arrow(trainer.ratings_sql(weighting, end)).to_pandas().sort_values(["user_idx", "item_idx"])
            local = weighting.transform(net, days).tocoo()
            order = np.lexsort((local.col, local.row))
            assert np.array_equal(t["user_idx"], local.row[order]) and np.array_equal(t["item_idx"], local.col[order])
            np.testing.assert_allclose(t["rating"], local.data[order], rtol=2e-6, err_msg=scheme)
    finally:
        trainer.close()


def test_mllib_factors_solve_the_equations_the_fold_in_uses(ctx, maps):
    from pipelines.engines.spark_als import SparkALSTrainer

    users, items = maps
    trainer = SparkALSTrainer(ctx.engine, users, items)
    try:
        model = trainer.fit(SparkALS(factors=8, regularization=0.05, alpha=4.0, iterations=6, weighting="bm25"),
                            ctx.as_of)
    finally:
        trainer.close()
    net, days = stage._interactions(ctx, users, items, None, ctx.as_of).matrices()
    trained = np.flatnonzero(np.diff(net.indptr) > 0)[:100]
    assert model.user_factors_.shape == (len(users), 8) and np.abs(model.user_factors_[trained]).sum() > 0
    folded = model.fold_in(net[trained], days[trained])
    scale = np.linalg.norm(model.user_factors_[trained], axis=1).mean()
    assert np.abs(folded - model.user_factors_[trained]).max() < 1e-3 * scale
    # implicit's equations (c = alpha * w, constant regularization) give other vectors, 20 times
    # further than the tolerance above: the check has teeth (how much further depends on the data)
    as_implicit = ALS(factors=8, regularization=0.05, alpha=4.0)
    as_implicit.item_factors_, as_implicit._yty = model.item_factors_, model._yty
    other = as_implicit._fold_in(model.weighting_.transform(net[trained], days[trained]))
    assert np.abs(other - model.user_factors_[trained]).max() > 20 * 1e-3 * scale


@pytest.mark.slow
def test_the_stage_trains_on_spark_and_publishes_a_bundle_that_serves(ctx, maps):
    made = recommend_run.run(ctx)
    rep = made.report
    assert rep["trainer"] == "spark_als" and {"spark_als", "popularity", "buy_again"} <= set(rep["models"])
    models, key = rep["models"], "ndcg@10"
    # planted tastes: the factors learned on Spark beat popularity on the validation users
    assert models["spark_als"][key] > 1.5 * models["popularity"][key], models
    assert models["spark_als"]["params"]["kind"] == "spark_als" and rep["test"]["users_sampled"]
    test = rep["test"]
    assert test[rep["selected"]][key] >= 0 and (rep["selected"] == "popularity" or test["popularity"][key] >= 0)

    buf = io.BytesIO()
    np.savez(buf, **made.artifacts[RECOMMENDER])
    buf.seek(0)
    serving = ServingModel.from_arrays(dict(np.load(buf, allow_pickle=False)))
    users, items = maps
    purchased = np.diff(serving._indptr)
    uidx = int(np.argmax(purchased))   # the user with the most items
    user = str(users.ids[uidx])
    known = serving.recommend(user, n=5, exclude_purchased=False)
    assert known.source == "model" and len(known.items) == 5
    if rep["selected"] == "spark_als":
        assert type(serving.model) is SparkALS
        # someone unseen who bought exactly this user's items is folded in to the same vector
        bought = items.ids_of(serving._indices[serving._indptr[uidx]:serving._indptr[uidx + 1]])
        counts = serving._data[serving._indptr[uidx]:serving._indptr[uidx + 1]]
        bought = np.repeat(bought, counts.astype(int))
        vector = serving.fold_in(list(bought))
        expected = serving.model.user_factors_[uidx]
        if serving.model.weighting != "recency":   # recency would need the purchase dates too
            assert np.abs(vector - expected).max() < 1e-3 * np.linalg.norm(expected)
            unseen = serving.recommend_for_items(list(bought), n=5, exclude_purchased=False)
            assert [i for i, _ in unseen.items] == [i for i, _ in known.items]
