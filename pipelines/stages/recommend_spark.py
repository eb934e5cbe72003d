"""The recommend stage with `[recommend] trainer = "spark_als"` (or BEHAVIOR_RECOMMEND_TRAINER):
the recommender is trained by Spark MLlib's ALS (implicit preferences) on the interactions as
Spark aggregates them (`pipelines.engines.spark_als`), for interaction matrices larger than one
machine. The time line, the report and the bundle are those of `pipelines.stages.recommend`;
what differs:

- Candidates: popularity and buy-again (from the items' buyer counts, aggregated on Spark) and
  the MLlib ALS configurations of `SPARK_ALS_CANDIDATES`, each trained on Spark on everything
  before the validation period. No blend (it would need a second model refitted on the
  driver). The choice is `behavior.recommend.select.choose`: a learned model replaces the
  better baseline only if it beats it beyond the noise (`behavior.model_choice`).
- Scoring (validation and test) runs on the driver over a sample of at most
  `max_eval_users` users who bought in the period and before it (the same sample the local
  search would draw); only their rows are brought to the driver.
- The chosen configuration is refitted on Spark before the test period (scored against
  popularity: `recommend.test`) and before as_of (the bundle).
- The bundle is the same `recommender.npz`: a `spark_als` model (factors, id maps, the
  fitted weighting) whose fold-in solves MLlib's equations. Its purchased-items matrix (what
  serving excludes and folds in) is gathered on the driver, as the API holds it in memory.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from behavior.errors import InputError
from behavior.recommend.baselines import BuyAgain, Popularity, from_item_buyers
from behavior.recommend.factors import SparkALS
from behavior.recommend.interactions import IdMap
from behavior.recommend.select import Bench, Selection, choose
from pipelines.stage import StageSkipped
from behavior.recommend.test_period import score_users, test_report, users_to_score
from pipelines.stages.recommend import _interactions, _purchased, interactions_sql

# MLlib's regularization is per rating of the row (ALS-WR) and its confidence 1 + alpha * w:
# these values are not those of the local ALS search (behavior.recommend.select)
SPARK_ALS_CANDIDATES = (
    {"factors": 64, "regularization": 0.01, "alpha": 3.0, "iterations": 8, "weighting": "bm25"},
    {"factors": 64, "regularization": 0.01, "alpha": 8.0, "iterations": 8, "weighting": "log"},
)
SAMPLE_VIEW = "_recommend_sample"
BASELINES = {"popularity": Popularity, "buy_again": BuyAgain}


def require_spark(trainer: str, engine: str) -> None:
    """The spark_als trainer runs only with the Spark engine: a clear error otherwise."""
    if trainer == "spark_als" and engine != "spark":
        raise InputError(f'[recommend] trainer = "spark_als" trains on Spark but the engine is {engine!r}: run '
                         'with --engine spark (or [engine] name = "spark"), or use trainer = "local"')


def _sample(ctx, users: IdMap, items: IdMap, start, stop):
    """(interactions before `start`, purchases in [start, stop)) of the sampled users: those who
    bought in both (at most max_eval_users of them, drawn as `behavior.recommend.select.Bench`)."""
    cfg, d = ctx.config.recommend, ctx.engine.dialect
    sql = (f"SELECT DISTINCT t.user_id FROM ({interactions_sql(start, stop, d)}) v "
           f"JOIN ({interactions_sql(None, start, d)}) t ON t.user_id = v.user_id "
           "WHERE v.purchases > 0 AND t.purchases > t.refunds")
    idx = np.unique(users.index(ctx.engine.frame(sql)["user_id"]))
    idx = idx[idx >= 0]
    if idx.size == 0:
        raise StageSkipped(f"no user bought both before {start.date()} and in the {(stop - start).days} days after it: "
                         "nothing to evaluate the recommender on; choose a later --as-of or longer [recommend] periods")
    if idx.size > cfg.max_eval_users:
        idx = np.sort(np.random.default_rng(cfg.seed).choice(idx, size=cfg.max_eval_users, replace=False))
    ctx.engine.register(SAMPLE_VIEW, pa.table({"user_id": users.ids_of(idx)}))
    try:
        return (_interactions(ctx, users, items, None, start, only=SAMPLE_VIEW),
                _purchased(ctx, users, items, start, stop, only=SAMPLE_VIEW))
    finally:
        ctx.engine.unregister(SAMPLE_VIEW)


def _fit(trainer, params: dict, end):
    """The configuration `params` fitted on everything before `end`: on Spark, or a baseline
    from the items' buyer counts (aggregated on Spark)."""
    kind = params["kind"]
    if kind in BASELINES:
        return from_item_buyers(BASELINES[kind], trainer.item_buyers(end), len(trainer.users))
    model = SparkALS.from_config({k: v for k, v in params.items() if k != "kind"})
    return trainer.fit(model, end)


def train_on_spark(ctx, users: IdMap, items: IdMap, codes: np.ndarray, valid_start, test_start,
                   candidates=SPARK_ALS_CANDIDATES) -> tuple[Selection, dict, object, object]:
    """(selection, report `test`, the model for the bundle, the (net, days) matrices before as_of)."""
    from pipelines.engines.spark_als import SparkALSTrainer

    require_spark("spark_als", ctx.engine.name)
    cfg, end = ctx.config.recommend, ctx.as_of
    trainer = SparkALSTrainer(ctx.engine, users, items)
    try:
        train, valid = _sample(ctx, users, items, valid_start, test_start)
        net, days = train.matrices()
        bench = Bench(net, days, valid, cfg.k, None, cfg.seed)

        def fitted():
            for name in BASELINES:
                yield name, _fit(trainer, {"kind": name}, valid_start), 0.0
            for config in candidates:
                start = time.perf_counter()
                model = trainer.fit(SparkALS(**{"random_state": cfg.seed, **config}), valid_start)
                yield "spark_als", model, time.perf_counter() - start

        selection = choose(bench, fitted(), item_category=codes, blend=False, seed=cfg.seed)
        before_test, relevant = _sample(ctx, users, items, test_start, end)
        bt_net, bt_days = before_test.matrices()
        scored, _ = users_to_score(bt_net, relevant)   # `_sample` drew them already
        chosen = score_users(_fit(trainer, selection.params, test_start), bt_net, bt_days, relevant, cfg.k,
                             selection.exclude_mask(codes), scored)
        popular = None
        if selection.selected != "popularity":
            pop_exclude = selection.models["popularity"]["exclude_purchased"] is True
            popular = score_users(_fit(trainer, {"kind": "popularity"}, test_start), bt_net, bt_days, relevant,
                                  cfg.k, pop_exclude, scored)
        test = test_report(selection, test_start, cfg.test_days, chosen, popular)
        test["users_sampled"] = True
        model = _fit(trainer, selection.params, end)
    finally:
        trainer.close()
    # the bundle's purchased items (serving excludes and folds them in): gathered, as the API holds them
    return selection, test, model, _interactions(ctx, users, items, None, end).matrices()
