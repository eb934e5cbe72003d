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

Engines. The log is read once, into the merchant-day table of `behavior.merchant_days` (one
row per merchant, user and day of the payments whose time falls there), from which every
figure is an aggregate: merchant-level counts and sums straight from it, customer-level figures
from a narrow (merchant, user, day) table. Retention joins only the small acquisition cohort
back to that table (a hash join, no sort). Standard SQL only (aggregates, CASE, joins); the only
dialect-specific pieces (the epoch-microseconds function, which keeps days and windows
independent of the session time zone, and the timestamp literal) come from the engine's
`behavior.sql_dialect.Dialect`, so DuckDB and Spark run the same text.
"""

from __future__ import annotations

from datetime import datetime

import duckdb
import pyarrow as pa

from behavior.errors import InputError, SchemaError
from behavior.features import UserParts, as_of_literal
from behavior.merchant_days import US_PER_DAY, Query, merchant_days_sql, merchant_users_sql, over_merchant_days
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

# The payments columns the SQL reads.
_REQUIRED_COLUMNS = ("user_id", "payment_id", "merchant_id", "amount", "status", "paid_at")

def _partial_ctes(days: str, users: str, as_of_literal: str, user_values: str | None,
                  dialect: str | Dialect) -> str:
    """The CTEs up to `part`: one row per merchant of additive partial figures over the users of
    the merchant-day and merchant-user relations `days` and `users` (`behavior.merchant_days`;
    every figure below is a sum, count, min or max over users, so the partials of disjoint sets
    of users combine into the whole log's)."""
    ep = get_dialect(dialect).epoch_us.format
    as_of_us = ep(as_of_literal)
    cohort_lo = f"{as_of_us} - {2 * RETENTION_DAYS * US_PER_DAY}"
    cohort_hi = f"{as_of_us} - {RETENTION_DAYS * US_PER_DAY}"
    if user_values is None:
        clv_cte, clv_cols, clv_join = "", "CAST(NULL AS DOUBLE) AS clv_sum, 0 AS clv_n", ""
    else:
        clv_cte = f"""
-- The customers' values (CLV) summed per merchant, for the mean.
clv AS (
    SELECT cu.merchant_id, SUM(CAST(v.clv AS DOUBLE)) AS clv_sum, COUNT(v.clv) AS clv_n
    FROM {users} AS cu JOIN {user_values} AS v ON v.user_id = cu.user_id
    WHERE cu.s_pays > 0
    GROUP BY cu.merchant_id
),"""
        clv_cols = "v.clv_sum, COALESCE(v.clv_n, 0) AS clv_n"
        clv_join = "LEFT JOIN clv AS v ON v.merchant_id = m.merchant_id"
    return f"""
-- Per merchant: payments, failures, lines, revenue and the first / last payment.
m AS (
    SELECT
        merchant_id,
        SUM(s_pays) AS payments,
        SUM(f_pays) AS n_failed,
        SUM(s_lines) AS success_lines,
        SUM(r_lines) AS refund_lines,
        SUM(sr_amount) AS revenue,
        MIN(s_first_at) AS first_payment_at,
        MAX(s_last_at) AS last_payment_at
    FROM {days}
    GROUP BY merchant_id
),
-- The acquisition cohort: first purchase in [as_of - 180d, as_of - 90d) ...
cohort AS (
    SELECT merchant_id, user_id, first_day, {ep('first_at')} AS first_us
    FROM {users}
    WHERE s_pays > 0 AND {ep('first_at')} >= {cohort_lo} AND {ep('first_at')} < {cohort_hi}
),
-- ... and its customers who came back on a later day within 90 days.
retained AS (
    SELECT c.merchant_id, c.user_id
    FROM cohort AS c JOIN {days} AS md ON md.merchant_id = c.merchant_id AND md.user_id = c.user_id
    WHERE md.s_pays > 0 AND md.day > c.first_day
      AND {ep('md.s_first_at')} < c.first_us + {RETENTION_DAYS * US_PER_DAY}
    GROUP BY c.merchant_id, c.user_id
),
c AS (
    SELECT merchant_id, COUNT(*) AS customers, COUNT(CASE WHEN n_days >= 2 THEN 1 END) AS repeaters
    FROM {users}
    WHERE s_pays > 0
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
        m.merchant_id, CAST(m.payments AS BIGINT) AS payments, CAST(m.n_failed AS BIGINT) AS n_failed,
        CAST(m.success_lines AS BIGINT) AS success_lines, CAST(m.refund_lines AS BIGINT) AS refund_lines,
        m.revenue, m.first_payment_at, m.last_payment_at,
        COALESCE(c.customers, 0) AS customers, COALESCE(c.repeaters, 0) AS repeaters,
        COALESCE(r.cohort_size, 0) AS cohort_size, COALESCE(r.n_retained, 0) AS n_retained,
        {clv_cols}
    FROM m
    LEFT JOIN c ON c.merchant_id = m.merchant_id
    LEFT JOIN r ON r.merchant_id = m.merchant_id
    {clv_join}
)"""


def merchant_partial_sql(days: str, users: str, as_of_literal: str, user_values: str | None = None,
                         dialect: str | Dialect = "duckdb") -> str:
    """SQL text of one row per merchant of partial figures (`payments`, `n_failed`,
    `success_lines`, `refund_lines`, `revenue`, `first_payment_at`, `last_payment_at`,
    `customers`, `repeaters`, `cohort_size`, `n_retained`, `clv_sum`, `clv_n`) over the users
    of the merchant-day and merchant-user relations `days` and `users` (`behavior.merchant_days`,
    as of `as_of_literal`): `merchant_combine_sql` over the partials of disjoint sets of users
    (e.g. user parts) gives `merchant_sql` of the whole log. `user_values` as in `merchant_sql`."""
    return f"WITH{_partial_ctes(days, users, as_of_literal, user_values, dialect)}\nSELECT * FROM part"


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
    all users (`merchant_partial_sql` of the log's merchant-day table) combined.
    """
    tables = (f"\nmd AS ({merchant_days_sql(payments, as_of_literal, dialect)}),"
              f"\nmu AS ({merchant_users_sql('md')}),")
    return f"WITH{tables}{_partial_ctes('md', 'mu', as_of_literal, user_values, dialect)}{merchant_combine_sql('part')}"


def check_loyalty_inputs(engine: SqlEngine, payments: str, user_values: str | None) -> None:
    """Raise SchemaError when `payments` lacks a column merchant loyalty reads or `user_values`
    lacks user_id / clv, InputError when a user_id repeats in `user_values`."""
    types = engine.column_types(payments)
    missing = [c for c in _REQUIRED_COLUMNS if c not in types]
    if missing:
        raise SchemaError(
            f"{payments} lacks the payments column(s) {', '.join(missing)}; "
            f"merchant loyalty needs {', '.join(_REQUIRED_COLUMNS)}"
        )
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


def loyalty_query(user_values: str | None) -> Query:
    """The `behavior.merchant_days` query of a part's partial figures (`merchant_partial_sql`,
    with the values of the part's users: `user_values` is one of `over_merchant_days`' `per_user`)."""
    return lambda part: merchant_partial_sql(part.days, part.users, part.literal,
                                             user_values and part.of_part(user_values), part.dialect)


def combine_loyalty(engine: SqlEngine, partials: pa.Table) -> pa.Table:
    """`merchant_combine_sql` of the parts' partial figures, as an Arrow table with `MERCHANT_SCHEMA`."""
    engine.register("_merchant_partials", partials)
    try:
        return engine.arrow(merchant_combine_sql("_merchant_partials")).cast(MERCHANT_SCHEMA)
    finally:
        engine.unregister("_merchant_partials")


def merchant_loyalty(
    con: duckdb.DuckDBPyConnection | SqlEngine,
    payments: str,
    as_of: datetime,
    user_values: str | None = None,
    parts: UserParts | None = None,
) -> pa.Table:
    """The merchant table (`MERCHANT_COLUMNS`) of `payments` as of `as_of`, on `con` (a DuckDB
    connection or any `SqlEngine`, e.g. Spark), as an Arrow table with `MERCHANT_SCHEMA`.

    `payments` names a view / table with the canonical payments columns, `user_values` (if
    given) one with one row per user (user_id, clv). `as_of` must be tz-aware (a naive
    datetime raises ValueError). A missing column raises SchemaError; a user_id repeated in
    `user_values` raises InputError. A big log is read in user parts (`parts`, a run's
    `behavior.features.UserParts`, or a set made for this call): the partial figures of each
    part (`merchant_partial_sql`, with the part's users' values) are combined per merchant.
    """
    engine = as_engine(con)
    as_of_literal(as_of, dialect=engine.dialect)  # validates as_of
    check_loyalty_inputs(engine, payments, user_values)
    partials = over_merchant_days(engine, payments, as_of, {"loyalty": loyalty_query(user_values)}, parts,
                                  _REQUIRED_COLUMNS, per_user=tuple(filter(None, [user_values])))["loyalty"]
    return combine_loyalty(engine, partials)


__all__ = ["MERCHANT_COLUMNS", "MERCHANT_SCHEMA", "RETENTION_DAYS", "check_loyalty_inputs", "combine_loyalty",
           "loyalty_query", "merchant_combine_sql", "merchant_loyalty", "merchant_partial_sql", "merchant_sql"]
