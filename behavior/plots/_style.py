"""Shared look of every plot: readable sizes, a layout engine that keeps labels apart, percent
axes, and a placeholder for input with nothing to draw.

Figures are made with `matplotlib.figure.Figure` (no pyplot): nothing global changes, no
window opens, and a figure is freed when dropped. Saving to PNG uses the Agg renderer.
"""

from __future__ import annotations

import functools
from typing import Callable, ParamSpec

import matplotlib
import matplotlib.dates as mdates
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

P = ParamSpec("P")

STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.facecolor": "white",
    "figure.facecolor": "white",
    "image.cmap": "viridis",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939"]
MUTED = "#7f7f7f"


def styled(fn: Callable[P, Figure]) -> Callable[P, Figure]:
    """Draw `fn`'s figure with STYLE (artists take their sizes when created)."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)
    return wrapper


def figure(width: float = 8.0, height: float = 4.5, **subplots) -> tuple[Figure, np.ndarray | Axes]:
    """A figure with constrained layout (labels never overlap) and its axes."""
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(**subplots) if subplots else fig.subplots()
    return fig, axes


def label(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)


def percent_axis(ax: Axes, which: str = "y", decimals: int | None = None) -> None:
    """Tick labels of a 0..1 axis as percentages."""
    fmt = PercentFormatter(xmax=1.0, decimals=decimals)
    (ax.yaxis if which == "y" else ax.xaxis).set_major_formatter(fmt)


def thousands_axis(ax: Axes, which: str = "y") -> None:
    """Tick labels like 850 / 1.5k / 35k / 1.2M."""
    def fmt(v: float, _pos) -> str:
        a = abs(v)
        if a >= 1e6:
            return f"{v / 1e6:.1f}".rstrip("0").rstrip(".") + "M"
        if a >= 1e3:
            return f"{v / 1e3:.1f}".rstrip("0").rstrip(".") + "k"
        return f"{v:.0f}" if a >= 10 or v == int(v) else f"{v:.1f}"
    (ax.yaxis if which == "y" else ax.xaxis).set_major_formatter(FuncFormatter(fmt))


def month_axis(ax: Axes) -> None:
    """Readable month ticks on a date x axis (at most about a dozen labels)."""
    loc = mdates.AutoDateLocator(minticks=3, maxticks=12)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))


def money(currency: str | None) -> str:
    return f" ({currency})" if currency else " (currency units)"


def empty(ax: Axes, why: str) -> None:
    """Mark an axes as having nothing to show, saying why (title and labels stay)."""
    ax.text(0.5, 0.5, f"no data: {why}", ha="center", va="center", transform=ax.transAxes,
            color=MUTED, fontsize=10, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def short(text: str, width: int = 28) -> str:
    """`text` cut to `width` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"
