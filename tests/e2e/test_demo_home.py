"""`behavior demo` writes only into a data home without data or one an earlier demo made (its
demo.json marker); it refuses a home holding other data, saying how to choose another."""

from __future__ import annotations

import json
import re

import pytest

from behavior.store.datahome import DataHome
from pipelines.demo_home import MARKER, NotADemoHome, claim_for_demo, is_demo_home
from tests.e2e.test_cli import behavior

# A shop's own export, in pounds: the data a demo must never mix synthetic customers into.
REAL = "payment_id,user_id,item_id,paid_at,amount,currency\nINV-1,C-17,SKU-1,2025-03-01 10:15:00,12.50,GBP\n"


def files(root) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if p.is_file()}


def test_demo_refuses_a_data_home_with_real_data_and_writes_nothing(tmp_path):
    data, src = tmp_path / "data", tmp_path / "export.csv"
    src.write_text(REAL)
    behavior(data, "ingest", str(src), "--default", "currency=GBP")
    before = files(data)
    out = behavior(data, "demo", "--users", "10", "--no-serve", check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "holds data that `behavior demo` did not write" in out.stderr and str(data / "lake") in out.stderr
    assert "make demo DATA_DIR=" in out.stderr and "--data-dir" in out.stderr and "Traceback" not in out.stderr
    assert files(data) == before          # no synth folder, no marker, the lake untouched


@pytest.mark.slow
def test_demo_runs_in_a_fresh_data_home_and_again_in_its_own(tmp_path):
    data = tmp_path / "demo"
    behavior(data, "demo", "--users", "10", "--no-serve")
    marker = json.loads((data / MARKER).read_text())
    assert marker["written_by"] == "behavior demo" and marker["users"] == 10 and marker["seed"] == 0
    again = behavior(data, "demo", "--users", "10", "--no-serve")   # its own home: accepted
    assert "bundle:" in again.stdout
    # the demo says how long its pipeline took, and the parts add up to about the whole
    took = re.search(r"pipeline: (\d+) s \(synth ([\d.]+) s, ingest ([\d.]+) s, run and publish ([\d.]+) s", again.stdout)
    assert took, again.stdout
    assert abs(int(took[1]) - sum(float(x) for x in took.groups()[1:])) <= 2


def test_what_counts_as_data_and_as_a_demo_home(tmp_path):
    home = DataHome(tmp_path / "home")
    claim_for_demo(home, users=10)                       # no folder yet: a fresh home
    assert is_demo_home(home)

    other = DataHome(tmp_path / "other")
    (other.root / "synth").mkdir(parents=True)          # synth files and keys are not lake data
    (other.root / "synth" / "payments.parquet").write_bytes(b"PAR1")
    (other.root / "api_keys.json").write_text("{}")
    (other.lake / "payments").mkdir(parents=True)       # an empty table folder holds nothing
    claim_for_demo(other)
    assert is_demo_home(other)

    for place in ("lake/_rejected/r.parquet", "inbox/n.json", "artifacts/bundles/v1/manifest.json"):
        real = DataHome(tmp_path / place.split("/")[0] / "home")
        (real.root / place).parent.mkdir(parents=True)
        (real.root / place).write_text("x")
        with pytest.raises(NotADemoHome, match="did not write"):
            claim_for_demo(real)
        assert not is_demo_home(real)
