"""The per-user feature table, computed with SQL over the payments log.

One row per user who made at least one successful payment before `as_of`; users whose
history before `as_of` holds only failed or refund lines are **excluded** (they have no
purchase to describe: no first purchase, no tenure, no BTYD summary). Rows are ordered by
`user_id`.

Point in time: the innermost scan keeps only lines with `paid_at < as_of`, so nothing at or
after `as_of` is ever read (DuckDB pushes the filter into the Parquet scan). An event exactly
at `as_of` is *not* read.

Vocabulary. The time unit is the day (UTC). A *purchase* is a successful payment: lines with
status `success`, grouped by `payment_id` (the lake always fills it). A successful payment's
time is the earliest of its successful lines (a payment's lines normally share one
`paid_at`), its channel the smallest by name of its lines' channels, so every payment has
exactly one time, one day and one channel. A *purchase day* is a distinct UTC calendar date
with at least one successful payment. *Refunds* are lines with status `refund` (amount
normally negative); *failed* lines have status `failed`; other statuses are ignored.

Columns (`FEATURE_COLUMNS`, in this order):

identity and time
- `user_id`
- `first_purchase_at`, `last_purchase_at`: times of the first / last successful payment.
- `tenure_days`: (as_of - first_purchase_at) in days, float.
- `recency_days`: (as_of - last_purchase_at) in days, float.

BTYD summary (feeds BG/NBD and Gamma-Gamma; calendar days, so `0 <= recency <= T`)
- `frequency`: number of distinct purchase days - 1 (repeat purchase days), integer >= 0.
- `recency`: calendar days between the first and the last purchase day (integer-valued float).
- `T`: calendar days between the first purchase day and as_of's UTC day (integer-valued
  float). With a midnight `as_of` (the usual case) T >= 1; with an intra-day `as_of` a user
  whose first purchase is on as_of's own day has T = 0.

volume
- `n_payments`: distinct successful payments. `n_lines`: successful lines.
- `n_items`, `n_categories`, `n_merchants`: distinct item_id / non-null category / merchant_id
  over successful lines (`n_merchants` is the merchant diversity).

monetary (DOUBLE, in the lake's reporting currency; the decimal sums are exact, then cast)
- `total_spend`: sum of `amount` over successful lines (null when every amount is null).
- `refund_amount`: sum of |amount| over refund lines (>= 0; 0 without refund lines; null
  when total_spend is null; refunds are stored with a negative amount, |amount| also
  accepts a refund line stored positive).
- `net_spend` = total_spend - refund_amount.
- `avg_payment_value` = total_spend / n_payments.
- `monetary_value`: the Gamma-Gamma input: the mean, over the REPEAT purchase days (every
  purchase day except the first), of the day's successful spend; null when frequency = 0.
  Refunds are not subtracted here: a refund line carries no link to the purchase it reverses
  and lands on its own day, and Gamma-Gamma needs positive transaction values.

trend (windows are exact timestamp windows ending at as_of, not calendar days)
- `spend_30d`, `spend_90d`: successful spend with paid_at in [as_of - 30d, as_of) /
  [as_of - 90d, as_of); 0 when no purchase in the window (null only if total_spend is null).
- `spend_prev_90d`: successful spend in [as_of - 180d, as_of - 90d).
- `spend_trend` = (spend_90d - spend_prev_90d) / (spend_prev_90d + 1): a damped relative
  change (+1 in currency units keeps it finite for new customers); > 0 means growing.
- `n_payments_30d`, `n_payments_90d`: successful payments in the same windows.

inter-purchase gaps (between consecutive distinct purchase days, in days)
- `mean_gap_days` (null with fewer than 2 purchase days; equals recency / frequency),
  `std_gap_days` (sample standard deviation; null with fewer than 3 purchase days),
  `max_gap_days` (null with fewer than 2 purchase days).

mix
- `top_category`: the category with the most successful lines; ties broken by higher spend,
  then by name (ascending). Null when every line has a null category.
- `top_category_share`: its lines / n_lines (lines without a category count in n_lines).
- `share_app`, `share_web`, `share_wap`, `share_qr`, `share_pos`, `share_other`: shares of
  successful payments by channel; they sum to 1. A null or unknown channel counts as `other`.
- `top_channel`: the channel with the most successful payments; ties broken by name.

failures, refunds and promotions
- `n_failed`: distinct payment_id with a failed line.
- `failure_rate` = n_failed / (n_failed + n_payments).
- `n_refunds`: refund lines. `refund_rate` = n_refunds / n_lines (by lines, not amount; it can
  exceed 1 when one purchase is refunded in several lines).
- `n_promotions_redeemed`: distinct promotion_id on successful lines.
- `promo_share`: share of successful payments with a promotion on at least one line.
  Both are null when the feature SQL is built with `promotions_redeemed=False` (for a
  relation without a `promotion_id` column).

Engines. The SQL is one statement of CTEs over one selection of the log (`lines`; DuckDB
materializes it for its consumers). Successful lines are aggregated once per (user, payment)
(`pay`, about half the lines); the volume, spend, window, channel and promotion figures
are one GROUP BY user over `pay`, and the day-level figures (BTYD summary, Gamma-Gamma
value, gaps) come from a narrow (user, day, spend) table and one LAG window over it. The
line-level distinct counts (items, merchants, promotions), the category mix and the small
failed / refund part are each one GROUP BY over `lines`. (Carrying every figure through the
(user, day) table was measured slower: the window then sorts ~20 columns.) Only standard SQL
is used (aggregates, CASE, LAG); the engine-specific bits (epoch microseconds of a timestamp,
a struct value for the arg-min of the top category, the timestamp literal) come from the
engine's `behavior.sql_dialect.Dialect`, so DuckDB and Spark run the same text
(`feature_sql(..., dialect="spark")`). Day numbers come from integer epoch arithmetic, so
neither the engine's session time zone nor DST affects days or windows.

Scale. On DuckDB a log of more than `PART_LINES` lines before as_of is processed in
user parts (ranges of user_id; `UserParts`): the lines are written once into a
temporary Parquet folder per part, one statement runs per part, and the parts' tables follow
one another in user_id order; a run writes one set for all its per-user queries (`parts=`).
Per-user figures need only that user's lines, and a part's intermediate tables fit in the
memory cap where the whole log's spilled to disk.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

from behavior.errors import SchemaError
from behavior.schema import CHANNELS
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

# Feature columns published in the profiles (bundle and API) under a name that says what they
# are: the BTYD `recency` (first to last purchase day) beside `recency_days` (days since the
# last purchase) reads as a contradiction. The API still answers to the old name, deprecated.
PROFILE_NAMES: dict[str, str] = {"recency": "purchase_span_days"}

FEATURE_COLUMNS: tuple[str, ...] = (
    "user_id",
    "first_purchase_at",
    "last_purchase_at",
    "tenure_days",
    "recency_days",
    "frequency",
    "recency",
    "T",
    "n_payments",
    "n_lines",
    "n_items",
    "n_categories",
    "n_merchants",
    "total_spend",
    "refund_amount",
    "net_spend",
    "avg_payment_value",
    "monetary_value",
    "spend_30d",
    "spend_90d",
    "spend_prev_90d",
    "spend_trend",
    "n_payments_30d",
    "n_payments_90d",
    "mean_gap_days",
    "std_gap_days",
    "max_gap_days",
    "top_category",
    "top_category_share",
    *(f"share_{c}" for c in CHANNELS),
    "top_channel",
    "n_failed",
    "failure_rate",
    "n_refunds",
    "refund_rate",
    "n_promotions_redeemed",
    "promo_share",
)

_COUNT_COLUMNS = (
    "frequency",
    "n_payments",
    "n_lines",
    "n_items",
    "n_categories",
    "n_merchants",
    "n_payments_30d",
    "n_payments_90d",
    "n_failed",
    "n_refunds",
    "n_promotions_redeemed",
)
_STRING_COLUMNS = ("user_id", "top_category", "top_channel")
_TIMESTAMP_COLUMNS = ("first_purchase_at", "last_purchase_at")


def _arrow_type(name: str) -> pa.DataType:
    if name in _STRING_COLUMNS:
        return pa.string()
    if name in _TIMESTAMP_COLUMNS:
        return pa.timestamp("us", tz="UTC")
    if name in _COUNT_COLUMNS:
        return pa.int64()
    return pa.float64()


# The Arrow schema of `user_features` (timestamps in UTC whatever the session time zone).
FEATURE_SCHEMA: pa.Schema = pa.schema([pa.field(c, _arrow_type(c)) for c in FEATURE_COLUMNS])

_US_PER_DAY = 86_400_000_000

# The payments columns the SQL reads (promotion_id is optional, see `feature_sql`).
_REQUIRED_COLUMNS = (
    "user_id",
    "payment_id",
    "item_id",
    "category",
    "merchant_id",
    "amount",
    "status",
    "channel",
    "paid_at",
)

def _day(us_expr: str) -> str:
    """The UTC day number (days since 1970-01-01) of an epoch-microseconds expression.

    Arithmetic on the epoch makes the day independent of the session time zone (a cast to
    DATE would use it). Exact: below 2**53 microseconds the division is correctly rounded and
    never reaches the next integer."""
    return f"CAST(FLOOR(({us_expr}) / {_US_PER_DAY}.0) AS BIGINT)"


def feature_sql(payments: str, as_of_literal: str, promotions_redeemed: bool = True,
                dialect: str | Dialect = "duckdb") -> str:
    """SQL text computing one row per user from the relation named `payments` (a view / table
    with the canonical payments columns), reading only rows with paid_at < as_of (point in time).

    `as_of_literal` is a SQL timestamp literal of the same kind as `paid_at` (see
    `as_of_literal`). With `promotions_redeemed=False` the statement never references
    `promotion_id` and the promotion features are NULL. `dialect` ("duckdb" or "spark")
    fills in the engine-specific templates; the rest of the text is the same.
    """
    d = get_dialect(dialect)
    _epoch_us = d.epoch_us.format
    _struct = d.struct_of
    as_of_us = _epoch_us(as_of_literal)
    cut30 = f"{as_of_us} - {30 * _US_PER_DAY}"
    cut90 = f"{as_of_us} - {90 * _US_PER_DAY}"
    cut180 = f"{as_of_us} - {180 * _US_PER_DAY}"
    channel_case = (
        "CASE WHEN channel IN (" + ", ".join(f"'{c}'" for c in CHANNELS) + ") THEN channel ELSE 'other' END"
    )
    if promotions_redeemed:
        promo_line = "promotion_id"
        pay_promo = "MAX(CASE WHEN promotion_id IS NOT NULL THEN 1 ELSE 0 END)"
        # Distinct promotions over the lines that have one (a small share): grouping every
        # successful line by (user, promotion_id) only to drop the NULL cost ~5% of the statement.
        promo_cte = f"""
