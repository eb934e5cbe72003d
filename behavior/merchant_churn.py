"""Merchant churn risk: the probability that a merchant's payment volume falls by more than
half over the next 90 days, trained and evaluated on point-in-time cutoffs as customer churn is
(`behavior.churn`), and kept only where it beats simple baselines by more than its uncertainty.

Vocabulary (time unit: day, UTC):

- At a cutoff c, the *active merchants* are those with at least `MIN_VOLUME` successful
  payments in [c - H, c) (H = `horizon_days`, 90); only they are labelled and scored (the risk
  of a dormant or tiny merchant is not defined: null).
- **Label**: an active merchant *churns* (1) when its successful payments in [c, c + H) are
  fewer than half of those in [c - H, c) (a payment's time being that of its first successful
  line there, as everywhere in the merchant figures).
- **Features at c** (`design_matrix`, from its merchant profile at c,
  `behavior.merchant_profiles.merchant_profiles` with as_of = c, computed for every cutoff at
  once from the payments per merchant and span between the cutoffs' window ends, `cutoff_frames`:
  nothing at or after c is read):
  the label's event as the Poisson probability that the next H days bring fewer than half of the
  last H days' payments, once at the pace of the last 30 days (a fade shows there first) and
  once at the last 90 days' (small merchants fall by noise alone); the silence, days since the
  last payment x payments per day over the last 90 (expected payments missed); and the 90-day
  trend.
- **Cutoffs**: `behavior.churn.choose_cutoffs` (test cutoff as_of - H, training cutoffs every
  30 days back from test - H): no training label window overlaps the test one.

Model: `MerchantRiskModel`, a standardised logistic regression on those four inputs with an L2
penalty (C = 0.1): merchants are few (hundreds of rows per cutoff, a handful of falls), and a
small linear model on features shaped like the label is what such data supports.

Baselines (`baseline_scores`, higher = riskier): `volume_trend` (minus the 90-day payments
trend) and `recency` (days since the last payment). Each is turned into a probability by an
isotonic fit on the training cutoffs, as in `behavior.churn`.

Selection (`select`, the rule of `behavior.model_choice`): on the test cutoff, every candidate's
ROC-AUC on the same bootstrap resamples of the merchants (`n_boot`, seeded); the baselines are
tried first, and the model is chosen only when no baseline's paired 95% interval of the
difference to the best candidate reaches 0. A chosen baseline's calibrated probability is the
published risk.

Reasons (`risk_reasons`): for a risk >= `HIGH_RISK`, the signs in its profile that point to a
fall, in words ("payments down 45% vs the previous 90 days", "no payment for 40 days", ...),
strongest first, at most three; a high risk with none of them says so.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy.stats import poisson
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from behavior.features import UserParts
from behavior.merchant_days import Query, over_merchant_days, payments_literal, span_start_sql
from behavior.model_choice import Choice, Scored, choose, resamples, score_metric
from behavior.ranking import roc_auc
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

HORIZON_DAYS = 90
MIN_VOLUME = 10          # successful payments in the H days before a cutoff to be labelled / scored
FALL_SHARE = 0.5         # churned: the next H days' payments < FALL_SHARE x the last H days'
MIN_MERCHANTS = 30       # active merchants at the test cutoff to train and evaluate at all
MIN_CLASS = 5            # examples of each class needed in training and in the test cutoff
HIGH_RISK = 0.5
N_BOOT = 500

_ACTIVITY = pa.schema([pa.field("merchant_id", pa.string()), pa.field("day", pa.int64()),
                       pa.field("payments", pa.int64()), pa.field("last_us", pa.int64())])

FEATURES = ("payments_30d", "payments_90d", "days_since_last_payment", "payments_trend_90d")
BASELINES = ("volume_trend", "recency")


def activity_sql(days: str, dialect: str | Dialect = "duckdb", ends: np.ndarray | None = None) -> str:
    """(merchant_id, day, payments, last_us): per merchant and day before as_of, its successful
    payments whose time falls in that day and the latest of those times (epoch microseconds),
    from the merchant-day FROM item `days` (`behavior.merchant_days`; `day` is its `rday`: -1 is
    [as_of - 1 day, as_of), -2 the 24 hours before it, so every cutoff a whole number of days
    before as_of starts a day). A payment's time is that of its first successful line at the
    merchant, as in `behavior.merchant_profiles`. Every figure is a count or a max over users,
    so the rows of disjoint sets of users combine by summing.

    With `ends` (`span_ends` of the cutoffs that `cutoff_frames` will be given, or a superset of
    them), the days are summed per span between consecutive ends and `day` is the span's first
    day (`behavior.merchant_days.span_start_sql`): `cutoff_frames` puts each such row in the
    span its days were in, and the rows are (merchants x spans) instead of (merchants x days),
    whatever the history's length."""
    ep = get_dialect(dialect).epoch_us.format
    day = "rday" if ends is None or len(ends) == 0 else span_start_sql("rday", ends)
    return f"""
SELECT merchant_id, {day} AS day, CAST(SUM(s_pays) AS BIGINT) AS payments, MAX({ep('s_last_at')}) AS last_us
FROM {days}
WHERE s_pays > 0
GROUP BY merchant_id, {day}
"""


