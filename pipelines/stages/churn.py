"""Stage `churn`: what churn score the bundle serves (a model or a baseline, chosen on the
latest fully labeled cutoff), churn probability and reasons per user, and the retention tables.

Parameters: the `[churn]` section of the configuration (`ctx.config.churn`, docs/configuration.md).
Horizon: `horizon_days`, or when it is 0 (the default) the one `behavior.churn_horizon` reads
from the repeat customers' usual gap at as_of, bounded by the history (the report's `horizon`:
the figures and the reason, and a `warning` when a configured horizon is shorter than the
rhythm). Cutoffs (`behavior.churn.choose_cutoffs`): the test (validation) cutoff as_of - L and
training cutoffs stepping back from test - L by `step_days` (at most `max_train_cutoffs`), L the
label window: the horizon, or shorter when the history is too short for it (the report's
`label_days`, and a note). The models are fitted on the training cutoffs;
`behavior.churn_choice.select` chooses between them and the baselines by ROC-AUC on the test
cutoff (`behavior.model_choice`) and calibrates the chosen score there. Each cutoff's BG/NBD
features come from a model of the loyalty stage's kind fitted at that cutoff; scoring at as_of
uses the loyalty stage's fit itself (`behavior.btyd_select.transaction_model`; a fit of its own
only when loyalty was skipped), so a profile's P(alive) and its churn reasons agree. The
cutoff datasets are built for as many customers as the fit (`max_train_rows` rows) and the
choice (`behavior.churn_choice.MAX_UNITS` validation customers) use, even at the earliest cutoff,
and at most `max_model_users`: a seeded uniform sample of the customers when that is fewer than
all (the report's `model_users`: customers, needed, sampled, seed), whose lines are read once;
every customer is still scored. Above `max_train_rows` rows, each cutoff and the fit take a
seeded uniform sample.

Output: Arrow table (user_id, churn_probability, churn_reasons) over the users of the
feature table; churn_probability is null (and the report has `skipped`) when there is too
little history or a missing class. The retention tables (`cohort_retention.parquet`,
`retention_curves.parquet`) are written in every case.
Report: `churn` = {horizon_days, horizon: {days, source, quantile, grid_days, repeat_customers,
history_days, rhythm_days, median_gap_days, suggested_days, reason, [warning]}, label_days,
cutoffs: {train, test}, train_rows, test_rows, served, served_is_model, selection
(`Choice.report()`), beat: {<candidate>: {roc_auc_gain, interval}}, test (the served score), baselines, models, beats_baselines: {roc_auc, brier},
calibrator, calibration, gain_curve: {share, model (the served score), <baseline>...},
distinct_scores, notes, [model_users: {customers, needed, sampled, seed}], [skipped], seconds}.
"""

from __future__ import annotations

import math
import time
from contextlib import closing
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from behavior import churn as C
from behavior import churn_choice as CC
from behavior.btyd_select import transaction_model
from behavior.churn_horizon import choose_horizon
from behavior.churn_rows import plan_rows, planned_datasets
from behavior.retention import retention_tables
from behavior.store.bundle import COHORT_RETENTION, RETENTION_CURVES
from pipelines.stage import StageResult
from pipelines.stages.align import aligned, ascending

_SAMPLE, _SAMPLE_PAYMENTS = "_churn_sample", "_churn_payments"
BASELINE_INPUTS = set(C.BASELINE_INPUTS.values())


SCHEMA = pa.schema([("user_id", pa.string()), ("churn_probability", pa.float64()), ("churn_reasons", pa.string())])


def _empty(users: pa.Array) -> pa.Table:
    n = len(users)
    return pa.table({"user_id": users, "churn_probability": pa.nulls(n, pa.float64()),
                     "churn_reasons": pa.nulls(n, pa.string())}, schema=SCHEMA)


def _retention(ctx) -> dict:
    """The retention tables, from the run's user parts when the log is split into them (one
    read of the log for both tables, each part's (customer, month) pairs in memory)."""
    engine, d = ctx.engine, ctx.engine.dialect
    seg = ctx.outputs.get("segments")
    if seg is not None and "segment" in seg.column_names:
        engine.register("_churn_segments", seg.select(["user_id", "segment"]))
        rel = "_churn_segments"
    else:
        rel = f"(SELECT CAST(NULL AS {d.string_type}) AS user_id, CAST(NULL AS {d.string_type}) AS segment WHERE FALSE)"
    parts = [r for _, r in ctx.user_parts.relations()] if ctx.user_parts is not None else ["payments"]
    try:
        cohorts, curves = retention_tables(engine, parts, rel)
    finally:
        if rel == "_churn_segments":
            engine.unregister("_churn_segments")
    return {COHORT_RETENTION: cohorts, RETENTION_CURVES: curves}


