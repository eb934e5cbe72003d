"""A merchant's own audience: its loyal customers, its customers at risk and its lapsed ones,
for co-funded promotions. SQL over the payments log, point in time (nothing at or after as_of).

Per (merchant, customer), from the customer's successful payments at the merchant before as_of
(vocabulary of `behavior.merchants`): `purchase_days` (distinct UTC days), `payments`,
`revenue` (net: success and refund lines), `last_payment_at`, and `days_since` (as_of -
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

from contextlib import nullcontext
from datetime import datetime

import pyarrow as pa

from behavior.features import UserParts, as_of_literal
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

AUDIENCES = ("loyal", "at_risk", "lapsed")
ACTIVE_DAYS, LAPSED_DAYS, LOYAL_DAYS, FORGOTTEN_DAYS = 90, 180, 3, 365

_US_PER_DAY = 86_400_000_000


def merchant_customers_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """(merchant_id, user_id, audience, purchase_days, payments, revenue, last_payment_at,
    days_since) of every (merchant, customer) in an audience, in no particular order
    (`merchant_customers` sorts the rows of every part once)."""
    ep = get_dialect(dialect).epoch_us.format
    a = ep(as_of_literal)
    days_since = f"CAST({a} - {ep('last_payment_at')} AS DOUBLE) / {_US_PER_DAY}"
    return f"""
WITH lines AS (
    SELECT COALESCE(merchant_id, 'unknown') AS merchant_id, user_id, payment_id, amount, status, paid_at
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status IN ('success', 'refund')
),
mu AS (
    SELECT merchant_id, user_id,
           COUNT(DISTINCT CASE WHEN status = 'success'
                 THEN CAST(FLOOR({ep('paid_at')} / {_US_PER_DAY}.0) AS BIGINT) END) AS purchase_days,
           COUNT(DISTINCT CASE WHEN status = 'success' THEN payment_id END) AS payments,
           CAST(SUM(amount) AS DOUBLE) AS revenue,
           MAX(CASE WHEN status = 'success' THEN paid_at END) AS last_payment_at
    FROM lines
    GROUP BY merchant_id, user_id
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


def merchant_customers(con: SqlEngine, payments: str, as_of: datetime, parts: UserParts | None = None) -> pa.Table:
    """`merchant_customers_sql` run on each user part (the run's `parts`, or a set made for this
    call) and concatenated, ordered by merchant_id, user_id."""
    engine = as_engine(con)
    d = engine.dialect
    literal = as_of_literal(as_of, tz_aware=d.is_tz_aware(engine.column_types(payments)["paid_at"]), dialect=d)
    with UserParts(engine, payments, as_of) if parts is None else nullcontext(parts) as parts:
        parts.covers(payments, [as_of], ["merchant_id", "user_id", "payment_id", "amount", "status", "paid_at"])
        tables = [engine.arrow(merchant_customers_sql(rel, literal, d)) for _, rel in parts.relations()]
    return pa.concat_tables(tables).sort_by([("merchant_id", "ascending"), ("user_id", "ascending")])


__all__ = ["ACTIVE_DAYS", "AUDIENCES", "FORGOTTEN_DAYS", "LAPSED_DAYS", "LOYAL_DAYS", "merchant_customers", "merchant_customers_sql"]
