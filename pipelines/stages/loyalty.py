"""Stage `loyalty`: the BTYD transaction model (BG/NBD or MBG/NBD) and Gamma-Gamma on the feature table.

The transaction model is chosen on the holdout by `behavior.btyd_select` (each candidate fitted
on the events before as_of - holdout_days predicts the purchase days of the next holdout_days;
the simpler BG/NBD unless MBG/NBD is better beyond the noise), unless `[loyalty] model` names
one; the chosen model is then fitted once on everything before as_of, and the output table
carries it for the later stages (`behavior.btyd_select.transaction_model`).

Per user: `p_alive`, `expected_purchases` (over `horizon_days`), `expected_spend` (per
purchase) and `clv` (over `clv_horizon_days`, discounted). The report section `loyalty`
holds `model` (the chosen name), `selection` (`Choice.report()`), the fitted parameters under
`bgnbd` (whichever model was chosen; time unit: day), log-likelihoods, standard errors, the
horizons, and `holdout` (the chosen model's check, every candidate's, and the repeat-purchase
curve). Without amounts in the lake Gamma-Gamma and CLV are skipped and the report says so.

Gamma-Gamma is fitted on the repeat customers with a positive mean spend. A repeat customer
it cannot score (a mean spend of zero, e.g. a free repeat order, negative or missing) gets
the population mean spend per transaction p * v / (q - 1), as a one-time buyer does, in
`expected_spend` and `clv` (their own P(alive) and expected purchases are kept), and
`spend_fallback` is true for them; the report's `loyalty.gamma_gamma.fallback` counts them.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from behavior.btyd import ConvergenceError, GammaGammaFitter
from behavior.btyd_select import (
    Selection,
    compare_on_holdout,
    fit_summary,
    holdout_purchase_days_sql,
    new_model,
    with_transaction_model,
)
from behavior.features import as_of_literal, btyd_summary
from pipelines.stage import StageResult


def _selection(ctx, cfg) -> Selection:
    """The holdout comparison of `behavior.btyd_select`: calibration before as_of - H, the next H days."""
    cutoff = ctx.as_of - timedelta(days=cfg.holdout_days)
    calib = btyd_summary(ctx.engine, "payments", cutoff, ctx.user_parts).to_pandas()
    d = ctx.engine.dialect
    days = ctx.engine.frame(holdout_purchase_days_sql("payments", as_of_literal(cutoff, dialect=d),
                                                      as_of_literal(ctx.as_of, dialect=d),
                                                      int(cutoff.timestamp() // 86400), d))
    forced = None if cfg.model == "auto" else cfg.model
    selection = compare_on_holdout(calib[calib["T"] > 0], days, cfg.holdout_days, penalizer=cfg.penalizer,
                                   forced=forced)
    if "skipped" in selection.holdout:
        return selection
    return replace(selection, holdout={"cutoff": cutoff.isoformat(), **selection.holdout})


def _fallback(customers: int, population_mean: float) -> dict:
    """The report's `gamma_gamma.fallback`: who got the population mean spend instead of their own."""
    return {"customers": customers,
            "expected_spend": round(population_mean, 6) if np.isfinite(population_mean) else None,
            "rule": "repeat customers whose mean spend is zero, negative or missing cannot be scored by "
                    "Gamma-Gamma: expected_spend is the population mean spend per transaction and clv uses it "
                    "(spend_fallback = true)"}


def run(ctx) -> StageResult[pa.Table]:
    cfg = ctx.config.loyalty
    f = ctx.outputs["features"].select(["user_id", "frequency", "recency", "T", "monetary_value"]).to_pandas()
    # T = 0: first purchase on the as_of day itself (an as_of during the day); nothing to fit.
    fit_rows = f["T"] > 0
    section: dict = {"horizons_days": {"expected_purchases": cfg.horizon_days,
                                                           "clv": cfg.clv_horizon_days},
                     "discount_rate_annual": cfg.discount_rate_annual}
    out = pd.DataFrame({"user_id": f["user_id"]})
    for col in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        out[col] = np.nan
    out["spend_fallback"] = False
    selection = _selection(ctx, cfg)
    section.update(model=selection.chosen, model_forced=selection.forced, selection=selection.report(),
                   holdout=selection.holdout)
    try:
        bg = fit_summary(new_model(selection.chosen, cfg.penalizer), f[fit_rows])
    except (ConvergenceError, ValueError) as exc:
        section["bgnbd"] = {"error": str(exc)}
        return StageResult(pa.Table.from_pandas(out, preserve_index=False), report=section)
    freq, rec, T = (f[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    section["bgnbd"] = {"params": bg.params_, "log_likelihood": bg.log_likelihood_,
                        "standard_errors": bg.standard_errors_, "customers": int(fit_rows.sum())}
    out["p_alive"] = bg.conditional_probability_alive(freq, rec, T)
    out["expected_purchases"] = bg.conditional_expected_number_of_purchases_up_to_time(cfg.horizon_days, freq, rec, T)
    money = f["monetary_value"]
    repeat = (f["frequency"] > 0) & (money > 0) & fit_rows
    if money.isna().all():
        section["gamma_gamma"] = {"skipped": "the lake has no amounts: expected spend and CLV are not computed"}
    elif repeat.sum() < 20:
        section["gamma_gamma"] = {"skipped": f"only {int(repeat.sum())} repeat customers with spend; at least 20 needed"}
    else:
        try:
            gg = GammaGammaFitter(penalizer=cfg.penalizer).fit(f.loc[repeat, "frequency"].to_numpy(float),
                                                               money[repeat].to_numpy(float))
            m = money.to_numpy(float)
            out["expected_spend"] = gg.conditional_expected_average_profit(freq, m, unscorable="population_mean")
            out["clv"] = gg.customer_lifetime_value(bg, freq, rec, T, m, horizon_days=cfg.clv_horizon_days,
                                                    discount_rate_annual=cfg.discount_rate_annual,
                                                    unscorable="population_mean")
            out["spend_fallback"] = ~gg.scorable(freq, m)
            section["gamma_gamma"] = {"params": gg.params_, "log_likelihood": gg.log_likelihood_,
                                      "standard_errors": gg.standard_errors_, "customers": int(repeat.sum()),
                                      "fallback": _fallback(int(out["spend_fallback"].sum()),
                                                            gg.population_mean())}
        except (ConvergenceError, ValueError) as exc:
            section["gamma_gamma"] = {"error": str(exc)}
    return StageResult(with_transaction_model(pa.Table.from_pandas(out, preserve_index=False), bg), report=section)
