"""Score -> probability maps that keep the ranking of the score.

A served churn probability must rank customers as its score does: a calibrator that maps a
range of scores to one value (plain isotonic regression does, in flat steps) throws away the
ranking that was chosen for its ROC-AUC. Three monotone calibrators (scikit-learn only):

- `isotonic`: isotonic regression, ties broken by the raw score: the map interpolates
  linearly between the centres of the isotonic steps (kept within [1e-4, 1 - 1e-4]) and
  approaches 0 and 1 exponentially beyond the end ones, so different scores get different
  probabilities.
- `platt`: logistic regression on the standardised score (Platt scaling).
- `beta`: beta calibration (Kull, Silva Filho and Flach 2017): logistic regression on
  log(u) and -log(1 - u), u the score as a probability (the score itself when it is one,
  otherwise its empirical CDF on the fitting rows); a negative coefficient is dropped so
  the map stays increasing.

`choose_calibrator(score, y)` fits each on one half of the rows and measures log loss and
Brier on the other half (and the other way round, halves by a fixed seed), keeps the one
with the lowest log loss, and refits it on every row.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import brier_score_loss, log_loss

CALIBRATORS = ("isotonic", "platt", "beta")
_EPS = 1e-6
_KNOT = 1e-4     # an isotonic step at exactly 0 or 1 is moved this far inside: no sample proves certainty


def _clip(p: np.ndarray) -> np.ndarray:
    return np.clip(p, _EPS, 1.0 - _EPS)


class IsotonicCalibrator:
    """Isotonic regression whose flat steps are replaced by lines between step centres."""

    def fit(self, score: np.ndarray, y: np.ndarray) -> IsotonicCalibrator:
        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(score, y)
        fitted = iso.predict(score)
        # one knot per step: the mean score of the step's rows and the step's value
        values, inverse = np.unique(fitted, return_inverse=True)
        centres = np.bincount(inverse, weights=score) / np.bincount(inverse)
        order = np.argsort(centres, kind="stable")
        self.knots_x_, self.knots_y_ = centres[order], values[order]
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        x, yk = self.knots_x_, np.clip(self.knots_y_, _KNOT, 1.0 - _KNOT)
        s = np.asarray(score, float)
        if len(x) == 1:
            return np.full(s.shape, yk[0])
        p = np.interp(s, x, yk)
        # beyond the end knots: approach 0 (below) and 1 (above) exponentially, one mean step
        # width at a time, so the map stays strictly increasing there too
        w = (x[-1] - x[0]) / (len(x) - 1)
        below, above = s < x[0], s > x[-1]
        p[below] = yk[0] * np.exp((s[below] - x[0]) / w)
        p[above] = 1.0 - (1.0 - yk[-1]) * np.exp(-(s[above] - x[-1]) / w)
        return p


class PlattCalibrator:
    def fit(self, score: np.ndarray, y: np.ndarray) -> PlattCalibrator:
        self.mean_, self.scale_ = float(np.mean(score)), float(np.std(score)) or 1.0
        self.lr_ = LogisticRegression(C=1e6).fit(((score - self.mean_) / self.scale_)[:, None], y)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        z = (np.asarray(score, float) - self.mean_) / self.scale_
        return _clip(self.lr_.predict_proba(z[:, None])[:, 1])


class BetaCalibrator:
    def __init__(self, probability: bool):
        self.probability = probability

    def _u(self, score: np.ndarray) -> np.ndarray:
        s = np.asarray(score, float)
        if self.probability:
            return _clip(s)
        # the empirical CDF of the fitting scores, interpolated (increasing, in (0, 1))
        return _clip(np.interp(s, self.grid_, self.cdf_))

    def _design(self, score: np.ndarray) -> np.ndarray:
        u = self._u(score)
        return np.column_stack([np.log(u), -np.log1p(-u)])[:, self.keep_]

    def fit(self, score: np.ndarray, y: np.ndarray) -> BetaCalibrator:
        s = np.sort(np.asarray(score, float))
        self.grid_, idx = np.unique(s, return_index=True)
        counts = np.diff(np.append(idx, len(s)))
        self.cdf_ = (np.cumsum(counts) - counts / 2) / len(s)
        self.keep_ = np.array([True, True])
        self.lr_ = LogisticRegression(C=1e6).fit(self._design(score), y)
        negative = self.lr_.coef_[0] < 0
        if negative.any():
            self.keep_ = ~negative if not negative.all() else np.array([True, False])
            self.lr_ = LogisticRegression(C=1e6).fit(self._design(score), y)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        return _clip(self.lr_.predict_proba(self._design(score))[:, 1])


def make_calibrator(name: str, probability: bool):
    """A fresh calibrator of `name` (one of CALIBRATORS); `probability`: the score is one."""
    if name == "isotonic":
        return IsotonicCalibrator()
    if name == "platt":
        return PlattCalibrator()
    if name == "beta":
        return BetaCalibrator(probability)
    raise ValueError(f"unknown calibrator {name!r}; use one of {', '.join(CALIBRATORS)}")


@dataclass(frozen=True)
class Calibration:
    """The chosen calibrator (refitted on every row) and every calibrator's held-out scores."""

    name: str
    calibrator: object
    measured: dict        # name -> {"log_loss", "brier", "distinct"} on the held-out halves
    held_out: np.ndarray  # the chosen calibrator's probability of each row, fitted on the other half

    def predict(self, score: np.ndarray) -> np.ndarray:
        return self.calibrator.predict(score)

    def report(self) -> dict:
        return {"chosen": self.name, "by": "held-out log loss (two halves of the validation customers)",
                "candidates": self.measured}


def choose_calibrator(score: np.ndarray, y: np.ndarray, probability: bool = False, seed: int = 0,
                      names: tuple[str, ...] = CALIBRATORS) -> Calibration:
    """Each calibrator of `names` fitted on one half of the rows and scored on the other (both ways);
    the lowest held-out log loss wins and is refitted on all rows. `distinct` counts the
    distinct probabilities it gives the held-out rows."""
    score = np.asarray(score, float)
    y = np.asarray(y, int)
    half = np.random.default_rng(seed).random(len(y)) < 0.5
    measured, outs = {}, {}
    for name in names:
        out = np.empty(len(y))
        for fit_on in (half, ~half):
            if len(np.unique(y[fit_on])) < 2:
                out[~fit_on] = y[fit_on].mean() if fit_on.any() else 0.5
                continue
            out[~fit_on] = make_calibrator(name, probability).fit(score[fit_on], y[fit_on]).predict(score[~fit_on])
        measured[name] = {"log_loss": round(float(log_loss(y, _clip(out), labels=[0, 1])), 6),
                          "brier": round(float(brier_score_loss(y, out)), 6),
                          "distinct": int(len(np.unique(out)))}
        outs[name] = out
    best = min(names, key=lambda n: (measured[n]["log_loss"], names.index(n)))
    return Calibration(best, make_calibrator(best, probability).fit(score, y), measured, outs[best])


__all__ = ["CALIBRATORS", "BetaCalibrator", "Calibration", "IsotonicCalibrator", "PlattCalibrator",
           "choose_calibrator", "make_calibrator"]
