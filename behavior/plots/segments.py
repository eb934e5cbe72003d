"""Plots of customer segments and loyalty, from the bundle's profiles, the report's segment
counts, `behavior.segments.segment_migration` and merchants.parquet (merchant loyalty and the
merchant side: segments, risk, share of wallet)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter

from behavior.plots._style import PALETTE, empty, figure, label, money, percent_axis, styled, thousands_axis
from behavior.segments import LOYALTY_TIERS, SEGMENTS, fm_scores, segment_of_cell

TIER_COLORS = {"Bronze": "#b0793b", "Silver": "#9ea7ad", "Gold": "#d4af37", "Platinum": "#5b7d9a"}


@styled
def plot_rfm_distribution(profiles: pd.DataFrame) -> Figure:
    """Customers per cell of the R x FM grid (the grid the segments are cut from), with each
    cell's count, share and segment name. Needs r_score, f_score, m_score."""
    fig, ax = figure(9, 6)
    label(ax, "RFM distribution: customers per recency x frequency-monetary cell",
          "FM score (1 = fewest and smallest payments, 5 = most and largest)", "R score (5 = most recent)")
    cols = {"r_score", "f_score", "m_score"}
    if profiles is None or profiles.empty or not cols <= set(profiles.columns) or profiles["r_score"].isna().all():
        empty(ax, "no RFM scores")
        return fig
    scored = profiles.dropna(subset=["r_score", "f_score"])
    r = scored["r_score"].astype(int).to_numpy()
    fm = fm_scores(scored).to_numpy(dtype=np.int64)
    grid = np.zeros((5, 5), dtype=np.int64)
    np.add.at(grid, (5 - r, fm - 1), 1)   # row 0 = R 5 (top)
    total = grid.sum()
    image = ax.imshow(grid, cmap="Blues", aspect="auto")
    for i in range(5):
        for j in range(5):
            n = grid[i, j]
            dark = n > 0.6 * grid.max()
            ax.text(j, i, f"{segment_of_cell(5 - i, j + 1)}\n{n:,} ({n / total:.1%})", ha="center", va="center",
                    fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(5), [str(k) for k in range(1, 6)])
    ax.set_yticks(range(5), [str(k) for k in range(5, 0, -1)])
    ax.grid(False)
    fig.colorbar(image, ax=ax, label="customers", shrink=0.8)
    return fig


@styled
def plot_segment_sizes(counts: dict | pd.Series) -> Figure:
    """Customers per segment (in the library's segment order), with the share of all customers;
    `counts` as in the report's `segments.counts` or a value_counts() of the profiles."""
    fig, ax = figure(8, 4.8)
    label(ax, "Segment sizes", "customers", "segment")
    s = pd.Series(counts if counts is not None else {}, dtype="float64")
    if s.empty or s.sum() <= 0:
        empty(ax, "no segments")
        return fig
    order = [k for k in SEGMENTS if k in s.index] + [k for k in s.index if k not in SEGMENTS]
    s = s.reindex(order).fillna(0)
    bars = ax.barh(list(s.index)[::-1], s.to_numpy()[::-1], color=PALETTE[0])
    ax.bar_label(bars, labels=[f" {v:,.0f} ({v / s.sum():.0%})" for v in s.to_numpy()[::-1]], fontsize=8)
    ax.margins(x=0.18)
    thousands_axis(ax, "x")
    ax.grid(axis="y", visible=False)
    return fig


@styled
def plot_segment_migration(matrix: pd.DataFrame, before: str = "before", after: str = "after") -> Figure:
    """Where the customers of each segment went: the counts of `segment_migration(before,
    after)` as a heatmap of row shares (each row sums to 100%), with the share in each cell."""
    fig, ax = figure(10, 7.5)
    label(ax, f"Segment migration: share of each segment at {before} by segment at {after}",
          f"segment at {after}", f"segment at {before}")
    if matrix is None or matrix.empty or matrix.to_numpy().sum() == 0:
        empty(ax, "no customers in either period")
        return fig
    m = matrix.loc[matrix.sum(axis=1) > 0]
    m = m.loc[:, (m.sum(axis=0) > 0)]
    share = m.to_numpy(float) / m.sum(axis=1).to_numpy(float)[:, None]
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    small = share.size > 100
    for i in range(share.shape[0]):
        for j in range(share.shape[1]):
            if share[i, j] >= 0.005:
                ax.text(j, i, f"{share[i, j]:.0%}", ha="center", va="center", fontsize=7 if small else 8,
                        color="white" if share[i, j] > 0.55 else "black")
    rows = [f"{name} ({n:,})" for name, n in zip(m.index, m.sum(axis=1))]
    ax.set_xticks(range(m.shape[1]), list(m.columns), rotation=40, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(m.shape[0]), rows)
    ax.grid(False)
    cbar = fig.colorbar(image, ax=ax, label="share of the row's customers", shrink=0.8)
    percent_axis(cbar.ax)
    return fig


