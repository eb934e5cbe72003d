"""Merchant profiles: one row per merchant, point in time, for account managers and the API.

A profile is `behavior.merchants.merchant_loyalty` (customers, payments, net revenue, repeat
rate, 90-day retention of new customers, mean customer CLV, failure and refund rates) plus the
figures of `merchant_window_sql` and the merchant segment. Vocabulary as in
`behavior.merchants` (a *payment* is a (user_id, payment_id) pair with a successful line at the
merchant; net revenue sums success and refund lines). Nothing at or after `as_of` is read.

Windows. For W in 30, 90 and 365 days the current window is [as_of - W, as_of) and the previous
one [as_of - 2W, as_of - W) (exact timestamps). Per window: `payments_{W}d` (successful
payments whose time is in it), `customers_{W}d` (distinct users with one) and `revenue_{W}d`
(net: success and refund lines in it). `*_trend_{W}d` = current / previous - 1, null when the
previous window has none (a merchant younger than 2W shows the growth of its start).

Share of wallet (`share_of_wallet`, last 365 days): the merchant's *categories* are those of its
successful lines in the window; its *customers* the users with a successful payment there in
the window. share = its customers' spend (successful lines) at it / their spend in its
categories at every merchant; null without spend (or without amounts).

Tier mix (`tier_share_<tier>`): the share of its customers (ever) in each loyalty tier
(`behavior.segments.LOYALTY_TIERS`) of the segments stage; customers without a tier count in
none, so the shares may sum below 1; null without tiers.

Merchant segments (`merchant_segment`), the first rule that holds, in this order:

1. `dormant`: no payment in the last 90 days.
2. `new`: first payment in the last 90 days.
3. `at_risk`: no payment in the last 30 days although it had at least `AT_RISK_MIN_90D` in the
   last 90 (at that pace a silent month has a Poisson chance under 5%), or a *significant*
   90-day payments trend <= -50%.
4. `declining`: a significant 90-day payments trend <= -25%.
5. `growing`: a significant 90-day payments trend >= +25%.
6. `steady`: the rest.

*Significant*: |current - previous| > 2 sqrt(current + previous), a two-sigma difference of two
Poisson counts, so that a small merchant's noise is not called a trend.

Engines: `merchant_window_sql` is a partial over one set of users plus a combine (every figure
is a sum over users), like `behavior.merchants.merchant_partial_sql`, so a big log is read in
the run's user parts; standard SQL with the dialect's epoch function, for DuckDB and Spark.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from behavior.errors import SchemaError
from behavior.features import UserParts, as_of_literal
from behavior.merchants import merchant_loyalty
from behavior.segments import LOYALTY_TIERS
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

WINDOWS = (30, 90, 365)
SHARE_OF_WALLET_DAYS = 365
AT_RISK_MIN_90D = 6
TREND_DECLINING, TREND_AT_RISK, TREND_GROWING = -0.25, -0.5, 0.25
MERCHANT_SEGMENTS = ("growing", "steady", "declining", "at_risk", "new", "dormant")
TIERS = tuple(name for name, _ in LOYALTY_TIERS)

_US_PER_DAY = 86_400_000_000
_REQUIRED = ("user_id", "payment_id", "merchant_id", "category", "amount", "status", "paid_at")
_MEASURES = ("payments", "customers", "revenue")


def tier_column(tier: str) -> str:
    return f"tier_share_{tier.lower()}"


WINDOW_COLUMNS: tuple[str, ...] = tuple(
    [f"{m}_{w}d" for w in WINDOWS for m in _MEASURES] + [f"{m}_trend_{w}d" for w in WINDOWS for m in _MEASURES])
PROFILE_EXTRA_COLUMNS: tuple[str, ...] = (*WINDOW_COLUMNS, "share_of_wallet", *(tier_column(t) for t in TIERS),
                                         "days_since_last_payment", "merchant_segment")


def merchant_categories_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """(merchant_id, category): the categories of each merchant's successful lines in the
    share-of-wallet window before as_of, over the whole relation `payments`."""
    ep = get_dialect(dialect).epoch_us.format
    lo = f"{ep(as_of_literal)} - {SHARE_OF_WALLET_DAYS * _US_PER_DAY}"
    return f"""
