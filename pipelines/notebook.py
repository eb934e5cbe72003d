"""The one way notebooks load data: `open_demo()` finds the data home, opens the lake as of
the active bundle and reads the bundle.

    from pipelines.notebook import open_demo
    demo = open_demo()                 # $BEHAVIOR_DATA_DIR, else ./data, else ../data
    demo.report["churn"]["test"]       # the run report
    demo.profiles.head()               # bundle tables as pandas
    demo.sql("SELECT count(*) FROM payments")   # lake views holding only rows before as_of

The lake views are those the pipeline's stages see (`pipelines.runner.open_context` at the
bundle's as_of), so figures computed from the lake match the bundle. Nothing is written to
the lake or the bundle.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from behavior.errors import BehaviorError
from behavior.recommend.serving import ServingModel
from behavior.store.bundle import ITEM_CATEGORIES, RECOMMENDER, REPORT, current_folder, read_recommender, verify
from behavior.store.datahome import ENV_VAR, DataHome
from pipelines.config import Config
from pipelines.lake import read_meta, table_files


def find_home(data_dir: str | Path | None = None) -> DataHome:
    """`data_dir`, else $BEHAVIOR_DATA_DIR, else the first of ./data and ../data with a
    published bundle (a notebook runs in notebooks/, the demo writes ./data at the root)."""
    if data_dir or os.environ.get(ENV_VAR):
        return DataHome.resolve(data_dir)
    for candidate in (Path("data"), Path("..") / "data"):
        home = DataHome.resolve(candidate)
        if home.current.exists():
            return home
    return DataHome.resolve(None)


@dataclass
class Demo:
    """A data home opened for analysis: the bundle, its report and the lake as of the bundle."""

    home: DataHome
    bundle: Path
    report: dict
    as_of: datetime
    con: duckdb.DuckDBPyConnection | None     # None when the data home has no lake
    currency: str | None = None
    _tables: dict = field(default_factory=dict, repr=False)

    def table(self, name: str) -> pd.DataFrame:
        """A bundle table as pandas ("profiles" or "profiles.parquet"); cached."""
        fname = name if name.endswith(".parquet") else f"{name}.parquet"
        if fname not in self._tables:
            path = self.bundle / fname
            if not path.exists():
                raise BehaviorError(f"bundle {self.bundle.name} has no {fname} (the stage that writes it did not run)")
            self._tables[fname] = pq.read_table(path).to_pandas()
        return self._tables[fname]

    def has(self, name: str) -> bool:
        """Whether the bundle holds a file."""
        return (self.bundle / name).exists()

    @cached_property
    def profiles(self) -> pd.DataFrame:
        return self.table("profiles")

    def sql(self, query: str) -> pd.DataFrame:
        """A query over the lake views (payments, users, items, promotions, assignments)."""
        if self.con is None:
            raise BehaviorError(f"the data home {self.home.root} has no lake; run `behavior ingest` first")
        return self.con.sql(query).df()

    def recommender(self) -> ServingModel | None:
        """The bundle's serving recommender (recommender.npz), or None when there is none."""
        path = self.bundle / RECOMMENDER.file
        if not path.exists():
            return None
        return ServingModel.from_arrays(read_recommender(path))

    def item_categories(self) -> dict[str, str]:
        """item_id -> category, from the bundle (item_categories.parquet) or the lake's items."""
        if self.has(ITEM_CATEGORIES.file):
            t = self.table("item_categories")
        elif self.con is not None and table_files(self.home.lake, "items"):
            t = self.sql("SELECT item_id, category FROM items")
        else:
            return {}
        return dict(zip(t["item_id"].astype(str), t["category"].astype(str)))

    def close(self) -> None:
        if self.con is not None:
            self.con.close()


def open_demo(data_dir: str | Path | None = None, bundle: str | None = None) -> Demo:
    """Open a data home (see `find_home`) at its active bundle, or at bundle version `bundle`."""
    from pipelines.runner import open_context

    home = find_home(data_dir)
    if bundle:
        folder = home.bundles / bundle
        if not folder.is_dir():
            raise BehaviorError(f"no bundle {bundle!r} in {home.bundles}")
        verify(folder)
    else:
        try:
            folder = current_folder(home)
        except BehaviorError:
            raise BehaviorError(f"no published bundle in {home.root}: run `make demo` (or `behavior demo --no-serve`), "
                                f"or set {ENV_VAR} to a data home with one") from None
    report = json.loads((folder / REPORT.file).read_text())
    as_of = datetime.fromisoformat(report["as_of"])
    con = open_context(home, Config(), as_of).con if table_files(home.lake, "payments") else None
    return Demo(home=home, bundle=folder, report=report, as_of=as_of, con=con,
                currency=read_meta(home.lake).get("currency"))
