"""The merchant side of a bundle in memory: merchant profiles (merchants.parquet, one row per
merchant, queried like the user profiles) and the merchants' audiences
(merchant_customers.parquet). Both are optional parts of a bundle: without them the merchant
routes answer 503 and the rest of the API is unaffected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from api.parquet_read import read_one_chunk
from api.rows import json_rows
from behavior.store.bundle import MERCHANT_CUSTOMERS, MERCHANTS, BundleError, Kind, kind_of
# What a merchant query returns when it names no fields.
DEFAULT_FIELDS = ("merchant_id", "merchant_segment", "churn_risk", "customers_90d", "payments_90d",
                  "revenue_90d", "payments_trend_90d", "share_of_wallet")
AUDIENCE_FIELDS = ("user_id", "purchase_days", "payments", "revenue", "last_payment_at", "days_since")


class MerchantData:
    """Merchant profiles (view `merchants`) and audiences (view `merchant_customers`)."""

    def __init__(self, profiles: pa.Table, customers: pa.Table | None) -> None:
        self.table = profiles.combine_chunks()
        ids = self.table.column("merchant_id").to_pylist()
        self.index: dict[str, int] = dict(zip(ids, range(len(ids))))
        self.fields: dict[str, Kind] = {f.name: k for f in self.table.schema if (k := kind_of(f.type)) is not None}
        self.customers = customers.combine_chunks() if customers is not None else None
        self._db = duckdb.connect()

    def __len__(self) -> int:
        return self.table.num_rows

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own with the profiles as view `merchants`."""
        cur = self._db.cursor()
        cur.register("merchants", self.table)
        return cur

    def row(self, merchant_id: str) -> dict[str, Any] | None:
        """The merchant's profile, JSON-ready (timestamps ISO 8601 UTC, no NaN); None if unknown."""
        i = self.index.get(merchant_id)
        return None if i is None else json_rows(self.table.slice(i, 1))[0]

    def audience(self, merchant_id: str, audience: str, n: int, profiles: pa.Table,
                 erased: frozenset[str]) -> list[dict[str, Any]]:
        """Up to `n` customers of the merchant in `audience`, most purchase days (then revenue)
        first. Only users with a profile whose marketing_opt_out is false, and not in `erased`."""
        if self.customers is None:
            return []
        cur = self._db.cursor()
        try:
            cur.register("merchant_customers", self.customers)
            cur.register("profiles", profiles.select(["user_id", "marketing_opt_out"]))
            cur.register("erased", pa.table({"user_id": pa.array(sorted(erased), pa.string())}))
            cols = ", ".join(f'c."{f}"' for f in AUDIENCE_FIELDS)
            table = cur.sql(
                f"""SELECT {cols} FROM merchant_customers AS c JOIN profiles AS p ON p.user_id = c.user_id
                    WHERE c.merchant_id = ? AND c.audience = ? AND p.marketing_opt_out IS FALSE
                      AND c.user_id NOT IN (SELECT user_id FROM erased)
                    ORDER BY c.purchase_days DESC, c.revenue DESC NULLS LAST, c.user_id LIMIT ?""",
                params=[merchant_id, audience, n]).to_arrow_table()
        finally:
            cur.close()
        return json_rows(table)

    def without(self, user_ids: set[str]) -> "MerchantData":
        """These merchant data without the given users' audience rows."""
        if self.customers is None or not user_ids:
            return self
        keep = pc.invert(pc.is_in(self.customers.column("user_id"), value_set=pa.array(sorted(user_ids), pa.string())))
        return MerchantData(self.table, self.customers.filter(keep))


def load_merchants(folder: Path, listed: set[str]) -> MerchantData | None:
    """The merchant data of a verified bundle folder whose manifest lists `listed`; None without
    merchants.parquet. Raises BundleError when a listed file cannot be read or a merchant_id repeats."""
    if MERCHANTS.file not in listed:
        return None
    version = folder.name
    tables = {}
    for artifact in (MERCHANTS, MERCHANT_CUSTOMERS):   # verified: listed files have their catalogue columns
        if artifact.file not in listed:
            continue
        try:
            tables[artifact] = read_one_chunk(folder / artifact.file)
        except (pa.ArrowException, OSError) as exc:
            raise BundleError(version, f"{artifact.file} cannot be read ({type(exc).__name__})") from None
    profiles = tables[MERCHANTS]
    if pc.count_distinct(profiles.column("merchant_id")).as_py() != profiles.num_rows:
        raise BundleError(version, f"{MERCHANTS.file}: merchant_id is not unique")
    return MerchantData(profiles, tables.get(MERCHANT_CUSTOMERS))
