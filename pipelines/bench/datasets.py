"""The data sets of `behavior bench accuracy`, each written as the export a user would ingest,
with the `behavior ingest` options (column mapping, defaults, date format) that read it.

- `cdnow`: the CDNOW sample (whitespace-separated, no header) as an order export: one row per
  order with an order number (the line), the customer, the day (YYYYMMDD), CDs and dollars.
  No item: every order is of the item `cd`.
- `donations`: the donations summary (people per number of repeat years and last year of
  giving, over 6 annual opportunities after a first gift in 1995) expanded into one gift per
  donor and year, as a charity's gift export: donor, gift date, fund. The years of the repeat
  gifts before the last one and the day of each gift in its year are drawn with a fixed seed
  (the summary does not say them); the summary is reproduced exactly. No amounts.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from behavior.errors import InputError

FIRST_GIFT_YEAR = 1995


@dataclass(frozen=True)
class RealData:
    """An export file and how to ingest and run it."""

    name: str
    path: Path
    ingest_args: tuple[str, ...]
    as_of: str                      # the run's --as-of; the data after it is the forward holdout
    forward_days: int               # the forward horizon (churn label, BG/NBD holdout)
    describe: str
    notes: tuple[str, ...] = field(default=())


def _need(path: Path) -> Path:
    if not path.is_file():
        raise InputError(f"{path}: not found; pass the folder of CDNOW_sample.txt and donations.csv "
                         "with --real-data (the repository has them in tests/fixtures/real)")
    return path


def cdnow_export(src: Path, dst: Path) -> RealData:
    """Write the CDNOW sample as a CSV order export."""
    rows = 0
    with open(_need(src)) as fh, open(dst, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["order_no", "customer_id", "order_date", "cds", "dollars"])
        for line in fh:
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 5:
                raise InputError(f"{src}, line {rows + 1}: expected 5 whitespace-separated fields "
                                 f"(customer id, index, date, CDs, dollars), found {len(parts)}")
            rows += 1
            w.writerow([f"o{rows}", parts[0], parts[2], parts[3], parts[4]])
    return RealData(
        "CDNOW", dst,
        ("--map", "payment_id=order_no", "--map", "user_id=customer_id", "--map", "paid_at=order_date",
         "--map", "quantity=cds", "--map", "amount=dollars", "--default", "item_id=cd",
         "--default", "currency=USD", "--date-format", "%Y%m%d"),
        as_of="1997-10-01", forward_days=273,
        describe=f"CDNOW sample, {rows:,} orders, as of 1997-10-01, forward 39 weeks")


def donations_export(src: Path, dst: Path, seed: int = 0) -> RealData:
    """Expand the donations summary into one gift per donor and year, as a CSV gift export."""
    rng = np.random.default_rng(seed)
    donors = 0
    with open(_need(src), newline="") as fh, open(dst, "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["donor_id", "gift_date", "fund"])
        for i, rec in enumerate(csv.DictReader(fh), start=2):
            try:
                freq, rec_year, periods, weight = (int(rec[k]) for k in ("frequency", "recency", "periods", "weights"))
            except (KeyError, TypeError, ValueError):
                raise InputError(f"{src}, row {i}: frequency, recency, periods and weights must be "
                                 "whole numbers") from None
            if not (0 <= freq <= rec_year <= periods) or (freq == 0) != (rec_year == 0):
                raise InputError(f"{src}, row {i}: frequency {freq} and recency {rec_year} are not a "
                                 f"giving history over {periods} years")
            for _ in range(weight):
                donors += 1
                middle = rng.choice(np.arange(1, rec_year), size=freq - 1, replace=False) if freq > 1 else []
                years = sorted({0, rec_year, *map(int, middle)}) if freq else [0]
                for y in years:
                    day = date(FIRST_GIFT_YEAR + y, 1, 1) + timedelta(days=int(rng.integers(0, 365)))
                    w.writerow([f"D{donors:05d}", day.isoformat(), "general fund"])
    return RealData(
        "donations", dst,
        ("--map", "user_id=donor_id", "--map", "paid_at=gift_date", "--map", "item_id=fund",
         "--default", "currency=USD"),
        as_of="1999-01-01", forward_days=1096,
        describe=f"donations, {donors:,} donors over 1995-2001, as of 1999-01-01, forward 3 years",
        notes=("gift years between the first and the last and the day in each year are drawn "
               "(seed 0); the summary holds only the counts",))


def export_history(path: Path) -> int:
    """Data rows of an export fixture (lines after the header)."""
    with open(path, "rb") as fh:
        return max(sum(1 for line in fh if line.strip()) - 1, 0)
