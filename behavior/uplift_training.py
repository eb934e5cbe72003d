"""Training, selection and held-out evaluation of the uplift models on past randomized promotions.

Rows are (promotion, assigned user) pairs with the user's point-in-time features at the
promotion start (`model_matrix`), the outcome `converted`, the flag `treated` and whether
the user `redeemed`. Users, not rows, are split (a hash of the user id): 60% train, 20%
validation (selects the model by Qini), 20% test (the held-out figures in the report; never
used for fitting or selection). A user's rows of several promotions stay in one part.

Candidates: `TLearner` and `ClassTransformation` (behavior.uplift). Baseline: a response
model, P(convert) ignoring treatment ("target the likeliest buyers"), scored with the same
metrics. The published model is the selected candidate refitted on all rows; P(redeem |
treated) comes from a classifier of `redeemed` on the treated rows (or, when no redemption
was recorded, from the T-learner's P(convert | treated), an upper bound).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from behavior.uplift import (ClassTransformation, TLearner, default_classifier, qini_coefficient, qini_curve,
                             uplift_at_k, uplift_by_decile)

NON_FEATURES = {"user_id", "first_purchase_at", "last_purchase_at", "top_category", "top_channel"}
CANDIDATES = {"t_learner": TLearner, "class_transformation": ClassTransformation}
TOP_SHARE = 0.3


def model_matrix(features: pd.DataFrame, target_affinity: np.ndarray, target_is_any: bool) -> pd.DataFrame:
    """Numeric feature columns plus the user's affinity to the promotion target (share of their
    successful lines in the target before the start; 1 for 'any') and whether the target is 'any'."""
    cols = [c for c in features.columns if c not in NON_FEATURES]
    X = features[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    X["target_affinity"] = np.asarray(target_affinity, float)
    X["target_is_any"] = float(target_is_any)
    return X.reset_index(drop=True)


def split_users(user_ids: pd.Series, seed: int = 0) -> np.ndarray:
    """'train' / 'valid' / 'test' per row, 60/20/20 by a hash of the user id (stable across runs)."""
    h = pd.util.hash_pandas_object(user_ids.astype(str).reset_index(drop=True), index=False,
                                   hash_key=f"uplift{seed:08d}".ljust(16)[:16]).to_numpy() % 10
    return np.where(h < 6, "train", np.where(h < 8, "valid", "test"))


def qini_points(y, t, score, points: int = 51) -> dict:
    """The Qini curve at `points` evenly spaced shares of users: {"share": [...], "incremental": [...]}
    (incremental conversions of the top share, as `qini_curve`)."""
    k, q = qini_curve(y, t, score)
    idx = np.unique(np.round(np.linspace(0, len(k) - 1, points)).astype(int))
    return {"share": [round(float(v), 4) for v in k[idx] / max(len(k) - 1, 1)],
            "incremental": [round(float(v), 3) for v in q[idx]]}


def _scores(y, t, s) -> dict:
    return {"qini": round(qini_coefficient(y, t, s), 6), "uplift_at_30pct": round(uplift_at_k(y, t, s, TOP_SHARE), 6)}


def propensity_by_group(treated: np.ndarray, groups) -> np.ndarray:
    """Each row's treatment share within its group (its promotion): the design's propensity."""
    frame = pd.DataFrame({"t": np.asarray(treated, float), "g": np.asarray(groups)})
    return frame.groupby("g")["t"].transform("mean").to_numpy()


def train_and_evaluate(X: pd.DataFrame, converted: np.ndarray, treated: np.ndarray, redeemed: np.ndarray,
                       split: np.ndarray, seed: int = 0, groups=None) -> tuple[dict, dict]:
    """(report section, fitted final models {"uplift", "redeem" or None}).

    `groups`: the promotion of each row; promotions may have different treatment shares, so
    the class transformation weighs each row by its own promotion's share.

    The report holds every candidate's validation and test Qini and uplift@30%, the baseline's,
    the selected model, its uplift by decile on the test users and the overall test lift.
    """
    y = np.asarray(converted).astype(int)
    t = np.asarray(treated).astype(int)
    parts = {p: split == p for p in ("train", "valid", "test")}
    tr, va, te = parts["train"], parts["valid"], parts["test"]
    report: dict = {"rows": {p: int(m.sum()) for p, m in parts.items()}, "models": {}}
    p = propensity_by_group(t, groups if groups is not None else np.zeros(len(t)))
    fitted = {}
    for name, cls in CANDIDATES.items():
        model = fitted[name] = cls(seed=seed).fit(X[tr], y[tr], t[tr], propensity=p[tr])
        report["models"][name] = {"validation": _scores(y[va], t[va], model.predict(X[va])),
                                  "test": _scores(y[te], t[te], model.predict(X[te]))}
    response = default_classifier(seed).fit(X[tr], y[tr])
    report["baseline"] = {"purchase_probability": {"test": _scores(y[te], t[te], response.predict_proba(X[te])[:, 1])}}
    selected = max(report["models"], key=lambda n: report["models"][n]["validation"]["qini"])
    report["selected"] = selected
    report["qini"] = report["models"][selected]["test"]["qini"]
    report["uplift_at_30pct"] = report["models"][selected]["test"]["uplift_at_30pct"]
    report["overall_lift_test"] = round(float(y[te][t[te] == 1].mean() - y[te][t[te] == 0].mean()), 6)
    report["by_decile_test"] = uplift_by_decile(y[te], t[te], fitted[selected].predict(X[te]))
    report["qini_curve_test"] = {"model": qini_points(y[te], t[te], fitted[selected].predict(X[te])),
                                 "purchase_probability": qini_points(y[te], t[te], response.predict_proba(X[te])[:, 1])}
    final = CANDIDATES[selected](seed=seed).fit(X, y, t, propensity=p)
    treated_rows = t == 1
    r = np.asarray(redeemed).astype(int)[treated_rows]
    if r.min() != r.max():
        redeem = default_classifier(seed).fit(X[treated_rows], r)
        report["p_redeem"] = "classifier of redemption on the treated users"
    else:
        redeem = None
        report["p_redeem"] = ("no redemption recorded: P(redeem | treated) is taken as P(convert | treated) "
                              "from a T-learner (an upper bound)")
    tl = final if isinstance(final, TLearner) else (TLearner(seed=seed).fit(X, y, t) if redeem is None else None)
    return report, {"uplift": final, "redeem": redeem, "convert_treated": tl}


def predict_p_redeem(models: dict, X: pd.DataFrame) -> np.ndarray:
    if models["redeem"] is not None:
        return models["redeem"].predict_proba(X)[:, 1]
    return models["convert_treated"].predict_treated(X)
