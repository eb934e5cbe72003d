"""The size of an arm's sample: the Qini's spread formula, its known answer and its check by
simulation, and which users a big or a small arm keeps."""

import math

import numpy as np
import pandas as pd
import pytest

from behavior.uplift import qini_coefficient
from behavior.uplift_sampling import UNUSED, qini_sd, sample_parts, validation_size
from behavior.uplift_selection import split_arm
from behavior.uplift_training import arm_parts


def test_the_formula_known_answer():
    # p1 = 0.3, p0 = 0.2, s = 0.5: r = 1, v = 0.5 (0.21 + 0.01) + 0.5 x 0.16 - 0.05^2 = 0.1875,
    # a = 0.15, c = 0.1, P = 0.01125 + 0.15 x 0.75 + 0.1 x 0.2 / 2 - 0.05 / 2 = 0.10875,
    # sd = sqrt(0.1875 / 12) / 0.10875 = 0.125 / 0.10875
    assert qini_sd(0.3, 0.2, 0.5) == pytest.approx(0.125 / 0.10875, rel=1e-12)
    # (1.959964 x 1.149425 / 0.03)^2 = 5639.17 -> 5640 validation users for +-0.03 at 95%
    assert validation_size(0.3, 0.2, 0.5, half_width=0.03) == 5640
    assert validation_size(0.3, 0.2, 0.5, half_width=0.06) == math.ceil(5639.169743 / 4)
    # no conversion at all: the Qini is undefined and nothing is sampled away
    assert validation_size(0.0, 0.0, 0.5) == math.inf
    with pytest.raises(ValueError):
        qini_sd(0.3, 0.2, 1.0)


@pytest.mark.parametrize("p1, p0, s", [(0.3, 0.2, 0.5), (0.12, 0.09, 0.5), (0.5, 0.3, 0.7), (0.2, 0.2, 0.3)])
def test_the_formula_predicts_the_spread_of_the_qini(p1, p0, s):
    """The standard deviation of the normalised Qini of random rankings over many drawn
    samples of n users is qini_sd / sqrt(n) within 10%."""
    rng = np.random.default_rng(7)
    n, q = 2000, []
    for _ in range(300):
        t = rng.random(n) < s
        y = (rng.random(n) < np.where(t, p1, p0)).astype(float)
        q.append(qini_coefficient(y, t, rng.random(n)))
    assert np.std(q) * math.sqrt(n) == pytest.approx(qini_sd(p1, p0, s), rel=0.10)


def _arm(n: int, seed: int = 3):
    rng = np.random.default_rng(seed)
    t = rng.random(n) < 0.5
    y = (rng.random(n) < np.where(t, 0.3, 0.2)).astype(int)
    parts, _ = split_arm(pd.Series(pd.Timestamp("2025-01-01", tz="UTC"), index=range(n)), t, y, seed=0)
    return parts, t, y


def test_a_big_arm_keeps_the_validation_users_the_interval_needs_and_every_test_user():
    parts, t, y = _arm(60_000)
    need = validation_size(y[t].mean(), y[~t].mean(), t.mean(), 0.03)
    kept, entry = sample_parts(parts, t, y, 0.03, seed=1)
    n_train, n_valid = (parts == "train").sum(), (parts == "valid").sum()
    assert need < n_valid and entry["sampled"] and entry["validation_users_needed"] == need
    assert (kept == "valid").sum() == need == entry["valid"]
    assert (kept == "train").sum() == math.ceil(need * n_train / n_valid) == entry["train"]
    assert ((kept == "test") == (parts == "test")).all()                # the test users stay whole
    assert set(kept[kept != parts]) == {UNUSED} and set(parts[kept == UNUSED]) == {"train", "valid"}
    again, _ = sample_parts(parts, t, y, 0.03, seed=1)
    other, _ = sample_parts(parts, t, y, 0.03, seed=2)
    assert (again == kept).all() and (other != kept).any()             # seeded
    wider, _ = sample_parts(parts, t, y, 0.06, seed=1)
    assert (wider == "valid").sum() == validation_size(y[t].mean(), y[~t].mean(), t.mean(), 0.06) < need


def test_a_small_arm_is_not_sampled():
    parts, t, y = _arm(6_000)
    kept, entry = sample_parts(parts, t, y, 0.03, seed=1)
    assert not entry["sampled"] and (kept == parts).all() and UNUSED not in set(kept)


def test_arm_parts_is_the_split_then_the_sample():
    n = 40_000
    parts, t, y = _arm(n)
    meta = pd.DataFrame({"treated": t, "converted": y, "assigned_at": pd.Timestamp("2025-01-01", tz="UTC")})
    got, split = arm_parts(meta, seed=0, half_width=0.05)
    want, sample = sample_parts(parts, t, y, 0.05, seed=3)
    assert (got == want).all() and split["sample"] == sample and split["kind"] == "random" and sample["sampled"]
