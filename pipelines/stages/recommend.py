"""Stage `recommend`: choose, check and publish the item recommender.

Time line (days before as_of configurable):

    ... train ... | valid (valid_days) | test (test_days) | as_of

1. The model is chosen on `valid` (fitted on what came before, on at most `max_fit_users`
   users, the search's rungs within `search_seconds` reference seconds of estimated cost;
   `behavior.recommend.select`).
2. The chosen configuration and popularity are refitted on everything before `test` and
   scored on `test`, a period neither saw, over at most `max_eval_users` sampled test users
   (`users_sampled`): the report's `recommend.test`.
3. The chosen configuration is refitted on everything before as_of and published as
   `recommender.npz` (arrays only) with the id maps, purchased items, item metadata and
   popularity overall and per segment.

The refits of steps 2 and 3 are `Recommender.fit_every_user`: a full fit, except for ALS above
`max_fit_users` users, whose item factors come from a seeded sample of that many users (the
size the search validated) and every user's factors from one exact least-squares step on them.

Interactions are aggregated over the lake by the run's engine, DuckDB or Spark (one row per
user and item; successful purchases, refunds, last purchase time:
`behavior.recommend.interactions.interactions_sql`); the matrices are built with numpy on the
driver. With `[recommend] trainer = "spark_als"` steps 1-3 train MLlib ALS on Spark instead
(`pipelines.stages.recommend_spark`; the stage's entry, `pipelines.stages.recommend_run`,
picks the trainer); the report's `recommend.trainer` says which.

The stage is skipped (`StageSkipped`: no recommender.npz, the report's `recommend.skipped`
says why) when the data cannot support it: fewer than two items bought before as_of (one
product: nothing to rank), no purchase before the validation period, none in it, or no
validation buyer who also bought before it (a history shorter than valid_days + test_days).
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from behavior.features import as_of_literal
from behavior.recommend.base import from_params
from behavior.recommend.baselines import Popularity
from behavior.recommend.interactions import IdMap, Interactions, build_matrix, indexed_sql
from behavior.recommend.interactions import interactions_sql as _interactions_sql
from behavior.recommend.periods import Periods, prefix_columns, prefixes_sql
from behavior.recommend.select import Selection, select_model
from behavior.recommend.test_period import score_users, test_report, users_to_score
from behavior.segments import SEGMENTS
from pipelines.stage import StageSkipped

# the payments columns the interactions read
_LOG_COLUMNS = ("user_id", "item_id", "status", "paid_at")


def interactions_sql(start: datetime | None, end: datetime, dialect="duckdb") -> str:
    """One row per (user_id, item_id) with events in [start, end) over the `payments` view
    (see `behavior.recommend.interactions.interactions_sql`)."""
    return _interactions_sql(start, end, "payments", dialect)


def _items(ctx, item_ids: IdMap) -> dict[str, np.ndarray]:
    """Item metadata in item order: category code, category names, active flag, and the
    attributes shown with each recommended item (merchant, price, name where the items table
    has one; "" or NaN where unknown). From the items table where there is one, else from
    the item's payment lines (most frequent category and merchant; no price)."""
    engine = ctx.engine
    if "items" in ctx.tables:
        cols = set(engine.frame("SELECT * FROM items LIMIT 0").columns)
        extra = ", ".join(c if c in cols else f"NULL AS {c}" for c in ("merchant_id", "price", "name"))
        meta = engine.frame(f"SELECT item_id, category, active, {extra} FROM items")
    else:
        meta = engine.frame("SELECT item_id, mode(category) AS category, TRUE AS active, mode(merchant_id) AS merchant_id, "
                            "CAST(NULL AS DOUBLE) AS price, CAST(NULL AS VARCHAR) AS name FROM payments GROUP BY item_id")
    meta = pd.DataFrame({"item_id": item_ids.ids}).merge(meta.drop_duplicates("item_id"), on="item_id", how="left")
    names = np.array(sorted(meta["category"].dropna().astype(str).unique()), dtype=np.str_)
    codes = np.where(meta["category"].isna(), -1, np.searchsorted(names, meta["category"].fillna("").astype(str)))
    return {"item_category": codes.astype(np.int32), "category_names": names,
            "item_active": meta["active"].fillna(True).astype(bool).to_numpy(),
            "item_merchant": meta["merchant_id"].fillna("").astype(str).to_numpy(np.str_),
            "item_price": pd.to_numeric(meta["price"], errors="coerce").to_numpy(np.float64),
            "item_name": meta["name"].fillna("").astype(str).to_numpy(np.str_)}


