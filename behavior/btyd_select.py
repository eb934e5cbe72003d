"""Choosing the BTYD transaction model on a holdout, and handing the fitted model on.

Candidates (`MODELS`, simplest first): BG/NBD (`"bgnbd"`) and MBG/NBD (`"mbgnbd"`). Both have
four parameters (r, alpha, a, b); BG/NBD is the simpler one: a customer can drop out only right
after a repeat purchase, so a one-time buyer is alive by assumption; MBG/NBD adds a chance of
dropping out right after the first purchase, which lets one-time buyers drop out too.

Protocol (`compare_on_holdout`): every candidate is fitted on the calibration summary (events
before cutoff = as_of - H) and predicts each calibration customer's purchase days in
[cutoff, cutoff + H); the per-customer loss is the squared error of the expected against the
actual count. Squared error, not absolute error: the models predict a mean, and the mean is what
minimises the squared error, while the absolute error is minimised by the median, which is 0
for most customers of a sparse history; absolute error therefore rewards lower predictions (on
the synthetic demo data, drawn from BG/NBD, it picks MBG/NBD) and is only reported.
The choice needs as many customers as make the paired interval clear of 0, not all of them: on
more than `CHOICE_CUSTOMERS` the bootstrap resamples that many drawn at random (seeded), and
four times as many while another candidate's interval to the chosen one still reaches 0 (the
interval's width goes as one over the square root of the customers), up to all of them; the
(n_boot, customers) resamples of 588,000 customers took 2 GB and seconds. The fits and the
holdout's figures are over every calibration customer.
`behavior.model_choice.choose` keeps the simpler candidate unless the other is better by more
than the paired bootstrap noise over customers. Also reported per candidate: the mean absolute
error, the total expected against the actual purchase days, and the aggregate repeat-purchase
curve (cumulative purchase days of the calibration customers every `CURVE_STEP_DAYS` days of
the holdout, expected and actual).

Hand-off (`with_transaction_model`, `transaction_model`): the loyalty stage's output table
carries the model fitted at as_of (its `to_dict()` JSON in the table's schema metadata), so the
stages after it (churn's scoring features and reasons) use the same fitted model instead of
refitting one: a profile's P(alive) and its churn reasons come from one model.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from behavior.btyd import BetaGeoFitter, ConvergenceError, ModifiedBetaGeoFitter
from behavior.model_choice import Choice, choose, resamples, score_per_unit, uncompared
from behavior.sql_dialect import Dialect, get_dialect

MODELS: dict[str, type[BetaGeoFitter]] = {"bgnbd": BetaGeoFitter, "mbgnbd": ModifiedBetaGeoFitter}
METRIC = "neg_mse_holdout_purchases"   # minus the mean squared error of the purchase days per customer
CURVE_STEP_DAYS = 7
MIN_CUSTOMERS = 100                    # calibration customers needed to compare the candidates
CHOICE_CUSTOMERS = 100_000             # the choice's bootstrap resamples at most this many (module docstring)
_BUCKETS = ("0", "1", "2", "3", "4", "5", "6", "7+")
_METADATA_KEY = b"behavior.transaction_model"
_US_PER_DAY = 86_400_000_000


def new_model(name: str, penalizer: float = 0.0) -> BetaGeoFitter:
    """An unfitted transaction model of `MODELS`."""
    if name not in MODELS:
        raise ValueError(f"unknown transaction model {name!r}; use one of {', '.join(MODELS)}")
    return MODELS[name](penalizer=penalizer)


def fit_summary(model: BetaGeoFitter, summary: pd.DataFrame) -> BetaGeoFitter:
    """`model` fitted on a BTYD summary's frequency, recency and T."""
    return model.fit(*(summary[c].to_numpy(float) for c in ("frequency", "recency", "T")))


def holdout_purchase_days_sql(payments: str, cutoff_literal: str, as_of_literal: str, cutoff_day: int,
                              dialect: str | Dialect = "duckdb") -> str:
    """(user_id, day): each user's distinct UTC purchase days in [cutoff, as_of), as days since
    the UTC day `cutoff_day` of the cutoff (days since 1970-01-01)."""
    d = get_dialect(dialect)
    day = f"CAST(FLOOR({d.epoch_us.format('paid_at')} / {_US_PER_DAY}.0) AS BIGINT) - {int(cutoff_day)}"
    return (f"SELECT DISTINCT user_id, {day} AS day FROM {payments} WHERE status = 'success' "
            f"AND paid_at >= {cutoff_literal} AND paid_at < {as_of_literal}")


