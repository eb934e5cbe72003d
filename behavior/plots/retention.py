"""Plots of retention and the churn model: cohort heatmap, retention curves per segment,
calibration, cumulative gain and lift, churn reasons. Inputs: the bundle's
cohort_retention.parquet and retention_curves.parquet, the report's `churn` section and the
profiles' churn_reasons."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from matplotlib.figure import Figure

from behavior.plots._style import MUTED, PALETTE, empty, figure, label, percent_axis, short, styled
from behavior.segments import SEGMENTS

_NUMBER = re.compile(r"(?<!previous )(?<!next )\b\d+(?:\.\d+)?")
BASELINE_NAMES = {"recency": "recency (days since last purchase)", "bgnbd_p_alive": "BG/NBD P(alive)",
                  "bgnbd_expected_purchases": "BG/NBD expected purchases"}


@styled
def plot_cohort_retention(cohort: pd.DataFrame, annotate: bool | None = None) -> Figure:
    """Share of each monthly acquisition cohort buying again k months later (rows: cohorts,
    columns: months since the first purchase). The colour scale ignores month 0 (always
    100%) so that later months stay distinguishable; cells are annotated when there are few."""
    fig, ax = figure(11, 6.5)
    label(ax, "Cohort retention: share of each acquisition cohort buying in later months",
          "months since the first purchase", "cohort (month of first purchase, UTC)")
    if cohort is None or cohort.empty:
        empty(ax, "no successful payments")
        return fig
    wide = cohort.pivot_table(index="cohort_month", columns="months_since", values="retention")
    sizes = cohort.groupby("cohort_month")["cohort_size"].first().reindex(wide.index)
    values = wide.to_numpy(float)
    later = values[:, 1:] if values.shape[1] > 1 else values
    vmax = float(np.nanpercentile(later, 99)) if np.isfinite(later).any() else 1.0
    image = ax.imshow(np.ma.masked_invalid(values), cmap="YlGnBu", vmin=0, vmax=max(vmax, 0.01), aspect="auto")
    if annotate is None:
        annotate = values.size <= 700
    if annotate:
        size = 9 if values.size <= 150 else 6.5
        for i, j in zip(*np.where(np.isfinite(values))):
            v = values[i, j]
            ax.text(j, i, f"{v * 100:.0f}", ha="center", va="center", fontsize=size,
                    color="white" if v > 0.6 * vmax else "black")
    months = pd.to_datetime(wide.index)
    rows = [f"{m:%Y-%m} ({n:,})" for m, n in zip(months, sizes)]
    step = max(1, int(np.ceil(len(rows) / 30)))
    ax.set_yticks(range(0, len(rows), step), rows[::step], fontsize=8)
    cols = list(wide.columns)
    cstep = max(1, int(np.ceil(len(cols) / 25)))
    ax.set_xticks(range(0, len(cols), cstep), [str(c) for c in cols[::cstep]])
    ax.grid(False)
    cbar = fig.colorbar(image, ax=ax, label="retention (% of the cohort, also in the cells)", shrink=0.85)
    percent_axis(cbar.ax)
    return fig


@styled
def plot_retention_curves(curves: pd.DataFrame, min_users: int = 50) -> Figure:
    """Retention by months since the first purchase, one line per segment (a point only where
    at least `min_users` of the segment's customers have been observed that long)."""
    fig, ax = figure(10, 5.5)
    label(ax, "Retention curves by current segment", "months since the first purchase",
          "customers buying in that month (%)")
    if curves is None or curves.empty:
        empty(ax, "no retention curves")
        return fig
    known = [s for s in SEGMENTS if s in set(curves["segment"])]
    order = known + sorted(set(curves["segment"].astype(str)) - set(known))
    for i, seg in enumerate(order):
        c = curves[(curves["segment"] == seg) & (curves["users"] >= min_users)].sort_values("months_since")
        if c.empty:
            continue
        ax.plot(c["months_since"], c["retention"], marker="o", ms=2.5, lw=1.4,
                color=PALETTE[i % len(PALETTE)], ls="-" if i < 10 else "--", label=seg)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    percent_axis(ax)
    if not ax.get_lines():   # every segment is below min_users (a small lake)
        empty(ax, f"every segment has fewer than {min_users} customers")
        return fig
    ax.legend(title="segment at as_of", loc="upper left", bbox_to_anchor=(1.01, 1))
    return fig


def _churn_missing(churn: dict | None, key: str) -> str | None:
    if not churn:
        return "the run has no churn section"
    if churn.get("skipped"):
        return f"churn model skipped ({short(str(churn['skipped']), 70)})"
    if not churn.get(key):
        return f"the churn report has no {key}"
    return None


@styled
def plot_calibration(churn: dict | None) -> Figure:
    """Observed churn rate against the mean predicted probability per bin of the held-out
    cutoff (report `churn.calibration`), with the diagonal of perfect calibration and the
    number of customers per bin below."""
    fig, (ax, hist) = figure(7, 7, nrows=2, height_ratios=[3, 1], sharex=True)
    fig.suptitle("Churn model calibration (held-out cutoff)")
    label(ax, "Predicted against observed churn", "", "observed churn rate (%)")
    label(hist, "Customers per bin", "predicted churn probability (%)", "customers")
    why = _churn_missing(churn, "calibration")
    if why:
        empty(ax, why)
        empty(hist, why)
        return fig
    cal = pd.DataFrame(churn["calibration"])
    ax.plot([0, 1], [0, 1], color=MUTED, ls="--", lw=1, label="perfect calibration")
    ax.plot(cal["mean_predicted"], cal["observed"], marker="o", color=PALETTE[0], label="model")
    brier = (churn.get("test") or {}).get("brier")
    if brier is not None:
        ax.text(0.02, 0.97, f"Brier score {brier:.3f}", transform=ax.transAxes, va="top")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="lower right")
    percent_axis(ax)
    hist.bar((cal["lower"] + cal["upper"]) / 2, cal["count"], width=(cal["upper"] - cal["lower"]) * 0.9,
             color=PALETTE[0], alpha=0.7)
    percent_axis(hist, "x")
    return fig


