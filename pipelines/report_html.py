"""`report.html` of a bundle: the run's key figures and main plots on one self-contained page.

Everything is inline: CSS in a <style> element, each plot a PNG as a `data:` URI. No
script, font or image is fetched, so the page reads the same offline, attached to an
e-mail, or from the bundle folder. Only aggregates are shown (no user ids), so erasing a
user never needs the page rewritten.

The page is made at publish time from the final report and the bundle's tables; a plot
that fails is replaced by its error message (and listed in the report's
`report_html.errors`) rather than failing the run whose bundle the API is waiting for.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import closing
from typing import Any

import pandas as pd
import pyarrow as pa

from behavior.store import bundle as B

DPI = 90     # enough for a screen, keeps the page small and the render quick

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.5em 2em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.1em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5em 0 1em; } td, th { padding: 0.3em 0.9em; text-align: left;
       border-bottom: 1px solid #eee; vertical-align: top; } th { color: #555; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.92em; }
.error { color: #a33; } .note { color: #555; font-size: 0.95em; }
"""


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _num(v: Any, fmt: str = "{:,.3f}") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    return fmt.format(v) if isinstance(v, (int, float)) else str(v)


def key_figures(report: dict, customers: int | None) -> list[tuple[str, str]]:
    """(label, value) rows of the headline numbers of a run report (missing sections skipped)."""
    rows: list[tuple[str, str]] = []
    if customers is not None:
        rows.append(("customers in the bundle", f"{customers:,}"))
    seg = (report.get("segments") or {}).get("counts") or {}
    if seg:
        top = max(seg, key=seg.get)
        rows.append(("largest segment", f"{top} ({seg[top]:,})"))
    loy = report.get("loyalty") or {}
    if loy.get("holdout", {}).get("error_pct") is not None:
        rows.append((f"loyalty model ({loy.get('model', 'bgnbd')}): holdout error of expected purchases",
                     f"{loy['holdout']['error_pct']:+.1f}%"))
    gg = loy.get("gamma_gamma") or {}
    if gg.get("skipped"):
        rows.append(("spend model (Gamma-Gamma) and CLV", f"skipped: {gg['skipped']}"))
    elif (gg.get("fallback") or {}).get("customers"):
        rows.append(("customers given the population mean spend (spend_fallback)", f"{gg['fallback']['customers']:,}"))
    ch = report.get("churn") or {}
    if ch.get("skipped"):
        rows.append(("churn model", f"skipped: {ch['skipped']}"))
    elif ch.get("test"):
        t = ch["test"]
        best = max((b.get("roc_auc", 0) for b in (ch.get("baselines") or {}).values()), default=None)
        rows.append(("churn model ROC-AUC (held-out cutoff)",
                     f"{t['roc_auc']:.3f}" + (f" (best baseline {best:.3f})" if best is not None else "")))
        rows.append(("churn rate / Brier score / lift in the top 10%",
                     f"{t.get('churn_rate', float('nan')):.1%} / {t['brier']:.3f} / {t['lift_at_10pct']:.2f}x"))
    rec = report.get("recommend") or {}
    test = rec.get("test") or {}
    sel = rec.get("selected")
    if sel and sel in test and "popularity" in test:
        rows.append((f"recommender ({sel}) nDCG@10 on the last {test.get('days', '?')} days",
                     f"{test[sel]['ndcg@10']:.3f} (popularity {test['popularity']['ndcg@10']:.3f})"))
    elif sel:
        rows.append(("recommender", sel))
    elif rec.get("skipped"):
        rows.append(("recommender", f"skipped: {rec['skipped']}"))
    pr = report.get("promotions") or {}
    eff = pr.get("effectiveness") or {}
    if eff:
        est = [p for p, e in eff.items() if e.get("status") == "estimated"]
        rows.append(("promotions estimated", f"{len(est)} of {len(eff)}"))
    up = pr.get("uplift") or {}
    for pid, arm in (up.get("arms") or {}).items():
        test, chosen = arm["test"], arm["chosen"]
        base = test.get("response", {}).get("qini")
        rows.append((f"uplift of {pid} ({chosen}) held-out Qini",
                     f"{test[chosen]['qini']:.3f}" + (f" (response model {base:.3f})" if base is not None else "")))
    secs = sum(s.get("seconds", 0) for s in (report.get("stages") or {}).values())
    rows.append(("stages run", f"{len(report.get('stages') or {})} in {secs:,.1f} s"))
    return rows


