"""Effectiveness of past promotions, measured by assignment (intention to treat), never by redemption.

Vocabulary
- A promotion has a window [starts_at, ends_at) and a `target`: "any", a category name, or
  "item:<item_id>".
- An *assigned* user is in the `assignments` table for the promotion, in group treatment
  (offered the promotion) or control (deliberately not offered).
- A user *converts* when they make at least one successful payment inside the window with a
  line matching the target (any line for "any"); *revenue* is their successful spend in the
  window (all lines: a promotion may also move spend between categories); *redeemed* means
  a successful line in the window carries the promotion_id.
- Pre-period (for CUPED): the PRE_DAYS days before starts_at: spend, and whether the user
  would have "converted" in that window.

Comparing every assigned user of the treatment group with every assigned user of the
control group (whether or not they redeemed) is what randomization makes unbiased; looking
only at redeemers, or at a before/after, is not an effect and is never reported as one.

`outcomes_sql` is one relational statement (a join of the assignments with the payments of
the assigned users) so it runs on any SQL engine over the lake; `effectiveness` turns the
per-user outcomes of one promotion into the report entry. Every `*_sql` function takes a
`dialect` ("duckdb" or "spark", see `behavior.sql_dialect`): one text, two engines.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from behavior import experiment_stats as S
from behavior.errors import InputError
from behavior.sql_dialect import Dialect, get_dialect

PRE_DAYS = 90
MIN_GROUP = 30   # users per group below which no effect is estimated
SEGMENT_MIN_GROUP = 30
CANNOT = "cannot be estimated"
_US_PER_DAY = 86_400_000_000


NO_AMOUNTS = "the lake has no amounts: revenue lifts are not computed (every revenue would read 0)"

def target_condition(target: str) -> str:
    """SQL condition on a payments row (columns `category`, `item_id`) matching the promotion
    target held in the SQL expression `target` (standard SQL: any dialect)."""
    return (f"CASE WHEN {target} = 'any' THEN TRUE "
            f"WHEN {target} LIKE 'item:%' THEN item_id = substr({target}, 6) "
            f"ELSE category = {target} END")


def assignment_checks_sql(assignments: str, promotions: str, dialect: str | Dialect = "duckdb") -> str:
    """One row per promotion_id of the assignments: counts by group, users in both groups,
    and whether the promotions table knows it."""
    group = get_dialect(dialect).ident.format("group")
    return f"""
    WITH per_user AS (
        SELECT promotion_id, user_id,
               bool_or({group} = 'treatment') AS t, bool_or({group} = 'control') AS c
        FROM {assignments} GROUP BY promotion_id, user_id)
    SELECT u.promotion_id,
           count(*) FILTER (WHERE t AND NOT c) AS n_treatment,
           count(*) FILTER (WHERE c AND NOT t) AS n_control,
           count(*) FILTER (WHERE t AND c) AS n_both,
           bool_or(p.promotion_id IS NOT NULL) AS known
    FROM per_user u LEFT JOIN (SELECT DISTINCT promotion_id FROM {promotions}) p USING (promotion_id)
    GROUP BY u.promotion_id ORDER BY u.promotion_id"""


def outcomes_sql(payments: str, assignments: str, windows: str, pre_days: int = PRE_DAYS,
                 dialect: str | Dialect = "duckdb") -> str:
    """Per assigned user of every promotion in `windows` (promotion_id, starts_at, ends_at,
    target): group, assigned_at (the earliest), converted, revenue, redeemed, pre_spend, pre_converted.

    Users in both groups are left out (`assignment_checks_sql` reports them). Only payments in
    [starts_at - pre_days, ends_at) of assigned users are read; `ends_at` must already be cut
    at the run's as_of by the caller (the payments relation is).
    """
    match = target_condition("aw.target")
    group = get_dialect(dialect).ident.format("group")
    return f"""
    WITH a AS (
        SELECT promotion_id, user_id, min({group}) AS grp, min(assigned_at) AS assigned_at FROM {assignments}
        GROUP BY promotion_id, user_id HAVING count(DISTINCT {group}) = 1),
    aw AS (SELECT a.*, w.starts_at, w.ends_at, w.target FROM a JOIN {windows} w USING (promotion_id)),
    hits AS (
        SELECT aw.promotion_id, aw.user_id,
               bool_or(x.paid_at >= aw.starts_at AND ({match})) AS converted,
               sum(CASE WHEN x.paid_at >= aw.starts_at THEN x.amount END) AS revenue,
               bool_or(x.paid_at >= aw.starts_at AND x.promotion_id = aw.promotion_id) AS redeemed,
               sum(CASE WHEN x.paid_at < aw.starts_at THEN x.amount END) AS pre_spend,
               bool_or(x.paid_at < aw.starts_at AND ({match})) AS pre_converted
        FROM aw JOIN {payments} x
          ON x.user_id = aw.user_id AND x.status = 'success'
         AND x.paid_at >= aw.starts_at - INTERVAL {int(pre_days)} DAY AND x.paid_at < aw.ends_at
        GROUP BY aw.promotion_id, aw.user_id)
    SELECT aw.promotion_id, aw.user_id, aw.grp AS {group}, aw.assigned_at,
           coalesce(h.converted, FALSE) AS converted,
           coalesce(h.revenue, 0)::DOUBLE AS revenue,
           coalesce(h.redeemed, FALSE) AS redeemed,
           coalesce(h.pre_spend, 0)::DOUBLE AS pre_spend,
           coalesce(h.pre_converted, FALSE) AS pre_converted
    FROM aw LEFT JOIN hits h USING (promotion_id, user_id)
    ORDER BY aw.promotion_id, aw.user_id"""


def check_budget(users: int | None = None, money: float | None = None) -> None:
    """A budget is a positive number of users or a positive amount of money (exactly one)."""
    if (users is None) == (money is None):
        raise InputError("give exactly one budget: a number of users or an amount of money")
    if users is not None and users <= 0:
        raise InputError(f"budget users must be a positive number, got {users}")
    if money is not None and not money > 0:
        raise InputError(f"budget money must be a positive amount, got {money}")


def assignment_problem(row: dict) -> str | None:
    """Why a promotion's effect cannot be estimated from its assignment counts, or None."""
    if not row.get("known", True):
        return ("its assignments name a promotion that is not in the promotions table; "
                "ingest the promotion (id, window, target) or fix the promotion_id")
    if row.get("n_both", 0):
        return (f"{row['n_both']} users are assigned to both treatment and control; "
                "fix the assignment table so each user is in one group")
    if row.get("n_control", 0) == 0:
        return ("it has no control group, so the effect cannot be separated from what users would "
                "have done anyway (a before/after comparison is not an effect); keep a random holdout next time")
    if row.get("n_treatment", 0) == 0:
        return "it has no treatment group"
    small = min(row.get("n_treatment", 0), row.get("n_control", 0))
    if small < MIN_GROUP:
        return f"a group has only {small} users (at least {MIN_GROUP} per group are needed)"
    return None


