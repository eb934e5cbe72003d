"""The human summaries printed after `behavior ingest` and `behavior run` (the JSON reports are
the contract)."""

from __future__ import annotations

from behavior.model_choice import report_selections
from behavior.store.bundle import REPORT_HTML
from behavior.store.datahome import DataHome


def _columns(cols: dict) -> str:
    parts = []
    if cols["found"]:
        parts.append("found " + ", ".join(cols["found"]))
    if cols["mapped"]:
        parts.append("mapped " + ", ".join(f"{k}<-{v}" for k, v in cols["mapped"].items()))
    if cols["defaulted"]:
        parts.append("defaulted " + ", ".join(f"{k}={v}" for k, v in cols["defaulted"].items()))
    if cols["missing"]:
        parts.append("missing " + ", ".join(cols["missing"]))
    return "; ".join(parts)


def ingest_summary(report: dict, home: DataHome) -> str:
    """Per file: its counts, its columns, each rejection reason with its count and an example, notes."""
    lines = []
    for f in report["files"]:
        lines.append(f"{f['path']} -> {f['table']}: read {f['read']:,}, stored {f['accepted']:,}, "
                     f"replaced {f['replaced']:,}, duplicates {f['duplicates']:,}, rejected {f['rejected']:,}")
        lines.append(f"    columns: {_columns(f['columns'])}")
        for reason, n in f["rejected_by_reason"].items():
            lines.append(f"    {n:>8,} {reason}, e.g. {f['rejected_examples'][reason]}")
        if f.get("without_amount"):
            lines.append(f"    {f['without_amount']:>8,} rows stored without an amount")
        for note in f["notes"]:
            lines.append(f"    note: {note}")
    if report["rejected"]:
        lines.append(f"rejected rows and their reasons: {home.rejected}")
    currency = f" (the lake's currency: {report['currency']})" if report.get("currency") else ""
    lines.append(f"ingest {report['ingest_id']}: {report['accepted']:,} rows stored, {report['replaced']:,} replaced "
                 f"in {report['seconds']:.1f} s{currency}")
    return "\n".join(lines)


def all_rejected(report: dict) -> str | None:
    """The error of an ingest in which some file had rows and every one was rejected (exit 2:
    its quarantine is written all the same), or None."""
    bad = [f for f in report["files"] if f["read"] and f["rejected"] == f["read"]]
    if not bad:
        return None
    names = ", ".join(f"{f['path']} ({f['read']:,} rows)" for f in bad)
    return (f"every row of {names} was rejected, so nothing of it was stored: the reasons are above and the rows "
            "with their reasons in the quarantine (lake/_rejected); fix the file or the options and ingest it again")


def _params(p: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in p.items())


def _loyalty(section: dict) -> list[str]:
    lines = []
    bg = section.get("bgnbd", {})
    if "error" in bg:
        lines.append(f"  loyalty: the {section.get('model')} fit failed: {bg['error']}")
        return lines
    lines.append(f"  loyalty: {section.get('model')} {_params(bg['params'])} (per day, {bg['customers']:,} customers)")
    gg = section.get("gamma_gamma", {})
    if "params" in gg:
        lines.append(f"           gamma-gamma {_params(gg['params'])}")
    else:
        lines.append(f"           gamma-gamma: {gg.get('skipped') or gg.get('error')}")
    sel = section.get("selection", {})
    others = [c["name"] for c in sel.get("candidates", []) if not c["chosen"]]
    if section.get("model_forced") and sel.get("notes"):
        lines.append(f"           {sel['notes'][-1]}")   # the forcing note comes last
    elif others:
        lines.append(f"           chosen on the holdout over {', '.join(others)}")
    ho = section.get("holdout", {})
    if "skipped" in ho:
        lines.append(f"           holdout: {ho['skipped']}")
    elif ho:
        lines.append(f"           holdout {ho['days']} days: expected {ho['expected_total']:,.0f} purchase days, "
                     f"actual {ho['actual_total']:,.0f} ({ho['error_pct']:+.1f}%)")
    return lines


