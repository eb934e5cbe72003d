"""The merchant-day table: every merchant figure at as_of from one read of the payments log.

Merchant loyalty (`behavior.merchants`), the profile windows (`behavior.merchant_profiles`),
merchant churn's activity (`behavior.merchant_churn`) and the merchants' audiences
(`behavior.merchant_audience`) are all sums, counts, minima and maxima over payments. The lines
before as_of are reduced once to one row per (merchant, user, payment, status), the payment's
time being its first line of that status (vocabulary of `behavior.merchants`), and those rows
once more to one row per (merchant_id, user_id, day, rday) of the payments whose time falls there
(`MERCHANT_DAY_COLUMNS`):

- `day`: the UTC calendar day number of the time (days since 1970-01-01); `rday`: the day
  counted from as_of, -1 being [as_of - 1 day, as_of), -2 the 24 hours before it (exact
  timestamps, so every window [as_of - W days, as_of) is a range of rday). With as_of at 00:00
  UTC the two name the same days; otherwise a UTC day splits into two rows at most.
- `s_pays`, `s_lines`, `s_first_at`, `s_last_at`: the successful payments there, their lines (of
  status success), and the first and last of their times (the type of `paid_at`);
- `f_pays`: failed payments; `r_pays`, `r_lines`: refunded payments and their refund lines;
- `sr_amount`: the amounts of the success and refund lines of those payments (refunds are
  negative), null when none has an amount.

Share of wallet also needs the categories of lines, which a payment may mix: `wallet_sql` is
the part's successful lines with a category in the share-of-wallet year, per merchant, with the
spend of the merchant's customers of that year at any merchant in the merchant's categories
(`wallet_categories_sql`, read from the whole log first; then a second, narrow read of the
part's lines and a join with the merchant-user table).

Point in time: only lines with `paid_at < as_of` are read, filtered in the scan; every figure
derived from the table is as of as_of. Every row is about one user, so the tables of disjoint
sets of users (the run's user parts) are the whole log's table in pieces: `over_merchant_days`
makes the table of each part once, runs every query of the stage on it, and concatenates each
query's results over the parts. The per-user relations the queries join (the users' values, their
tiers) are split into the parts once, in one read each, so a part's queries read only its own
users: the work stays linear in the history however many parts there are (a filter of the whole
relation per part would read every user once per part).

Engines: standard SQL with the dialect's epoch function (DuckDB and Spark). On DuckDB each
part's table is held as Arrow while its queries run; elsewhere it is a view, computed by each
query (the same answers).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, time, timezone
from typing import Callable

import numpy as np
import pyarrow as pa

from behavior.features import UserParts, as_of_literal
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

US_PER_DAY = 86_400_000_000
WINDOWS = (30, 90, 365)          # the profile windows, in days before as_of
SHARE_OF_WALLET_DAYS = 365       # (one of WINDOWS: its customers are flagged in the merchant-user table)

MERCHANT_DAY_COLUMNS: tuple[str, ...] = (
    "merchant_id", "user_id", "day", "rday", "s_pays", "s_lines", "s_first_at", "s_last_at",
    "f_pays", "r_pays", "r_lines", "sr_amount")

# The payments columns the merchant-day table and the wallet read.
REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "payment_id", "merchant_id", "category", "amount", "status",
                                     "paid_at")


def day_number(us_expr: str, origin_us: str = "0") -> str:
    """SQL of the whole days from `origin_us` to the epoch-microseconds expression `us_expr`
    (negative before it): the UTC day number with the default origin."""
    return f"CAST(FLOOR(({us_expr} - {origin_us}) / {US_PER_DAY}.0) AS BIGINT)"


def merchant_days_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """SQL text of the merchant-day table (`MERCHANT_DAY_COLUMNS`, in no particular order) of
    the lines of the relation `payments` before as_of (a SQL timestamp literal of the kind of
    `paid_at`, see `behavior.features.as_of_literal`). One SELECT of nested subqueries (no WITH),
    so that it can stand in a FROM clause; the log is read once."""
    ep = get_dialect(dialect).epoch_us.format
    t = ep("paid_at")
    big = "AS BIGINT)"
    return f"""
