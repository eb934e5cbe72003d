"""The canonical tables of the lake: their columns, types, defaults and keys.

One definition serves ingest (parsing and validation), the lake writer, the stages and the
tests. Types are logical; `arrow_type` gives the physical Arrow type stored in Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

ROW = "_source_row"   # the column of an input's rows holding each row's 1-based number in its file
CHANNELS = ("app", "web", "wap", "qr", "pos", "other")
STATUSES = ("success", "failed", "refund")
GROUPS = ("treatment", "control")

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int32(),
    "decimal": pa.decimal128(18, 2),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "bool": pa.bool_(),
}


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # one of ARROW_TYPES
    required: bool = False
    default: str | None = None
    choices: tuple[str, ...] | None = None
    is_id: bool = False  # an identifier: trimmed, checked for personal data, never empty

    @property
    def arrow_type(self) -> pa.DataType:
        return ARROW_TYPES[self.type]


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    # "append": fact table, rows with a known key are skipped (never duplicated).
    # "upsert": dimension table, a newer row with a known key replaces the stored one.
    mode: str = "upsert"
    partition_by: str | None = None  # a derived column (e.g. month of paid_at)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=not c.required) for c in self.columns])


PAYMENTS = Table(
    name="payments",
    columns=(
        Column("payment_id", "string", is_id=True),
        Column("line_no", "int"),
        Column("user_id", "string", required=True, is_id=True),
        Column("merchant_id", "string", default="unknown", is_id=True),
        Column("item_id", "string", required=True, is_id=True),
        Column("category", "string"),
        Column("quantity", "int", default="1"),
        Column("amount", "decimal"),
        Column("currency", "string"),
        Column("paid_at", "timestamp", required=True),
        Column("channel", "string", default="other", choices=CHANNELS),
        Column("status", "string", default="success", choices=STATUSES),
        Column("promotion_id", "string", is_id=True),
    ),
    key=("payment_id", "line_no"),
    mode="append",
    partition_by="month",
)

ITEMS = Table(
    name="items",
    columns=(
        Column("item_id", "string", required=True, is_id=True),
        Column("category", "string"),
        Column("merchant_id", "string", default="unknown", is_id=True),
        Column("price", "decimal"),
        Column("active", "bool", default="true"),
    ),
    key=("item_id",),
)

USERS = Table(
    name="users",
    columns=(
        Column("user_id", "string", required=True, is_id=True),
        Column("signup_at", "timestamp"),
        Column("marketing_opt_out", "bool", default="false"),
    ),
    key=("user_id",),
)

PROMOTIONS = Table(
    name="promotions",
    columns=(
        Column("promotion_id", "string", required=True, is_id=True),
        Column("name", "string"),
        Column("starts_at", "timestamp", required=True),
        Column("ends_at", "timestamp", required=True),
        Column("target", "string", default="any"),
        Column("cost_per_redemption", "decimal", default="0"),
    ),
    key=("promotion_id",),
)

ASSIGNMENTS = Table(
    name="assignments",
    columns=(
        Column("promotion_id", "string", required=True, is_id=True),
        Column("user_id", "string", required=True, is_id=True),
        Column("group", "string", required=True, choices=GROUPS),
        Column("assigned_at", "timestamp"),
    ),
    key=("promotion_id", "user_id"),
)

TABLES: dict[str, Table] = {t.name: t for t in (PAYMENTS, ITEMS, USERS, PROMOTIONS, ASSIGNMENTS)}


def table(name: str) -> Table:
    """The canonical table called `name`; a clear error for an unknown name."""
    try:
        return TABLES[name]
    except KeyError:
        from behavior.errors import InputError

        raise InputError(f"unknown table {name!r}; the canonical tables are: {', '.join(TABLES)}") from None
