"""Load a published bundle folder into an in-memory, immutable `Bundle`.

A bundle is served only if it passes the store's `verify` (behavior/store/bundle.py: the
manifest names the folder's version and every file with a SHA-256 that matches, and each
table has its catalogue columns) and its profiles' user_id is unique and never null. The
recommender and the promotion targeting files are optional: a run that skipped their stage
publishes a bundle without them, and the routes that need them answer 503 with the report's
reason (`Bundle.skipped`). Anything else raises `BundleError` with a message that names the
bundle version and file, never a path on this machine, so it can be shown to API callers as it is.

Profiles stay one Arrow table; segment queries run on DuckDB over it (zero copy), a dict maps
user_id to its row for profile lookups.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from api.items import ItemDetails
from api.merchants_data import MerchantData, load_merchants
from api.parquet_read import read_one_chunk
from api.targeting import FILES as TARGETING_FILES
from api.targeting import TargetingData, load_targeting
from behavior.errors import BehaviorError
from behavior.features import PROFILE_NAMES
from behavior.recommend.interactions import IdMap
from behavior.recommend.serving import ServingModel
from behavior.store.bundle import (MANIFEST, PROFILES, RECOMMENDER, REPORT, BundleError, Kind, kind_of,
                                   read_recommender, verify)

log = logging.getLogger("api.bundle")

DICTIONARY_MAX = 1000  # string columns with at most this many distinct values are dictionary-encoded


def _parse_time(value: Any, what: str, version: str) -> datetime:
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        raise BundleError(version, f"{MANIFEST}: {what} {value!r} is not an ISO date-time") from None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class SegmentStats:
    segment: str | None
    users: int
    opted_out: int
    mean_loyalty_score: float | None
    mean_clv: float | None
    mean_p_alive: float | None


def _normalise(table: pa.Table) -> pa.Table:
    """One chunk per column, NaN and infinities as nulls, timestamps in at most microseconds, UTC,
    and strings with few distinct values (segment, tier, category...) dictionary-encoded, which
    makes filters on them about twice as fast in DuckDB."""
    cols = []
    for name, col in zip(table.column_names, table.combine_chunks().columns):
        t = col.type
        if pa.types.is_floating(t) and pc.any(pc.invert(pc.is_finite(col))).as_py():
            col = pc.if_else(pc.is_finite(col), col, pa.scalar(None, t))
        elif pa.types.is_timestamp(t) and (t.unit == "ns" or t.tz != "UTC"):
            col = col.cast(pa.timestamp("us" if t.unit == "ns" else t.unit, tz="UTC"), safe=False)
        elif (pa.types.is_string(t) or pa.types.is_large_string(t)) and name != "user_id" \
                and pc.count_distinct(col).as_py() <= max(DICTIONARY_MAX, len(col) // 100):
            col = col.dictionary_encode()
        cols.append(col)
    return pa.table(cols, names=table.column_names).combine_chunks()


def _current_names(table: pa.Table) -> pa.Table:
    """The profiles of a bundle published before a column was renamed, with its current name."""
    names = [PROFILE_NAMES[n] if n in PROFILE_NAMES and PROFILE_NAMES[n] not in table.column_names else n
             for n in table.column_names]
    return table.rename_columns(names)


def _iso(t: datetime, unit: str) -> str:
    """The ISO 8601 UTC form `to_json_table` gives a timestamp of that unit (Arrow's %S)."""
    base = t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if unit == "ms":
        return f"{base}.{t.microsecond // 1000:03d}Z"
    if unit == "us":
        return f"{base}.{t.microsecond:06d}Z"
    return base + "Z"


INDEX_CHUNK = 8192


def _index(ids: pa.ChunkedArray) -> dict[str, int]:
    """user_id -> row, built a slice at a time: a bundle loads beside the event loop, and one
    call over a million ids would hold the GIL (and stall every request) for a quarter second."""
    index: dict[str, int] = {}
    for start in range(0, len(ids), INDEX_CHUNK):
        chunk = ids.slice(start, INDEX_CHUNK).to_pylist()
        index.update(zip(chunk, range(start, start + len(chunk))))
    return index


class RowIndex(Mapping[str, int]):
    """user_id -> row of a table some rows were dropped from (erased users): the index of the
    table as loaded, and where each of its rows is now (-1: dropped). Lookups stay O(1) and
    dropping rows costs one numpy pass, not a new dict of every user."""

    def __init__(self, loaded: dict[str, int], moved_to: np.ndarray) -> None:
        self.loaded = loaded
        self.moved_to = moved_to

    def get(self, user_id: str, default: int | None = None) -> int | None:  # type: ignore[override]
        i = self.loaded.get(user_id)
        if i is None:
            return default
        j = int(self.moved_to[i])
        return default if j < 0 else j

    def __getitem__(self, user_id: str) -> int:
        j = self.get(user_id)
        if j is None:
            raise KeyError(user_id)
        return j

    def __contains__(self, user_id: object) -> bool:
        return isinstance(user_id, str) and self.get(user_id) is not None

    def __iter__(self) -> Iterator[str]:
        return (u for u, i in self.loaded.items() if self.moved_to[i] >= 0)

    def __len__(self) -> int:
        return int((self.moved_to >= 0).sum())


class Profiles:
    """The profiles of one bundle: the Arrow table, a user_id -> row index, the queryable fields."""

    def __init__(self, table: pa.Table) -> None:
        table = _normalise(_current_names(table))
        self._setup(table, _index(table.column("user_id")), duckdb.connect())

    def _setup(self, table: pa.Table, index: dict[str, int] | RowIndex, db: duckdb.DuckDBPyConnection) -> None:
        self.table = table
        self.index = index
        self.fields: dict[str, Kind] = {}
        for f in self.table.schema:
            kind = kind_of(f.type)
            if kind is not None:
                self.fields[f.name] = kind
        # per-column arrays and their timestamp units, for reading one row without slicing the table
        self._columns = [(f.name, self.table.column(i).chunk(0) if self.table.column(i).num_chunks else
                          pa.array([], f.type), f.type.unit if pa.types.is_timestamp(f.type) else None)
                         for i, f in enumerate(self.table.schema)]
        self._db = db   # shared by the views `updated` makes; each request takes a cursor of its own
        self.segments = self._segment_stats()
        # each row's segment as a code into a few names: read per GET recommendations, where
        # reading the Arrow column's scalar cost more than the rest of the route's own work
        codes = pc.dictionary_encode(self.table.column("segment")).combine_chunks()
        self._segment_codes = pc.fill_null(codes.indices, -1).to_numpy()
        self._segment_names = [*codes.dictionary.to_pylist(), None]   # code -1 (null): None

    def __len__(self) -> int:
        return self.table.num_rows

    def connection(self) -> duckdb.DuckDBPyConnection:
        """A cursor of its own (safe to use from one thread) with the table as view `profiles`."""
        cur = self._db.cursor()
        cur.register("profiles", self.table)
        return cur

    def row(self, user_id: str) -> dict[str, Any] | None:
        """The user's row, JSON-ready like `json_rows` (timestamps ISO 8601 UTC, no NaN)."""
        i = self.index.get(user_id)
        if i is None:
            return None
        out = {}
        for name, arr, unit in self._columns:
            v = arr[i].as_py()
            if unit is not None and v is not None:
                v = _iso(v, unit)
            elif isinstance(v, Decimal):
                v = float(v)
            out[name] = v
        return out

    def segment(self, row: int) -> str | None:
        """The segment of the profile at `row` (an index value)."""
        return self._segment_names[self._segment_codes[row]]

    def updated(self, drop: list[int], opt_out: list[int]) -> "Profiles":
        """These profiles without the rows `drop` (erased users) and with the rows `opt_out`
        flagged `marketing_opt_out`; self if there is nothing to change. Costs a filter of the
        table and one pass over the index's rows, never a new dict of every user."""
        if not drop and not opt_out:
            return self
        table = self.table
        if opt_out:
            flag = np.zeros(table.num_rows, bool)
            flag[opt_out] = True
            col = table.column("marketing_opt_out").combine_chunks()
            table = table.set_column(table.column_names.index("marketing_opt_out"), "marketing_opt_out",
                                     pc.or_kleene(col, pa.array(flag)))
        index = self.index
        if drop:
            keep = np.ones(table.num_rows, bool)
            keep[drop] = False
            table = table.filter(pa.array(keep))
            step = np.where(keep, np.cumsum(keep) - 1, -1)
            if isinstance(index, RowIndex):
                index = RowIndex(index.loaded, np.where(index.moved_to >= 0, step[np.maximum(index.moved_to, 0)], -1))
            else:
                index = RowIndex(index, step)
        view = Profiles.__new__(Profiles)
        view._setup(table.combine_chunks(), index, self._db)
        return view

    def _segment_stats(self) -> list[SegmentStats]:
        def mean(col: str) -> str:
            return f'avg("{col}") FILTER (WHERE isfinite("{col}"))' if col in self.fields else "NULL"

        cur = self.connection()
        try:
            rows = cur.execute(
                f"""SELECT segment, count(*), count(*) FILTER (WHERE marketing_opt_out IS NOT FALSE),
                           {mean('loyalty_score')}, {mean('clv')}, {mean('p_alive')}
                    FROM profiles GROUP BY segment ORDER BY count(*) DESC, segment"""
            ).fetchall()
        finally:
            cur.close()

        def clean(x: Any) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return [SegmentStats(r[0], int(r[1]), int(r[2]), clean(r[3]), clean(r[4]), clean(r[5])) for r in rows]


@dataclass(frozen=True)
class Bundle:
    """One published bundle in memory. Immutable: erasing a user gives a new Bundle."""

    version: str
    as_of: datetime
    created_at: datetime
    manifest: dict[str, Any]
    report: dict[str, Any]
    profiles: Profiles
    recommender: ServingModel | None = None
    targeting: TargetingData | None = None
    merchants: MerchantData | None = None
    item_details: ItemDetails | None = None   # the recommender's item attributes, prepared at load
    loaded_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    erased: frozenset[str] = frozenset()

    def skipped(self, stage: str) -> str | None:
        """Why the run that made this bundle skipped `stage` (its report section's `skipped`), or None."""
        section = self.report.get(stage)
        why = section.get("skipped") if isinstance(section, dict) else None
        return why if isinstance(why, str) else None

    def without_users(self, user_ids: set[str], opted_out: set[str] = frozenset()) -> "Bundle":
        """This bundle without `user_ids` (profiles and recommender) and with `opted_out` flagged
        `marketing_opt_out`; itself if that changes nothing. Cheap enough for the request path
        (`Profiles.updated`)."""
        index = self.profiles.index
        drop = {u: i for u in user_ids if (i := index.get(u)) is not None}
        flag = self.profiles.table.column("marketing_opt_out")
        opt_out = [i for i in map(index.get, set(opted_out) - set(user_ids))
                   if i is not None and flag[i].as_py() is not True]
        recommender = self.recommender
        if recommender is not None and user_ids:
            recommender = recommender_without(recommender, user_ids)
        merchants = self.merchants
        if merchants is not None and user_ids:
            merchants = merchants.without(user_ids)
        if not drop and not opt_out and recommender is self.recommender and merchants is self.merchants:
            return self
        return replace(self, profiles=self.profiles.updated(list(drop.values()), opt_out), recommender=recommender,
                       merchants=merchants,
                       erased=self.erased | frozenset(user_ids))


def _load_profiles(folder: Path, version: str) -> Profiles:
    """The profiles of a verified bundle (`verify` checked their columns). Their user_id is
    unique: the row index the profiles build anyway has one entry per row (a separate count of
    distinct ids would hash every id a second time)."""
    try:
        table = read_one_chunk(folder / PROFILES.file)
    except (pa.ArrowException, OSError) as exc:
        raise BundleError(version, f"{PROFILES.file} cannot be read ({type(exc).__name__})") from None
    ids = table.column("user_id")
    if ids.null_count:
        raise BundleError(version, f"{PROFILES.file}: user_id is null on {ids.null_count} rows")
    profiles = Profiles(table)
    if len(profiles.index) != len(profiles):
        raise BundleError(version, f"{PROFILES.file}: user_id is not unique")
    return profiles


def _load_recommender(folder: Path, version: str) -> ServingModel | None:
    path = folder / RECOMMENDER.file
    if not path.exists():
        return None
    try:
        arrays = read_recommender(path, mapped=True)   # the checksum pass left the file in the page cache
    except (ValueError, OSError) as exc:
        raise BundleError(version, f"{RECOMMENDER.file} cannot be read ({type(exc).__name__})") from None
    return build_recommender(arrays, version)


def build_recommender(arrays: dict[str, np.ndarray], version: str) -> ServingModel:
    """The serving recommender made from the arrays of recommender.npz."""
    try:
        return ServingModel.from_arrays(arrays)
    except (BehaviorError, KeyError, ValueError, TypeError, IndexError) as exc:
        what = f"missing array {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0][:300]
        raise BundleError(version, f"{RECOMMENDER.file} cannot be served ({what})") from None


class _ErasedIds(IdMap):
    """An id map that no longer knows some of its ids (erased users): they look unknown."""

    def __init__(self, ids: np.ndarray, erased: frozenset[str]) -> None:
        self.ids = ids  # already sorted and unique: IdMap's check is skipped
        self._erased = erased

    def index(self, values) -> np.ndarray:
        idx = super().index(values)
        gone = np.isin(np.asarray(values, dtype=np.str_), np.array(sorted(self._erased), dtype=np.str_))
        return np.where(gone, -1, idx)

    def index_of(self, value: str) -> int:
        return -1 if value in self._erased else super().index_of(value)


def recommender_without(model: ServingModel, user_ids: set[str]) -> ServingModel:
    """A shallow copy of `model` for which `user_ids` are unknown users (so they get the
    fallback and nothing of their history is used). The original is untouched."""
    known = [u for u in user_ids if model.users.index_of(u) >= 0]
    if not known:
        return model
    erased = frozenset(known) | (model.users._erased if isinstance(model.users, _ErasedIds) else frozenset())
    clone = copy.copy(model)
    clone.users = _ErasedIds(model.users.ids, erased)
    return clone


def load_bundle(folder: Path) -> Bundle:
    """Verify and load the bundle in `folder`. Raises BundleError, naming what is wrong."""
    version = folder.name
    manifest = verify(folder)
    try:
        report = json.loads((folder / REPORT.file).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(version, f"{REPORT.file} is not valid JSON") from None
    if not isinstance(report, dict):
        raise BundleError(version, f"{REPORT.file} is not a JSON object")
    profiles = _load_profiles(folder, version)
    recommender = _load_recommender(folder, version)
    return Bundle(
        version=version,
        as_of=_parse_time(manifest.get("as_of", report.get("as_of")), "as_of", version),
        created_at=_parse_time(manifest.get("created_at"), "created_at", version),
        manifest=manifest,
        report=report,
        profiles=profiles,
        recommender=recommender,
        item_details=ItemDetails(recommender) if recommender is not None else None,
        targeting=_load_targeting(folder, version, set(manifest["checksums"])),
        merchants=load_merchants(folder, set(manifest["checksums"])),
    )


def _load_targeting(folder: Path, version: str, listed: set[str]) -> TargetingData | None:
    """The targeting inputs, or None when the bundle has none of their files (the promotions
    stage was skipped or not run)."""
    if not listed & set(TARGETING_FILES):
        return None
    try:
        return load_targeting(folder, listed)
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise BundleError(version, f"the promotion targeting files cannot be read ({type(exc).__name__})") from None