@styled
def plot_loyalty_tiers(profiles: pd.DataFrame) -> Figure:
    """The loyalty score's distribution (0-100) coloured by tier, with the tier bounds and the
    share of customers in each tier."""
    fig, ax = figure(9, 4.5)
    label(ax, "Loyalty score and tiers", "loyalty score (0-100)", "customers")
    if profiles is None or profiles.empty or "loyalty_score" not in profiles or profiles["loyalty_score"].isna().all():
        empty(ax, "no loyalty scores")
        return fig
    score = profiles["loyalty_score"].dropna().to_numpy(float)
    bounds = [lo for _, lo in LOYALTY_TIERS] + [100.0]
    edges = np.linspace(0, 100, 51)
    counts, _ = np.histogram(score, bins=edges)
    centers = (edges[:-1] + edges[1:]) / 2
    for (name, lo), hi in zip(LOYALTY_TIERS, bounds[1:]):
        inside = (centers >= lo) & (centers < hi)
        share = float(((score >= lo) & ((score < hi) | (hi == 100.0))).mean())
        ax.bar(centers[inside], counts[inside], width=2.0, color=TIER_COLORS.get(name, PALETTE[0]),
               edgecolor="white", linewidth=0.3, label=f"{name} ({lo:.0f}-{hi:.0f}): {share:.0%}")
        if lo > 0:
            ax.axvline(lo, color="black", lw=0.8, ls="--")
    ax.set_xlim(0, 100)
    thousands_axis(ax)
    ax.legend(title="tier: share of customers", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


@styled
def plot_merchant_loyalty(merchants: pd.DataFrame, currency: str | None = None) -> Figure:
    """Merchants by customers (log scale) and repeat-customer rate; colour = 90-day retention of
    newly acquired customers, marker area = net revenue. From merchants.parquet."""
    fig, ax = figure(9, 5.5)
    label(ax, "Merchant loyalty: reach against repeat business", "customers (log scale)",
          "repeat-customer rate (% of customers buying on 2+ days)")
    if merchants is None or merchants.empty or not (merchants.get("customers", pd.Series(dtype=float)) > 0).any():
        empty(ax, "no merchants with customers")
        return fig
    m = merchants[merchants["customers"] > 0]
    revenue = m["revenue"].astype(float).clip(lower=0).fillna(0).to_numpy() if "revenue" in m else np.zeros(len(m))
    size = 15 + 300 * np.sqrt(revenue / revenue.max()) if revenue.max() > 0 else np.full(len(m), 30.0)
    retention = m["retention_90d"].astype(float) if "retention_90d" in m else pd.Series(np.nan, index=m.index)
    has_ret = retention.notna()
    if (~has_ret).any():
        ax.scatter(m["customers"][~has_ret], m["repeat_customer_rate"][~has_ret], s=size[~has_ret.to_numpy()],
                   facecolors="none", edgecolors="#999999", label="no recent cohort for retention")
    if has_ret.any():
        points = ax.scatter(m["customers"][has_ret], m["repeat_customer_rate"][has_ret],
                            c=retention[has_ret], s=size[has_ret.to_numpy()], cmap="viridis", alpha=0.8,
                            edgecolors="white", linewidths=0.4)
        cbar = fig.colorbar(points, ax=ax, label="90-day retention of new customers", shrink=0.85)
        percent_axis(cbar.ax, decimals=0)
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))   # 10, 20, 50, 100, ... labelled
    ax.xaxis.set_minor_formatter(NullFormatter())
    thousands_axis(ax, "x")
    percent_axis(ax, decimals=0)
    ax.text(0.01, 0.99, "marker area ~ net revenue" + money(currency), transform=ax.transAxes, va="top",
            fontsize=8, color="#555555")
    if (~has_ret).any():
        ax.legend(loc="upper left", bbox_to_anchor=(0, 0.95))
    return fig


