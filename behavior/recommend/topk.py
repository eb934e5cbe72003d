"""Exact, vectorised top-k of dense score rows, and the score normalisation of blends.

`top_k` returns, per row, the k largest scores in descending order; -inf marks an item that
is not a candidate and comes back as index -1 with score -inf (padding).

Wide rows use a block-maximum pre-selection that stays exact: cut the columns into
``n_blocks`` strided blocks (block j = columns j, j + n_blocks, j + 2 n_blocks, ...). If s_k is
the k-th largest score of a row, every block that holds one of the top-k items has a maximum
>= s_k, and at most k blocks can have a maximum >= s_k (each holds a distinct such item, up
to ties), so the top-k items all lie in the k blocks with the largest maxima. The maxima are
one SIMD-friendly pass over contiguous memory, after which only k * block_size candidates
per row are partitioned instead of the whole row.

`top_k_row` and `normalise_row` are the one-row forms (same operations, same results) that
the serving layer uses for one user at a time.

`top_k_csr` and `normalise_csr` are the forms for scores stored sparsely (a CSR matrix of the
candidates' scores, every other item -inf): the same scores and the same lists up to the order
of equal scores, which `top_k` leaves to numpy's partition and `top_k_csr` puts in the order of
their item index. The recommender search ranks the models whose candidates are a few items per user
(buy-again, item kNN, EASE, their blends) this way, at a cost that does not grow with the
catalogue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

# below this width a plain partition is as fast; above it, rows with many ties (mostly -inf,
# e.g. buy-again) make numpy's introselect several times slower than the block pass
_DIRECT_MAX_COLUMNS = 256
# padded cells per block of `top_k_csr` (16 MB of float32): a user with 100k candidates among
# 512 pads 40 rows at a time, not 512
_PADDED_CELLS = 4_000_000


def _sorted_top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = scores.shape[1]
    if k < c:
        part = np.argpartition(scores, c - k, axis=1)[:, c - k:]
    else:
        part = np.broadcast_to(np.arange(c), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(indices int64 [rows x k], scores float32 [rows x k]); -1 / -inf where fewer candidates."""
    scores = np.asarray(scores, dtype=np.float32)
    rows, c = scores.shape
    out_idx = np.full((rows, k), -1, dtype=np.int64)
    out_val = np.full((rows, k), -np.inf, dtype=np.float32)
    if rows == 0 or c == 0 or k == 0:
        return out_idx, out_val
    kk = min(k, c)
    block = max(8, int(np.sqrt(c / kk)))
    n_blocks = c // block
    if c <= _DIRECT_MAX_COLUMNS or kk * block * 2 >= c or n_blocks <= kk:
        idx, val = _sorted_top(scores, kk)
    else:
        main = scores[:, : n_blocks * block].reshape(rows, block, n_blocks)
        block_max = main.max(axis=1)
        best_blocks = np.argpartition(block_max, n_blocks - kk, axis=1)[:, n_blocks - kk:]
        cand = (best_blocks[:, :, None] + n_blocks * np.arange(block)[None, None, :]).reshape(rows, -1)
        rest = np.arange(n_blocks * block, c)
        if rest.size:
            cand = np.concatenate([cand, np.broadcast_to(rest, (rows, rest.size))], axis=1)
        pos, val = _sorted_top(np.take_along_axis(scores, cand, axis=1), kk)
        idx = np.take_along_axis(cand, pos, axis=1)
    missing = ~np.isfinite(val) & (val < 0)
    idx = np.where(missing, -1, idx)
    out_idx[:, :kk] = idx
    out_val[:, :kk] = val
    return out_idx, out_val


def _sorted_top_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    c = scores.shape[0]
    part = np.argpartition(scores, c - k)[c - k:] if k < c else np.arange(c)
    vals = scores[part]
    order = np.argsort(-vals, kind="stable")
    return part[order], vals[order]