def _only(sql: str, only: str | None) -> str:
    """`sql` restricted to the users of the view `only` (user_id), or as it is."""
    return sql if only is None else f"SELECT * FROM ({sql}) q WHERE user_id IN (SELECT user_id FROM {only})"


def _interactions(ctx, users: IdMap, items: IdMap, start, end, only: str | None = None) -> Interactions:
    df = ctx.engine.frame(_only(interactions_sql(start, end, ctx.engine.dialect), only))
    days = (pd.Timestamp(end) - pd.to_datetime(df["last_at"], utc=True)).dt.total_seconds().div(86_400)
    return Interactions(users.index(df["user_id"]), items.index(df["item_id"]), df["purchases"].to_numpy(float),
                        df["refunds"].to_numpy(float), days.fillna(0).clip(lower=0).to_numpy(float),
                        len(users), len(items))


def _purchased(ctx, users: IdMap, items: IdMap, start, end, only: str | None = None):
    """Users x items, 1 where the user bought the item in [start, end) (the relevant items)."""
    df = ctx.engine.frame(_only(interactions_sql(start, end, ctx.engine.dialect), only))
    df = df[df["purchases"] > 0]
    return build_matrix(users.index(df["user_id"]), items.index(df["item_id"]), np.ones(len(df)), len(users), len(items))


def _segment_codes(ctx, users: IdMap) -> np.ndarray:
    """Each user's segment as its position in SEGMENTS (-1 unknown), for popular-in-segment."""
    codes = np.full(len(users), -1, np.int32)
    seg = ctx.outputs.get("segments")
    if seg is not None:
        # Arrow's hash lookups: no Python string per user (1.2 s for 1.76M users through pandas)
        idx = pc.index_in(seg.column("user_id"), value_set=users.arrow()).fill_null(-1).to_numpy()
        segment = pc.index_in(seg.column("segment"), value_set=pa.array(SEGMENTS, pa.string()))
        ok = idx >= 0
        codes[idx[ok]] = segment.fill_null(-1).to_numpy()[ok]
    return codes


def _id_maps(ctx, end) -> tuple[IdMap, IdMap]:
    """Users and items with a successful purchase before `end` (per user and per item: small).
    The engine sorts them (binary collation: code point order, the order of `IdMap`, which
    checks it), so the driver does not sort 5M id strings again; the users part by part on a log
    in user parts (ranges of user_id, one after another: their users are in order)."""
    cut = f"status = 'success' AND paid_at < {as_of_literal(end, dialect=ctx.engine.dialect)}"

    def distinct(column: str, relations: list[str]) -> np.ndarray:
        ids = [ctx.engine.arrow(f"SELECT DISTINCT {column} FROM {r} WHERE {cut} ORDER BY {column}").column(0)
               for r in relations]
        return np.concatenate([np.asarray(i.to_numpy(zero_copy_only=False), dtype=np.str_) for i in ids])

    items = distinct("item_id", ["payments"])
    if items.size < 2:
        n = items.size
        raise StageSkipped(f"only {n} item{'' if n == 1 else 's'} bought before as_of: recommending needs at least "
                           "two items to rank (a shop with one product has nothing to recommend)")
    return IdMap(distinct("user_id", [r for _, r in _log_parts(ctx, end)])), IdMap(items)


def _log_parts(ctx, end) -> list[tuple[int, str]]:
    """(part, relation) of the payment lines before `end`, in user_id order: the run's user parts
    (`behavior.features.UserParts`, ranges of user_id) where they hold those lines, else
    [(0, payments)]."""
    parts = ctx.user_parts
    if parts is None or parts.as_of != end:
        return [(0, "payments")]
    parts.covers("payments", [end], list(_LOG_COLUMNS))
    return parts.relations()


def _users_of(user_range: tuple, users: IdMap, table):
    """The rows of `table` (`users.to_table()`) whose ids lie within `user_range`
    (`UserParts.user_range`: from the first id up to, not including, the second; None: unbounded),
    a slice: zero copy."""
    lo, hi = user_range
    start = 0 if lo is None else users.ids.searchsorted(lo, "left")
    stop = len(users.ids) if hi is None else users.ids.searchsorted(hi, "left")
    return table.slice(start, stop - start)


