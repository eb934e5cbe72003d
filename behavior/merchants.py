"""Merchant loyalty: one row per merchant, computed with SQL over the payments log.

The "reputation database of merchants": how many customers a merchant has, how much they
spend, how often they come back, how valuable they are, and how often paying there fails or
is refunded.

Point in time: the innermost scan keeps only lines with `paid_at < as_of`; nothing at or after
`as_of` is read (DuckDB pushes the filter into the Parquet scan).

Vocabulary (as in `behavior.features`): the time unit is the day (UTC). Statuses are
`success`, `failed` and `refund`; lines with any other status are ignored. A *payment* is a
(user_id, payment_id) pair; a *successful payment* at a merchant is one with a successful line
there, its time the earliest of those lines. A *purchase day* is a UTC calendar date with a
successful payment. A null `merchant_id` counts as `unknown` (the lake's default).

One row per merchant with at least one success, failed or refund line before `as_of`, ordered
by `merchant_id`. Columns (`MERCHANT_COLUMNS`, in this order):

- `merchant_id`
- `customers`: distinct users with a successful payment at the merchant (0 for a merchant
  with only failed or refund lines).
- `payments`: successful payments at the merchant.
- `revenue`: net revenue, the sum of `amount` over the merchant's successful and refund lines
  (refunds are stored negative, so they reduce it); 0 when the merchant has neither kind of
  line, null when it has some but every amount is null (a lake without amounts). DOUBLE, in
  the lake's reporting currency; the decimal sum is exact, then cast.
- `repeat_customer_rate`: customers with purchases on at least 2 distinct days at the merchant
  / customers; null when customers = 0.
- `retention_90d`: the 90-day repeat rate of a recent acquisition cohort. The cohort is the
  customers whose first successful payment at the merchant (time `t0`) lies in
  [as_of - 180d, as_of - 90d) (exact timestamps), so that their whole 90-day window
  [t0, t0 + 90d) is observed before as_of. A cohort customer is retained when they have a
  successful payment at the merchant on a later day than t0's day and before t0 + 90d.
  retention_90d = retained / cohort; null when the cohort is empty.
- `mean_customer_clv`: the mean of `user_values.clv` over the merchant's customers that have a
  value (null values and customers missing from `user_values` are left out); null without
  `user_values` or when none of the customers has a value.
- `failure_rate`: failed payments / attempted payments, where failed payments are the
  payments with a failed line at the merchant and attempted = failed + successful payments
  (a payment with both kinds of line counts in both, as in the per-user features); null only
  when the merchant has neither (refund lines only). 1.0 for a merchant whose payments all
  failed.
- `refund_rate`: refund lines / successful lines (by lines, not amount; it can exceed 1);
  null when the merchant has no successful line.
- `first_payment_at`, `last_payment_at`: times of the first / last successful payment at the
  merchant; null without one.

Engines. One statement of CTEs; the log is read once (`lines`) and reduced to one row per
(merchant, user, payment, status) (`pay`), from which every figure is an aggregate:
merchant-level counts and sums straight from `pay`, customer-level figures from a narrow
(merchant, user, day) table. Retention joins only the small acquisition cohort back to that
table (a hash join, no sort). Standard SQL only (aggregates, CASE, joins); the only
dialect-specific pieces (the epoch-microseconds function, which keeps days and windows
independent of the session time zone, and the timestamp literal) come from the engine's
`behavior.sql_dialect.Dialect`, so DuckDB and Spark run the same text.
"""

from __future__ import annotations

from contextlib import nullcontext
from datetime import datetime

import duckdb
import pyarrow as pa

from behavior.errors import InputError, SchemaError
from behavior.features import UserParts, as_of_literal
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

MERCHANT_COLUMNS: tuple[str, ...] = (
    "merchant_id",
    "customers",
    "payments",
    "revenue",
    "repeat_customer_rate",
    "retention_90d",
    "mean_customer_clv",
    "failure_rate",
    "refund_rate",
    "first_payment_at",
    "last_payment_at",
)