@dataclass(frozen=True)
class Selection:
    """The transaction model to fit at as_of, and why: `chosen` (a `MODELS` name), `choice` (the
    holdout comparison; None when it could not be made), `holdout` (the report's
    `loyalty.holdout`), `notes`, `forced` (the configuration named the model)."""

    chosen: str
    choice: Choice | None
    holdout: dict
    notes: tuple[str, ...] = ()
    forced: bool = False

    def report(self) -> dict:
        """The report's `loyalty.selection`: `Choice.report()`, or the reason it was not made."""
        if self.choice is not None:
            return self.choice.report()
        why = self.notes[-1] if self.notes else "no holdout comparison"
        return {**uncompared(METRIC, self.chosen, why), "notes": list(self.notes)}


def _by_frequency(x: np.ndarray, expected: np.ndarray, actual: np.ndarray) -> list[dict]:
    bucket = np.minimum(x, 7).astype(int)   # 7 stands for "7+"
    rows = []
    for i, b in enumerate(_BUCKETS):
        part = bucket == i
        if part.any():
            rows.append({"frequency": b, "customers": int(part.sum()),
                         "expected_mean": round(float(expected[part].mean()), 4),
                         "actual_mean": round(float(actual[part].mean()), 4)})
    return rows


def _curve_days(holdout_days: int) -> list[int]:
    return sorted({*range(CURVE_STEP_DAYS, holdout_days, CURVE_STEP_DAYS), holdout_days})


def _forced(choice: Choice | None, forced: str, holdout: dict) -> Selection:
    note = f"[loyalty] model = \"{forced}\" forces the model"
    if choice is not None:
        note += f"; the holdout rule would choose {choice.chosen}"
        choice = replace(choice, chosen=forced, notes=(*choice.notes, note))
    return Selection(forced, choice, holdout, (note,), forced=True)


def choice_sample(n: int, max_customers: int | None, seed: int = 0) -> np.ndarray:
    """The calibration customers (row positions, ascending) the candidates are chosen on: all of
    them, or `max_customers` drawn without replacement (fixed seed) when there are more."""
    if max_customers is None or n <= max_customers:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_customers, replace=False))


def _settled(choice: Choice) -> bool:
    """Whether more customers could not change the choice: every other candidate's paired
    interval of the difference to the chosen one excludes 0."""
    return all(not (lo <= 0.0 <= hi) for c in choice.candidates if c.name != choice.chosen
               for _, lo, hi in [choice.gain(c.name, choice.chosen)])


def _choose_on_samples(losses: list, n: int, max_customers: int | None, n_boot: int, seed: int,
                       notes: list[str]) -> tuple[Choice, np.ndarray]:
    """`choose` on the per-customer `losses` ((name, simplicity, values of all n customers)) of
    `max_customers` customers, or of four times as many while the choice is not settled, up to
    all of them; the choice and the customers it was made on."""
    size = n if max_customers is None else max_customers
    while True:
        sample = choice_sample(n, size, seed)
        idx = resamples(len(sample), n_boot, seed)
        choice = choose(METRIC, [score_per_unit(name, v[sample], idx, simplicity=rank) for name, rank, v in losses],
                        notes=notes)
        if len(sample) == n or _settled(choice):
            return choice, sample
        size *= 4


def _candidate(name: str, penalizer: float, grid: list[int], x: np.ndarray, tx: np.ndarray,
               T: np.ndarray) -> tuple[BetaGeoFitter, np.ndarray, np.ndarray] | str:
    """The candidate `name` fitted on the calibration summary (x, tx, T), its expected purchases
    of each customer by the end of `grid` and the customers' total by each day of it; or why it
    is left out."""
    try:
        model = new_model(name, penalizer).fit(x, tx, T)
    except ConvergenceError as exc:
        return f"{name} left out: its calibration fit did not converge ({exc})"
    expected, by_day = model.conditional_expected_purchases_curve(grid, x, tx, T)   # grid ends at holdout_days
    if not np.all(np.isfinite(expected)):
        return f"{name} left out: its predictions are not finite for some customers"
    return model, expected, by_day


