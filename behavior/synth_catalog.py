"""The item catalogue, user tastes and basket sampling of the synthetic generator.

Helpers of `behavior.synth` (see its docstring for the generative story). Everything is
vectorized over purchases or users; randomness comes from the generator's single
`numpy.random.Generator`, plus a keyed hash for the per-user favourite items (so that a
favourite never has to be stored per user and category).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name, purchase share, staple (re-bought), median item price
CATEGORY_SPECS: tuple[tuple[str, float, bool, float], ...] = (
    ("groceries", 0.15, True, 4.0),
    ("coffee", 0.08, True, 4.5),
    ("bakery", 0.05, True, 3.0),
    ("restaurants", 0.08, True, 18.0),
    ("fast_food", 0.07, True, 9.0),
    ("pharmacy", 0.04, True, 12.0),
    ("beauty", 0.04, True, 20.0),
    ("pet_supplies", 0.03, True, 15.0),
    ("fuel", 0.05, True, 50.0),
    ("transport", 0.06, True, 3.0),
    ("mobile_topup", 0.03, True, 15.0),
    ("entertainment", 0.04, True, 20.0),
    ("fashion", 0.05, False, 40.0),
    ("electronics", 0.03, False, 180.0),
    ("home_appliances", 0.015, False, 120.0),
    ("furniture", 0.01, False, 220.0),
    ("books", 0.025, False, 15.0),
    ("toys", 0.02, False, 25.0),
    ("sports", 0.02, False, 45.0),
    ("travel", 0.025, False, 250.0),
)
CATEGORIES: tuple[str, ...] = tuple(c[0] for c in CATEGORY_SPECS)
STAPLE: np.ndarray = np.array([c[2] for c in CATEGORY_SPECS])
CATEGORY_SHARE: np.ndarray = np.array([c[1] for c in CATEGORY_SPECS]) / sum(c[1] for c in CATEGORY_SPECS)
# durable categories carry more distinct products (SKUs) than their purchase share suggests
_SKU_WEIGHT: np.ndarray = CATEGORY_SHARE * np.where(STAPLE, 1.0, 3.0)

ITEM_CHANNELS: tuple[str, ...] = ("app", "qr", "pos", "web", "wap")
_CHANNEL_BASE = np.array([0.35, 0.25, 0.20, 0.12, 0.08])
_CHANNEL_CONCENTRATION = 3.0
_LINES_P = np.array([0.30, 0.30, 0.22, 0.18])  # 1..4 lines per payment (staples)
_DURABLE_LINES_P = np.array([0.70, 0.20, 0.07, 0.03])
_DEDUPE_ROUNDS = 6
_QUANTITY_P = np.array([0.85, 0.11, 0.04])  # 1..3 units of a staple line
_FAVOURITE_P = np.array([0.6, 0.3, 0.1])  # which of a user's three favourite items is re-bought
_N_FAVOURITE_CATEGORIES_P = np.array([0.3, 0.45, 0.25])  # 1..3 favourite categories
DURABLE_FACTOR = 0.2  # share of a durable favourite's weight that it keeps
STAPLE_REPEAT = 0.7  # P(re-buy a favourite item on a staple line) at taste_strength 1
ZIPF_EXPONENT = 0.9
MERCHANT_SIZE = 12  # items per merchant, on average
_U_MAX = 1.0 - 1e-9


class GroupSampler:
    """Draw one member of a group with probability proportional to its weight, for many groups at once.

    Members are stored sorted by group with a cumulative distribution that runs from g to g+1
    inside group g, so one `searchsorted` serves every draw.
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        self.order = np.lexsort((np.arange(len(group)), group))
        g = group[self.order]
        w = weight[self.order].astype(np.float64)
        self.count = np.bincount(g, minlength=n_groups)
        total = np.bincount(g, weights=w, minlength=n_groups)
        csum = np.cumsum(w)
        offset = np.concatenate(([0], np.cumsum(self.count)[:-1]))
        before = np.where(offset > 0, csum[np.maximum(offset - 1, 0)], 0.0)
        within = (csum - before[g]) / total[g]
        last = offset + self.count - 1
        within[last[self.count > 0]] = 1.0
        self.cdf = g + within

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Members drawn for `groups` (each group must be non-empty) given uniforms `u` in [0, 1)."""
        pos = np.searchsorted(self.cdf, groups + np.minimum(u, _U_MAX), side="right")
        return self.order[np.minimum(pos, len(self.order) - 1)]


@dataclass
class Catalog:
    """Items (arrays indexed by item number) and the samplers built over them."""

    category: np.ndarray  # int, index into CATEGORIES
    merchant: np.ndarray  # int
    price: np.ndarray  # float, 2 decimals
    style: np.ndarray  # int, latent style cluster
    active: np.ndarray  # bool
    n_styles: int
    by_category: GroupSampler
    by_style: GroupSampler  # group = category * n_styles + style
    merchant_items: np.ndarray  # items sorted by merchant, most popular first
    merchant_offset: np.ndarray
    merchant_size: np.ndarray
    position: np.ndarray  # an item's position inside its merchant's list

    @property
    def n_merchants(self) -> int:
        return len(self.merchant_size)


def default_item_count(users: int) -> int:
    """Catalogue size that scales with the population: ~2,000 items for 30,000 users."""
    return int(min(200_000, max(200, users // 15)))


def build_catalog(n_items: int, n_styles: int, inactive_rate: float, rng: np.random.Generator) -> Catalog:
    """Items spread over the categories (durables with more SKUs), Zipf popularity, merchants, prices."""
    n_cat = len(CATEGORIES)
    per_cat = np.maximum(2, np.floor(_SKU_WEIGHT / _SKU_WEIGHT.sum() * n_items)).astype(np.int64)
    while per_cat.sum() < n_items:  # at most n_cat rounds: hand out the rounding remainder
        per_cat[np.argmax(_SKU_WEIGHT / per_cat)] += 1
    while per_cat.sum() > n_items:
        per_cat[np.argmax(per_cat)] -= 1
    category = np.repeat(np.arange(n_cat), per_cat)
    rank = rng.permutation(n_items)
    popularity = (rank + 1.0) ** -ZIPF_EXPONENT
    style = rng.integers(0, n_styles, n_items)
    median = np.array([c[3] for c in CATEGORY_SPECS])
    price = np.maximum(0.5, np.round(median[category] * rng.lognormal(0.0, 0.5, n_items), 2))
    active = rng.random(n_items) >= inactive_rate

    # merchants: each sells in one category; sizes vary around MERCHANT_SIZE
    n_merch_cat = np.maximum(1, np.round(per_cat / MERCHANT_SIZE)).astype(np.int64)
    merch_weight = rng.gamma(2.0, 1.0, int(n_merch_cat.sum()))
    merch_sampler = GroupSampler(np.repeat(np.arange(n_cat), n_merch_cat), merch_weight, n_cat)
    merchant = merch_sampler.sample(category, rng.random(n_items))
    # merchants left without an item keep no row; renumber densely in category order
    used, merchant = np.unique(merchant, return_inverse=True)
    merchant_items = np.lexsort((-popularity, merchant))
    merchant_size = np.bincount(merchant, minlength=len(used))
    merchant_offset = np.concatenate(([0], np.cumsum(merchant_size)[:-1]))
    position = np.empty(n_items, dtype=np.int64)
    position[merchant_items] = np.arange(n_items) - merchant_offset[merchant[merchant_items]]

    return Catalog(
        category=category,
        merchant=merchant,
        price=price,
        style=style,
        active=active,
        n_styles=n_styles,
        by_category=GroupSampler(category, popularity, n_cat),
        by_style=GroupSampler(category * n_styles + style, popularity, n_cat * n_styles),
        merchant_items=merchant_items,
        merchant_offset=merchant_offset,
        merchant_size=merchant_size,
        position=position,
    )


@dataclass
class Tastes:
    """Per-user latent preferences."""

    favourite: np.ndarray  # (n, 3) category indices, -1 where the user has fewer favourites
    favourite_cum: np.ndarray  # (n, 3) cumulative weights; the mass above the last goes to the base shares
    style: np.ndarray  # (n,) preferred style cluster
    channel_cum: np.ndarray  # (n, len(ITEM_CHANNELS)) cumulative channel preference, float32

    def category_weight(self, users: np.ndarray, category: int, taste_strength: float) -> np.ndarray:
        """P(a purchase of each user in `users` is in `category`) (before promotions)."""
        cum = self.favourite_cum[users].astype(np.float64)
        w = np.diff(np.concatenate([np.zeros((len(users), 1)), cum], axis=1), axis=1)
        own = (w * (self.favourite[users] == category)).sum(axis=1)
        to_base = 1.0 - taste_strength * cum[:, -1]
        return taste_strength * own + to_base * CATEGORY_SHARE[category]


def draw_tastes(n: int, n_styles: int, rng: np.random.Generator, chunk: int = 250_000) -> Tastes:
    """1-3 favourite categories (drawn by category share, Dirichlet weights), a style, channel habits.

    A durable favourite keeps only DURABLE_FACTOR of its weight (nobody buys a phone a week);
    the mass it loses goes to the population's category shares.
    """
    k = 1 + np.searchsorted(np.cumsum(_N_FAVOURITE_CATEGORIES_P), rng.random(n), side="right")
    k = np.minimum(k, 3)
    favourite = np.empty((n, 3), dtype=np.int16)
    log_share = np.log(CATEGORY_SHARE).astype(np.float32)
    for lo in range(0, n, chunk):  # Gumbel top-3: sampling without replacement, by share
        hi = min(n, lo + chunk)
        keys = log_share + rng.gumbel(size=(hi - lo, len(CATEGORIES))).astype(np.float32)
        favourite[lo:hi] = np.argsort(-keys, axis=1)[:, :3]
    unused = np.arange(3)[None, :] >= k[:, None]
    favourite[unused] = -1
    g = rng.gamma(1.0, 1.0, (n, 3))
    g[unused] = 0.0
    g /= g.sum(axis=1, keepdims=True)
    g *= np.where(STAPLE[favourite], 1.0, DURABLE_FACTOR)
    g[unused] = 0.0
    favourite_cum = np.minimum(np.cumsum(g, axis=1), 1.0).astype(np.float32)
    style = rng.integers(0, n_styles, n).astype(np.int16)
    channel_p = rng.dirichlet(_CHANNEL_BASE * _CHANNEL_CONCENTRATION, n)
    channel_cum = np.cumsum(channel_p, axis=1).astype(np.float32)
    channel_cum[:, -1] = 1.0
    return Tastes(favourite=favourite, favourite_cum=favourite_cum, style=style, channel_cum=channel_cum)


def choose_rows(cum: np.ndarray, rows: np.ndarray, u: np.ndarray, chunk: int = 1_000_000) -> np.ndarray:
    """For each draw i, the first column j with u[i] < cum[rows[i], j] (inverse-CDF per row);
    the number of columns where u[i] is beyond the row's last value."""
    out = np.empty(len(rows), dtype=np.int16)
    for lo in range(0, len(rows), chunk):
        hi = min(len(rows), lo + chunk)
        out[lo:hi] = (u[lo:hi, None] >= cum[rows[lo:hi]]).sum(axis=1)
    return out


