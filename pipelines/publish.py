"""Publish a bundle: the stages' artifacts, the report and its page as a new bundle folder
(written, verified and renamed by `behavior.store.bundle.write_bundle`), then CURRENT.

`report.html` holds key figures and plots on one self-contained page (pipelines/report_html.py);
earlier bundles stay for rollback, up to `KEEP_BUNDLES`.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timezone
from typing import Any

import behavior
from behavior.store import bundle as B
from behavior.store.datahome import DataHome


def _report_page(home: DataHome, ctx, artifacts: dict[B.Artifact, Any], report: dict, monthly=None) -> str:
    """report.html from the final report (its time and any broken plot go in `report_html`);
    `monthly`, the page's monthly figures if the runner started them (`MonthlyFigures`)."""
    from pipelines.lake import read_meta
    from pipelines.report_html import render_report

    page, info = render_report(report, artifacts, getattr(ctx, "con", None), read_meta(home.lake).get("currency"),
                               user_parts=getattr(ctx, "user_parts", None), monthly=monthly)
    report["report_html"] = info
    return page


def publish(home: DataHome, ctx, artifacts: dict[B.Artifact, Any], report: dict, activate: bool = True,
            monthly=None) -> str:
    """Write the stages' `artifacts` and the report as a new bundle; with `activate`, make it
    CURRENT. Returns the version. `monthly`: the page's monthly figures if already started
    (`pipelines.report_html.MonthlyFigures`)."""
    created = datetime.now(timezone.utc)
    version = created.strftime("%Y%m%dT%H%M%SZ") + "-" + report["run_id"][:6]
    report["bundle_version"] = version
    report["active"] = activate
    # the page is drawn while the stages' artifacts are written; the report (with the page's
    # time and errors) goes in last
    B.write_bundle(home, version, artifacts, {
        "as_of": ctx.as_of.isoformat(),
        "created_at": created.isoformat(timespec="seconds"),
        "code_version": behavior.__version__,
    }, partial=not activate,
        later=lambda: {B.REPORT_HTML: _report_page(home, ctx, artifacts, report, monthly), B.REPORT: report})
    if activate:
        B.set_current(home, version, "run")
    prune_bundles(home)
    return version


KEEP_BUNDLES = 5


def prune_bundles(home: DataHome, keep: int = KEEP_BUNDLES) -> list[str]:
    """Delete all but the `keep` newest bundles (by name: versions start with their UTC creation
    time); the active one is always kept. Old bundles hold per-user data, so they are not kept
    for ever: rollback reaches back `keep` runs."""
    active = B.read_current(home)
    versions = sorted(p.name for p in home.bundles.iterdir() if p.is_dir() and not p.name.startswith("."))
    removed = []
    for v in versions[:-keep] if len(versions) > keep else []:
        if v != active:
            shutil.rmtree(home.bundles / v)
            removed.append(v)
    return removed
