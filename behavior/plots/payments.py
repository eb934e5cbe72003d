"""Plots of the payment history, from the frames of `behavior.payment_stats` queries."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from behavior.plots._style import (PALETTE, empty, figure, label, money, month_axis, percent_axis, short, styled,
                                   thousands_axis)

_BAR_DAYS = 20   # bar width of a month on a date axis


def _months(frame: pd.DataFrame) -> pd.Series:
    return pd.to_datetime(frame["month"])


@styled
def plot_monthly_volume(monthly: pd.DataFrame, currency: str | None = None) -> Figure:
    """Successful payments and customers per month (top) and sales net of refunds (bottom),
    from `monthly_payments_sql`."""
    fig, (top, bottom) = figure(9, 6, nrows=2, sharex=True)
    fig.suptitle("Payment volume per month")
    label(top, "Successful payments and paying customers", "", "count per month")
    label(bottom, "Sales net of refunds", "month (UTC)", "sales per month" + money(currency))
    if monthly is None or monthly.empty:
        empty(top, "no payments")
        empty(bottom, "no payments")
        return fig
    m = _months(monthly)
    top.bar(m, monthly["payments"], width=_BAR_DAYS, color=PALETTE[0], label="successful payments")
    top.plot(m, monthly["customers"], color=PALETTE[1], marker="o", ms=3, label="paying customers")
    top.legend(loc="upper left")
    thousands_axis(top)
    net = monthly["sales"].astype(float) - monthly["refunds"].astype(float)
    if net.notna().any():
        bottom.bar(m, net, width=_BAR_DAYS, color=PALETTE[2])
        thousands_axis(bottom)
    else:
        empty(bottom, "the lake has no amounts")
    month_axis(bottom)
    return fig


@styled
def plot_failure_refund_rates(monthly: pd.DataFrame) -> Figure:
    """Failure rate (failed / attempted payments) and refund rate (refund / successful lines)
    per month, from `monthly_payments_sql`."""
    fig, ax = figure(9, 4)
    label(ax, "Failed payments and refunds per month", "month (UTC)", "rate (% of payments / lines)")
    if monthly is None or monthly.empty:
        empty(ax, "no payments")
        return fig
    m = _months(monthly)
    ax.plot(m, monthly["failure_rate"], marker="o", ms=3, color=PALETTE[3],
            label="failure rate: failed / attempted payments")
    ax.plot(m, monthly["refund_rate"], marker="s", ms=3, color=PALETTE[4],
            label="refund rate: refund lines / successful lines")
    top = np.nanmax(monthly[["failure_rate", "refund_rate"]].to_numpy(float)) if len(monthly) else 0
    ax.set_ylim(0, max(0.01, 1.25 * (top if np.isfinite(top) else 0)))
    percent_axis(ax, decimals=1)
    month_axis(ax)
    ax.legend(loc="upper left")
    return fig


WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@styled
def plot_weekday_hour(weekly: pd.DataFrame) -> Figure:
    """Successful payments by weekday and hour of the day (UTC), from `weekday_hour_sql`: the
    weekly rhythm of the payment history."""
    fig, ax = figure(10, 4.2)
    label(ax, "Weekly rhythm: successful payments by weekday and hour", "hour of the day (UTC)", "weekday")
    if weekly is None or weekly.empty:
        empty(ax, "no successful payments")
        return fig
    grid = np.zeros((7, 24))
    grid[weekly["weekday"].to_numpy(int), weekly["hour"].to_numpy(int)] = weekly["payments"].to_numpy(float)
    image = ax.imshow(grid, cmap="Blues", aspect="auto")
    ax.set_yticks(range(7), WEEKDAYS)
    ax.set_xticks(range(0, 24, 2), [f"{h:02d}" for h in range(0, 24, 2)])
    ax.grid(False)
    cbar = fig.colorbar(image, ax=ax, label="successful payments", shrink=0.9)
    thousands_axis(cbar.ax)
    return fig


@styled
def plot_channel_mix(channels: pd.DataFrame) -> Figure:
    """Share of successful payments per channel and month (stacked to 100%), from
    `channel_mix_sql`."""
    fig, ax = figure(9, 4.5)
    label(ax, "Channel mix of successful payments", "month (UTC)", "share of the month's payments")
    if channels is None or channels.empty:
        empty(ax, "no successful payments")
        return fig
    wide = channels.pivot_table(index="month", columns="channel", values="share", fill_value=0.0)
    wide = wide[wide.sum().sort_values(ascending=False).index]
    m = pd.to_datetime(wide.index)
    bottom = np.zeros(len(wide))
    for i, ch in enumerate(wide.columns):
        ax.bar(m, wide[ch], bottom=bottom, width=_BAR_DAYS, color=PALETTE[i % len(PALETTE)], label=str(ch))
        bottom += wide[ch].to_numpy()
    ax.set_ylim(0, 1)
    percent_axis(ax)
    month_axis(ax)
    ax.legend(title="channel", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


@styled
def plot_basket_sizes(baskets: pd.DataFrame, values: pd.DataFrame | None = None,
                      currency: str | None = None) -> Figure:
    """Items per successful payment (left, from `basket_sizes_sql`) and the distribution of
    payment values on a log scale (right, from `payment_values_sql`)."""
    fig, (left, right) = figure(10, 4, ncols=2)
    fig.suptitle("Basket sizes")
    label(left, "Items per payment", "items in the payment (quantity)", "share of successful payments")
    label(right, "Payment value", "value of the payment" + money(currency) + ", log scale",
          "successful payments")
    if baskets is None or baskets.empty:
        empty(left, "no successful payments")
    else:
        cap = int(baskets["items"].max())
        names = [f"{i}+" if i == cap and cap >= 10 else str(i) for i in baskets["items"]]
        bars = left.bar(names, baskets["share"], color=PALETTE[0])
        left.bar_label(bars, labels=[f"{s:.0%}" if s >= 0.005 else "" for s in baskets["share"]], fontsize=8)
        percent_axis(left, decimals=0)
        left.grid(axis="x", visible=False)
    if values is None or values.empty:
        empty(right, "no payment values (no amounts)")
    else:
        right.bar(values["lower"], values["payments"], width=values["upper"] - values["lower"], align="edge",
                  color=PALETTE[2], edgecolor="white", linewidth=0.3)
        right.set_xscale("log")
        thousands_axis(right)
        thousands_axis(right, "x")
    return fig


@styled
def plot_top(top: pd.DataFrame, what: str = "category", currency: str | None = None) -> Figure:
    """Horizontal bars of net revenue (or successful payments, without amounts) of the largest
    categories or merchants, from `top_sql`; labels give the share of all revenue."""
    noun = {"category": "categories", "merchant_id": "merchants"}.get(what, what)
    fig, ax = figure(8, 4.8)
    if top is None or top.empty:
        label(ax, f"Top {noun}", "net revenue" + money(currency), what)
        empty(ax, "no successful payments")
        return fig
    by_revenue = top["revenue"].notna().any()
    value = top["revenue"] if by_revenue else top["payments"]
    xlabel = "net revenue" + money(currency) if by_revenue else "successful payments"
    label(ax, f"Top {len(top)} {noun} by {'net revenue' if by_revenue else 'payments'}", xlabel, what)
    names = [short(str(k), 24) for k in top["key"]][::-1]
    bars = ax.barh(names, value.to_numpy(float)[::-1], color=PALETTE[0])
    if by_revenue and top["revenue_share"].notna().any():
        ax.bar_label(bars, labels=[f" {s:.1%}" for s in top["revenue_share"][::-1]], fontsize=8)
        ax.margins(x=0.12)
    thousands_axis(ax, "x")
    ax.grid(axis="y", visible=False)
    return fig


__all__ = ["plot_basket_sizes", "plot_channel_mix", "plot_failure_refund_rates", "plot_monthly_volume", "plot_top",
           "plot_weekday_hour"]
