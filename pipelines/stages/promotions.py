"""Stage `promotions`: effectiveness of past promotions, uplift models, what targeting serves.

Effectiveness (behavior/promotions.py): every promotion of the promotions table, and every
promotion_id the assignments name, gets an entry in report `promotions.effectiveness`:
`status` "estimated" with the lifts, or "cannot be estimated" / "running" with the reason
(no control group, users in both groups, unknown promotion, still running at as_of, too
few users); without amounts in the lake the revenue lifts are left out and a note says so.
The per-segment breakdown uses each user's segment *at the promotion start* (a segment
measured after the start would be moved by the promotion itself).

Parameters: the `[promotions]` section of the configuration (`ctx.config.promotions`,
docs/configuration.md).

Uplift (behavior/uplift_training.py, behavior/uplift_selection.py): per estimated promotion
(arm), candidates from no targeting to a doubly robust learner on its assigned users' features
and cells at its start, the simplest not beaten by validation Qini beyond its bootstrap interval
(`promotions.uplift.selection.<promotion_id>`, held-out figures in `promotions.uplift.arms`). The
latest arm of each target (its category, or "any") scores every customer at as_of:
`uplift_scores.parquet` (user_id, target, uplift, p_redeem).

Also published for targeting: `category_affinity.parquet` (user_id, category, share of
successful lines before as_of) for the fallback rule, `item_categories.parquet` (item_id,
category: an item target is scored by its category), and `contacts.parquet` (user_id,
last_contacted_at) from the treatment assignments, to skip recently contacted users.

Every query of the log (outcomes in the promotion windows, affinities, features at each
promotion start) runs on the run's engine (`ctx.engine`: DuckDB or Spark, the same SQL); the
uplift models are fitted on the driver. Each arm is trained and chosen on the users its
validation Qini interval needs (`[promotions] qini_half_width`, `behavior.uplift_sampling`), so at
each start the full features and the target affinity are computed for those users only (from
their lines, read from the user parts once for every start), and for the population only the
columns its segments rank, at every start in one pass (`P.rfm_at_starts_sql`). Each arm's choice runs on a worker
thread as soon as its rows are ready, while the next promotion is evaluated, and every customer
is scored in one pass over blocks of customers on threads too (`WORKERS`, one per core): each
block's numeric feature matrix is made once and scored by every served target, whose boosters
predict by leaf masks (`behavior.uplift_boosters`: scikit-learn's predictions, in fewer CPU seconds).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from behavior import promotions as P
from behavior.features import FEATURE_SCHEMA, as_of_literal, by_user_part, feature_sql
from behavior.segments import assign_segments, rfm_scores
from behavior.sql_dialect import as_engine
from behavior.store import bundle as B
from behavior.uplift_boosters import with_leaf_masks
from behavior.uplift_sampling import UNUSED
from behavior.uplift_training import NON_FEATURES, Served, arm_parts, cell_of, model_matrix, on_threads, train_arms_of
from pipelines.stage import StageResult

SCHEMA = pa.schema([("user_id", pa.string()), ("target", pa.string()), ("uplift", pa.float64()),
                    ("p_redeem", pa.float64())])
# the arms' choices and the targets' scores run this many at once, on threads (the boosters
# release the GIL while they grow trees and predict)
WORKERS = len(os.sched_getaffinity(0))
SCORE_ROWS = 100_000   # customers per block of scoring: bounds the memory of each thread's feature matrix
RFM_COLUMNS = ("recency_days", "n_payments", "net_spend")   # what `rfm_scores` ranks
CONTACTS = pa.schema([("user_id", pa.string()), ("last_contacted_at", pa.timestamp("us", tz="UTC"))])


def _target_category(engine, target: str) -> str:
    """The category whose affinity describes a target: itself, 'any', or an item's category."""
    if target.startswith("item:"):
        engine = as_engine(engine)
        # the same rule as item_categories.parquet, which serving uses: the most frequent category
        sql = (f"SELECT category FROM ({P.item_categories_sql('payments', engine.dialect)}) ic "
               f"WHERE item_id = {engine.dialect.param.format('item')}")
        found = engine.arrow(sql, {"item": target[5:]})["category"]
        return (found[0].as_py() if len(found) else None) or "any"
    return target