def activity_query(ends: np.ndarray | None = None) -> Query:
    """The `behavior.merchant_days` query of a part's activity rows (`activity_sql`, per day, or
    per span of `ends`)."""
    return lambda part: activity_sql(part.days, part.dialect, ends)


def first_payment_at(con: SqlEngine, payments: str, as_of: datetime) -> datetime | None:
    """The time of the first successful payment before `as_of` (None without one): the earliest
    `first_payment_at` of the merchant profiles, known before they are made (one narrow read of
    the log), so that the cutoffs, and the spans of the activity, are known too."""
    engine = as_engine(con)
    literal = payments_literal(engine, payments, as_of)
    first = engine.arrow(f"SELECT MIN(paid_at) AS first FROM {payments} "
                         f"WHERE paid_at < {literal} AND status = 'success'").column("first").to_pandas()
    first = pd.to_datetime(first, utc=True).min()   # (as the profiles' column is read)
    return None if pd.isna(first) else first.to_pydatetime()


def _days_before(as_of: datetime, cutoffs: list[datetime]) -> list[int]:
    ks = []
    for c in cutoffs:
        k, rest = divmod(as_of - c, timedelta(days=1))
        if rest or k < 0:
            raise ValueError(f"cutoff {c.isoformat()} is not a whole number of days before as_of {as_of.isoformat()}")
        ks.append(int(k))
    return ks


def _window_ends(ks: list[int], horizon_days: int) -> np.ndarray:
    """The days (counted from as_of, as `activity_sql`'s `day`) where a window of `cutoff_frames`
    starts or ends, for cutoffs `ks` days before as_of, ascending."""
    ends = {e for k in ks for e in (-k - 180, -k - 90, -k - 30, -k)}
    ends |= {-k + horizon_days for k in ks if k >= horizon_days}
    return np.array(sorted(ends), dtype=np.int64)


def span_ends(as_of: datetime, cutoffs: list[datetime], horizon_days: int = HORIZON_DAYS) -> np.ndarray:
    """The window ends of `cutoff_frames` at `cutoffs` (days from as_of, ascending): the spans
    `activity_sql` may sum the days in (ValueError for a cutoff not a whole number of days
    before as_of)."""
    return _window_ends(_days_before(as_of, cutoffs), horizon_days)


