"""Churn prediction for non-contractual payment histories, and retention tables.

Vocabulary (time unit: day, UTC):

- A **cutoff** c is a point in time. The *customers at c* are the users with a successful
  payment before c (the rows of `user_features(con, payments, c)`).
- **Label**: a customer at c is *churned* (1) when they have no successful payment in
  [c, c + L), L the label window (`horizon_days`, default 90, or shorter on a short
  history: `Cutoffs.label_days`); otherwise 0.
- **Features at c** come only from events before c: the per-user feature table of
  `behavior.features` plus BG/NBD `p_alive`, `expected_purchases` (over L days) and
  `p_no_purchase` (P(no purchase in the next L days), closed form) from a transaction model of
  the loyalty stage's kind (BG/NBD by default) fitted on that cutoff's (frequency, recency, T);
  at as_of, the loyalty stage's fit itself. `cutoff_dataset` builds both (`cutoff_datasets`
  at several cutoffs from one set of user parts).
- **Cutoffs** (`choose_cutoffs`): the test (validation) cutoff is as_of - L (the latest fully
  labeled one); training cutoffs step back from test - L, so every training label window
  [c, c + L) ends at or before the test cutoff: evaluation never overlaps training labels.

Model: `ChurnClassifier` (small trees, strong leaf minimum: on BG/NBD-like data the
BG/NBD summary is close to optimal, and a deeper booster overfits the other columns), a
scikit-learn estimator around HistGradientBoostingClassifier. Whether it, a logistic model or
a baseline is served, and how its score becomes a probability, is `behavior.churn_choice`.

Metrics: `churn_metrics` (roc_auc, pr_auc = average precision, brier, lift_at_10pct = churn
rate among the top-10% scores / base rate) and `calibration_table` (10 equal-width bins of the
predicted probability: count, mean predicted, observed churn rate).

Baselines (`baseline_scores`, simplest first): `recency` (recency_days), `frequency`
(- frequency), `bgnbd_expected_purchases` (- expected_purchases), `bgnbd_p_alive`
(1 - p_alive) and `bgnbd_p_no_purchase` (p_no_purchase).

Reasons (`churn_reasons`, `reason_features`): a transparent partial-effect method against
healthy customers. The reference of each interpretable feature in `REASON_FEATURES` is its
median over the customers scored below `REASON_THRESHOLD` (0.5). A feature can be a reason for
a user only when the user's value is on its risky side (`RISK_DIRECTION`: a longer silence, a
falling spend trend below zero, a lower P(alive), ...); its effect is p(user) - p(user with
that feature at the reference). The largest effects (>= `min_effect`, at most `top`) are the
reasons; a user scored >= the threshold always gets at least the risky-side feature with the
largest effect. Rendered in words ("one-time buyer, not back for 730 days", "no purchase for
120 days, usually buys every 30 days", "payments down 60% vs previous 90 days").
Cost: one extra predict per reason feature the score reads, of the customers on its risky
side only; the words are put together in Arrow (`behavior.churn_words`).

Retention tables (cohort retention, retention curves per segment): `behavior.retention`.

Engines: the labels take a `dialect` ("duckdb" or "spark", see `behavior.sql_dialect`);
`churn_labels` and `cutoff_dataset` take a DuckDB connection or any
`SqlEngine`, so the cutoff data sets can be computed on Spark from the same SQL text.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from behavior.btyd import BetaGeoFitter
from behavior.churn_words import reason_words
from behavior.features import UserParts, as_of_literal, user_features_at
from behavior.sql_dialect import Dialect, SqlEngine, as_engine, get_dialect

HORIZON_DAYS = 90
STEP_DAYS = 30
MAX_TRAIN_CUTOFFS = 4
MIN_HISTORY_DAYS = 90      # a cutoff needs this much history after the first payment
SHORT_HISTORY_DAYS = 30    # ... or this much when the lake is too short for MIN_HISTORY_DAYS and two horizons
MIN_LABEL_DAYS = 28        # the shortest label window a short history may use
MIN_CUSTOMERS = 100        # per cutoff, to fit BG/NBD and learn anything
MAX_BGNBD_FIT = 10_000     # customers a cutoff's BG/NBD is fitted on
MIN_CLASS = 20             # examples of each class needed to train / evaluate

# Feature-table columns that are not model inputs (ids, times, strings, raw BTYD inputs kept).
_NON_FEATURES = {"user_id", "first_purchase_at", "last_purchase_at", "top_category", "top_channel"}
LOYALTY_FEATURES = ("p_alive", "expected_purchases", "p_no_purchase")
BASELINES = ("recency", "frequency", "bgnbd_expected_purchases", "bgnbd_p_alive", "bgnbd_p_no_purchase")
# the one column each baseline reads (`baseline_scores`)
BASELINE_INPUTS = {"recency": "recency_days", "frequency": "frequency", "bgnbd_expected_purchases": "expected_purchases",
                   "bgnbd_p_alive": "p_alive", "bgnbd_p_no_purchase": "p_no_purchase"}
REASON_FEATURES = ("recency_days", "spend_trend", "n_payments_90d", "p_alive", "expected_purchases",
                   "mean_gap_days", "frequency", "failure_rate", "refund_rate")
# +1: a higher value means more churn risk; -1: a lower value does. Only the risky side of a
# feature can be a reason (tenure has no direction a marketer could act on, so it is none).
RISK_DIRECTION = {"recency_days": 1, "spend_trend": -1, "n_payments_90d": -1, "p_alive": -1,
                  "expected_purchases": -1, "mean_gap_days": 1, "frequency": -1, "failure_rate": 1,
                  "refund_rate": 1}
REASON_THRESHOLD = 0.5     # every customer scored at or above this gets at least one reason
# the columns the reasons' words quote besides the reason features themselves
WORDING_COLUMNS = frozenset({"spend_90d", "spend_prev_90d", "mean_gap_days", "frequency"})


# ---------------------------------------------------------------- cutoffs and data sets


@dataclass(frozen=True)
class Cutoffs:
    train: list[datetime]
    test: datetime | None
    problem: str | None = None    # why there is nothing to train on
    label_days: int = HORIZON_DAYS   # every cutoff's label window [c, c + label_days)


def choose_cutoffs(as_of: datetime, first_payment: datetime, horizon_days: int = HORIZON_DAYS,
                   step_days: int = STEP_DAYS, max_train: int = MAX_TRAIN_CUTOFFS,
                   min_history_days: int = MIN_HISTORY_DAYS, shorten: bool = False) -> Cutoffs:
    """Test (validation) cutoff as_of - L; training cutoffs from test - L back by a step (at
    most `max_train`), each at least a minimum history after the first payment, so every
    training cutoff c satisfies c + L <= test. L, the label window, is `horizon_days` when
    the history holds `min_history_days` + 2 horizons. On a shorter history, with `shorten`,
    a cutoff needs only SHORT_HISTORY_DAYS and L shrinks to a third of what is left (room for
    the test window, a training window and a run of training cutoffs), but never below
    MIN_LABEL_DAYS; without it, L stays `horizon_days` and there may be no training cutoff
    (`problem` says so). The step is `step_days`, or shorter (at least 7 days, never longer
    than L) when that leaves room for fewer than `max_train` cutoffs."""
    span = (as_of - first_payment).days
    label, history = horizon_days, min_history_days
    if shorten and span < history + 2 * label:
        history = min(history, SHORT_HISTORY_DAYS)
        label = min(horizon_days, (span - history) // 3)
    if label < min(horizon_days, MIN_LABEL_DAYS):
        need = (first_payment + timedelta(days=SHORT_HISTORY_DAYS + 3 * min(horizon_days, MIN_LABEL_DAYS))).date()
        return Cutoffs([], None, f"too little history for a churn label: {span} days between the first payment "
                                 f"({first_payment.date()}) and as_of leave no {MIN_LABEL_DAYS}-day label window "
                                 f"for a test and a training cutoff; need as_of on or after {need}", label)
    lw = timedelta(days=label)
    earliest = first_payment + timedelta(days=history)
    test = as_of - lw
    room = (test - lw - earliest).days
    if room < 0:
        return Cutoffs([], None if test < earliest else test,
                       f"too little history for a {horizon_days}-day horizon: a training cutoff needs as_of on or "
                       f"after {(earliest + 2 * lw).date()} ({min_history_days} days after the first payment "
                       f"{first_payment.date()}, and two horizons)", label)
    step = step_days if room >= step_days * (max_train - 1) else max(7, room // max(max_train - 1, 1))
    step = min(step, label)
    train = []
    c = test - lw
    while c >= earliest and len(train) < max_train:
        train.append(c)
        c -= timedelta(days=step)
    train.sort()
    return Cutoffs(train, test, None, label)


def churn_labels_sql(payments: str, cutoff: datetime, horizon_days: int = HORIZON_DAYS,
                     dialect: str | Dialect = "duckdb") -> str:
    """user_id, churned (TINYINT 0/1) for the customers at `cutoff`, ordered by user_id."""
    d = get_dialect(dialect)
    lo = as_of_literal(cutoff, dialect=d)
    hi = as_of_literal(cutoff + timedelta(days=horizon_days), dialect=d)
    return f"""
        WITH before AS (SELECT DISTINCT user_id FROM {payments} WHERE status = 'success' AND paid_at < {lo}),
             after AS (SELECT DISTINCT user_id FROM {payments}
                       WHERE status = 'success' AND paid_at >= {lo} AND paid_at < {hi})
        SELECT b.user_id, CASE WHEN a.user_id IS NULL THEN 1 ELSE 0 END::TINYINT AS churned
        FROM before b LEFT JOIN after a USING (user_id) ORDER BY b.user_id"""


def churn_labels(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str, cutoff: datetime,
                 horizon_days: int = HORIZON_DAYS) -> pd.DataFrame:
    """user_id -> churned (0/1) for the customers at `cutoff` (a successful payment before it):
    1 when there is no successful payment in [cutoff, cutoff + H). `con`: a DuckDB connection
    or any `SqlEngine`."""
    engine = as_engine(con)
    return engine.frame(churn_labels_sql(payments, cutoff, horizon_days, engine.dialect))


def bgnbd_fit_rows(T: np.ndarray) -> np.ndarray:
    """The rows (ascending) `add_bgnbd` fits a transaction model on, of customers with these
    T: those with T > 0, a seeded sample of MAX_BGNBD_FIT of them when there are more, none
    when there are fewer than MIN_CUSTOMERS."""
    rows = np.flatnonzero(np.asarray(T, float) > 0)
    if len(rows) < MIN_CUSTOMERS:
        return rows[:0]
    if len(rows) > MAX_BGNBD_FIT:   # four parameters: a seeded sample fits them as well, in a fraction of the time
        rows = np.sort(np.random.default_rng(0).choice(rows, MAX_BGNBD_FIT, replace=False))
    return rows


def add_bgnbd(frame: pd.DataFrame, horizon_days: int = HORIZON_DAYS, penalizer: float = 0.0,
              model: BetaGeoFitter | None = None, known: dict[str, np.ndarray] | None = None,
              fit_rows: np.ndarray | None = None) -> pd.DataFrame:
    """Add `p_alive`, `expected_purchases` and `p_no_purchase` (next H days) from a transaction
    model: `model` itself when it is fitted (the loyalty stage's, so the churn features and
    reasons at as_of say what the profile says), else a clone of it (default: BG/NBD with
    `penalizer`) fitted on `frame`'s frequency, recency, T (rows with T > 0; a seeded sample of
    MAX_BGNBD_FIT of them when there are more: `bgnbd_fit_rows`, or the rows `fit_rows` when
    the frame holds only some of the customers the fit is for). NaN if the fit fails (the
    booster copes).

    `known`: figures the fitted `model` has already computed on these rows' frequency, recency
    and T, one value per row in the rows' order (`p_alive`, and `expected_purchases` when over
    `horizon_days`; the loyalty stage's output at as_of): they are used as they are, not
    computed again. Only with a fitted `model` (ValueError otherwise)."""
    known = known or {}
    if known and not hasattr(model, "params_"):
        raise ValueError("known BG/NBD figures need the fitted model that computed them")
    if set(known) - {"p_alive", "expected_purchases"}:
        raise ValueError(f"known BG/NBD figures are p_alive and expected_purchases, not {sorted(set(known))}")
    out = frame.copy(deep=False)   # copy-on-write (pandas >= 3): `frame` is never changed, and nothing is copied
    out["p_alive"] = np.nan
    out["expected_purchases"] = np.nan
    out["p_no_purchase"] = np.nan
    x, tx, T = (out[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    if model is not None and hasattr(model, "params_"):
        bg = model
    else:
        rows = bgnbd_fit_rows(T) if fit_rows is None else fit_rows
        if len(rows) < MIN_CUSTOMERS:
            return out
        try:
            bg = (BetaGeoFitter(penalizer=penalizer) if model is None else clone(model)).fit(x[rows], tx[rows], T[rows])
        except (ValueError, RuntimeError):
            return out
    out["p_alive"] = known["p_alive"] if "p_alive" in known else bg.conditional_probability_alive(x, tx, T)
    out["expected_purchases"] = (known["expected_purchases"] if "expected_purchases" in known
                                 else bg.conditional_expected_number_of_purchases_up_to_time(horizon_days, x, tx, T))
    # P(no purchase in the next H days): dead, or alive with a Poisson rate whose posterior
    # is Gamma(r + x, alpha + T) and no event in H days (both models drop out only at a purchase).
    r, alpha = bg.params_["r"], bg.params_["alpha"]
    pa_ = out["p_alive"].to_numpy(float)
    out["p_no_purchase"] = 1.0 - pa_ + pa_ * ((alpha + T) / (alpha + T + horizon_days)) ** (r + x)
    return out


def cutoff_dataset(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str, cutoff: datetime,
                   horizon_days: int = HORIZON_DAYS, labels: bool = True, penalizer: float = 0.0,
                   model: BetaGeoFitter | None = None, parts: UserParts | None = None) -> pd.DataFrame:
    """Features (events before `cutoff` only) + the transaction model's outputs at `cutoff` (a
    clone of `model`, default BG/NBD, fitted at the cutoff) (+ `churned` when `labels`),
    ordered by user_id. `parts`: the `UserParts` of `payments` to read (see `user_features`)."""
    with closing(cutoff_datasets(con, payments, [cutoff], horizon_days, labels, penalizer, model, parts)) as one:
        return next(one)


def cutoff_datasets(con: duckdb.DuckDBPyConnection | SqlEngine, payments: str, cutoffs: list[datetime],
                    horizon_days: int = HORIZON_DAYS, labels: bool = True, penalizer: float = 0.0,
                    model: BetaGeoFitter | None = None, parts: UserParts | None = None) -> Iterator[pd.DataFrame]:
    """`cutoff_dataset` at each of `cutoffs` in turn, one frame at a time, the features of all
    of them from one set of user parts (`parts`, or one written for the latest cutoff when the
    log is big): a big log is written into parts once, not once per cutoff. Close the
    generator if you stop early."""
    engine = as_engine(con)
    with closing(user_features_at(engine, payments, cutoffs, parts)) as tables:
        for cutoff, table in zip(cutoffs, tables):
            kind = None if model is None else clone(model)
            f = add_bgnbd(table.to_pandas(), horizon_days, penalizer, kind)
            del table
            if labels:
                f = f.merge(churn_labels(engine, payments, cutoff, horizon_days), on="user_id", how="left")
            f["cutoff"] = cutoff
            yield f.sort_values("user_id", kind="stable").reset_index(drop=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    """The numeric model inputs of a cutoff dataset (feature table + loyalty); columns with no
    value at all (e.g. money columns of a lake without amounts) are left out."""
    skip = _NON_FEATURES | {"churned", "cutoff"}
    return [c for c in frame.columns
            if c not in skip and pd.api.types.is_numeric_dtype(frame[c]) and frame[c].notna().any()]


# ---------------------------------------------------------------- the estimator


class ChurnClassifier(ClassifierMixin, BaseEstimator):
    """Calibrated gradient boosting for churn (labels 0/1, 1 = churned).

    Parameters: `max_iter`, `learning_rate`, `max_leaf_nodes`, `min_samples_leaf`,
    `l2_regularization` (of HistGradientBoostingClassifier), `calibration` (None: the booster's
    own probabilities, which the churn stage calibrates on the validation cutoff
    (`behavior.churn_calibration`); "isotonic" or "sigmoid": CalibratedClassifierCV), `cv`
    (folds for that calibration), `random_state`.
    Fitted: `model_` (the booster, or CalibratedClassifierCV), `feature_names_in_`, `classes_`,
    `n_features_in_`.
    """

    def __init__(self, max_iter: int = 100, learning_rate: float = 0.1, max_leaf_nodes: int = 7,
                 min_samples_leaf: int = 200, l2_regularization: float = 1.0, calibration: str | None = None,
                 cv: int = 3, random_state: int | None = 0):
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.calibration = calibration
        self.cv = cv
        self.random_state = random_state

    def _matrix(self, X) -> np.ndarray:
        if isinstance(X, pd.DataFrame):
            return X.to_numpy(dtype=float, na_value=np.nan)
        return np.asarray(X, dtype=float)

    def fit(self, X, y):
        y = np.asarray(y).astype(int)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"churn labels need both classes, got only {classes.tolist()}")
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        hgb = HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf, l2_regularization=self.l2_regularization,
            early_stopping=False, random_state=self.random_state)
        self.model_ = hgb if self.calibration is None else CalibratedClassifierCV(
            hgb, method=self.calibration, cv=self.cv, ensemble=False)
        M = self._matrix(X)
        self.model_.fit(M, y)
        self.classes_ = classes
        self.n_features_in_ = M.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        return self.model_.predict_proba(self._matrix(X))

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


# ---------------------------------------------------------------- metrics and baselines


def lift_at(y, score, fraction: float = 0.1) -> float:
    """Churn rate among the top `fraction` of scores (ties broken by order) / base rate."""
    y = np.asarray(y, float)
    score = np.asarray(score, float)
    k = max(1, int(np.ceil(fraction * len(y))))
    top = np.argsort(-score, kind="stable")[:k]
    base = y.mean()
    return float(y[top].mean() / base) if base > 0 else float("nan")


def churn_metrics(y, score, prob=None) -> dict:
    """roc_auc, pr_auc (average precision), lift_at_10pct from `score`; brier from `prob`
    (default: `score`, which must then be a probability; None when no probability is given)."""
    y = np.asarray(y, int)
    score = np.asarray(score, float)
    prob = score if prob is None else np.asarray(prob, float)
    return {"roc_auc": float(roc_auc_score(y, score)), "pr_auc": float(average_precision_score(y, score)),
            "brier": float(brier_score_loss(y, prob)), "lift_at_10pct": lift_at(y, score, 0.1),
            "n": int(len(y)), "churn_rate": float(y.mean())}


def gain_curve(y, score, points: int = 21) -> dict[str, list[float]]:
    """Cumulative gain: customers ranked by `score` (highest first, ties by order); for the
    top shares 0, 1/(points-1), ..., 1 of them, the share of all churners they hold.
    Returns {"share": [...], "captured": [...]}; `captured` is all NaN without churners.
    Random ranking gives captured = share; lift at a share is captured / share."""
    y = np.asarray(y, float)
    score = np.asarray(score, float)
    share = np.linspace(0.0, 1.0, points)
    hits = np.concatenate([[0.0], np.cumsum(y[np.argsort(-score, kind="stable")])])
    k = np.ceil(share * len(y) - 1e-9).astype(int)
    captured = hits[k] / hits[-1] if hits[-1] > 0 else np.full(points, np.nan)
    return {"share": share.round(6).tolist(), "captured": np.round(captured, 6).tolist()}


def calibration_table(y, prob, bins: int = 10) -> list[dict]:
    """Equal-width bins of the predicted probability: bin bounds, count, mean predicted, observed
    churn rate (empty bins are left out)."""
    y = np.asarray(y, float)
    prob = np.asarray(prob, float)
    idx = np.minimum((prob * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        m = idx == b
        if m.any():
            rows.append({"bin": b, "lower": b / bins, "upper": (b + 1) / bins, "count": int(m.sum()),
                         "mean_predicted": float(prob[m].mean()), "observed": float(y[m].mean())})
    return rows


def baseline_scores(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The one-number rules, in `BASELINES` order (simplest first). Higher = more likely to
    churn. NaN (failed BG/NBD fit) scores as the least risky."""
    def col(name: str) -> np.ndarray:
        return frame[BASELINE_INPUTS[name]].to_numpy(float)
    return {"recency": col("recency"),
            "frequency": -col("frequency"),
            "bgnbd_expected_purchases": np.nan_to_num(-col("bgnbd_expected_purchases"), nan=0.0),
            "bgnbd_p_alive": np.nan_to_num(1.0 - col("bgnbd_p_alive"), nan=0.0),
            "bgnbd_p_no_purchase": np.nan_to_num(col("bgnbd_p_no_purchase"), nan=0.0)}