SELECT merchant_id, user_id, {day_number(t)} AS day, {day_number(t, ep(as_of_literal))} AS rday,
       CAST(COUNT(CASE WHEN status = 'success' THEN 1 END) {big} AS s_pays,
       CAST(SUM(CASE WHEN status = 'success' THEN n_lines ELSE 0 END) {big} AS s_lines,
       MIN(CASE WHEN status = 'success' THEN paid_at END) AS s_first_at,
       MAX(CASE WHEN status = 'success' THEN paid_at END) AS s_last_at,
       CAST(COUNT(CASE WHEN status = 'failed' THEN 1 END) {big} AS f_pays,
       CAST(COUNT(CASE WHEN status = 'refund' THEN 1 END) {big} AS r_pays,
       CAST(SUM(CASE WHEN status = 'refund' THEN n_lines ELSE 0 END) {big} AS r_lines,
       SUM(CASE WHEN status IN ('success', 'refund') THEN amount END) AS sr_amount
FROM (
    SELECT merchant_id, user_id, payment_id, status, MIN(paid_at) AS paid_at, COUNT(*) AS n_lines,
           SUM(amount) AS amount
    FROM (SELECT COALESCE(merchant_id, 'unknown') AS merchant_id, user_id, payment_id, status, amount, paid_at
          FROM {payments}
          WHERE paid_at < {as_of_literal} AND status IN ('success', 'failed', 'refund')) AS lines
    GROUP BY merchant_id, user_id, payment_id, status
) AS pay
GROUP BY merchant_id, user_id, {day_number(t)}, {day_number(t, ep(as_of_literal))}
"""


def window_flags() -> list[tuple[str, str]]:
    """(suffix, rday condition) of each current and previous window: ("30", current 30 days),
    ("prev_30", the 30 days before them), ..."""
    return [(f"{tag}{w}", cond) for w in WINDOWS
            for tag, cond in (("", f"rday >= -{w}"), ("prev_", f"rday >= -{2 * w} AND rday < -{w}"))]


def merchant_users_sql(days: str, whole_days: bool = False) -> str:
    """SQL text of the merchant-user table: one row per (merchant_id, user_id) of the merchant-day
    FROM item `days`, with `s_pays` (successful payments), `sr_pays` (successful and refunded),
    `n_days` (distinct UTC days of the successful payments), `first_day`, `first_at` and `last_at`
    (of the successful payments), `revenue` (the `sr_amount`s) and per window a flag `c_<suffix>`
    (1 when a successful payment's time is in it; `window_flags`). `whole_days`: as_of is at
    00:00 UTC, so no UTC day is split into two rows and the days are counted without DISTINCT
    (a distinct count over millions of rows costs as much as the rest of the table)."""
    n_days = ("COUNT(CASE WHEN s_pays > 0 THEN 1 END)" if whole_days
              else "COUNT(DISTINCT CASE WHEN s_pays > 0 THEN day END)")
    flags = ", ".join(f"MAX(CASE WHEN s_pays > 0 AND {cond} THEN 1 ELSE 0 END) AS c_{suffix}"
                      for suffix, cond in window_flags())
    return f"""
SELECT merchant_id, user_id,
       CAST(SUM(s_pays) AS BIGINT) AS s_pays, CAST(SUM(s_pays + r_pays) AS BIGINT) AS sr_pays,
       CAST({n_days} AS BIGINT) AS n_days,
       MIN(CASE WHEN s_pays > 0 THEN day END) AS first_day,
       MIN(s_first_at) AS first_at, MAX(s_last_at) AS last_at, SUM(sr_amount) AS revenue,
       {flags}
FROM {days}
GROUP BY merchant_id, user_id
"""


def _wallet_lines_sql(payments: str, as_of_literal: str, dialect: str | Dialect) -> str:
    ep = get_dialect(dialect).epoch_us.format
    lo = f"{ep(as_of_literal)} - {SHARE_OF_WALLET_DAYS * US_PER_DAY}"
    return f"""
    SELECT COALESCE(merchant_id, 'unknown') AS merchant_id, user_id, category, amount
    FROM {payments}
    WHERE paid_at < {as_of_literal} AND status = 'success' AND category IS NOT NULL AND {ep('paid_at')} >= {lo}"""


def wallet_categories_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """SQL text of (merchant_id, category), one row each: a merchant's *categories* of share of
    wallet, those of its successful lines with a category in [as_of - SHARE_OF_WALLET_DAYS,
    as_of) (the lines `wallet_sql` reads)."""
    return f"SELECT DISTINCT merchant_id, category FROM ({_wallet_lines_sql(payments, as_of_literal, dialect)}) AS wl"


def wallet_sql(payments: str, users: str, as_of_literal: str, categories: str,
               dialect: str | Dialect = "duckdb") -> str:
    """SQL text of (merchant_id, spend, customers_spend) of the users of `payments`: per
    merchant, the amounts of its successful lines with a category in [as_of -
    SHARE_OF_WALLET_DAYS, as_of), and the spend (at any merchant, in the same year) of its
    customers of the year (users with a successful payment there whose time is in the year, from
    the merchant-user relation `users` of the same users) in its categories (the relation
    `categories`, `wallet_categories_sql` of the whole log: a merchant's categories are known
    before any part is read, so a part's rows are one per merchant, not one per merchant and
    category of its customers' spend). Every figure is a sum over users."""
    return f"""
WITH wl AS ({_wallet_lines_sql(payments, as_of_literal, dialect)}
),
at_m AS (
    SELECT merchant_id, SUM(amount) AS spend
    FROM wl
    GROUP BY merchant_id
),
ucat AS (
    SELECT user_id, category, SUM(amount) AS spend
    FROM wl
    GROUP BY user_id, category
),
cust AS (
    SELECT mu.merchant_id, SUM(u.spend) AS customers_spend
    FROM {users} AS mu
    JOIN ucat AS u ON u.user_id = mu.user_id
    JOIN {categories} AS k ON k.merchant_id = mu.merchant_id AND k.category = u.category
    WHERE mu.c_{SHARE_OF_WALLET_DAYS} = 1
    GROUP BY mu.merchant_id
)
SELECT COALESCE(at_m.merchant_id, cust.merchant_id) AS merchant_id, at_m.spend, cust.customers_spend
FROM at_m FULL OUTER JOIN cust ON cust.merchant_id = at_m.merchant_id
"""


def payments_literal(engine: SqlEngine, payments: str, as_of: datetime) -> str:
    """`as_of` as a SQL literal of the kind of the `paid_at` of `payments` (ValueError when naive)."""
    d = engine.dialect
    as_of_literal(as_of, dialect=d)   # validates as_of
    return as_of_literal(as_of, tz_aware=d.is_tz_aware(engine.column_types(payments)["paid_at"]), dialect=d)


def span_start_sql(day: str, ends) -> str:
    """SQL of the first day of the span of `ends` (ascending day numbers) that holds the day `day`:
    ends[i - 1] for the span [ends[i - 1], ends[i]), ends[0] - 1 for the days before ends[0] (a
    binary search written as nested CASEs). The spans of merchant churn's activity and of the
    profile windows."""
    ends = np.asarray(ends)

    def search(lo: int, hi: int) -> str:   # the span's index is in [lo, hi]
        if lo == hi:
            return str(int(ends[0]) - 1 if lo == 0 else int(ends[lo - 1]))
        mid = (lo + hi + 1) // 2
        return f"CASE WHEN {day} < {int(ends[mid - 1])} THEN {search(lo, mid - 1)} ELSE {search(mid, hi)} END"

    return search(0, len(ends))


@dataclass(frozen=True)
class Part:
    """What a query of `over_merchant_days` sees of one user part: `days` and `users`, names of
    the part's merchant-day and merchant-user tables; `lines`, the relation of its payment lines;
    `literal`, as_of as a SQL literal; `dialect`; and `of_part(relation)`, a FROM item of the rows
    of a per-user relation (user_id, ...) that belong to the part (one of the `per_user` relations
    of `over_merchant_days`; ValueError for another)."""
    days: str
    users: str
    lines: str
    literal: str
    dialect: Dialect
    of_part: Callable[[str], str]


Query = Callable[[Part], str]

_DAYS, _USERS = "_merchant_days", "_merchant_users"


def split_users(engine: SqlEngine, parts: UserParts, relation: str) -> list[pa.Table]:
    """The rows of the per-user relation `relation` (user_id, ...) of each user part (index: the
    part's number, `UserParts.part_of`), from one read of it; within a part in the relation's
    order."""
    rows = engine.arrow(f"SELECT {parts.part_of('user_id')} AS _part, * FROM {relation}")
    part = rows.column("_part").to_numpy().astype(np.int16)   # (a stable sort of 16-bit keys is a radix sort: linear)
    order = np.argsort(part, kind="stable")
    ends = np.cumsum(np.bincount(part, minlength=parts.count))
    rows = rows.drop_columns(["_part"]).take(order)
    return [rows.slice(end - n, n) for end, n in zip(ends, np.diff(ends, prepend=0))]


def over_merchant_days(con: SqlEngine, payments: str, as_of: datetime, queries: dict[str, Query],
                       parts: UserParts | None = None, columns: tuple[str, ...] = REQUIRED_COLUMNS,
                       per_user: tuple[str, ...] = ()) -> dict[str, pa.Table]:
    """Each query's results (`queries[name](part)`, SQL text) over every user part of the lines
    of `payments` before `as_of`, concatenated in part order. The merchant-day table of a part
    (one read of its lines) and its merchant-user table are computed once for all the queries.
    `parts` is the run's `UserParts` or None (a set made for this call); `columns` are the
    payments columns the queries read (ValueError when the parts lack one); `per_user` names the
    per-user relations the queries read through `Part.of_part` (each split into the parts once).
    A naive `as_of` raises ValueError."""
    engine = as_engine(con)
    d = engine.dialect
    literal = payments_literal(engine, payments, as_of)
    out: dict[str, list[pa.Table]] = {name: [] for name in queries}
    whole_days = as_of.astimezone(timezone.utc).time() == time(0)
    with UserParts(engine, payments, as_of) if parts is None else nullcontext(parts) as parts:
        parts.covers(payments, [as_of], list(columns))
        relations = parts.relations()
        split = {rel: split_users(engine, parts, rel) for rel in per_user} if parts.count > 1 else {}
        for number, relation in relations:
            of_part = {rel: f"_merchant_part_users_{i}" if split else rel for i, rel in enumerate(per_user)}

            def part_of(rel: str, of_part: dict[str, str] = of_part) -> str:
                if rel not in of_part:
                    raise ValueError(f"{rel} is not one of the per-user relations of this call ({', '.join(per_user)})")
                return of_part[rel]

            made, views = [], []
            try:
                for rel, name in of_part.items():
                    if split:
                        engine.register(name, split[rel][number])
                        made.append(name)
                for name, sql in ((_DAYS, merchant_days_sql(relation, literal, d)), (_USERS, merchant_users_sql(_DAYS, whole_days))):
                    # DuckDB holds the part's tables as Arrow; elsewhere they are views (computed per use)
                    if engine.name == "duckdb":
                        engine.register(name, engine.arrow(sql))
                        made.append(name)
                    else:
                        engine.create_view(name, sql)
                        views.append(name)
                part = Part(_DAYS, _USERS, relation, literal, d, part_of)
                for name, query in queries.items():
                    out[name].append(engine.arrow(query(part)))
            finally:
                for name in reversed(views):
                    engine.drop_view(name)
                for name in reversed(made):
                    engine.unregister(name)
    return {name: pa.concat_tables(tables) for name, tables in out.items()}


__all__ = ["MERCHANT_DAY_COLUMNS", "Part", "Query", "REQUIRED_COLUMNS", "SHARE_OF_WALLET_DAYS", "US_PER_DAY", "WINDOWS",
           "day_number", "merchant_days_sql", "merchant_users_sql", "over_merchant_days", "payments_literal",
           "span_start_sql", "split_users", "wallet_categories_sql", "wallet_sql", "window_flags"]
