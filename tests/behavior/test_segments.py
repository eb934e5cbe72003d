"""RFM scores, segments, loyalty score / tier and migration: hand-computed answers on tiny
tables, the segment grid as documented, and properties on random per-user tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import behavior.segments as segments_module
from behavior.errors import InputError, SchemaError
from behavior.segments import (
    LOYALTY_TIERS,
    SCORE_COLUMNS,
    SEGMENT_GRID,
    SEGMENT_RULES,
    SEGMENTS,
    assign_segments,
    fm_scores,
    loyalty_score,
    loyalty_tier,
    rfm_scores,
    segment_migration,
    segment_of_cell,
)


def profiles(recency, payments, spend=None, tenure=None, **extra) -> pd.DataFrame:
    n = len(recency)
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "recency_days": [float(x) for x in recency],
            "n_payments": payments,
            "net_spend": [None] * n if spend is None else spend,
            "tenure_days": [100.0] * n if tenure is None else tenure,
            **extra,
        }
    )


def scores_of(*triples) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(len(triples))],
            "r_score": pd.array([t[0] for t in triples], dtype="Int64"),
            "f_score": pd.array([t[1] for t in triples], dtype="Int64"),
            "m_score": pd.array([t[2] for t in triples], dtype="Int64"),
        }
    )


# --------------------------------------------------------------------------- RFM scores


def test_quintiles_of_ten_distinct_users():
    # 10 users: score = floor(5 * (rank - 0.5) / 10) + 1 -> two users per score
    p = profiles(
        recency=[1, 2, 3, 4, 5, 6, 7, 8, 9, 10],  # 1 day ago is the best
        payments=[10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
        spend=[5.0, 50.0, 10.0, 40.0, 20.0, 30.0, 1.0, 2.0, 3.0, 4.0],
    )
    s = rfm_scores(p)
    assert list(s.columns) == list(SCORE_COLUMNS)
    assert s["r_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert s["f_score"].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    # spend ranks: 1.0->1 2.0->2 3.0->3 4.0->4 5.0->5 10->6 20->7 30->8 40->9 50->10
    assert s["m_score"].tolist() == [3, 5, 3, 5, 4, 4, 1, 1, 2, 2]
    assert s["rfm"].tolist()[:2] == ["553", "555"]
    assert str(s["r_score"].dtype) == "Int64"


def test_seven_users_split_one_two_one_two_one():
    # (rank - 0.5) * 5 / 7 = 0.36, 1.07, 1.79, 2.5, 3.21, 3.93, 4.64
    s = rfm_scores(profiles(recency=[7, 6, 5, 4, 3, 2, 1], payments=[1] * 7))
    assert s["r_score"].tolist() == [1, 2, 2, 3, 4, 4, 5]


def test_ties_share_a_score_whatever_the_row_order():
    # six users tie at 1 payment: positions 1..6, average rank 3.5 -> floor(5 * 3 / 10) + 1 = 2;
    # ranks 7, 8 -> floor(3.25), floor(3.75) + 1 = 4; ranks 9, 10 -> 5
    p = profiles(recency=list(range(10)), payments=[1, 1, 1, 1, 1, 1, 2, 3, 4, 5])
    s = rfm_scores(p)
    assert s["f_score"].tolist() == [2, 2, 2, 2, 2, 2, 4, 4, 5, 5]
    shuffled = p.sample(frac=1.0, random_state=3)
    again = rfm_scores(shuffled).set_index("user_id").loc[p["user_id"]]
    assert again["f_score"].tolist() == s["f_score"].tolist()
    assert again["r_score"].tolist() == s["r_score"].tolist()


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, [3]), (2, [2, 4]), (3, [1, 3, 5]), (4, [1, 2, 4, 5]), (5, [1, 2, 3, 4, 5])],
)
def test_fewer_than_five_users(n, expected):
    s = rfm_scores(profiles(recency=list(range(n, 0, -1)), payments=list(range(1, n + 1)), spend=[1.0] * n))
    assert s["r_score"].tolist() == expected
    assert s["f_score"].tolist() == expected
    assert s["m_score"].tolist() == [3] * n  # all equal -> the middle score


def test_monetary_all_null_gives_null_m_and_fm_equal_to_f():
    s = rfm_scores(profiles(recency=[1, 2, 3, 4, 5], payments=[5, 4, 3, 2, 1]))
    assert s["m_score"].isna().all()
    assert s["rfm"].tolist() == ["55-", "44-", "33-", "22-", "11-"]
    assert fm_scores(s).tolist() == [5, 4, 3, 2, 1]
    assert assign_segments(s).tolist() == ["Champions", "Champions", "Need Attention", "Hibernating", "Lost"]


def test_partially_null_monetary_is_ranked_among_the_users_with_a_value():
    s = rfm_scores(profiles(recency=[1, 2, 3], payments=[1, 1, 1], spend=[10.0, None, 30.0]))
    # two users with a value: ranks 1, 2 -> scores 2, 4
    assert s["m_score"].tolist() == [2, pd.NA, 4]
    assert s["rfm"].tolist() == ["532", "33-", "134"]


def test_empty_profiles():
    s = rfm_scores(profiles(recency=[], payments=[]))
    assert list(s.columns) == list(SCORE_COLUMNS) and len(s) == 0
    assert assign_segments(s).tolist() == []
    assert loyalty_score(profiles(recency=[], payments=[]), s).tolist() == []


def test_inputs_are_not_mutated_and_the_index_is_kept():
    p = profiles(recency=[3, 1, 2], payments=[1, 2, 3], spend=[1.0, 2.0, None], p_alive=[0.1, 0.5, 0.9])
    p.index = [10, 20, 30]
    before = p.copy(deep=True)
    s = rfm_scores(p)
    s_before = s.copy(deep=True)
    seg = assign_segments(s)
    score = loyalty_score(p, s)
    loyalty_tier(score)
    pd.testing.assert_frame_equal(p, before)
    pd.testing.assert_frame_equal(s, s_before)
    assert list(s.index) == list(seg.index) == list(score.index) == [10, 20, 30]


def test_bad_profiles_raise():
    with pytest.raises(SchemaError, match="n_payments"):
        rfm_scores(profiles(recency=[1], payments=[1]).drop(columns=["n_payments"]))
    dup = profiles(recency=[1, 2], payments=[1, 1]).assign(user_id=["a", "a"])
    with pytest.raises(InputError, match="duplicate"):
        rfm_scores(dup)
    with pytest.raises(InputError, match="recency_days"):
        rfm_scores(profiles(recency=[1, float("nan")], payments=[1, 1]))


# --------------------------------------------------------------------------- segments


def test_each_segment_is_reached_by_a_hand_made_user():
    cases = {
        "Champions": (5, 5, 4),  # FM = ceil(4.5) = 5
        "Loyal": (3, 4, 5),  # FM = ceil(4.5) = 5, R 3
        "Potential Loyalist": (5, 2, 1),  # FM = ceil(1.5) = 2
        "New": (5, 1, 1),
        "Promising": (4, 1, 1),
        "Need Attention": (3, 3, 2),  # FM = ceil(2.5) = 3
        "About to Sleep": (3, 1, 1),
        "At Risk": (2, 4, 3),  # FM = ceil(3.5) = 4
        "Can't Lose": (1, 4, 4),  # R 1 with FM 4
        "Hibernating": (2, 1, 2),  # FM = ceil(1.5) = 2
        "Lost": (1, 1, 1),
    }
    assert set(cases) == set(SEGMENTS)
    s = scores_of(*cases.values())
    assert assign_segments(s).tolist() == list(cases)


def test_without_monetary_fm_is_f():
    s = scores_of((1, 5, None), (5, 1, None), (3, 4, None))
    assert fm_scores(s).tolist() == [5, 1, 4]
    assert assign_segments(s).tolist() == ["Can't Lose", "New", "Loyal"]


def test_end_to_end_on_a_tiny_profile_table():
    # 5 users, distinct values: score = position in goodness order
    p = profiles(
        recency=[1, 2, 3, 4, 5],  # R 5 4 3 2 1
        payments=[1, 5, 3, 4, 2],  # F 1 5 3 4 2
        spend=[1.0, 5.0, 2.0, 4.0, 3.0],  # M 1 5 2 4 3
    )
    s = rfm_scores(p)
    assert s["rfm"].tolist() == ["511", "455", "332", "244", "123"]
    # FM: 1, 5, ceil(2.5)=3, 4, ceil(2.5)=3
    assert fm_scores(s).tolist() == [1, 5, 3, 4, 3]
    assert assign_segments(s).tolist() == ["New", "Champions", "Need Attention", "At Risk", "At Risk"]


def _documented_grid() -> dict[int, list[str]]:
    doc = segments_module.__doc__
    names = sorted(SEGMENTS, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(n) for n in names))
    grid = {}
    for line in doc.splitlines():
        m = re.match(r"\s{4}([1-5])\s{3,}(\S.*)$", line)
        if m:
            grid[int(m.group(1))] = pattern.findall(m.group(2))
    return grid


def test_grid_is_a_complete_partition_and_matches_the_docstring():
    cells = [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    owners: dict[tuple[int, int], list[str]] = {}
    for r, fm in cells:
        # every cell is covered by at least one rule; precedence picks the first
        matching = [
            name
            for name, rects in SEGMENT_RULES
            if any(lo <= r <= hi and flo <= fm <= fhi for (lo, hi), (flo, fhi) in rects)
        ]
        assert matching, (r, fm)
        owners[(r, fm)] = [matching[0]]
        assert segment_of_cell(r, fm) == matching[0] == SEGMENT_GRID[r - 1][fm - 1]
    # exactly one segment per cell, all 25 cells, every segment owns a cell
    assert all(len(v) == 1 for v in owners.values()) and len(owners) == 25
    assert {v[0] for v in owners.values()} == set(SEGMENTS)
    assert sorted(name for name, _ in SEGMENT_RULES) == sorted(SEGMENTS)
    # the documented grid is the computed one
    documented = _documented_grid()
    assert sorted(documented) == [1, 2, 3, 4, 5]
    for r in range(1, 6):
        assert documented[r] == list(SEGMENT_GRID[r - 1]), r
    # the documented precedence table lists the rules in code order
    table = [n for n in re.findall(r"^\s+\d+\s{4}(\S.*?)\s{2,}", segments_module.__doc__, re.M)]
    assert table[: len(SEGMENT_RULES)] == [name for name, _ in SEGMENT_RULES]
    # the brief's anchors
    assert {SEGMENT_GRID[r - 1][fm - 1] for r in (4, 5) for fm in (4, 5)} == {"Champions"}
    assert segment_of_cell(5, 1) == "New" and segment_of_cell(4, 1) == "Promising"
    assert segment_of_cell(1, 1) == "Lost" and segment_of_cell(2, 5) == "Can't Lose"


def test_scores_outside_the_grid_raise():
    with pytest.raises(InputError, match="r_score"):
        assign_segments(scores_of((6, 1, 1)))
    with pytest.raises(InputError, match="f_score"):
        assign_segments(scores_of((1, None, 1)))
    with pytest.raises(ValueError):
        segment_of_cell(0, 3)


# --------------------------------------------------------------------------- loyalty


def test_loyalty_known_answers():
    # two users, a better on every input: percentiles 0.75 / 0.25
    p = profiles(recency=[1, 9], payments=[5, 1], spend=[50.0, 5.0], tenure=[300.0, 30.0])
    s = rfm_scores(p)
    assert loyalty_score(p, s).tolist() == pytest.approx([75.0, 25.0])
    # without monetary the remaining weights are renormalised; a tie is 0.5 each
    p2 = profiles(recency=[1, 9], payments=[5, 1], tenure=[30.0, 30.0])
    s2 = rfm_scores(p2)
    # a: (0.25 * 0.75 + 0.25 * 0.75 + 0.10 * 0.5) / 0.6
    assert loyalty_score(p2, s2).tolist() == pytest.approx(
        [100 * (0.25 * 0.75 * 2 + 0.05) / 0.6, 100 * (0.25 * 0.25 * 2 + 0.05) / 0.6]
    )


def test_loyalty_uses_p_alive_and_expected_purchases_when_present():
    p = profiles(recency=[5], payments=[2], spend=[10.0], p_alive=[0.9], expected_purchases_90d=[1.5])
    s = rfm_scores(p)
    # one user: every percentile is 0.5; p_alive enters as itself
    expected = 100 * (0.25 * 0.5 + 0.25 * 0.5 + 0.20 * 0.5 + 0.10 * 0.5 + 0.10 * 0.9 + 0.10 * 0.5)
    assert loyalty_score(p, s).tolist() == pytest.approx([expected])
    # a null p_alive leaves that component out for that user only
    p2 = profiles(recency=[5, 6], payments=[2, 2], spend=[10.0, 10.0], p_alive=[None, 1.0])
    got = loyalty_score(p2, rfm_scores(p2)).tolist()
    assert got[0] == pytest.approx(100 * (0.25 * 0.75 + 0.25 * 0.5 + 0.2 * 0.5 + 0.1 * 0.5) / 0.8)
    with pytest.raises(InputError, match="p_alive"):
        loyalty_score(p.assign(p_alive=[1.5]), s)
    # the loyalty stage's `expected_purchases` serves when there is no 90-day column
    renamed = p.rename(columns={"expected_purchases_90d": "expected_purchases"})
    assert loyalty_score(renamed, s).tolist() == pytest.approx([expected])
    assert loyalty_score(p.drop(columns=["expected_purchases_90d"]), s).tolist() == pytest.approx(
        [100 * (0.8 * 0.5 + 0.10 * 0.9) / 0.9]
    )


def test_loyalty_is_aligned_to_scores_by_user_id():
    p = profiles(recency=[1, 9], payments=[5, 1], spend=[50.0, 5.0], tenure=[300.0, 30.0])
    s = rfm_scores(p).iloc[::-1]
    assert loyalty_score(p, s).tolist() == pytest.approx([25.0, 75.0])
    with pytest.raises(InputError, match="no row in profiles"):
        loyalty_score(p.iloc[:1], s)
    numbered = s.assign(user_id=range(len(s)))   # ids of another type: no match, not a crash
    with pytest.raises(InputError, match="no row in profiles"):
        loyalty_score(p, numbered)


def test_loyalty_tiers():
    got = loyalty_tier(pd.Series([0.0, 39.99, 40.0, 59.9, 60.0, 79.99, 80.0, 100.0, np.nan]))
    assert got.iloc[:8].tolist() == [
        "Bronze", "Bronze", "Silver", "Silver", "Gold", "Gold", "Platinum", "Platinum"
    ]
    assert pd.isna(got.iloc[8])
    assert [name for name, _ in LOYALTY_TIERS] == ["Bronze", "Silver", "Gold", "Platinum"]
    with pytest.raises(InputError):
        loyalty_tier(pd.Series([100.5]))


# --------------------------------------------------------------------------- migration


def test_segment_migration_known_answer():
    before = pd.DataFrame(
        {"user_id": ["a", "b", "c", "d", "e"], "segment": ["Champions", "Champions", "New", "Lost", "At Risk"]}
    )
    after = pd.DataFrame(
        {
            "user_id": ["a", "b", "c", "f", "e", "g"],
            "segment": ["Champions", "Loyal", "Champions", "New", "Lost", "New"],
        }
    )
    mig = segment_migration(before, after)
    assert list(mig.index) == [*SEGMENTS, "(new)"] and list(mig.columns) == [*SEGMENTS, "(gone)"]
    assert mig.index.name == "before" and mig.columns.name == "after"
    expected = {
        ("Champions", "Champions"): 1,  # a stays
        ("Champions", "Loyal"): 1,  # b
        ("New", "Champions"): 1,  # c
        ("Lost", "(gone)"): 1,  # d only before
        ("At Risk", "Lost"): 1,  # e
        ("(new)", "New"): 2,  # f, g only after
    }
    for (r, c), n in expected.items():
        assert mig.loc[r, c] == n, (r, c)
    assert int(mig.to_numpy().sum()) == 7  # every user once
    assert mig.loc["(new)", "(gone)"] == 0
    assert mig.dtypes.unique().tolist() == [np.dtype("int64")]
    # empty inputs still give the full matrix
    empty = segment_migration(before.iloc[:0], after.iloc[:0])
    assert empty.shape == (len(SEGMENTS) + 1, len(SEGMENTS) + 1) and int(empty.to_numpy().sum()) == 0


def test_segment_migration_rejects_bad_input():
    ok = pd.DataFrame({"user_id": ["a"], "segment": ["Lost"]})
    with pytest.raises(InputError, match="Platinum"):
        segment_migration(ok, pd.DataFrame({"user_id": ["a"], "segment": ["Platinum"]}))
    with pytest.raises(InputError, match="duplicate"):
        segment_migration(pd.concat([ok, ok]), ok)


# --------------------------------------------------------------------------- properties

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def random_profiles(draw, min_size: int = 0) -> pd.DataFrame:
    n = draw(st.integers(min_size, 25))
    small = st.integers(0, 6)  # few distinct values: many ties
    spend_null = draw(st.sampled_from(["none", "all", "some"]))
    spend = [float(draw(st.integers(-5, 40))) for _ in range(n)]
    if spend_null == "all":
        spend = [None] * n
    elif spend_null == "some":
        spend = [None if draw(st.booleans()) else v for v in spend]
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(n)],
            "recency_days": [float(draw(small)) + 0.5 for _ in range(n)],
            "n_payments": [draw(st.integers(1, 6)) for _ in range(n)],
            "net_spend": pd.array(spend, dtype="Float64").astype("float64"),
            "tenure_days": [float(draw(st.integers(10, 20))) for _ in range(n)],
        }
    )
    if draw(st.booleans()):
        frame["p_alive"] = [draw(st.sampled_from([0.0, 0.3, 0.7, 1.0, None])) for _ in range(n)]
        frame["p_alive"] = frame["p_alive"].astype("float64")
        frame["expected_purchases_90d"] = [float(draw(st.integers(0, 4))) for _ in range(n)]
    return frame


@PROPERTY
@given(p=random_profiles())
def test_scores_segments_and_loyalty_are_in_range(p):
    s = rfm_scores(p)
    for col in ("r_score", "f_score"):
        assert s[col].between(1, 5).all() and s[col].notna().all()
    assert (s["m_score"].isna() == p["net_spend"].isna()).all()
    assert s["m_score"].dropna().between(1, 5).all()
    seg = assign_segments(s)
    assert len(seg) == len(p) and seg.notna().all() and seg.isin(SEGMENTS).all()
    score = loyalty_score(p, s)
    assert score.notna().all() and ((score >= 0) & (score <= 100)).all()
    assert loyalty_tier(score).notna().all()
    # order independence: shuffling the rows changes nothing per user
    perm = p.iloc[::-1]
    s2 = rfm_scores(perm)
    pd.testing.assert_frame_equal(s2.iloc[::-1], s)
    pd.testing.assert_series_equal(loyalty_score(perm, s2).iloc[::-1], score)
    # groups are equal sized (+-1) when values are distinct
    distinct = p.assign(recency_days=np.arange(len(p), dtype=float))
    counts = rfm_scores(distinct)["r_score"].value_counts()
    if len(p) >= 5:
        assert counts.max() - counts.min() <= 1 and len(counts) == 5


@PROPERTY
@given(p=random_profiles(min_size=1), data=st.data())
def test_improving_one_input_never_lowers_the_loyalty_score(p, data):
    i = data.draw(st.integers(0, len(p) - 1))
    column = data.draw(st.sampled_from([c for c in p.columns if c != "user_id"]))
    better = p.copy()
    old_value = p[column].iloc[i]
    if pd.isna(old_value):
        return
    step = data.draw(st.integers(1, 10))
    if column == "recency_days":
        new_value = max(old_value - step, 0.0)
    elif column == "p_alive":
        new_value = min(old_value + step / 10, 1.0)
    else:
        new_value = old_value + step
    better.iloc[i, better.columns.get_loc(column)] = new_value
    old = loyalty_score(p, rfm_scores(p)).iloc[i]
    new = loyalty_score(better, rfm_scores(better)).iloc[i]
    assert new >= old


@PROPERTY
@given(values=st.lists(st.sampled_from([-2.5, -0.0, 0.0, 1.0, 1.5, 3.0, 1e300, -1e300]), max_size=40))
def test_average_ranks_are_pandas_average_ranks(values):
    # the rank behind every score and percentile, against pandas' rank(method="average")
    v = np.array(values, dtype=np.float64)
    expected = pd.Series(v).rank(method="average").to_numpy() * 2
    assert segments_module._average_rank2(v).tolist() == expected.astype(np.int64).tolist()


@PROPERTY
@given(p=random_profiles())
def test_scores_match_the_pandas_rank_definition(p):
    # quintile = floor(5 * (rank - 0.5) / n) + 1 and percentile = (rank - 0.5) / n, with pandas'
    # average rank over the users with a value, null for the others
    def reference(values: pd.Series, score: bool) -> list:
        present = values.notna()
        rank = values[present].rank(method="average")
        out = ((5 * (rank - 0.5) / present.sum()) // 1 + 1) if score else (rank - 0.5) / present.sum()
        return [None if not has else float(out[i]) for i, has in present.items()]

    s = rfm_scores(p)
    for column, values in (("r_score", -p["recency_days"]), ("f_score", p["n_payments"].astype(float)),
                           ("m_score", p["net_spend"])):
        assert [None if pd.isna(x) else float(x) for x in s[column]] == reference(values, True)
    got = segments_module._percentile(p["net_spend"])
    assert [None if np.isnan(x) else x for x in got] == reference(p["net_spend"], False)


def test_codes_segments_and_tiers_are_strings_with_nulls_kept():
    p = profiles([1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1], spend=[70.0, None, 50, 40, 30, 20, 10])
    s = rfm_scores(p)
    assert s["rfm"].tolist() == ["555", "44-", "444", "333", "223", "222", "111"]
    assert str(s["rfm"].dtype) == "str"
    segment = assign_segments(s)
    assert segment.tolist() == ["Champions", "Champions", "Champions", "Need Attention", "At Risk",
                                "Hibernating", "Lost"]
    tiers = loyalty_tier(pd.Series([0.0, 39.99, 40.0, None, 80.0, 100.0], index=[5, 4, 3, 2, 1, 0]))
    assert tiers.index.tolist() == [5, 4, 3, 2, 1, 0]
    assert tiers.tolist()[:3] == ["Bronze", "Bronze", "Silver"] and pd.isna(tiers.iloc[3])
    assert tiers.tolist()[4:] == ["Platinum", "Platinum"]


@PROPERTY
@given(values=st.lists(st.integers(-6, 6), max_size=40), offset=st.sampled_from([0.0, 0.5, 2.0**40, -(2.0**52)]))
def test_whole_numbers_are_ranked_by_counting_as_a_sort_ranks_them(values, offset):
    # counts (n_payments) take the linear path; any value off the whole numbers, or a span
    # wider than the users, the sort: both give pandas' average ranks
    v = np.array(values, dtype=np.float64) + offset
    expected = pd.Series(v).rank(method="average").to_numpy() * 2
    assert segments_module._average_rank2(v).tolist() == expected.astype(np.int64).tolist()


def test_counts_are_ranked_without_sorting_the_users(monkeypatch):
    def no_sort(*_args, **_kwargs):
        raise AssertionError("argsort called")

    monkeypatch.setattr(segments_module.np, "argsort", no_sort)
    v = np.array([3.0, 1.0, 3.0, 2.0, 1.0, 3.0])
    assert segments_module._average_rank2(v).tolist() == [10, 3, 10, 6, 3, 10]
    with pytest.raises(AssertionError, match="argsort"):   # a span wider than the users: sorted
        segments_module._average_rank2(np.array([0.0, 100.0]))