def _affinity_at(engine, as_of, category: str, users: pd.Series, lines: str = "payments") -> np.ndarray:
    """Each user's affinity to `category` before as_of (1 for 'any', 0 if none), from the
    relation `lines` (the payments, or those of `users`). Only that category's rows leave the
    engine: all of them are ~6 rows per customer (35M at 100M lines)."""
    if category == "any":
        return np.ones(len(users))
    engine = as_engine(engine)
    d = engine.dialect
    sql = (f"SELECT user_id, share FROM ({P.category_affinity_sql(lines, as_of_literal(as_of, dialect=d), d)}) a "
           f"WHERE category = {d.param.format('category')}")
    return _share_of(engine.arrow(sql, {"category": category}), users)


def _share_of(table: pa.Table, users) -> np.ndarray:
    """The `share` of each of `users` (ids: a pandas Series or an Arrow array) in a (user_id,
    share) table of one row per user, 0 where it has none."""
    ids = users if isinstance(users, (pa.Array, pa.ChunkedArray)) else pa.array(users, type=pa.string())
    known = table.column("user_id").combine_chunks().cast(ids.type)
    at = pc.index_in(ids, value_set=known).to_numpy(zero_copy_only=False)   # NaN where absent
    out = np.zeros(len(ids))
    found = ~np.isnan(at)
    out[found] = table.column("share").to_numpy()[at[found].astype(np.int64)]
    return out


def _affinity_now(table: pa.Table, category: str, users) -> np.ndarray:
    """`_affinity_at` as_of, from the published category_affinity table."""
    if category == "any":
        return np.ones(len(users))
    return _share_of(table.filter(pc.equal(table.column("category"), category)), users)


def _category_affinity(ctx) -> pa.Table:
    """`P.category_affinity_sql` at as_of over the run's user parts, part after part (the parts
    are ranges of user_id, so their tables follow one another in its order): each part's counts
    stay small, where one query over every line was the stage's largest at 30M lines."""
    return _per_user_at(ctx, ctx.as_of, P.category_affinity_sql)


def _segments_at(feats: pd.DataFrame) -> pd.Series:
    """The segment of each row of `feats` (user_id and the R, F and M columns), in its order."""
    if feats.empty:
        return pd.Series([], dtype=object)
    # no index of the ids: both callers take the segments by position (an index of a million
    # strings is hashed when pandas first looks a key up in it)
    return assign_segments(rfm_scores(feats))


def _entries(engine, as_of, section: dict) -> list[dict]:
    """Report entries for every promotion; returns the promotions whose effect can be estimated.
    `engine`: a SqlEngine or a DuckDB connection."""
    engine = as_engine(engine)
    promos = engine.frame("SELECT promotion_id, name, starts_at, ends_at, coalesce(target, 'any') AS target, "
                          "coalesce(cost_per_redemption, 0)::DOUBLE AS cost FROM promotions ORDER BY promotion_id")
    checks = engine.frame(P.assignment_checks_sql("assignments", "promotions", engine.dialect)).set_index("promotion_id")
    ok = []
    for pid, row in checks[~checks["known"]].iterrows():
        section["effectiveness"][pid] = {"status": P.CANNOT, "reason": P.assignment_problem(row.to_dict()),
                                         "n_assignments": int(row["n_treatment"] + row["n_control"] + row["n_both"])}
    for p in promos.itertuples(index=False):
        entry = {"name": p.name, "target": p.target, "starts_at": p.starts_at.isoformat(),
                 "ends_at": p.ends_at.isoformat(), "cost_per_redemption": p.cost}
        section["effectiveness"][p.promotion_id] = entry
        running = P.window_status(p.starts_at.to_pydatetime(), p.ends_at.to_pydatetime(), as_of)
        if p.promotion_id not in checks.index:
            entry.update(status=P.CANNOT, reason="it has no assignments, so there is no control group to compare "
                                                 "with (a before/after comparison is not an effect)")
            continue
        counts = {k: int(v) for k, v in checks.loc[p.promotion_id, ["n_treatment", "n_control", "n_both"]].items()}
        entry.update(counts)
        problem = P.assignment_problem(counts)
        if running and running.startswith("it is still running"):
            entry.update(status="running", reason=running)
        elif running or problem:
            entry.update(status=P.CANNOT, reason=running or problem)
        else:
            ok.append({"promotion_id": p.promotion_id, "starts_at": p.starts_at, "ends_at": p.ends_at,
                       "target": p.target, "cost": p.cost})
    return ok


def _empty_scores() -> pa.Table:
    return SCHEMA.empty_table()


