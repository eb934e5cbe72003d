"""report.html from a report with nothing in it (a partial run, no promotions, no churn model):
every plot says why it is empty, the page stays self-contained."""

import re

import duckdb

from behavior.store.bundle import MERCHANTS
from pipelines.report_html import key_figures, render_report


def test_an_empty_run_still_gives_a_complete_offline_page():
    report = {"run_id": "abc", "as_of": "2025-01-01T00:00:00+00:00", "bundle_version": "v1", "active": False,
              "stages": {"features": {"seconds": 0.1, "rows": 0}},
              "churn": {"skipped": "too little history", "notes": ["churn model skipped: too little history"]}}
    page, info = render_report(report, {}, duckdb.connect(), "EUR")   # no payments view, no tables
    assert info["errors"] == [] and info["figures"] == len(re.findall(r"data:image/png;base64,", page)) >= 10
    assert "not active" in page and "churn model skipped" in page and "money in EUR" in page
    assert not re.search(r"https?://", page)


def test_key_figures_name_the_headlines():
    rows = dict(key_figures({"segments": {"counts": {"Champions": 5, "Lost": 9}},
                             "churn": {"test": {"roc_auc": 0.8, "brier": 0.2, "lift_at_10pct": 1.5, "churn_rate": 0.4},
                                       "baselines": {"recency": {"roc_auc": 0.75}}},
                             "stages": {"a": {"seconds": 1.0}}}, customers=14))
    assert rows["customers in the bundle"] == "14" and rows["largest segment"] == "Lost (9)"
    assert rows["churn model ROC-AUC (held-out cutoff)"] == "0.800 (best baseline 0.750)"


def test_the_merchant_side_is_drawn_and_its_notes_listed():
    import pyarrow as pa

    merchants = pa.table({"merchant_id": ["m1", "m2"], "merchant_segment": ["at_risk", "steady"],
                          "churn_risk": [0.9, 0.1], "revenue_90d": [1000.0, 50.0], "share_of_wallet": [0.5, 0.3]})
    report = {"merchants": {"churn": {"notes": ["the model does not beat the volume_trend baseline"]}}}
    page, info = render_report(report, {MERCHANTS: merchants}, duckdb.connect(), "EUR")
    assert info["errors"] == [] and "<h2>Merchants</h2>" in page
    assert "<b>merchants</b>: the model does not beat the volume_trend baseline" in page
    assert 'alt="The merchant side: segments, churn risk and share of wallet"' in page


def _choice(metric: str, gain: float) -> dict:
    """A `selection` section from the real rule: a baseline and a model `gain` better per unit."""
    import numpy as np

    from behavior.model_choice import choose, resamples, score_per_unit

    rng = np.random.default_rng(0)
    idx = resamples(500, 100)
    base = rng.normal(0.5, 0.1, 500)
    return choose(metric, [score_per_unit("recency", base, idx, baseline=True),
                           score_per_unit("boosting", base + gain + rng.normal(0, 0.05, 500), idx)]).report()


def test_the_model_choice_section_has_each_served_model_with_its_sentence_table_and_plot():
    report = {"churn": {"selection": _choice("roc_auc", 0.0)}, "recommend": {"selection": _choice("ndcg@10", 0.05)},
              "promotions": {"uplift": {"selection": {"promo1": _choice("qini", 0.0)}}},
              "loyalty": {"selection": {"metric": "neg_mse_holdout_purchases", "chosen": "bgnbd", "candidates": [],
                                        "summary": "served bgnbd without a comparison: too little history"}}}
    page, info = render_report(report, {}, duckdb.connect())
    assert info["errors"] == []
    section = page[page.index("<h2>Model choice</h2>"):page.index("<h2>", page.index("<h2>Model choice</h2>") + 1)]
    for title in ("Churn probability", "Recommendations", "Uplift of promotion promo1",
                  "Purchase model (expected purchases, P(alive), CLV)"):
        assert f"<h3>{title}" in section
    assert "<b>kept the baseline recency: the model, boosting, gains" in section
    assert "<b>served boosting: beats recency by 0.047 nDCG@10 (95% interval 0.043 to 0.051)</b>" in section
    assert "<b>served bgnbd without a comparison: too little history</b>" in section
    assert section.count('alt="Churn probability') == 1 and section.count("<figure>") == 3   # none without candidates
    assert section.count("<td><b>served</b></td>") == 3


def test_no_model_choice_section_without_a_choice():
    page, _ = render_report({"churn": {"skipped": "too little history"}}, {}, duckdb.connect())
    assert "Model choice" not in page


def test_the_monthly_figures_read_the_runs_written_user_parts(tmp_path, monkeypatch):
    # a run's parts once written give the page the same monthly table as the one-piece query,
    # on a cursor of the run's connection (in UTC whatever the connection's time zone); parts
    # not yet written are not written for the page
    from datetime import datetime, timezone

    import pandas as pd

    from behavior import features as F
    from behavior.payment_stats import monthly_payments_sql
    from behavior.synth import SynthConfig, generate
    from pipelines.report_html import MonthlyFigures

    con = duckdb.connect()
    con.register("_p", generate(SynthConfig(users=60, months=4, seed=3)).tables["payments"])
    con.execute("CREATE TABLE lines AS SELECT * FROM _p")     # (a registered table is the connection's own)
    con.execute("CREATE VIEW payments AS SELECT * FROM lines")
    con.execute("SET TimeZone = 'Pacific/Kiritimati'")    # UTC+14: another month for some lines
    as_of = datetime(2100, 1, 1, tzinfo=timezone.utc)
    monkeypatch.setattr(F, "PART_LINES", 100)
    utc = con.cursor()
    utc.execute("SET TimeZone = 'UTC'")
    whole = utc.sql(monthly_payments_sql("payments")).df()
    with F.UserParts(F.as_engine(con), "payments", as_of) as parts:
        pd.testing.assert_frame_equal(MonthlyFigures(con, parts).result(), whole)
        assert not parts.written
        parts.relations()
        assert parts.count > 2
        figures = MonthlyFigures(con, parts)
        pd.testing.assert_frame_equal(figures.result(), whole)
        figures.stop()
        figures.stop()      # (stopping twice, as the runner and the page may)
