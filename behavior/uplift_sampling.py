"""How many users an arm's choice needs: a sample sized by the precision of its validation Qini.

An arm's candidates are chosen by their normalised Qini on the validation users
(`behavior.uplift_selection`), whose bootstrap interval narrows as 1 / sqrt(validation users)
whatever the size of the data. So an arm is trained and chosen on as many users as give that
interval a set half-width, and every customer is still scored by the served model.

The formula (`qini_sd`): on n users in random order, with a treated share s and conversion rates
p1 (treated) and p0 (control), the Qini curve's step at a user is, to first order,
t (y - p0) - r (1 - t) (y - p0) with r = s / (1 - s) (the control's conversions scaled to the
treated count, the running ratio's own noise included), whose variance per user is

    v = s (p1 (1 - p1) + (p1 - p0)^2) + (1 - s) r^2 p0 (1 - p0) - s^2 (p1 - p0)^2.

The curve minus its random line is then sqrt(n v) times a Brownian bridge, whose area has
variance 1/12: the area over random per user has standard deviation sqrt(v / 12 / n). The
normalised Qini divides it by the perfect ranking's area per user,

    P = a^2 / 2 + a (1 - a - c) + c (2 a - s p0) / 2 - (a - s p0) / 2,   a = s p1, c = (1 - s) p0

(treated converters first, then the rest, control converters last, minus the random line), so
its standard deviation is qini_sd(p1, p0, s) / sqrt(n) with qini_sd = sqrt(v / 12) / P. It
predicts the bootstrap half-widths the selection reports within a few percent (at 1M and 10M
lines, 0.016 to 0.11) and is the no-signal case; a ranking with signal has a similar spread.

`validation_size`: the validation users that give a (`level`) interval of half-width
`half_width`: ceil((z sd / half_width)^2). `sample_parts`: an arm split into train / valid /
test whose validation part is larger keeps a seeded uniform sample of that many validation
users and of its training users in the same proportion (the split's 60:20); the others are
'unused'. The test part is kept whole: it is only scored, and the held-out figures stay as
precise as the arm allows.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

QINI_HALF_WIDTH = 0.03   # of a candidate's 95% validation Qini interval (the 1M demo's arms: 0.05 to 0.11)
LEVEL = 0.95
UNUSED = "unused"


def qini_sd(p1: float, p0: float, treated_share: float) -> float:
    """sqrt(n) x the standard deviation of the normalised Qini of a ranking without signal on n
    users (see the module doc); infinite when the perfect ranking has no area (no conversion)."""
    s = float(treated_share)
    if not 0 < s < 1:
        raise ValueError(f"the treated share must be in (0, 1), got {s}")
    r = s / (1 - s)
    v = s * (p1 * (1 - p1) + (p1 - p0) ** 2) + (1 - s) * r * r * p0 * (1 - p0) - (s * (p1 - p0)) ** 2
    a, c = s * p1, (1 - s) * p0
    perfect = a * a / 2 + a * (1 - a - c) + c * (2 * a - s * p0) / 2 - (a - s * p0) / 2
    return math.sqrt(max(v, 0.0) / 12) / perfect if perfect > 0 else math.inf


def validation_size(p1: float, p0: float, treated_share: float, half_width: float = QINI_HALF_WIDTH,
                    level: float = LEVEL) -> float:
    """The validation users whose Qini interval at `level` has half-width `half_width`:
    ceil((z x qini_sd / half_width)^2), z the normal quantile (1.96 at 95%); infinite when the
    Qini is undefined (no conversion)."""
    if not half_width > 0:
        raise ValueError(f"the half-width must be positive, got {half_width}")
    sd = qini_sd(p1, p0, treated_share)
    if not math.isfinite(sd):
        return math.inf
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return float(math.ceil((z * sd / half_width) ** 2))


def sample_parts(parts: np.ndarray, treated, converted, half_width: float = QINI_HALF_WIDTH,
                 seed: int = 0) -> tuple[np.ndarray, dict]:
    """(`parts` with the training and validation users beyond what the interval needs marked
    UNUSED, the sample's report entry); see the module doc. p1, p0 and the treated share are
    the arm's own."""
    t = np.asarray(treated).astype(bool)
    y = np.asarray(converted).astype(float)
    if t.all() or not t.any():
        raise ValueError("an arm needs treated and control users")
    need = validation_size(float(y[t].mean()), float(y[~t].mean()), float(t.mean()), half_width)
    parts = np.asarray(parts, dtype=object)
    valid, train = np.flatnonzero(parts == "valid"), np.flatnonzero(parts == "train")
    entry = {"qini_half_width": half_width, "validation_users_needed": None if math.isinf(need) else int(need)}
    if len(valid) <= need:
        return parts, {**entry, "sampled": False}
    keep_valid = int(need)
    keep_train = min(len(train), math.ceil(keep_valid * len(train) / len(valid)))
    rng = np.random.default_rng(seed)
    out = parts.copy()
    out[np.setdiff1d(valid, rng.choice(valid, keep_valid, replace=False))] = UNUSED
    out[np.setdiff1d(train, rng.choice(train, keep_train, replace=False))] = UNUSED
    return out, {**entry, "sampled": True, "train": keep_train, "valid": keep_valid,
                 "of": {"train": int(len(train)), "valid": int(len(valid))}}


__all__ = ["LEVEL", "QINI_HALF_WIDTH", "UNUSED", "qini_sd", "sample_parts", "validation_size"]
