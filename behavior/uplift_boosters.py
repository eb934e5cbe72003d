"""Scikit-learn's histogram gradient boosters evaluated on many rows at once, bit for bit.

scikit-learn predicts with one tree walk per row and tree: at every node a branch the processor
cannot foresee, about 30 ns per customer and tree. `LeafMasks` evaluates the same trees the
QuickScorer way (Lucchese et al., SIGIR 2015), with whole-array numpy operations:

- the leaves of a tree are numbered left to right, and each split node has a mask of them with
  the leaves of its left subtree cleared: the leaves a row can still reach once it goes right;
- the leaf a row reaches is the lowest leaf left after clearing, in each tree, the masks of the
  nodes that send it right (Lucchese et al.'s theorem);
- per feature the thresholds of every node on it are sorted once, so the nodes that send a value
  right are those whose threshold is among the `k` thresholds below it (`searchsorted`), and the
  AND of their masks in every tree is row `k` of a table made at construction: per feature and
  row of data, one look-up of T small integers and one AND.

A NaN goes where each node's `missing_go_to_left` sends it (a last row of each table), as in
scikit-learn. The raw score is the booster's baseline plus the leaves' values added tree after
tree, the order in which scikit-learn adds them, so the predictions are the same doubles; a
booster with categorical splits, several trees per iteration or over 64 leaves in a tree is left
to scikit-learn (`with_leaf_masks` keeps it).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

ROWS = 2048          # rows per pass: the masks of a pass (ROWS x trees) stay in the core's cache
_LOWEST_BIT = np.zeros(1 << 16, dtype=np.uint8)   # the index of the lowest set bit of every 16-bit mask
_LOWEST_BIT[1:] = np.log2(np.arange(1, 1 << 16) & -np.arange(1, 1 << 16)).astype(np.uint8)


def _leaf_order(nodes: np.ndarray) -> tuple[list[int], dict[int, list[int]]]:
    """(the tree's leaf nodes left to right, each split node's leaves of its left subtree as
    positions in that order)."""
    order: list[int] = []
    left_leaves: dict[int, list[int]] = {}
    below: dict[int, list[int]] = {}
    stack = [(0, False)]
    while stack:      # depth first, left before right; a split node is closed after both subtrees
        i, closing = stack.pop()
        node = nodes[i]
        if node["is_leaf"]:
            below[i] = [len(order)]
            order.append(i)
        elif closing:
            left_leaves[i] = below[int(node["left"])]
            below[i] = left_leaves[i] + below[int(node["right"])]
        else:
            stack += [(i, True), (int(node["right"]), False), (int(node["left"]), False)]
    return order, left_leaves


class LeafMasks:
    """The raw predictions of a fitted scikit-learn histogram booster (`supports` says which)."""

    def __init__(self, booster) -> None:
        if not self.supports(booster):
            raise ValueError("LeafMasks evaluates fitted boosters of numeric features with one tree per iteration "
                             "and at most 64 leaves per tree")
        self.booster = booster
        trees = [predictors[0].nodes for predictors in booster._predictors]
        self.n_trees = len(trees)
        leaves = max((int(t["is_leaf"].sum()) for t in trees), default=1)
        self.dtype = np.dtype(np.uint16 if leaves <= 16 else np.uint64)
        ones = np.iinfo(self.dtype).max
        self.values = np.zeros((max(self.n_trees, 1), leaves))
        splits: dict[int, list[tuple[float, int, int, bool]]] = {}   # feature -> (threshold, tree, mask, NaN left)
        for t, nodes in enumerate(trees):
            order, left_leaves = _leaf_order(nodes)
            self.values[t, :len(order)] = nodes["value"][order]
            for i, cleared in left_leaves.items():
                node = nodes[i]
                mask = int(ones) & ~sum(1 << p for p in cleared)
                splits.setdefault(int(node["feature_idx"]), []).append(
                    (float(node["num_threshold"]), t, mask, bool(node["missing_go_to_left"])))
        # per feature: (column, sorted thresholds, table): row k is the masks of the nodes whose
        # threshold is among the first k, ANDed per tree; the last row those of the nodes that send NaN right
        self.features: list[tuple[int, np.ndarray, np.ndarray]] = []
        for f, nodes_on_f in sorted(splits.items()):
            thresholds = np.unique([s[0] for s in nodes_on_f])
            table = np.full((len(thresholds) + 2, self.n_trees), ones, dtype=self.dtype)
            for threshold, t, mask, nan_left in nodes_on_f:
                table[np.searchsorted(thresholds, threshold) + 1, t] &= self.dtype.type(mask)
                if not nan_left:
                    table[-1, t] &= self.dtype.type(mask)
            np.bitwise_and.accumulate(table[:-1], axis=0, out=table[:-1])
            self.features.append((f, thresholds, table))
        self.offsets = np.arange(self.n_trees, dtype=np.intp) * leaves
        self.baseline = booster._baseline_prediction

    @staticmethod
    def supports(booster) -> bool:
        """Whether `booster` is a fitted histogram booster that LeafMasks evaluates."""
        return (isinstance(booster, (HistGradientBoostingClassifier, HistGradientBoostingRegressor))
                and hasattr(booster, "_predictors") and booster.n_trees_per_iteration_ == 1
                and booster.is_categorical_ is None
                and all(int(p[0].nodes["is_leaf"].sum()) <= 64 for p in booster._predictors))

    def raw(self, X) -> np.ndarray:
        """The booster's raw predictions of the rows of `X` (shape (n, 1), as `_raw_predict`)."""
        X = self._checked(X)
        out = np.zeros((len(X), 1))
        out += self.baseline
        with_nan = np.isnan(X).any(axis=0)
        if self.n_trees:
            for start in range(0, len(X), ROWS):
                self._add_leaf_values(X[start:start + ROWS], with_nan, out[start:start + ROWS, 0])
        return out

    def _add_leaf_values(self, rows: np.ndarray, with_nan: np.ndarray, out: np.ndarray) -> None:
        """Add to `out` the values of the leaves `rows` reach, tree after tree (scikit-learn's order)."""
        mask = np.full((len(rows), self.n_trees), np.iinfo(self.dtype).max, dtype=self.dtype)
        for f, thresholds, table in self.features:
            x = rows[:, f]
            k = np.searchsorted(thresholds, x)
            if with_nan[f]:
                k[np.isnan(x)] = len(thresholds) + 1
            mask &= np.take(table, k, axis=0)
        if self.dtype == np.uint16:
            leaf = _LOWEST_BIT[mask]
        else:
            leaf = np.log2(mask & (~mask + np.uint64(1))).astype(np.intp)
        values = self.values.ravel()[leaf + self.offsets]
        for t in range(self.n_trees):
            out += values[:, t]

    def _checked(self, X) -> np.ndarray:
        names = getattr(self.booster, "feature_names_in_", None)
        if names is not None and hasattr(X, "columns") and list(X.columns) != list(names):
            raise ValueError("the columns of X are not those the booster was fitted on, in that order")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.booster.n_features_in_:
            raise ValueError(f"X has {X.shape[-1]} features; the booster reads {self.booster.n_features_in_}")
        return np.asfortranarray(X)


