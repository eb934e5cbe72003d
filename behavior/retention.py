"""Retention tables: cohort retention and retention curves per segment.

Vocabulary (time unit: calendar month, UTC): a customer's *cohort* is the month of their first
successful payment; they are *active* in a month with a successful payment; *months since* is
the number of months from the cohort to that month; the *last month* is the latest month with
a successful payment in the log.

- `cohort_retention` (cohort_month, months_since, cohort_size, active_users, retention): for
  every cohort and every month up to the last month, the share of the cohort active then.
- `retention_curves` (segment, months_since, users, active_users, retention): per segment of
  a user -> segment relation ('unknown' for customers without one), the customers whose cohort
  has reached that month and the share of them active in it.

Both are sums of one small table, the **activity**: active customers per (cohort, segment,
month), `activity_sql`. Each customer's activity is counted from their own lines alone, so the
activity of a log split by ranges of user_id (`behavior.features.UserParts`) is the sum of its
parts' (`retention_tables`): the log is read once for both tables, and each part's distinct
(customer, month) pairs fit in memory however long the log is.

Engines: the SQL takes a `dialect` ("duckdb" or "spark", `behavior.sql_dialect`);
`retention_tables` any `SqlEngine`.
"""

from __future__ import annotations

import pyarrow as pa

from behavior.sql_dialect import Dialect, SqlEngine, get_dialect

_ACTIVITY = "_retention_activity"


def activity_sql(payments: str, segments: str, dialect: str | Dialect = "duckdb") -> str:
    """cohort (DATE), segment, month (DATE), active_users (BIGINT): the customers of `payments`
    of each cohort and segment (of the relation `segments` (user_id, segment); 'unknown'
    without one) with a successful payment in each month."""
    d = get_dialect(dialect)
    return f"""
        WITH act AS (SELECT DISTINCT user_id, {d.utc_month.format('paid_at')} AS m
                     FROM {payments} WHERE status = 'success'),
        firsts AS (SELECT user_id, min(m) AS cohort FROM act GROUP BY user_id)
        SELECT f.cohort, COALESCE(s.segment, 'unknown') AS segment, a.m AS month,
               CAST(count(*) AS BIGINT) AS active_users
        FROM act a JOIN firsts f USING (user_id) LEFT JOIN {segments} s USING (user_id)
        GROUP BY ALL"""


def _summed(activity: str) -> str:
    # the same (cohort, segment, month) may come from several parts of the log
    return f"""a AS (SELECT cohort, segment, month, CAST(sum(active_users) AS BIGINT) AS active_users
                     FROM {activity} GROUP BY cohort, segment, month),
        last_month AS (SELECT max(month) AS lm FROM a)"""


def cohort_retention_sql(activity: str, dialect: str | Dialect = "duckdb") -> str:
    """cohort_month, months_since, cohort_size, active_users, retention (share of the cohort with
    a successful payment in that month), for every month up to the last month with data, from an
    `activity` relation (`activity_sql`, or the rows of several parts of a log)."""
    d = get_dialect(dialect)
    return f"""
        WITH {_summed(activity)},
        act_k AS (SELECT cohort, {d.month_diff.format('cohort', 'month')} AS months_since,
                         CAST(sum(active_users) AS BIGINT) AS active_users
                  FROM a GROUP BY ALL),
        sizes AS (SELECT cohort, active_users AS cohort_size FROM act_k WHERE months_since = 0),
        grid AS (SELECT s.cohort, s.cohort_size, k.k AS months_since
                 FROM sizes s, last_month l,
                      {d.series.format(d.month_diff.format('s.cohort', 'l.lm') + ' + 1', 'k')})
        SELECT g.cohort AS cohort_month, CAST(g.months_since AS INTEGER) AS months_since,
               CAST(g.cohort_size AS BIGINT) AS cohort_size,
               CAST(COALESCE(a.active_users, 0) AS BIGINT) AS active_users,
               COALESCE(a.active_users, 0) / CAST(g.cohort_size AS DOUBLE) AS retention
        FROM grid g LEFT JOIN act_k a ON a.cohort = g.cohort AND a.months_since = g.months_since
        ORDER BY cohort_month, months_since"""


def retention_curves_sql(activity: str, dialect: str | Dialect = "duckdb") -> str:
    """segment, months_since, users (customers of the segment whose cohort has reached that
    month), active_users, retention, from an `activity` relation (`activity_sql`)."""
    d = get_dialect(dialect)
    return f"""
        WITH {_summed(activity)},
        us AS (SELECT a.segment, a.active_users AS size, {d.month_diff.format('a.cohort', 'l.lm')} AS observed
               FROM a CROSS JOIN last_month l WHERE a.month = a.cohort),
        maxk AS (SELECT max(observed) AS mk FROM us),
        at_risk AS (SELECT us.segment, k.k AS months_since, CAST(sum(us.size) AS BIGINT) AS users
                    FROM us, maxk, {d.series.format('maxk.mk + 1', 'k')}
                    WHERE k.k <= us.observed GROUP BY ALL),
        act_k AS (SELECT segment, {d.month_diff.format('cohort', 'month')} AS months_since,
                         CAST(sum(active_users) AS BIGINT) AS active_users
                  FROM a GROUP BY ALL)
        SELECT r.segment, CAST(r.months_since AS INTEGER) AS months_since, CAST(r.users AS BIGINT) AS users,
               CAST(COALESCE(a.active_users, 0) AS BIGINT) AS active_users,
               COALESCE(a.active_users, 0) / CAST(r.users AS DOUBLE) AS retention
        FROM at_risk r LEFT JOIN act_k a ON a.segment = r.segment AND a.months_since = r.months_since
        ORDER BY segment, months_since"""


def retention_tables(engine: SqlEngine, parts: list[str], segments: str) -> tuple[pa.Table, pa.Table]:
    """(cohort_retention, retention_curves) of the customers of the payments relations `parts`
    (a log, or its parts by ranges of user_id: each customer's lines all in one of them), with
    the segments of the relation `segments` (user_id, segment)."""
    d = engine.dialect
    activity = pa.concat_tables([engine.arrow(activity_sql(p, segments, d)) for p in parts])
    engine.register(_ACTIVITY, activity)
    try:
        return engine.arrow(cohort_retention_sql(_ACTIVITY, d)), engine.arrow(retention_curves_sql(_ACTIVITY, d))
    finally:
        engine.unregister(_ACTIVITY)


__all__ = ["activity_sql", "cohort_retention_sql", "retention_curves_sql", "retention_tables"]
