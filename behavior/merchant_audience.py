"""A merchant's own audience: its loyal customers, its customers at risk and its lapsed ones,
for co-funded promotions. SQL over the payments log, point in time (nothing at or after as_of).

Per (merchant, customer), from the customer's successful payments at the merchant before as_of
(vocabulary of `behavior.merchants`: a payment's time is that of its first successful line
there): `purchase_days` (distinct UTC days of those times), `payments`, `revenue` (net: success
and refund lines), `last_payment_at` (the latest of those times), and `days_since` (as_of -
last_payment_at, in days). The audience (`AUDIENCES`), the first that holds:

- `loyal`: a payment there in the last `ACTIVE_DAYS` (90) days and at least `LOYAL_DAYS` (3)
  purchase days there;
- `at_risk`: a repeat customer there (at least 2 purchase days) whose last payment there was
  `ACTIVE_DAYS` to `LAPSED_DAYS` (180) days ago;
- `lapsed`: the last payment there at least `ACTIVE_DAYS` days ago (one-time customers) or at
  least `LAPSED_DAYS` days ago (anyone), and less than `FORGOTTEN_DAYS` (365) days ago.

Recent customers with fewer than 3 purchase days, and customers gone for a year or more (past
winning back, and most of the pairs of a long history), belong to none and get no row. Every row is
about one user, so the rows of disjoint sets of users (the run's user parts) concatenate.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

from behavior.features import UserParts
from behavior.merchant_days import US_PER_DAY, Part, over_merchant_days
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

AUDIENCES = ("loyal", "at_risk", "lapsed")
ACTIVE_DAYS, LAPSED_DAYS, LOYAL_DAYS, FORGOTTEN_DAYS = 90, 180, 3, 365

# The payments columns the merchant-day table reads.
_COLUMNS = ("merchant_id", "user_id", "payment_id", "amount", "status", "paid_at")


def merchant_customers_sql(users: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """(merchant_id, user_id, audience, purchase_days, payments, revenue, last_payment_at,
    days_since) of every (merchant, customer) in an audience, from the merchant-user relation
    `users` (`behavior.merchant_days`, as of `as_of_literal`), in no particular order
    (`merchant_customers` sorts the rows of every part once)."""
    ep = get_dialect(dialect).epoch_us.format
    days_since = f"CAST({ep(as_of_literal)} - {ep('last_payment_at')} AS DOUBLE) / {US_PER_DAY}"
    return f"""
WITH mu AS (
    SELECT merchant_id, user_id, n_days AS purchase_days, s_pays AS payments, CAST(revenue AS DOUBLE) AS revenue,
           last_at AS last_payment_at
    FROM {users}
    WHERE sr_pays > 0
),
d AS (
    SELECT *, {days_since} AS days_since FROM mu WHERE last_payment_at IS NOT NULL
),
tagged AS (
    SELECT merchant_id, user_id,
           CASE WHEN days_since < {ACTIVE_DAYS} AND purchase_days >= {LOYAL_DAYS} THEN 'loyal'
                WHEN days_since >= {ACTIVE_DAYS} AND days_since < {LAPSED_DAYS} AND purchase_days >= 2 THEN 'at_risk'
                WHEN days_since >= {ACTIVE_DAYS} AND days_since < {FORGOTTEN_DAYS} THEN 'lapsed'
           END AS audience,
           CAST(purchase_days AS BIGINT) AS purchase_days, CAST(payments AS BIGINT) AS payments, revenue,
           last_payment_at, days_since
    FROM d
)
SELECT * FROM tagged WHERE audience IS NOT NULL
"""


def audience_query(part: Part) -> str:
    """The `behavior.merchant_days` query of a part's audience rows."""
    return merchant_customers_sql(part.users, part.literal, part.dialect)


def sort_audience(rows: pa.Table, engine: SqlEngine | None = None) -> pa.Table:
    """The audience rows of every part in one table ordered by merchant_id, user_id (one row
    per pair, so the order is total). On a DuckDB `engine` the sort is DuckDB's, on every core
    (at 100M lines, 19M rows: Arrow's sort ran on one core for about 29 s); both order strings
    by their bytes, so the tables are equal."""
    if engine is None or engine.name != "duckdb":
        return rows.sort_by([("merchant_id", "ascending"), ("user_id", "ascending")])
    engine.register("_audience_rows", rows)
    try:
        return engine.arrow("SELECT * FROM _audience_rows ORDER BY merchant_id, user_id").cast(rows.schema)
    finally:
        engine.unregister("_audience_rows")


def merchant_customers(con: SqlEngine, payments: str, as_of: datetime, parts: UserParts | None = None) -> pa.Table:
    """`merchant_customers_sql` run on the merchant-day table of each user part (the run's
    `parts`, or a set made for this call), ordered by merchant_id, user_id."""
    rows = over_merchant_days(con, payments, as_of, {"audience": audience_query}, parts, _COLUMNS)["audience"]
    return sort_audience(rows, as_engine(con))


__all__ = ["ACTIVE_DAYS", "AUDIENCES", "FORGOTTEN_DAYS", "LAPSED_DAYS", "LOYAL_DAYS", "audience_query",
           "merchant_customers", "merchant_customers_sql", "sort_audience"]