def _lift_block(y1: np.ndarray, y0: np.ndarray) -> dict:
    d = S.mean_difference(y1, y0)
    rel = S.relative_difference(y1, y0)
    return {"treatment": d["treatment"], "control": d["control"], "lift": d["diff"], "lift_ci": d["ci"],
            "relative_lift": rel["relative"], "relative_lift_ci": rel["ci"], "p_value": d["p_value"]}


def _cuped_block(y: np.ndarray, x: np.ndarray, treated: np.ndarray) -> dict:
    adj, theta, reduction = S.cuped(y, x)
    d = S.mean_difference(adj[treated], adj[~treated])
    return {"lift": d["diff"], "lift_ci": d["ci"], "theta": round(theta, 6),
            "variance_reduction": round(float(reduction), 6)}


def effectiveness(outcomes: pd.DataFrame, cost_per_redemption: float = 0.0, *, segments: pd.Series | None = None,
                  use_cuped: bool = True, seed: int = 0, amounts: bool = True, pre_days: int = PRE_DAYS) -> dict:
    """The report entry of one promotion from its per-user outcomes (columns of `outcomes_sql`).

    `segments`: the segment of each outcome row at the promotion start (same index) for the
    per-segment breakdown (segments with fewer than SEGMENT_MIN_GROUP users in a group are
    listed with their counts only). Incremental conversions and revenue are scaled to the
    treatment group: lift x n_treatment. Net revenue subtracts cost_per_redemption x the
    treatment group's redemptions.

    `amounts=False` (a lake without amounts, where every revenue would read 0): the revenue
    figures are left out (`revenue_per_user` = {"skipped": NO_AMOUNTS}; no revenue in `cuped`
    and `incremental`); conversions, redemptions and the promotion's cost stay.
    """
    missing = {"group", "converted", "revenue", "redeemed"} - set(outcomes.columns)
    if missing:
        raise InputError(f"promotion outcomes lack columns {sorted(missing)}")
    treated = (outcomes["group"] == "treatment").to_numpy()
    n1, n0 = int(treated.sum()), int((~treated).sum())
    entry: dict = {"n_treatment": n1, "n_control": n0}
    problem = assignment_problem({"n_treatment": n1, "n_control": n0})
    if problem:
        entry.update(status=CANNOT, reason=problem)
        return entry
    conv = outcomes["converted"].to_numpy(float)
    rev = outcomes["revenue"].to_numpy(float)
    entry["status"] = "estimated"
    entry["conversion"] = _lift_block(conv[treated], conv[~treated])
    if amounts:
        r = S.revenue_difference(rev[treated], rev[~treated], seed=seed)
        rel = S.relative_difference(rev[treated], rev[~treated])
        entry["revenue_per_user"] = {"treatment": r["treatment"], "control": r["control"], "lift": r["diff"],
                                     "lift_ci": r["ci"], "relative_lift": rel["relative"], "method": r["method"],
                                     "skewness": r["skewness"]}
    else:
        entry["revenue_per_user"] = {"skipped": NO_AMOUNTS}
    if use_cuped and "pre_spend" in outcomes:
        entry["cuped"] = {
            "covariates": {"conversion": f"converted in the {pre_days} days before the start"},
            "conversion": _cuped_block(conv, outcomes["pre_converted"].to_numpy(float), treated),
        }
        if amounts:
            entry["cuped"]["covariates"]["revenue"] = f"spend in the {pre_days} days before the start"
            entry["cuped"]["revenue"] = _cuped_block(rev, outcomes["pre_spend"].to_numpy(float), treated)
    redemptions = int(outcomes.loc[treated, "redeemed"].sum())
    cost = float(cost_per_redemption) * redemptions
    c_ci = entry["conversion"]["lift_ci"]
    entry["incremental"] = {
        "conversions": round(entry["conversion"]["lift"] * n1, 2),
        "conversions_ci": [round(c_ci[0] * n1, 2), round(c_ci[1] * n1, 2)],
        "redemptions": redemptions,
        "promotion_cost": round(cost, 2),
    }
    if amounts:
        r_ci = entry["revenue_per_user"]["lift_ci"]
        entry["incremental"].update({
            "revenue": round(r["diff"] * n1, 2),
            "revenue_ci": [round(r_ci[0] * n1, 2), round(r_ci[1] * n1, 2)],
            "net_revenue": round(r["diff"] * n1 - cost, 2),
            "net_revenue_ci": [round(r_ci[0] * n1 - cost, 2), round(r_ci[1] * n1 - cost, 2)],
        })
    if segments is not None:
        entry["segments"] = _by_segment(conv, treated, segments.to_numpy())
    return entry


