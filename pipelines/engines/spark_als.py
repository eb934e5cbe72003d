"""Recommender training on Spark MLlib: `pyspark.ml.recommendation.ALS` with implicitPrefs.

`SparkALSTrainer(engine, users, items)` fits `behavior.recommend.factors.SparkALS` models on
the interactions as Spark aggregates them; nothing of the interactions comes to the driver
to train, only the factors at the end (and, for bm25, the items' buyer counts):

1. The id maps of the bundle (`IdMap`: sorted ids, index = position) become two small views
   `_als_users(user_id, user_idx)` / `_als_items(item_id, item_idx)`; the interactions are
   joined to them, so MLlib's integer ids *are* the bundle's indices (no re-mapping).
2. The rating of a pair is the model's confidence weight of its net count (purchases minus
   refunds, pairs with a positive one only), computed in Spark SQL exactly as
   `behavior.recommend.weighting.Weighting.transform` does on the driver: count, log,
   recency (days since the pair's last purchase) or bm25 (item buyer counts and user row
   sums by window functions; n_users is the id map's size, as the driver's matrix has a row
   for every user of the map). The fitted `Weighting` (bm25: idf and mean row sum) travels
   with the model, so serving weighs a new user's row like training did.
3. MLlib's ALS (Cholesky, not nonnegative) with c = 1 + alpha * rating and regularization
   regParam x the row's number of items; `SparkALS` solves the same equations to fold in a
   user the model has not seen (see its docstring).
4. The factors come back as Arrow; users (items) without a rating get a zero vector, as
   implicit gives them.

Only this module and `pipelines.engines.spark` import pyspark.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from behavior.features import as_of_literal
from behavior.recommend.factors import SparkALS
from behavior.recommend.interactions import IdMap, interactions_sql
from behavior.recommend.weighting import IDF_FLOOR, Weighting
from behavior.sql_dialect import SPARK

USERS_VIEW, ITEMS_VIEW = "_als_users", "_als_items"


class SparkALSTrainer:
    """Fits SparkALS models on Spark over the `payments` view of a `SparkEngine`."""

    def __init__(self, engine, users: IdMap, items: IdMap) -> None:
        self.engine = engine
        self.users, self.items = users, items
        engine.register(USERS_VIEW, pa.table({"user_id": users.ids, "user_idx": np.arange(len(users), dtype=np.int32)}))
        engine.register(ITEMS_VIEW, pa.table({"item_id": items.ids, "item_idx": np.arange(len(items), dtype=np.int32)}))

    def close(self) -> None:
        for view in (USERS_VIEW, ITEMS_VIEW):
            self.engine.unregister(view)

    # ------------------------------------------------------------------ SQL
    def net_sql(self, end: datetime) -> str:
        """(user_idx, item_idx, net, days) of every pair with a positive net count before `end`."""
        end_lit = as_of_literal(end, dialect=SPARK)
        return f"""
            SELECT u.user_idx, i.item_idx, CAST(p.purchases - p.refunds AS DOUBLE) AS net,
                   greatest(coalesce((unix_micros({end_lit}) - unix_micros(p.last_at)) / 86400000000.0, 0.0), 0.0)
                       AS days
            FROM ({interactions_sql(None, end, "payments", SPARK)}) p
            JOIN {USERS_VIEW} u ON u.user_id = p.user_id
            JOIN {ITEMS_VIEW} i ON i.item_id = p.item_id
            WHERE p.purchases > p.refunds
        """

    def item_buyers(self, end: datetime) -> np.ndarray:
        """Users with a positive net count per item before `end` (float64, one per item)."""
        t = self.engine.arrow(f"SELECT item_idx, count(*) AS buyers FROM ({self.net_sql(end)}) GROUP BY item_idx")
        out = np.zeros(len(self.items))
        out[t.column("item_idx").to_numpy()] = t.column("buyers").to_numpy()
        return out

    def weighting(self, scheme: str, params: dict | None, end: datetime) -> Weighting:
        """The fitted Weighting of the training matrix before `end` (bm25: its statistics from Spark)."""
        full = Weighting(scheme, **(params or {})).params
        arrays = {"scheme": np.array(scheme), "n_items": np.array(len(self.items), dtype=np.int64),
                  **{f"param.{k}": np.array(v, dtype=np.float64) for k, v in full.items()}}
        if scheme == "bm25":
            n_users = max(len(self.users), 1)
            total = self.engine.arrow(f"SELECT sum(net) AS s FROM ({self.net_sql(end)})").column("s")[0].as_py() or 0.0
            arrays["idf"] = np.maximum(np.log(n_users) - np.log1p(self.item_buyers(end)), IDF_FLOOR)
            arrays["mean_row_sum"] = np.array(total / n_users if total > 0 else 1.0)
        return Weighting.from_arrays(arrays)

    def ratings_sql(self, weighting: Weighting, end: datetime) -> str:
        """(user_idx, item_idx, rating): the confidence weight of each pair, as Weighting.transform."""
        p = weighting.params
        if weighting.scheme == "count":
            rating = "net"
        elif weighting.scheme == "log":
            rating = f"1.0D + {p['alpha']!r}D * log1p(net)"
        elif weighting.scheme == "recency":
            rating = f"net * pow(2.0D, -days / {p['half_life_days']!r}D)"
        else:  # bm25, with the statistics of `weighting` (so training and serving agree)
            k1, b, n_users = p["K1"], p["B"], max(len(self.users), 1)
            norm = f"((1.0D - {b!r}D) + {b!r}D * sum(net) OVER (PARTITION BY user_idx) / {weighting.mean_row_sum_!r}D)"
            idf = f"greatest(ln({n_users}D) - log1p(count(*) OVER (PARTITION BY item_idx)), {IDF_FLOOR!r}D)"
            rating = f"net * ({k1!r}D + 1.0D) / ({k1!r}D * {norm} + net) * {idf}"
        return f"SELECT user_idx, item_idx, CAST({rating} AS FLOAT) AS rating FROM ({self.net_sql(end)})"

    # ------------------------------------------------------------------ training
    def fit(self, model: SparkALS, end: datetime) -> SparkALS:
        """Train `model`'s configuration with MLlib on the pairs before `end`; returns it fitted."""
        from pyspark.ml.recommendation import ALS

        weighting = self.weighting(model.weighting, model.weighting_params, end)
        ratings = self.engine.spark.sql(self.ratings_sql(weighting, end))
        blocks = int(self.engine.spark.conf.get("spark.sql.shuffle.partitions"))
        als = ALS(rank=int(model.factors), maxIter=int(model.iterations), regParam=float(model.regularization),
                  alpha=float(model.alpha), implicitPrefs=True, nonnegative=False,
                  seed=int(model.random_state or 0), userCol="user_idx", itemCol="item_idx", ratingCol="rating",
                  numUserBlocks=blocks, numItemBlocks=blocks)
        fitted = als.fit(ratings)
        rank = int(model.factors)
        model.weighting_ = weighting
        model.n_users_, model.n_items_ = len(self.users), len(self.items)
        model._load_arrays({"user_factors": _factors(fitted.userFactors, len(self.users), rank),
                            "item_factors": _factors(fitted.itemFactors, len(self.items), rank)})
        return model


def _factors(frame, n: int, rank: int) -> np.ndarray:
    """MLlib's (id, features) DataFrame as an n x rank float32 array (zero rows for absent ids)."""
    t = frame.toArrow()
    out = np.zeros((n, rank), dtype=np.float32)
    values = pc.list_flatten(t.column("features")).to_numpy(zero_copy_only=False)
    out[t.column("id").to_numpy()] = np.asarray(values, dtype=np.float32).reshape(-1, rank)
    return out


__all__ = ["SparkALSTrainer"]