def run(ctx) -> StageResult[pa.Table]:
    t0 = time.perf_counter()
    engine, d = ctx.engine, ctx.engine.dialect
    section: dict = {"effectiveness": {}, "uplift": {}, "notes": []}
    artifacts: dict = {}
    artifacts[B.CATEGORY_AFFINITY] = _category_affinity(ctx)
    artifacts[B.ITEM_CATEGORIES] = engine.arrow(P.item_categories_sql("payments", d))
    if not {"promotions", "assignments"} <= ctx.tables:
        missing = sorted({"promotions", "assignments"} - ctx.tables)
        section["uplift"]["skipped"] = (f"no {' and no '.join(missing)} table in the lake: no promotion effect can be "
                                        "estimated and no uplift model trained; targeting uses the fallback rule")
        section["notes"].append(section["uplift"]["skipped"])
        artifacts[B.CONTACTS] = CONTACTS.empty_table()
        section["seconds"] = round(time.perf_counter() - t0, 3)
        return StageResult(_empty_scores(), artifacts, section)
    artifacts[B.CONTACTS] = engine.arrow(P.contacts_sql("assignments", "promotions", d)).cast(CONTACTS)
    ok = _entries(engine, ctx.as_of, section)
    if ok and not ctx.has_amounts():
        section["notes"].append(P.NO_AMOUNTS)
    evaluated: list[str] = []
    # one OpenMP thread: the boosters fit small tables, and OpenMP's spinning threads made this
    # stage 4x slower whenever another process used the second core (measured: 34 s vs 8 s)
    with threadpool_limits(1, user_api="openmp"):
        # each promotion's uplift choice runs on a worker thread while the next one is evaluated
        scores = _uplift(ctx, _evaluate(ctx, ok, section, evaluated), evaluated, section, artifacts)
    section["seconds"] = round(time.perf_counter() - t0, 3)
    return StageResult(scores, artifacts, section)