-- Distinct promotions redeemed, from the successful lines with a promotion.
promo_stats AS (
    SELECT user_id, COUNT(DISTINCT promotion_id) AS n_promotions_redeemed
    FROM lines
    WHERE status = 'success' AND promotion_id IS NOT NULL
    GROUP BY user_id
),"""
        promo_join = "\nLEFT JOIN promo_stats AS p ON p.user_id = u.user_id"
        n_promos = "COALESCE(p.n_promotions_redeemed, 0)"
        promo_share = "CAST(u.n_promo_payments AS DOUBLE) / u.n_payments"
    else:
        promo_line = f"CAST(NULL AS {d.string_type}) AS promotion_id"
        pay_promo = "0"
        promo_cte = promo_join = ""
        n_promos = "CAST(NULL AS BIGINT)"
        promo_share = "CAST(NULL AS DOUBLE)"
    # Successful payments per channel, and the top channel (ties by name: the CASE tests the
    # channels in alphabetical order).
    pay_channels = ",\n        ".join(
        f"COUNT(CASE WHEN channel = '{c}' THEN 1 END) AS n_{c}" for c in CHANNELS
    )
    shares = ",\n    ".join(f"CAST(u.n_{c} AS DOUBLE) / u.n_payments AS share_{c}" for c in CHANNELS)
    max_channel = "GREATEST(" + ", ".join(f"u.n_{c}" for c in CHANNELS) + ")"
    top_channel = (
        "CASE "
        + " ".join(f"WHEN u.n_{c} = {max_channel} THEN '{c}'" for c in sorted(CHANNELS))
        + " END"
    )
    return f"""
