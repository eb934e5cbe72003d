"""The human summary printed after `behavior run` (the JSON report is the contract)."""

from __future__ import annotations

from pipelines.datahome import DataHome


def run_summary(report: dict, home: DataHome) -> str:
    lines = [f"run {report['run_id']} as of {report['as_of'][:10]} -> bundle {report['bundle_version']}"]
    for name, s in report["stages"].items():
        rows = f"{s['rows']:>12,} rows" if s.get("rows") is not None else ""
        lines.append(f"  {name:<12} {s['seconds']:>8.2f} s  {rows}")
    lines.append(f"bundle: {home.bundles / report['bundle_version']}")
    return "\n".join(lines)
