"""The churn horizon follows the data's rhythm, through the command line: a charity's gift export
of yearly donors (one gift a year, 2019-2024, some stop), who give monthly from 2025 on. Run as
of 2025-01-01, the horizon is read from the yearly gifts before it (365 days), not from the
monthly ones after it; the run report and the `behavior run` output carry the choice and why."""

import csv
import json
from datetime import date, timedelta

import numpy as np
import pytest

from tests.e2e.test_cli import behavior

pytestmark = pytest.mark.slow
AS_OF = "2025-01-01"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("yearly")
    rng = np.random.default_rng(7)
    with open(root / "gifts.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["donor_id", "gift_date", "fund"])
        for i in range(400):
            for year in range(2019, 2025):
                w.writerow([f"D{i:04d}", (date(year, 1, 1) + timedelta(days=int(rng.integers(0, 365)))).isoformat(),
                            "general"])
                if rng.random() < 0.2:   # this donor stops
                    break
            else:   # still giving: monthly from 2025 on, after as_of
                for month in range(1, 13):
                    w.writerow([f"D{i:04d}", date(2025, month, 3).isoformat(), "general"])
    data = root / "data"
    behavior(data, "ingest", str(root / "gifts.csv"), "--map", "user_id=donor_id", "--map", "paid_at=gift_date",
             "--map", "item_id=fund", "--default", "currency=USD")
    return root, data


def run(root, data, name: str, *args: str) -> tuple[dict, str]:
    out = behavior(data, "run", "--stages", "churn", "--report", str(root / f"{name}.json"), *args)
    return json.loads((root / f"{name}.json").read_text())["churn"], out.stdout


def test_the_run_chooses_the_horizon_from_the_gifts_before_as_of_and_says_why(home):
    root, data = home
    ch, stdout = run(root, data, "auto", "--as-of", AS_OF)
    h = ch["horizon"]
    assert ch["horizon_days"] == h["days"] == 365 and h["source"] == "data" and "skipped" not in ch
    assert h["rhythm_days"] > 300 and h["repeat_customers"] > 200 and h["quantile"] == 0.75   # yearly, not monthly
    assert ch["label_days"] == 365 and "warning" not in h
    assert "chosen from the data" in h["reason"] and f"{h['repeat_customers']:,} repeat customers" in h["reason"]
    assert f"churn horizon 365 days: {h['reason']}" in stdout


def test_a_configured_horizon_shorter_than_the_gifts_rhythm_is_kept_with_a_warning(home):
    root, data = home
    (root / "h90.toml").write_text("[churn]\nhorizon_days = 90\n")
    ch, stdout = run(root, data, "h90", "--as-of", AS_OF, "--config", str(root / "h90.toml"))
    h = ch["horizon"]
    assert ch["horizon_days"] == h["days"] == 90 and h["source"] == "config"
    assert "horizon_days = 90 is shorter than the usual gap" in h["warning"]
    assert "the data suggests 365 days" in h["warning"]
    assert f"warning: {h['warning']}" in stdout


def test_a_history_too_short_for_the_rhythm_bounds_the_horizon_with_a_clear_reason(home):
    root, data = home
    ch, stdout = run(root, data, "short", "--as-of", "2020-07-01")
    h = ch["horizon"]
    assert h["suggested_days"] > 180 and ch["horizon_days"] == h["days"] == 180
    assert f"{h['suggested_days']}-day labels need" in h["reason"] and f"there are {h['history_days']}" in h["reason"]
    assert f"churn horizon 180 days: {h['reason']}" in stdout
    # a yearly donor seen from early 2019 gives again only in 2020: no training cutoff has a
    # donor who gave within 180 days, and the stage says so instead of failing
    assert "fewer than 20 retained customers" in ch["skipped"] and f"churn: skipped: {ch['skipped']}" in stdout
