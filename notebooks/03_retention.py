# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3. Retention and churn
#
# Cohort retention, retention curves per segment, and how good the churn model is: its
# calibration, cumulative gain and lift against the baselines on the held-out cutoff (report
# `churn`), and the most common reasons given to customers at risk.

# %%
# %matplotlib inline
import pandas as pd

from behavior import plots as P
from pipelines.notebook import open_demo

demo = open_demo()
churn = demo.report.get("churn", {})
print("churn model:", churn.get("skipped") or f"horizon {churn.get('horizon_days')} days, "
      f"test cutoff {str((churn.get('cutoffs') or {}).get('test'))[:10]}")

# %% [markdown]
# ## Cohort retention

# %%
P.plot_cohort_retention(demo.table("cohort_retention"))

# %% [markdown]
# ## Retention curves per segment

# %%
P.plot_retention_curves(demo.table("retention_curves"))

# %% [markdown]
# ## The churn model against its baselines (held-out cutoff)

# %%
rows = {"model": churn.get("test", {}), **churn.get("baselines", {})}
pd.DataFrame(rows).T.reindex(columns=["roc_auc", "pr_auc", "brier", "lift_at_10pct", "n", "churn_rate"]).round(3)

# %% [markdown]
# ## Which churn score is served, and what it beat
# Every candidate on the validation customers with its ROC-AUC and the difference to the best,
# 95% bootstrap intervals (report `churn.selection`): a model is served only when it beats the
# baselines beyond that uncertainty; otherwise the best simple baseline, calibrated, is.

# %%
choice = churn.get("selection") or {}
print(choice.get("summary") or churn.get("skipped") or "the report holds no choice")
P.model_choice_table(choice).round(4)

# %%
P.plot_model_choice(choice, P.model_choice_title("churn"))

# %%
P.plot_calibration(churn)

# %%
P.plot_gain_lift(churn)

# %% [markdown]
# ## Why customers are at risk

# %%
P.plot_churn_reasons(demo.profiles)

# %%
at_risk = demo.profiles.nlargest(5, "churn_probability")
at_risk[["user_id", "segment", "churn_probability", "recency_days", "p_alive", "churn_reasons"]]
