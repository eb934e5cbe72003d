"""The published bundle: its catalogue of artifacts, its one writer, its one `verify`, CURRENT.

A bundle is a folder `artifacts/bundles/<version>/` of the artifacts declared in `CATALOGUE`
(one entry per file: its name, the columns it must have, its per-user key, the stage that
makes it), `manifest.json` (version, as_of, created_at, code version, row counts, SHA-256 of
every file). Adding an artifact is one entry here: the runner writes it, `verify` checks it,
erasure cuts users out of it.

A folder is written under a temporary name and renamed when complete, so a bundle folder is
never partial. `CURRENT` names the active version; it is replaced atomically and only under
the data home's lock (`set_current`), by `behavior run` and by the API's rollback alike.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from behavior.errors import BehaviorError
from behavior.store import atomic
from behavior.store.datahome import DataHome, LockedError
from behavior.store.mapped_npz import map_npz

Kind = Literal["integer", "number", "string", "boolean", "timestamp"]
MANIFEST = "manifest.json"


@dataclass(frozen=True, eq=False)   # one object per entry: hashed and compared by identity
class Artifact:
    """One file of a bundle. `columns`: the columns a Parquet artifact must have, with the kind
    each must be (None: any). `user_key`: the column (or, for recommender.npz, the id array)
    that holds a user id, so erasure cuts the user's rows out of it; None if it holds no id.
    `stage`: the stage that makes it (None: the publisher)."""
    file: str
    stage: str | None
    user_key: str | None = None
    columns: Mapping[str, Kind | None] = field(default_factory=dict)
    required: bool = False      # every bundle has it

    @property
    def is_table(self) -> bool:
        return self.file.endswith(".parquet")


REPORT = Artifact("report.json", None, required=True)
REPORT_HTML = Artifact("report.html", None)
PROFILES = Artifact("profiles.parquet", "profiles", "user_id", required=True,
                    columns={"user_id": "string", "segment": "string", "marketing_opt_out": "boolean"})
MERCHANTS = Artifact("merchants.parquet", "merchants", columns={"merchant_id": None})
MERCHANT_CUSTOMERS = Artifact("merchant_customers.parquet", "merchants", "user_id", columns=dict.fromkeys(
    ("merchant_id", "user_id", "audience", "purchase_days", "payments", "revenue", "last_payment_at", "days_since")))
COHORT_RETENTION = Artifact("cohort_retention.parquet", "churn")
RETENTION_CURVES = Artifact("retention_curves.parquet", "churn")
RECOMMENDER = Artifact("recommender.npz", "recommend", "user_ids")
UPLIFT_SCORES = Artifact("uplift_scores.parquet", "promotions", "user_id",
                         columns=dict.fromkeys(("user_id", "target", "uplift", "p_redeem")))
CATEGORY_AFFINITY = Artifact("category_affinity.parquet", "promotions", "user_id",
                             columns=dict.fromkeys(("user_id", "category", "share")))
ITEM_CATEGORIES = Artifact("item_categories.parquet", "promotions", columns=dict.fromkeys(("item_id", "category")))
CONTACTS = Artifact("contacts.parquet", "promotions", "user_id",
                    columns=dict.fromkeys(("user_id", "last_contacted_at")))

CATALOGUE: tuple[Artifact, ...] = (REPORT, REPORT_HTML, PROFILES, MERCHANTS, MERCHANT_CUSTOMERS, COHORT_RETENTION,
                                   RETENTION_CURVES, RECOMMENDER, UPLIFT_SCORES, CATEGORY_AFFINITY, ITEM_CATEGORIES,
                                   CONTACTS)
BY_FILE: dict[str, Artifact] = {a.file: a for a in CATALOGUE}


class BundleError(BehaviorError):
    """A bundle folder is missing, incomplete, corrupted or of the wrong shape. The message names
    the bundle version and file, never a path on this machine, so the API can show it as it is."""

    def __init__(self, version: str | None, message: str) -> None:
        super().__init__(message if version is None else f"bundle {version}: {message}")
        self.version = version


class NoBundleError(BundleError):
    """No bundle has been published yet (no CURRENT file)."""


def kind_of(t: pa.DataType) -> Kind | None:
    """The query kind of an Arrow type; None for types that are returned but not queried (lists...)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp"
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- writing -------------------------------------------------------------------------------

