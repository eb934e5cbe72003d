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

Engines: the loyalty, window and wallet figures are queries of the merchant-day table of
`behavior.merchant_days` (one read of the log per user part, shared with merchant churn's
activity and the audiences in the stage; share of wallet also reads the merchants' categories
from the whole log first, `wallet_categories`), each a partial over one set of users plus a combine
(every figure is a sum over users); standard SQL with the dialect's epoch function, for DuckDB
and Spark.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from behavior.errors import SchemaError
from behavior.features import UserParts, as_of_literal
from behavior.merchant_days import (REQUIRED_COLUMNS, SHARE_OF_WALLET_DAYS, WINDOWS, Query, over_merchant_days,
                                    payments_literal, span_start_sql, wallet_categories_sql, wallet_sql,
                                    window_flags)
from behavior.merchants import check_loyalty_inputs, combine_loyalty, loyalty_query
from behavior.segments import LOYALTY_TIERS
from behavior.sql_dialect import SqlEngine, as_engine

AT_RISK_MIN_90D = 6
TREND_DECLINING, TREND_AT_RISK, TREND_GROWING = -0.25, -0.5, 0.25
MERCHANT_SEGMENTS = ("growing", "steady", "declining", "at_risk", "new", "dormant")
TIERS = tuple(name for name, _ in LOYALTY_TIERS)
_MEASURES = ("payments", "customers", "revenue")


def tier_column(tier: str) -> str:
    return f"tier_share_{tier.lower()}"


WINDOW_COLUMNS: tuple[str, ...] = tuple(
    [f"{m}_{w}d" for w in WINDOWS for m in _MEASURES] + [f"{m}_trend_{w}d" for w in WINDOWS for m in _MEASURES])
PROFILE_EXTRA_COLUMNS: tuple[str, ...] = (*WINDOW_COLUMNS, "share_of_wallet", *(tier_column(t) for t in TIERS),
                                         "days_since_last_payment", "merchant_segment")


def window_partial_sql(days: str, users: str, tiers: str | None) -> str:
    """One row per merchant with a successful or refunded payment, of additive figures over the
    users of the merchant-day and merchant-user relations `days` and `users`
    (`behavior.merchant_days`): per window the current and previous payments, customers and
    revenue (with `revlines`, the payments whose amounts it sums), and the customers of each tier
    (`n_tier_<tier>`). `tiers` names a (user_id, loyalty_tier) relation or is None."""
    # The days are summed per merchant and span between consecutive window edges (3 sums a row,
    # where a sum per window and measure was 18 conditional sums a row, whose per-merchant states
    # grew with the merchants), then the spans per window: every window [lo, hi) is a union of
    # spans, and a span's first day is in a window exactly when all its days are.
    span = span_start_sql("rday", sorted({e for w in WINDOWS for e in (-2 * w, -w)}))
    w_cols = []
    for suffix, cond in window_flags():
        cond = cond.replace("rday", "span")
        w_cols.append(f"CAST(SUM(CASE WHEN {cond} THEN pays ELSE 0 END) AS BIGINT) AS payments_{suffix}d")
        w_cols.append(f"SUM(CASE WHEN {cond} THEN amount END) AS revenue_{suffix}d")
        w_cols.append(f"CAST(SUM(CASE WHEN {cond} THEN srpays ELSE 0 END) AS BIGINT) AS revlines_{suffix}d")
    c_sums = [f"SUM(c_{suffix}) AS customers_{suffix}d" for suffix, _ in window_flags()]
    c_names = [f"cs.customers_{suffix}d" for suffix, _ in window_flags()]
    if tiers is None:
        tier_cte, tier_cols, tier_join = "", ", ".join(f"0 AS n_tier_{t.lower()}" for t in TIERS), ""
    else:
        counts = ", ".join(f"COUNT(CASE WHEN tr.loyalty_tier = '{t}' THEN 1 END) AS n_tier_{t.lower()}" for t in TIERS)
        tier_cte = f"""
tier AS (
    SELECT cw.merchant_id, {counts}
    FROM {users} AS cw JOIN {tiers} AS tr ON tr.user_id = cw.user_id
    WHERE cw.s_pays > 0
    GROUP BY cw.merchant_id
),"""
        tier_cols = ", ".join(f"COALESCE(tier.n_tier_{t.lower()}, 0) AS n_tier_{t.lower()}" for t in TIERS)
        tier_join = "LEFT JOIN tier ON tier.merchant_id = w.merchant_id"
    return f"""
WITH
spans AS (
    SELECT merchant_id, {span} AS span, SUM(s_pays) AS pays, SUM(sr_amount) AS amount,
           SUM(s_pays + r_pays) AS srpays
    FROM {days}
    GROUP BY merchant_id, {span}
),
w AS (
    SELECT merchant_id, {', '.join(w_cols)}
    FROM spans
    GROUP BY merchant_id
    HAVING SUM(srpays) > 0
),
cs AS (
    SELECT merchant_id, {', '.join(c_sums)}
    FROM {users}
    WHERE sr_pays > 0
    GROUP BY merchant_id
),{tier_cte}
out AS (
    SELECT w.*, {', '.join(c_names)}, {tier_cols}
    FROM w
    JOIN cs ON cs.merchant_id = w.merchant_id
    {tier_join}
)
SELECT * FROM out
"""