@styled
def plot_gain_lift(churn: dict | None) -> Figure:
    """Cumulative gain (share of the held-out churners found in the top x% of customers by
    score) and lift (that share / x) for the model, the baselines and random targeting
    (report `churn.gain_curve`)."""
    fig, (gain_ax, lift_ax) = figure(11, 4.8, ncols=2)
    fig.suptitle("Churn model: cumulative gain and lift (held-out cutoff)")
    label(gain_ax, "Cumulative gain", "customers contacted, highest churn score first (%)", "churners found (%)")
    label(lift_ax, "Lift", "customers contacted, highest churn score first (%)", "lift over random (x)")
    why = _churn_missing(churn, "gain_curve")
    if why:
        empty(gain_ax, why)
        empty(lift_ax, why)
        return fig
    g = churn["gain_curve"]
    share = np.asarray(g["share"], float)
    gain_ax.plot(share, share, color=MUTED, ls="--", lw=1, label="random")
    lift_ax.axhline(1.0, color=MUTED, ls="--", lw=1, label="random")
    series = [("model", "churn model")] + [(k, BASELINE_NAMES.get(k, k)) for k in g if k not in ("share", "model")]
    for i, (key, name) in enumerate(series):
        y = np.asarray(g[key], float)
        style = dict(color=PALETTE[i], lw=2.2 if key == "model" else 1.2, label=name)
        gain_ax.plot(share, y, **style)
        with np.errstate(divide="ignore", invalid="ignore"):
            lift = np.where(share > 0, y / share, np.nan)
        lift_ax.plot(share[1:], lift[1:], **style)
    for ax in (gain_ax, lift_ax):
        ax.set_xlim(0, 1)
        percent_axis(ax, "x")
    gain_ax.set_ylim(0, 1.02)
    percent_axis(gain_ax)
    lift_ax.set_ylim(bottom=0)
    gain_ax.legend(loc="lower right")
    return fig