def _by_segment(conv: np.ndarray, treated: np.ndarray, seg: np.ndarray) -> dict:
    out: dict = {}
    labels = pd.Series(seg).fillna("unknown (no purchase before the start)").to_numpy()
    for name in sorted(set(labels)):
        m = labels == name
        a, b = conv[m & treated], conv[m & ~treated]
        row: dict = {"n_treatment": int(len(a)), "n_control": int(len(b))}
        if min(len(a), len(b)) >= SEGMENT_MIN_GROUP:
            row.update(_lift_block(a, b))
        else:
            row["status"] = f"{CANNOT}: fewer than {SEGMENT_MIN_GROUP} users in a group"
        out[str(name)] = row
    return out


def window_status(starts_at: datetime, ends_at: datetime, as_of: datetime) -> str | None:
    """None when the window is complete before as_of, else why it is not evaluated."""
    if ends_at <= starts_at:
        return "its window is empty (ends_at <= starts_at); fix the promotions table"
    if ends_at > as_of:
        return f"it is still running at as_of (ends {ends_at.isoformat()}); it is evaluated once it has ended"
    return None


def category_affinity_sql(payments: str, as_of_literal: str, dialect: str | Dialect = "duckdb") -> str:
    """(user_id, category, share): each user's share of successful lines per category before as_of
    (`as_of_literal` in the same dialect; the text itself is standard SQL), ordered by user_id and
    category. The lines are counted per (user, category) once and each user's total is the sum of
    those counts (a window over the counts made DuckDB count the lines twice: 1.9x the CPU)."""
    return f"""
    WITH c AS (
        SELECT user_id, category, count(*) AS n
        FROM {payments} WHERE status = 'success' AND paid_at < {as_of_literal}
        GROUP BY user_id, category),
    t AS (SELECT user_id, sum(n) AS total FROM c GROUP BY user_id)
    SELECT c.user_id, c.category, c.n::DOUBLE / t.total AS share
    FROM c JOIN t ON t.user_id = c.user_id
    WHERE c.category IS NOT NULL
    ORDER BY c.user_id, c.category"""