# ---------------------------------------------------------------- reasons


def _fmt_reason(feature: str, row: dict, horizon_days: int) -> str:
    """One customer's reason in words (`row`: the customer's values by column)."""
    cols = {c: np.array([v], float) for c, v in row.items() if v is not None}
    return reason_words(feature, cols, horizon_days)[0].as_py()


REASON_CHUNK = 200_000   # rows per copy of X in churn_reasons
WORDS_CHUNK = 1_000_000   # rows per Arrow array of reasons in words


def reason_references(X: pd.DataFrame, p: np.ndarray, features: tuple[str, ...] = REASON_FEATURES,
                      threshold: float = REASON_THRESHOLD) -> dict[str, float]:
    """The healthy value of each reason feature: its median over the rows of X scored below
    `threshold` (the whole of X when none is). A churn reason compares a customer with the
    customers expected to stay, not with a population that may itself be mostly lapsed."""
    healthy = p < threshold
    refs = {}
    for f in features:
        if f in X.columns:   # one column at a time: no copy of the healthy rows of X
            m = X[f][healthy].median() if healthy.any() else X[f].median()
            refs[f] = float(m) if pd.notna(m) else float(X[f].median())
    return {f: v for f, v in refs.items() if np.isfinite(v)}


def _risky_side(f: str, values: np.ndarray, ref: float) -> np.ndarray:
    """True where the value is worse than the healthy reference in the feature's risk direction
    (a falling spend trend must also be below zero: growth is never a reason to churn)."""
    risky = RISK_DIRECTION[f] * (values - ref) > 0
    if f == "spend_trend":
        risky &= values < 0
    return risky & np.isfinite(values)