def _hash_uniform(salt: int, *keys: np.ndarray) -> np.ndarray:
    """A deterministic uniform in [0, 1) per element from integer keys (splitmix64)."""
    x = np.full(len(keys[0]), np.uint64(salt), dtype=np.uint64)
    for i, key in enumerate(keys):
        x ^= key.astype(np.uint64) * np.uint64((0x9E3779B97F4A7C15 * (2 * i + 3)) % 2**64)
        x += np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) * 2.0**-53


@dataclass
class Baskets:
    """Lines of a batch of purchases; `purchase` indexes the batch, lines are grouped by purchase."""

    category: np.ndarray  # per purchase
    channel: np.ndarray  # per purchase
    n_lines: np.ndarray  # per purchase
    purchase: np.ndarray  # per line
    line_no: np.ndarray  # per line, 1-based
    item: np.ndarray  # per line
    quantity: np.ndarray  # per line


def sample_baskets(
    users: np.ndarray,
    forced_category: np.ndarray | None,
    catalog: Catalog,
    tastes: Tastes,
    taste_strength: float,
    salt: int,
    rng: np.random.Generator,
    dedupe: bool = False,
) -> Baskets:
    """Category, items, quantities and channel of each purchase made by `users`.

    The category comes from the user's favourites with probability `taste_strength`, otherwise
    from the population's category shares (`forced_category` >= 0 overrides both). On a staple
    category the user re-buys one of their own favourite items with probability
    STAPLE_REPEAT * taste_strength; otherwise the item is drawn by popularity, inside the user's
    style cluster with probability `taste_strength`. Further lines come from the same merchant.
    With `dedupe` (purchases given in time order per user), a durable first item the user
    already bought is redrawn, a few rounds, so durables are rarely bought twice.
    """
    n = len(users)
    ts = taste_strength
    # category
    fav_col = choose_rows(tastes.favourite_cum, users, rng.random(n))
    fav_cat = np.where(fav_col < 3, tastes.favourite[users, np.minimum(fav_col, 2)], -1).astype(np.int64)
    base_cat = np.searchsorted(np.cumsum(CATEGORY_SHARE), rng.random(n) * (1 - 1e-12), side="right")
    category = np.where((rng.random(n) < ts) & (fav_cat >= 0), fav_cat, base_cat)
    if forced_category is not None:
        category = np.where(forced_category >= 0, forced_category, category)
    # first item
    style = tastes.style[users].astype(np.int64)
    style_group = category * catalog.n_styles + style
    in_style = (rng.random(n) < ts) & (catalog.by_style.count[style_group] > 0)
    u = rng.random(n)
    item = catalog.by_category.sample(category, u)
    if in_style.any():
        item[in_style] = catalog.by_style.sample(style_group[in_style], u[in_style])
    if dedupe:
        _dedupe_durables(users, category, style_group, item, catalog, ts, rng)
    repeat = STAPLE[category] & (rng.random(n) < STAPLE_REPEAT * ts)
    fav_k = np.searchsorted(np.cumsum(_FAVOURITE_P), rng.random(n) * (1 - 1e-12), side="right")
    if repeat.any():
        hu = _hash_uniform(salt, users[repeat], category[repeat], fav_k[repeat])
        g = style_group[repeat]
        has_style = catalog.by_style.count[g] > 0
        fav_item = catalog.by_category.sample(category[repeat], hu)
        fav_item[has_style] = catalog.by_style.sample(g[has_style], hu[has_style])
        item[repeat] = fav_item
    # further lines from the same merchant, at most its size
    merchant = catalog.merchant[item]
    u_lines = rng.random(n) * (1 - 1e-12)
    n_lines = 1 + np.where(
        STAPLE[category],
        np.searchsorted(np.cumsum(_LINES_P), u_lines, side="right"),
        np.searchsorted(np.cumsum(_DURABLE_LINES_P), u_lines, side="right"),
    )
    n_lines = np.minimum(n_lines, catalog.merchant_size[merchant]).astype(np.int64)
    purchase = np.repeat(np.arange(n), n_lines)
    line0 = np.concatenate(([0], np.cumsum(n_lines)[:-1]))
    line_no = np.arange(len(purchase)) - line0[purchase]
    m = merchant[purchase]
    # staples: the next items of the merchant's list (bought together); durables: a random block
    size = catalog.merchant_size[merchant]
    shift = np.where(STAPLE[category], 0, np.floor(rng.random(n) * (size - n_lines + 1)).astype(np.int64))
    pos = catalog.position[item[purchase]] + np.where(line_no > 0, line_no + shift[purchase], 0)
    pos %= catalog.merchant_size[m]
    line_item = catalog.merchant_items[catalog.merchant_offset[m] + pos]
    qty_draw = 1 + np.searchsorted(np.cumsum(_QUANTITY_P), rng.random(len(purchase)) * (1 - 1e-12), side="right")
    quantity = np.where(STAPLE[category[purchase]], qty_draw, 1)
    channel = np.minimum(choose_rows(tastes.channel_cum, users, rng.random(n)), len(ITEM_CHANNELS) - 1)
    return Baskets(
        category=category,
        channel=channel,
        n_lines=n_lines,
        purchase=purchase,
        line_no=line_no + 1,
        item=line_item,
        quantity=quantity,
    )


