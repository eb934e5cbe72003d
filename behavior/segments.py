"""RFM scores, named customer segments, a loyalty score and tier, and segment migration.

Everything here works on the per-user table (one row per user, e.g. the `profiles` built
from `behavior.features.user_features`); nothing reads the log. Inputs are never modified.

RFM scores (`rfm_scores`)
-------------------------
Three quintile scores from 1 to 5, where 5 is always best:

- `r_score` from `recency_days` (fewer days since the last purchase is better),
- `f_score` from `n_payments` (the number of successful payments; more is better),
- `m_score` from `net_spend` (spend net of refunds; more is better).

A score is the user's mid-rank percentile cut into five equal bands::

    score = floor(5 * (rank - 0.5) / n) + 1

where `n` is the number of users with a value and `rank` the user's *average* rank among
them (ascending in "goodness"; tied users share the mean of their positions). With distinct
values this is exactly five equal groups (sizes differ by at most one, e.g. 10 users give
2 per score, 7 users give 1, 2, 1, 2, 1); tied values always get the same score, whatever
the row order, so the cut never fails on duplicate edges and identical users are never told
apart by accident; a lone user, or users that are all equal, get the middle score 3; with
fewer than five users the scores spread over the range (2 users: 2 and 4; 3 users: 1, 3, 5;
4 users: 1, 2, 4, 5).

Monetary may be unavailable: a user whose `net_spend` is null (a lake without amounts makes
it null for everyone) gets a null `m_score`, and the M quintiles are cut over the users that
have a value. `rfm` is the three digits, e.g. "545", with "-" for a null M ("54-").

Segments (`assign_segments`)
----------------------------
A user's cell in a 5 x 5 grid is (R, FM) with ``R = r_score`` and

    FM = ceil((f_score + m_score) / 2)      (the mean of F and M, rounded half up)
    FM = f_score                            when m_score is null (monetary unavailable)

The segment is the first rule, in this order of precedence, whose ranges contain the cell.
The ranges follow the common RFM segment map; where they overlap, the earlier rule wins:

=====  ====================  ==========  =========================
 rank  segment               R           FM
=====  ====================  ==========  =========================
  1    Champions             4-5         4-5
  2    New                   5           1
  3    Promising             4           1
  4    Lost                  1           1
  5    Can't Lose            1-2         5;  or R 1 with FM 4
  6    At Risk               1-2         3-4
  7    Need Attention        3           2-3
  8    Loyal                 2-5         3-5
  9    Hibernating           1-2         1-2
 10    About to Sleep        2-3         1-2
 11    Potential Loyalist    3-5         1-3
=====  ====================  ==========  =========================

which gives this grid, a partition of all 25 cells (every cell has exactly one segment,
every segment has at least one cell; the tests check both and compare this grid with the
code)::

    R \\ FM  1                2                   3                   4            5
    5       New              Potential Loyalist  Loyal               Champions    Champions
    4       Promising        Potential Loyalist  Loyal               Champions    Champions
    3       About to Sleep   Need Attention      Need Attention      Loyal        Loyal
    2       Hibernating      Hibernating         At Risk             At Risk      Can't Lose
    1       Lost             Hibernating         At Risk             Can't Lose   Can't Lose

So, per segment: Champions R 4-5 & FM 4-5; Loyal R 3 & FM 4-5 or R 4-5 & FM 3; Potential
Loyalist R 4-5 & FM 2; New R 5 & FM 1; Promising R 4 & FM 1; Need Attention R 3 & FM 2-3;
About to Sleep R 3 & FM 1; At Risk R 2 & FM 3-4 or R 1 & FM 3; Can't Lose R 2 & FM 5 or
R 1 & FM 4-5; Hibernating R 2 & FM 1-2 or R 1 & FM 2; Lost R 1 & FM 1.

What the grid says about the BTYD outputs: along R at the same FM it orders customers by
silence, so P(alive) falls and the churn probability rises from Champions to Can't Lose and
from Loyal to At Risk; the names order what customers will still buy (expected purchases of
Lost < At Risk < Loyal < Champions). It does not order P(alive) across FM: among equally
silent customers the one who bought more often is the more likely to have dropped out, and
under BG/NBD a one-time buyer (most of Lost) is alive by assumption. tests/e2e/test_one_story.py
checks these on synthetic and real data.

Loyalty score (`loyalty_score`)
-------------------------------
A weighted mean of components in [0, 1], times 100::

    loyalty = 100 * sum(w_k * c_k) / sum(w_k)      over the components k the user has

=======================  ======  ==================================================
component c_k            w_k     value
=======================  ======  ==================================================
recency                  0.25    percentile of -recency_days (more recent is better)
frequency                0.25    percentile of n_payments
monetary                 0.20    percentile of net_spend (only where m_score is set)
tenure                   0.10    percentile of tenure_days (a longer relationship)
p_alive                  0.10    the column `p_alive` itself (a probability)
expected_purchases       0.10    percentile of `expected_purchases_90d`, or else of
                                 `expected_purchases` (the loyalty stage's horizon)
=======================  ======  ==================================================

The last two are used only when `profiles` has the column (they come from the BG/NBD
model), and a component whose value is null for a user is left out of that user's mean
(the weights of the others are renormalised). The percentile of a value is the share of
users with a worse value, ties counting half: ``(rank - 0.5) / n`` with the average rank,
over the users being scored. The score is deterministic (no randomness, independent of the
row order) and monotone: making one of a user's inputs better never lowers their score.

Loyalty tiers (`loyalty_tier`): Bronze [0, 40), Silver [40, 60), Gold [60, 80),
Platinum [80, 100] (`LOYALTY_TIERS`).

Segment migration (`segment_migration`): a before x after count matrix of users, with a
"(new)" row for users only in `after` and a "(gone)" column for users only in `before`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from behavior.errors import InputError, SchemaError

SEGMENTS: tuple[str, ...] = (
    "Champions",
    "Loyal",
    "Potential Loyalist",
    "New",
    "Promising",
    "Need Attention",
    "About to Sleep",
    "At Risk",
    "Can't Lose",
    "Hibernating",
    "Lost",
)

SCORE_COLUMNS: tuple[str, ...] = ("user_id", "r_score", "f_score", "m_score", "rfm")

# (segment, ((R range, FM range), ...)) in order of precedence: the first rule whose
# rectangles contain the (R, FM) cell wins. Ranges are inclusive.
SEGMENT_RULES: tuple[tuple[str, tuple[tuple[tuple[int, int], tuple[int, int]], ...]], ...] = (
    ("Champions", (((4, 5), (4, 5)),)),
    ("New", (((5, 5), (1, 1)),)),
    ("Promising", (((4, 4), (1, 1)),)),
    ("Lost", (((1, 1), (1, 1)),)),
    ("Can't Lose", (((1, 2), (5, 5)), ((1, 1), (4, 4)))),
    ("At Risk", (((1, 2), (3, 4)),)),
    ("Need Attention", (((3, 3), (2, 3)),)),
    ("Loyal", (((2, 5), (3, 5)),)),
    ("Hibernating", (((1, 2), (1, 2)),)),
    ("About to Sleep", (((2, 3), (1, 2)),)),
    ("Potential Loyalist", (((3, 5), (1, 3)),)),
)

LOYALTY_WEIGHTS: dict[str, float] = {
    "recency": 0.25,
    "frequency": 0.25,
    "monetary": 0.20,
    "tenure": 0.10,
    "p_alive": 0.10,
    "expected_purchases": 0.10,
}

# (tier, lower bound of the score); a tier runs up to the next one's bound.
LOYALTY_TIERS: tuple[tuple[str, float], ...] = (
    ("Bronze", 0.0),
    ("Silver", 40.0),
    ("Gold", 60.0),
    ("Platinum", 80.0),
)

# The expected-purchases column, by preference (the percentile makes the horizon matter little).
_EXPECTED_PURCHASES = ("expected_purchases_90d", "expected_purchases")

NEW = "(new)"
GONE = "(gone)"


def segment_of_cell(r: int, fm: int) -> str:
    """The segment of the grid cell (R, FM), both in 1..5: the first matching rule."""
    if not (1 <= r <= 5 and 1 <= fm <= 5):
        raise ValueError(f"(R, FM) = ({r}, {fm}) is outside the 5 x 5 grid")
    for name, rects in SEGMENT_RULES:
        for (r_lo, r_hi), (fm_lo, fm_hi) in rects:
            if r_lo <= r <= r_hi and fm_lo <= fm <= fm_hi:
                return name
    raise AssertionError(f"no segment rule covers (R, FM) = ({r}, {fm})")  # the tests rule it out


# SEGMENT_GRID[r - 1][fm - 1] is the segment of the cell (r, fm).
SEGMENT_GRID: tuple[tuple[str, ...], ...] = tuple(
    tuple(segment_of_cell(r, fm) for fm in range(1, 6)) for r in range(1, 6)
)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks the column(s) {', '.join(missing)}; it needs {', '.join(columns)}")


def _arrow_ids(ids: pd.Series) -> pa.Array | None:
    """The ids as an Arrow string array (no copy for pandas' Arrow-backed strings), or None."""
    try:
        array = pa.array(ids)
    except (pa.ArrowException, TypeError, ValueError):
        return None
    return array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else None


def _strictly_increasing(ids: pd.Series) -> bool:
    """Whether the string ids are in strictly increasing order (so unique): one linear pass,
    where a hash of millions of strings costs several times more (the pipeline's per-user
    tables are ordered by user_id)."""
    array = _arrow_ids(ids)
    return array is not None and (len(array) < 2 or pc.all(pc.less(array[:-1], array[1:])).as_py())


def _unique_users(frame: pd.DataFrame, what: str) -> None:
    if frame["user_id"].isna().any():
        raise InputError(f"{what} has a row without user_id")
    if _strictly_increasing(frame["user_id"]):
        return
    dup = frame["user_id"][frame["user_id"].duplicated()]
    if len(dup):
        raise InputError(f"{what} has {len(dup)} duplicate user_id(s), e.g. {dup.iloc[0]!r}; one row per user")


def _numeric(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    try:
        return pd.to_numeric(frame[column], errors="raise").astype("float64")
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{what}.{column} must be numeric: {exc}") from None


def _average_rank2(values: np.ndarray) -> np.ndarray:
    """Twice the average rank (ascending, 1-based) of `values` (float64, no NaN), as integers:
    tied values share the mean of their positions, as pandas' `rank(method="average")`.

    Doubling keeps the half ranks of ties exact, so the band arithmetic is integer. One
    unstable argsort and a pass over the sorted values (pandas' rank sorts stably and is
    several times slower on millions of users). Whole numbers within a range of at most n
    (counts such as `n_payments`) are ranked by counting them instead: linear, and no
    gather or scatter of the users in sorted order, which leave the cache at millions of users."""
    n = len(values)
    if n:
        low = values.min()
        span = values.max() - low
        if span <= n and np.array_equal(values, np.floor(values)):
            codes = (values - low).astype(np.int64)
            counts = np.bincount(codes)
            ends = np.cumsum(counts)   # one past each value's last position (0-based)
            return (ends - counts + 1 + ends)[codes]
    order = np.argsort(values)
    ordered = values[order]
    first = np.ones(n, dtype=bool)
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])
    starts = np.flatnonzero(first)            # 0-based first position of each run of ties
    ends = np.append(starts[1:], n)           # one past its last position
    rank2 = np.empty(n, dtype=np.int64)
    # positions start + 1 .. end (1-based): the average rank doubled is (start + 1) + end
    rank2[order] = np.repeat(starts + 1 + ends, ends - starts)
    return rank2