def _frame(tables: Mapping[B.Artifact, Any], name: B.Artifact, columns: list[str] | None = None) -> pd.DataFrame | None:
    t = tables.get(name)
    if not isinstance(t, pa.Table):
        return None
    if columns is not None:
        t = t.select([c for c in columns if c in t.column_names])
    return t.to_pandas()


def _has_view(con, name: str) -> bool:
    """Whether `con` has the lake view `name` (a Spark run without a local lake has none)."""
    found = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchall()
    return bool(found[0][0])


def _monthly_table(con, cursor, parts) -> pd.DataFrame | None:
    """The monthly payment figures of the `payments` view of `con` (None without one), queried
    on `cursor` (a cursor of `con`). With the run's user parts of that view already written
    (`parts`, on `con`), the figures are summed from each part's
    (`behavior.payment_stats.monthly_partial_sql`): a part's payments group in memory, where the
    whole log's spilled past DuckDB's cap."""
    from behavior import payment_stats as S

    if con is None or not _has_view(cursor, "payments"):
        return None
    if parts is None or not parts.written or getattr(parts.engine, "con", None) is not con \
            or parts.payments != "payments":
        return cursor.sql(S.monthly_payments_sql("payments")).df()
    from behavior.features import by_user_part
    from behavior.sql_dialect import DuckDBEngine

    engine = DuckDBEngine(cursor)
    with closing(by_user_part(engine, "payments", [parts.as_of], ["user_id", "payment_id", "status", "amount", "paid_at"],
                              lambda lines, literal: engine.arrow(S.monthly_partial_sql(lines, literal)),
                              parts)) as tables:
        partials = next(tables)
    cursor.register("report_monthly_partials", partials)
    try:
        return cursor.sql(S.monthly_combine_sql("report_monthly_partials")).df()
    finally:
        cursor.unregister("report_monthly_partials")


class MonthlyFigures:
    """The page's monthly payment figures (`_monthly_table`), computed on a thread of their own
    on a cursor of `con`: its own connection to the same database (in UTC, as the run's), used
    by nothing else meanwhile. DuckDB's scan runs outside the GIL, so the figures are made while
    the rest of the page is drawn, or, started by the runner once the features stage has written
    the user parts, while the later stages run (on the core their Python leaves idle)."""

    def __init__(self, con, parts=None) -> None:
        self._cursor = con.cursor() if con is not None else None
        if self._cursor is not None:
            self._cursor.execute("SET TimeZone = 'UTC'")   # (a session setting: a cursor has its own)
        pool = ThreadPoolExecutor(1, thread_name_prefix="report-monthly")
        try:
            self._future: Future = pool.submit(_monthly_table, con, self._cursor, parts)
        finally:
            pool.shutdown(wait=False)   # the thread ends with its query; `result` or `stop` waits for it

    def result(self) -> pd.DataFrame | None:
        return self._future.result()

    def stop(self) -> None:
        """Interrupt the query if it still runs and wait for its thread (before the parts are
        removed and the connection closed); the figures are not read afterwards."""
        if self._cursor is not None and not self._future.done():
            self._cursor.interrupt()
        wait([self._future])
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def _figures(report: dict, tables: Mapping[B.Artifact, Any], currency: str | None, monthly: MonthlyFigures
             ) -> list[tuple[str, str, Callable[[], Any]]]:
    """(section, caption, thunk making the figure) of every plot of the page, in order."""
    from behavior import plots as P

    profiles = _frame(tables, B.PROFILES, ["loyalty_score", "churn_probability", "churn_reasons"])

    def month_table() -> pd.DataFrame | None:
        return monthly.result()

    churn, rec, promos = report.get("churn"), report.get("recommend"), report.get("promotions") or {}
    seg = (report.get("segments") or {}).get("counts")
    return [
        ("Payments", "Successful payments, customers and net sales per month.",
         lambda: P.plot_monthly_volume(month_table(), currency)),
        ("Payments", "Failure and refund rates per month.", lambda: P.plot_failure_refund_rates(month_table())),
        ("Segments and loyalty", "Customers per RFM segment at as_of.", lambda: P.plot_segment_sizes(seg)),
        ("Segments and loyalty", "Loyalty score distribution and tiers.", lambda: P.plot_loyalty_tiers(profiles)),
        ("Retention and churn", "Monthly acquisition cohorts: share buying again k months later.",
         lambda: P.plot_cohort_retention(_frame(tables, B.COHORT_RETENTION))),
        ("Retention and churn", "Retention by current segment.",
         lambda: P.plot_retention_curves(_frame(tables, B.RETENTION_CURVES))),
        ("Retention and churn", "Churn model calibration on the held-out cutoff.",
         lambda: P.plot_calibration(churn)),
        ("Retention and churn", "Cumulative gain and lift of the churn model and its baselines.",
         lambda: P.plot_gain_lift(churn)),
        ("Retention and churn", "Most common churn reasons of the customers at risk.",
         lambda: P.plot_churn_reasons(profiles)),
        ("Recommendations", "Top-10 metrics of every candidate and of the selected model against popularity.",
         lambda: P.plot_recommender_metrics(rec)),
        ("Promotions", "Lift of each past promotion over its control group, 95% intervals.",
         lambda: P.plot_promotion_lift(promos.get("effectiveness"), currency)),
        ("Promotions", "Held-out Qini curve of the uplift model.", lambda: P.plot_qini(promos.get("uplift"))),
        ("Merchants", "Merchants per segment, the riskiest by revenue at stake (churn risk x net revenue of the "
                      "last 90 days) and the share of wallet.",
         lambda: P.plot_merchant_health(_frame(tables, B.MERCHANTS), currency)),
    ]