MERCHANT_SCHEMA: pa.Schema = pa.schema(
    [
        pa.field("merchant_id", pa.string()),
        pa.field("customers", pa.int64()),
        pa.field("payments", pa.int64()),
        pa.field("revenue", pa.float64()),
        pa.field("repeat_customer_rate", pa.float64()),
        pa.field("retention_90d", pa.float64()),
        pa.field("mean_customer_clv", pa.float64()),
        pa.field("failure_rate", pa.float64()),
        pa.field("refund_rate", pa.float64()),
        pa.field("first_payment_at", pa.timestamp("us", tz="UTC")),
        pa.field("last_payment_at", pa.timestamp("us", tz="UTC")),
    ]
)

RETENTION_DAYS = 90

_US_PER_DAY = 86_400_000_000

# The payments columns the SQL reads.
_REQUIRED_COLUMNS = ("user_id", "payment_id", "merchant_id", "amount", "status", "paid_at")

def _day(us_expr: str) -> str:
    """The UTC day number of an epoch-microseconds expression (see `behavior.features`)."""
    return f"CAST(FLOOR(({us_expr}) / {_US_PER_DAY}.0) AS BIGINT)"


def _partial_ctes(payments: str, as_of_literal: str, user_values: str | None, dialect: str | Dialect) -> str:
    """The CTEs up to `part`: one row per merchant of additive partial figures over the users
    of `payments` (every figure below is a sum, count, min or max over users, so the partials
    of disjoint sets of users combine into the whole log's)."""
    _epoch_us = get_dialect(dialect).epoch_us.format
    as_of_us = _epoch_us(as_of_literal)
    cohort_lo = f"{as_of_us} - {2 * RETENTION_DAYS * _US_PER_DAY}"
    cohort_hi = f"{as_of_us} - {RETENTION_DAYS * _US_PER_DAY}"
    if user_values is None:
        clv_cte, clv_cols, clv_join = "", "CAST(NULL AS DOUBLE) AS clv_sum, 0 AS clv_n", ""
    else:
        clv_cte = f"""
-- The customers' values (CLV) summed per merchant, for the mean.
clv AS (
    SELECT cu.merchant_id, SUM(CAST(v.clv AS DOUBLE)) AS clv_sum, COUNT(v.clv) AS clv_n
    FROM cu JOIN {user_values} AS v ON v.user_id = cu.user_id
    GROUP BY cu.merchant_id
),"""
        clv_cols = "v.clv_sum, COALESCE(v.clv_n, 0) AS clv_n"
        clv_join = "LEFT JOIN clv AS v ON v.merchant_id = m.merchant_id"
    return f"""
-- The only read of the log. Point in time: nothing at or after as_of, filtered in the scan.
lines AS (
    SELECT
        COALESCE(merchant_id, 'unknown') AS merchant_id,
        user_id, payment_id, amount, status, paid_at
    FROM {payments}
    WHERE paid_at < {as_of_literal}
),
-- One row per (merchant, user, payment, status): its first time, lines and amount.
pay AS (
    SELECT
        merchant_id, user_id, payment_id, status,
        MIN(paid_at) AS paid_at,
        COUNT(*) AS n_lines,
        SUM(amount) AS amount
    FROM lines
    WHERE status IN ('success', 'failed', 'refund')
    GROUP BY merchant_id, user_id, payment_id, status
),
-- Per merchant: payments, failures, lines, revenue and the first / last payment.
m AS (
    SELECT
        merchant_id,
        COUNT(CASE WHEN status = 'success' THEN 1 END) AS payments,
        COUNT(CASE WHEN status = 'failed' THEN 1 END) AS n_failed,
        SUM(CASE WHEN status = 'success' THEN n_lines ELSE 0 END) AS success_lines,
        SUM(CASE WHEN status = 'refund' THEN n_lines ELSE 0 END) AS refund_lines,
        SUM(CASE WHEN status IN ('success', 'refund') THEN amount END) AS revenue,
        MIN(CASE WHEN status = 'success' THEN paid_at END) AS first_payment_at,
        MAX(CASE WHEN status = 'success' THEN paid_at END) AS last_payment_at
    FROM pay
    GROUP BY merchant_id
),
-- One row per (merchant, customer, purchase day) with the day's first payment time ...
cd AS (
    SELECT merchant_id, user_id, {_day(_epoch_us('paid_at'))} AS day, MIN({_epoch_us('paid_at')}) AS t_us
    FROM pay
    WHERE status = 'success'
    GROUP BY merchant_id, user_id, {_day(_epoch_us('paid_at'))}
),
-- ... one row per (merchant, customer): purchase days and the first purchase ...
cu AS (
    SELECT merchant_id, user_id, COUNT(*) AS n_days, MIN(day) AS first_day, MIN(t_us) AS first_us
    FROM cd
    GROUP BY merchant_id, user_id
),
-- ... the acquisition cohort: first purchase in [as_of - 180d, as_of - 90d) ...
cohort AS (
    SELECT merchant_id, user_id, first_day, first_us
    FROM cu
    WHERE first_us >= {cohort_lo} AND first_us < {cohort_hi}
),
-- ... and its customers who came back on a later day within 90 days.
retained AS (
    SELECT c.merchant_id, c.user_id
    FROM cohort AS c JOIN cd ON cd.merchant_id = c.merchant_id AND cd.user_id = c.user_id
    WHERE cd.day > c.first_day AND cd.t_us < c.first_us + {RETENTION_DAYS * _US_PER_DAY}
    GROUP BY c.merchant_id, c.user_id
),
c AS (
    SELECT merchant_id, COUNT(*) AS customers, COUNT(CASE WHEN n_days >= 2 THEN 1 END) AS repeaters
    FROM cu
    GROUP BY merchant_id
),
r AS (
    SELECT
        cohort.merchant_id,
        COUNT(*) AS cohort_size,
        COUNT(retained.user_id) AS n_retained
    FROM cohort LEFT JOIN retained
        ON retained.merchant_id = cohort.merchant_id AND retained.user_id = cohort.user_id
    GROUP BY cohort.merchant_id
),{clv_cte}
part AS (
    SELECT
        m.merchant_id, m.payments, m.n_failed, m.success_lines, m.refund_lines, m.revenue,
        m.first_payment_at, m.last_payment_at,
        COALESCE(c.customers, 0) AS customers, COALESCE(c.repeaters, 0) AS repeaters,
        COALESCE(r.cohort_size, 0) AS cohort_size, COALESCE(r.n_retained, 0) AS n_retained,
        {clv_cols}
    FROM m
    LEFT JOIN c ON c.merchant_id = m.merchant_id
    LEFT JOIN r ON r.merchant_id = m.merchant_id
    {clv_join}
)"""


