"""Realistic synthetic payment histories with planted ground truth.

`generate(SynthConfig(...))` returns the five canonical tables (see `behavior.schema`) as
pandas DataFrames, a per-user truth table `_truth_users` and a JSON-serialisable `truth`
dict. One `numpy.random.default_rng(seed)` drives everything: the same config gives the
same output. The time unit of every planted parameter is the day; the history runs from
`start` (midnight UTC) for `months` calendar months. The generative story:

**Customers (BG/NBD).** Users are acquired over the first `acquisition_span` (75%) of the
window with a linearly growing intensity (the last cohort is `1 + acquisition_growth` times
the first); acquisition is the first purchase ("birth", BTYD convention) and `signup_at`
is the same moment or a few days earlier. Each user draws a purchase rate
lambda ~ Gamma(shape=r, scale=1/alpha) and a dropout probability p ~ Beta(a, b). While
active, purchases form a Poisson process with rate lambda; after every repeat purchase the
user drops out with probability p, for good. As in the BG/NBD likelihood (Fader, Hardie and
Lee 2005) there is no dropout at the first purchase, so a user without repeat purchases is
alive (the MBG/NBD variant differs exactly there). Vectorized exactly: the number of repeat
purchases made before dropout is Geometric(p) (>= 1), the number the Poisson process puts
in (birth, end) is K ~ Poisson(lambda * (end - birth)), and the repeat times are the first
min(K, Geometric(p)) of K uniform order statistics, drawn as normalized exponential
spacings. Hence, given the latents, E[repeats] = (1 - exp(-lambda p t)) / p,
P(no repeat) = exp(-lambda t) and P(alive at end) = exp(-lambda p t).
Purchases of one user on the same calendar day happen (about 3% of repeats with the
defaults); the BTYD convention merges them into one purchase day.

**Spend (Gamma-Gamma).** Each user draws nu ~ Gamma(shape=q, rate=v); every purchase's value
is z ~ Gamma(shape=p, rate=nu), rounded to cents (at least one cent per line). So
E[z] = p * v / (q - 1) and z * nu ~ Gamma(p, 1) for every purchase. The value is split over
the payment's lines in proportion to price x quantity (largest-remainder rounding), so the
lines sum exactly to the rounded value. Spend is independent of frequency, as the model
assumes. Failed attempts repeat the same lines and amounts.

**Items and tastes.** 20 categories, a Zipf-like popularity over items, merchants that each
sell ~12 items of one category, prices around a category median, a few inactive items.
Each user has 1-3 favourite categories (Dirichlet weights; a durable favourite keeps only a
fifth of its weight), a latent style cluster and, in each staple category (groceries,
coffee, fuel, ...), three favourite items that they re-buy. With `taste_strength` s, a
purchase's category comes from the favourites with probability s (else from the population's
category shares), the item from the user's style cluster with probability s (else by
popularity in the category), and a staple purchase re-buys a favourite item with probability
0.7 s. Durable categories (electronics, furniture, ...) have more SKUs and no favourites, and
a durable item the user already bought is redrawn, so they are rarely re-bought. s = 0 leaves
nothing to learn beyond popularity. A payment has 1-4 lines at one merchant: the first item as
above, then the merchant's next items (staples: bought together) or a random block of them
(durables); quantity 1, sometimes 2-3 on staples.

**Channels.** Each user has Dirichlet channel preferences over app, qr, pos, web, wap; each
payment's channel is drawn from them.

**Failures and refunds.** A share `fail_rate` of purchases is preceded, 1-10 minutes earlier,
by a failed attempt (own payment_id, status "failed", same lines), which is not a purchase. A
share `refund_rate` of successful lines is refunded 1-30 days later (within the window) by a
new payment with status "refund", negative quantity and amount.

**Promotions.** `n_promotions` past promotions in the second half of the window, 2-4 weeks
long, target "any" (the first) or a category. Each assigns `promo_assign_rate` of the users
(acquired before the start and not opted out) 50/50 at random to treatment and control.
Latent response types (persuadable, sure thing, do-not-disturb, lost cause) whose
probabilities depend on recency, frequency and affinity to the target add (or, for
do-not-disturb, withhold under treatment) one purchase in the window; see
`behavior.synth_promotions`. A treated user's first qualifying purchase in the window carries
the promotion_id. Truth per promotion: type counts, expected and realized conversion rates
in both arms and the true lift.

**Merchant trajectories.** A share `merchant_trend_rate` of the merchants grow, decline or
stop from a change day on (`behavior.synth_merchants`): only the merchant (and item) of some
purchases changes, never who buys, when, in which category or for how much. Truth per planted
merchant in `truth["merchants"]`; the other merchants are steady.

**Users.** `marketing_opt_out` is True for a share `opt_out_rate`; opted-out users are never
assigned to promotions. `tables["_truth_users"]` holds per user the latent lambda,
p_dropout, nu, alive_at_end, dropout_at, the number of natural purchases, taste and, per
promotion, the response type and expected individual lift (tau) and P(convert | treated) (p1).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from behavior.errors import InputError
from behavior.synth_catalog import (
    CATEGORIES,
    CATEGORY_SHARE,
    ITEM_CHANNELS,
    STAPLE,
    build_catalog,
    concat_baskets,
    default_item_count,
    draw_tastes,
    sample_baskets,
)
from behavior.synth_merchants import merchant_truth, plant_merchant_trends
from behavior.synth_promotions import CONVERSION_DEFINITION, plan_promotions, redeem_and_observe

DAY_US = 86_400_000_000
TABLE_NAMES = ("payments", "items", "users", "promotions", "assignments")


@dataclass(frozen=True)
class SynthConfig:
    """Size, seed and planted parameters of a synthetic history (time unit: day)."""

    users: int = 60_000  # about a million payment lines over 24 months
    months: int = 24
    seed: int = 0
    start: str = "2024-01-01"
    items: int | None = None  # default: default_item_count(users)
    # BG/NBD: lambda ~ Gamma(r, rate alpha), dropout p ~ Beta(a, b). alpha = 40 keeps same-day
    # repeat purchases rare (the BTYD convention merges them into one purchase day; with
    # alpha = 22 a fit on purchase days overstates alpha by about 9%, with 40 by about 5%).
    r: float = 0.9
    alpha: float = 40.0
    a: float = 0.8
    b: float = 12.0
    # Gamma-Gamma: nu ~ Gamma(q, rate v), value ~ Gamma(p, rate nu)
    p: float = 6.0
    q: float = 3.8
    v: float = 15.0
    acquisition_span: float = 0.75  # share of the window over which users are acquired
    acquisition_growth: float = 1.0  # last cohort is (1 + growth) times the first
    taste_strength: float = 0.8
    n_styles: int = 6
    opt_out_rate: float = 0.05
    fail_rate: float = 0.02
    refund_rate: float = 0.015
    inactive_item_rate: float = 0.03
    currency: str = "EUR"
    n_promotions: int = 4
    promo_assign_rate: float = 0.10
    merchant_trend_rate: float = 0.10  # share of merchants planted growing, declining or stopped
    # Parts of one big history (generated one at a time to bound memory): the same catalogue
    # from `catalog_seed`, and user / payment ids prefixed so the parts never collide.
    catalog_seed: int | None = None  # None: the catalogue is drawn from `seed`
    id_prefix: str = ""

    def __post_init__(self) -> None:
        checks = [
            (self.users >= 1, "users must be at least 1"),
            (self.months >= 1, "months must be at least 1"),
            (self.items is None or self.items >= 2 * len(CATEGORIES), f"items must be at least {2 * len(CATEGORIES)}"),
            (min(self.r, self.alpha, self.a, self.b) > 0, "r, alpha, a, b must be positive"),
            (min(self.p, self.v) > 0 and self.q > 1, "p and v must be positive and q > 1"),
            (0 < self.acquisition_span <= 1, "acquisition_span must be in (0, 1]"),
            (self.acquisition_growth >= 0, "acquisition_growth must be >= 0"),
            (0 <= self.taste_strength <= 1, "taste_strength must be in [0, 1]"),
            (self.n_styles >= 1, "n_styles must be at least 1"),
            (self.n_promotions >= 0, "n_promotions must be >= 0"),
            (len(self.currency) == 3 and self.currency.isalpha(), "currency must be an ISO 4217 code"),
        ]
        for name in ("opt_out_rate", "fail_rate", "refund_rate", "inactive_item_rate", "promo_assign_rate",
                     "merchant_trend_rate"):
            checks.append((0 <= getattr(self, name) <= 1, f"{name} must be in [0, 1]"))
        for ok, message in checks:
            if not ok:
                raise InputError(f"invalid synth config: {message}")
        try:
            _start_timestamp(self.start)
        except (ValueError, TypeError) as exc:
            raise InputError(f"invalid synth config: start {self.start!r} is not a date ({exc})") from None


@dataclass
class SynthData:
    """Generated tables (canonical ones plus `_truth_users`) and the JSON-serialisable truth."""

    tables: dict[str, pd.DataFrame]
    truth: dict


def _start_timestamp(start: str) -> pd.Timestamp:
    ts = pd.Timestamp(start)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.normalize()


def _timestamps(start_us: int, days: np.ndarray) -> pa.Array:
    us = start_us + np.rint(np.asarray(days, dtype=np.float64) * DAY_US).astype(np.int64)
    return pa.array(us, type=pa.timestamp("us", tz="UTC"))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers, type=pa.int64()), pa.string()), width=width, padding="0")
    return pc.utf8_replace_slice(digits, start=0, stop=0, replacement=prefix)


def _take(values, index: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.string()).take(pa.array(index))


def _acquisition(n: int, horizon: float, cfg: SynthConfig, rng: np.random.Generator) -> np.ndarray:
    """Sorted acquisition days: linearly growing density over [0, span * horizon)."""
    f, g = rng.random(n), cfg.acquisition_growth
    x = f if g == 0 else (np.sqrt(1.0 + 2.0 * g * f * (1.0 + g / 2.0)) - 1.0) / g
    return np.sort(np.minimum(x, 1.0 - 1e-12) * cfg.acquisition_span * horizon)


def _bgnbd(birth, lam, p_drop, horizon, rng):
    """Natural purchases (user, day) sorted by user then time, plus alive flag and dropout day."""
    n = len(birth)
    span = horizon - birth
    k = rng.poisson(lam * span)
    before_dropout = rng.geometric(p_drop)  # repeats made before dropping out (BG/NBD: >= 1)
    m = np.minimum(k, before_dropout)
    alive = before_dropout > k
    spacing = rng.standard_exponential(int(m.sum()))
    rest = rng.standard_gamma(k - m + 1.0)
    owner = np.repeat(np.arange(n), m)
    first = np.concatenate(([0], np.cumsum(m)[:-1]))
    csum = np.concatenate(([0.0], np.cumsum(spacing)))
    partial = csum[1:] - csum[first][owner]
    total = np.bincount(owner, weights=spacing, minlength=n) + rest
    repeat_t = birth[owner] + span[owner] * partial / total[owner]
    user = np.repeat(np.arange(n), 1 + m)
    is_first = np.zeros(len(user), dtype=bool)
    is_first[first + np.arange(n)] = True
    t = np.empty(len(user))
    t[is_first] = birth
    t[~is_first] = repeat_t
    last = t[first + np.arange(n) + m]
    return user, t, 1 + m, alive, np.where(alive, np.nan, last)


def _split_cents(purchase, weight, cents, n_lines):
    """Split each purchase's cents over its lines by weight; every line gets at least one cent.

    Lines are grouped by purchase (at most 4 per purchase); the cents lost to flooring go to the
    lines with the largest fractional parts (ties to the earlier line).
    """
    free = (cents - n_lines).astype(np.float64)
    wsum = np.bincount(purchase, weights=weight, minlength=len(cents))
    share = free[purchase] * weight / wsum[purchase]
    floor = np.floor(share)
    frac = share - floor
    remainder = cents - n_lines - np.bincount(purchase, weights=floor, minlength=len(cents)).astype(np.int64)
    rank = np.zeros(len(purchase), dtype=np.int64)  # lines of the same purchase ahead of this one
    for d in range(1, int(n_lines.max(initial=1))):
        same = purchase[d:] == purchase[:-d]
        ahead_of_later = same & (frac[:-d] >= frac[d:])  # line i ahead of line i+d
        rank[d:] += ahead_of_later
        rank[:-d] += same & ~ahead_of_later
    return 1 + floor.astype(np.int64) + (rank < remainder[purchase])


def _payments(
    cfg, rng, horizon, start_us, catalog, nu, user, t, baskets, promo, user_ids, item_ids, merchant_ids, promo_ids
):
    """Payment lines of the purchases (with spend), failed attempts and refunds, sorted by time."""
    # spend: Gamma-Gamma value per purchase, split over lines
    z = rng.gamma(cfg.p, 1.0 / nu[user])
    cents = np.maximum(np.rint(z * 100.0).astype(np.int64), baskets.n_lines)
    del z
    weight = catalog.price[baskets.item] * baskets.quantity
    line_cents = _split_cents(baskets.purchase, weight, cents, baskets.n_lines)
    del weight, cents

    # failed attempts 1-10 minutes before some purchases
    n_purch = len(user)
    failed = np.flatnonzero((rng.random(n_purch) < cfg.fail_rate) & (t > 15 / 1440))
    failed_t = t[failed] - rng.uniform(1, 10, len(failed)) / 1440
    failed_of = np.full(n_purch, -1, dtype=np.int64)
    failed_of[failed] = n_purch + np.arange(len(failed))
    f_lines = np.flatnonzero(failed_of[baskets.purchase] >= 0)

    # refunds of some successful lines 1-30 days later, one refund payment per original payment
    r_lines = np.flatnonzero(rng.random(len(baskets.purchase)) < cfg.refund_rate)
    r_orig, r_inverse = np.unique(baskets.purchase[r_lines], return_inverse=True)
    r_t = t[r_orig] + rng.uniform(1, 30, len(r_orig))
    keep = r_t < horizon
    r_orig, r_t = r_orig[keep], r_t[keep]
    r_header = np.cumsum(keep) - 1 + n_purch + len(failed)
    line_keep = keep[r_inverse]
    r_lines, r_inverse = r_lines[line_keep], r_inverse[line_keep]
    r_line_no = np.empty(len(r_lines), dtype=np.int64)
    r_order = np.lexsort((r_lines, r_inverse))
    r_first = np.searchsorted(r_inverse[r_order], r_inverse[r_order])
    r_line_no[r_order] = np.arange(len(r_lines)) - r_first + 1

    # payment headers (purchases, failed attempts, refunds), numbered in time order
    h_us = start_us + np.rint(np.concatenate([t, failed_t, r_t]) * DAY_US).astype(np.int64)
    h_us = np.minimum(h_us, start_us + int(round(horizon * DAY_US)) - 1)  # stay inside [start, end)
    h_user = np.concatenate([user, user[failed], user[r_orig]])
    h_channel = np.concatenate([baskets.channel, baskets.channel[failed], baskets.channel[r_orig]])
    h_status = np.repeat(np.arange(3), [n_purch, len(failed), len(r_orig)])
    h_promo = np.concatenate([promo, np.full(len(failed) + len(r_orig), len(promo_ids) - 1)])
    h_promo[h_promo < 0] = len(promo_ids) - 1  # the trailing null
    n_pay = len(h_us)
    rank = np.empty(n_pay, dtype=np.int64)
    rank[np.argsort(h_us, kind="stable")] = np.arange(n_pay)

    # lines: source line in `baskets`, header, line_no, sign (-1 for refunds)
    n_lines = len(baskets.item)
    src = np.concatenate([np.arange(n_lines), f_lines, r_lines])
    header = np.concatenate([baskets.purchase, failed_of[baskets.purchase[f_lines]], r_header[r_inverse]])
    line_no = np.concatenate([baskets.line_no, baskets.line_no[f_lines], r_line_no])
    order = np.argsort(rank[header] * 8 + line_no)  # line_no <= 4
    src, header, line_no = src[order], header[order], line_no[order]
    sign = np.where(order < n_lines + len(f_lines), 1, -1)
    del order, f_lines, r_lines, r_inverse, failed_of
    item = baskets.item[src]

    def col(array: pa.Array) -> pd.Series:
        return array.to_pandas()

    columns = {
        "payment_id": col(_ids(cfg.id_prefix + "p", rank[header] + 1, max(9, len(str(n_pay))))),
        "line_no": col(pa.array(line_no, type=pa.int32())),
        "user_id": col(user_ids.take(pa.array(h_user[header]))),
        "merchant_id": col(merchant_ids.take(pa.array(catalog.merchant[item]))),
        "item_id": col(item_ids.take(pa.array(item))),
        "category": col(_take(CATEGORIES, catalog.category[item])),
        "quantity": col(pa.array(sign * baskets.quantity[src], type=pa.int32())),
        "amount": col(pa.array(sign * line_cents[src] / 100.0, type=pa.float64())),
        "currency": col(_take([cfg.currency], np.zeros(len(src), dtype=np.int64))),
        "paid_at": col(pa.array(h_us[header], type=pa.timestamp("us", tz="UTC"))),
        "channel": col(_take(ITEM_CHANNELS, h_channel[header])),
        "status": col(_take(["success", "failed", "refund"], h_status[header])),
        "promotion_id": col(promo_ids.take(pa.array(h_promo[header]))),
    }
    return pd.DataFrame(columns, copy=False)


def generate(config: SynthConfig) -> SynthData:
    """Generate the synthetic history of `config`: canonical tables, `_truth_users` and truth."""
    cfg = config
    rng = np.random.default_rng(cfg.seed)
    start = _start_timestamp(cfg.start)
    end = start + pd.DateOffset(months=cfg.months)
    horizon = (end - start).total_seconds() / 86_400
    start_us = start.value // 1_000
    n = cfg.users
    n_items = cfg.items if cfg.items is not None else default_item_count(n)

    catalog_rng = rng if cfg.catalog_seed is None else np.random.default_rng(cfg.catalog_seed)
    catalog = build_catalog(n_items, cfg.n_styles, cfg.inactive_item_rate, catalog_rng)
    salt = int(rng.integers(0, 2**62))
    birth = _acquisition(n, horizon, cfg, rng)
    signup = np.maximum(0.0, birth - np.where(rng.random(n) < 0.6, 0.0, rng.exponential(3.0, n)))
    lam = rng.gamma(cfg.r, 1.0 / cfg.alpha, n)
    p_drop = np.maximum(rng.beta(cfg.a, cfg.b, n), 1e-12)
    nu = rng.gamma(cfg.q, 1.0 / cfg.v, n)
    opt_out = rng.random(n) < cfg.opt_out_rate
    tastes = draw_tastes(n, cfg.n_styles, rng)

    # natural purchases and their baskets
    nat_user, nat_t, n_natural, alive, dropout_day = _bgnbd(birth, lam, p_drop, horizon, rng)
    baskets_nat = sample_baskets(nat_user, None, catalog, tastes, cfg.taste_strength, salt, rng, dedupe=True)

    # promotions: assignments, response types, extra purchases
    plan = plan_promotions(
        n_promotions=cfg.n_promotions,
        assign_rate=cfg.promo_assign_rate,
        horizon=horizon,
        start_month=(start.year, start.month),
        birth=birth,
        opt_out=opt_out,
        nat_user=nat_user,
        nat_t=nat_t,
        nat_category=baskets_nat.category,
        tastes=tastes,
        taste_strength=cfg.taste_strength,
        rng=rng,
    )
    baskets_extra = sample_baskets(
        plan.extra_user, plan.extra_category, catalog, tastes, cfg.taste_strength, salt, rng
    )
    baskets = concat_baskets(baskets_nat, baskets_extra)
    del baskets_nat, baskets_extra
    user = np.concatenate([nat_user, plan.extra_user])
    t = np.concatenate([nat_t, plan.extra_t])
    promo = redeem_and_observe(plan, n, user, t, baskets.category)
    baskets, merchant_plan = plant_merchant_trends(baskets, t, catalog, horizon, cfg.merchant_trend_rate,
                                                   cfg.seed if cfg.catalog_seed is None else cfg.catalog_seed)

    item_ids = _ids("i", np.arange(1, n_items + 1), 6)
    merchant_ids = _ids("m", np.arange(1, catalog.n_merchants + 1), 5)
    user_ids = _ids(cfg.id_prefix + "u", np.arange(1, n + 1), 7)
    promo_ids = pa.array(plan.promotion_id + [None], type=pa.string())
    payments = _payments(
        cfg, rng, horizon, start_us, catalog, nu, user, t, baskets, promo, user_ids, item_ids, merchant_ids, promo_ids
    )
    del user, t, baskets, promo

    items = pa.table(
        {
            "item_id": item_ids,
            "category": _take(CATEGORIES, catalog.category),
            "merchant_id": merchant_ids.take(pa.array(catalog.merchant)),
            "price": pa.array(catalog.price),
            "active": pa.array(catalog.active),
        }
    ).to_pandas()
    users = pa.table(
        {"user_id": user_ids, "signup_at": _timestamps(start_us, signup), "marketing_opt_out": pa.array(opt_out)}
    ).to_pandas()
    promotions = pa.table(
        {
            "promotion_id": pa.array(plan.promotion_id, type=pa.string()),
            "name": pa.array(plan.name, type=pa.string()),
            "starts_at": _timestamps(start_us, plan.starts_day),
            "ends_at": _timestamps(start_us, plan.ends_day),
            "target": pa.array(plan.target, type=pa.string()),
            "cost_per_redemption": pa.array(plan.cost, type=pa.float64()),
        }
    ).to_pandas()
    a_order = np.lexsort((plan.assigned_user, plan.assigned_promo))
    assignments = pa.table(
        {
            "promotion_id": promo_ids.take(pa.array(plan.assigned_promo[a_order])),
            "user_id": user_ids.take(pa.array(plan.assigned_user[a_order])),
            "group": _take(["control", "treatment"], plan.assigned_treated[a_order].astype(np.int64)),
            "assigned_at": _timestamps(start_us, plan.starts_day[plan.assigned_promo[a_order]]),
        }
    ).to_pandas()

    weights = np.diff(tastes.favourite_cum, axis=1, prepend=0.0)
    fav = tastes.favourite[np.arange(n), np.argmax(weights, axis=1)].astype(np.int64)  # the strongest favourite
    truth_users = pa.table(
        {
            "user_id": user_ids,
            "acquired_at": _timestamps(start_us, birth),
            "lambda": pa.array(lam),
            "p_dropout": pa.array(p_drop),
            "nu": pa.array(nu),
            "alive_at_end": pa.array(alive),
            "dropout_at": pa.array(
                np.where(alive, 0, start_us + np.rint(np.nan_to_num(dropout_day) * DAY_US)).astype(np.int64),
                type=pa.timestamp("us", tz="UTC"),
                mask=alive,
            ),
            "n_purchases": pa.array(n_natural.astype(np.int64)),
            "top_category": _take(CATEGORIES, fav),
            "style": pa.array(tastes.style.astype(np.int32)),
        }
    ).to_pandas()
    for name, values in plan.user_columns.items():
        truth_users[name] = pd.array(values, dtype="str") if values.dtype == object else values

    tables = {
        "payments": payments,
        "items": items,
        "users": users,
        "promotions": promotions,
        "assignments": assignments,
        "_truth_users": truth_users,
    }
    truth = _truth(cfg, start, end, horizon, tables, plan, nat_user, nat_t, alive, n_items)
    truth["merchants"] = merchant_truth(merchant_plan, catalog, merchant_ids.to_pylist(), CATEGORIES, start)
    return SynthData(tables=tables, truth=truth)


def _truth(cfg, start, end, horizon, tables, plan, nat_user, nat_t, alive, n_items) -> dict:
    repeat = np.r_[False, nat_user[1:] == nat_user[:-1]]
    same_day = repeat & np.r_[False, np.floor(nat_t[1:]) == np.floor(nat_t[:-1])]
    promotions = {}
    for k, pid in enumerate(plan.promotion_id):
        promotions[pid] = {
            "name": plan.name[k],
            "starts_at": (start + pd.Timedelta(days=int(plan.starts_day[k]))).isoformat(),
            "ends_at": (start + pd.Timedelta(days=int(plan.ends_day[k]))).isoformat(),
            "cost_per_redemption": float(plan.cost[k]),
            **plan.truth[pid],
        }
    config = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    config["items"] = n_items
    return {
        "seed": cfg.seed,
        "config": config,
        "time_unit": "day",
        "observation_start": start.isoformat(),
        "observation_end": end.isoformat(),
        "observation_days": float(horizon),
        "bgnbd": {"r": cfg.r, "alpha": cfg.alpha, "a": cfg.a, "b": cfg.b},
        "gamma_gamma": {"p": cfg.p, "q": cfg.q, "v": cfg.v},
        "expected": {
            "mean_lambda_per_day": cfg.r / cfg.alpha,
            "mean_dropout_probability": cfg.a / (cfg.a + cfg.b),
            "mean_transaction_value": cfg.p * cfg.v / (cfg.q - 1.0),
        },
        "realized": {
            "natural_purchases": int(len(nat_t)),
            "repeat_purchases": int(repeat.sum()),
            "same_day_repeat_share": float(same_day.sum() / max(1, repeat.sum())),
            "alive_at_end_share": float(np.mean(alive)),
            "promotion_extra_purchases": int(len(plan.extra_user)),
        },
        "counts": {name: int(len(tables[name])) for name in TABLE_NAMES},
        "taste_strength": cfg.taste_strength,
        "categories": {c: {"share": float(s), "staple": bool(st)} for c, s, st in zip(CATEGORIES, CATEGORY_SHARE, STAPLE)},
        "channels": list(ITEM_CHANNELS),
        "conversion_definition": CONVERSION_DEFINITION,
        "promotions": promotions,
        "truth_users_table": "_truth_users",
    }