WITH
-- The only read of the log. Point in time: nothing at or after as_of, filtered in the scan.
lines AS (
    SELECT
        user_id, payment_id, item_id, category, merchant_id, amount, status,
        channel,
        {promo_line},
        paid_at
    FROM {payments}
    WHERE paid_at < {as_of_literal}
),
-- One row per successful payment: its time (first line), lines, spend, channel, promotion.
pay AS (
    SELECT
        user_id, payment_id,
        MIN(paid_at) AS paid_at,
        COUNT(*) AS n_lines,
        SUM(amount) AS amount,
        MIN({channel_case}) AS channel,
        {pay_promo} AS has_promo
    FROM lines
    WHERE status = 'success'
    GROUP BY user_id, payment_id
),
pay_t AS (
    SELECT pay.*, {_epoch_us('paid_at')} AS ts_us FROM pay
),
-- Per user over the payments: volume, spend, trend windows (exact timestamps), channels.
pay_stats AS (
    SELECT
        user_id,
        MIN(paid_at) AS first_purchase_at,
        MAX(paid_at) AS last_purchase_at,
        COUNT(*) AS n_payments,
        CAST(SUM(n_lines) AS BIGINT) AS n_lines,
        SUM(amount) AS total_spend,
        SUM(CASE WHEN ts_us >= {cut30} THEN amount END) AS spend_30d,
        SUM(CASE WHEN ts_us >= {cut90} THEN amount END) AS spend_90d,
        SUM(CASE WHEN ts_us >= {cut180} AND ts_us < {cut90} THEN amount END) AS spend_prev_90d,
        COUNT(CASE WHEN ts_us >= {cut30} THEN 1 END) AS n_payments_30d,
        COUNT(CASE WHEN ts_us >= {cut90} THEN 1 END) AS n_payments_90d,
        COUNT(CASE WHEN has_promo = 1 THEN 1 END) AS n_promo_payments,
        {pay_channels}
    FROM pay_t
    GROUP BY user_id
),
-- One row per (user, purchase day) with the day's spend ...
days AS (
    SELECT
        user_id,
        {_day('ts_us')} AS day,
        SUM(amount) AS spend
    FROM pay_t
    GROUP BY user_id, {_day('ts_us')}
),
-- ... the previous purchase day of each purchase day (null on the first one) ...
days_lag AS (
    SELECT
        user_id, day, spend,
        LAG(day) OVER (PARTITION BY user_id ORDER BY day) AS prev_day
    FROM days
),
-- ... and per user: the BTYD summary, the Gamma-Gamma value and the gaps.
day_stats AS (
    SELECT
        user_id,
        COUNT(*) AS n_days,
        MIN(day) AS first_day,
        MAX(day) AS last_day,
        -- Gamma-Gamma: mean spend of the repeat purchase days (the first day excluded).
        -- Both engines' AVG and STDDEV_SAMP differ in the last bits (DuckDB's AVG of a DECIMAL
        -- and its streaming variance; Spark's AVG of a DECIMAL is rounded to 6 places): exact
        -- integer/decimal sums and one rounding per operation give both the same double, which
        -- the models' binning needs to see the same values on either engine.
        CAST(SUM(CASE WHEN prev_day IS NOT NULL THEN spend END) AS DOUBLE)
            / COUNT(CASE WHEN prev_day IS NOT NULL THEN spend END) AS monetary_value,
        AVG(day - prev_day) AS mean_gap_days,
        CASE WHEN COUNT(prev_day) >= 2 THEN SQRT(
            CAST(COUNT(prev_day) * SUM((day - prev_day) * (day - prev_day))
                 - SUM(day - prev_day) * SUM(day - prev_day) AS DOUBLE)
            / CAST(COUNT(prev_day) * (COUNT(prev_day) - 1) AS DOUBLE)) END AS std_gap_days,
        MAX(day - prev_day) AS max_gap_days
    FROM days_lag
    GROUP BY user_id
),
-- Failed payments and refund lines (a small share of the log).
other AS (
    SELECT
        user_id,
        COUNT(DISTINCT CASE WHEN status = 'failed' THEN payment_id END) AS n_failed,
        COUNT(CASE WHEN status = 'refund' THEN 1 END) AS n_refunds,
        SUM(CASE WHEN status = 'refund' THEN ABS(amount) END) AS refund_amount
    FROM lines
    WHERE status IN ('failed', 'refund')
    GROUP BY user_id
),
-- Distinct counts over successful lines (they do not survive the per-payment aggregation).
line_stats AS (
    SELECT
        user_id,
        COUNT(DISTINCT item_id) AS n_items,
        COUNT(DISTINCT merchant_id) AS n_merchants
    FROM lines
    WHERE status = 'success'
    GROUP BY user_id
),{promo_cte}
-- Category mix: lines and spend per (user, category) ...
cats AS (
    SELECT
        user_id, category,
        COUNT(*) AS n_lines,
        SUM(amount) AS spend
    FROM lines
    WHERE status = 'success' AND category IS NOT NULL
    GROUP BY user_id, category
),
-- ... and the top one per user: the smallest key (most lines, then highest spend with a
-- null spend last, then category name); the key is unique because category is.
cat_stats AS (
    SELECT
        user_id,
        COUNT(*) AS n_categories,
        MIN({_struct(
            neg_lines="-n_lines",
            spend_missing="CASE WHEN spend IS NULL THEN 1 ELSE 0 END",
            neg_spend="-COALESCE(CAST(spend AS DOUBLE), 0)",
            category="category",
            n_lines="n_lines",
        )}) AS top
    FROM cats
    GROUP BY user_id
)
SELECT
    u.user_id,
    u.first_purchase_at,
    u.last_purchase_at,
    CAST({as_of_us} - {_epoch_us('u.first_purchase_at')} AS DOUBLE) / {_US_PER_DAY} AS tenure_days,
    CAST({as_of_us} - {_epoch_us('u.last_purchase_at')} AS DOUBLE) / {_US_PER_DAY} AS recency_days,
    d.n_days - 1 AS frequency,
    CAST(d.last_day - d.first_day AS DOUBLE) AS recency,
    CAST({_day(as_of_us)} - d.first_day AS DOUBLE) AS T,
    u.n_payments,
    u.n_lines,
    l.n_items,
    COALESCE(c.n_categories, 0) AS n_categories,
    l.n_merchants,
    CAST(u.total_spend AS DOUBLE) AS total_spend,
    CAST(CASE WHEN u.total_spend IS NULL THEN NULL ELSE COALESCE(o.refund_amount, 0) END AS DOUBLE)
        AS refund_amount,
    CAST(u.total_spend - COALESCE(o.refund_amount, 0) AS DOUBLE) AS net_spend,
    CAST(u.total_spend AS DOUBLE) / u.n_payments AS avg_payment_value,
    CAST(d.monetary_value AS DOUBLE) AS monetary_value,
    CAST(CASE WHEN u.total_spend IS NULL THEN NULL ELSE COALESCE(u.spend_30d, 0) END AS DOUBLE) AS spend_30d,
    CAST(CASE WHEN u.total_spend IS NULL THEN NULL ELSE COALESCE(u.spend_90d, 0) END AS DOUBLE) AS spend_90d,
    CAST(CASE WHEN u.total_spend IS NULL THEN NULL ELSE COALESCE(u.spend_prev_90d, 0) END AS DOUBLE)
        AS spend_prev_90d,
    CASE WHEN u.total_spend IS NULL THEN NULL ELSE
        CAST(COALESCE(u.spend_90d, 0) - COALESCE(u.spend_prev_90d, 0) AS DOUBLE)
        / (CAST(COALESCE(u.spend_prev_90d, 0) AS DOUBLE) + 1) END AS spend_trend,
    u.n_payments_30d,
    u.n_payments_90d,
    CAST(d.mean_gap_days AS DOUBLE) AS mean_gap_days,
    CAST(d.std_gap_days AS DOUBLE) AS std_gap_days,
    CAST(d.max_gap_days AS DOUBLE) AS max_gap_days,
    c.top.category AS top_category,
    CAST(c.top.n_lines AS DOUBLE) / u.n_lines AS top_category_share,
    {shares},
    {top_channel} AS top_channel,
    COALESCE(o.n_failed, 0) AS n_failed,
    CAST(COALESCE(o.n_failed, 0) AS DOUBLE) / (COALESCE(o.n_failed, 0) + u.n_payments) AS failure_rate,
    COALESCE(o.n_refunds, 0) AS n_refunds,
    CAST(COALESCE(o.n_refunds, 0) AS DOUBLE) / u.n_lines AS refund_rate,
    {n_promos} AS n_promotions_redeemed,
    {promo_share} AS promo_share
