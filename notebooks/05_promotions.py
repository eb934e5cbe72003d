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
# # 5. Promotions
#
# How well past promotions worked (lift over a randomized control group with 95% intervals,
# report `promotions.effectiveness`), how well the uplift model ranks users (held-out Qini
# curve), and a targeting what-if: expected incremental profit of the target list by budget,
# with the same eligibility rules as `POST /v1/promotions/targets`.

# %%
# %matplotlib inline
import numpy as np
import pandas as pd

from behavior import plots as P
from behavior.targeting import Economics, budget_curve, eligible_mask
from pipelines.notebook import open_demo

demo = open_demo()
promotions = demo.report.get("promotions", {})

# %% [markdown]
# ## Lift per promotion

# %%
P.lift_table(promotions.get("effectiveness"))[
    ["promotion_id", "name", "target", "status", "lift", "lift_low", "lift_high", "revenue_lift", "reason"]].round(4)

# %%
P.plot_promotion_lift(promotions.get("effectiveness"), demo.currency)

# %% [markdown]
# ## Which ranking each promotion arm serves
# Per arm, every candidate from no targeting (`random`) to the DR-learner, with its validation
# Qini and 95% bootstrap interval; the simplest candidate not beaten beyond its interval is chosen.

# %%
P.selection_table(promotions.get("uplift"))

# %% [markdown]
# What each arm serves and what it beat, with each candidate's Qini minus the best one's
# (paired 95% interval):

# %%
from IPython.display import display

arms = [(title, sel) for path, title, sel in P.served_models(demo.report) if path.startswith("promotions.uplift.")]
for title, sel in arms:
    print(f"{title}: {sel['summary']}")
    display(P.plot_model_choice(sel, title))
if not arms:
    print("no uplift model in this bundle:", (promotions.get("uplift") or {}).get("notes"))

# %% [markdown]
# ## Qini curve of the uplift model (held-out users)

# %%
P.plot_qini(promotions.get("uplift"))

# %% [markdown]
# ## Targeting what-if
# Economics of a hypothetical promotion: value of one incremental conversion, coupon cost per
# redemption and contact cost, in the lake's currency. Opted-out users and users contacted in
# the last 30 days are not eligible.

# %%
economics = Economics(value_per_conversion=20.0, coupon_cost=3.0, contact_cost=0.1)
scores = demo.table("uplift_scores") if demo.has("uplift_scores.parquet") else pd.DataFrame()
target = "any" if "any" in set(scores.get("target", [])) else (scores["target"].iloc[0] if len(scores) else None)
if target is None:
    curve = pd.DataFrame()
    print("no uplift model in this bundle: targeting uses the fallback rule and claims no incremental figure")
else:
    profiles = demo.profiles.set_index("user_id")
    contacts = demo.table("contacts").set_index("user_id")["last_contacted_at"] if demo.has("contacts.parquet") \
        else pd.Series(dtype="datetime64[us, UTC]")
    days = ((pd.Timestamp(demo.as_of) - contacts.reindex(profiles.index)).dt.total_seconds() / 86400).to_numpy()
    eligible = profiles.index[eligible_mask(profiles["marketing_opt_out"].fillna(True).to_numpy(bool), days, 30)]
    candidates = scores[(scores["target"] == target) & scores["user_id"].isin(eligible)]
    budgets = np.unique(np.linspace(0, len(candidates), 21).round().astype(int))[1:]
    curve = budget_curve(candidates, economics, budgets)
    print(f"target {target!r}: {len(candidates):,} eligible users of {len(profiles):,}")
P.plot_targeting_what_if(curve, demo.currency, title=f"Targeting what-if for target {target!r}")

# %%
curve