def _top_columns(effects: np.ndarray, top: int) -> np.ndarray:
    """Per row, the columns of the `top` largest effects, ties by column (the first `top` of a
    stable argsort of -effects), by `top` passes of argmax instead of sorting every row."""
    rest = np.where(np.isneginf(effects), -1e300, effects)   # effects are in [-1, 1] or -inf (no candidate)
    order = np.empty((len(effects), min(top, effects.shape[1])), np.intp)
    rows = np.arange(len(effects))
    for slot in range(order.shape[1]):
        order[:, slot] = rest.argmax(axis=1)
        rest[rows, order[:, slot]] = -np.inf   # taken: below every effect left
    return order


def _reason_picks(model: ChurnClassifier, X: pd.DataFrame, features: tuple[str, ...], top: int, min_effect: float,
                  threshold: float) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, dict[str, float]]:
    """`reason_features` as arrays: p, the candidate features, per row the feature indices by
    effect (n x top) and which of them are reasons (n x top; the reasons are a prefix)."""
    p = model.predict_proba(X)[:, 1]
    refs = reason_references(X, p, tuple(f for f in features if f in RISK_DIRECTION), threshold)
    feats = [f for f in features if f in refs and X[f].notna().any()]
    if not feats or not len(X):
        return p, feats, np.zeros((len(X), 0), int), np.zeros((len(X), 0), bool), refs
    values = {f: X[f].to_numpy(float) for f in feats}
    reads = set(getattr(model, "inputs", X.columns))
    effects = np.full((len(X), len(feats)), -np.inf)   # the healthy side of a feature is never a reason
    for j, f in enumerate(feats):
        rows = np.flatnonzero(_risky_side(f, values[f], refs[f]))
        if f not in reads:   # the score does not read f: moving it to the reference changes nothing
            effects[rows, j] = 0.0
            continue
        # only the rows on the feature's risky side are scored again, a chunk at a time (bounded memory);
        # a row's score does not depend on the other rows scored with it
        for lo in range(0, len(rows), REASON_CHUNK):
            part = rows[lo:lo + REASON_CHUNK]
            Xj = X.take(part)
            Xj[f] = refs[f]
            e = p[part] - model.predict_proba(Xj)[:, 1]
            effects[part, j] = np.where(np.isfinite(e), e, 0.0)
    order = _top_columns(effects, top)
    best = np.take_along_axis(effects, order, axis=1)
    keep = best >= min_effect
    keep[:, 0] |= (p >= threshold) & np.isfinite(best[:, 0])
    return p, feats, order, keep, refs


