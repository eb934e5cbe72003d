"""Plots of promotions: lift with 95% intervals per promotion (report
`promotions.effectiveness`), the held-out Qini curves of a promotion arm (report
`promotions.uplift.arms.<promotion_id>.qini_curve_test`) and a targeting what-if over budgets
(a frame from `behavior.targeting.budget_curve`)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from behavior.plots._style import MUTED, PALETTE, empty, figure, label, money, short, styled, thousands_axis


def lift_table(effectiveness: dict | None) -> pd.DataFrame:
    """One row per promotion of report `promotions.effectiveness`: promotion_id, name, target,
    status, reason, conversion lift and its 95% interval (in shares), revenue-per-user lift and
    its interval (currency), n_treatment, n_control."""
    rows = []
    for pid, e in (effectiveness or {}).items():
        conv, rev = e.get("conversion") or {}, e.get("revenue_per_user") or {}
        lo, hi = (conv.get("lift_ci") or [np.nan, np.nan])[:2]
        rlo, rhi = (rev.get("lift_ci") or [np.nan, np.nan])[:2]
        rows.append({"promotion_id": pid, "name": e.get("name", ""), "target": e.get("target", ""),
                     "status": e.get("status", ""), "reason": e.get("reason", ""),
                     "lift": conv.get("lift", np.nan), "lift_low": lo, "lift_high": hi,
                     "revenue_lift": rev.get("lift", np.nan), "revenue_low": rlo, "revenue_high": rhi,
                     "n_treatment": e.get("n_treatment"), "n_control": e.get("n_control")})
    cols = ["promotion_id", "name", "target", "status", "reason", "lift", "lift_low", "lift_high", "revenue_lift",
            "revenue_low", "revenue_high", "n_treatment", "n_control"]
    return pd.DataFrame(rows, columns=cols).astype({c: float for c in cols[5:11]})


def selection_table(uplift: dict | None) -> pd.DataFrame:
    """One row per promotion arm and candidate of report `promotions.uplift`: promotion_id,
    candidate, validation Qini with its 95% bootstrap interval, baseline, chosen, and the
    held-out (test) Qini."""
    up = uplift or {}
    rows = [{"promotion_id": pid, "candidate": c["name"], "qini": c["value"], "low": c["low"], "high": c["high"],
             "baseline": c["baseline"], "chosen": c["chosen"],
             "test_qini": ((up.get("arms") or {}).get(pid, {}).get("test") or {}).get(c["name"], {}).get("qini")}
            for pid, sel in (up.get("selection") or {}).items() for c in sel["candidates"]]
    return pd.DataFrame(rows, columns=["promotion_id", "candidate", "qini", "low", "high", "baseline", "chosen",
                                       "test_qini"])


def _forest(ax, names: list[str], mid, low, high, color: str, scale: float = 1.0) -> None:
    y = np.arange(len(names))[::-1]
    mid, low, high = (np.asarray(a, float) * scale for a in (mid, low, high))
    ax.errorbar(mid, y, xerr=[mid - low, high - mid], fmt="o", color=color, ecolor=color, capsize=4, lw=1.5)
    ax.axvline(0, color=MUTED, lw=1, ls="--")
    ax.set_yticks(y, names)
    ax.grid(axis="y", visible=False)


@styled
def plot_promotion_lift(effectiveness: dict | None, currency: str | None = None) -> Figure:
    """Per estimated promotion: the conversion lift (treatment - control, percentage points)
    and the revenue-per-user lift, each with its 95% interval; promotions that cannot be
    estimated are listed with the reason under the plot."""
    table = lift_table(effectiveness)
    est = table[(table["status"] == "estimated") & table["lift"].notna()]
    fig, (conv, rev) = figure(12, 1.2 + 0.6 * max(len(est), 2) + 0.25 * (len(table) - len(est)), ncols=2,
                             sharey=True)
    fig.suptitle("Promotion effectiveness: lift over the control group with 95% intervals")
    label(conv, "Conversion", "conversion lift (percentage points)", "promotion")
    label(rev, "Revenue per assigned user", "revenue lift per user" + money(currency), "promotion")
    if est.empty:
        why = "no promotion could be estimated" if len(table) else "no promotions in the report"
        empty(conv, why)
        empty(rev, why)
    else:
        names = [f"{r.promotion_id}: {short(str(r.name), 34)}\n(target {r.target}, "
                 f"{int(r.n_treatment or 0):,} treated, {int(r.n_control or 0):,} control)" for r in est.itertuples()]
        _forest(conv, names, est["lift"], est["lift_low"], est["lift_high"], PALETTE[0], scale=100)
        if est["revenue_lift"].notna().any():
            _forest(rev, names, est["revenue_lift"], est["revenue_low"], est["revenue_high"], PALETTE[2])
            rev.set_ylabel("")   # the promotions are named on the shared axis at the left
        else:
            empty(rev, "no revenue figures (no amounts)")
    rest = table[~table.index.isin(est.index)]
    if len(rest):
        text = "\n".join(f"{r.promotion_id}: {r.status} ({short(str(r.reason), 110)})" for r in rest.itertuples())
        fig.text(0.01, 0.0, "Not estimated:\n" + text, fontsize=8, va="bottom", color="#555555")
        fig.get_layout_engine().set(rect=(0, 0.04 + 0.035 * len(rest), 1, 0.96 - 0.035 * len(rest)))
    return fig


@styled
def plot_qini(uplift: dict | None, promotion_id: str | None = None) -> Figure:
    """Held-out Qini curves of one promotion arm (report `promotions.uplift.arms`; default: the
    arm with the most test users): incremental conversions captured by targeting the top share
    of users by the chosen candidate and by the response model (likeliest buyers under the
    offer), against random targeting (the straight line to the overall incremental conversions)."""
    fig, ax = figure(8, 5.5)
    arms = (uplift or {}).get("arms") or {}
    if not arms:
        label(ax, "Qini curve on the held-out users", "users targeted, highest score first (%)",
              "incremental conversions (test users)")
        empty(ax, (uplift or {}).get("skipped") or "no uplift model in the report")
        return fig
    pid = promotion_id if promotion_id is not None else max(arms, key=lambda p: arms[p]["rows"]["test"])
    arm = arms[pid]
    label(ax, f"Qini curve on the held-out users of {pid} (target {arm['target']})",
          "users targeted, highest score first (%)", "incremental conversions (test users)")
    names = {"chosen": f"chosen: {arm['chosen']}", "response": "response model (likeliest buyers first)"}
    qini = {"chosen": arm["test"][arm["chosen"]]["qini"], "response": arm["test"].get("response", {}).get("qini")}
    end = None
    for i, (key, c) in enumerate(arm["qini_curve_test"].items()):
        share, inc = np.asarray(c["share"], float), np.asarray(c["incremental"], float)
        q = qini.get(key)
        ax.plot(share * 100, inc, color=PALETTE[i], lw=2.2 if key == "chosen" else 1.4,
                label=names.get(key, key) + (f", Qini {q:.3f}" if q is not None else ""))
        end = inc[-1] if end is None else end
    if end is not None:
        ax.plot([0, 100], [0, end], color=MUTED, ls="--", lw=1, label="random targeting, Qini 0")
    ax.set_xlim(0, 100)
    ax.legend(loc="lower right")
    return fig


@styled
def plot_targeting_what_if(curve: pd.DataFrame, currency: str | None = None, title: str | None = None) -> Figure:
    """Expected incremental profit (left) and conversions (right) of the uplift-model target
    list against the budget in users, from `budget_curve`; the marker shows where every user
    with a positive expected profit is already targeted."""
    fig, (profit, conv) = figure(11, 4.5, ncols=2)
    fig.suptitle(title or "Targeting what-if: expected effect of the target list by budget")
    label(profit, "Expected incremental profit", "budget (users contacted)", "incremental profit" + money(currency))
    label(conv, "Expected incremental conversions", "budget (users contacted)", "incremental conversions")
    if curve is None or curve.empty or curve["incremental_profit"].isna().all():
        why = "no uplift model for this target (the fallback rule claims no incremental figure)"
        empty(profit, why)
        empty(conv, why)
        return fig
    b = curve["budget_users"].to_numpy(float)
    profit.plot(b, curve["incremental_profit"], marker="o", ms=3, color=PALETTE[2])
    conv.plot(b, curve["incremental_conversions"], marker="o", ms=3, color=PALETTE[0])
    full = curve[curve["targets"] < curve["budget_users"]]
    if len(full):
        first = full.iloc[0]
        for ax in (profit, conv):
            ax.axvline(first["targets"], color=MUTED, ls="--", lw=1)
            ax.text(first["targets"], 0.05, f"all {int(first['targets']):,} users with\npositive expected profit ",
                    transform=ax.get_xaxis_transform(), ha="right", va="bottom", fontsize=8)
    for ax in (profit, conv):
        thousands_axis(ax)
        thousands_axis(ax, "x")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=min(0, ax.get_ylim()[0]))
    return fig


__all__ = ["lift_table", "plot_promotion_lift", "plot_qini", "plot_targeting_what_if", "selection_table"]
