"""Validation shared by the recommender modules, and their precise exception.

Every check raises `InteractionsError` (an `InputError`, hence a `ValueError`) whose message
names the argument, what is wrong with it and what would be accepted.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from behavior.errors import InputError


class InteractionsError(InputError):
    """Interactions (arrays or a users x items matrix) that cannot be used to fit, score or evaluate."""


def as_index_array(values, what: str, upper: int, allow_missing: bool = False) -> np.ndarray:
    """`values` as a 1-D int64 array of indices in [0, upper) (or -1 when `allow_missing`)."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise InteractionsError(f"{what} must be a 1-D array of indices, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InteractionsError(f"{what} must hold integer indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    lowest = -1 if allow_missing else 0
    if arr.size and (arr.min() < lowest or arr.max() >= upper):
        bad = arr[(arr < lowest) | (arr >= upper)][0]
        raise InteractionsError(f"{what} holds index {bad}, outside [{lowest}, {upper})")
    return arr


def as_value_array(values, what: str, n: int, nonnegative: bool = True) -> np.ndarray:
    """`values` as a finite 1-D float64 array of length `n`."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,):
        raise InteractionsError(f"{what} must be a 1-D array of length {n}, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InteractionsError(f"{what} holds {int((~np.isfinite(arr)).sum())} NaN or infinite value(s)")
    if nonnegative and arr.size and arr.min() < 0:
        raise InteractionsError(f"{what} must be >= 0, found {arr.min()}")
    return arr


def check_matrix(matrix, what: str, n_items: int | None = None) -> sp.csr_matrix:
    """A users x items scipy CSR matrix of finite non-negative float32 values (sorted indices)."""
    if not sp.issparse(matrix):
        raise InteractionsError(f"{what} must be a scipy sparse users x items matrix, got {type(matrix).__name__}")
    m = sp.csr_matrix(matrix, dtype=np.float32)
    if n_items is not None and m.shape[1] != n_items:
        raise InteractionsError(f"{what} has {m.shape[1]} item columns; the model was fitted on {n_items}")
    if m.nnz:
        if not np.isfinite(m.data).all():
            raise InteractionsError(f"{what} holds NaN or infinite values")
        if m.data.min() < 0:
            raise InteractionsError(f"{what} holds negative values; refunds are subtracted and clipped at 0 first")
    if not m.has_sorted_indices:
        m = m.sorted_indices()
    return m


def check_trainable(matrix, what: str = "user_items") -> sp.csr_matrix:
    """A matrix a recommender can learn from: >= 2 items and at least one positive interaction."""
    m = check_matrix(matrix, what)
    n_users, n_items = m.shape
    if n_users == 0 or n_items == 0:
        raise InteractionsError(f"{what} is empty ({n_users} users x {n_items} items); nothing to learn from")
    if n_items < 2:
        raise InteractionsError(
            f"{what} has a catalogue of {n_items} item; recommending needs at least 2 items to rank"
        )
    if m.nnz == 0 or not (m.data > 0).any():
        raise InteractionsError(
            f"{what} has no positive interaction ({n_users} users x {n_items} items): every row is zero, "
            "e.g. users with only refunds or failed payments; a recommender needs successful purchases"
        )
    return m
