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
# # 6. Your own data
#
# From a shop's own order export (a CSV with its own column names, dates written day first,
# money in pounds) to customer profiles and segments, in a data home of its own: the demo's
# is not touched. The same steps on the command line:
#
# ```
# behavior --data-dir ~/shop ingest orders.csv --dayfirst --default currency=GBP \
#     --map payment_id="Order No" --map line_no=Line --map user_id="Customer No" \
#     --map paid_at="Order Date" --map item_id=SKU --map category=Department \
#     --map quantity=Qty --map amount="Line Total" --map status="Payment Status"
# behavior --data-dir ~/shop run
# ```

# %% [markdown]
# ## The export
#
# Point `EXPORT` at your file and `HOME` at the folder the lake and bundles go to. Here a
# stand-in is written first: 300 customers of a small shop over 14 months, as a shop system
# exports them (one row per order line).

# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

WORK = Path(tempfile.mkdtemp(prefix="your-data-"))
EXPORT = WORK / "orders.csv"          # your export
HOME = WORK / "shop"                  # the data home made for it

rng = np.random.default_rng(7)
departments = {"Bakery": 4.0, "Dairy": 3.0, "Produce": 5.0, "Household": 9.0, "Drinks": 6.0}
skus = [(f"SKU-{d[:3].upper()}-{n:02d}", d, price) for d, price in departments.items() for n in range(8)]
rows = []
end = pd.Timestamp("2025-03-01")
for c in range(300):
    mean_gap = rng.gamma(2.0, 15.0)                               # days between orders: each customer's own rhythm
    day = pd.Timestamp("2024-01-01") + pd.Timedelta(days=int(rng.integers(0, 400)))
    for o in range(200):
        when = day + pd.Timedelta(minutes=int(rng.integers(480, 1260)))
        if when >= end or (o and rng.random() < 0.12):           # past the export's end, or the customer left
            break
        day += pd.Timedelta(days=1 + int(rng.exponential(mean_gap)))
        status = rng.choice(["Paid", "Paid", "Paid", "Paid", "Paid", "Paid", "Paid", "Paid", "Refunded", "Failed"])
        for line, k in enumerate(rng.choice(len(skus), size=rng.integers(1, 5), replace=False), start=1):
            sku, dept, price = skus[k]
            qty = int(rng.integers(1, 4))
            rows.append({"Order No": f"SO-{c:04d}-{o:03d}", "Line": line, "Customer No": f"C{c:05d}",
                         "Order Date": when.strftime("%d/%m/%Y %H:%M"), "SKU": sku, "Department": dept,
                         "Qty": qty, "Line Total": f"{qty * price * rng.uniform(0.8, 1.2):.2f}",
                         "Payment Status": status})
pd.DataFrame(rows).to_csv(EXPORT, index=False)
print(f"{len(rows):,} order lines in {EXPORT}")
pd.read_csv(EXPORT, nrows=5)

# %% [markdown]
# ## Ingest with a column mapping and a currency
#
# `mapping` names, for each column of the lake's payments table, the export's column that
# holds it; `defaults` fills a column the export lacks (here the currency, which becomes the
# lake's reporting currency). Rows that cannot be read are quarantined with a reason, never
# dropped silently: the report counts them.

# %%
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest

home = DataHome(HOME)
options = IngestOptions(
    table="payments",
    mapping={"payment_id": "Order No", "line_no": "Line", "user_id": "Customer No", "paid_at": "Order Date",
             "item_id": "SKU", "category": "Department", "quantity": "Qty", "amount": "Line Total",
             "status": "Payment Status"},
    defaults={"currency": "GBP"},
    dayfirst=True,
)
report = ingest(home, [EXPORT], options)
file_report = report["files"][0]
print(f"lake currency {report['currency']}; columns mapped {file_report['columns']['mapped']}, "
      f"defaulted {file_report['columns']['defaulted']}")
{k: v for k, v in file_report.items() if isinstance(v, (int, str))}

# %% [markdown]
# ## Run the stages
#
# Features, segments, churn, the recommender and the rest, then a published bundle: what
# `behavior run` does. A stage that cannot run on this data (there are no promotions here)
# is skipped with a note in the run report. On a small shop the churn model may not beat the
# simple baselines (days since the last purchase, BG/NBD's P(alive)): the note says so, and the
# report's `churn` section holds the figures to judge it by.

# %%
from pipelines.config import Config
from pipelines.runner import run_pipeline

run = run_pipeline(home, Config())
print(f"bundle {run['bundle_version']}")
for part, body in run.items():
    if isinstance(body, dict) and body.get("notes"):
        print(f"note ({part}): " + "; ".join(body["notes"]))
pd.DataFrame([{"stage": name, **timing} for name, timing in run["stages"].items()])

# %% [markdown]
# ## The result: profiles and segments
#
# `open_demo` opens any data home: the bundle's tables as pandas and the lake as of the bundle.

# %%
from pipelines.notebook import open_demo

shop = open_demo(HOME)
profiles = shop.profiles
print(f"{len(profiles):,} customer profiles, money in {shop.currency}")
profiles[["user_id", "segment", "recency_days", "frequency", "net_spend", "p_alive", "churn_probability",
          "churn_reasons"]].head()

# %%
sizes = profiles.groupby("segment").agg(customers=("user_id", "size"), revenue=("net_spend", "sum"),
                                        churn=("churn_probability", "mean")).sort_values("customers", ascending=False)
sizes.round(2)

# %%
ax = sizes["customers"].plot.barh(title="Customers per segment", figsize=(6, 3))
ax.invert_yaxis()
ax.set_xlabel("customers");

# %%
ax = profiles.plot.scatter(x="recency_days", y="frequency", c="churn_probability", cmap="viridis", figsize=(6, 4),
                           title="Recency, frequency and churn probability")
ax.set_xlabel("days since the last purchase");

# %%
monthly = shop.sql("SELECT date_trunc('month', paid_at) AS month, sum(amount) AS revenue FROM payments "
                   "WHERE status = 'success' GROUP BY ALL ORDER BY month")
ax = monthly.plot(x="month", y="revenue", legend=False, title=f"Revenue per month ({shop.currency})", figsize=(6, 3))
ax.set_xlabel("");

# %%
shop.close()
