"""Everything the merchants stage reads from the log, from one merchant-day table per user part.

`merchant_tables` runs the queries of the merchant profiles (loyalty, windows, share of wallet),
of merchant churn's activity and of the audiences on the same merchant-day table
(`behavior.merchant_days`) of each user part, so the lines before as_of are reduced once for all
of them; each result equals its module's own function (`merchant_profiles`,
`merchant_churn.profiles_at_cutoffs`'s activity, `merchant_customers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa

from behavior.features import UserParts
from behavior.merchant_audience import audience_query, merge_parts
from behavior.merchant_churn import activity_query
from behavior.merchant_days import over_merchant_days
from behavior.merchant_profiles import (assemble_profiles, check_profile_inputs, combine_windows, wallet_categories,
                                        wallet_query, windows_query)
from behavior.merchants import check_loyalty_inputs, combine_loyalty, loyalty_query
from behavior.sql_dialect import SqlEngine, as_engine


@dataclass(frozen=True)
class MerchantTables:
    profiles: pd.DataFrame   # `behavior.merchant_profiles.merchant_profiles`
    activity: pa.Table       # `behavior.merchant_churn.activity_sql`'s rows (per span), for `cutoff_frames`
    audience: pa.Table       # `behavior.merchant_audience.merchant_customers`


def merchant_tables(con: SqlEngine, payments: str, as_of: datetime, user_values: str | None = None,
                    tiers: str | None = None, parts: UserParts | None = None,
                    activity_ends: np.ndarray | None = None) -> MerchantTables:
    """The merchant profiles, activity and audiences as of `as_of` (arguments and errors as
    `behavior.merchant_profiles.merchant_profiles`); the activity per day, or per span of
    `activity_ends` (`behavior.merchant_churn.span_ends` of the cutoffs to come)."""
    engine = as_engine(con)
    check_profile_inputs(engine, payments)
    check_loyalty_inputs(engine, payments, user_values)
    with wallet_categories(engine, payments, as_of) as categories:
        t = over_merchant_days(engine, payments, as_of, {
            "loyalty": loyalty_query(user_values), "windows": windows_query(tiers), "wallet": wallet_query(categories),
            "activity": activity_query(activity_ends), "audience": audience_query}, parts,
            per_user=tuple(filter(None, [user_values, tiers])))
    profiles = assemble_profiles(combine_loyalty(engine, t["loyalty"]).to_pandas(),
                                 combine_windows(engine, t["windows"], t["wallet"]), as_of)
    return MerchantTables(profiles, t["activity"], merge_parts(t["audience"]))


__all__ = ["MerchantTables", "merchant_tables"]
