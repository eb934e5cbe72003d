"""What the churn stage serves: a model only when it beats every baseline beyond the noise.

Candidates, scored on the validation (test) cutoff's customers, higher = more churn risk:

- baselines (simplest first): `recency` (days since the last purchase), `frequency`
  (fewer repeat purchase days = riskier), `bgnbd_expected_purchases` (fewer = riskier),
  `bgnbd_p_alive` (1 - P(alive)) and `bgnbd_p_no_purchase` (BG/NBD's P(no purchase in the
  label window));
- models, fitted on the training cutoffs: `logistic` (standardised logistic regression on
  the BG/NBD summary and its outputs, so it starts where the baselines end) and `boosting`
  (`ChurnClassifier`, gradient boosting on every feature).

`select` measures each candidate's ROC-AUC on the same bootstrap resamples of the validation
customers (`behavior.model_choice.resamples`, as row weights: `auc_replicates`) (at most `max_units` of them, a seeded sample) and applies
`behavior.model_choice.choose`. The chosen candidate's score is then mapped to a probability
by the calibrator with the lowest held-out log loss on the validation customers
(`behavior.churn_calibration`), which keeps its ranking. The result, `ServedChurn`, scores a
frame of features as `predict_proba` does, so churn reasons work the same for a model and a
baseline.

Reproducibility: the rows are put in a defined order (cutoff, user_id) before any fit or
sample, and every random step has a fixed seed, so the same lake gives the same scores
whichever engine built the rows and in whatever order they came.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from behavior.churn import BASELINE_INPUTS, ChurnClassifier, baseline_scores, calibration_table, churn_metrics, gain_curve
from behavior.churn_calibration import CALIBRATORS, Calibration, choose_calibrator
from behavior.model_choice import Choice, Scored, choose, resamples

MODELS = ("logistic", "boosting")
LOGISTIC_FEATURES = ("recency_days", "frequency", "recency", "T", "p_alive", "expected_purchases", "p_no_purchase")
PROBABILITY_BASELINES = frozenset({"bgnbd_p_alive", "bgnbd_p_no_purchase"})
MAX_UNITS = 30_000      # validation customers the choice and the calibration use (a seeded sample above it)
N_BOOT = 200


def in_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows sorted by (cutoff, user_id): the one order every fit and sample sees."""
    keys = [k for k in ("cutoff", "user_id") if k in frame.columns]
    return frame.sort_values(keys, kind="stable").reset_index(drop=True)


class LogisticChurn:
    """Logistic regression on the BG/NBD summary and outputs (missing values: the training medians)."""

    def fit(self, X: pd.DataFrame, y) -> LogisticChurn:
        self.columns_ = [c for c in LOGISTIC_FEATURES if c in X.columns and X[c].notna().any()]
        self.fill_ = X[self.columns_].median()
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        self.model_.fit(self._matrix(X), np.asarray(y, int))
        return self

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        return X[self.columns_].fillna(self.fill_).fillna(0.0).to_numpy(float)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.model_.predict_proba(self._matrix(X))


def _fit_model(name: str, X: pd.DataFrame, y, random_state: int):
    if name == "logistic":
        return LogisticChurn().fit(X, y)
    return ChurnClassifier(random_state=random_state).fit(X, y)


@dataclass(frozen=True)
class ServedChurn:
    """The chosen candidate and its calibrator: `predict_proba(frame)` as a classifier's."""

    name: str
    columns: tuple[str, ...]         # the feature columns a model reads
    model: object | None             # None for a baseline
    calibration: Calibration

    @property
    def is_model(self) -> bool:
        return self.model is not None

    @property
    def inputs(self) -> tuple[str, ...]:
        """The columns `predict_proba` reads: a model's feature columns, or the baseline's one."""
        return self.columns if self.model is not None else (BASELINE_INPUTS[self.name],)

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        if self.model is None:
            s = baseline_scores(X)[self.name]
        else:
            s = self.model.predict_proba(X[list(self.columns)])[:, 1]
        p = self.calibration.predict(s)
        return np.column_stack([1.0 - p, p])


@dataclass(frozen=True)
class Selection:
    served: ServedChurn
    choice: Choice
    report: dict       # the churn section's selection part: served, selection, beat, test, baselines, models, ...


def resample_weights(idx: np.ndarray, n: int) -> np.ndarray:
    """How often each unit appears in each resample of `idx` (model_choice.resamples), float32."""
    return np.stack([np.bincount(r, minlength=n) for r in idx]).astype(np.float32)


