"""Whole flows through the `behavior` command: synth -> ingest -> run, and its errors."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from behavior.store.bundle import verify


def behavior(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(data), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow")
    data, synth = root / "data", root / "synth"
    behavior(data, "synth", "--out", str(synth), "--users", "1500", "--months", "12", "--seed", "3")
    ingest = behavior(data, "ingest", str(synth), "--report", str(root / "ingest.json"))
    run = behavior(data, "run", "--report", str(root / "run.json"))
    return root, data, synth, ingest, run


def test_synth_writes_one_file_per_table_and_the_truth(flow):
    _, _, synth, _, _ = flow
    names = sorted(p.name for p in synth.iterdir())
    assert names == ["assignments.parquet", "items.parquet", "payments.parquet", "promotions.parquet",
                     "truth.json", "truth_users.parquet", "users.parquet"]
    truth = json.loads((synth / "truth.json").read_text())
    assert truth["time_unit"] == "day" and set(truth["bgnbd"]) == {"r", "alpha", "a", "b"}


def test_ingest_accounts_for_every_row(flow):
    root, data, synth, ingest, _ = flow
    rep = json.loads((root / "ingest.json").read_text())
    assert rep["read"] == rep["accepted"] + rep["duplicates"] + rep["rejected"]
    assert rep["read"] == sum(pq.read_metadata(synth / f"{t}.parquet").num_rows
                              for t in ("payments", "items", "users", "promotions", "assignments"))
    assert rep["rejected"] == 0
    assert "rows stored" in ingest.stdout
    again = behavior(data, "ingest", str(synth), "--json")
    rep2 = json.loads(again.stdout)
    payments = [f for f in rep2["files"] if f["table"] == "payments"][0]
    assert payments["accepted"] == 0 and payments["duplicates"] == payments["read"]


def test_run_publishes_a_verified_bundle_with_the_report(flow):
    root, data, synth, _, run = flow
    rep = json.loads((root / "run.json").read_text())
    assert {"run_id", "as_of", "bundle_version", "time_unit", "stages"} <= set(rep)
    assert rep["time_unit"] == "day"
    assert set(rep["stages"]) >= {"features", "profiles"}
    current = (data / "artifacts" / "CURRENT").read_text().strip()
    assert current == rep["bundle_version"]
    folder = data / "artifacts" / "bundles" / current
    manifest = verify(folder)
    assert manifest["as_of"] == rep["as_of"]
    assert json.loads((folder / "report.json").read_text()) == rep
    profiles = pq.read_table(folder / "profiles.parquet").to_pandas()
    truth = pq.read_table(synth / "truth_users.parquet").to_pandas()
    assert len(profiles) == len(truth) and profiles["user_id"].is_unique   # every synthetic user bought
    opted = set(pq.read_table(synth / "users.parquet").to_pandas().query("marketing_opt_out")["user_id"])
    assert set(profiles.loc[profiles["marketing_opt_out"], "user_id"]) == opted
    assert "bundle:" in run.stdout


def test_as_of_is_point_in_time(flow):
    root, data, _, _, _ = flow
    out = behavior(data, "run", "--as-of", "2024-07-01", "--json")
    rep = json.loads(out.stdout)
    assert rep["as_of"].startswith("2024-07-01")
    folder = data / "artifacts" / "bundles" / rep["bundle_version"]
    profiles = pq.read_table(folder / "profiles.parquet").to_pandas()
    assert profiles["last_purchase_at"].max() < __import__("pandas").Timestamp("2024-07-01", tz="UTC")
    # The earlier bundle stays for rollback.
    assert len(list((data / "artifacts" / "bundles").iterdir())) >= 2


@pytest.mark.parametrize("args, message", [
    (["run", "--as-of", "2000-01-01"], "before the first payment"),
    (["run", "--as-of", "yesterday"], "YYYY-MM-DD"),
    (["run", "--stages", "nope"], "unknown stage nope"),
    (["ingest", "/no/such/file.csv"], "no such file"),
    (["ingest", "x.csv", "--map", "user_id"], "canonical=value"),
])
def test_bad_usage_exits_2_with_a_message(flow, args, message):
    _, data, _, _, _ = flow
    out = behavior(data, *args, check=False)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_a_partial_run_does_not_replace_the_served_bundle(flow):
    _, data, _, _, _ = flow
    before = (data / "artifacts" / "CURRENT").read_text()
    out = behavior(data, "run", "--stages", "features")
    assert "not made CURRENT" in out.stdout
    assert (data / "artifacts" / "CURRENT").read_text() == before


def test_run_on_an_empty_data_home_says_what_to_do(tmp_path):
    out = behavior(tmp_path / "empty", "run", check=False)
    assert out.returncode == 2 and "behavior ingest" in out.stderr


def test_a_second_command_waits_for_none_and_says_who_holds_the_lock(flow):
    from pipelines.lake import locked

    _, data, synth, _, _ = flow
    from behavior.store.datahome import DataHome

    with locked(DataHome(data), "run"):
        out = behavior(data, "ingest", str(synth), check=False)
    assert out.returncode == 2 and "in use by `behavior run`" in out.stderr


def test_bench_prints_its_table(tmp_path):
    out = behavior(tmp_path, "bench", "--sizes", "20000", "--feature-lines", "20000", "--customers", "5000",
                   "--recommend-lines", "40000", "--repeat", "1")
    for step in ("ingest parquet | 20,000", "features | 20,000", "loyalty fit | 5,000", "loyalty score | 5,000",
                 "recommend ALS fit | 40,000", "recommend one user top-10 | 40,000",
                 "recommend search | 2,000"):   # the search's lake follows --recommend-lines
        assert f"| {step} |" in out.stdout


def test_run_writes_a_self_contained_html_report_into_the_bundle(flow):
    import re

    root, data, _, _, run = flow
    rep = json.loads((root / "run.json").read_text())
    folder = data / "artifacts" / "bundles" / rep["bundle_version"]
    assert "report.html" in verify(folder)["checksums"]
    page = (folder / "report.html").read_text()
    assert rep["report_html"]["errors"] == [] and rep["report_html"]["figures"] >= 10
    images = re.findall(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', page)
    assert len(images) == rep["report_html"]["figures"]
    assert not re.search(r"https?://", page)                      # nothing fetched: readable offline
    assert not re.search(r"""(src|href)=["'](?!data:)""", page)    # every resource is inline
    assert rep["bundle_version"] in page and "Key figures" in page
    assert "report.html" in run.stdout