FROM pay_stats AS u
JOIN day_stats AS d ON d.user_id = u.user_id
JOIN line_stats AS l ON l.user_id = u.user_id
LEFT JOIN cat_stats AS c ON c.user_id = u.user_id
LEFT JOIN other AS o ON o.user_id = u.user_id{promo_join}
ORDER BY u.user_id
"""


def rfm_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """`feature_sql`'s user_id, recency_days, n_payments and net_spend (what
    `behavior.segments.rfm_scores` ranks), the same users and the same values, from the two
    aggregations they need: the per-payment and per-user sums of `feature_sql` and its refunds.
    `feature_sql` computes every column of its row even when only these are selected (its joins
    keep them), several times the work of these three."""
    d = get_dialect(dialect)
    as_of_us = d.epoch_us.format(as_of_literal)
    return f"""
WITH pay AS (
    SELECT user_id, MIN(paid_at) AS paid_at, SUM(amount) AS amount
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status = 'success'
    GROUP BY user_id, payment_id
),
u AS (
    SELECT user_id, MAX(paid_at) AS last_purchase_at, COUNT(*) AS n_payments, SUM(amount) AS total_spend
    FROM pay
    GROUP BY user_id
),
o AS (
    SELECT user_id, SUM(ABS(amount)) AS refund_amount
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status = 'refund'
    GROUP BY user_id
)
SELECT
    u.user_id,
    CAST({as_of_us} - {d.epoch_us.format('u.last_purchase_at')} AS DOUBLE) / {_US_PER_DAY} AS recency_days,
    u.n_payments,
    CAST(u.total_spend - COALESCE(o.refund_amount, 0) AS DOUBLE) AS net_spend