def _figure_html(caption: str, make: Callable[[], Any], errors: list[str]) -> str:
    """The <figure> of `make()`'s plot, or a paragraph with its error (also added to `errors`)."""
    try:
        fig = make()
        data = _png(fig)
        ax = fig.axes[0]
        alt = fig._suptitle.get_text() if fig._suptitle else ax.get_title(loc="left") or ax.get_title()
        return (f"<figure><img alt=\"{_esc(alt)}\" src=\"data:image/png;base64,{data}\">"
                f"<figcaption>{_esc(caption)}</figcaption></figure>")
    except Exception as exc:  # noqa: BLE001 - one broken plot must not cost the run its bundle
        errors.append(f"{caption} {type(exc).__name__}: {exc}")
        return f"<p class=\"error\">{_esc(caption)} could not be drawn: {_esc(type(exc).__name__)}: {_esc(exc)}</p>"


def _interval(low: Any, high: Any) -> str:
    return f"{_num(low, '{:.4f}')} to {_num(high, '{:.4f}')}"


def _candidate_row(r, best: bool) -> str:
    """A row of a model-choice table (a `plots.model_choice_table` row)."""
    vs_best = ("<td class=\"num\">best</td><td></td>" if best else
               f"<td class=\"num\">{_num(r.vs_best, '{:+.4f}')}</td><td>{_interval(r.vs_best_low, r.vs_best_high)}</td>")
    return (f"<tr><td>{_esc(r.candidate)}</td><td>{'baseline' if r.baseline else 'model'}</td>"
            f"<td class=\"num\">{_num(r.value, '{:.4f}')}</td><td>{_interval(r.low, r.high)}</td>{vs_best}"
            f"<td>{'<b>served</b>' if r.served else ''}</td></tr>")


def model_choice_html(report: dict, errors: list[str]) -> list[str]:
    """The "Model choice" section: per served model (every `selection` of the report), the
    sentence of what it beat or why a baseline was kept, its candidates with the metric and the
    difference to the best (95% intervals), and the plot of those differences; nothing when the
    report holds no choice."""
    from behavior import plots as P
    from behavior.model_choice import metric_name

    served = P.served_models(report)
    if not served:
        return []
    parts = ["<h2>Model choice</h2>",
             "<p class=\"note\">Every served model is compared with simple baselines on a validation split; the "
             "simplest candidate (baselines first) whose 95% bootstrap interval of the difference to the best "
             "candidate reaches 0 is served, so a model replaces a baseline only when it is better beyond the "
             "noise of the validation data.</p>"]
    for _, title, sel in served:
        table = P.model_choice_table(sel)
        metric = metric_name(sel.get("metric", "metric"))
        parts.append(f"<h3>{_esc(title)}</h3><p><b>{_esc(sel.get('summary', ''))}</b></p>")
        parts += [f"<p class=\"note\">{_esc(note)}</p>" for note in sel.get("notes") or []]
        if table.empty:
            continue
        parts.append(f"<table><tr><th>candidate</th><th>kind</th><th>{_esc(metric)}</th>"
                     "<th>95% interval</th><th>difference to the best</th><th>95% interval</th><th></th></tr>")
        best = table["value"].idxmax()
        parts += [_candidate_row(r, r.Index == best) for r in table.itertuples()]
        parts.append("</table>")
        parts.append(_figure_html(f"{title}: each candidate's {metric} minus the best "
                                  f"candidate's, with the paired 95% bootstrap interval.",
                                  lambda sel=sel, title=title: P.plot_model_choice(sel, title), errors))
    return parts