def merchant_partial_sql(payments: str, as_of_literal: str, user_values: str | None = None,
                         dialect: str | Dialect = "duckdb") -> str:
    """SQL text of one row per merchant of partial figures (`payments`, `n_failed`,
    `success_lines`, `refund_lines`, `revenue`, `first_payment_at`, `last_payment_at`,
    `customers`, `repeaters`, `cohort_size`, `n_retained`, `clv_sum`, `clv_n`) over the users
    of `payments`: `merchant_combine_sql` over the partials of disjoint sets of users (e.g.
    user parts) gives `merchant_sql` of the whole log. Arguments as `merchant_sql`."""
    return f"WITH{_partial_ctes(payments, as_of_literal, user_values, dialect)}\nSELECT * FROM part"


def merchant_combine_sql(partials: str) -> str:
    """SQL text of `MERCHANT_COLUMNS` from the relation named `partials`: the rows of
    `merchant_partial_sql` over disjoint sets of users, summed per merchant."""
    return f"""
SELECT
    merchant_id,
    CAST(SUM(customers) AS BIGINT) AS customers,
    CAST(SUM(payments) AS BIGINT) AS payments,
    CAST(CASE WHEN SUM(success_lines) + SUM(refund_lines) = 0 THEN 0 ELSE SUM(revenue) END AS DOUBLE) AS revenue,
    CASE WHEN SUM(customers) = 0 THEN NULL
         ELSE CAST(SUM(repeaters) AS DOUBLE) / SUM(customers) END AS repeat_customer_rate,
    CASE WHEN SUM(cohort_size) = 0 THEN NULL
         ELSE CAST(SUM(n_retained) AS DOUBLE) / SUM(cohort_size) END AS retention_90d,
    CASE WHEN SUM(clv_n) = 0 THEN NULL ELSE SUM(clv_sum) / SUM(clv_n) END AS mean_customer_clv,
    CASE WHEN SUM(n_failed) + SUM(payments) = 0 THEN NULL
         ELSE CAST(SUM(n_failed) AS DOUBLE) / (SUM(n_failed) + SUM(payments)) END AS failure_rate,
    CASE WHEN SUM(success_lines) = 0 THEN NULL
         ELSE CAST(SUM(refund_lines) AS DOUBLE) / SUM(success_lines) END AS refund_rate,
    MIN(first_payment_at) AS first_payment_at,
    MAX(last_payment_at) AS last_payment_at
FROM {partials}
GROUP BY merchant_id
ORDER BY merchant_id
"""