def auc_replicates(score: np.ndarray, y: np.ndarray, weights: np.ndarray, chunk: int = 50) -> tuple[float, np.ndarray]:
    """ROC-AUC (ties count half) on all rows and on each resample given by its row weights,
    with one sort of the score for all of them (the bootstrap costs a few cumulative sums)."""
    order = np.argsort(score, kind="stable")
    s, yo = score[order], y[order].astype(np.float32)
    ends = np.append(np.flatnonzero(np.diff(s) != 0), len(s) - 1)   # the last row of each run of ties

    def auc(w: np.ndarray) -> np.ndarray:
        # float32 sums of whole counts are exact below 2**24 rows
        pos = np.cumsum(w * yo, axis=1)[:, ends].astype(np.float64)
        neg = np.cumsum(w, axis=1)[:, ends].astype(np.float64) - pos
        pos_g = np.diff(pos, axis=1, prepend=0.0)
        neg_g = np.diff(neg, axis=1, prepend=0.0)
        total = pos[:, -1] * neg[:, -1]
        num = (pos_g * (neg - 0.5 * neg_g)).sum(axis=1)
        return np.where(total > 0, num / np.where(total > 0, total, 1.0), 0.5)

    reps = np.concatenate([auc(weights[i:i + chunk][:, order]) for i in range(0, len(weights), chunk)])
    return float(auc(np.ones((1, len(s)), np.float32))[0]), reps


def validation_rows(n: int, max_units: int = MAX_UNITS, random_state: int = 0) -> np.ndarray:
    """The rows (ascending) of n validation customers in `in_order` order that `select` scores
    the candidates on: a seeded sample of `max_units` of them when there are more, else all."""
    if n <= max_units:
        return np.arange(n)
    return np.sort(np.random.default_rng(random_state).choice(n, max_units, replace=False))


def select(train: pd.DataFrame, valid: pd.DataFrame, cols: list[str], *, max_units: int = MAX_UNITS,
           n_boot: int = N_BOOT, random_state: int = 0, progress=lambda _: None) -> Selection:
    """Fit the models on `train`, score every candidate on `valid` (both need `churned`),
    choose by ROC-AUC (`behavior.model_choice`) and calibrate the chosen score."""
    train, valid = in_order(train), in_order(valid)
    if len(valid) > max_units:
        valid = valid.iloc[validation_rows(len(valid), max_units, random_state)].reset_index(drop=True)
    y_tr = train["churned"].to_numpy(int)
    y = valid["churned"].to_numpy(int)
    scores = dict(baseline_scores(valid))
    models = {}
    for name in MODELS:
        progress(f"churn: fitting the {name} model on {len(train):,} rows")
        models[name] = _fit_model(name, train[cols], y_tr, random_state)
        scores[name] = models[name].predict_proba(valid[cols])[:, 1]
    weights = resample_weights(resamples(len(y), n_boot, seed=random_state), len(y))
    scored = [Scored(name, *auc_replicates(s, y, weights), baseline=name not in MODELS, simplicity=i)
              for i, (name, s) in enumerate(scores.items())]
    choice = choose("roc_auc", scored)
    # the served score gets the best of the three calibrators; the others (reported for their
    # Brier score) the tie-broken isotonic one, which needs no iterative fit
    calibrations = {name: choose_calibrator(s, y, probability=name in MODELS or name in PROBABILITY_BASELINES,
                                            seed=random_state,
                                            names=CALIBRATORS if name == choice.chosen else ("isotonic",))
                    for name, s in scores.items()}
    served = ServedChurn(choice.chosen, tuple(cols), models.get(choice.chosen), calibrations[choice.chosen])
    return Selection(served, choice, _report(choice, scores, calibrations, y))


def _round(d: dict) -> dict:
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in d.items()}


def _report(choice: Choice, scores: dict, calibrations: dict, y: np.ndarray) -> dict:
    chosen = choice.get(choice.chosen)
    a = (1.0 - choice.level) / 2
    metrics = {}
    for name, s in scores.items():
        m = churn_metrics(y, s, calibrations[name].held_out)
        metrics[name] = {**_round(m), "calibrator": calibrations[name].name}
    beat = {}
    for c in choice.candidates:
        if c.name != chosen.name and chosen.value > c.value:
            diff = chosen.replicates - c.replicates
            beat[c.name] = {"roc_auc_gain": round(chosen.value - c.value, 4),
                            "interval": [round(float(np.quantile(diff, a)), 4), round(float(np.quantile(diff, 1 - a)), 4)]}
    served_prob = calibrations[choice.chosen].held_out
    served_gain = gain_curve(y, scores[choice.chosen])
    gain = {"share": served_gain["share"], "model": served_gain["captured"]}
    gain.update({n: gain_curve(y, s)["captured"] for n, s in scores.items() if n not in MODELS})
    test = metrics[choice.chosen]
    baselines = {n: m for n, m in metrics.items() if n not in MODELS}
    beats = {"roc_auc": all(test["roc_auc"] > b["roc_auc"] for n, b in baselines.items() if n != choice.chosen),
             "brier": all(test["brier"] < b["brier"] for n, b in baselines.items() if n != choice.chosen)}
    return {"served": choice.chosen, "served_is_model": choice.model_chosen, "selection": choice.report(),
            "beat": beat, "test": test, "baselines": baselines,
            "models": {n: m for n, m in metrics.items() if n in MODELS}, "beats_baselines": beats,
            "calibrator": calibrations[choice.chosen].report(),
            "calibration": [_round(r) for r in calibration_table(y, served_prob)], "gain_curve": gain,
            "validation_customers": int(len(y))}


__all__ = ["LOGISTIC_FEATURES", "MAX_UNITS", "MODELS", "LogisticChurn", "Selection", "ServedChurn", "auc_replicates", "in_order",
           "resample_weights", "select", "validation_rows"]
