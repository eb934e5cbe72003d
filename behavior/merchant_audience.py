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

import numpy as np
import pyarrow as pa

from behavior.features import UserParts
from behavior.merchant_days import US_PER_DAY, Part, over_merchant_days
from behavior.sql_dialect import Dialect, SqlEngine, get_dialect

AUDIENCES = ("loyal", "at_risk", "lapsed")
ACTIVE_DAYS, LAPSED_DAYS, LOYAL_DAYS, FORGOTTEN_DAYS = 90, 180, 3, 365

# The payments columns the merchant-day table reads.
_COLUMNS = ("merchant_id", "user_id", "payment_id", "amount", "status", "paid_at")


def merchant_customers_sql(users: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """(merchant_id, user_id, audience, purchase_days, payments, revenue, last_payment_at,
    days_since) of every (merchant, customer) in an audience, from the merchant-user relation
    `users` (`behavior.merchant_days`, as of `as_of_literal`), ordered by merchant_id, user_id."""
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
ORDER BY merchant_id, user_id
"""


def audience_query(part: Part) -> str:
    """The `behavior.merchant_days` query of a part's audience rows."""
    return merchant_customers_sql(part.users, part.literal, part.dialect)


def merge_parts(rows: pa.Table) -> pa.Table:
    """The audience rows of the user parts as one table ordered by merchant_id, user_id, from
    `rows`: each part's rows ordered so (`merchant_customers_sql`), the parts one after another
    in user_id order (`behavior.merchant_days.over_merchant_days`). Within a merchant the parts'
    runs are then already in user order, so a stable sort of the rows' merchants alone (the few
    distinct ids ranked, each row given its id's rank) orders the table: no sort of every row's
    strings, and no copy of the rows but the ordered one (one sort of all the rows held a third:
    at 30M lines the stage's peak was 15% higher). Strings are ordered by their bytes (code
    points), as DuckDB and Arrow order them."""
    coded = rows.column("merchant_id").combine_chunks().dictionary_encode()
    distinct = coded.dictionary.to_numpy(zero_copy_only=False)
    # (numpy's stable sort of 16-bit keys is a radix sort: linear)
    dtype = np.uint16 if len(distinct) <= 1 << 16 else np.int32
    rank = np.empty(len(distinct), dtype=dtype)
    rank[np.argsort(distinct, kind="stable")] = np.arange(len(distinct), dtype=dtype)
    merchant = rank[coded.indices.to_numpy()]
    if len(merchant) < 2 or bool(np.all(merchant[1:] >= merchant[:-1])):
        return rows   # (one part: ordered already)
    # (a stable sort of runs that are each in order merges them)
    return rows.take(np.argsort(merchant, kind="stable"))


def merchant_customers(con: SqlEngine, payments: str, as_of: datetime, parts: UserParts | None = None) -> pa.Table:
    """`merchant_customers_sql` run on the merchant-day table of each user part (the run's
    `parts`, or a set made for this call), ordered by merchant_id, user_id."""
    return merge_parts(over_merchant_days(con, payments, as_of, {"audience": audience_query}, parts,
                                          _COLUMNS)["audience"])


__all__ = ["ACTIVE_DAYS", "AUDIENCES", "FORGOTTEN_DAYS", "LAPSED_DAYS", "LOYAL_DAYS", "audience_query",
           "merchant_customers", "merchant_customers_sql", "merge_parts"]