def reason_kind(reason: str) -> str:
    """A churn reason without the user's numbers ("no purchase for 120 days" -> "no purchase
    for … days"), so that reasons of different users can be counted together."""
    return _NUMBER.sub("…", reason.strip())


def churn_reason_counts(profiles: pd.DataFrame, min_probability: float = 0.5, n: int = 10) -> pd.DataFrame:
    """The `n` most common reason kinds among customers whose churn probability is at least
    `min_probability`: reason, customers, share (of those customers)."""
    cols = ["reason", "customers", "share"]
    if profiles is None or profiles.empty or "churn_reasons" not in profiles or "churn_probability" not in profiles:
        return pd.DataFrame(columns=cols)
    risky = profiles[profiles["churn_probability"].astype(float) >= min_probability]
    reasons = pa.array(risky["churn_reasons"].dropna().astype(str), pa.string())
    # Each distinct reason text once: millions of customers share a few thousand texts, and the
    # numbers are taken out of those only (a regular expression per customer took seconds).
    texts = pc.value_counts(pc.list_flatten(pc.split_pattern(reasons, "; ")))   # in order of first appearance
    per_kind: dict[str, int] = {}
    for text, count in zip(texts.field("values").to_pylist(), texts.field("counts").to_pylist()):
        if text:
            kind = reason_kind(text)
            per_kind[kind] = per_kind.get(kind, 0) + count
    if not per_kind:
        return pd.DataFrame(columns=cols)
    # what value_counts does: counts in order of first appearance, sorted by count
    counts = pd.Series(per_kind, dtype="int64").sort_values(ascending=False, kind="stable").head(n)
    return pd.DataFrame({"reason": counts.index.astype(str), "customers": counts.to_numpy(),
                         "share": counts.to_numpy() / max(len(risky), 1)})


@styled
def plot_churn_reasons(profiles: pd.DataFrame, min_probability: float = 0.5, n: int = 10) -> Figure:
    """The most common churn reasons (profiles' churn_reasons, numbers taken out) among the
    customers at risk: churn probability >= `min_probability`, or, when nobody reaches it (a
    small or easy population), the riskiest quarter."""
    fig, ax = figure(9, 4.8)
    prob = pd.to_numeric(profiles["churn_probability"], errors="coerce") \
        if profiles is not None and "churn_probability" in getattr(profiles, "columns", []) else pd.Series(dtype=float)
    threshold = min_probability
    if prob.notna().any() and not (prob >= min_probability).any():
        threshold = float(prob.quantile(0.75))
    counts = churn_reason_counts(profiles, threshold, n)
    at_risk = int((prob >= threshold).sum())
    label(ax, f"Most common churn reasons\nof the {at_risk:,} customers with churn probability >= {threshold:.0%}",
          "customers at risk with this reason (%)", "reason (numbers vary by customer: …)")
    if counts.empty:
        empty(ax, "no churn reasons (churn model skipped or nobody at risk)")
        return fig
    bars = ax.barh([short(r, 48) for r in counts["reason"]][::-1], counts["share"].to_numpy()[::-1],
                   color=PALETTE[3])
    ax.bar_label(bars, labels=[f" {c:,}" for c in counts["customers"][::-1]], fontsize=8)
    ax.set_xlim(0, min(1.0, counts["share"].max() * 1.2))
    percent_axis(ax, "x", decimals=0)
    ax.grid(axis="y", visible=False)
    return fig


__all__ = ["churn_reason_counts", "plot_calibration", "plot_churn_reasons", "plot_cohort_retention",
           "plot_gain_lift", "plot_retention_curves", "reason_kind"]