class LeafMaskClassifier(LeafMasks):
    def predict_proba(self, X) -> np.ndarray:
        """The booster's `predict_proba(X)`, bit for bit."""
        return self.booster._loss.predict_proba(self.raw(X))


class LeafMaskRegressor(LeafMasks):
    def predict(self, X) -> np.ndarray:
        """The booster's `predict(X)`, bit for bit."""
        return self.booster._loss.link.inverse(self.raw(X).ravel())


def with_leaf_masks(arm):
    """A copy of `arm` (a `behavior.uplift_selection.ArmModel`) whose boosters predict through
    `LeafMasks`, with the same predictions; a booster the arm holds twice (the T-learner's treated
    classifier as its redemption model) stays one object, so it is still evaluated once."""
    made: dict[int, object] = {}

    def swapped(obj):
        if LeafMasks.supports(obj):
            if id(obj) not in made:
                made[id(obj)] = (LeafMaskClassifier if hasattr(obj, "predict_proba") else LeafMaskRegressor)(obj)
            return made[id(obj)]
        fitted = {k: v for k, v in vars(obj).items() if k.endswith("_") and LeafMasks.supports(v)} \
            if hasattr(obj, "__dict__") else {}
        if not fitted:
            return obj
        out = copy.copy(obj)      # a learner holding boosters (the T-learner's two, the DR-learner's regression)
        for k, v in fitted.items():
            setattr(out, k, swapped(v))
        return out

    return dataclasses.replace(arm, model=swapped(arm.model), redeem=swapped(arm.redeem))