FROM u
LEFT JOIN o ON o.user_id = u.user_id
ORDER BY u.user_id
"""


def btyd_summary_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """SQL text of the BTYD summary alone: (user_id, frequency, recency, T) with the definitions
    of `feature_sql` (a payment's day is the day of its first successful line), for the users
    of the feature table, ordered by user_id. It reads four columns of the log and skips
    every other aggregate: the loyalty holdout needs only these."""
    d = get_dialect(dialect)
    as_of_us = d.epoch_us.format(as_of_literal)
    return f"""
WITH pay AS (
    SELECT user_id, MIN({d.epoch_us.format('paid_at')}) AS ts_us
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status = 'success'
    GROUP BY user_id, payment_id
),
days AS (
    SELECT DISTINCT user_id, {_day('ts_us')} AS day FROM pay
)
SELECT
    user_id,
    COUNT(*) - 1 AS frequency,
    CAST(MAX(day) - MIN(day) AS DOUBLE) AS recency,
    CAST({_day(as_of_us)} - MIN(day) AS DOUBLE) AS T
FROM days
GROUP BY user_id
ORDER BY user_id
"""


def btyd_summary(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str, as_of: datetime,
                 parts: UserParts | None = None) -> pa.Table:
    """`btyd_summary_sql` run on `con`: the columns user_id, frequency, recency, T of
    `user_features(con, payments, as_of)`, with the same rows. `parts`: see `user_features`."""
    _check_as_of(as_of)
    engine = as_engine(con)
    d = engine.dialect
    schema = pa.schema([FEATURE_SCHEMA.field(c) for c in ("user_id", "frequency", "recency", "T")])
    return _first(by_user_part(engine, payments, [as_of], ["user_id", "payment_id", "status", "paid_at"],
                                    lambda lines, lit: engine.arrow(btyd_summary_sql(lines, lit, d)).cast(schema),
                                    parts))


# DuckDB: above this many lines before as_of a per-user query runs in user parts of about
# this many lines. Measured at 100M lines on two threads within the 3 GB cap, the feature
# statement on one part: 5M lines 3.7 s, 10M 8.0 s, 20M 21.6 s (it spills); in one piece 231 s.
# Writing the parts costs ~0.5 s per million lines, so above this size the cost per line is flat.
# It is also the threshold: at most PART_LINES lines are read in one piece and nothing is written.
# Just above it the feature stage is slower with parts than in one piece (the write is its), but
# the run's later per-user queries (loyalty holdout, merchants, promotion starts) gain more than
# that: measured at 6.0M lines, 10% less in all (docs/performance.md, "User parts").
PART_LINES = 5_000_000
# Lines sampled for the user_id bounds of the parts (their sizes are then within a few per
# cent of each other).
_SAMPLE_LINES = 100_000


def part_count(engine: SqlEngine, payments: str, as_of_literal: str) -> int:
    """How many user parts of about PART_LINES lines the log `payments` before as_of
    splits into: 1 (no split) for a smaller log or an engine other than DuckDB."""
    if getattr(engine, "name", "duckdb") != "duckdb":
        return 1
    lines = engine.arrow(f"SELECT count(*) AS n FROM {payments} WHERE paid_at < {as_of_literal}")["n"][0].as_py()
    return max(1, -(-lines // PART_LINES))


class UserParts:
    """The lines of `payments` before `as_of`, split by ranges of user_id into parts of about
    PART_LINES lines, for per-user queries on a big log (DuckDB only; elsewhere, or for a
    small log, the one part is `payments` itself).

    The parts are written when first asked for (`relations`), once: the lines before as_of
    (the payments columns the per-user queries read) go to a temporary Parquet folder per
    part (a range of user_id) in DuckDB's `temp_directory`, and each query reads its part's
    folder with its own as_of filter. So a run's per-user queries before its as_of (the
    feature table, the loyalty holdout, merchant loyalty, the promotion starts) share one
    write, and the work stays linear in the lines however many parts there are (a filter on
    the log would rescan it per part). `close()` (or the `with` block's end) removes them."""

    def __init__(self, engine: SqlEngine, payments: str, as_of: datetime) -> None:
        _check_as_of(as_of)
        self.engine, self.payments, self.as_of = engine, payments, as_of
        self.types = engine.column_types(payments)
        self.literal = as_of_literal(as_of, tz_aware=engine.dialect.is_tz_aware(self.types["paid_at"]),
                                     dialect=engine.dialect)
        self.columns = [c for c in (*_REQUIRED_COLUMNS, "promotion_id") if c in self.types]
        self._folder: tempfile.TemporaryDirectory | None = None
        self._parts: list[tuple[int, str]] | None = None
        self._bounds: list = []   # the user_id where each part after the first starts

    def relations(self) -> list[tuple[int, str]]:
        """(part, relation) of each non-empty part; [(0, payments)] when the log is not split."""
        if self._parts is None:
            k = part_count(self.engine, self.payments, self.literal)
            try:
                self._parts = [(0, self.payments)] if k == 1 else self._write(k)
            except BaseException:
                self.close()   # (no half-written copy of payment lines stays behind)
                raise
        return self._parts

    @property
    def written(self) -> bool:
        """Whether `relations()` has been asked for (the parts are on disk, or the log is one part)."""
        return self._parts is not None

    @property
    def count(self) -> int:
        """The parts (1: not split, or not written yet)."""
        return len(self._bounds) + 1

    def user_range(self, part: int) -> tuple:
        """The user_ids part `part` (of `relations()`) holds: from the first (None: the lowest id)
        up to, not including, the second (None: past the highest)."""
        return (self._bounds[part - 1] if part > 0 else None,
                self._bounds[part] if part < len(self._bounds) else None)

    def part_of(self, user_id: str) -> str:
        """SQL of the part (0 .. count - 1) of the user id expression `user_id`: how many
        part bounds are <= it (a binary search written as nested CASEs)."""
        def literal(bound) -> str:   # (a string id, or a number)
            return self.engine.dialect.literal(bound) if isinstance(bound, str) else repr(bound)

        def search(lo: int, hi: int) -> str:   # the part is in [lo, hi]
            if lo == hi:
                return str(lo)
            mid = (lo + hi + 1) // 2
            return (f"CASE WHEN {user_id} < {literal(self._bounds[mid - 1])} THEN {search(lo, mid - 1)} "
                    f"ELSE {search(mid, hi)} END")

        return search(0, self.count - 1)

    def covers(self, payments: str, as_ofs: list[datetime], columns: list[str]) -> None:
        """Raise ValueError unless these parts can answer a query of `columns` of `payments`
        before each of `as_ofs`."""
        if payments != self.payments:
            raise ValueError(f"the user parts are of {self.payments}, not of {payments}")
        later = [a for a in as_ofs if a > self.as_of]
        if later:
            raise ValueError(f"the user parts hold the lines before {self.as_of.isoformat()}, "
                             f"not before {max(later).isoformat()}")
        if any(c not in self.columns for c in columns):
            raise ValueError(f"the user parts lack the column(s) {sorted(set(columns) - set(self.columns))}")

    def _write(self, k: int) -> list[tuple[int, str]]:
        """Buckets are ranges of user_id of about equal lines (bounds from a sample of the lines),
        so the parts' tables, each ordered by user_id, are in user_id order one after another:
        no sort and no gather of the whole table afterwards (a gather of 45 columns of 5.9M
        users in a hashed order took ~8 s, out of the cache)."""
        d = self.engine.dialect
        quantiles = ", ".join(str(i / k) for i in range(1, k))
        bounds = self.engine.arrow(
            f"SELECT quantile_disc(user_id, [{quantiles}]) AS b FROM (SELECT user_id FROM (SELECT user_id FROM "
            f"{self.payments} WHERE paid_at < {self.literal}) USING SAMPLE reservoir({_SAMPLE_LINES} ROWS) "
            "REPEATABLE (7))")["b"][0].as_py()
        self._bounds = sorted(set(bounds) - {None})
        # DuckDB's spill folder when it is set to a path (a run's: <data home>/tmp); the system's
        # temporary folder for a plain connection (whose default is a relative '.tmp').
        spill = self.engine.arrow("SELECT current_setting('temp_directory') AS d")["d"][0].as_py()
        spill = spill if spill and Path(spill).is_absolute() else None
        if spill:
            Path(spill).mkdir(parents=True, exist_ok=True)
        # named with the pid: a killed process's parts are swept by the next command (pipelines.lake)
        self._folder = tempfile.TemporaryDirectory(prefix=f"parts-{os.getpid()}-", dir=spill)
        folder = self._folder.name
        self.engine.execute(
            f"COPY (SELECT {', '.join(self.columns)}, {self.part_of('user_id')} AS part FROM {self.payments} "
            f"WHERE paid_at < {self.literal}) TO {d.literal(folder)} (FORMAT parquet, PARTITION_BY (part))")
        return [(i, f"read_parquet({d.literal(f'{p}/*.parquet')}, hive_partitioning = false)")
                for i, p in ((i, Path(folder) / f"part={i}") for i in range(self.count)) if p.is_dir()]

    def close(self) -> None:
        if self._folder is not None:
            self._folder.cleanup()
        self._folder, self._parts, self._bounds = None, None, []

    def __enter__(self) -> "UserParts":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def by_user_part(engine: SqlEngine, payments: str, as_ofs: list[datetime], columns: list[str],
                 query, parts: UserParts | None = None) -> Iterator[pa.Table]:
    """`query(relation, literal)` (an Arrow table with `user_id`, one row per user, from the
    lines of `relation` before that as_of literal) for each of `as_ofs` in turn, on `parts`
    (`UserParts` before at least the latest as_of; by default a set made for this call and
    removed when the generator ends or is closed). `query` orders its table by user_id; over
    several parts the parts' tables, in part order, are then in user_id order too."""
    own = parts is None
    if own:
        parts = UserParts(engine, payments, max(as_ofs))
    try:
        parts.covers(payments, as_ofs, columns)
        relations = parts.relations()
        tz_aware = engine.dialect.is_tz_aware(parts.types["paid_at"])
        for as_of in as_ofs:
            literal = as_of_literal(as_of, tz_aware=tz_aware, dialect=engine.dialect)
            if len(relations) == 1:
                yield query(relations[0][1], literal)
                continue
            yield pa.concat_tables([query(relation, literal) for _, relation in relations])   # user_id ranges, in order
    finally:
        if own:
            parts.close()


def _first(tables: Iterator[pa.Table]) -> pa.Table:
    with closing(tables):   # (the parts are removed at once)
        return next(tables)


def as_of_literal(as_of: datetime, tz_aware: bool = True, dialect: str | Dialect = "duckdb") -> str:
    """A SQL timestamp literal for `as_of` (tz-aware; converted to UTC).

    `tz_aware=True` gives an instant literal (DuckDB TIMESTAMPTZ, Spark TIMESTAMP; for a
    timestamp-with-time-zone `paid_at`, the canonical type); False a timestamp literal without
    time zone holding the UTC wall time (for a `paid_at` stored without time zone, read as UTC)."""
    _check_as_of(as_of)
    d = get_dialect(dialect)
    utc = as_of.astimezone(timezone.utc)
    text = utc.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    return (d.timestamp_tz if tz_aware else d.timestamp_naive).format(text)


def _check_as_of(as_of: datetime) -> None:
    if not isinstance(as_of, datetime):
        raise TypeError(f"as_of must be a datetime, got {type(as_of).__name__}")
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError(
            f"as_of {as_of.isoformat()} is naive; pass a tz-aware datetime, e.g. "
            "datetime(2025, 1, 1, tzinfo=timezone.utc)"
        )


def user_features(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str, as_of: datetime,
                  parts: UserParts | None = None) -> pa.Table:
    """Run feature_sql on `con` (where `payments` names a view/table) and return an Arrow table.

    `con` is a DuckDB connection or any `SqlEngine` (e.g. the Spark engine): the SQL is
    rendered in its dialect. `as_of` must be tz-aware (a naive datetime raises ValueError).
    The promotion features are NULL when the relation has no `promotion_id` column. The table
    has `FEATURE_SCHEMA` (columns `FEATURE_COLUMNS`); one row per user with a successful
    payment before `as_of`, ordered by user_id. `parts`: the `UserParts` of `payments` to read
    (a run's, shared by its per-user queries); by default a set made for this call.
    """
    return _first(user_features_at(con, payments, [as_of], parts))


def user_features_at(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str,
                     as_ofs: list[datetime], parts: UserParts | None = None) -> Iterator[pa.Table]:
    """`user_features` at each of `as_ofs` in turn, one table at a time, from one set of user
    parts for a big log (`parts`, or one written for the latest as_of): e.g. the
    population's features at each promotion's start. Close the generator if you stop early."""
    for as_of in as_ofs:
        _check_as_of(as_of)
    engine = as_engine(con)
    types = engine.column_types(payments)
    missing = [c for c in _REQUIRED_COLUMNS if c not in types]
    if missing:
        raise SchemaError(
            f"{payments} lacks the payments column(s) {', '.join(missing)}; "
            f"the features need {', '.join(_REQUIRED_COLUMNS)} (and optionally promotion_id)"
        )
    if not as_ofs:
        return iter(())
    d = engine.dialect
    promotions_redeemed = "promotion_id" in types
    columns = [*_REQUIRED_COLUMNS, *(["promotion_id"] if promotions_redeemed else [])]
    return by_user_part(engine, payments, as_ofs, columns, lambda lines, literal: engine.arrow(feature_sql(
        lines, literal, promotions_redeemed=promotions_redeemed, dialect=d,
    )).cast(FEATURE_SCHEMA), parts)


__all__ = ["FEATURE_COLUMNS", "FEATURE_SCHEMA", "PART_LINES", "PROFILE_NAMES", "UserParts", "as_of_literal", "btyd_summary", "btyd_summary_sql",
           "by_user_part", "feature_sql", "part_count", "rfm_sql", "user_features", "user_features_at"]
