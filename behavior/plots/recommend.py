"""Plots of recommendation quality (the report's `recommend` section) and example
recommendations with their explanations (from a `ServingModel`'s public methods)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from behavior.plots._style import MUTED, PALETTE, empty, figure, label, percent_axis, short, styled
from behavior.recommend.serving import ServingModel

METRICS = ("precision@10", "recall@10", "ndcg@10", "map@10")


def _candidates(recommend: dict | None) -> pd.DataFrame:
    """One row per candidate model with its validation metrics, best nDCG first."""
    models = (recommend or {}).get("models") or {}
    rows = [{"model": name, **{m: float(v.get(m, np.nan)) for m in (*METRICS, "coverage")}}
            for name, v in models.items() if isinstance(v, dict)]
    if not rows:
        return pd.DataFrame(columns=["model", *METRICS, "coverage"])
    return pd.DataFrame(rows).sort_values("ndcg@10", ascending=False, na_position="last").reset_index(drop=True)


def _test_rows(recommend: dict | None) -> pd.DataFrame:
    test = (recommend or {}).get("test") or {}
    rows = [{"model": name, **{m: float(v.get(m, np.nan)) for m in (*METRICS, "coverage")}}
            for name, v in test.items() if isinstance(v, dict)]
    return pd.DataFrame(rows, columns=["model", *METRICS, "coverage"])


def _grouped(ax, frame: pd.DataFrame, selected: str | None) -> None:
    n = len(frame)
    width = 0.8 / max(n, 1)
    x = np.arange(len(METRICS))
    for i, row in enumerate(frame.itertuples(index=False)):
        name = row.model + (" (selected)" if row.model == selected else "")
        color = PALETTE[i % len(PALETTE)] if row.model != "popularity" else MUTED
        vals = [frame.iloc[i][m] for m in METRICS]
        ax.bar(x - 0.4 + width * (i + 0.5), vals, width=width * 0.95, color=color, label=name,
               edgecolor="black" if row.model == selected else "none", linewidth=1.2)
    ax.set_xticks(x, list(METRICS))
    ax.grid(axis="x", visible=False)


@styled
def plot_recommender_metrics(recommend: dict | None) -> Figure:
    """Left: every candidate's precision, recall, nDCG and MAP at 10 on the validation period
    (report `recommend.models`). Right: the selected model against popularity on the held-out
    test period (report `recommend.test`)."""
    fig, (left, right) = figure(12, 4.8, ncols=2, width_ratios=[3, 2])
    fig.suptitle("Recommendation quality: top-10 metrics against popularity")
    label(left, "Candidates on the validation period", "metric at k = 10", "metric value (0-1, higher is better)")
    label(right, "Selected model on the held-out test period", "metric at k = 10",
          "metric value (0-1, higher is better)")
    cands = _candidates(recommend)
    selected = (recommend or {}).get("selected")
    if cands.empty:
        empty(left, "no recommender candidates in the report")
    else:
        _grouped(left, cands, selected)
        left.legend(loc="upper left", ncols=3)
    test = _test_rows(recommend)
    if test.empty:
        empty(right, "no test-period evaluation in the report")
    else:
        _grouped(right, test, selected)
        days = (recommend or {}).get("test", {}).get("days")
        right.legend(loc="upper left", ncols=2, title=f"last {days} days before as_of" if days else None)
    for ax in (left, right):
        if ax.has_data():
            ax.set_ylim(0, max(0.05, ax.get_ylim()[1] * 1.35))   # headroom for the legend
    return fig


@styled
def plot_coverage(recommend: dict | None) -> Figure:
    """Catalogue coverage (share of items recommended to at least one evaluated user) of
    every candidate on the validation period, with its nDCG@10 for comparison."""
    fig, ax = figure(8, 4.5)
    label(ax, "Catalogue coverage of the candidates (validation period)", "catalogue coverage (% of items)",
          "candidate model")
    cands = _candidates(recommend)
    if cands.empty or cands["coverage"].isna().all():
        empty(ax, "no recommender candidates in the report")
        return fig
    selected = (recommend or {}).get("selected")
    c = cands.sort_values("coverage")
    colors = [PALETTE[1] if m == selected else (MUTED if m == "popularity" else PALETTE[0]) for m in c["model"]]
    names = [m + (" (selected)" if m == selected else "") for m in c["model"]]
    bars = ax.barh(names, c["coverage"], color=colors)
    ax.bar_label(bars, labels=[f" {cov:.1%}  (nDCG@10 {nd:.3f})" for cov, nd in zip(c["coverage"], c["ndcg@10"])],
                 fontsize=8)
    ax.set_xlim(0, 1.35)
    ax.set_xticks(np.linspace(0, 1, 6))
    percent_axis(ax, "x")
    ax.grid(axis="y", visible=False)
    return fig


def recommendation_examples(model: ServingModel, user_ids: Iterable[str], n: int = 5,
                            categories: Mapping[str, str] | None = None, because: int = 2,
                            exclude_purchased: bool | None = None) -> pd.DataFrame:
    """Top-`n` recommendations of each user (`model.recommend`) with what explains them
    (`model.explain`): user_id, rank, item_id, category, score, source, bought_before (the
    explanation is the item itself: a buy-again recommendation), because (up to `because`
    other purchased items, joined by ", "; empty for popularity fill-ins and unknown users)."""
    rows = []
    for user in user_ids:
        rec = model.recommend(str(user), n=n, exclude_purchased=exclude_purchased)
        for rank, (item, score) in enumerate(rec.items, start=1):
            why = [i for i, _ in model.explain(str(user), item, n=because + 1)] if rec.source == "model" else []
            rows.append({"user_id": str(user), "rank": rank, "item_id": item,
                         "category": (categories or {}).get(item, ""), "score": float(score),
                         "source": rec.source, "bought_before": item in why,
                         "because": ", ".join([i for i in why if i != item][:because])})
    return pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "category", "score", "source", "bought_before",
                                       "because"])


def _why(row) -> str:
    parts = (["bought before"] if row.bought_before else []) + \
        ([f"because you bought {short(row.because, 40)}"] if row.because else [])
    return "  " + "; ".join(parts) if parts else "  (popular item)" if row.source != "model" else ""


@styled
def plot_recommendation_examples(examples: pd.DataFrame, max_users: int = 3, title: str | None = None) -> Figure:
    """One panel per user (at most `max_users`) from `recommendation_examples`: the
    recommended items by score, each labelled with its category and what explains it."""
    users = list(dict.fromkeys(examples["user_id"]))[:max_users] if examples is not None and len(examples) else []
    fig, axes = figure(11, 2.6 * max(len(users), 1) + 0.6, nrows=max(len(users), 1), squeeze=False)
    axes = axes[:, 0]
    fig.suptitle(title or "Example recommendations and why they were made")
    if not users:
        label(axes[0], "No examples", "recommendation score (model units)", "recommended item")
        empty(axes[0], "no users to recommend to")
        return fig
    for ax, user in zip(axes, users):
        ex = examples[examples["user_id"] == user].sort_values("rank")
        source = ex["source"].iloc[0]
        label(ax, f"user {user} ({'model' if source == 'model' else 'fallback: popular items'})",
              "recommendation score (model units)", "recommended item")
        names = [f"{r.rank}. {r.item_id}" + (f" ({short(r.category, 16)})" if r.category else "")
                 for r in ex.itertuples()][::-1]
        scores = ex["score"].to_numpy(float)[::-1]
        finite = np.where(np.isfinite(scores), scores, 0.0)
        bars = ax.barh(names, finite, color=[PALETTE[0] if s == "model" else MUTED for s in ex["source"]][::-1])
        texts = [_why(r) for r in ex.itertuples()][::-1]
        ax.bar_label(bars, labels=texts, fontsize=8)
        ax.set_xlim(0, max(float(finite.max()) if finite.size else 1.0, 1e-9) * 2.2)
        ax.grid(axis="y", visible=False)
    return fig


__all__ = ["METRICS", "plot_coverage", "plot_recommendation_examples", "plot_recommender_metrics",
           "recommendation_examples"]
