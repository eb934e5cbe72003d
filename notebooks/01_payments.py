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
# # 1. Payment history
#
# Volumes and seasonality, channel mix, basket sizes, failure and refund rates, and the
# largest categories and merchants of the payment lake, as of the active bundle (the lake
# views hold only payments before its `as_of`). The queries are in `behavior/payment_stats.py`,
# the plots in `behavior/plots/`.

# %%
# %matplotlib inline
from behavior import payment_stats as S
from behavior import plots as P
from pipelines.notebook import open_demo

demo = open_demo()   # $BEHAVIOR_DATA_DIR, else ./data or ../data
print(f"bundle {demo.bundle.name}, as of {demo.as_of:%Y-%m-%d}, money in {demo.currency}")

# %% [markdown]
# ## Volume per month

# %%
monthly = demo.sql(S.monthly_payments_sql("payments"))
print(f"{monthly['payments'].sum():,} successful payments by up to {monthly['customers'].max():,} customers a month "
      f"over {len(monthly)} months")
monthly.tail(6)

# %%
P.plot_monthly_volume(monthly, demo.currency)

# %% [markdown]
# ## Seasonality: the weekly rhythm

# %%
P.plot_weekday_hour(demo.sql(S.weekday_hour_sql("payments")))

# %% [markdown]
# ## Channel mix

# %%
P.plot_channel_mix(demo.sql(S.channel_mix_sql("payments")))

# %% [markdown]
# ## Basket sizes

# %%
baskets = demo.sql(S.basket_sizes_sql("payments"))
P.plot_basket_sizes(baskets, demo.sql(S.payment_values_sql("payments")), demo.currency)

# %% [markdown]
# ## Failed payments and refunds
# Failure rate = failed / attempted payments (a failed payment retried successfully counts in
# both); refund rate = refund lines / successful lines.

# %%
P.plot_failure_refund_rates(monthly)

# %% [markdown]
# ## Top categories and merchants (net revenue: sales minus refunds)

# %%
P.plot_top(demo.sql(S.top_sql("payments", "category")), "category", demo.currency)

# %%
top_merchants = demo.sql(S.top_sql("payments", "merchant_id"))
P.plot_top(top_merchants, "merchant_id", demo.currency)

# %%
top_merchants