MERCHANT_SEGMENT_COLORS = {"growing": "#2e7d32", "steady": "#5b7d9a", "new": "#8e7cc3", "declining": "#e69138",
                           "at_risk": "#c62828", "dormant": "#9e9e9e"}


def revenue_at_stake(merchants: pd.DataFrame) -> pd.Series:
    """churn_risk x net revenue of the last 90 days (negative revenue counts as 0): the revenue a
    merchant's fall would put at stake over the next 90 days; null where the risk is."""
    return merchants["churn_risk"].astype(float) * merchants["revenue_90d"].astype(float).clip(lower=0)


@styled
def plot_merchant_health(merchants: pd.DataFrame, currency: str | None = None, top: int = 10) -> Figure:
    """The merchant side in three panels: merchants per merchant segment; the `top` riskiest
    merchants by revenue at stake (`revenue_at_stake`), labelled with risk and segment; and the
    distribution of share of wallet. From merchants.parquet."""
    fig, (a, b, c) = figure(15, 5, ncols=3, width_ratios=[1, 1.4, 1])
    fig.suptitle("The merchant side: segments, churn risk and share of wallet", x=0.01, ha="left")
    label(a, "Merchants per segment", "merchant segment", "merchants")
    label(b, f"Riskiest merchants by revenue at stake{money(currency)}",
          f"churn risk x net revenue of the last 90 days{money(currency)}", "merchant")
    label(c, "Share of wallet", "its share of its customers' spend in its categories", "merchants")
    if merchants is None or merchants.empty or "merchant_segment" not in merchants:
        for ax in (a, b, c):
            empty(ax, "no merchant profiles")
        return fig
    counts = merchants["merchant_segment"].value_counts()
    order = [s for s in MERCHANT_SEGMENT_COLORS if s in counts.index]
    bars = a.bar(order, [counts[s] for s in order], color=[MERCHANT_SEGMENT_COLORS[s] for s in order])
    a.bar_label(bars, labels=[f"{counts[s]:,}" for s in order], fontsize=8)
    a.tick_params(axis="x", rotation=30)
    thousands_axis(a)
    stake = revenue_at_stake(merchants) if {"churn_risk", "revenue_90d"} <= set(merchants) else pd.Series(dtype=float)
    if stake.notna().any() and stake.max() > 0:
        riskiest = merchants.assign(stake=stake).dropna(subset=["stake"]).nlargest(top, "stake").iloc[::-1]
        colors = [MERCHANT_SEGMENT_COLORS.get(s, "#777777") for s in riskiest["merchant_segment"]]
        hb = b.barh(riskiest["merchant_id"].astype(str), riskiest["stake"], color=colors)
        b.bar_label(hb, labels=[f"risk {r:.0%} · {s}" for r, s in zip(riskiest["churn_risk"], riskiest["merchant_segment"])],
                    fontsize=8, padding=3)
        b.set_xlim(0, riskiest["stake"].max() * 1.45)
        thousands_axis(b, "x")
    else:
        empty(b, "no merchant churn risk in this bundle (see the report's merchants notes)")
    share = merchants["share_of_wallet"].astype(float).dropna() if "share_of_wallet" in merchants else pd.Series()
    if len(share):
        c.hist(share, bins=np.linspace(0, 1, 21), color=PALETTE[0], edgecolor="white")
        c.axvline(share.median(), color="#333333", linestyle="--", linewidth=1)
        c.text(share.median(), c.get_ylim()[1] * 0.95, f" median {share.median():.0%}", fontsize=8, va="top")
        percent_axis(c, "x", decimals=0)
    else:
        empty(c, "no share of wallet (no amounts or categories)")
    return fig


__all__ = ["MERCHANT_SEGMENT_COLORS", "plot_loyalty_tiers", "plot_merchant_health", "plot_merchant_loyalty",
           "plot_rfm_distribution", "plot_segment_migration", "plot_segment_sizes", "revenue_at_stake"]