class _HashingFile(io.RawIOBase):
    """A new file, written front to back, that hashes (SHA-256) the bytes as they are written,
    so a writer knows a file's checksum without reading it back. Not seekable: a zip writer
    (np.savez) then streams its entries instead of going back to patch their headers."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "wb")
        self.sha = hashlib.sha256()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.sha.update(data)   # (hashlib releases the GIL on big buffers)
        return self._file.write(data)

    def close(self) -> None:
        if not self.closed:
            self._file.close()
        super().close()


def _write(folder: Path, artifact: Artifact, content: Any) -> tuple[int | None, str]:
    """Write one artifact: (its row count if it is a table, the SHA-256 of the bytes written)."""
    rows = None
    with _HashingFile(folder / artifact.file) as out:
        if isinstance(content, pa.Table):
            pq.write_table(content, out, compression="zstd")
            rows = content.num_rows
        elif isinstance(content, dict) and artifact.file.endswith(".npz"):
            np.savez(out, **content)  # arrays only: loaded with allow_pickle=False
        elif isinstance(content, (dict, list)):
            out.write((json.dumps(content, indent=2, default=str) + "\n").encode())
        elif isinstance(content, (bytes, str)):
            out.write(content if isinstance(content, bytes) else content.encode())
        else:
            raise TypeError(f"cannot write {artifact.file} of type {type(content).__name__}")
    return rows, out.sha.hexdigest()


def write_bundle(home: DataHome, version: str, artifacts: Mapping[Artifact, Any], manifest: dict,
                 partial: bool = False, later: Callable[[], Mapping[Artifact, Any]] | None = None) -> Path:
    """Write `artifacts` as the bundle `version` (in a temporary folder, verified, then renamed)
    with `manifest` completed by the row counts and checksums. Returns the folder. A `partial`
    bundle (of a run of some stages, never made CURRENT) may lack required artifacts.
    `later()`, if given, runs on this thread while `artifacts` are written on another (the
    writes spend their time outside the GIL: compression, hashing, the disk); the artifacts it
    returns (e.g. the report made from those tables) are written after them. If anything
    fails, the temporary folder is removed."""
    home.bundles.mkdir(parents=True, exist_ok=True)
    for stale in home.bundles.glob(".tmp-*"):  # left by a publish that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = home.bundles / f".tmp-{version}"
    tmp.mkdir()
    try:
        written = _write_all(tmp, artifacts, later)
        counts = {file: n for file, (n, _) in written.items() if n is not None}
        manifest = {"version": version, **manifest, "row_counts": counts,
                    "checksums": {file: digest for file, (_, digest) in sorted(written.items())}}
        atomic.write_json(tmp / MANIFEST, manifest)
        # the checksums are of the bytes just written: verify checks the rest without hashing them again
        verify(tmp, version, partial=partial, digests=False)
        final = home.bundles / version
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic.fsync_dir(home.bundles)
    return final


def _write_all(folder: Path, artifacts: Mapping[Artifact, Any],
               later: Callable[[], Mapping[Artifact, Any]] | None) -> dict[str, tuple[int | None, str]]:
    """file -> (rows, SHA-256) of `artifacts` and then of what `later()` returns, written to `folder`."""
    def write(items: Mapping[Artifact, Any]) -> dict[str, tuple[int | None, str]]:
        return {a.file: _write(folder, a, content) for a, content in items.items()}

    if later is None:
        return write(artifacts)
    with ThreadPoolExecutor(1, thread_name_prefix="bundle-write") as pool:
        first = pool.submit(write, artifacts)
        try:
            rest = later()
        finally:
            done = first.result()   # (waited for even when later() fails: the folder is then removed)
    return {**done, **write(rest)}


def copy_bundle(home: DataHome, source: str, version: str, created_at: str) -> Path:
    """A copy of bundle `source` as the bundle `version` created at `created_at` (written in a
    temporary folder, verified, then renamed). Returns the folder."""
    manifest = read_manifest(home.bundles / source)
    tmp = home.bundles / f".tmp-{version}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(home.bundles / source, tmp)
    manifest.update(version=version, created_at=created_at)
    atomic.write_json(tmp / MANIFEST, manifest)
    verify(tmp, version)
    final = home.bundles / version
    tmp.rename(final)
    atomic.fsync_dir(home.bundles)
    return final


# ---- reading and checking ------------------------------------------------------------------

def read_manifest(folder: Path, version: str | None = None) -> dict[str, Any]:
    version = version or folder.name
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(version, "there is no such bundle folder")
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(version, f"no {MANIFEST}; the bundle is incomplete") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(version, f"{MANIFEST} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("checksums"), dict):
        raise BundleError(version, f"{MANIFEST} has no checksums")
    return manifest


def verify(folder: Path, version: str | None = None, partial: bool = False, digests: bool = True) -> dict[str, Any]:
    """The manifest of the bundle `version` (default: the folder's name) in `folder`, after
    checking that the manifest names that version, lists every required artifact (unless
    `partial`) and every artifact in the folder, that every listed file is there with its
    SHA-256 (not recomputed with `digests=False`: for the writer that hashed the bytes it
    wrote), and that each Parquet artifact has its catalogue columns of their kinds."""
    version = version or folder.name
    manifest = read_manifest(folder, version)
    if manifest.get("version") != version:
        raise BundleError(version, f"{MANIFEST} names version {manifest.get('version')!r}, not the folder's")
    checksums: dict[str, Any] = manifest["checksums"]
    for artifact in CATALOGUE:
        if artifact.required and not partial and artifact.file not in checksums:
            raise BundleError(version, f"{artifact.file} is not in the manifest; the bundle is incomplete")
        if artifact.file not in checksums and (folder / artifact.file).exists():
            raise BundleError(version, f"{artifact.file} is not in the manifest")
    for name, digest in checksums.items():
        f = folder / name
        if "/" in name or name.startswith("."):
            raise BundleError(version, f"{MANIFEST} lists an invalid file name {name!r}")
        if not f.is_file():
            raise BundleError(version, f"{name} is listed in the manifest but missing")
        if digests and sha256(f) != digest:
            raise BundleError(version, f"{name} does not match its checksum; the bundle is corrupted")
    for name in checksums:
        artifact = BY_FILE.get(name)
        if artifact is not None and artifact.columns:
            _check_columns(folder / name, artifact, version)
    return manifest


def _check_columns(path: Path, artifact: Artifact, version: str) -> None:
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise BundleError(version, f"{artifact.file} cannot be read ({type(exc).__name__})") from None
    missing = [c for c in artifact.columns if c not in schema.names]
    if missing:
        raise BundleError(version, f"{artifact.file} has no column {', '.join(missing)}")
    for name, kind in artifact.columns.items():
        got = schema.field(name).type
        if kind is not None and kind_of(got) != kind:
            raise BundleError(version, f"{artifact.file}: column {name} is {got}, expected a {kind}")


def list_bundles(home: DataHome) -> list[str]:
    """The versions of the bundle folders, oldest first (by the manifest's created_at, then name)."""
    found = []
    if not home.bundles.is_dir():
        return []
    for d in home.bundles.iterdir():
        if not d.is_dir() or d.name.startswith("."):
            continue
        try:
            created = str(json.loads((d / MANIFEST).read_text()).get("created_at", ""))
        except (OSError, ValueError):
            created = ""
        found.append((created, d.name))
    return [name for _, name in sorted(found)]


# ---- CURRENT -------------------------------------------------------------------------------

def read_current(home: DataHome) -> str | None:
    """The version CURRENT names, or None when no bundle has been published."""
    try:
        return home.current.read_text().strip()
    except FileNotFoundError:
        return None


def current_folder(home: DataHome) -> Path:
    """The folder of the active bundle (verified)."""
    version = read_current(home)
    if version is None:
        raise NoBundleError(None, f"no bundle has been published in {home.root}; run `behavior run` first")
    folder = home.bundles / version
    verify(folder)
    return folder


def set_current(home: DataHome, version: str, command: str) -> None:
    """Make `version` (a bundle of `home` the caller verified) the active one: CURRENT is
    replaced atomically under the data home's lock (taken for `command`, unless this thread
    holds it). Raises BundleError if the data home is in use by another command."""
    if not (home.bundles / version / MANIFEST).is_file():
        raise BundleError(version, "there is no such bundle folder")
    try:
        with home.lock(command):
            atomic.write_bytes(home.current, (version + "\n").encode())
    except LockedError as exc:   # the message names no path: the API shows it
        raise BundleError(version, f"the data home is in use by {exc.holder}; try again when it has finished") from None


# recommender.npz array names written before "purchased" was their one name: read for one release
_OLD_RECOMMENDER_NAMES = {"seen.indptr": "purchased.indptr", "seen.indices": "purchased.indices",
                          "seen.data": "purchased.data", "seen.days": "purchased.days",
                          "exclude_seen": "exclude_purchased"}


def read_recommender(path: Path, mapped: bool = False) -> dict[str, np.ndarray]:
    """The arrays of a recommender.npz under the names `serving_arrays` writes; a bundle written
    with the old `seen.*` / `exclude_seen` names reads the same. `mapped`: the large arrays are
    read-only views of the file (`behavior.store.mapped_npz`), not copies. Raises ValueError or
    OSError when the file is not a readable npz."""
    if mapped:
        return {_OLD_RECOMMENDER_NAMES.get(k, k): a for k, a in map_npz(path).items()}
    with np.load(path, allow_pickle=False) as npz:
        return {_OLD_RECOMMENDER_NAMES.get(k, k): npz[k] for k in npz.files}


# ---- erasure -------------------------------------------------------------------------------

def recommender_without(arrays: dict[str, np.ndarray], drop: np.ndarray) -> dict[str, np.ndarray]:
    """recommender.npz arrays without the users flagged in `drop` (rows of user_ids): their id,
    segment, purchased items (a users x items CSR) and factor rows."""
    keep = ~drop
    out = dict(arrays)
    out["user_ids"] = arrays["user_ids"][keep]
    out["user_segment"] = arrays["user_segment"][keep]
    purchased = sp.csr_matrix((arrays["purchased.data"], arrays["purchased.indices"], arrays["purchased.indptr"]),
                         shape=(len(drop), len(arrays["item_ids"])))
    kept = purchased[keep]
    out["purchased.indptr"] = kept.indptr.astype(np.int64)
    out["purchased.indices"], out["purchased.data"] = kept.indices, kept.data
    if "purchased.days" in arrays:
        days = sp.csr_matrix((arrays["purchased.days"], arrays["purchased.indices"], arrays["purchased.indptr"]),
                             shape=purchased.shape)[keep]
        out["purchased.days"] = days.data
    for name, value in arrays.items():
        if name.endswith("user_factors"):
            out[name] = value[keep]
        elif name.endswith(".n_users"):
            out[name] = np.array(int(keep.sum()), dtype=value.dtype)
    return out


def _read_user_ids(path: Path, artifact: Artifact) -> tuple[Any, list]:
    """(the artifact's content, its user ids in row order)."""
    if artifact.is_table:
        table = pq.read_table(path)
        return table, table.column(artifact.user_key).to_pylist()
    arrays = read_recommender(path)
    return arrays, arrays[artifact.user_key].tolist()


def without_users(folder: Path, erased: Callable[[list], np.ndarray], erased_at: str) -> int:
    """Rewrite the bundle in `folder` without the users `erased` flags (given a list of ids, a
    boolean mask), in every per-user artifact of the catalogue; returns the user rows removed
    (0: the folder is untouched). The bundle is rebuilt in `.forget-<version>`, verified, and
    swapped in by two renames (`recover_rewrites` finishes or undoes a swap cut short)."""
    changed: dict[Artifact, Any] = {}
    removed = 0
    for artifact in CATALOGUE:
        path = folder / artifact.file
        if artifact.user_key is None or not path.exists():
            continue
        content, ids = _read_user_ids(path, artifact)
        drop = erased(ids)
        if drop.any():
            changed[artifact] = (content.filter(pa.array(~drop)) if artifact.is_table
                                 else recommender_without(content, drop))
            removed += int(drop.sum())
    if not changed:
        return 0
    version = folder.name
    tmp = folder.with_name(f".forget-{version}")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(folder, tmp)
    manifest = json.loads((tmp / MANIFEST).read_text())
    for artifact, content in changed.items():
        n, manifest["checksums"][artifact.file] = _write(tmp, artifact, content)
        if n is not None:
            manifest.setdefault("row_counts", {})[artifact.file] = n
    manifest["erased_at"] = erased_at
    atomic.write_json(tmp / MANIFEST, manifest)
    verify(tmp, version, partial=True)   # the files of a published bundle: a partial one stays partial
    for f in tmp.iterdir():           # durable before the old folder goes (power loss, not just kill -9)
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    atomic.fsync_dir(tmp)
    old = folder.with_name(f".erased-{version}")
    folder.rename(old)          # a kill here: recover_rewrites puts the rewritten folder in place
    tmp.rename(folder)
    atomic.fsync_dir(folder.parent)
    shutil.rmtree(old)
    return removed


def recover_rewrites(home: DataHome) -> list[str]:
    """Finish or undo a bundle rewrite cut short: `.erased-X` is the old folder of X."""
    done: list[str] = []
    if not home.bundles.exists():
        return done
    for old in sorted(home.bundles.glob(".erased-*")):
        version = old.name.removeprefix(".erased-")
        final, new = home.bundles / version, home.bundles / f".forget-{version}"
        if not final.exists():
            if new.exists():
                new.rename(final)        # the rewritten folder was complete (verified before the swap)
            else:
                old.rename(final)
                continue
        shutil.rmtree(old, ignore_errors=True)
        done.append(version)
    for new in sorted(home.bundles.glob(".forget-*")):
        shutil.rmtree(new, ignore_errors=True)   # a rewrite that never reached its swap: purge redoes it
    return done
