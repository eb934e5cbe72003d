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
# # 4. Recommendation quality
#
# Every candidate recommender against popularity on the validation period, the selected one
# on the held-out test period (report `recommend`), catalogue coverage, and example
# recommendations from the bundle's serving model with what explains them.

# %%
# %matplotlib inline
import pandas as pd

from behavior import plots as P
from pipelines.notebook import open_demo

demo = open_demo()
rec = demo.report.get("recommend", {})
print("selected:", rec.get("selected"), "| exclude purchased items:", rec.get("exclude_purchased"))

# %% [markdown]
# ## Metrics of every candidate against popularity

# %%
P.plot_recommender_metrics(rec)

# %%
metrics = ["precision@10", "recall@10", "ndcg@10", "map@10", "coverage"]
pd.DataFrame({name: m for name, m in rec.get("models", {}).items()}).T.reindex(columns=metrics) \
    .astype(float).sort_values("ndcg@10", ascending=False).round(4)

# %% [markdown]
# ## Which recommender is served, and what it beat
# nDCG@10 of every candidate on the validation users, and its difference to the best with the
# 95% bootstrap interval (report `recommend.selection`): the simplest candidate not beaten
# beyond that interval is served.

# %%
choice = rec.get("selection") or {}
print(choice.get("summary") or rec.get("skipped") or "the report holds no choice")
P.model_choice_table(choice).round(4)

# %%
P.plot_model_choice(choice, P.model_choice_title("recommend"))

# %% [markdown]
# ## Coverage

# %%
P.plot_coverage(rec)

# %% [markdown]
# ## Example recommendations and their explanations
# Two of the most active customers (what the model serves), one of them again with purchased
# items excluded (new items: explained by the items bought), and an unknown user (the
# popularity fallback).

# %%
model = demo.recommender()
categories = demo.item_categories()
heavy = demo.profiles.nlargest(2, "n_payments")["user_id"].tolist()
if model is None:
    examples = pd.DataFrame()
    print("the bundle has no recommender")
else:
    examples = pd.concat([P.recommendation_examples(model, heavy[:1], n=5, categories=categories),
                          P.recommendation_examples(model, heavy[1:], n=5, categories=categories,
                                                    exclude_purchased=True),
                          P.recommendation_examples(model, ["someone-new"], n=5, categories=categories)])
P.plot_recommendation_examples(examples)

# %%
examples