def _dedupe_durables(users, category, style_group, item, catalog, ts, rng) -> None:
    """Redraw (in place) durable items that repeat an earlier purchase of the same user."""
    n_items = np.int64(len(catalog.category))
    for _ in range(_DEDUPE_ROUNDS):
        idx = np.flatnonzero(~STAPLE[category])
        _, first = np.unique(users[idx].astype(np.int64) * n_items + item[idx], return_index=True)
        dup = np.ones(len(idx), dtype=bool)
        dup[first] = False
        redo = idx[dup]
        if not len(redo):
            return
        u = rng.random(len(redo))
        new = catalog.by_category.sample(category[redo], u)
        g = style_group[redo]
        in_style = (rng.random(len(redo)) < ts) & (catalog.by_style.count[g] > 0)
        new[in_style] = catalog.by_style.sample(g[in_style], u[in_style])
        item[redo] = new


def concat_baskets(a: Baskets, b: Baskets) -> Baskets:
    """Baskets of batch `a` followed by those of batch `b` (b's purchases renumbered after a's)."""
    return Baskets(
        category=np.concatenate([a.category, b.category]),
        channel=np.concatenate([a.channel, b.channel]),
        n_lines=np.concatenate([a.n_lines, b.n_lines]),
        purchase=np.concatenate([a.purchase, b.purchase + len(a.n_lines)]),
        line_no=np.concatenate([a.line_no, b.line_no]),
        item=np.concatenate([a.item, b.item]),
        quantity=np.concatenate([a.quantity, b.quantity]),
    )