def reason_features(model: ChurnClassifier, X: pd.DataFrame, features: tuple[str, ...] = REASON_FEATURES,
                    top: int = 3, min_effect: float = 0.01, threshold: float = REASON_THRESHOLD
                    ) -> tuple[np.ndarray, list[list[str]], dict[str, float]]:
    """Churn probability per row of X, the reason features per row (most effect first) and the
    healthy references they were measured against.

    A feature is a candidate for a user only when the user's value is on the risky side of the
    healthy reference (`reason_references`, `RISK_DIRECTION`); its effect is
    p(x) - p(x with x_j set to the reference). The candidates with effect >= `min_effect` (at
    most `top`) are the reasons. A user scored >= `threshold` whose candidates all fall below
    `min_effect` (a flat region of the trees) gets the candidate with the largest effect, so
    every at-risk customer has a reason and none points the wrong way."""
    p, feats, order, keep, refs = _reason_picks(model, X, features, top, min_effect, threshold)
    return p, [[feats[j] for j, k in zip(o, kk) if k] for o, kk in zip(order.tolist(), keep.tolist())], refs


def churn_reason_words(model: ChurnClassifier, X: pd.DataFrame, features: tuple[str, ...] = REASON_FEATURES,
                       top: int = 3, min_effect: float = 0.01, horizon_days: int = HORIZON_DAYS,
                       context: pd.DataFrame | None = None, threshold: float = REASON_THRESHOLD
                       ) -> tuple[np.ndarray, pa.ChunkedArray]:
    """Churn probability per row of X and its reasons in words ("; "-joined; "" when none), as
    chosen by `reason_features`, as an Arrow string column. `context` (same rows as X) supplies
    extra columns for the wording (spend_90d, mean_gap_days, ...). Each reason of a row is
    worded once, whichever of its slots it is in (`behavior.churn_words`)."""
    p, feats, order, keep, _ = _reason_picks(model, X, features, top, min_effect, threshold)
    words = context if context is not None else X
    cols = {c: words[c].to_numpy(float) for c in set(features) | WORDING_COLUMNS if c in words}
    n, slots = len(X), order.shape[1]
    texts: list[pa.Array] = []
    at = np.full((n, slots), -1, np.int64)   # where each kept slot's words are in `texts`, end to end
    offset = 0
    for j, f in enumerate(feats):
        hit = keep & (order == j)
        rows = np.flatnonzero(hit.any(axis=1))
        if not len(rows):
            continue
        texts.append(reason_words(f, {c: a[rows] for c, a in cols.items()}, horizon_days))
        where = np.full(n, -1, np.int64)
        where[rows] = offset + np.arange(len(rows))
        at[hit] = where[np.nonzero(hit)[0]]
        offset += len(rows)
    every = pa.chunked_array(texts, pa.string())
    out = []
    for lo in range(0, n, WORDS_CHUNK):   # a chunk of rows at a time: an Arrow string array holds at most 2 GB
        idx = at[lo:lo + WORDS_CHUNK]
        slot = [every.take(pa.array(idx[:, s], mask=idx[:, s] < 0)) for s in range(slots)]
        # the reasons are a prefix of the slots: the longest run of them that is all there
        joined = [pc.binary_join_element_wise(*slot[:k], "; ") for k in range(slots, 1, -1)]
        out.append(pc.coalesce(*joined, *slot[:1], pa.scalar("", pa.string())) if slots
                   else pa.array([""] * len(idx), pa.string()))
    return p, pa.chunked_array(out, pa.string())


def churn_reasons(model: ChurnClassifier, X: pd.DataFrame, features: tuple[str, ...] = REASON_FEATURES,
                  top: int = 3, min_effect: float = 0.01, horizon_days: int = HORIZON_DAYS,
                  context: pd.DataFrame | None = None, threshold: float = REASON_THRESHOLD
                  ) -> tuple[np.ndarray, list[str]]:
    """`churn_reason_words` with the reasons as a list of str."""
    p, words = churn_reason_words(model, X, features, top, min_effect, horizon_days, context, threshold)
    return p, words.to_pylist()


__all__ = ["BASELINES", "BASELINE_INPUTS", "HORIZON_DAYS", "REASON_FEATURES", "REASON_THRESHOLD", "RISK_DIRECTION", "WORDING_COLUMNS", "ChurnClassifier", "Cutoffs", "add_bgnbd",
           "baseline_scores", "calibration_table", "choose_cutoffs", "churn_labels", "churn_labels_sql", "churn_metrics",
           "churn_reason_words", "churn_reasons", "reason_features", "reason_references", "cutoff_dataset", "cutoff_datasets",
           "feature_columns",
           "gain_curve", "lift_at"]
