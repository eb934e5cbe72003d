"""The summary `behavior run` prints: one line per served model saying what it beat, from the
report's `selection` sections."""

import numpy as np

from behavior.model_choice import Scored, choose
from behavior.store.datahome import DataHome
from pipelines.summary import run_summary


def test_the_run_summary_gives_each_served_models_choice_in_a_sentence(tmp_path):
    base = np.linspace(0.6, 0.8, 41)
    kept = choose("roc_auc", [Scored("recency", 0.70, base, baseline=True), Scored("boosting", 0.70, base)]).report()
    chosen = choose("qini", [Scored("random", 0.0, base - 0.5, baseline=True), Scored("t_learner", 0.5, base)]).report()
    report = {"run_id": "r1", "as_of": "2025-01-01T00:00:00+00:00", "bundle_version": "v1", "stages": {},
              "churn": {"selection": kept}, "promotions": {"uplift": {"selection": {"p1": chosen}}}}
    lines = run_summary(report, DataHome(tmp_path)).splitlines()
    assert "    churn: kept the baseline recency: the model, boosting, gains 0.000 ROC-AUC (95% interval 0.000 to " \
           "0.000), within its uncertainty" in lines
    assert "    promotions.uplift.p1: served t_learner: beats random by 0.500 Qini (95% interval 0.500 to 0.500)" in lines