SELECT DISTINCT COALESCE(merchant_id, 'unknown') AS merchant_id, category
FROM {payments}
WHERE paid_at < {as_of_literal} AND status = 'success' AND category IS NOT NULL AND {ep('paid_at')} >= {lo}
"""


def merchant_window_partial_sql(payments: str, as_of_literal: str, categories: str, tiers: str | None,
                                dialect: str | Dialect = "duckdb") -> str:
    """One row per merchant of additive figures over the users of `payments`: per window the
    current and previous payments, customers and revenue; `sow_num`, `sow_den`; the customers
    of each tier (`n_tier_<tier>`). `categories` names `merchant_categories_sql`'s relation
    (of the whole log), `tiers` one of (user_id, loyalty_tier) or None."""
    ep = get_dialect(dialect).epoch_us.format
    a = ep(as_of_literal)

    def since(days: int) -> str:
        return f"{a} - {days * _US_PER_DAY}"

    w_cols, c_cols, c_sums, c_names = [], [], [], []
    for w in WINDOWS:
        cur, prev = f"t >= {since(w)}", f"t >= {since(2 * w)} AND t < {since(w)}"
        for tag, cond in (("", cur), ("prev_", prev)):
            w_cols.append(f"COUNT(CASE WHEN status = 'success' AND {cond} THEN 1 END) AS payments_{tag}{w}d")
            w_cols.append(f"SUM(CASE WHEN {cond} THEN amount END) AS revenue_{tag}{w}d")
            w_cols.append(f"COUNT(CASE WHEN {cond} THEN 1 END) AS revlines_{tag}{w}d")
            c_cols.append(f"MAX(CASE WHEN status = 'success' AND {cond} THEN 1 ELSE 0 END) AS c_{tag}{w}")
            c_sums.append(f"SUM(c_{tag}{w}) AS customers_{tag}{w}d")
            c_names.append(f"cs.customers_{tag}{w}d")
    if tiers is None:
        tier_cte, tier_cols, tier_join = "", ", ".join(f"0 AS n_tier_{t.lower()}" for t in TIERS), ""
    else:
        counts = ", ".join(f"COUNT(CASE WHEN tr.loyalty_tier = '{t}' THEN 1 END) AS n_tier_{t.lower()}" for t in TIERS)
        tier_cte = f"""
tier AS (
    SELECT cw.merchant_id, {counts}
    FROM cw JOIN {tiers} AS tr ON tr.user_id = cw.user_id
    WHERE cw.customer = 1
    GROUP BY cw.merchant_id
),"""
        tier_cols = ", ".join(f"COALESCE(tier.n_tier_{t.lower()}, 0) AS n_tier_{t.lower()}" for t in TIERS)
        tier_join = "LEFT JOIN tier ON tier.merchant_id = w.merchant_id"
    return f"""
WITH
-- The only read of the log: successful and refund lines before as_of (filtered in the scan).
lines AS (
    SELECT COALESCE(merchant_id, 'unknown') AS merchant_id, user_id, payment_id, category, amount, status,
           {ep('paid_at')} AS t
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status IN ('success', 'refund')
),
pay AS (
    SELECT merchant_id, user_id, payment_id, status, MIN(t) AS t, SUM(amount) AS amount
    FROM lines
    GROUP BY merchant_id, user_id, payment_id, status
),
w AS (
    SELECT merchant_id, {', '.join(w_cols)}
    FROM pay
    GROUP BY merchant_id
),
cw AS (
    SELECT merchant_id, user_id, MAX(CASE WHEN status = 'success' THEN 1 ELSE 0 END) AS customer,
           {', '.join(c_cols)}
    FROM pay
    GROUP BY merchant_id, user_id
),
cs AS (
    SELECT merchant_id, {', '.join(c_sums)}
    FROM cw
    GROUP BY merchant_id
),{tier_cte}
-- Share of wallet: the customers' spend at the merchant and in its categories anywhere.
ucat AS (
    SELECT user_id, category, SUM(amount) AS spend
    FROM lines
    WHERE status = 'success' AND category IS NOT NULL AND t >= {since(SHARE_OF_WALLET_DAYS)}
    GROUP BY user_id, category
),
num AS (
    SELECT merchant_id, SUM(amount) AS sow_num
    FROM lines
    WHERE status = 'success' AND category IS NOT NULL AND t >= {since(SHARE_OF_WALLET_DAYS)}
    GROUP BY merchant_id
),
den AS (
    SELECT mc.merchant_id, SUM(u.spend) AS sow_den
    FROM (SELECT merchant_id, user_id FROM cw WHERE c_{SHARE_OF_WALLET_DAYS} = 1) AS mu
    JOIN {categories} AS mc ON mc.merchant_id = mu.merchant_id
    JOIN ucat AS u ON u.user_id = mu.user_id AND u.category = mc.category
    GROUP BY mc.merchant_id
)
SELECT w.*, {', '.join(c_names)},
       num.sow_num, den.sow_den, {tier_cols}
