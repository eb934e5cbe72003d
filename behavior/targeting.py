"""Promotion target lists under a budget: rank users by expected incremental profit.

    expected profit = value_per_conversion x uplift - coupon_cost x P(redeem | treated) - contact_cost

Users with a non-positive expected profit are dropped: sure things (they buy anyway and would
only cost a coupon) and do-not-disturbs (negative uplift). Opted-out users and users
contacted in the last N days are never eligible.

Holdout for measurement. The eligible users are split at random (seeded) *before* ranking:
a share `holdout_share` is never contacted. The same ranking and cut-off are applied to both
parts, so the list's `holdout` holds the users who would have been targeted but are held back:
comparing their conversion with the targeted users' measures the list's real effect. The
budget is spent on the targeted part only.

Fallback rule. Where no uplift model exists for the target (no past randomized promotion),
users are ranked by a transparent score, affinity to the target x churn probability x CLV
(spend at risk in what the promotion is about); no incremental figure is claimed and the
result says so. With a money budget, a fallback user costs contact_cost + coupon_cost (as if
every contacted user redeemed, an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from behavior.errors import InputError
from behavior.promotions import check_budget

MODEL, RULE = "uplift model", "fallback rule"
RULE_NOTE = ("no randomized promotion for this target was found to train an uplift model: users are ranked by "
             "affinity to the target x churn probability x CLV; expected incremental conversions and profit "
             "cannot be estimated for this list")


@dataclass(frozen=True)
class Economics:
    """Per-user money of a promotion, in the lake's reporting currency."""

    value_per_conversion: float      # value (or margin) of one incremental conversion
    coupon_cost: float = 0.0         # paid per redemption
    contact_cost: float = 0.0        # paid per contacted user

    def __post_init__(self) -> None:
        for name in ("value_per_conversion", "coupon_cost", "contact_cost"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise InputError(f"{name} must be a finite amount >= 0, got {v}")

    def profit(self, uplift: np.ndarray, p_redeem: np.ndarray) -> np.ndarray:
        return self.value_per_conversion * uplift - self.coupon_cost * p_redeem - self.contact_cost


@dataclass
class TargetList:
    method: str
    targets: pd.DataFrame          # rank, user_id, score, [expected_profit, uplift, p_redeem]
    holdout: pd.DataFrame          # same columns: would-be targets held back
    counts: dict
    expected: dict                 # incremental conversions, profit and cost of the targets
    notes: list[str]


def select_targets(candidates: pd.DataFrame, economics: Economics, *, budget_users: int | None = None,
                   budget_money: float | None = None, holdout_share: float = 0.1, seed: int = 0,
                   method: str = MODEL) -> TargetList:
    """The target list from eligible candidates.

    `candidates`: one row per user already cleared of opt-outs and recent contacts
    (`eligible_mask` does that), with `user_id` and, for the model method, `uplift` and
    `p_redeem`; for the rule method `score`.
    """
    check_budget(budget_users, budget_money)
    if not 0 <= holdout_share < 1:
        raise InputError(f"holdout_share must be in [0, 1), got {holdout_share}")
    if method not in (MODEL, RULE):
        raise InputError(f"unknown targeting method {method!r}")
    c = candidates.reset_index(drop=True)
    rng = np.random.default_rng(seed)
    held = rng.random(len(c)) < holdout_share
    notes: list[str] = []
    if method == MODEL:
        uplift = c["uplift"].to_numpy(float)
        p_redeem = c["p_redeem"].to_numpy(float)
        profit = economics.profit(uplift, p_redeem)
        cost = economics.contact_cost + economics.coupon_cost * p_redeem
        score = profit
    else:
        score = c["score"].to_numpy(float)
        profit = np.full(len(c), np.nan)
        cost = np.full(len(c), economics.contact_cost + economics.coupon_cost)
        notes.append(RULE_NOTE)
    positive = np.isfinite(score) & (score > 0)
    order = np.flatnonzero(positive)[np.argsort(-score[positive], kind="stable")]
    spend = np.cumsum(np.where(held[order], 0.0, cost[order]))
    taken = np.cumsum(~held[order])
    if budget_users is not None:
        within = taken <= budget_users
    else:
        within = spend <= budget_money + 1e-9
    # the prefix of the ranking up to the last targeted user inside the budget; all of it when
    # the budget does not bind (so the holdout also keeps the would-be targets ranked last)
    last = np.flatnonzero(within & ~held[order])
    cut = order if within.all() else order[: last[-1] + 1] if len(last) else order[:0]
    frame = pd.DataFrame({"user_id": c["user_id"].to_numpy()[cut], "score": score[cut]})
    if method == MODEL:
        frame["expected_profit"] = profit[cut]
        frame["uplift"] = uplift[cut]
        frame["p_redeem"] = p_redeem[cut]
    frame.insert(0, "rank", np.arange(1, len(cut) + 1))
    is_held = held[cut]
    targets, holdout = frame[~is_held].reset_index(drop=True), frame[is_held].reset_index(drop=True)
    counts = {"candidates": int(len(c)), "non_positive": int((~positive).sum()),
              "targets": int(len(targets)), "holdout": int(len(holdout))}
    if method == MODEL:
        expected = {"incremental_conversions": round(float(targets["uplift"].sum()), 2),
                    "incremental_profit": round(float(targets["expected_profit"].sum()), 2),
                    "cost": round(float(cost[cut][~is_held].sum()), 2)}
    else:
        expected = {"incremental_conversions": None, "incremental_profit": None,
                    "cost": round(float(cost[cut][~is_held].sum()), 2)}
    if counts["non_positive"]:
        notes.append(f"{counts['non_positive']} eligible users were dropped: their expected profit (or score) is not "
                     "positive (sure things, do-not-disturbs, or no affinity)")
    if budget_users is not None and len(targets) < budget_users:
        notes.append(f"only {len(targets)} users have a positive expected profit; the budget of {budget_users} "
                     "users is not used up")
    return TargetList(method, targets, holdout, counts, expected, notes)


def eligible_mask(opted_out: np.ndarray, last_contacted_days: np.ndarray, exclude_contacted_days: int) -> np.ndarray:
    """True for users who may be contacted: not opted out and not contacted in the last N days.

    `last_contacted_days`: days since the last contact (NaN for never).
    """
    if exclude_contacted_days < 0:
        raise InputError(f"exclude_contacted_days must be >= 0, got {exclude_contacted_days}")
    recent = np.nan_to_num(np.asarray(last_contacted_days, float), nan=np.inf) < exclude_contacted_days
    return ~np.asarray(opted_out, bool) & ~recent


def rule_score(affinity: np.ndarray, churn_probability: np.ndarray, clv: np.ndarray) -> np.ndarray:
    """The fallback score: affinity x churn probability x CLV (missing values count as 0)."""
    parts = [np.nan_to_num(np.asarray(v, float), nan=0.0) for v in (affinity, churn_probability, clv)]
    return parts[0] * parts[1] * np.maximum(parts[2], 0.0)


def budget_curve(candidates: pd.DataFrame, economics: Economics, budgets, *, holdout_share: float = 0.0,
                 seed: int = 0) -> pd.DataFrame:
    """What-if of the uplift-model list over budgets in users: for each budget, the targets,
    expected incremental conversions, profit and cost of `select_targets` (candidates as there,
    with `uplift` and `p_redeem`). Profit stops growing once every user with a positive
    expected profit is targeted."""
    rows = []
    for b in sorted({int(b) for b in budgets if int(b) > 0}):
        t = select_targets(candidates, economics, budget_users=b, holdout_share=holdout_share, seed=seed)
        rows.append({"budget_users": b, "targets": t.counts["targets"], **t.expected})
    return pd.DataFrame(rows, columns=["budget_users", "targets", "incremental_conversions", "incremental_profit",
                                       "cost"])
