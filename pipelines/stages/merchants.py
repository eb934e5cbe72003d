"""Stage `merchants`: merchant profiles and churn risk (merchants.parquet) and the merchants'
own audiences (merchant_customers.parquet).

One read of the log: `behavior.merchant_tables.merchant_tables` reduces the lines before as_of
of each user part once, to the merchant-day table of `behavior.merchant_days`, and computes the
profiles, merchant churn's activity and the audiences from it. Two narrow reads of the whole log
come first: the first successful payment (which fixes the churn cutoffs, so that a part's
activity is summed per span between their windows' ends) and the merchants' categories of share
of wallet (so that a part's wallet figures are one row per merchant).

Profiles: merchant loyalty, windows and trends, share of wallet, the customers' tier mix and the
merchant segment, with the mean CLV of each merchant's customers from the loyalty stage and
their tiers from the segments stage (`behavior/merchants.py`, `behavior/merchant_profiles.py`).

Churn risk (`behavior/merchant_churn.py`): the profile columns the model and the baselines read
and the labels (`cutoff_frames`, from the activity per span between the windows' ends) at the cutoffs of `behavior.churn.choose_cutoffs`
(test = as_of - 90 days; training cutoffs every 30 days back from test - 90, at most
`MAX_TRAIN_CUTOFFS`), labelled by the next 90 days; the model against the baselines on the test
cutoff; the chosen one (the model only when better by more than its bootstrap interval) is refit
on every labelled cutoff and scores the active merchants at as_of. With too little history or
too few merchants the risk is null and the report says why (`skipped`), the stage still succeeds.

Audiences (`behavior/merchant_audience.py`): merchant_customers.parquet, one row per
(merchant, customer) in its loyal, at-risk or lapsed audience.

Report: `merchants` = {merchants, audiences: {<audience>: rows}, counts: {<merchant segment>: n} (every segment, zero where
empty, in `MERCHANT_SEGMENTS` order), churn: {horizon_days, definition, cutoffs: {train, test},
train_rows, test_rows, test (the model's metrics), baselines: {<name>: metrics}, selection
(`behavior.model_choice.Choice.report()` on ROC-AUC), model_vs_baselines: {<name>: {difference, low,
high}}, scored, high_risk, notes, [skipped]}}.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from behavior import merchant_churn as MC
from behavior.churn import Cutoffs, choose_cutoffs, churn_metrics
from behavior.merchant_audience import AUDIENCES
from behavior.merchant_profiles import MERCHANT_SEGMENTS
from behavior.merchant_tables import merchant_tables
from behavior.store.bundle import MERCHANT_CUSTOMERS, MERCHANTS
from pipelines.stage import StageResult

MAX_TRAIN_CUTOFFS = 6


def _round(d: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def _skip(section: dict, why: str) -> None:
    section["skipped"] = why
    section["notes"].append(f"merchant churn risk skipped: {why}")


def cutoffs(ctx, first: datetime | None, horizon_days: int = MC.HORIZON_DAYS) -> Cutoffs | None:
    """Merchant churn's cutoffs (`behavior.churn.choose_cutoffs`) for a history whose first
    successful payment is at `first` (None: no cutoff)."""
    return None if first is None else choose_cutoffs(ctx.as_of, first, horizon_days, max_train=MAX_TRAIN_CUTOFFS)


def churn_risk(ctx, now: pd.DataFrame, activity: pa.Table, cuts: Cutoffs | None,
               horizon_days: int = MC.HORIZON_DAYS) -> tuple[np.ndarray, dict]:
    """Merchant churn risk of each row of `now` (profiles at as_of; NaN where not scored) and
    the report section; `activity` is `behavior.merchant_churn.activity_sql`'s rows at as_of
    (per span of the window ends of `cuts`, the `cutoffs` of the first successful payment)."""
    section: dict = {"horizon_days": horizon_days,
                     "definition": f"P(successful payments in the next {horizon_days} days < "
                                   f"{MC.FALL_SHARE:g} x those of the last {horizon_days}) for merchants with at "
                                   f"least {MC.MIN_VOLUME} payments in the last {horizon_days} days",
                     "cutoffs": {"train": [], "test": None}, "notes": []}
    risk = np.full(len(now), np.nan)
    if cuts is None:
        _skip(section, "no successful payment before as_of")
        return risk, section
    section["cutoffs"] = {"train": [c.isoformat() for c in cuts.train],
                          "test": cuts.test.isoformat() if cuts.test else None}
    if cuts.problem:
        _skip(section, cuts.problem)
        return risk, section
    # the few profile columns the model and the baselines read, and the labels, at every cutoff
    # from the payments per merchant and day before as_of (every label window ends by as_of)
    at = MC.cutoff_frames(activity, ctx.as_of, [*cuts.train, cuts.test], horizon_days)
    train = pd.concat([MC.label(at[c]) for c in cuts.train], ignore_index=True)
    test = MC.label(at[cuts.test])
    section["train_rows"], section["test_rows"] = int(len(train)), int(len(test))
    if len(test) < MC.MIN_MERCHANTS:
        _skip(section, f"only {len(test)} merchants with at least {MC.MIN_VOLUME} payments in the "
                       f"{horizon_days} days before the test cutoff; need {MC.MIN_MERCHANTS}")
        return risk, section
    for name, part in (("training", train), ("test", test)):
        k = int(part["churned"].sum())
        if min(k, len(part) - k) < MC.MIN_CLASS:
            _skip(section, f"the {name} cutoffs have {k} merchants whose volume fell by half and {len(part) - k} "
                           f"that kept it; need {MC.MIN_CLASS} of each")
            return risk, section
    y = test["churned"].to_numpy(int)
    p = MC.MerchantRiskModel().fit(train, train["churned"]).predict_proba(test)[:, 1]
    calibrators = MC.fit_baseline_calibrators(train)
    scores = MC.baseline_scores(test)
    section["test"] = _round(churn_metrics(y, p))
    section["baselines"] = {k: _round(churn_metrics(y, s, calibrators[k].predict(s))) for k, s in scores.items()}
    sel = MC.select(y, p, scores)
    section["selection"] = sel.report()
    section["model_vs_baselines"] = MC.model_gains(sel)
    section["notes"].append(MC.selection_note(sel))

    labelled = pd.concat([train, test], ignore_index=True)
    active = (now["payments_90d"] >= MC.MIN_VOLUME).to_numpy()
    scored = MC.add_tenure(now.loc[active], ctx.as_of)
    if sel.model_chosen:
        risk[active] = MC.MerchantRiskModel().fit(labelled, labelled["churned"]).predict_proba(scored)[:, 1]
    else:
        calibrator = MC.fit_baseline_calibrators(labelled)[sel.chosen]
        risk[active] = calibrator.predict(MC.baseline_scores(scored)[sel.chosen])
    section["scored"] = int(active.sum())
    section["high_risk"] = int((risk >= MC.HIGH_RISK).sum())
    return risk, section


def run(ctx) -> StageResult[pa.Table]:
    values = ctx.outputs["loyalty"].select(["user_id", "clv"])
    segments = ctx.outputs.get("segments")   # without it (skipped) the tier shares are null
    ctx.engine.register("_user_values", values)
    if segments is not None:
        ctx.engine.register("_user_tiers", segments.select(["user_id", "loyalty_tier"]))
    # The cutoffs first (from the first successful payment, one narrow read), so that each user
    # part's activity is summed per span between their windows' ends, not per merchant and day
    # (a table that grew with the merchants times the days, in every part)
    cuts = cutoffs(ctx, MC.first_payment_at(ctx.engine, "payments", ctx.as_of))
    ends = MC.span_ends(ctx.as_of, [*cuts.train, cuts.test]) if cuts is not None and not cuts.problem else None
    try:
        tables = merchant_tables(ctx.engine, "payments", ctx.as_of, "_user_values",
                                 "_user_tiers" if segments is not None else None, ctx.user_parts, ends)
    finally:
        ctx.engine.unregister("_user_values")
        if segments is not None:
            ctx.engine.unregister("_user_tiers")
    profiles, audience = tables.profiles, tables.audience
    counts = profiles["merchant_segment"].value_counts().reindex(list(MERCHANT_SEGMENTS), fill_value=0)
    section = {"merchants": int(len(profiles)), "counts": {k: int(v) for k, v in counts.items()}}
    risk, section["churn"] = churn_risk(ctx, profiles, tables.activity, cuts)
    profiles["churn_risk"] = risk
    profiles["churn_reasons"] = pd.Series(MC.risk_reasons(profiles, risk), dtype="object")
    table = pa.Table.from_pandas(profiles, preserve_index=False)
    # counted in Arrow: 19M audience rows at 100M lines made 4 s of Python strings
    sizes = {c["values"]: c["counts"] for c in pc.value_counts(audience.column("audience")).to_pylist()}
    section["audiences"] = {a: int(sizes.get(a, 0)) for a in AUDIENCES}
    return StageResult(table, {MERCHANTS: table, MERCHANT_CUSTOMERS: audience}, section)
