"""A running promotion as the lake has it: its window, its arms (the `assignments` table) and
the arms' successful payments in the window so far. Read by the API's live promotion view
(`GET /v1/promotions/{id}/live`), which adds the lines notified but not yet in the lake."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
from behavior.store.datahome import DataHome


@dataclass(frozen=True)
class Experiment:
    promotion_id: str
    name: str | None
    starts_at: datetime
    ends_at: datetime
    arms: dict[str, str]                                   # user_id -> "treatment" | "control"
    paid: dict[tuple[str, int], tuple[str, float]]         # (payment_id, line_no) -> (user_id, amount)


def _files(lake: Path, table: str) -> list[str]:
    d = lake / table
    return sorted(str(p) for p in d.rglob("*.parquet")) if d.is_dir() else []


def stamp(data_dir: Path) -> tuple:
    """Changes whenever a lake table the experiment reads changes (a new ingest, a purge)."""
    lake = DataHome(data_dir).lake
    return tuple(tuple(_files(lake, t)) for t in ("promotions", "assignments", "payments"))


def read_experiment(data_dir: Path, promotion_id: str) -> Experiment | None:
    """The promotion's window, arms and in-window successful payment lines of its users; None
    if the lake has no such promotion or nobody is assigned to it."""
    lake = DataHome(data_dir).lake
    promos, assigned, payments = (_files(lake, t) for t in ("promotions", "assignments", "payments"))
    if not promos or not assigned:
        return None
    con = duckdb.connect(config={"threads": 1})
    try:
        con.execute("SET TimeZone = 'UTC'")
        found = con.execute("SELECT name, starts_at, ends_at FROM read_parquet($f, union_by_name = true) "
                            "WHERE promotion_id = $p LIMIT 1", {"f": promos, "p": promotion_id}).fetchone()
        if found is None:
            return None
        arms = dict(con.execute('SELECT user_id, "group" FROM read_parquet($f, union_by_name = true) '
                                "WHERE promotion_id = $p", {"f": assigned, "p": promotion_id}).fetchall())
        if not arms:
            return None
        paid: dict[tuple[str, int], tuple[str, float]] = {}
        if payments:
            con.register("_arms", _arms_table(arms))
            for pid, line, user, amount in con.execute(
                    "SELECT payment_id, line_no, user_id, CAST(coalesce(amount, 0) AS DOUBLE) "
                    "FROM read_parquet($f, hive_partitioning = false) WHERE status = 'success' "
                    "AND paid_at >= $s AND paid_at < $e AND user_id IN (SELECT user_id FROM _arms)",
                    {"f": payments, "s": found[1], "e": found[2]}).fetchall():
                paid[(pid, line)] = (user, amount)
        return Experiment(promotion_id, found[0], found[1], found[2], arms, paid)
    finally:
        con.close()


def _arms_table(arms: dict[str, str]):
    import pyarrow as pa

    return pa.table({"user_id": pa.array(list(arms), pa.string())})