def window_combine_sql(partials: str, wallets: str) -> str:
    """The per-merchant sums of `window_partial_sql`'s rows (relation `partials`) over disjoint
    sets of users: `<measure>_{W}d` and `<measure>_prev_{W}d` (revenue null when no payment had
    an amount, 0 without payments), `n_tier_<tier>`; and `share_of_wallet` from the rows of
    `behavior.merchant_days.wallet_sql` (relation `wallets`): the merchant's spend in the year
    over its customers' spend in its categories (those with a line there in the year)."""
    cols = []
    for w in WINDOWS:
        for tag in ("", "prev_"):
            cols.append(f"CAST(SUM(payments_{tag}{w}d) AS BIGINT) AS payments_{tag}{w}d")
            cols.append(f"CAST(SUM(customers_{tag}{w}d) AS BIGINT) AS customers_{tag}{w}d")
            cols.append(f"CAST(CASE WHEN SUM(revlines_{tag}{w}d) = 0 THEN 0 ELSE SUM(revenue_{tag}{w}d) END AS DOUBLE)"
                        f" AS revenue_{tag}{w}d")
    tiers = [f"CAST(SUM(n_tier_{t.lower()}) AS BIGINT) AS n_tier_{t.lower()}" for t in TIERS]
    return f"""
WITH
sow AS (
    SELECT merchant_id, SUM(spend) AS sow_num, SUM(customers_spend) AS sow_den
    FROM {wallets}
    GROUP BY merchant_id
),
w AS (
    SELECT merchant_id, {', '.join(cols)}, {', '.join(tiers)}
    FROM {partials}
    GROUP BY merchant_id
)
SELECT w.*,
       CASE WHEN sow.sow_den > 0 THEN CAST(sow.sow_num AS DOUBLE) / CAST(sow.sow_den AS DOUBLE) END
           AS share_of_wallet
FROM w LEFT JOIN sow ON sow.merchant_id = w.merchant_id
ORDER BY w.merchant_id
"""


def windows_query(tiers: str | None) -> Query:
    """The `behavior.merchant_days` query of a part's window figures (with the tiers of the
    part's users: `tiers` is one of `over_merchant_days`' `per_user`)."""
    return lambda part: window_partial_sql(part.days, part.users, tiers and part.of_part(tiers))


def wallet_query(categories: str) -> Query:
    """The `behavior.merchant_days` query of a part's share-of-wallet figures, with the merchants'
    categories of the relation `categories` (`wallet_categories`)."""
    return lambda part: wallet_sql(part.lines, part.users, part.literal, categories, part.dialect)


WALLET_CATEGORIES = "_merchant_wallet_categories"


@contextmanager
def wallet_categories(engine: SqlEngine, payments: str, as_of: datetime) -> Iterator[str]:
    """The merchants' categories of share of wallet (`behavior.merchant_days.wallet_categories_sql`
    of `payments` as of `as_of`: one narrow read of the log), registered as a relation while the
    block runs; yields its name."""
    engine.register(WALLET_CATEGORIES, engine.arrow(
        wallet_categories_sql(payments, payments_literal(engine, payments, as_of), engine.dialect)))
    try:
        yield WALLET_CATEGORIES
    finally:
        engine.unregister(WALLET_CATEGORIES)


def combine_windows(engine: SqlEngine, partials: pa.Table, wallets: pa.Table) -> pd.DataFrame:
    """`window_combine_sql` of the parts' window and wallet figures, as pandas."""
    engine.register("_merchant_window_partials", partials)
    engine.register("_merchant_wallets", wallets)
    try:
        return engine.arrow(window_combine_sql("_merchant_window_partials", "_merchant_wallets")).to_pandas()
    finally:
        engine.unregister("_merchant_window_partials")
        engine.unregister("_merchant_wallets")


def check_profile_inputs(engine: SqlEngine, payments: str) -> None:
    """Raise SchemaError when `payments` lacks a column the merchant profiles read."""
    types = engine.column_types(payments)
    missing = [c for c in REQUIRED_COLUMNS if c not in types]
    if missing:
        raise SchemaError(f"{payments} lacks the payments column(s) {', '.join(missing)}; "
                          f"merchant profiles need {', '.join(REQUIRED_COLUMNS)}")


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
    `user_values` names (user_id, clv), `tiers` (user_id, loyalty_tier); both optional. One
    merchant-day table per user part (`parts`, the run's, or a set made for this call) for the
    loyalty, window and wallet figures. A missing payments column raises SchemaError, a naive
    `as_of` ValueError."""
    engine = as_engine(con)
    as_of_literal(as_of, dialect=engine.dialect)   # validates as_of
    check_profile_inputs(engine, payments)
    check_loyalty_inputs(engine, payments, user_values)
    with wallet_categories(engine, payments, as_of) as categories:
        t = over_merchant_days(engine, payments, as_of, {"loyalty": loyalty_query(user_values),
                                                         "windows": windows_query(tiers),
                                                         "wallet": wallet_query(categories)}, parts,
                               per_user=tuple(filter(None, [user_values, tiers])))
    return assemble_profiles(combine_loyalty(engine, t["loyalty"]).to_pandas(),
                             combine_windows(engine, t["windows"], t["wallet"]), as_of)


__all__ = ["AT_RISK_MIN_90D", "MERCHANT_SEGMENTS", "PROFILE_EXTRA_COLUMNS", "SHARE_OF_WALLET_DAYS", "TIERS",
           "WALLET_CATEGORIES", "WINDOWS", "WINDOW_COLUMNS", "assemble_profiles", "check_profile_inputs",
           "combine_windows", "merchant_profiles", "merchant_segment", "tier_column", "wallet_categories",
           "wallet_query", "window_combine_sql", "window_partial_sql", "windows_query"]