FROM w
JOIN cs ON cs.merchant_id = w.merchant_id
LEFT JOIN num ON num.merchant_id = w.merchant_id
LEFT JOIN den ON den.merchant_id = w.merchant_id
{tier_join}
"""


def merchant_window_combine_sql(partials: str) -> str:
    """The per-merchant sums of `merchant_window_partial_sql`'s rows over disjoint sets of users:
    `<measure>_{W}d` and `<measure>_prev_{W}d` (revenue null when no line had an amount, 0
    without lines), `share_of_wallet`, `n_tier_<tier>`."""
    cols = []
    for w in WINDOWS:
        for tag in ("", "prev_"):
            cols.append(f"CAST(SUM(payments_{tag}{w}d) AS BIGINT) AS payments_{tag}{w}d")
            cols.append(f"CAST(SUM(customers_{tag}{w}d) AS BIGINT) AS customers_{tag}{w}d")
            cols.append(f"CAST(CASE WHEN SUM(revlines_{tag}{w}d) = 0 THEN 0 ELSE SUM(revenue_{tag}{w}d) END AS DOUBLE)"
                        f" AS revenue_{tag}{w}d")
    tiers = [f"CAST(SUM(n_tier_{t.lower()}) AS BIGINT) AS n_tier_{t.lower()}" for t in TIERS]
    return f"""
SELECT merchant_id, {', '.join(cols)},
       CASE WHEN SUM(sow_den) > 0 THEN CAST(SUM(sow_num) AS DOUBLE) / CAST(SUM(sow_den) AS DOUBLE) END
           AS share_of_wallet,
       {', '.join(tiers)}
