"""Stage `loyalty`: BG/NBD (or MBG/NBD) and Gamma-Gamma on the feature table.

Per user: `p_alive`, `expected_purchases` (over `horizon_days`), `expected_spend` (per
purchase) and `clv` (over `clv_horizon_days`, discounted). The report section `loyalty`
holds the fitted parameters (time unit: day), log-likelihoods, standard errors, the
horizons, and a holdout check: the model fitted on events before as_of - holdout_days
predicts the purchase days of the next holdout_days, compared with what happened.
Without amounts in the lake Gamma-Gamma and CLV are skipped and the report says so.

Gamma-Gamma is fitted on the repeat customers with a positive mean spend. A repeat customer
it cannot score (a mean spend of zero, e.g. a free repeat order, negative or missing) gets
the population mean spend per transaction p * v / (q - 1), as a one-time buyer does, in
`expected_spend` and `clv` (their own P(alive) and expected purchases are kept), and
`spend_fallback` is true for them; the report's `loyalty.gamma_gamma.fallback` counts them.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from behavior.btyd import BetaGeoFitter, ConvergenceError, GammaGammaFitter, ModifiedBetaGeoFitter
from behavior.features import as_of_literal, btyd_summary
from pipelines.stage import StageResult

BUCKETS = ("0", "1", "2", "3", "4", "5", "6", "7+")


def _model(cfg):
    cls = ModifiedBetaGeoFitter if cfg.model == "mbgnbd" else BetaGeoFitter
    return cls(penalizer=cfg.penalizer)


def _fit_transactions(cfg, f: pd.DataFrame):
    return _model(cfg).fit(f["frequency"].to_numpy(float), f["recency"].to_numpy(float), f["T"].to_numpy(float))


def _holdout(ctx, cfg) -> dict:
    """Fit before as_of - H, predict the next H days, compare with the purchase days that happened."""
    cutoff = ctx.as_of - timedelta(days=cfg.holdout_days)
    calib = btyd_summary(ctx.engine, "payments", cutoff, ctx.user_parts).to_pandas()
    calib = calib[calib["T"] > 0]
    if len(calib) < 100:
        return {"skipped": f"fewer than 100 customers before {cutoff.date()} (as_of - {cfg.holdout_days} days); "
                           "choose a later --as-of or a shorter holdout_days"}
    try:
        model = _fit_transactions(cfg, calib)
    except ConvergenceError as exc:
        return {"skipped": f"the calibration fit did not converge: {exc}"}
    d = ctx.engine.dialect
    actual = ctx.engine.frame(
        f"SELECT user_id, count(DISTINCT CAST(paid_at AS DATE)) AS actual FROM payments "
        f"WHERE status = 'success' AND paid_at >= {as_of_literal(cutoff, dialect=d)} "
        f"AND paid_at < {as_of_literal(ctx.as_of, dialect=d)} GROUP BY user_id")
    df = calib.merge(actual, on="user_id", how="left").fillna({"actual": 0})
    df["expected"] = model.conditional_expected_number_of_purchases_up_to_time(
        cfg.holdout_days, df["frequency"].to_numpy(float), df["recency"].to_numpy(float), df["T"].to_numpy(float))
    df["bucket"] = np.where(df["frequency"] >= 7, "7+", df["frequency"].astype(int).astype(str))
    rows = []
    for b in BUCKETS:
        part = df[df["bucket"] == b]
        if len(part):
            rows.append({"frequency": b, "customers": int(len(part)), "expected_mean": round(float(part["expected"].mean()), 4),
                         "actual_mean": round(float(part["actual"].mean()), 4)})
    exp_total, act_total = float(df["expected"].sum()), float(df["actual"].sum())
    return {"cutoff": cutoff.isoformat(), "days": cfg.holdout_days, "customers": int(len(df)),
            "params": {k: round(v, 6) for k, v in model.params_.items()},
            "expected_total": round(exp_total, 1), "actual_total": act_total,
            "error_pct": round(100 * (exp_total - act_total) / act_total, 2) if act_total else None,
            "by_frequency": rows}


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
    section: dict = {"model": cfg.model, "horizons_days": {"expected_purchases": cfg.horizon_days,
                                                           "clv": cfg.clv_horizon_days},
                     "discount_rate_annual": cfg.discount_rate_annual}
    out = pd.DataFrame({"user_id": f["user_id"]})
    for col in ("p_alive", "expected_purchases", "expected_spend", "clv"):
        out[col] = np.nan
    out["spend_fallback"] = False
    try:
        bg = _fit_transactions(cfg, f[fit_rows])
    except (ConvergenceError, ValueError) as exc:
        section["bgnbd"] = {"error": str(exc)}
        section["holdout"] = {"skipped": "the model could not be fitted on the full history either"}
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
    section["holdout"] = _holdout(ctx, cfg)
    return StageResult(pa.Table.from_pandas(out, preserve_index=False), report=section)