def _promotions(section: dict) -> list[str]:
    lines = []
    for pid, e in section.get("effectiveness", {}).items():
        if e.get("status") == "estimated":
            c, inc = e["conversion"], e["incremental"]
            lo, hi = c["lift_ci"]
            revenue = (f", net incremental revenue {inc['net_revenue']:,.0f}" if "net_revenue" in inc
                       else ", no revenue (no amounts)")
            lines.append(f"  promotion {pid} ({e.get('target')}): conversion {c['treatment']:.1%} vs {c['control']:.1%}, "
                         f"lift {100 * c['lift']:+.1f} pp [{100 * lo:+.1f}, {100 * hi:+.1f}]{revenue}")
        else:
            lines.append(f"  promotion {pid}: {e.get('status')}: {e.get('reason')}")
    up = section.get("uplift", {})
    for pid, arm in (up.get("arms") or {}).items():
        test, chosen = arm["test"], arm["chosen"]
        base = f" (response model {test['response']['qini']:.3f})" if "response" in test else ""
        lines.append(f"  uplift {pid} ({arm['target']}): {chosen}, held-out Qini {test[chosen]['qini']:.3f}{base}, "
                     f"uplift@30% {test[chosen]['uplift_at_30pct']:+.1%}")
    if up.get("skipped"):
        lines.append(f"  uplift: skipped: {up['skipped']}")
    return lines


def run_summary(report: dict, home: DataHome) -> str:
    lines = [f"run {report['run_id']} as of {report['as_of'][:10]} -> bundle {report['bundle_version']}"]
    for name, s in report["stages"].items():
        rows = f"{s['rows']:>12,} rows" if s.get("rows") is not None else ""
        if s.get("skipped"):
            rows = f"skipped: {s['skipped']}"
        lines.append(f"  {name:<12} {s['seconds']:>8.2f} s  {rows}")
    if "loyalty" in report:
        lines += _loyalty(report["loyalty"])
    churn = report.get("churn", {})
    if churn.get("horizon"):
        lines.append(f"  churn horizon {churn['horizon']['days']} days: {churn['horizon']['reason']}")
        if churn["horizon"].get("warning"):
            lines.append(f"         warning: {churn['horizon']['warning']}")
    if churn.get("skipped"):
        lines.append(f"  churn: skipped: {churn['skipped']}")
    elif churn.get("test"):
        t, base = churn["test"], churn.get("baselines", {})
        best = max(base.items(), key=lambda kv: kv[1].get("roc_auc") or 0, default=(None, {}))
        served = f", served: {churn['served']}" if churn.get("served") else ""
        lines.append(f"  churn ({churn['horizon_days']} days{served}): ROC-AUC {t['roc_auc']:.3f}, Brier {t['brier']:.3f}, "
                     f"lift@10% {t['lift_at_10pct']:.2f}; best baseline {best[0]} ROC-AUC {best[1].get('roc_auc', 0):.3f}")
        for note in churn.get("notes", []):
            lines.append(f"         note: {note}")
    rec = report.get("recommend", {})
    if rec.get("selected"):
        gain = rec.get("test", {}).get("ndcg_gain_over_popularity")
        tail = f", {gain:+.0%} nDCG@10 over popularity on the held-out period" if gain is not None else ""
        lines.append(f"  recommend: {rec['selected']}{tail}")
    lines += _promotions(report.get("promotions", {}))
    choices = [(path, sel["summary"]) for path, sel in report_selections(report) if sel.get("summary")]
    if choices:
        lines.append("  model choice (every candidate with its interval: report.html):")
        lines += [f"    {path}: {summary}" for path, summary in choices]
    counts = report.get("segments", {}).get("counts")
    if counts:
        lines.append("  segments: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    lines.append(f"bundle: {home.bundles / report['bundle_version']}")
    page = report.get("report_html")
    if page:
        broken = f"; {len(page['errors'])} plot(s) failed: see report_html.errors" if page.get("errors") else ""
        lines.append(f"report: {home.bundles / report['bundle_version'] / REPORT_HTML.file} "
                     f"({page['figures']} plots, {page['seconds']:.1f} s{broken})")
    if not report.get("active", True):
        lines.append("partial run (--stages): the bundle above is not made CURRENT; the served bundle is unchanged")
    return "\n".join(lines)
