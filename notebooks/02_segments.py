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
# # 2. Customer segments and loyalty
#
# RFM scores and the segments cut from them, how customers moved between segments over the
# last 90 days, the loyalty score and tiers, merchant loyalty and the merchant side (merchant
# segments, churn risk, share of wallet). Definitions are in `behavior/segments.py`,
# `behavior/merchants.py`, `behavior/merchant_profiles.py` and `behavior/merchant_churn.py`.

# %%
# %matplotlib inline
from datetime import timedelta

from behavior import plots as P
from behavior.features import user_features
from behavior.segments import assign_segments, rfm_scores, segment_migration
from pipelines.notebook import open_demo

demo = open_demo()
profiles = demo.profiles
print(f"{len(profiles):,} customers as of {demo.as_of:%Y-%m-%d}")

# %% [markdown]
# ## RFM distribution
# Each cell of the recency x frequency-monetary grid with its customers and the segment it
# belongs to.

# %%
P.plot_rfm_distribution(profiles)

# %% [markdown]
# ## Segment sizes

# %%
P.plot_segment_sizes(profiles["segment"].value_counts())

# %%
profiles.groupby("segment")[["recency_days", "n_payments", "net_spend", "clv", "p_alive"]].median().round(2)

# %% [markdown]
# ## Segment migration over the last 90 days
# The segments 90 days before as_of are computed with the same library functions on the
# features at that date (the lake views hold nothing after as_of, and `user_features` reads
# only events before its own as_of).

# %%
before_at = demo.as_of - timedelta(days=90)
before = rfm_scores(user_features(demo.con, "payments", before_at).to_pandas())
before["segment"] = assign_segments(before)
migration = segment_migration(before[["user_id", "segment"]], profiles[["user_id", "segment"]])
P.plot_segment_migration(migration, f"{before_at:%Y-%m-%d}", f"{demo.as_of:%Y-%m-%d}")

# %% [markdown]
# ## Loyalty score and tiers

# %%
P.plot_loyalty_tiers(profiles)

# %% [markdown]
# ## Which purchase model is served
# P(alive), expected purchases and CLV come from a BG/NBD-family model chosen on a holdout
# (report `loyalty.selection`): each candidate's negative squared error of the holdout purchases
# and its difference to the best, 95% bootstrap intervals.

# %%
loyalty_choice = demo.report.get("loyalty", {}).get("selection") or {}
print(loyalty_choice.get("summary") or "the report holds no choice")
P.model_choice_table(loyalty_choice).round(4)

# %%
P.plot_model_choice(loyalty_choice, P.model_choice_title("loyalty"))

# %% [markdown]
# ## Merchant loyalty

# %%
merchants = demo.table("merchants")
P.plot_merchant_loyalty(merchants, demo.currency)

# %%
merchants.sort_values("revenue", ascending=False).head(10)[
    ["merchant_id", "customers", "revenue", "repeat_customer_rate", "retention_90d", "mean_customer_clv",
     "failure_rate", "refund_rate"]].round(3)

# %% [markdown]
# ## The merchant side: segments, churn risk and share of wallet
#
# Merchant segments (growing, steady, declining, at risk, new, dormant) follow the rules of
# `behavior/merchant_profiles.py`. The churn risk is P(a merchant's payments over the next 90
# days fall below half of the last 90); revenue at stake is that risk times its net revenue of
# the last 90 days. The run report says whether the model or a simpler baseline was published,
# and by how much it differs:

# %%
merchant_churn = (demo.report.get("merchants") or {}).get("churn", {})
print((merchant_churn.get("selection") or {}).get("summary") or merchant_churn.get("skipped"))
merchant_churn.get("notes")

# %%
P.plot_model_choice(merchant_churn.get("selection"), P.model_choice_title("merchants.churn"))

# %%
P.plot_merchant_health(merchants, demo.currency)

# %%
at_stake = merchants.assign(revenue_at_stake=P.revenue_at_stake(merchants))
at_stake.sort_values("revenue_at_stake", ascending=False).head(10)[
    ["merchant_id", "merchant_segment", "churn_risk", "revenue_at_stake", "revenue_90d", "payments_trend_90d",
     "share_of_wallet", "churn_reasons"]].round(3)