def merchant_sql(payments: str, as_of_literal: str, user_values: str | None = None,
                 dialect: str | Dialect = "duckdb") -> str:
    """SQL text computing one row per merchant (`MERCHANT_COLUMNS`) from the relation named
    `payments`, reading only rows with paid_at < as_of (point in time).

    `as_of_literal` is a SQL timestamp literal of the same kind as `paid_at` (see
    `behavior.features.as_of_literal`). `user_values`, if given, names a relation with one
    row per user (user_id, clv); without it `mean_customer_clv` is NULL. `dialect` ("duckdb"
    or "spark") fills in the engine-specific templates. One statement: the partial figures of
    all users (`merchant_partial_sql`) combined.
    """
    return f"WITH{_partial_ctes(payments, as_of_literal, user_values, dialect)}{merchant_combine_sql('part')}"


def merchant_loyalty(
    con: duckdb.DuckDBPyConnection | SqlEngine,
    payments: str,
    as_of: datetime,
    user_values: str | None = None,
    parts: UserParts | None = None,
) -> pa.Table:
    """Run `merchant_sql` on `con` (a DuckDB connection or any `SqlEngine`, e.g. Spark) and
    return an Arrow table with `MERCHANT_SCHEMA`.

    `payments` names a view / table with the canonical payments columns, `user_values` (if
    given) one with one row per user (user_id, clv). `as_of` must be tz-aware (a naive
    datetime raises ValueError). A missing column raises SchemaError; a user_id repeated in
    `user_values` raises InputError. A big log is read in user parts (`parts`, a run's
    `behavior.features.UserParts`, or a set made for this call): the partial figures of each
    part (`merchant_partial_sql`, with the part's users' values) are combined per merchant.
    """
    engine = as_engine(con)
    d = engine.dialect
    as_of_literal(as_of, dialect=d)  # validates as_of
    types = engine.column_types(payments)
    missing = [c for c in _REQUIRED_COLUMNS if c not in types]
    if missing:
        raise SchemaError(
            f"{payments} lacks the payments column(s) {', '.join(missing)}; "
            f"merchant loyalty needs {', '.join(_REQUIRED_COLUMNS)}"
        )
    literal = as_of_literal(as_of, tz_aware=d.is_tz_aware(types["paid_at"]), dialect=d)
    if user_values is not None:
        value_types = engine.column_types(user_values)
        lacking = [c for c in ("user_id", "clv") if c not in value_types]
        if lacking:
            raise SchemaError(f"{user_values} lacks the column(s) {', '.join(lacking)}; it needs user_id, clv")
        dup = engine.arrow(
            f"SELECT user_id FROM {user_values} GROUP BY user_id HAVING COUNT(*) > 1 LIMIT 1"
        ).column("user_id").to_pylist()
        if dup:
            raise InputError(f"{user_values} has more than one row for user {dup[0]!r}; one row per user")
    with UserParts(engine, payments, as_of) if parts is None else nullcontext(parts) as parts:
        parts.covers(payments, [as_of], list(_REQUIRED_COLUMNS))
        relations = parts.relations()
        if len(relations) == 1:
            return engine.arrow(merchant_sql(relations[0][1], literal, user_values, dialect=d)).cast(MERCHANT_SCHEMA)
        partials = []
        for part, relation in relations:
            values = user_values and f"(SELECT * FROM {user_values} WHERE {parts.part_of('user_id')} = {part})"
            partials.append(engine.arrow(merchant_partial_sql(relation, literal, values, dialect=d)))
    engine.register("_merchant_partials", pa.concat_tables(partials))
    try:
        return engine.arrow(merchant_combine_sql("_merchant_partials")).cast(MERCHANT_SCHEMA)
    finally:
        engine.unregister("_merchant_partials")


__all__ = ["MERCHANT_COLUMNS", "MERCHANT_SCHEMA", "RETENTION_DAYS", "merchant_combine_sql", "merchant_loyalty",
           "merchant_partial_sql", "merchant_sql"]
