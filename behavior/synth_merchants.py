"""Planted merchant trajectories for the synthetic generator: merchants that grow, decline
and stop, so that merchant segments and merchant churn risk have known answers.

The story. Customers' purchases (times, categories, spend) are drawn as in `behavior.synth`;
planting only changes *at which merchant of the purchase's category* some purchases happen, so
every per-user figure (purchase times, counts, spend, categories, channels) stays exactly as it
was: only merchant_id and item_id of moved purchases change. In `rate` x (merchants) categories
that have at least two merchants, one merchant (drawn by its purchase count; for `growing`
among those with at most 30% of the category's purchases when there are any) gets a trajectory,
the three kinds in turn (`TRAJECTORIES`):

- `growing`: from its change day c on, each purchase at another merchant of its category moves
  to it with the probability that makes its expected volume `GROWTH` times what it was (its
  share s of the category's purchases before c: q = (GROWTH - 1) s / (1 - s), at most 0.9;
  when q is capped the realised factor is lower, and the truth says which).
- `declining`: from c on, each of its purchases moves away with probability 1 - `DECLINE`,
  so its volume falls to `DECLINE` times what it was.
- `stopped`: its volume fades linearly to nothing over the `STOP_FADE_DAYS` before c (each
  purchase at it in [c - 90, c) moves away with probability (t - c + 90) / 90), and from c on
  every one of its purchases moves away: it has no payment after c. (Merchants that stop
  usually fade first, which is what a churn risk can see coming.)

Change days: growing and declining in [H - 130, H - 95) days (H = the window's length), so that
at the window's end the last 90 days are wholly after the change and at least two thirds of the
90 days before are before it; stopped in [H / 2, H - 30), so that some have been silent for
more than 90 days at the end and some stop inside a churn model's label window.

A moved purchase goes to a merchant drawn by the purchase counts before c (the planted one for
`growing`; the category's others for `declining` and `stopped`), and each of its lines takes
the item at the same position in the new merchant's list (modulo its size), so the lines stay in
the category. All draws come from their own generator (seeded from the synth seed), so the
rest of the history is drawn exactly as without planting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from behavior.synth_catalog import Baskets, Catalog

TRAJECTORIES = ("growing", "declining", "stopped")
GROWTH = 3.0
DECLINE = 0.6
STOP_FADE_DAYS = 90
_MAX_TAKE = 0.9
_GROWING_MAX_SHARE = 0.3
_STREAM = 0x6D65_7263   # the planting generator's stream, apart from the main one


@dataclass(frozen=True)
class MerchantPlan:
    """The planted merchants: catalogue index, trajectory, change day and the volume factor."""

    merchant: np.ndarray     # catalogue merchant index
    kind: np.ndarray         # index into TRAJECTORIES
    change_day: np.ndarray   # days since the window's start
    factor: np.ndarray       # expected volume after the change / before it
    moved: np.ndarray        # purchases moved to (growing) or away from it

    @staticmethod
    def empty() -> "MerchantPlan":
        z = np.zeros(0)
        return MerchantPlan(z.astype(np.int64), z.astype(np.int64), z, z, z.astype(np.int64))


def _merchant_category(catalog: Catalog) -> np.ndarray:
    return catalog.category[catalog.merchant_items[catalog.merchant_offset]]


def plant_merchant_trends(baskets: Baskets, t: np.ndarray, catalog: Catalog, horizon: float, rate: float,
                          seed: int) -> tuple[Baskets, MerchantPlan]:
    """The baskets with the planted moves applied (items of moved purchases remapped) and the
    plan. `t` is each purchase's day; `rate` the share of merchants given a trajectory."""
    n_merchants = catalog.n_merchants
    m_cat = _merchant_category(catalog)
    first_line = np.zeros(len(baskets.n_lines), dtype=np.int64)
    first_line[baskets.purchase[baskets.line_no == 1]] = np.flatnonzero(baskets.line_no == 1)
    merchant = catalog.merchant[baskets.item[first_line]]
    per_cat = np.bincount(m_cat, minlength=int(m_cat.max(initial=0)) + 1)
    eligible = np.flatnonzero(per_cat >= 2)
    k = min(len(eligible), int(round(rate * n_merchants)))
    if k == 0 or len(merchant) == 0:
        return baskets, MerchantPlan.empty()
    rng = np.random.default_rng([seed, _STREAM])
    cats = rng.choice(eligible, size=k, replace=False)
    kinds = rng.permutation(np.arange(k) % len(TRAJECTORIES))
    volume = np.bincount(merchant, minlength=n_merchants).astype(np.float64)
    chosen = np.empty(k, dtype=np.int64)
    for j, c in enumerate(cats):
        members = np.flatnonzero(m_cat == c)
        w = volume[members] + 1.0
        if kinds[j] == TRAJECTORIES.index("growing"):
            # a merchant with a small share can triple without taking most of its rivals' volume
            small = w / w.sum() <= _GROWING_MAX_SHARE
            w = np.where(small, w, 0.0) if small.any() else (w == w.min()).astype(np.float64)
        chosen[j] = rng.choice(members, p=w / w.sum())
    # (a window shorter than these spans gets its change days clipped into it)
    stop_lo, step_lo = horizon / 2, max(0.0, horizon - 130)
    change = np.where(kinds == TRAJECTORIES.index("stopped"), rng.uniform(stop_lo, max(stop_lo, horizon - 30), k),
                      rng.uniform(step_lo, max(step_lo, horizon - 95), k))
    new_merchant = merchant.copy()
    factor = np.empty(k)
    moved = np.zeros(k, dtype=np.int64)
    u = rng.random(len(merchant))
    for j in range(k):
        m, c, kind = chosen[j], change[j], TRAJECTORIES[kinds[j]]
        members = np.flatnonzero(m_cat == m_cat[m])
        others = members[members != m]
        before = np.bincount(merchant[t < c], minlength=n_merchants).astype(np.float64)
        if kind == "growing":
            share = before[m] / max(1.0, before[members].sum())
            take = min(_MAX_TAKE, (GROWTH - 1.0) * share / max(1e-9, 1.0 - share))
            hit = (t >= c) & np.isin(merchant, others) & (u < take)
            new_merchant[hit] = m
            factor[j] = 1.0 + take * (1.0 - share) / max(1e-9, share)
        else:
            if kind == "declining":
                keep = np.where(t >= c, DECLINE, 1.0)
            else:   # fading linearly to nothing over the STOP_FADE_DAYS before the stop
                keep = np.clip((c - t) / STOP_FADE_DAYS, 0.0, 1.0)
            hit = (merchant == m) & (u >= keep)
            w = before[others] + 1.0
            new_merchant[hit] = others[np.searchsorted(np.cumsum(w / w.sum()), rng.random(int(hit.sum())),
                                                       side="right").clip(0, len(others) - 1)]
            factor[j] = DECLINE if kind == "declining" else 0.0
        moved[j] = int(hit.sum())
    changed = new_merchant != merchant
    line_changed = changed[baskets.purchase]
    item = baskets.item.copy()
    old = item[line_changed]
    dest = new_merchant[baskets.purchase[line_changed]]
    item[line_changed] = catalog.merchant_items[catalog.merchant_offset[dest]
                                                + catalog.position[old] % catalog.merchant_size[dest]]
    plan = MerchantPlan(chosen, kinds.astype(np.int64), change, factor, moved)
    return replace(baskets, item=item), plan


def merchant_truth(plan: MerchantPlan, catalog: Catalog, merchant_ids: list[str], categories: tuple[str, ...],
                   start) -> dict:
    """truth.json's `merchants`: per planted merchant id its trajectory, category, change time,
    expected volume factor after the change and the purchases moved."""
    m_cat = _merchant_category(catalog)
    out = {}
    for j in np.argsort(plan.merchant):
        m = int(plan.merchant[j])
        out[merchant_ids[m]] = {
            "trajectory": TRAJECTORIES[int(plan.kind[j])],
            "category": categories[int(m_cat[m])],
            "change_at": (start + pd.Timedelta(days=float(plan.change_day[j]))).floor("s").isoformat(),
            "volume_factor": round(float(plan.factor[j]), 4),
            "purchases_moved": int(plan.moved[j]),
        }
    return out


__all__ = ["DECLINE", "GROWTH", "STOP_FADE_DAYS", "MerchantPlan", "TRAJECTORIES", "merchant_truth", "plant_merchant_trends"]
