"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): an item-item model
in closed form.

With X the users x items confidence matrix and lambda the L2 penalty,

    P = (X^T X + lambda I)^-1,    B = I - P diag(1 / diag(P))    (B_ij = -P_ij / P_jj, B_jj = 0)

is the items x items matrix minimising ||X - X B||^2 + lambda ||B||^2 with a zero diagonal, and a
user's scores are x_u B. The model's `regularization` is lambda relative to the mean diagonal of
X^T X (an item's mean squared confidence mass): it grows with the number of users as X^T X
does, so a value chosen on a sample of users keeps its meaning when the model is refitted on all
of them. Fitting costs one dense items x items inverse (O(n_items^3) time,
n_items^2 floats of memory), so EASE is a candidate only for catalogues up to `MAX_ITEMS`
items (`behavior.recommend.search` skips it above and says so).

Serving keeps the `K` largest entries (by magnitude) of every column of B, the weights that
predict each item, as the sparse matrix of `behavior.recommend.neighbours.ItemItem` (a dense B
of 20k items would be 1.6 GB of float32): scoring, similar items, explanations and the arrays
are ItemItem's.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from behavior.recommend.checks import InteractionsError
from behavior.recommend.neighbours import ItemItem

MAX_ITEMS = 20_000


def ease_weights(confidence: sp.csr_matrix, regularization: float) -> np.ndarray:
    """The dense float32 B of the module docstring for lambda = `regularization` times the mean
    diagonal of X^T X (float32 halves the memory and the time of the inverse)."""
    n_items = confidence.shape[1]
    x = sp.csr_matrix(confidence, dtype=np.float32)
    gram = (x.T @ x).toarray()
    diagonal = np.diag_indices(n_items)
    gram[diagonal] += np.float32(regularization * max(float(gram[diagonal].mean()), np.finfo(np.float32).tiny))
    # Cholesky factor and inverse in place: one n x n matrix in memory besides X
    potrf, potri = scipy.linalg.lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
    factor, info = potrf(gram, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise InteractionsError(
            f"EASE: X^T X + lambda I is not positive definite; raise regularization ({regularization})"
        )
    p, info = potri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise InteractionsError(f"EASE: inverting X^T X + lambda I failed (LAPACK info {info})")
    p = np.triu(p) + np.triu(p, 1).T
    b = p / -np.diag(p)[None, :]
    b[np.diag_indices(n_items)] = 0.0
    return b


def top_per_column(weights: np.ndarray, k: int) -> sp.csr_matrix:
    """The `k` entries of largest magnitude of every column (ties: the lower row), as CSR."""
    n_rows, n_cols = weights.shape
    if k >= n_rows:
        return sp.csr_matrix(weights)
    rows = np.argpartition(-np.abs(weights), k - 1, axis=0)[:k]
    cols = np.broadcast_to(np.arange(n_cols), rows.shape)
    values = weights[rows, cols]
    keep = values != 0
    return sp.csr_matrix((values[keep], (rows[keep], cols[keep])), shape=weights.shape)


class EASE(ItemItem):
    kind = "ease"
    param_names = ("regularization", "K")

    def __init__(self, regularization=0.5, K=200, weighting="count", weighting_params=None):
        super().__init__(weighting, weighting_params)
        self.regularization = regularization
        self.K = K

    def _fit(self, confidence):
        if confidence.shape[1] > MAX_ITEMS:
            raise InteractionsError(
                f"EASE needs a dense {confidence.shape[1]} x {confidence.shape[1]} inverse; it is limited to "
                f"catalogues of {MAX_ITEMS} items (use ALS or item kNN)"
            )
        if not float(self.regularization) > 0 or int(self.K) < 1:
            raise InteractionsError(f"EASE needs regularization > 0 and K >= 1, got {self.regularization}, {self.K}")
        weights = ease_weights(confidence, float(self.regularization))
        self._set_similarity(top_per_column(weights, int(self.K)))