def compare_on_holdout(calibration: pd.DataFrame, purchase_days: pd.DataFrame, holdout_days: int, *,
                       penalizer: float = 0.0, forced: str | None = None, n_boot: int = 200,
                       seed: int = 0, max_customers: int | None = CHOICE_CUSTOMERS) -> Selection:
    """Fit every candidate on `calibration` (user_id, frequency, recency, T at the cutoff; rows
    with T > 0), score it on `purchase_days` (user_id, day: the distinct purchase days in the
    next `holdout_days` days, day 0 = the cutoff's) and choose (module docstring). With more
    than `max_customers` calibration customers (None: no limit) the choice's bootstrap is over a
    sample of that many (`choice_sample`), four times as many while another candidate's interval
    to the chosen one reaches 0, up to all; the fits and the holdout's figures (errors, totals,
    by frequency, the curve) are over every calibration customer. `forced` (a `MODELS` name)
    overrides the rule's choice; the comparison is still reported."""
    if forced is not None and forced not in MODELS:
        raise ValueError(f"unknown transaction model {forced!r}; use one of {', '.join(MODELS)}")
    if len(calibration) < MIN_CUSTOMERS:
        why = (f"fewer than {MIN_CUSTOMERS} customers before the cutoff; choose a later as_of or a "
               "shorter holdout_days")
        return _forced(None, forced, {"skipped": why}) if forced else \
            Selection("bgnbd", None, {"skipped": why}, (f"no holdout comparison ({why}): the simpler model",))
    # each purchase day's calibration customer (row position), by a hash lookup of the ids
    row = pc.index_in(pa.array(purchase_days["user_id"]), value_set=pa.array(calibration["user_id"]))
    mine = pc.is_valid(row).to_numpy(zero_copy_only=False)
    actual = np.bincount(row.drop_null().to_numpy(), minlength=len(calibration)).astype(float)
    x, tx, T = (calibration[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    grid = _curve_days(holdout_days)
    day = purchase_days["day"].to_numpy()[mine]
    curve: dict = {"days": grid, "actual": [int((day < t).sum()) for t in grid]}
    # The candidates are fitted and scored on threads, one each: numpy leaves the GIL in their
    # work, and one BLAS thread each keeps every sum in the order of a fit alone.
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(len(MODELS), thread_name_prefix="btyd") as pool:
        fitted = list(pool.map(lambda name: _candidate(name, penalizer, grid, x, tx, T), MODELS))
    losses, per_model, notes = [], {}, []
    for rank, (name, result) in enumerate(zip(MODELS, fitted)):
        if isinstance(result, str):
            notes.append(result)
            continue
        model, expected, by_day = result
        error = expected - actual
        losses.append((name, rank, -error ** 2))
        curve[name] = [round(float(v), 1) for v in by_day]
        exp_total, act_total = float(expected.sum()), float(actual.sum())
        per_model[name] = {"params": {k: round(v, 6) for k, v in model.params_.items()},
                           "log_likelihood": round(model.log_likelihood_, 2),
                           "mse": round(float(np.mean(error ** 2)), 6), "mae": round(float(np.mean(np.abs(error))), 6),
                           "expected_total": round(exp_total, 1),
                           "error_pct": round(100 * (exp_total - act_total) / act_total, 2) if act_total else None,
                           "by_frequency": _by_frequency(x, expected, actual)}
    if not losses:
        why = "no candidate's calibration fit converged"
        return _forced(None, forced, {"skipped": why}) if forced else \
            Selection("bgnbd", None, {"skipped": why}, (*notes, f"{why}: the simpler model"))
    choice, sample = _choose_on_samples(losses, len(calibration), max_customers, n_boot, seed, notes)
    shown = forced if forced in per_model else choice.chosen
    holdout = {"days": holdout_days, "customers": int(len(calibration)), "choice_customers": int(len(sample)),
               "actual_total": float(actual.sum()), **per_model[shown], "model": shown, "candidates": per_model,
               "curve": curve}
    return _forced(choice, forced, holdout) if forced else Selection(choice.chosen, choice, holdout, tuple(notes))


# ------------------------------------------------------------------------------ hand-off


def with_transaction_model(table: pa.Table, model: BetaGeoFitter) -> pa.Table:
    """`table` carrying the fitted `model` (as `to_dict()` JSON in its schema metadata)."""
    meta = dict(table.schema.metadata or {})
    meta[_METADATA_KEY] = json.dumps(model.to_dict()).encode()
    return table.replace_schema_metadata(meta)


def transaction_model(table: pa.Table | None) -> BetaGeoFitter | None:
    """The fitted transaction model a table carries (`with_transaction_model`), or None (no
    table, or the loyalty stage could not fit one)."""
    meta = (table.schema.metadata or {}) if table is not None else {}
    if _METADATA_KEY not in meta:
        return None
    data = json.loads(meta[_METADATA_KEY])
    cls = next((c for c in MODELS.values() if c.__name__ == data.get("model")), None)
    if cls is None:
        raise ValueError(f"unknown transaction model {data.get('model')!r} in the loyalty output")
    return cls.from_dict(data)


__all__ = ["CHOICE_CUSTOMERS", "CURVE_STEP_DAYS", "METRIC", "MODELS", "Selection", "choice_sample",
           "compare_on_holdout", "fit_summary",
           "holdout_purchase_days_sql", "new_model", "transaction_model", "with_transaction_model"]