def cutoff_frames(activity: pa.Table, as_of: datetime, cutoffs: list[datetime],
                  horizon_days: int = HORIZON_DAYS) -> dict[datetime, pd.DataFrame]:
    """The profile columns merchant churn reads (`FEATURES`, `payments_prev_90d`) at each cutoff
    from the rows of `activity_sql` as of `as_of` (of every user part), for the merchants with a
    successful payment before the cutoff, ordered by merchant_id; with `future_payments`, the
    successful payments in [cutoff, cutoff + horizon_days), for every cutoff at least
    horizon_days before as_of (the label window is then observed). Each cutoff must be a whole
    number of days before `as_of` (ValueError otherwise)."""
    ks = _days_before(as_of, cutoffs)
    rows = activity.cast(_ACTIVITY)
    # Every figure is a sum or a max over whole windows whose ends are a few days before as_of
    # (`_window_ends`), so the rows' days are put in the spans between consecutive ends: a
    # (merchants x spans) table, however long the history and however many user parts' rows
    # (a table of every day cost seconds of first-touched memory at 30M lines).
    ends = _window_ends(ks, horizon_days)
    # The rows are taken chunk by chunk (a part's rows), their merchants coded by one dictionary:
    # no array spans every row (at 100M lines tens of millions of rows, whose copies were memory
    # touched afresh).
    coded = rows.column("merchant_id").dictionary_encode().unify_dictionaries()
    dictionary = coded.chunk(0).dictionary if coded.num_chunks else pa.array([], pa.string())
    shape = (len(dictionary), len(ends) + 1)
    count = np.zeros(shape[0] * shape[1], dtype=np.int64)
    last = np.full(shape[0] * shape[1], np.iinfo(np.int64).min, dtype=np.int64)
    start = 0
    for chunk in coded.chunks:
        part = rows.slice(start, len(chunk))
        start += len(chunk)
        span = np.searchsorted(ends, part.column("day").to_numpy(), side="right")   # span i: days in [ends[i - 1], ends[i])
        cell = chunk.indices.to_numpy().astype(np.int64) * shape[1] + span          # (merchant, span), row-major
        # (float sums of whole numbers are exact below 2**53 payments)
        count += np.bincount(cell, weights=part.column("payments").to_numpy(), minlength=len(count)).astype(np.int64)
        np.maximum.at(last, cell, part.column("last_us").to_numpy())
    count, last = count.reshape(shape), last.reshape(shape)
    # the merchants in id order: the few distinct ids sorted (np.unique would sort every row's
    # id as a Python string), and their rows with them
    distinct = dictionary.to_numpy(zero_copy_only=False)
    order = np.argsort(distinct, kind="stable")
    merchants = distinct[order]
    cum = np.cumsum(count[order], axis=1)                # cum[:, i]: the payments before ends[i]
    last = np.maximum.accumulate(last[order], axis=1)    # last[:, i]: the latest payment before ends[i]
    at = {end: i for i, end in enumerate(ends)}

    def between(lo: int, hi: int) -> np.ndarray:         # the payments of the days [lo, hi)
        return cum[:, at[hi]] - cum[:, at[lo]]

    as_of_us = pd.Timestamp(as_of).value // 1000
    out = {}
    for c, k in zip(cutoffs, ks):
        keep = cum[:, at[-k]] > 0
        p90 = between(-k - 90, -k)[keep]
        prev = between(-k - 180, -k - 90)[keep].astype(float)
        last_us = last[keep, at[-k]]
        cutoff_us = as_of_us - k * 86_400_000_000
        frame = pd.DataFrame({
            "merchant_id": merchants[keep],
            "payments_30d": between(-k - 30, -k)[keep],
            "payments_90d": p90,
            "payments_prev_90d": prev.astype("int64"),
            "payments_trend_90d": p90.astype(float) / np.where(prev != 0, prev, np.nan) - 1.0,
            # as pandas' Timedelta.total_seconds of microseconds, then days
            "days_since_last_payment": (cutoff_us - last_us) / 1_000_000 / 86_400,
        })
        if k >= horizon_days:
            frame["future_payments"] = between(-k, -k + horizon_days)[keep]
        out[c] = frame
    return out


def profiles_at_cutoffs(con: SqlEngine, payments: str, as_of: datetime, cutoffs: list[datetime],
                        parts: UserParts | None = None, horizon_days: int = HORIZON_DAYS
                        ) -> dict[datetime, pd.DataFrame]:
    """`cutoff_frames` at each cutoff, equal in the profile columns to those of
    `behavior.merchant_profiles.merchant_profiles(con, payments, cutoff)`, from one read of the
    log before `as_of` (the merchant-day table of each user part: `parts`, the run's, or a set
    made for this call) instead of a whole profile per cutoff."""
    engine = as_engine(con)
    ends = span_ends(as_of, cutoffs, horizon_days)   # (before reading anything)
    activity = over_merchant_days(engine, payments, as_of, {"activity": activity_query(ends)}, parts,
                                  ("merchant_id", "user_id", "payment_id", "status", "paid_at"))["activity"]
    return cutoff_frames(activity, as_of, cutoffs, horizon_days)


