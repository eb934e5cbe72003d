"""Uplift models of past randomized promotions, chosen one promotion arm at a time.

Rows are (promotion, assigned user) pairs: the user's point-in-time features at the promotion
start (`model_matrix`), the user's coarse cell at the start (`cell_of`: segment x affinity band
to the target), and in `meta` the columns promotion_id, target (the category the target is
scored by, or "any"), starts_at, assigned_at, converted, treated, redeemed.

`train_arms`: each arm (a promotion's treatment against its control) with at least
`min_train_per_group` training users per group ([promotions] in the configuration) is split (`behavior.uplift_selection.split_arm`),
sampled to the users its validation Qini interval needs (`arm_parts`, `behavior.uplift_sampling`), and
its candidates are chosen between by validation Qini (`select_arm`) and the chosen one refitted on
the users kept. Arms are not pooled: two
arms of one campaign (say two e-mails against one control) move different users, and a model of
both would rank by neither. Per target, the bundle serves the latest-starting arm of that target
whose choice succeeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from behavior.errors import InputError
from behavior.uplift_sampling import QINI_HALF_WIDTH, UNUSED, sample_parts
from behavior.uplift_selection import ArmData, ArmModel, ArmResult, select_arm, split_arm

NON_FEATURES = {"user_id", "first_purchase_at", "last_purchase_at", "top_category", "top_channel"}
MIN_TRAIN_PER_GROUP = 100   # below it the candidates are noise; above it the choice keeps the floor unless beaten
AFFINITY_HIGH = 0.25
T = TypeVar("T")
R = TypeVar("R")


def model_matrix(features: pd.DataFrame, target_affinity: np.ndarray, target_is_any: bool) -> pd.DataFrame:
    """Numeric feature columns plus the user's affinity to the promotion target (share of their
    successful lines in the target before the start; 1 for 'any') and whether the target is 'any'."""
    cols = [c for c in features.columns if c not in NON_FEATURES]
    X = features[cols].apply(pd.to_numeric, errors="coerce").astype(float)
    X["target_affinity"] = np.asarray(target_affinity, float)
    X["target_is_any"] = float(target_is_any)
    return X.reset_index(drop=True)


BANDS = np.array(["any", "none", "low", "high"], dtype=object)


def cell_of(segments, target_affinity, target_is_any: bool) -> np.ndarray:
    """The coarse cell of each user: '<segment> | <affinity band>' where the band is 'any' (the
    target is everything), 'none' (no line in the target), 'low' (< 25% of lines) or 'high'.
    (Each distinct cell's text is made once: a few dozen cells, millions of customers.)"""
    a = np.asarray(target_affinity, float)
    band = np.zeros(len(a), np.int64) if target_is_any else np.where(a <= 0, 1, np.where(a < AFFINITY_HIGH, 2, 3))
    seg = pd.Series(segments, dtype="object").fillna("no history").to_numpy()
    codes, names = pd.factorize(seg)
    pairs, at = np.unique(codes * len(BANDS) + band, return_inverse=True)
    text = np.array([f"{names[p // len(BANDS)]} | {BANDS[p % len(BANDS)]}" for p in pairs], dtype=object)
    return text[at.reshape(-1)] if len(a) else np.empty(0, dtype=object)


@dataclass(frozen=True)
class Served:
    """The arm a target's uplift scores come from, its model and the feature columns it reads."""

    promotion_id: str
    model: ArmModel
    columns: tuple[str, ...]


def _one_openmp_thread(fn: Callable[..., R], *args) -> R:
    """fn(*args) with one OpenMP thread in this thread (OpenMP's limit is per thread): OpenMP's
    spinning threads made the fits 4x slower whenever another process used the second core."""
    with threadpool_limits(1, user_api="openmp"):
        return fn(*args)


def on_threads(fn: Callable[[T], R], items: Iterable[T], workers: int) -> list[R]:
    """[fn(item) for item in items], `workers` at a time on threads with one OpenMP thread each
    (the boosters release the GIL while they grow trees and predict)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(lambda item: _one_openmp_thread(fn, item), items))


@dataclass(frozen=True)
class _Arm:
    """One promotion's rows, split, before its choice."""

    promotion_id: str
    meta: pd.DataFrame
    data: ArmData
    parts: np.ndarray
    split: dict
    smallest_group: int     # training users of the smaller group


def arm_parts(meta: pd.DataFrame, seed: int = 0, half_width: float = QINI_HALF_WIDTH) -> tuple[np.ndarray, dict]:
    """('train' / 'valid' / 'test' / UNUSED per row of one arm's `meta`, the split's report entry
    with its `sample`): `split_arm`, then `sample_parts` (seeded by `seed` + 3). The features of
    the UNUSED rows are never read, so a caller may leave them missing."""
    t, y = meta["treated"].to_numpy().astype(int), meta["converted"].to_numpy().astype(int)
    parts, split = split_arm(meta["assigned_at"], t, y, seed)
    parts, sample = sample_parts(parts, t, y, half_width, seed + 3)
    return parts, {**split, "sample": sample}


def _arm(X: pd.DataFrame, meta: pd.DataFrame, seed: int, half_width: float) -> _Arm:
    parts, split = arm_parts(meta.reset_index(drop=True), seed, half_width)
    used = parts != UNUSED
    parts = parts[used]
    # a feature no row of the arm has (the spend features of a lake without amounts) tells the
    # model nothing, and the boosters' binning fails on a column of only NaN
    X = X.reset_index(drop=True)[used].reset_index(drop=True)
    X = X.loc[:, X.notna().any()]
    meta = meta.reset_index(drop=True)[used].reset_index(drop=True)
    y, t = meta["converted"].to_numpy().astype(int), meta["treated"].to_numpy().astype(int)
    smallest = min(int(((parts == "train") & (t == 1)).sum()), int(((parts == "train") & (t == 0)).sum()))
    data = ArmData(X, meta["cell"].to_numpy(), y, t, meta["redeemed"].to_numpy().astype(int))
    return _Arm(str(meta["promotion_id"].iloc[0]), meta, data, parts, split, smallest)


def _select(data: ArmData, parts: np.ndarray, seed: int) -> ArmResult | InputError:
    """`select_arm`, or the InputError it raised."""
    try:
        return select_arm(data, parts, seed)
    except InputError as exc:
        return exc


def train_arms(X: pd.DataFrame, meta: pd.DataFrame, seed: int = 0,
               min_train_per_group: int = MIN_TRAIN_PER_GROUP, workers: int = 1,
               half_width: float = QINI_HALF_WIDTH) -> tuple[dict, dict[str, Served]]:
    """(report section, {target: Served}); see the module doc. The section holds `arms`
    (per promotion: target, split, rows, chosen, test figures, deciles, Qini curves),
    `selection` (per promotion: `Choice.report()`), `selected`, `served`, `trained_on`, the
    test-row-weighted mean `qini` and `uplift_at_30pct` of the chosen candidates, and `notes`.
    `workers`: arms chosen at once, on threads; the result does not depend on it. `half_width`:
    of the validation Qini interval the arm's sample is sized for (`behavior.uplift_sampling`)."""
    X = X.reset_index(drop=True)
    meta = meta.reset_index(drop=True)
    arms = sorted(meta.groupby("promotion_id").indices.items())
    return train_arms_of(((X.iloc[idx], meta.iloc[idx]) for _, idx in arms), seed, min_train_per_group, workers,
                         half_width)


def train_arms_of(arms: Iterable[tuple[pd.DataFrame, pd.DataFrame]], seed: int = 0,
                  min_train_per_group: int = MIN_TRAIN_PER_GROUP, workers: int = 1,
                  half_width: float = QINI_HALF_WIDTH) -> tuple[dict, dict[str, Served]]:
    """`train_arms` of arms that come one at a time, (X, meta) of one promotion each: an arm's
    choice starts on a worker thread as it comes, while the caller computes the next one."""
    section: dict = {"arms": {}, "selection": {}, "selected": {}, "notes": []}
    prepared: list[_Arm] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = {}
        for X, meta in arms:
            arm = _arm(X, meta, seed, half_width)
            prepared.append(arm)
            if arm.smallest_group >= min_train_per_group:
                pending[arm.promotion_id] = pool.submit(_one_openmp_thread, _select, arm.data, arm.parts, seed)
        results = {pid: future.result() for pid, future in pending.items()}
    latest: dict[str, tuple[pd.Timestamp, Served]] = {}
    for arm in sorted(prepared, key=lambda a: a.promotion_id):
        pid, m = arm.promotion_id, arm.meta
        if pid not in results:
            section["notes"].append(f"promotion {pid}: only {arm.smallest_group} training users in a group (at "
                                    f"least {min_train_per_group} needed): no uplift model for it")
            continue
        result = results[pid]
        if isinstance(result, InputError):
            section["notes"].append(f"promotion {pid}: no uplift model: {result}")
            continue
        target = str(m["target"].iloc[0])
        section["arms"][pid] = {"target": target, "split": arm.split, **result.report}
        section["selection"][pid] = result.choice.report()
        section["selected"][pid] = result.choice.chosen
        start = pd.Timestamp(m["starts_at"].iloc[0])
        if target not in latest or start >= latest[target][0]:
            latest[target] = (start, Served(pid, result.served, tuple(arm.data.X.columns)))
    served = {target: s for target, (_, s) in latest.items()}
    section["served"] = {target: s.promotion_id for target, s in sorted(served.items())}
    section["trained_on"] = sorted(served)
    chosen = section["arms"].values()
    if chosen:
        w = np.array([a["rows"]["test"] for a in chosen], float)
        for key in ("qini", "uplift_at_30pct"):
            v = np.array([a["test"][a["chosen"]][key] for a in chosen], float)
            section[key] = round(float(np.average(v, weights=w)), 6)
    return section, served


__all__ = ["MIN_TRAIN_PER_GROUP", "NON_FEATURES", "Served", "arm_parts", "cell_of", "model_matrix", "on_threads", "train_arms",
           "train_arms_of"]