def customers_needed(first_purchase_at: pa.ChunkedArray | pa.Array, earliest: datetime, rows: int) -> int:
    """How many customers at as_of (a seeded uniform sample of them) the cutoff datasets need so
    that even the earliest cutoff holds `rows` customers: the customers at as_of whose first
    purchase (`first_purchase_at`, one per customer) is before `earliest` are its share of them."""
    at_earliest = pc.sum(pc.less(first_purchase_at, pa.scalar(earliest, first_purchase_at.type))).as_py() or 0
    return min(len(first_purchase_at), math.ceil(rows * len(first_purchase_at) / max(at_earliest, 1)))


def _model_payments(ctx, cuts: C.Cutoffs, cfg, section: dict) -> tuple[str, pa.Table]:
    """The payments relation the cutoff datasets read, and the customers they are built for
    (user_id, first_purchase_at; in user_id order).

    The fit reads at most `max_train_rows` rows and the choice at most `CC.MAX_UNITS` validation
    customers, so the datasets are built for as many customers at as_of as make even the
    earliest cutoff hold that many (`customers_needed`), and never more than `max_model_users`.
    When that is every customer: `payments`. Otherwise the lines of a seeded uniform sample of
    the customers, read once into memory: a customer at a cutoff is a customer at as_of, so each
    cutoff is sampled uniformly too, and the cutoffs' queries read the sample's lines, not the
    log (their cost does not grow with the log)."""
    features = ctx.outputs["features"]
    users = features.column("user_id")
    need = customers_needed(features.column("first_purchase_at"), min(cuts.train),
                            max(cfg.max_train_rows, CC.MAX_UNITS))
    size = min(need, cfg.max_model_users)
    customers = features.select(["user_id", "first_purchase_at"])
    if not ascending(users):   # the feature stage writes its table in user_id order: no sort then
        customers = customers.take(pc.sort_indices(users))
    if size >= len(users):
        return "payments", customers
    keep = np.sort(np.random.default_rng(cfg.seed).choice(len(users), size=size, replace=False))
    customers = customers.take(pa.array(keep))
    ctx.engine.register(_SAMPLE, customers.select(["user_id"]))
    try:
        # only the columns the features and the labels read (those of the user parts)
        lines = ctx.engine.arrow(f"SELECT {', '.join(ctx.user_parts.columns)} FROM payments "
                                 f"WHERE user_id IN (SELECT user_id FROM {_SAMPLE})")
    finally:
        ctx.engine.unregister(_SAMPLE)
    ctx.engine.register(_SAMPLE_PAYMENTS, lines)
    section["model_users"] = {"customers": len(users), "needed": need, "sampled": size, "seed": cfg.seed}
    return _SAMPLE_PAYMENTS, customers


def loyalty_figures(features: pa.Table, loyalty: pa.Table | None, loyalty_days: int, label: int
                    ) -> dict[str, np.ndarray]:
    """The loyalty stage's BG/NBD figures at as_of for the rows of the feature table, in its
    order: `p_alive`, and `expected_purchases` when loyalty's horizon (`loyalty_days`) is the
    label window. Empty when loyalty has no fitted model (churn then fits its own) or lacks a
    customer. They are what `C.add_bgnbd` would compute at as_of: the model is loyalty's fit
    (`transaction_model`) and loyalty evaluates it on the same feature table's frequency,
    recency and T (tests/pipelines/test_churn_stage.py holds them bit-identical)."""
    if transaction_model(loyalty) is None:
        return {}
    ids, theirs = features.column("user_id"), loyalty.column("user_id")
    rows = None if ids.type == theirs.type and ids.equals(theirs) else pc.index_in(ids, theirs)
    if rows is not None and rows.null_count:
        return {}
    names = ["p_alive", *(["expected_purchases"] if loyalty_days == label else [])]
    return {n: (loyalty.column(n) if rows is None else loyalty.column(n).take(rows)).to_numpy(zero_copy_only=False)
            for n in names}