def contacts_sql(assignments: str, promotions: str, dialect: str | Dialect = "duckdb") -> str:
    """(user_id, last_contacted_at): the latest time each user was offered a promotion (treatment
    group), at assigned_at or else the promotion's start."""
    group = get_dialect(dialect).ident.format("group")
    return f"""
    SELECT a.user_id, max(coalesce(a.assigned_at, p.starts_at)) AS last_contacted_at
    FROM {assignments} a LEFT JOIN {promotions} p USING (promotion_id)
    WHERE a.{group} = 'treatment'
    GROUP BY a.user_id HAVING max(coalesce(a.assigned_at, p.starts_at)) IS NOT NULL
    ORDER BY a.user_id"""


def item_categories_sql(payments: str, dialect: str | Dialect = "duckdb") -> str:
    """(item_id, category): each item's most frequent category in the log (ties: smallest name;
    the text is standard SQL in every dialect)."""
    return f"""
    SELECT item_id, category FROM (
        SELECT item_id, category, row_number() OVER (PARTITION BY item_id ORDER BY count(*) DESC, category) AS k
        FROM {payments} WHERE category IS NOT NULL GROUP BY item_id, category)
    WHERE k = 1 ORDER BY item_id"""


def rfm_at_starts_sql(payments: str, as_of_literals: list[str], dialect: str | Dialect = "duckdb") -> str:
    """`behavior.features.rfm_sql` at each of several as_ofs (literals in `dialect`) from one pass
    over `payments`: per user, `recency_days_<k>`, `n_payments_<k>` and `net_spend_<k>` of the
    lines before the k-th as_of, ordered by user_id. A user with no successful payment before the
    k-th has `n_payments_<k>` = 0 (and is not in rfm_sql's table at it); the others have rfm_sql's
    values there. The same values because a payment's time in rfm_sql is the earliest of its
    lines before the as_of, which is its earliest line overall whenever that is before the as_of,
    and its amount the sum of those lines."""
    d = get_dialect(dialect)
    latest = f"GREATEST({', '.join(as_of_literals)})" if len(as_of_literals) > 1 else as_of_literals[0]
    each = list(enumerate(as_of_literals))
    amounts = ", ".join(f"SUM(amount) FILTER (WHERE paid_at < {lit}) AS amount_{k}" for k, lit in each)
    per_user = ", ".join(f"MAX(paid_at) FILTER (WHERE paid_at < {lit}) AS last_{k}, "
                         f"COUNT(*) FILTER (WHERE paid_at < {lit}) AS n_{k}, SUM(amount_{k}) AS spend_{k}"
                         for k, lit in each)
    refunds = ", ".join(f"SUM(ABS(amount)) FILTER (WHERE paid_at < {lit}) AS refund_{k}" for k, lit in each)
    columns = ", ".join(
        f"CAST({d.epoch_us.format(lit)} - {d.epoch_us.format(f'u.last_{k}')} AS DOUBLE) / {_US_PER_DAY} AS recency_days_{k}, "
        f"u.n_{k} AS n_payments_{k}, CAST(u.spend_{k} - COALESCE(o.refund_{k}, 0) AS DOUBLE) AS net_spend_{k}"
        for k, lit in each)
    return f"""
    WITH pay AS (
        SELECT user_id, MIN(paid_at) AS paid_at, {amounts}
        FROM {payments}
        WHERE paid_at < {latest} AND status = 'success'
        GROUP BY user_id, payment_id),
    u AS (SELECT user_id, {per_user} FROM pay GROUP BY user_id),
    o AS (
        SELECT user_id, {refunds}
        FROM {payments}
        WHERE paid_at < {latest} AND status = 'refund'
        GROUP BY user_id)
    SELECT u.user_id, {columns}
    FROM u LEFT JOIN o ON o.user_id = u.user_id
    ORDER BY u.user_id"""
