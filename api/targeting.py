"""What POST /v1/promotions/targets needs from a bundle, and the list it builds.

Loaded from the promotions stage's files when the bundle has them (each optional):
`uplift_scores.parquet` (per target with a trained uplift model: user_id, uplift,
p_redeem), `category_affinity.parquet` (for the fallback rule), `item_categories.parquet`
(an "item:<id>" target is scored by its item's category) and `contacts.parquet` (last
contact per user). The population is always the *served* profiles: an erased user is gone
from them, an opted-out user is never eligible.

The ranking, budget and holdout are `behavior.targeting`'s; this module only gathers the
columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from api.parquet_read import read_one_chunk
from behavior import targeting as T
from behavior.store.bundle import CATEGORY_AFFINITY, CONTACTS, ITEM_CATEGORIES, UPLIFT_SCORES, Artifact

FILES = tuple(a.file for a in (UPLIFT_SCORES, CATEGORY_AFFINITY, ITEM_CATEGORIES, CONTACTS))


class UnknownTarget(ValueError):
    """A target that is neither 'any', a category of the bundle, nor an item it knows."""


class RuleUnavailable(ValueError):
    """The target has no uplift model and the fallback rule's inputs are missing for every
    customer (`missing`: churn_probability and/or clv, e.g. their model was skipped)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(f"no uplift model for this target, and the fallback rule's {' and '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} missing for every customer")
        self.missing = missing


@dataclass(frozen=True)
class TargetingData:
    uplift: dict[str, pd.DataFrame]        # target -> frame indexed by user_id (uplift, p_redeem)
    affinity: dict[str, pd.Series]         # category -> share by user_id
    item_category: dict[str, str]
    last_contacted: pd.Series              # user_id -> tz-aware timestamp

    @property
    def categories(self) -> list[str]:
        return sorted(set(self.affinity) | (set(self.uplift) - {"any"}))

    def category_of(self, target: str) -> str:
        """The category (or 'any') a target is scored by; UnknownTarget if the bundle does not know it."""
        if target == "any":
            return "any"
        if target.startswith("item:"):
            found = self.item_category.get(target[5:])
            if found is None:
                raise UnknownTarget(f"item {target[5:]!r} is not in the bundle's catalogue")
            return found
        if target not in self.affinity and target not in self.uplift:
            shown = ", ".join(self.categories[:30]) or "none"
            raise UnknownTarget(f"unknown target {target!r}: use 'any', 'item:<item_id>' or a category ({shown})")
        return target


def _read(folder: Path, artifact: Artifact, present: set[str]) -> pd.DataFrame | None:
    if artifact.file not in present:
        return None
    return read_one_chunk(folder / artifact.file).to_pandas()


def load_targeting(folder: Path, listed: set[str]) -> TargetingData:
    """The targeting inputs of a verified bundle folder (`listed`: the manifest's files)."""
    up = _read(folder, UPLIFT_SCORES, listed)
    uplift = {} if up is None else {t: g.set_index("user_id")[["uplift", "p_redeem"]] for t, g in up.groupby("target")}
    aff = _read(folder, CATEGORY_AFFINITY, listed)
    affinity = {} if aff is None else {c: g.set_index("user_id")["share"] for c, g in aff.groupby("category")}
    items = _read(folder, ITEM_CATEGORIES, listed)
    item_category = {} if items is None else dict(zip(items["item_id"], items["category"]))
    contacts = _read(folder, CONTACTS, listed)
    last = (pd.Series(dtype="datetime64[us, UTC]") if contacts is None or contacts.empty
            else contacts.set_index("user_id")["last_contacted_at"])
    return TargetingData(uplift, affinity, item_category, last)


def _column(profiles: pa.Table, name: str) -> np.ndarray:
    if name not in profiles.column_names:
        return np.full(profiles.num_rows, np.nan)
    return profiles.column(name).to_numpy(zero_copy_only=False).astype(float)


def build_list(data: TargetingData, profiles: pa.Table, as_of: datetime, *, target: str, economics: T.Economics,
               budget_users: int | None, budget_money: float | None, holdout_share: float,
               exclude_contacted_days: int, seed: int) -> tuple[T.TargetList, dict]:
    """(the list, counts of who was excluded and why). Raises UnknownTarget, InputError, and
    RuleUnavailable when the fallback rule is needed but cannot score anyone."""
    category = data.category_of(target)
    ids = pd.Index(profiles.column("user_id").to_pylist())
    opted = profiles.column("marketing_opt_out").to_numpy(zero_copy_only=False)
    opted = np.asarray([True if v is None else bool(v) for v in opted]) if opted.dtype == object else opted.astype(bool)
    last = data.last_contacted.reindex(ids)
    days = ((pd.Timestamp(as_of) - last).dt.total_seconds() / 86400.0).to_numpy(float)
    eligible = T.eligible_mask(opted, days, exclude_contacted_days)
    recent = ~opted & ~eligible
    exclusions = {"customers": int(len(ids)), "opted_out": int(opted.sum()), "recently_contacted": int(recent.sum())}
    keep = ids[eligible]
    if category in data.uplift:
        scores = data.uplift[category].reindex(keep)
        present = scores["uplift"].notna().to_numpy()
        frame = pd.DataFrame({"user_id": keep[present], "uplift": scores["uplift"].to_numpy()[present],
                              "p_redeem": scores["p_redeem"].to_numpy()[present]})
        method = T.MODEL
    else:
        inputs = {name: _column(profiles, name) for name in ("churn_probability", "clv")}
        missing = [name for name, col in inputs.items() if len(col) and np.isnan(col).all()]
        if missing:   # every score would be 0: an empty list that hides why
            raise RuleUnavailable(missing)
        aff = (np.ones(len(keep)) if category == "any"
               else data.affinity.get(category, pd.Series(dtype=float)).reindex(keep).to_numpy(float))
        rule = T.rule_score(aff, inputs["churn_probability"][eligible], inputs["clv"][eligible])
        frame = pd.DataFrame({"user_id": keep, "score": rule})
        method = T.RULE
    result = T.select_targets(frame, economics, budget_users=budget_users, budget_money=budget_money,
                              holdout_share=holdout_share, seed=seed, method=method)
    return result, exclusions
