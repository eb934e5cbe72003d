"""Publish a bundle: write a new folder, verify it, then point CURRENT at it atomically.

Layout of `artifacts/bundles/<version>/`: the files the stages put in `ctx.bundle`
(Parquet for tables, `.npz` for arrays, JSON for dicts), `report.json`, `report.html` (key
figures and plots on one self-contained page, see pipelines/report_html.py) and `manifest.json`
(version, as_of, created_at, code version, row counts, SHA-256 of every file). The folder is
written under a temporary name and renamed when complete, so a bundle folder is never
partial; earlier bundles stay for rollback.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import behavior
from behavior.errors import BehaviorError
from behavior.store import atomic
from pipelines.datahome import DataHome

MANIFEST = "manifest.json"
REPORT_HTML = "report.html"


class BundleError(BehaviorError):
    """A bundle folder is incomplete or does not match its manifest."""


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write(folder: Path, name: str, content: Any) -> int | None:
    path = folder / name
    if isinstance(content, pa.Table):
        pq.write_table(content, path, compression="zstd")
        return content.num_rows
    if isinstance(content, dict) and name.endswith(".npz"):
        np.savez(path, **content)  # arrays only: loaded with allow_pickle=False
        return None
    if isinstance(content, (dict, list)):
        path.write_text(json.dumps(content, indent=2, default=str) + "\n")
        return None
    if isinstance(content, (bytes, str)):
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        return None
    raise TypeError(f"cannot write {name} of type {type(content).__name__}")


def verify(folder: Path) -> dict:
    """The manifest of `folder` after checking that every file is there with its checksum."""
    mpath = folder / MANIFEST
    if not mpath.exists():
        raise BundleError(f"{folder}: no {MANIFEST}; the bundle is incomplete")
    try:
        manifest = json.loads(mpath.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{mpath}: not valid JSON ({exc})") from None
    for name, digest in manifest.get("checksums", {}).items():
        f = folder / name
        if not f.exists():
            raise BundleError(f"{folder}: {name} is listed in the manifest but missing")
        if sha256(f) != digest:
            raise BundleError(f"{folder}: {name} does not match its checksum; the bundle is corrupted")
    return manifest


def _report_page(home: DataHome, ctx, report: dict) -> str:
    """report.html from the final report (its time and any broken plot go in `report_html`)."""
    from pipelines.lake import read_meta
    from pipelines.report_html import render_report

    page, info = render_report(report, ctx.bundle, getattr(ctx, "con", None), read_meta(home.lake).get("currency"))
    report["report_html"] = info
    return page


def publish(home: DataHome, ctx, report: dict, activate: bool = True) -> str:
    """Write ctx.bundle and the report as a new bundle; with `activate`, make it CURRENT.
    Returns the version."""
    home.bundles.mkdir(parents=True, exist_ok=True)
    for stale in home.bundles.glob(".tmp-*"):  # left by a publish that was killed
        shutil.rmtree(stale, ignore_errors=True)
    created = datetime.now(timezone.utc)
    version = created.strftime("%Y%m%dT%H%M%SZ") + "-" + report["run_id"][:6]
    report["bundle_version"] = version
    report["active"] = activate
    tmp = home.bundles / f".tmp-{version}"
    tmp.mkdir()
    counts: dict[str, int] = {}
    for name, content in ctx.bundle.items():
        n = _write(tmp, name, content)
        if n is not None:
            counts[name] = n
    _write(tmp, REPORT_HTML, _report_page(home, ctx, report))
    _write(tmp, "report.json", report)
    manifest = {
        "version": version,
        "as_of": ctx.as_of.isoformat(),
        "created_at": created.isoformat(timespec="seconds"),
        "code_version": behavior.__version__,
        "row_counts": counts,
        "checksums": {f.name: sha256(f) for f in sorted(tmp.iterdir())},
    }
    atomic.write_json(tmp / MANIFEST, manifest)
    verify(tmp)
    final = home.bundles / version
    tmp.rename(final)
    atomic.fsync_dir(home.bundles)
    if activate:
        atomic.write_bytes(home.current, (version + "\n").encode())
    prune_bundles(home)
    return version


KEEP_BUNDLES = 5


def prune_bundles(home: DataHome, keep: int = KEEP_BUNDLES) -> list[str]:
    """Delete all but the `keep` newest bundles (by name: versions start with their UTC creation
    time); the active one is always kept. Old bundles hold per-user data, so they are not kept
    for ever: rollback reaches back `keep` runs."""
    active = home.current.read_text().strip() if home.current.exists() else None
    versions = sorted(p.name for p in home.bundles.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for v in versions[:-keep] if len(versions) > keep else []:
        if v != active:
            shutil.rmtree(home.bundles / v)
            removed.append(v)
    return removed


def current_bundle(home: DataHome) -> Path:
    """The folder of the active bundle (verified)."""
    if not home.current.exists():
        raise BundleError(f"no bundle has been published in {home.root}; run `behavior run` first")
    folder = home.bundles / home.current.read_text().strip()
    verify(folder)
    return folder
