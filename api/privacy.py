"""Erasures and opt-outs recorded after a bundle was built, applied to the served bundle on every
worker within a second.

Two files of the data home say what changed since `behavior run` built the bundle, both by the
keyed hash of the user id: the erasure log (`behavior.store.erasure_log`: `DELETE /v1/admin/users/{id}` on any
worker or server, `behavior forget`) and the late opt-outs (`behavior.store.opt_outs`, written
by `behavior ingest`). `PrivacyFiles.stamp()` is one stat of each, cheap enough for every request
(`api.deps.get_bundle`); when it moves, `apply` finds the bundle's users among the hashes
through `IdHashes` (made once per bundle, at load) and gives the bundle without the erased users
(profiles, exports, target lists, recommender) and with the opted-out ones flagged
`marketing_opt_out` (so no export, id-returning query or target list names them).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from api.bundle import Bundle
from behavior.store.datahome import DataHome
from behavior.store.erasure_log import ErasureLog
from behavior.pii import erasure_hash, erasure_hash_sql
from behavior.store import opt_outs

log = logging.getLogger("api.privacy")

HEX_DIGITS = 15  # a hash is found by its first 60 bits, then checked in full

FileStamp = tuple[int, int, int]            # inode, size, mtime in ns
Stamp = tuple[FileStamp | None, FileStamp | None]   # (erasure log, opt-outs file)


def file_stamp(path: str) -> FileStamp | None:
    """(inode, size, mtime) of the file at `path`, None if there is none: one stat."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _prefix(hex_hash: str) -> int:
    return int(hex_hash[:HEX_DIGITS], 16)


@dataclass(frozen=True)
class Changes:
    """What the files say now: the secret, the erased users' hashes, the opted-out users' hashes."""

    secret: bytes | None
    erased: frozenset[str]
    opted_out: frozenset[str]


class PrivacyFiles:
    """The erasure log and the opt-outs file of a data home, read again only when they change."""

    def __init__(self, data_dir: Path, erasure_log: ErasureLog) -> None:
        self.data_dir = data_dir
        self.erasure_log = erasure_log
        # str paths: a request stats both, and joining Paths would cost more than the stats
        self._paths = (str(DataHome(data_dir).erasure_log), str(DataHome(data_dir).opt_outs))
        self._opt_outs: tuple[FileStamp | None, frozenset[str]] = (None, frozenset())

    def stamp(self) -> Stamp:
        """One stat of each file: equal stamps, equal contents (the log is appended to, the
        opt-outs file replaced)."""
        return file_stamp(self._paths[0]), file_stamp(self._paths[1])

    def read(self) -> Changes:
        """The secret and both lists of hashes, as the files hold them now."""
        secret, erased = self.erasure_log.hashes()
        stamp = file_stamp(self._paths[1])
        if stamp != self._opt_outs[0]:
            try:
                self._opt_outs = (stamp, opt_outs.read(self.data_dir))
            except opt_outs.OptOutsError as exc:  # written atomically: only a hand edit gets here
                log.error("%s; the opt-outs read before stay in force", exc)
        if secret is None:
            secret = self.erasure_log.secret()
        return Changes(secret, erased, self._opt_outs[1])


class IdHashes:
    """The keyed-hash prefixes of every user id a bundle holds (profiles, then recommender
    users), sorted: a set of hashes is matched against them in O(hashes x log users)."""

    def __init__(self, ids: pa.Array, n_profiles: int, prefixes: np.ndarray) -> None:
        self.ids = ids
        self.n_profiles = n_profiles
        self._order = np.argsort(prefixes, kind="stable")
        self._sorted = prefixes[self._order]

    @classmethod
    def of(cls, bundle: Bundle, secret: bytes) -> "IdHashes":
        """The hashes of the bundle as loaded (before any user was taken out of it)."""
        profile_ids = bundle.profiles.table.column("user_id").cast(pa.string())
        parts = list(profile_ids.chunks)   # concatenated once below, not combined first
        if bundle.recommender is not None:
            parts.append(bundle.recommender.users.arrow())
        ids = pa.concat_arrays(parts)
        con = duckdb.connect(config={"threads": 1})   # a load shares the cores with requests
        try:
            con.register("_ids", pa.table({"user_id": ids}))
            prefixes = con.sql(f"SELECT ('0x' || left({erasure_hash_sql(secret, 'user_id')}, {HEX_DIGITS}))::BIGINT "
                               "AS p FROM _ids").fetchnumpy()["p"]
        finally:
            con.close()
        if len(ids) and _prefix(erasure_hash(secret, ids[0].as_py())) != prefixes[0]:
            raise RuntimeError("the SQL and the Python keyed hash of a user id disagree")
        return cls(ids, len(profile_ids), np.asarray(prefixes, np.int64))

    def find(self, hashes: frozenset[str], secret: bytes, profiles_only: bool = False) -> set[str]:
        """The ids whose keyed hash is in `hashes` (checked in full)."""
        if not hashes or not len(self._sorted):
            return set()
        wanted = np.fromiter((_prefix(h) for h in hashes), np.int64, len(hashes))
        lo = np.searchsorted(self._sorted, wanted, "left")
        hi = np.searchsorted(self._sorted, wanted, "right")
        rows = [r for a, b in zip(lo[hi > lo], hi[hi > lo]) for r in self._order[a:b]]
        if profiles_only:
            rows = [r for r in rows if r < self.n_profiles]
        found = self.ids.take(pa.array(rows, pa.int64())).to_pylist() if rows else []
        return {u for u in found if erasure_hash(secret, u) in hashes}


def apply(bundle: Bundle, hashes: IdHashes | None, changes: Changes) -> Bundle:
    """`bundle` without the erased users and with the opted-out ones flagged; the same object
    if neither list names anyone it still serves."""
    if hashes is None or changes.secret is None:
        return bundle
    erased = hashes.find(changes.erased, changes.secret)
    opted = hashes.find(changes.opted_out, changes.secret, profiles_only=True)
    served = bundle.without_users(erased, opted)
    if served is not bundle:
        log.info("bundle %s: %d profiles now, after the erasures and opt-outs recorded since it was built",
                 bundle.version, len(served.profiles))
    return served