def top_k_row(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of a single 1-D row: (indices int64 [k], scores float32 [k]).

    The same selection as `top_k(scores[None], k)` (the same partitions of the same values,
    so the same answer, ties included) without the 2-D bookkeeping, which costs more than
    the selection itself for one row (the serving layer's one user at a time).
    """
    scores = np.asarray(scores, dtype=np.float32)
    c = scores.shape[0]
    out_idx = np.full(k, -1, dtype=np.int64)
    out_val = np.full(k, -np.inf, dtype=np.float32)
    if c == 0 or k == 0:
        return out_idx, out_val
    kk = min(k, c)
    block = max(8, int(np.sqrt(c / kk)))
    n_blocks = c // block
    if c <= _DIRECT_MAX_COLUMNS or kk * block * 2 >= c or n_blocks <= kk:
        idx, val = _sorted_top_row(scores, kk)
    else:
        block_max = scores[: n_blocks * block].reshape(block, n_blocks).max(axis=0)
        best_blocks = np.argpartition(block_max, n_blocks - kk)[n_blocks - kk:]
        cand = (best_blocks[:, None] + n_blocks * np.arange(block)[None, :]).reshape(-1)
        if n_blocks * block < c:
            cand = np.concatenate([cand, np.arange(n_blocks * block, c)])
        pos, val = _sorted_top_row(scores[cand], kk)
        idx = cand[pos]
    idx = np.where(~np.isfinite(val) & (val < 0), -1, idx)
    out_idx[:kk] = idx
    out_val[:kk] = val
    return out_idx, out_val


def normalise_rows(scores: np.ndarray) -> np.ndarray:
    """Per row (s - lo) / (hi - lo) with hi the largest finite score and lo = min(0, smallest).

    Anchoring lo at 0 keeps models with non-negative scores on their natural [0, 1] scale
    (an purchased item with the smallest count is still > 0); -inf (not a candidate) maps to 0
    and a row without spread maps to 0.
    """
    s = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(s)
    hi = s.max(axis=1, keepdims=True)  # scores are never +inf: -inf only in an all -inf row
    # min(smallest finite, 0) is the min with the non-finite cells read as 0
    lo = np.minimum(np.where(finite, s, np.float32(0.0)).min(axis=1, keepdims=True), 0.0)
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    out = s - np.where(ok, lo, 0.0)
    np.copyto(out, 0.0, where=~finite)
    out *= np.where(ok, 1.0 / np.where(ok, span, 1.0), 0.0)
    return out.astype(np.float32, copy=False)


def top_k_csr(matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` of the dense rows of `matrix` (a CSR matrix of finite scores; the items it does
    not store are -inf): (indices int64 [rows x k], scores float32 [rows x k]), -1 / -inf where
    a row has fewer than k entries; equal scores in increasing item order."""
    rows = matrix.shape[0]
    out_idx = np.full((rows, k), -1, dtype=np.int64)
    out_val = np.full((rows, k), -np.inf, dtype=np.float32)
    if matrix.nnz == 0 or k == 0:
        return out_idx, out_val
    data = np.asarray(matrix.data, dtype=np.float32)
    lengths = np.diff(matrix.indptr)
    row = np.repeat(np.arange(rows), lengths)
    if lengths.max() > k:
        # a row keeps the scores >= its k-th largest (its top k, and the ties of the k-th; all of
        # a row of k or fewer), which `top_k` finds in blocks of rows padded with -inf to the
        # block's longest (its values, unlike its order of equal scores, are exact)
        threshold = np.empty(rows, dtype=np.float32)
        step = max(1, _PADDED_CELLS // int(lengths.max()))
        for start in range(0, rows, step):
            stop = min(start + step, rows)
            width = int(lengths[start:stop].max())
            first, last = matrix.indptr[start], matrix.indptr[stop]
            block = row[first:last] - start
            padded = np.full((stop - start) * width, -np.inf, dtype=np.float32)
            padded[block * width + (np.arange(first, last) - matrix.indptr[start:stop][block])] = data[first:last]
            threshold[start:stop] = top_k(padded.reshape(stop - start, width), k)[1][:, k - 1]
        kept = data >= threshold[row]
        row, data, items = row[kept], data[kept], matrix.indices[kept]
    else:
        items = matrix.indices
    order = np.lexsort((items, -data, row))
    row, data, items = row[order], data[order], items[order]
    counts = np.bincount(row, minlength=rows)
    rank = np.arange(row.size) - np.repeat(np.cumsum(counts) - counts, counts)
    top = rank < k
    out_idx[row[top], rank[top]] = items[top]
    out_val[row[top], rank[top]] = data[top]
    return out_idx, out_val


def normalise_csr(matrix):
    """`normalise_rows` of the dense rows of `matrix` (CSR, finite scores; -inf elsewhere),
    stored on the same entries with the same float32 operations (the -inf cells map to 0)."""
    data = np.asarray(matrix.data, dtype=np.float32)
    lengths = np.diff(matrix.indptr)
    full = lengths > 0
    starts = matrix.indptr[:-1][full]
    hi = np.full(matrix.shape[0], -np.inf, dtype=np.float32)
    lo = np.zeros(matrix.shape[0], dtype=np.float32)
    if data.size:
        hi[full] = np.maximum.reduceat(data, starts)
        lo[full] = np.minimum(np.minimum.reduceat(data, starts), np.float32(0.0))
    span = hi - lo
    ok = np.isfinite(span) & (span > 0)
    shift = np.repeat(np.where(ok, lo, np.float32(0.0)), lengths)
    scale = np.repeat(np.where(ok, np.float32(1.0) / np.where(ok, span, np.float32(1.0)), np.float32(0.0)), lengths)
    out = data - shift
    out *= scale
    return sp.csr_matrix((out.astype(np.float32, copy=False), matrix.indices, matrix.indptr), shape=matrix.shape)


def normalise_row(scores: np.ndarray) -> np.ndarray:
    """`normalise_rows` of a single 1-D row, with the same float32 operations (same result)."""
    s = np.asarray(scores, dtype=np.float32)
    finite = np.isfinite(s)
    hi = s.max()
    lo = np.minimum(np.where(finite, s, np.inf).min(), np.float32(0.0))
    span = hi - lo
    ok = bool(np.isfinite(span) & (span > 0))
    out = s - (lo if ok else np.float32(0.0))
    out[~finite] = 0.0
    out *= (np.float32(1.0) / span) if ok else np.float32(0.0)
    return out.astype(np.float32, copy=False)