FROM {partials}
GROUP BY merchant_id
ORDER BY merchant_id
"""


def merchant_windows(con, payments: str, as_of: datetime, tiers: str | None = None,
                     parts: UserParts | None = None) -> pd.DataFrame:
    """`merchant_window_combine_sql`'s table as pandas, read in user parts (the run's `parts`,
    or a set made for this call). `tiers` names a (user_id, loyalty_tier) relation or None.
    A missing payments column raises SchemaError; a naive `as_of` ValueError."""
    engine = as_engine(con)
    d = engine.dialect
    as_of_literal(as_of, dialect=d)   # validates as_of
    types = engine.column_types(payments)
    missing = [c for c in _REQUIRED if c not in types]
    if missing:
        raise SchemaError(f"{payments} lacks the payments column(s) {', '.join(missing)}; "
                          f"merchant profiles need {', '.join(_REQUIRED)}")
    literal = as_of_literal(as_of, tz_aware=d.is_tz_aware(types["paid_at"]), dialect=d)
    engine.register("_merchant_categories", engine.arrow(merchant_categories_sql(payments, literal, d)))
    try:
        with UserParts(engine, payments, as_of) if parts is None else nullcontext(parts) as parts:
            parts.covers(payments, [as_of], list(_REQUIRED))
            partials = []
            for part, relation in parts.relations():
                users = tiers and (tiers if parts.count == 1 else
                                   f"(SELECT * FROM {tiers} WHERE {parts.part_of('user_id')} = {part})")
                partials.append(engine.arrow(merchant_window_partial_sql(relation, literal, "_merchant_categories",
                                                                         users, d)))
    finally:
        engine.unregister("_merchant_categories")
    engine.register("_merchant_window_partials", pa.concat_tables(partials))
    try:
        return engine.arrow(merchant_window_combine_sql("_merchant_window_partials")).to_pandas()
    finally:
        engine.unregister("_merchant_window_partials")


def _significant(cur: pd.Series, prev: pd.Series) -> pd.Series:
    return (cur - prev).abs() > 2.0 * np.sqrt(cur + prev)


def merchant_segment(p: pd.DataFrame, as_of: datetime) -> pd.Series:
    """The segment of each profile row by the rules of the module docstring (needs
    payments_30d, payments_90d, payments_prev_90d, first_payment_at)."""
    cur, prev = p["payments_90d"].astype(float), p["payments_prev_90d"].astype(float)
    trend = cur / prev.where(prev > 0) - 1.0
    sig = _significant(cur, prev) & trend.notna()
    first = pd.to_datetime(p["first_payment_at"], utc=True)
    rules = [
        ("dormant", cur == 0),
        ("new", first >= pd.Timestamp(as_of - timedelta(days=90))),
        ("at_risk", ((p["payments_30d"] == 0) & (cur >= AT_RISK_MIN_90D)) | (sig & (trend <= TREND_AT_RISK))),
        ("declining", sig & (trend <= TREND_DECLINING)),
        ("growing", sig & (trend >= TREND_GROWING)),
    ]
    out = pd.Series("steady", index=p.index, dtype="object")
    decided = pd.Series(False, index=p.index)
    for name, cond in rules:
        cond = cond.fillna(False).astype(bool)
        out[cond & ~decided] = name
        decided |= cond
    return out


def assemble_profiles(loyalty: pd.DataFrame, windows: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """One row per merchant of `loyalty` (merchant_loyalty's columns) with the window figures,
    trends, share of wallet, tier mix, days since the last payment and the segment."""
    p = loyalty.merge(windows, on="merchant_id", how="left")
    for w in WINDOWS:
        for m in _MEASURES:
            for col in (f"{m}_{w}d", f"{m}_prev_{w}d"):
                if m != "revenue":
                    p[col] = p[col].fillna(0).astype("int64")
            prev = p[f"{m}_prev_{w}d"].astype(float)
            p[f"{m}_trend_{w}d"] = p[f"{m}_{w}d"].astype(float) / prev.where(prev != 0) - 1.0
    n_tier = p[[f"n_tier_{t.lower()}" for t in TIERS]].fillna(0)
    known = n_tier.sum(axis=1)
    for t in TIERS:
        p[tier_column(t)] = (n_tier[f"n_tier_{t.lower()}"] / p["customers"].where(p["customers"] > 0)).where(known > 0)
    last = pd.to_datetime(p["last_payment_at"], utc=True)
    p["days_since_last_payment"] = (pd.Timestamp(as_of) - last).dt.total_seconds() / 86_400
    p["merchant_segment"] = merchant_segment(p, as_of)
    keep = [c for c in loyalty.columns] + [c for c in PROFILE_EXTRA_COLUMNS if c not in loyalty.columns]
    keep += [f"payments_prev_{w}d" for w in WINDOWS]
    return p[keep].sort_values("merchant_id", ignore_index=True)


def merchant_profiles(con: SqlEngine, payments: str, as_of: datetime, user_values: str | None = None,
                      tiers: str | None = None, parts: UserParts | None = None) -> pd.DataFrame:
    """Merchant profiles as of `as_of` (one row per merchant with a line before it; columns of
    `behavior.merchants.MERCHANT_COLUMNS`, `PROFILE_EXTRA_COLUMNS` and `payments_prev_{W}d`).
    `user_values` names (user_id, clv), `tiers` (user_id, loyalty_tier); both optional."""
    loyalty = merchant_loyalty(con, payments, as_of, user_values, parts).to_pandas()
    windows = merchant_windows(con, payments, as_of, tiers, parts)
    return assemble_profiles(loyalty, windows, as_of)


__all__ = ["AT_RISK_MIN_90D", "MERCHANT_SEGMENTS", "PROFILE_EXTRA_COLUMNS", "SHARE_OF_WALLET_DAYS", "TIERS",
           "WINDOWS", "WINDOW_COLUMNS", "assemble_profiles", "merchant_categories_sql", "merchant_profiles",
           "merchant_segment", "merchant_window_combine_sql", "merchant_window_partial_sql", "merchant_windows",
           "tier_column"]
