"""The same lake gives the same bundle on either engine: `behavior run` and `behavior run
--engine spark` on an 800-customer synthetic lake (half of it assigned to each promotion, so
that uplift models are trained and served) publish Parquet and array files equal in every
column (floats within 1e-9), churn and uplift scores included: the model rows reach every fit
and sample in one defined order with fixed seeds, whatever order an engine returns them in,
and the features they are fitted on are the same doubles on both engines. The Spark run ran
every stage on Spark, published an intact bundle that became the served one, and the API serves
it. Uses the session's Spark (tests/pipelines/conftest.py), skipped only without Java."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from behavior.store.bundle import verify
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.synth_files import write_synth
from tests.bundle_files import assert_arrays_close

# Parquet files whose rows are keyed (compared after sorting by the key)
KEYS = {"profiles.parquet": ["user_id"], "merchants.parquet": ["merchant_id"]}


def _run(home: DataHome, *args: str) -> tuple[dict, object]:
    from pipelines.cli import app

    out = CliRunner().invoke(app, ["--data-dir", str(home.root), "--quiet", "run", "--json", *args])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    return rep, home.bundles / rep["bundle_version"]


@pytest.mark.slow
def test_both_engines_publish_the_same_bundle(spark, tmp_path, monkeypatch):
    monkeypatch.delenv("BEHAVIOR_RECOMMEND_TRAINER", raising=False)
    write_synth(tmp_path / "synth", users=800, months=12, seed=11, promo_assign_rate=0.5)
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "synth"], IngestOptions())
    duck_rep, duck = _run(home)
    spark_rep, spk = _run(home, "--engine", "spark")
    assert spark_rep["engine"]["name"] == "spark" and duck_rep["as_of"] == spark_rep["as_of"]
    assert "skipped" not in duck_rep["churn"] and duck_rep["churn"]["served"] == spark_rep["churn"]["served"]
    files = sorted(p.name for p in duck.iterdir() if p.suffix in (".parquet", ".npz"))
    assert "profiles.parquet" in files and files == sorted(p.name for p in spk.iterdir() if p.suffix in (".parquet", ".npz"))
    assert len(files) > 4 and "uplift_scores.parquet" in files
    for name in files:
        if name.endswith(".npz"):
            assert_arrays_close(duck / name, spk / name)
            continue
        ta, tb = pq.read_table(duck / name), pq.read_table(spk / name)
        assert ta.schema == tb.schema, name
        keys = KEYS.get(name) or list(ta.column_names)
        da = ta.to_pandas().sort_values(keys, kind="stable").reset_index(drop=True)
        db = tb.to_pandas().sort_values(keys, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(da, db, check_exact=False, rtol=1e-9, atol=1e-9, obj=name)
    # the Spark run: every stage on Spark, an intact bundle, the served one, and the API serves it
    assert spark_rep["engine"]["duckdb_stages"] == []
    assert set(spark_rep["engine"]["spark_stages"]) == {"features", "loyalty", "merchants", "churn", "recommend",
                                                         "promotions"}
    verify(spk)
    assert home.current.read_text().strip() == spark_rep["bundle_version"] and spark_rep["active"]
    for name in ("merchants.parquet", "cohort_retention.parquet", "retention_curves.parquet", "recommender.npz",
                 "category_affinity.parquet"):
        assert name in files, name
    assert spark_rep["churn"]["test"]["n"] > 0 and spark_rep["recommend"]["selected"]
    _served(home, spark_rep, spk, tmp_path)


def _served(home: DataHome, rep: dict, folder, tmp_path) -> None:
    """The API started on the data home serves the bundle `rep` published: its version, a
    user's recommendations and profile."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient
    from api.main import create_app
    from api.settings import Settings
    from behavior.store.keys import SCOPES, create_key

    key = create_key(tmp_path / "keys.json", "all", list(SCOPES))
    settings = Settings(data_dir=home.root, keys_file=tmp_path / "keys.json", reload_interval_s=0, rate_limit_per_s=0)
    user = pq.read_table(folder / "profiles.parquet", columns=["user_id"]).column("user_id")[0].as_py()
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        model = client.get("/v1/model", headers={"X-API-Key": key})
        assert model.status_code == 200 and rep["bundle_version"] in model.text
        recs = client.get(f"/v1/users/{user}/recommendations", headers={"X-API-Key": key})
        assert recs.status_code == 200 and recs.json()["items"], recs.text
        assert recs.json()["source"] == "model" or rep["recommend"]["selected"] == "popularity", recs.text
        profile = client.get(f"/v1/users/{user}/profile", headers={"X-API-Key": key})
        assert profile.status_code == 200 and profile.json()["user_id"] == user
