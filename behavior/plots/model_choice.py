"""What each served model was chosen over: per `selection` section of a run report (the shape of
`behavior.model_choice.Choice.report()`), a table of the candidates and a plot of each one's
difference to the best candidate with its paired 95% interval. The rule reads off the plot: the
served candidate is the simplest (baselines first) whose interval reaches 0."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from behavior.model_choice import metric_name, report_selections
from behavior.plots._style import MUTED, PALETTE, empty, figure, label, short, styled

# the report paths of the served models, as a reader names them (an uplift arm adds its promotion)
TITLES = {"loyalty": "Purchase model (expected purchases, P(alive), CLV)", "churn": "Churn probability",
          "recommend": "Recommendations", "merchants.churn": "Merchant churn risk",
          "promotions.uplift": "Uplift of promotion"}
SERVED, BASELINE, MODEL = PALETTE[1], MUTED, PALETTE[0]


def model_choice_title(path: str) -> str:
    """A served model's name for a reader, from its report path ("promotions.uplift.p1" ->
    "Uplift of promotion p1"); an unknown path is shown as it is."""
    if path in TITLES:
        return TITLES[path]
    head, _, key = path.rpartition(".")
    return f"{TITLES[head]} {key}" if head in TITLES else path


def served_models(report: dict) -> list[tuple[str, str, dict]]:
    """(report path, title, selection) of every served model's choice in a run report, in report order."""
    return [(path, model_choice_title(path), sel) for path, sel in report_selections(report)]


def model_choice_table(selection: dict) -> pd.DataFrame:
    """One row per candidate of a `selection` section: candidate, baseline, served, the metric
    with its 95% interval (value, low, high), and its difference to the best candidate with the
    paired 95% interval (vs_best, vs_best_low, vs_best_high)."""
    cands = selection.get("candidates") or []
    best = max((c["value"] for c in cands), default=np.nan)
    rows = [{"candidate": c["name"], "baseline": bool(c.get("baseline")), "served": bool(c.get("chosen")),
             "value": c["value"], "low": c.get("low"), "high": c.get("high"), "vs_best": c["value"] - best,
             "vs_best_low": (c.get("gain_vs_best") or [np.nan, np.nan])[0],
             "vs_best_high": (c.get("gain_vs_best") or [np.nan, np.nan])[1]} for c in cands]
    cols = ["candidate", "baseline", "served", "value", "low", "high", "vs_best", "vs_best_low", "vs_best_high"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[3:]})


@styled
def plot_model_choice(selection: dict | None, title: str = "Model choice") -> Figure:
    """Each candidate's metric minus the best candidate's, with the paired 95% bootstrap
    interval: the served one in orange, baselines grey, models blue; candidates listed from the
    simplest (top) as the rule tries them."""
    table = model_choice_table(selection or {})
    metric = metric_name((selection or {}).get("metric", "metric"))
    fig, ax = figure(10, 1.6 + 0.38 * max(len(table), 2))
    label(ax, f"{title}\nserved: {(selection or {}).get('chosen', '?')}",
          f"{metric} minus the best candidate's, 95% paired interval", "candidate")
    if table.empty:
        empty(ax, "no candidates were compared")
        return fig
    if table["vs_best_low"].isna().all():
        empty(ax, "the report holds no paired intervals (gain_vs_best)")
        return fig
    y = np.arange(len(table))[::-1]
    colors = [SERVED if r.served else BASELINE if r.baseline else MODEL for r in table.itertuples()]
    for yi, r, color in zip(y, table.itertuples(), colors):
        ax.errorbar(r.vs_best, yi, xerr=[[r.vs_best - r.vs_best_low], [r.vs_best_high - r.vs_best]], fmt="o",
                    color=color, ecolor=color, capsize=3, lw=1.5, ms=6 if r.served else 5)
    ax.axvline(0, color=MUTED, lw=1, ls="--")
    best = table["value"].idxmax()
    names = [f"{short(r.candidate, 24)}{' (baseline)' if r.baseline else ''}  {r.value:.3f}"
             + (" best" if r.Index == best else "") + ("  ← served" if r.served else "") for r in table.itertuples()]
    ax.set_yticks(y, names)
    for tick, color in zip(ax.get_yticklabels(), colors):
        tick.set_color("black" if color != SERVED else SERVED)
        tick.set_fontweight("bold" if color == SERVED else "normal")
    ax.set_ylim(-0.7, len(table) - 0.3)
    ax.grid(axis="y", visible=False)
    return fig


__all__ = ["model_choice_table", "model_choice_title", "plot_model_choice", "served_models"]
