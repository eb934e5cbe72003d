"""What a stage of `behavior run` is: a function of a `StageContext` that returns a
`StageResult` (its output for later stages, its bundle artifacts keyed by catalogue entry, its
report section). The runner (pipelines/runner.py) orders the stages, keeps their outputs and
writes their artifacts through the store; a stage writes nothing itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Generic, TypeVar

import duckdb

from behavior.errors import BehaviorError
from behavior.features import UserParts
from behavior.sql_dialect import DuckDBEngine
from behavior.store.bundle import Artifact
from behavior.store.datahome import DataHome
from pipelines.config import Config

# Columns that place a row of each table in time (rows at or after as_of are not visible).
TIME_COLUMNS = {"payments": "paid_at", "users": "signup_at", "promotions": "starts_at",
                "assignments": "assigned_at", "items": None}
UNCUT_USERS = "users_uncut"   # the whole users table, not cut at as_of (both engines)

T = TypeVar("T")


@dataclass(frozen=True)
class StageResult(Generic[T]):
    """What a stage made: `output` for the stages after it (`ctx.outputs[<stage>]`; rows are
    counted if it has num_rows or len), `artifacts` for the bundle (each a catalogue entry whose
    producing stage is this one) and `report`, its section of the run report (None: none)."""
    output: T
    artifacts: Mapping[Artifact, Any] = field(default_factory=dict)
    report: dict[str, Any] | None = None


@dataclass
class StageContext:
    home: DataHome
    config: Config
    as_of: datetime
    con: duckdb.DuckDBPyConnection
    tables: set[str]                      # lake tables present (as views)
    outputs: dict[str, Any] = field(default_factory=dict)   # stage name -> its StageResult.output
    engine: Any = None     # where log-level SQL runs (a SqlEngine); default: DuckDB over `con`
    # The payments before as_of in user parts, written once for the run's per-user
    # queries (features, loyalty holdout, merchants, promotion starts); see behavior.features.
    user_parts: UserParts | None = None
    # progress messages of a stage's long loops (the churn fit, the recommender search)
    progress: Callable[[str], None] = field(default=lambda _: None, repr=False)
    # the stages whose output has one row per user (their columns go into the profiles)
    per_user: tuple[str, ...] = ()
    _has_amounts: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.engine is None:
            self.engine = DuckDBEngine(self.con)
        if self.user_parts is None and "payments" in self.tables:
            self.user_parts = UserParts(self.engine, "payments", self.as_of)

    def has_amounts(self) -> bool:
        """Whether any payment line before as_of has an amount. Without any, the stages leave
        out their spend-based outputs (monetary value, Gamma-Gamma and CLV, revenue lifts) and
        their report sections say so, instead of reading every spend as 0."""
        if self._has_amounts is None:
            n = self.engine.arrow("SELECT count(amount) AS n FROM payments")["n"][0].as_py()
            self._has_amounts = bool(n)
        return self._has_amounts


class StageSkipped(BehaviorError):
    """A stage cannot work on the data it was given; the message says why (it goes in the
    report, added to `report`, the section the stage had made so far)."""

    def __init__(self, why: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(why)
        self.report = dict(report or {})


@dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]
    run: Callable[[StageContext], StageResult]
    help: str = ""
    # the stages of `needs` it can do without (it reads them with ctx.outputs.get): run before
    # it when planned, but their being skipped does not skip it
    optional: frozenset[str] = frozenset()
    log_level: bool = False   # its log-level SQL runs on the run's engine (else: per-user work on the driver)
    per_user: bool = False    # its output has one row per user, joined into the profiles

    def missing_input(self, outputs: dict[str, Any]) -> str | None:
        """The first required stage of `needs` without an output (it was skipped), or None."""
        return next((d for d in self.needs if d not in self.optional and d not in outputs), None)