def test_every_served_models_choice_is_in_the_report_the_page_and_the_printed_summary(flow):
    import html

    from behavior.model_choice import report_selections
    from behavior.plots import model_choice_title

    root, data, _, _, run = flow
    rep = json.loads((root / "run.json").read_text())
    page = html.unescape((data / "artifacts" / "bundles" / rep["bundle_version"] / "report.html").read_text())
    choices = list(report_selections(rep))
    assert {"loyalty", "churn", "recommend"} <= {path for path, _ in choices}
    section = page[page.index("<h2>Model choice</h2>"):]
    section = section[:section.index("<h2>", 1)]
    for path, sel in choices:
        assert sel["summary"].startswith(("served ", "kept the baseline ")), sel
        assert f"<h3>{model_choice_title(path)}</h3><p><b>{sel['summary']}</b></p>" in section
        assert f"    {path}: {sel['summary']}" in run.stdout
    assert section.count("<figure>") == sum(bool(sel["candidates"]) for _, sel in choices)


def test_report_prints_the_path_of_the_html_report(flow, tmp_path):
    root, data, _, _, _ = flow
    version = (data / "artifacts" / "CURRENT").read_text().strip()
    path = data / "artifacts" / "bundles" / version / "report.html"
    assert behavior(data, "report").stdout.strip() == str(path)
    assert behavior(data, "report", "--bundle", version).stdout.strip() == str(path)
    missing = behavior(data, "report", "--bundle", "19990101T000000Z-nope", check=False)
    assert missing.returncode == 2 and "no such bundle" in missing.stderr
    empty = behavior(tmp_path / "empty", "report", check=False)
    assert empty.returncode == 2 and "no bundle has been published" in empty.stderr and not empty.stdout