def render_report(report: dict, tables: Mapping[B.Artifact, Any], con=None, currency: str | None = None,
                  user_parts=None, monthly: MonthlyFigures | None = None) -> tuple[str, dict]:
    """(the HTML page, {"seconds", "figures", "errors"}) for a final run report and the
    bundle's tables (catalogue entry -> Arrow table, as the stages return them); `con` is a
    DuckDB connection with the `payments` view for the monthly plots (None, or no such view: they say there is
    no data); `user_parts`, the run's `behavior.features.UserParts` of that view, which the monthly figures
    read part by part once they are written; `monthly`, those figures if the runner started them
    already (`MonthlyFigures` of `con` and `user_parts`)."""
    t0 = time.perf_counter()
    profiles = tables.get(B.PROFILES)
    customers = profiles.num_rows if isinstance(profiles, pa.Table) else None
    title = f"Run report: bundle {report.get('bundle_version') or '(unpublished)'}"
    parts = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">",
             f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
             f"<title>{_esc(title)}</title><style>{_CSS}</style></head><body>",
             f"<h1>{_esc(title)}</h1>",
             f"<p class=\"meta\">as of {_esc(report.get('as_of', '?'))} · run {_esc(report.get('run_id', '?'))} · "
             f"{'active (served by the API)' if report.get('active') else 'not active (a partial run)'} · "
             f"time unit {_esc(report.get('time_unit', 'day'))}"
             + (f" · money in {_esc(currency)}" if currency else "") + "</p>",
             "<h2>Key figures</h2><table>"]
    parts += [f"<tr><th>{_esc(k)}</th><td class=\"num\">{_esc(v)}</td></tr>" for k, v in key_figures(report, customers)]
    parts.append("</table>")
    notes = [(s, n) for s, section in report.items() if isinstance(section, dict)
             for n in (section.get("notes") if isinstance(section.get("notes"), list) else [])]
    notes += [("merchants", n) for n in ((report.get("merchants") or {}).get("churn") or {}).get("notes", []) or []]
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li class=\"note\"><b>{_esc(s)}</b>: {_esc(n)}</li>"
                                                   for s, n in notes) + "</ul>")
    errors: list[str] = []
    monthly = monthly or MonthlyFigures(con, user_parts)   # (its query runs while the other figures are drawn)
    try:
        figures = _figures(report, tables, currency, monthly)
        parts += model_choice_html(report, errors)
        section = None
        for sec, caption, make in figures:
            if sec != section:
                parts.append(f"<h2>{_esc(sec)}</h2>")
                section = sec
            parts.append(_figure_html(caption, make, errors))
    finally:
        monthly.stop()
    stages = report.get("stages") or {}
    if stages:
        parts.append("<h2>Stages</h2><table><tr><th>stage</th><th>seconds</th><th>rows</th></tr>")
        parts += [f"<tr><td>{_esc(k)}</td><td class=\"num\">{_num(v.get('seconds'), '{:,.1f}')}</td>"
                  f"<td class=\"num\">{_num(v.get('rows'), '{:,}')}</td></tr>" for k, v in stages.items()]
        parts.append("</table>")
    parts.append("<p class=\"meta\">Made by <code>behavior run</code> at publish time; the numbers are those of "
                 "report.json in the same bundle. Analyst notebooks with more views: notebooks/.</p></body></html>\n")
    n_figures = sum(p.startswith("<figure>") for p in parts)
    info = {"seconds": round(time.perf_counter() - t0, 3), "figures": n_figures, "errors": errors}
    return "\n".join(parts), info