def _periods(ctx, users: IdMap, items: IdMap, cuts: tuple, end) -> Periods:
    """Every prefix of the split (before each cut, before `end`) in one scan, aggregated per pair
    by the engine and narrowed batch by batch as the engine streams them. Above the user parts'
    size the scan runs part by part: one aggregation of every pair of the log outgrows the
    engine's memory cap and spills (30M lines: 1.7 GB, 24 to 78 s; 18 to 28 s in six parts),
    while a part holds all of its users' lines and the parts follow each other in user order,
    so their rows come in CSR order."""
    engine = ctx.engine
    table, parts = users.to_table(), _log_parts(ctx, end)
    engine.register("_rec_users", table)
    engine.register("_rec_items", items.to_table())

    def batches():
        for part, relation in parts:
            if len(parts) > 1:   # the part's users only: a join on every user per part grows as lines x users
                engine.unregister("_rec_users")
                engine.register("_rec_users", _users_of(ctx.user_parts.user_range(part), users, table))
            sql = indexed_sql(prefixes_sql(end, cuts, relation, engine.dialect), "_rec_users", "_rec_items",
                              prefix_columns(len(cuts) + 1))
            sql += " ORDER BY user_idx, item_idx"   # CSR order: each prefix's matrices are a filter of the rows
            yield from engine.record_batches(sql)

    try:
        return Periods.from_batches(batches(), len(users), len(items), (*cuts, end))
    finally:
        engine.unregister("_rec_users")
        engine.unregister("_rec_items")


def _check_selectable(net, valid, valid_start, test_start) -> None:
    """StageSkipped unless the model can be chosen: purchases before the validation period, in
    it, and a validation buyer who also bought before it (the users the choice is scored on)."""
    hint = ("the history is too short for the recommender's periods: choose a later --as-of or shorter "
            "[recommend] valid_days / test_days")
    period = f"the validation period {valid_start.date()} to {test_start.date()}"
    if not (net.data > 0).any():
        raise StageSkipped(f"no purchase before {valid_start.date()} (as_of - test_days - valid_days) to train the "
                           f"recommender on; {hint}")
    if valid.nnz == 0:
        raise StageSkipped(f"no purchase in {period} to choose the recommender on; {hint}")
    if not ((np.diff(valid.indptr) > 0) & (np.diff(net.indptr) > 0)).any():
        raise StageSkipped(f"no buyer in {period} also bought before it: nothing to choose the recommender on; {hint}")


def _train_local(ctx, users: IdMap, items: IdMap, codes, valid_start, test_start):
    """Selection, test and the final refit on the driver (implicit): (selection, test, model,
    (net, days) matrices before as_of). Each prefix's matrices are built once, and they and the
    prefix's rows are dropped when done: at 100M lines one pair of them is ~80M entries."""
    cfg, end = ctx.config.recommend, ctx.as_of
    periods = _periods(ctx, users, items, (valid_start, test_start), end)  # periods 1 valid, 2 test
    net, days = periods.matrices(1)
    valid = periods.bought(1)
    periods.release(1)
    _check_selectable(net, valid, valid_start, test_start)
    selection = select_model((net, days), valid, k=cfg.k, item_category=codes,
                             max_users=cfg.max_eval_users, max_fit_users=cfg.max_fit_users, seed=cfg.seed,
                             budget_seconds=cfg.search_seconds, progress=ctx.progress)
    exclude = selection.exclude_mask(codes)
    del net, days, valid

    net, days = periods.matrices(2)
    relevant = periods.bought(2)
    periods.release(2)
    chosen = selection.new_model().fit_every_user(net, days, max_fit_users=cfg.max_fit_users, seed=cfg.seed)
    pop_exclude = selection.models.get("popularity", {}).get("exclude_purchased") is True
    # scored on at most max_eval_users test users, as the search: at 100M lines ~1M users bought in
    # the test period, and scoring each against 200k items took longer than the fit
    users, sampled = users_to_score(net, relevant, cfg.max_eval_users, cfg.seed)
    popular = None
    if selection.selected != "popularity":
        popular = score_users(Popularity().fit(net, days), net, days, relevant, cfg.k, pop_exclude, users)
    scored = score_users(chosen, net, days, relevant, cfg.k, exclude, users)
    test = test_report(selection, test_start, cfg.test_days, scored, popular)
    test["users_sampled"] = sampled
    del chosen, net, days, relevant

    full = periods.matrices(3)
    del periods
    served = from_params(selection.params).fit_every_user(*full, max_fit_users=cfg.max_fit_users, seed=cfg.seed)
    return selection, test, served, full