def _evaluate(ctx, ok: list[dict], section: dict, evaluated: list[str]) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Effectiveness of each estimable promotion, one at a time; yields the training rows of
    each estimated one for its uplift model: (features, meta as `train_arms` reads it), and
    appends its promotion_id to `evaluated`."""
    if not ok:
        return
    engine, cfg = ctx.engine, ctx.config.promotions
    windows = pd.DataFrame(ok)[["promotion_id", "starts_at", "ends_at", "target"]]
    engine.register("_promo_windows", pa.Table.from_pandas(windows, preserve_index=False))
    try:
        outcomes = engine.frame(P.outcomes_sql("payments", "assignments", "_promo_windows", cfg.pre_days,
                                               dialect=engine.dialect))
    finally:
        engine.unregister("_promo_windows")
    rfm = _rfm_at(ctx, [p["starts_at"].to_pydatetime() for p in ok])
    at = _positions(outcomes["user_id"], rfm.column("user_id"))
    arms = []   # (promotion, its outcomes, meta, segments at its start, used) of each estimated one
    for k, p in enumerate(ok):
        rows = (outcomes["promotion_id"] == p["promotion_id"]).to_numpy()
        o = outcomes[rows].reset_index(drop=True)
        seg = _segments_of(rfm, k, at[rows])
        entry = section["effectiveness"][p["promotion_id"]]
        entry.update(P.effectiveness(o, p["cost"], segments=seg, amounts=ctx.has_amounts(),
                                     seed=cfg.seed, pre_days=cfg.pre_days))
        if entry["status"] != "estimated":
            continue
        category = _target_category(engine, p["target"])
        meta = pd.DataFrame({"user_id": o["user_id"].to_numpy(), "target": category,
                             "promotion_id": p["promotion_id"], "converted": o["converted"].to_numpy(),
                             "redeemed": o["redeemed"].to_numpy(), "treated": (o["group"] == "treatment").to_numpy(),
                             "starts_at": p["starts_at"], "assigned_at": o["assigned_at"].to_numpy()})
        # the users the arm's choice reads (`train_arms_of` splits and samples the arm the same way)
        used = arm_parts(meta, cfg.seed, cfg.qini_half_width)[0] != UNUSED
        arms.append((p, o, meta, seg, used))
    if not arms:
        return
    readers = np.concatenate([o["user_id"].to_numpy()[used] for _, o, _, _, used in arms])
    with _lines_of(ctx, pd.unique(readers), max(p["starts_at"].to_pydatetime() for p, *_ in arms)):
        for p, o, meta, seg, used in arms:
            category = str(meta["target"].iloc[0])
            feats, affinity = _arm_inputs(ctx, p["starts_at"].to_pydatetime(), category, o["user_id"], used)
            meta["cell"] = cell_of(seg, affinity, category == "any")
            evaluated.append(p["promotion_id"])
            yield model_matrix(o[["user_id"]].merge(feats, on="user_id", how="left"), affinity, category == "any"), meta


LINES = "_promo_lines"


@contextmanager
def _lines_of(ctx, users: np.ndarray, latest):
    """The lines before `latest` of `users` (the user parts' columns), registered as LINES for
    `_arm_inputs`: read from the user parts once, where every start's features of the arms'
    users would each read every line."""
    engine = ctx.engine
    columns = ", ".join(ctx.user_parts.columns)
    engine.register("_promo_users", pa.table({"user_id": pa.array(users, type=pa.string())}))
    try:
        lines = _per_user_at(ctx, latest, lambda part, literal, d: (
            f"SELECT {columns} FROM {_of_users(part)} l WHERE paid_at < {literal}"))
    finally:
        engine.unregister("_promo_users")
    engine.register(LINES, lines)
    try:
        yield
    finally:
        engine.unregister(LINES)


def _arm_inputs(ctx, start, category: str, users: pd.Series, used: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    """(the full features at `start` of the `used` ones of `users`, each user's affinity to
    `category` at `start`, 0 for the users not used unless the category is 'any'), from those
    users' lines alone (in LINES, `_lines_of`): a user's features read only that user's lines,
    so they are the population table's rows."""
    engine = ctx.engine
    affinity = np.full(len(users), 1.0 if category == "any" else 0.0)
    literal = as_of_literal(start, tz_aware=engine.dialect.is_tz_aware(ctx.user_parts.types["paid_at"]),
                            dialect=engine.dialect)
    engine.register("_promo_users", pa.table({"user_id": users[used].to_numpy()}))
    try:
        feats = engine.arrow(feature_sql(_of_users(LINES), literal, "promotion_id" in ctx.user_parts.columns,
                                         engine.dialect)).cast(FEATURE_SCHEMA)
        affinity[used] = _affinity_at(engine, start, category, users[used], lines=_of_users(LINES))
    finally:
        engine.unregister("_promo_users")
    return feats.to_pandas(), affinity


def _of_users(lines: str) -> str:
    """The relation `lines` restricted to the users of the registered `_promo_users`."""
    return f"(SELECT * FROM {lines} WHERE user_id IN (SELECT user_id FROM _promo_users))"


def _rfm_at(ctx, starts: list) -> pa.Table:
    """Every user's R, F and M columns at each of the promotion `starts` (k-th: the columns
    suffixed `_k`, `P.rfm_at_starts_sql`), what segments rank, from one pass over the user parts."""
    engine = ctx.engine
    parts = ctx.user_parts
    parts.covers("payments", starts, parts.columns)
    tz_aware = engine.dialect.is_tz_aware(parts.types["paid_at"])
    literals = [as_of_literal(s, tz_aware=tz_aware, dialect=engine.dialect) for s in starts]
    sql = lambda lines, _latest, d: P.rfm_at_starts_sql(lines, literals, d)   # noqa: E731 (every start at once)
    return _per_user_at(ctx, max(starts), sql)


def _rfm_of(rfm: pa.Table, k: int) -> pd.DataFrame:
    """The k-th start's (user_id, recency_days, n_payments, net_spend) of `_rfm_at`: `rfm_sql`'s
    table at that start."""
    at = rfm.filter(pc.greater(rfm.column(f"n_payments_{k}"), 0))
    # the ids stay Arrow strings (pandas' own str columns): a Python string per user cost seconds
    return pd.DataFrame({"user_id": at.column("user_id").to_pandas(),
                         **{c: at.column(f"{c}_{k}").to_numpy(zero_copy_only=False) for c in RFM_COLUMNS}})


def _positions(ids: pd.Series, population: pa.ChunkedArray) -> np.ndarray:
    """The row of each of `ids` in `population` (one id per row), -1 where it is absent: one
    hash of the population for every promotion's users."""
    at = pc.index_in(pa.array(ids, type=population.type), value_set=population.combine_chunks())
    return pc.fill_null(at, -1).to_numpy(zero_copy_only=False).astype(np.int64)


def _segments_of(rfm: pa.Table, k: int, at: np.ndarray) -> pd.Series:
    """The segment at the k-th start (`_segments_at` of `_rfm_of(rfm, k)`) of the users at rows
    `at` of `rfm` (`_positions`), null where a user had no successful payment before that start:
    looked up by position, where a map by user_id hashed every customer's id once per start."""
    present = rfm.column(f"n_payments_{k}").to_numpy(zero_copy_only=False) > 0
    segments = pa.array(_segments_at(_rfm_of(rfm, k))).cast(pa.string())   # (pandas keeps them in Arrow)
    rank = np.cumsum(present) - 1    # each present row's place among the present rows
    found = at >= 0
    found[found] = present[at[found]]
    take = np.where(found, rank[np.where(found, at, 0)], -1)
    return pa.chunked_array([segments.take(pa.array(take, mask=~found))]).to_pandas()


def _per_user_at(ctx, start, sql_of) -> pa.Table:
    """The table of the SQL `sql_of(lines, as_of literal, dialect)` at `start`, from the run's user
    parts (one row per user, in user_id order)."""
    engine = ctx.engine

    def query(lines: str, literal: str) -> pa.Table:
        return engine.arrow(sql_of(lines, literal, engine.dialect))

    with closing(by_user_part(engine, "payments", [start], ctx.user_parts.columns, query, ctx.user_parts)) as tables:
        return next(tables)


def _uplift(ctx, arms: Iterator[tuple[pd.DataFrame, pd.DataFrame]], evaluated: list[str], section: dict,
            artifacts: dict) -> pa.Table:
    """The uplift scores (also put in `artifacts` when a model was trained) of the `arms` as they
    come (`evaluated` lists them once they have all come)."""
    affinity_now = artifacts[B.CATEGORY_AFFINITY]
    up = section["uplift"]
    cfg = ctx.config.promotions
    report, served = train_arms_of(arms, seed=cfg.seed, min_train_per_group=cfg.min_train_per_group, workers=WORKERS,
                                   half_width=cfg.qini_half_width)
    if not evaluated:
        up["skipped"] = "no past promotion with a randomized control group could be evaluated: no uplift model"
        section["notes"].append(up["skipped"] + "; targeting uses the fallback rule")
        return _empty_scores()
    section["notes"].extend(report.pop("notes"))
    up.update(report)
    if not served:
        up["skipped"] = "no promotion arm could train an uplift model (see the notes): targeting uses the fallback rule"
        section["notes"].append(up["skipped"])
        return _empty_scores()
    table = _scores(ctx.outputs["features"], served, affinity_now)
    artifacts[B.UPLIFT_SCORES] = table
    return table


def _scores(features: pa.Table, served: dict[str, Served], affinity_now: pa.Table) -> pa.Table:
    """Every customer's uplift and P(redeem) per served target (SCHEMA; the targets in the order of
    `served`, the customers in the order of `features`), in one pass over blocks of SCORE_ROWS
    customers on WORKERS threads: each block's numeric feature matrix is made once and scored by
    every target (a prediction reads its own row only, so the blocks change no value)."""
    users = features.column("user_id")
    n = len(users)
    if n == 0:
        return _empty_scores()
    # the features table has one row per user, so each user's segment is in the same row
    segments = _segments_at(features.select(["user_id", *RFM_COLUMNS]).to_pandas()).to_numpy()
    affinity = {target: _affinity_now(affinity_now, target, users) for target in served}
    cells = {target: cell_of(segments, affinity[target], target == "any") for target in served}
    numeric = [c for c in features.column_names if c not in NON_FEATURES]
    models = {target: with_leaf_masks(s.model) for target, s in served.items()}   # the same scores, fewer CPU seconds

    def block(start: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        part = features.select(numeric).slice(start, SCORE_ROWS).to_pandas()
        X = model_matrix(part, np.zeros(len(part)), False)   # the targets differ in the last two columns
        rows = slice(start, start + len(X))
        out = {}
        for target, s in served.items():
            Xn = X.assign(target_affinity=affinity[target][rows], target_is_any=float(target == "any"))[list(s.columns)]
            out[target] = models[target].predict(Xn, cells[target][rows])
        return out

    blocks = on_threads(block, range(0, n, SCORE_ROWS), WORKERS)
    per_target = []
    for target in served:
        per_target.append(pa.table({
            "user_id": users,
            "target": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([target])),
            "uplift": np.concatenate([b[target][0] for b in blocks]).astype(float),
            "p_redeem": np.concatenate([b[target][1] for b in blocks]).astype(float),
        }).cast(SCHEMA))
    return pa.concat_tables(per_target)
