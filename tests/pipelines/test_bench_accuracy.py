"""`behavior bench accuracy`: the real data sets written as exports that ingest reads whole, and
the table over a small synthetic lake and the CDNOW sample."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from pipelines.bench.accuracy import REAL_DATA, format_accuracy
from pipelines.bench.datasets import cdnow_export, donations_export
from tests.e2e.test_cli import behavior


def test_donations_expand_to_gifts_that_give_back_the_summary(tmp_path):
    data = donations_export(REAL_DATA / "donations.csv", tmp_path / "gifts.csv")
    years: dict[str, list[int]] = {}
    with open(data.path, newline="") as fh:
        for row in csv.DictReader(fh):
            years.setdefault(row["donor_id"], []).append(int(row["gift_date"][:4]) - 1995)
    assert all(min(y) == 0 and len(set(y)) == len(y) for y in years.values())   # a first gift in 1995, one a year
    summary = Counter((len(y) - 1, max(y)) for y in years.values())
    with open(REAL_DATA / "donations.csv", newline="") as fh:
        want = {(int(r["frequency"]), int(r["recency"])): int(r["weights"]) for r in csv.DictReader(fh)}
    assert summary == want and sum(want.values()) == 11_104


def test_cdnow_export_is_ingested_whole_with_its_mapping(tmp_path):
    data = cdnow_export(REAL_DATA / "CDNOW_sample.txt", tmp_path / "orders.csv")
    out = behavior(tmp_path / "home", "ingest", str(data.path), *data.ingest_args, "--json")
    rep = json.loads(out.stdout)
    assert (rep["accepted"], rep["duplicates"], rep["rejected"]) == (6_919, 0, 0)


def test_a_bad_donations_row_names_the_file_and_row(tmp_path):
    bad = tmp_path / "donations.csv"
    bad.write_text("frequency,recency,periods,weights\n0,0,6,3\n3,1,6,2\n")
    with pytest.raises(Exception, match=r"donations.csv, row 3: frequency 3 and recency 1"):
        donations_export(bad, tmp_path / "gifts.csv")


@pytest.mark.slow
def test_bench_accuracy_on_a_small_synthetic_lake_and_cdnow(tmp_path):
    out = behavior(tmp_path / "home", "bench", "accuracy", "--users", "1000", "--datasets", "synthetic,cdnow",
                   "--out", str(tmp_path / "work"), "--json")
    results = json.loads(out.stdout)
    assert [r["dataset"] for r in results] == ["synthetic", "CDNOW"]
    for res in results:
        rows = [r for r in res["rows"] if "skipped" not in r]
        for r in rows:
            if r["low"] is not None:
                assert r["low"] <= r["value"] <= r["high"], (res["dataset"], r)
        for stage in {r["stage"] for r in rows}:
            served = [r["candidate"] for r in rows if r["stage"] == stage and r["served"]]
            assert len(served) == 1, (res["dataset"], stage, served)
        stages = {r["stage"] for r in res["rows"]}
        assert {"churn", "recommend", "promotions.uplift", "merchants.churn"} <= stages
        churn = [r for r in rows if r["stage"] == "churn"]
        assert any(r["baseline"] for r in churn) and any(not r["baseline"] for r in churn)
        assert all(r["low"] is not None for r in churn)      # every churn comparison has intervals
    cdnow = {(r["stage"], r.get("candidate")): r for r in results[1]["rows"]}
    assert "item" in cdnow[("recommend", None)]["skipped"]            # CDNOW has no items
    assert "promotions.uplift" in {s for s, c in cdnow if c is None}
    forward = "churn (forward 273 d)"
    assert cdnow[(forward, "churn_probability")]["served"]
    assert cdnow[(forward, "bgnbd_expected_purchases")]["value"] == pytest.approx(0.773, abs=0.01)   # the figure
    assert 0.7 < cdnow[("loyalty (forward 273 d)", "bgnbd")]["value"] < 1.1
    assert results[1]["holdout"]["customers"] == 2_357
    assert results[1]["churn_horizon"]["days"] == 90    # CDNOW's rhythm (and its 273 days of history) keep 90
    table = format_accuracy(results).splitlines()
    assert table[0].startswith("| data set | stage | metric | candidate |")
    assert sum(1 for line in table if line.startswith("| synthetic") or line.startswith("| CDNOW")) == \
        sum(len(r["rows"]) for r in results)


@pytest.mark.slow
def test_on_the_donations_the_served_churn_score_ranks_the_next_three_years_like_recency(tmp_path):
    """Yearly donors: the churn stage reads a 365-day horizon from their gifts before as_of, and
    the served score ranks who gives nothing in 1999-2001 at least as well as days since the
    last gift (with the old fixed 90-day horizon it ranked them at 0.343, recency at 0.837)."""
    out = behavior(tmp_path / "home", "bench", "accuracy", "--datasets", "donations", "--out", str(tmp_path / "work"),
                   "--json")
    (res,) = json.loads(out.stdout)
    assert res["churn_horizon"]["days"] == 365 and res["churn_horizon"]["source"] == "data"
    forward = {r["candidate"]: r for r in res["rows"] if r["stage"] == "churn (forward 1096 d)" and "skipped" not in r}
    assert forward["churn_probability"]["served"]
    assert forward["churn_probability"]["value"] >= forward["recency"]["value"] - 0.005, forward
    assert f"churn horizon 365 days: {res['churn_horizon']['reason']}" in format_accuracy([res])


def test_an_unknown_data_set_or_a_missing_real_data_folder_is_a_usage_error(tmp_path):
    out = behavior(tmp_path / "home", "bench", "accuracy", "--datasets", "cdnow,nope", check=False)
    assert out.returncode == 2 and "unknown data set nope" in out.stderr and "synthetic, cdnow" in out.stderr
    out = behavior(tmp_path / "home", "bench", "accuracy", "--datasets", "cdnow", "--real-data", str(tmp_path),
                   check=False)
    assert out.returncode == 2 and f"{tmp_path / 'CDNOW_sample.txt'}: not found" in out.stderr
    assert "--real-data" in out.stderr and "Traceback" not in out.stderr
