"""Past promotions of the synthetic generator: randomized assignments and planted response types.

Helper of `behavior.synth` (its docstring tells the whole story). A promotion's outcome is a
*conversion*: at least one successful purchase by the user inside the window
[starts_at, ends_at) with a line in the target category (any category when the target is
"any"). Natural purchases (the BG/NBD process) convert users whatever their group; on top of
them each assigned user has a latent response type that decides whether the promotion
adds a purchase in the window:

- persuadable: an extra purchase only if treated;
- sure thing: an extra purchase in either group;
- do not disturb: an extra purchase only in control (the offer puts them off);
- lost cause: no extra purchase.

An extra purchase is only added to users who did not convert naturally (the outcome is
binary), which keeps the perturbation of the BG/NBD history minimal. The type probabilities
depend on what the history shows at `starts_at` (recency, frequency, affinity to the target
category), so an uplift model can learn them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from behavior.synth_catalog import CATEGORIES, CATEGORY_SHARE, Tastes

TYPES: tuple[str, ...] = ("persuadable", "sure_thing", "do_not_disturb", "lost_cause")
_KINDS = ("cashback", "coupon", "discount", "double points", "voucher")
CONVERSION_DEFINITION = (
    "assigned user with at least one successful payment in [starts_at, ends_at) "
    "having a line in the target category (any category when target is 'any')"
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def response_probabilities(
    frequency: np.ndarray, recency_days: np.ndarray, affinity: np.ndarray, strength: float
) -> np.ndarray:
    """(n, 4) probabilities of TYPES given observable history at the promotion start.

    Lapsed users (recency beyond ~3 weeks) with affinity to the target are persuadable; recent
    heavy buyers are sure things (with affinity) or do-not-disturb; the rest are lost causes.
    """
    heavy = _sigmoid(2.0 * (np.log1p(frequency) - np.log1p(6.0)))
    lapsed = _sigmoid((recency_days - 21.0) / 7.0)
    persuadable = strength * (0.05 + 0.40 * affinity * lapsed)
    sure = 0.03 + 0.20 * heavy * affinity * (1.0 - lapsed)
    dnd = 0.02 + 0.20 * heavy * (1.0 - lapsed)
    lost = 1.0 - persuadable - sure - dnd
    return np.column_stack([persuadable, sure, dnd, lost])


@dataclass
class PromotionPlan:
    """Promotions, their assignments, the extra purchases they cause and their truth."""

    promotion_id: list[str]
    name: list[str]
    starts_day: np.ndarray  # int days after the observation start
    ends_day: np.ndarray
    target: list[str]  # a category name or "any"
    target_index: np.ndarray  # index into CATEGORIES, -1 for "any"
    cost: np.ndarray
    assigned_promo: np.ndarray  # assignment rows: promotion index
    assigned_user: np.ndarray  # assignment rows: user index
    assigned_treated: np.ndarray  # assignment rows: bool
    extra_user: np.ndarray
    extra_t: np.ndarray  # days
    extra_category: np.ndarray  # forced category, -1 for "any"
    truth: dict[str, dict] = field(default_factory=dict)
    user_columns: dict[str, np.ndarray] = field(default_factory=dict)  # per-user truth columns


def _window_match(t, cat, s, e, target) -> np.ndarray:
    m = (t >= s) & (t < e)
    return m if target < 0 else m & (cat == target)


def plan_promotions(
    *,
    n_promotions: int,
    assign_rate: float,
    horizon: float,
    start_month: tuple[int, int],
    birth: np.ndarray,
    opt_out: np.ndarray,
    nat_user: np.ndarray,
    nat_t: np.ndarray,
    nat_category: np.ndarray,
    tastes: Tastes,
    taste_strength: float,
    rng: np.random.Generator,
) -> PromotionPlan:
    """Windows, targets, randomized assignments, response types and the extra purchases they cause.

    `nat_*` are the natural purchases sorted by user then time; `start_month` is (year, month)
    of the observation start, used only in promotion names.
    """
    n = len(birth)
    n_p = n_promotions
    lo = 0.45 * horizon
    hi = max(lo, horizon - 29.0)
    centre = lo + (hi - lo) * (np.arange(n_p) + 0.5) / max(n_p, 1)
    starts = np.floor(centre + rng.uniform(-5, 5, n_p)).astype(np.int64)
    duration = rng.integers(14, 29, n_p)
    starts = np.clip(starts, 1, max(1, int(horizon) - 2))
    duration = np.maximum(1, np.minimum(duration, int(horizon) - starts))
    ends = starts + duration
    n_targets = max(0, n_p - 1)
    replace = n_targets > len(CATEGORIES)
    picked = rng.choice(len(CATEGORIES), size=n_targets, replace=replace, p=CATEGORY_SHARE)
    target_index = np.concatenate([[-1], picked])[:n_p].astype(np.int64)
    kinds = rng.integers(0, len(_KINDS), n_p)
    cost = np.round(rng.uniform(1.5, 6.0, n_p), 2)
    strength = rng.uniform(0.7, 1.3, n_p)

    year, month = start_month
    ids, names, targets = [], [], []
    for k in range(n_p):
        ids.append(f"promo{k + 1:03d}")
        target = "any" if target_index[k] < 0 else CATEGORIES[target_index[k]]
        targets.append(target)
        months_in = int(starts[k] // 30.44)
        y, m = year + (month - 1 + months_in) // 12, (month - 1 + months_in) % 12 + 1
        label = "everything" if target == "any" else target.replace("_", " ")
        names.append(f"{label.capitalize()} {_KINDS[kinds[k]]} {y:04d}-{m:02d}")

    block_start = np.searchsorted(nat_user, np.arange(n))
    composite = nat_user + nat_t / (horizon + 1.0)  # sorted: user, then time
    ext_u: list[np.ndarray] = []
    ext_t: list[np.ndarray] = []
    ext_c: list[np.ndarray] = []
    a_promo, a_user, a_treat = [], [], []
    truth: dict[str, dict] = {}
    user_columns: dict[str, np.ndarray] = {}

    for k in range(n_p):
        s, e, tgt = float(starts[k]), float(ends[k]), int(target_index[k])
        eligible = np.flatnonzero((birth < s) & ~opt_out)
        size = int(min(len(eligible), round(assign_rate * n)))
        chosen = np.sort(rng.choice(eligible, size=size, replace=False)) if size else eligible[:0]
        treated = np.zeros(size, dtype=bool)
        treated[rng.permutation(size)[: (size + 1) // 2]] = True

        count = np.searchsorted(composite, chosen + s / (horizon + 1.0)) - block_start[chosen]
        last_t = nat_t[block_start[chosen] + np.maximum(count, 1) - 1]
        recency = s - last_t
        if tgt < 0:
            affinity = np.ones(size)
        else:
            affinity = np.clip(4.0 * tastes.category_weight(chosen, tgt, taste_strength), 0.0, 1.0)
        probs = response_probabilities(count.astype(float), recency, affinity, float(strength[k]))
        kind = (rng.random(size)[:, None] >= np.cumsum(probs, axis=1)).sum(axis=1).clip(0, 3)

        converted = np.zeros(n, dtype=bool)
        converted[nat_user[_window_match(nat_t, nat_category, s, e, tgt)]] = True
        for u_, t_, c_ in zip(ext_u, ext_t, ext_c):  # extras of earlier (overlapping) promotions
            hit = (t_ >= s) & (t_ < e) & ((tgt < 0) | (c_ == tgt) | (c_ < 0))
            converted[u_[hit]] = True  # (an 'any' extra is counted, a slight over-count)
        nat = converted[chosen]
        pers, sure, dnd = kind == 0, kind == 1, kind == 2
        y1 = nat | pers | sure
        y0 = nat | sure | dnd
        extra = ~nat & np.where(treated, pers | sure, sure | dnd)
        n_extra = int(extra.sum())
        ext_u.append(chosen[extra])
        ext_t.append(s + rng.random(n_extra) * (e - s))
        ext_c.append(np.full(n_extra, tgt, dtype=np.int64))
        a_promo.append(np.full(size, k))
        a_user.append(chosen)
        a_treat.append(treated)

        expected_t = nat + ~nat * (probs[:, 0] + probs[:, 1])
        expected_c = nat + ~nat * (probs[:, 1] + probs[:, 2])
        tau = ~nat * (probs[:, 0] - probs[:, 2])
        pid = ids[k]
        truth[pid] = {
            "target": targets[k],
            "strength": float(strength[k]),
            "n_assigned": size,
            "n_treatment": int(treated.sum()),
            "n_control": int(size - treated.sum()),
            "type_counts": {name: int((kind == i).sum()) for i, name in enumerate(TYPES)},
            "type_probabilities": {name: _mean(probs[:, i]) for i, name in enumerate(TYPES)},
            "natural_conversion_rate": _mean(nat),
            "true_conversion_treatment": _mean(expected_t),
            "true_conversion_control": _mean(expected_c),
            "true_lift": _mean(tau),
            "sample_conversion_treatment": _mean(y1),
            "sample_conversion_control": _mean(y0),
            "sample_lift": _mean(y1.astype(float) - y0),
            "extra_purchases": n_extra,
        }
        col_type = np.full(n, None, dtype=object)
        col_type[chosen] = np.array(TYPES, dtype=object)[kind]
        col_tau = np.full(n, np.nan)
        col_tau[chosen] = tau
        user_columns[f"type_{pid}"] = col_type
        user_columns[f"tau_{pid}"] = col_tau
        col_p1 = np.full(n, np.nan)
        col_p1[chosen] = expected_t
        user_columns[f"p1_{pid}"] = col_p1  # P(convert | treated): a treated user redeems on converting

    def cat(parts, dtype):
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    return PromotionPlan(
        promotion_id=ids,
        name=names,
        starts_day=starts,
        ends_day=ends,
        target=targets,
        target_index=target_index,
        cost=cost,
        assigned_promo=cat(a_promo, np.int64),
        assigned_user=cat(a_user, np.int64),
        assigned_treated=cat(a_treat, bool),
        extra_user=cat(ext_u, np.int64),
        extra_t=cat(ext_t, np.float64),
        extra_category=cat(ext_c, np.int64),
        truth=truth,
        user_columns=user_columns,
    )


def _mean(x: np.ndarray) -> float:
    return float(np.mean(x)) if len(x) else 0.0


def redeem_and_observe(
    plan: PromotionPlan, n_users: int, user: np.ndarray, t: np.ndarray, category: np.ndarray
) -> np.ndarray:
    """Promotion index redeemed by each successful purchase (-1 for none), and the observed truth.

    A treated user redeems the promotion on their first qualifying purchase in the window.
    Also records in `plan.truth` the conversion rates a correct analysis of the final data
    finds (`observed_*`) and the number of redemptions.
    """
    promo = np.full(len(user), -1, dtype=np.int64)
    for k, pid in enumerate(plan.promotion_id):
        rows = plan.assigned_promo == k
        users, treated = plan.assigned_user[rows], plan.assigned_treated[rows]
        match = _window_match(t, category, plan.starts_day[k], plan.ends_day[k], plan.target_index[k])
        converted = np.zeros(n_users, dtype=bool)
        converted[user[match]] = True
        is_treated = np.zeros(n_users, dtype=bool)
        is_treated[users[treated]] = True
        idx = np.flatnonzero(match & is_treated[user] & (promo < 0))
        idx = idx[np.lexsort((t[idx], user[idx]))]
        _, first = np.unique(user[idx], return_index=True)
        promo[idx[first]] = k
        conv_t, conv_c = converted[users[treated]], converted[users[~treated]]
        info = plan.truth[pid]
        info["observed_conversion_treatment"] = _mean(conv_t)
        info["observed_conversion_control"] = _mean(conv_c)
        info["observed_lift"] = _mean(conv_t) - _mean(conv_c)
        info["redemptions"] = int(len(first))
    return promo