def _scoring_frame(features: pa.Table, columns: set[str], label: int, penalizer: float,
                   btyd, known: dict[str, np.ndarray] | None = None) -> tuple[pa.ChunkedArray, pd.DataFrame]:
    """The customers at as_of in user_id order (`CC.in_order`'s) and their `columns` of the
    feature table with the transaction model's outputs over the label window (`C.add_bgnbd`;
    `known`: its figures already computed by loyalty, `loyalty_figures`).
    Only the columns read are converted, and the ids stay in Arrow: no Python string per customer."""
    keep = [c for c in features.column_names if c in columns | {"frequency", "recency", "T"}]
    now = C.add_bgnbd(features.select(keep).to_pandas(), label, penalizer, model=btyd, known=known)
    ids = features.column("user_id")
    if not ascending(ids):   # the feature stage writes its table in user_id order: no sort then
        order = pc.sort_indices(ids)
        ids = ids.take(order)
        now = now.take(order.to_numpy()).reset_index(drop=True)
    return ids, now


def _profile_words(ctx, now: pd.DataFrame, ids: pa.ChunkedArray, btyd, label: int) -> tuple[pd.DataFrame, int]:
    """The values the reasons quote and the horizon of their expected purchases: a reason quotes
    the profile's expected purchases (the loyalty stage's column over its own horizon), not the
    churn feature over the label window, so the two never disagree when the horizons differ.
    The loyalty column is the same model (`btyd`) on the same (frequency, recency, T) at as_of,
    so it is read by user_id (in the same order, no lookup), not computed again."""
    days = ctx.config.loyalty.horizon_days
    if btyd is None or days == label:
        return now, label
    loyalty = ctx.outputs["loyalty"].select(["user_id", "expected_purchases"])
    expected = aligned(ids, loyalty).column("expected_purchases")
    return now.assign(expected_purchases=expected.to_numpy(zero_copy_only=False)), days


def _drop_sample(ctx, section: dict) -> None:
    if section.get("model_users"):
        ctx.engine.unregister(_SAMPLE_PAYMENTS)


def run(ctx) -> StageResult[pa.Table]:
    cfg = ctx.config.churn
    section: dict = {"horizon_days": cfg.horizon_days or None, "cutoffs": {"train": [], "test": None},
                     "train_rows": 0, "notes": []}
    try:
        retention = _retention(ctx)
        return StageResult(_run(ctx, cfg, section), retention, section)
    finally:
        _drop_sample(ctx, section)


def _skip(section: dict, users: pa.Array, why: str) -> pa.Table:
    section["skipped"] = why
    section["notes"].append(f"churn model skipped: {why}")
    return _empty(users)


