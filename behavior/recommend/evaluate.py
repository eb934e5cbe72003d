"""Top-k metrics with textbook definitions, vectorised over users.

For a user u with relevant (held-out purchased) items R_u and recommended list
L_u = (l_1, ..., l_k) (best first; -1 = padding, never a hit), hit_i = 1 if l_i is in R_u:

- precision@k = (sum_i hit_i) / k. Always over k, even when |R_u| < k or the list is padded
  (implicit's `precision_at_k` divides by min(k, |R_u|) instead: that is not this).
- recall@k = (sum_i hit_i) / |R_u|.
- nDCG@k = DCG / IDCG with binary gains and a log2(rank + 1) discount:
  DCG = sum_i hit_i / log2(i + 1), IDCG = sum_{i=1..min(k, |R_u|)} 1 / log2(i + 1).
- MAP@k = mean over users of AP@k = (sum_i hit_i * precision@i) / min(k, |R_u|), where
  precision@i = (hits among l_1..l_i) / i.
- coverage = (distinct items recommended to the counted users) / n_items (catalogue coverage).

Only users with at least one relevant item count; the per-user metrics are averaged over
them with equal weight. A recommended item listed twice counts once (its first rank).
"""

from __future__ import annotations

import numpy as np

from behavior.recommend.checks import InteractionsError, check_matrix

METRICS = ("precision", "recall", "ndcg", "map")


def hits_matrix(recommended_items: np.ndarray, relevant, k: int) -> np.ndarray:
    """bool [users x k]: is the i-th recommended item relevant (first occurrence only)."""
    rec = np.asarray(recommended_items)
    if rec.ndim != 2 or rec.shape[0] != relevant.shape[0]:
        raise InteractionsError(
            f"recommended_items must be [users x k] with one row per row of relevant ({relevant.shape[0]}), "
            f"got shape {rec.shape}"
        )
    if rec.size and not np.issubdtype(rec.dtype, np.integer):
        raise InteractionsError(f"recommended_items must hold integer item indices, got {rec.dtype}")
    n_users, n_items = relevant.shape
    rec = rec[:, :k].astype(np.int64)
    if rec.shape[1] < k:
        rec = np.hstack([rec, np.full((n_users, k - rec.shape[1]), -1, dtype=np.int64)])
    if rec.size and rec.max() >= n_items:
        raise InteractionsError(f"recommended_items holds item {rec.max()}, outside the {n_items} items")
    valid = rec >= 0
    # relevant pairs as sorted keys user * n_items + item; a recommended pair is a hit if found
    rel_keys = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(relevant.indptr)) * n_items + relevant.indices
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + np.maximum(rec, 0)
    pos = np.searchsorted(rel_keys, rec_keys)
    found = rel_keys[np.minimum(pos, max(rel_keys.size - 1, 0))] == rec_keys if rel_keys.size else np.zeros_like(valid)
    hits = found & valid
    if k > 1:
        # a repeated item is a hit only at its first rank
        order = np.argsort(rec, axis=1, kind="stable")
        sorted_rec = np.take_along_axis(rec, order, axis=1)
        dup_sorted = np.zeros_like(valid)
        dup_sorted[:, 1:] = sorted_rec[:, 1:] == sorted_rec[:, :-1]
        dup = np.zeros_like(valid)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        hits &= ~dup
    return hits


def evaluate(recommended_items, relevant, k: int, n_items: int, per_user: bool = False) -> dict:
    """{"precision@k", "recall@k", "ndcg@k", "map@k", "coverage", "users"} (see module docstring).

    With per_user=True also "per_user": {metric: float64 array over the counted users} and
    "user_rows": the row numbers of the counted users.
    """
    if k < 1:
        raise InteractionsError(f"k must be >= 1, got {k}")
    if n_items < 1:
        raise InteractionsError(f"n_items must be >= 1, got {n_items}")
    rel = check_matrix(relevant, "relevant")
    rel.eliminate_zeros()
    if rel.shape[1] > n_items:
        raise InteractionsError(f"relevant has {rel.shape[1]} item columns but n_items is {n_items}")
    hits = hits_matrix(recommended_items, rel, k)
    n_rel = np.diff(rel.indptr)
    counted = np.flatnonzero(n_rel > 0)
    if counted.size == 0:
        raise InteractionsError("no user has a relevant item: nothing to evaluate")
    hits, n_rel = hits[counted].astype(np.float64), n_rel[counted].astype(np.float64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    n_hits = hits.sum(axis=1)
    ideal = np.cumsum(discount)[np.minimum(n_rel, k).astype(np.int64) - 1]
    per = {
        "precision": n_hits / k,
        "recall": n_hits / n_rel,
        "ndcg": (hits * discount).sum(axis=1) / ideal,
        "map": (hits * np.cumsum(hits, axis=1) / ranks).sum(axis=1) / np.minimum(n_rel, k),
    }
    rec = np.asarray(recommended_items)[counted, :k]
    shown = np.unique(rec[rec >= 0])
    out = {f"{name}@{k}": float(values.mean()) for name, values in per.items()}
    out["coverage"] = float(shown.size / n_items)
    out["users"] = int(counted.size)
    if per_user:
        out["per_user"] = per
        out["user_rows"] = counted
    return out