def label(frame: pd.DataFrame) -> pd.DataFrame:
    """The active merchants of a `cutoff_frames` frame (at least `MIN_VOLUME` payments in the
    last H days) with `churned` (0/1): fewer than `FALL_SHARE` x those payments in the next H
    days (`future_payments`; KeyError when the frame's label window is not observed)."""
    active = frame[frame["payments_90d"] >= MIN_VOLUME].copy()
    active["churned"] = (active["future_payments"] < FALL_SHARE * active["payments_90d"]).astype(int)
    return active.reset_index(drop=True)


def add_tenure(profiles: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    """`profiles` with `tenure_days` (days since the first payment)."""
    out = profiles.copy()
    first = pd.to_datetime(out["first_payment_at"], utc=True)
    out["tenure_days"] = (pd.Timestamp(as_of) - first).dt.total_seconds() / 86_400
    return out


def _log_p_fall(rate: np.ndarray, payments_90d: np.ndarray) -> np.ndarray:
    """log P(N < FALL_SHARE x payments_90d) for N ~ Poisson(rate): the label's event if the next
    H days ran at `rate` (floored at 0.1 so that a silent merchant is near-certain to fall)."""
    below = np.ceil(FALL_SHARE * payments_90d) - 1          # N < x  <=>  N <= ceil(x) - 1
    return np.log(np.maximum(poisson.cdf(below, np.maximum(rate, 0.1)), 1e-12))


def design_matrix(frame: pd.DataFrame) -> np.ndarray:
    """The model's inputs, from profile columns at the cutoff (see the module doc): the fall's
    Poisson log-probability at the last 30 days' pace and at the last 90 days' pace, the silence
    in expected payments missed, and the 90-day trend clipped to [-1, 5] (missing = no change)."""
    col = {c: (frame[c].to_numpy(float) if c in frame else np.full(len(frame), np.nan)) for c in FEATURES}
    p90 = np.nan_to_num(col["payments_90d"])
    silence = np.nan_to_num(col["days_since_last_payment"]) * p90 / HORIZON_DAYS
    return np.column_stack([_log_p_fall(3.0 * np.nan_to_num(col["payments_30d"]), p90),
                            _log_p_fall(p90, p90),
                            np.log1p(np.maximum(silence, 0.0)),
                            np.clip(np.nan_to_num(col["payments_trend_90d"]), -1.0, 5.0)])


class MerchantRiskModel(ClassifierMixin, BaseEstimator):
    """Standardised L2 logistic regression on `design_matrix` of profile frames."""

    def __init__(self, C: float = 0.1) -> None:
        self.C = C

    def fit(self, frame: pd.DataFrame, y) -> "MerchantRiskModel":
        y = np.asarray(y, int)
        if len(np.unique(y)) < 2:
            raise ValueError("merchant risk needs both churned and kept merchants to learn from")
        self.pipeline_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=2000))
        self.pipeline_.fit(design_matrix(frame), y)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "pipeline_")
        return self.pipeline_.predict_proba(design_matrix(frame))


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Higher = riskier. A missing trend (nothing before) scores as no change."""
    return {"volume_trend": -np.nan_to_num(frame["payments_trend_90d"].to_numpy(float), nan=0.0),
            "recency": frame["days_since_last_payment"].to_numpy(float)}


def fit_baseline_calibrators(train: pd.DataFrame) -> dict[str, IsotonicRegression]:
    y = train["churned"].to_numpy(int)
    return {name: IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(s, y)
            for name, s in baseline_scores(train).items()}


def _auc(y: np.ndarray, s: np.ndarray) -> float:
    return roc_auc(y, s)   # scikit-learn's value; its input checks cost seconds over the bootstrap


def select(y, model_score, baselines: dict[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0) -> Choice:
    """`behavior.model_choice` on ROC-AUC over merchants: the baselines first (in the order
    given), the model only when no simpler candidate's paired bootstrap interval of the
    difference to the best reaches 0. Resamples holding one class only (no AUC) are left out."""
    y = np.asarray(y, int)
    idx = resamples(len(y), n_boot, seed)
    positives = y[idx].sum(axis=1)
    idx = idx[(positives > 0) & (positives < len(y))]

    def scored(name: str, s, **kw) -> Scored:
        s = np.asarray(s, float)
        return score_metric(name, lambda rows: _auc(y, s) if rows is None else _auc(y[rows], s[rows]), idx, **kw)

    candidates = [scored(name, s, baseline=True, simplicity=i) for i, (name, s) in enumerate(baselines.items())]
    candidates.append(scored("model", model_score, simplicity=len(baselines)))
    return choose("roc_auc", candidates)


def model_gains(choice: Choice) -> dict[str, dict]:
    """The model's ROC-AUC minus each baseline's, with the paired bootstrap interval (`Choice.gain`):
    what the model beats and by how much, whether or not it is chosen."""
    return {c.name: dict(zip(("difference", "low", "high"), (round(v, 4) for v in choice.gain("model", c.name))))
            for c in choice.candidates if c.baseline}


def selection_note(choice: Choice) -> str:
    """The report's note on what is published as the merchants' churn risk: the choice's
    summary (`Choice.summary`: what the model beat by how much, or the baseline it did not beat
    beyond the uncertainty) and which score becomes the risk."""
    published = ("the model's risk is published" if choice.model_chosen
                 else f"the calibrated {choice.chosen} baseline is published as the risk")
    return f"{choice.summary()}; {published}"


def risk_reasons(frame: pd.DataFrame, risk: np.ndarray, high: float = HIGH_RISK, top: int = 3) -> list[str | None]:
    """Reasons in words for each row whose risk is >= `high` (None for the others and for a
    null risk): the signs of a fall in its profile, strongest first, at most `top`."""
    out: list[str | None] = []
    for row, p in zip(frame.to_dict("records"), np.asarray(risk, float)):
        if not np.isfinite(p) or p < high:
            out.append(None)
            continue
        signs: list[tuple[float, str]] = []

        def trend(col: str, what: str) -> None:
            v = row.get(col)
            if v is not None and np.isfinite(v) and v <= -0.2:
                signs.append((-v, f"{what} down {abs(v) * 100:.0f}% vs the previous 90 days"))

        trend("payments_trend_90d", "payments")
        trend("customers_trend_90d", "customers")
        trend("revenue_trend_90d", "net revenue")
        days = row.get("days_since_last_payment")
        if days is not None and np.isfinite(days) and days >= 14:
            signs.append((min(1.0, days / 60), f"no payment for {days:.0f} days"))
        t30 = row.get("payments_trend_30d")
        if t30 is not None and np.isfinite(t30) and t30 <= -0.3:
            signs.append((-t30 * 0.9, f"payments down {abs(t30) * 100:.0f}% in the last 30 days vs the 30 before"))
        fail = row.get("failure_rate")
        if fail is not None and np.isfinite(fail) and fail >= 0.05:
            signs.append((fail * 2, f"{fail * 100:.0f}% of payment attempts fail"))
        refund = row.get("refund_rate")
        if refund is not None and np.isfinite(refund) and refund >= 0.05:
            signs.append((refund * 2, f"{refund * 100:.0f}% of sold lines are refunded"))
        ret = row.get("retention_90d")
        if ret is not None and np.isfinite(ret) and ret < 0.1:
            signs.append((0.1 - ret, f"only {ret * 100:.0f}% of new customers came back within 90 days"))
        signs.sort(key=lambda s: -s[0])
        words = [w for _, w in signs[:top]]
        out.append("; ".join(words) if words else f"risk {p:.0%} from its history as a whole; no single sign stands out")
    return out


__all__ = ["BASELINES", "FALL_SHARE", "FEATURES", "HIGH_RISK", "HORIZON_DAYS", "MIN_CLASS", "MIN_MERCHANTS",
           "MIN_VOLUME", "MerchantRiskModel", "activity_query", "activity_sql", "add_tenure", "baseline_scores",
           "cutoff_frames", "design_matrix", "first_payment_at", "fit_baseline_calibrators", "label", "model_gains",
           "profiles_at_cutoffs", "risk_reasons", "select", "selection_note", "span_ends"]
