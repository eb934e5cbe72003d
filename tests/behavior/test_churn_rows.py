"""behavior.churn_rows: the planned rows are those the whole cutoffs give to the fit and the choice."""

from datetime import datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from behavior import churn as C
from behavior import churn_choice as CC
from behavior import churn_rows as R
from behavior.features import user_features
from behavior.sql_dialect import as_engine
from behavior.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def lake():
    pay = generate(SynthConfig(users=3000, months=24, seed=11)).tables["payments"]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")   # parallel float sums differ in the last bit; compare exactly
    con.register("payments", pay)
    last = pay["paid_at"].max().to_pydatetime()
    as_of = datetime(last.year, last.month, last.day, 7, 30, tzinfo=timezone.utc) + timedelta(days=1)
    cuts = C.choose_cutoffs(as_of, pay["paid_at"].min().to_pydatetime())
    return con, as_of, cuts


@pytest.mark.parametrize("n, rows, seed", [(10, 3, 0), (1000, 700, 4), (5, 9, 1), (2500, 2499, 7)])
def test_cap_rows_are_the_rows_dataframe_sample_takes(n, rows, seed):
    frame = pd.DataFrame({"v": np.arange(n)})
    expected = frame.sample(rows, random_state=seed)["v"].to_numpy() if n > rows else np.arange(n)
    assert np.array_equal(R.cap_rows(n, rows, seed), expected)


def test_the_planned_datasets_are_the_rows_the_whole_cutoffs_give_the_fit_and_the_choice(lake, monkeypatch):
    """The stage's samples of the whole cutoffs (each training cutoff capped, all of them capped
    again, the validation customers sampled; each cutoff's transaction model fitted on a sample
    of its customers) taken from `cutoff_datasets` the long way, against the planned datasets,
    which build the features of those rows only: the same frames, bit for bit."""
    monkeypatch.setattr(C, "MAX_BGNBD_FIT", 500)   # the cutoffs' models are fitted on a sample of their customers
    con, as_of, cuts = lake
    rows, units, seed = 700, 400, 3
    whole = list(C.cutoff_datasets(con, "payments", [*cuts.train, cuts.test], cuts.label_days))
    capped = [f.sample(rows, random_state=seed + 1 + i) if len(f) > rows else f for i, f in enumerate(whole[:-1])]
    train = CC.in_order(pd.concat(capped, ignore_index=True))
    assert len(train) > rows and all(len(f) > rows for f in whole[:-1]) and len(whole[-1]) > units
    train = CC.in_order(train.sample(rows, random_state=seed))
    test = whole[-1].iloc[np.sort(np.random.default_rng(0).choice(len(whole[-1]), units, replace=False))]

    customers = user_features(con, "payments", as_of).select(["user_id", "first_purchase_at"])
    plan = R.plan_rows(customers.column("first_purchase_at"), cuts.train, cuts.test, rows, seed, units)
    got = list(R.planned_datasets(as_engine(con), "payments", customers.column("user_id"), plan, cuts.label_days))
    got_train = CC.in_order(pd.concat([f for f, _ in got[:-1]], ignore_index=True))
    pd.testing.assert_frame_equal(got_train, train, check_exact=True)
    pd.testing.assert_frame_equal(got[-1][0], test.reset_index(drop=True), check_exact=True)
    for (_, labels), c in zip(got, [*capped, whole[-1]]):   # the labels the class counts are taken from
        assert labels.tolist() == c.sort_values("user_id")["churned"].tolist()
    assert [len(r.members) for r in plan] == [len(f) for f in whole]
    assert sum(len(r.needed) for r in plan) < 0.6 * sum(len(f) for f in whole)   # the point: most rows are never built