def _run(ctx, cfg, section: dict) -> pa.Table:
    """The churn table; fills the report `section`."""
    t0 = time.perf_counter()
    features = ctx.outputs["features"]
    users = features.column("user_id")
    penalizer = getattr(getattr(ctx.config, "loyalty", None), "penalizer", 0.0)
    first = ctx.engine.arrow("SELECT min(paid_at) AS first FROM payments WHERE status = 'success'")["first"][0].as_py()
    if first is None:
        section["skipped"] = "no successful payment before as_of"
        return _empty(users)
    # the features are the BTYD summary at as_of: the rhythm is read from events before it only
    horizon = choose_horizon(features.column("frequency").to_numpy(zero_copy_only=False),
                             features.column("recency").to_numpy(zero_copy_only=False),
                             (ctx.as_of - first).days, cfg.horizon_days or None, cfg.min_history_days)
    horizon_days = section["horizon_days"] = horizon.days
    section["horizon"] = horizon.report()
    ctx.progress(f"churn: horizon {horizon_days} days ({horizon.source})")
    cuts = C.choose_cutoffs(ctx.as_of, first, horizon_days, cfg.step_days, cfg.max_train_cutoffs,
                            cfg.min_history_days, shorten=True)
    section["cutoffs"] = {"train": [c.isoformat() for c in cuts.train], "test": cuts.test.isoformat() if cuts.test else None}
    label = section["label_days"] = cuts.label_days
    if cuts.problem:
        return _skip(section, users, cuts.problem)
    if label < horizon_days:
        section["notes"].append(f"the history before as_of is too short for {horizon_days}-day labels: the cutoffs use "
                                f"{label}-day labels, so churn_probability is the probability of no purchase in the next "
                                f"{label} days (it ranks customers for the {horizon_days}-day horizon)")
    # the loyalty stage's fitted model: its kind is refit at each cutoff, itself scores at as_of
    btyd = transaction_model(ctx.outputs.get("loyalty"))

    # The rows the fit and the choice read, known from the customers' first purchases before any
    # query (`behavior.churn_rows`): each cutoff's features are built for those customers only.
    payments, customers = _model_payments(ctx, cuts, cfg, section)
    plan = plan_rows(customers.column("first_purchase_at"), cuts.train, cuts.test, cfg.max_train_rows, cfg.seed,
                     CC.MAX_UNITS)
    frames, capped = [], []
    with closing(planned_datasets(ctx.engine, payments, customers.column("user_id"), plan, label, penalizer,
                                  btyd)) as datasets:
        for i, c in enumerate(cuts.train + [cuts.test]):
            ctx.progress(f"churn: training cutoff {i + 1}/{len(cuts.train)} ({c.date()})" if i < len(cuts.train)
                         else f"churn: test cutoff ({c.date()})")
            frame, labels = next(datasets)
            frames.append(frame)
            capped.append(labels)
    test, test_labels = frames.pop(), capped.pop()
    train = pd.concat(frames, ignore_index=True)
    del frames
    section["train_rows"] = int(sum(len(c) for c in capped))
    section["test_rows"] = int(len(test_labels))
    for name, labels in (("training", pd.concat(capped)), ("test", test_labels)):
        counts = labels.value_counts()
        small = [lbl for lbl, k in (("churned", counts.get(1, 0)), ("retained", counts.get(0, 0))) if k < C.MIN_CLASS]
        if small:
            return _skip(section, users, f"the {name} cutoffs have fewer than {C.MIN_CLASS} {' and '.join(small)} "
                                         f"customers (churned {int(counts.get(1, 0))}, retained "
                                         f"{int(counts.get(0, 0))}); cannot train or evaluate")
    if train["p_alive"].isna().all() or test["p_alive"].isna().all():
        section["notes"].append("BG/NBD could not be fitted at some cutoff: P(alive) features and baselines are missing")

    cols = C.feature_columns(train)
    chosen = CC.select(train, test, cols, max_units=CC.MAX_UNITS, progress=ctx.progress)
    section.update(chosen.report)
    served = chosen.served
    if not served.is_model:
        section["notes"].append(f"no model beats the baseline {served.name} by more than the validation noise: "
                                f"churn_probability is that baseline, calibrated")

    # Score at as_of with the loyalty stage's fit (at as_of) and the served score's calibrator
    ctx.progress("churn: scoring every customer")
    wanted = set(cols) | BASELINE_INPUTS | set(C.REASON_FEATURES) | C.WORDING_COLUMNS
    known = loyalty_figures(features, ctx.outputs.get("loyalty"), ctx.config.loyalty.horizon_days, label)
    ids, now = _scoring_frame(features, wanted, label, penalizer, btyd, known)
    inputs = [c for c in now.columns if c in set(cols) | BASELINE_INPUTS]
    words, words_days = _profile_words(ctx, now, ids, btyd, label)
    prob, reasons = C.churn_reason_words(served, now[inputs], horizon_days=words_days, context=words)
    section["scored_users"] = int(len(now))
    section["distinct_scores"] = int(len(np.unique(prob)))
    section["reasons_method"] = (f"partial effect against healthy customers: churn probability minus the probability "
                                 f"with the feature set to its median among customers scored below "
                                 f"{C.REASON_THRESHOLD}; only features on their risky side; the top 3 effects >= 0.01, "
                                 f"and at least one reason for every customer scored >= {C.REASON_THRESHOLD}; "
                                 f"expected purchases are quoted over {words_days} days")
    at_risk = prob >= C.REASON_THRESHOLD
    section["at_risk_users"] = int(at_risk.sum())
    section["at_risk_without_reason"] = int((at_risk & pc.equal(reasons, "").to_numpy()).sum())
    section["seconds"] = round(time.perf_counter() - t0, 3)
    return pa.table({"user_id": ids.cast(pa.string()), "churn_probability": pa.array(prob, pa.float64()),
                     "churn_reasons": reasons}, schema=SCHEMA)
