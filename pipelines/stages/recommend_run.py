"""Stage `recommend` (pipelines/stages/recommend.py describes it): train the recommender on the
driver or, with `[recommend] trainer = "spark_als"`, on Spark (pipelines/stages/recommend_spark.py),
and return recommender.npz. Both trainers build on pipelines/stages/recommend.py."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from behavior.recommend.serving import serving_arrays
from behavior.segments import SEGMENTS
from behavior.store.bundle import RECOMMENDER
from pipelines.stage import StageResult
from pipelines.stages.recommend import _id_maps, _items, _segment_codes, _train_local
from pipelines.stages.recommend_spark import train_on_spark


def run(ctx) -> StageResult[dict]:
    cfg = ctx.config.recommend
    trainer = cfg.trainer
    end = ctx.as_of
    test_start = end - timedelta(days=cfg.test_days)
    valid_start = test_start - timedelta(days=cfg.valid_days)
    users, items = _id_maps(ctx, end)
    meta = _items(ctx, items)
    codes = meta["item_category"]
    if trainer == "spark_als":
        selection, test, model, (net, days) = train_on_spark(ctx, users, items, codes, valid_start, test_start)
    else:
        selection, test, model, (net, days) = _train_local(ctx, users, items, codes, valid_start, test_start)
    arrays = serving_arrays(
        model, user_ids=users, item_ids=items, purchased=net, purchased_days=days, **meta,
        user_segment=_segment_codes(ctx, users), segment_names=np.array(SEGMENTS, dtype=np.str_),
        exclude_purchased=selection.exclude_mask(codes), selected=selection.selected)
    section = selection.report()
    section["trainer"] = trainer
    section["test"] = test
    section["valid_from"] = valid_start.isoformat()
    return StageResult({"users": len(users), "items": len(items)}, {RECOMMENDER: arrays}, section)