def _present(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(mask of the non-null values, those values as float64)."""
    v = values.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(v)
    return present, v[present]


def _quintile(values: pd.Series) -> pd.Series:
    """The 1..5 score of each value (higher value -> higher score); null stays null."""
    present, v = _present(values)
    n = len(v)
    scores = np.zeros(len(present), dtype=np.int64)
    if n:
        # floor(5 * (rank - 0.5) / n) + 1, in integers: (5 * (2 rank - 1)) // (2 n) + 1
        scores[present] = (5 * (_average_rank2(v) - 1)) // (2 * n) + 1
    return pd.Series(pd.arrays.IntegerArray(scores, ~present), index=values.index)


def _percentile(values: pd.Series) -> pd.Series:
    """Mid-rank percentile in (0, 1) of each non-null value (ties count half); null stays null."""
    present, v = _present(values)
    out = np.full(len(present), np.nan)
    n = len(v)
    if n:
        out[present] = (_average_rank2(v) / 2 - 0.5) / n
    return pd.Series(out, index=values.index, dtype="float64")


def _labels(names: list[str] | tuple[str, ...], codes: np.ndarray, index: pd.Index) -> pd.Series:
    """The string Series names[codes] (a null where a code is -1), built in Arrow: a Python
    string per row is what made these columns cost seconds for millions of users."""
    taken = pa.array(list(names), pa.string()).take(pa.array(codes, mask=codes < 0))
    out = pa.chunked_array([taken]).to_pandas()
    out.index = index
    return out


def rfm_scores(profiles: pd.DataFrame) -> pd.DataFrame:
    """The R, F and M quintile scores (1..5, 5 best) and the "RFM" code of every user.

    `profiles` needs `user_id`, `recency_days`, `n_payments` and `net_spend` (one row per
    user; recency and payments non-null, net_spend may be null: see the module docstring).
    Returns `SCORE_COLUMNS` with the index of `profiles`; the scores are nullable Int64
    (`m_score` is null exactly where `net_spend` is) and `rfm` a string such as "545" or "54-".
    """
    what = "profiles"
    _require(profiles, ("user_id", "recency_days", "n_payments", "net_spend"), what)
    _unique_users(profiles, what)
    recency = _numeric(profiles, "recency_days", what)
    payments = _numeric(profiles, "n_payments", what)
    for name, col in (("recency_days", recency), ("n_payments", payments)):
        if col.isna().any():
            raise InputError(f"{what}.{name} is null for {int(col.isna().sum())} user(s); every profile has it")
    r = _quintile(-recency)
    f = _quintile(payments)
    m = _quintile(_numeric(profiles, "net_spend", what))
    return pd.DataFrame(
        {
            "user_id": profiles["user_id"],
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "rfm": _rfm_codes(r, f, m),
        },
        index=profiles.index,
    )


# the RFM code of (r, f, m) at position 36 r + 6 f + m (m = 0: a null M), each in 1..5
_RFM_CODES: tuple[str, ...] = tuple(f"{r}{f}{m or '-'}" if r and f else "" for r in range(6) for f in range(6)
                                    for m in range(6))


def _rfm_codes(r: pd.Series, f: pd.Series, m: pd.Series) -> pd.Series:
    """The "RFM" code of each user, e.g. "545", with "-" for a null M ("54-")."""
    digit = [s.to_numpy(dtype=np.int64, na_value=0) for s in (r, f, m)]
    return _labels(_RFM_CODES, 36 * digit[0] + 6 * digit[1] + digit[2], r.index)


def _score_array(scores: pd.DataFrame, column: str, nullable: bool) -> np.ndarray:
    col = pd.to_numeric(scores[column], errors="coerce").astype("float64")
    if (col.notna() & ~col.isin([1, 2, 3, 4, 5])).any() or (scores[column].notna() & col.isna()).any():
        raise InputError(f"scores.{column} must hold integers 1..5")
    if not nullable and col.isna().any():
        raise InputError(f"scores.{column} is null for {int(col.isna().sum())} user(s)")
    return col.astype("float64").to_numpy()


def fm_scores(scores: pd.DataFrame) -> pd.Series:
    """The FM coordinate of each user: ceil((F + M) / 2), or F where M is null (Int64)."""
    _require(scores, ("f_score", "m_score"), "scores")
    f = _score_array(scores, "f_score", nullable=False)
    m = _score_array(scores, "m_score", nullable=True)
    fm = np.where(np.isnan(m), f, np.ceil((f + np.nan_to_num(m)) / 2))
    return pd.Series(fm.astype(np.int64), index=scores.index, name="fm_score", dtype="Int64")


def assign_segments(scores: pd.DataFrame) -> pd.Series:
    """The named segment (one of `SEGMENTS`) of every row of `scores` (from `rfm_scores`).

    Uses `r_score` and the FM coordinate (`fm_scores`) on the grid of the module docstring.
    Returns a string Series named "segment" with the index of `scores`; no user is left
    without a segment. Scores outside 1..5 (or a null R or F) raise InputError."""
    _require(scores, ("r_score", "f_score", "m_score"), "scores")
    r = _score_array(scores, "r_score", nullable=False).astype(np.int64)
    fm = fm_scores(scores).to_numpy(dtype=np.int64)
    cells = [name for row in SEGMENT_GRID for name in row]
    return _labels(cells, 5 * (r - 1) + fm - 1, scores.index).rename("segment")


def loyalty_score(profiles: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    """The 0..100 loyalty score of every user in `scores` (see the module docstring).

    `profiles` needs `user_id`, `recency_days`, `n_payments`, `net_spend`, `tenure_days`
    and may have `p_alive` (in [0, 1]) and `expected_purchases_90d` (or `expected_purchases`);
    `scores` (from
    `rfm_scores`) needs `user_id` and `m_score`. Rows are matched on user_id; the result
    has the index of `scores`, is named "loyalty_score", and is float64. A user of `scores`
    without a profile raises InputError.
    """
    what = "profiles"
    _require(profiles, ("user_id", "recency_days", "n_payments", "net_spend", "tenure_days"), what)
    _require(scores, ("user_id", "m_score"), "scores")
    _unique_users(profiles, what)
    _unique_users(scores, "scores")
    mine, theirs = _arrow_ids(profiles["user_id"]), _arrow_ids(scores["user_id"])
    if mine is not None and theirs is not None and mine.equals(theirs):   # the same users in the same order
        position = np.arange(len(profiles))
    else:
        position = pd.Index(profiles["user_id"]).get_indexer(scores["user_id"])
    if (position < 0).any():
        missing = scores["user_id"][position < 0].iloc[0]
        raise InputError(f"user {missing!r} of scores has no row in profiles")
    rows = profiles.iloc[position]

    def col(name: str) -> pd.Series:
        return pd.Series(_numeric(rows, name, what).to_numpy(), index=scores.index)

    monetary = col("net_spend").where(scores["m_score"].notna())
    components: dict[str, pd.Series] = {
        "recency": _percentile(-col("recency_days")),
        "frequency": _percentile(col("n_payments")),
        "monetary": _percentile(monetary),
        "tenure": _percentile(col("tenure_days")),
    }
    if "p_alive" in profiles.columns:
        p_alive = col("p_alive")
        if ((p_alive < 0) | (p_alive > 1)).any():
            raise InputError("profiles.p_alive must be a probability in [0, 1]")
        components["p_alive"] = p_alive
    expected = next((c for c in _EXPECTED_PURCHASES if c in profiles.columns), None)
    if expected is not None:
        components["expected_purchases"] = _percentile(col(expected))
    total = pd.Series(0.0, index=scores.index)
    weight = pd.Series(0.0, index=scores.index)
    for name, value in components.items():
        has = value.notna()
        total = total + value.fillna(0.0) * LOYALTY_WEIGHTS[name]
        weight = weight + has * LOYALTY_WEIGHTS[name]
    # recency and frequency are never null, so the weight is always > 0
    return (100.0 * total / weight).clip(0.0, 100.0).rename("loyalty_score")


def loyalty_tier(score: pd.Series) -> pd.Series:
    """The tier of each loyalty score (`LOYALTY_TIERS`: Bronze < 40 <= Silver < 60 <= Gold
    < 80 <= Platinum); null scores give null tiers, scores outside [0, 100] raise InputError."""
    values = pd.to_numeric(pd.Series(score), errors="raise").astype("float64")
    if ((values < 0) | (values > 100)).any():
        raise InputError("loyalty scores must lie in [0, 100]")
    bounds = np.array([lo for _, lo in LOYALTY_TIERS[1:]])
    v = values.to_numpy()
    idx = np.where(np.isnan(v), -1, np.searchsorted(bounds, np.nan_to_num(v), side="right"))
    return _labels([name for name, _ in LOYALTY_TIERS], idx, values.index).rename("loyalty_tier")


def _segments_by_user(frame: pd.DataFrame, what: str) -> pd.Series:
    _require(frame, ("user_id", "segment"), what)
    _unique_users(frame, what)
    seg = frame["segment"]
    unknown = seg[~seg.isin(SEGMENTS)]
    if len(unknown):
        raise InputError(f"{what} has a segment that is not one of SEGMENTS: {unknown.iloc[0]!r}")
    return pd.Series(seg.to_numpy(dtype=object), index=pd.Index(frame["user_id"], dtype=object))


def segment_migration(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """How users moved between segments from `before` to `after` (each: user_id, segment).

    A count matrix (int64) with rows = the segment before ("before": every segment of
    `SEGMENTS` in order, then "(new)" for users only in `after`) and columns = the segment
    after (`SEGMENTS`, then "(gone)" for users only in `before`); every user is counted once.
    The ("(new)", "(gone)") cell is always 0. Unknown segments or duplicate users raise
    InputError.
    """
    b = _segments_by_user(before, "before")
    a = _segments_by_user(after, "after")
    rows = [*SEGMENTS, NEW]
    cols = [*SEGMENTS, GONE]
    users = b.index.union(a.index)
    frm = b.reindex(users).fillna(NEW).to_numpy(dtype=object)
    to = a.reindex(users).fillna(GONE).to_numpy(dtype=object)
    counts = np.zeros((len(rows), len(cols)), dtype=np.int64)
    np.add.at(counts, (pd.Index(rows).get_indexer(frm), pd.Index(cols).get_indexer(to)), 1)
    return pd.DataFrame(
        counts,
        index=pd.Index(rows, name="before", dtype="str"),
        columns=pd.Index(cols, name="after", dtype="str"),
    )


__all__ = [
    "LOYALTY_TIERS",
    "LOYALTY_WEIGHTS",
    "SCORE_COLUMNS",
    "SEGMENTS",
    "SEGMENT_GRID",
    "SEGMENT_RULES",
    "assign_segments",
    "fm_scores",
    "loyalty_score",
    "loyalty_tier",
    "rfm_scores",
    "segment_migration",
    "segment_of_cell",
]
