"""`behavior run` on a lake too small for some stages: the stages that cannot work skip with
a reason, the run exits 0 and publishes a bundle of the rest, and the API serves that bundle,
answering the missing part with a 503 problem that carries the reason."""

from __future__ import annotations

import html
import json
import warnings

import pyarrow.parquet as pq

from behavior.store.keys import SCOPES, create_key
from api.main import create_app
from api.settings import Settings
from behavior.store.bundle import verify
from pipelines.stages import STAGES
from tests.api.conftest import assert_problem
from tests.e2e.test_cli import behavior

with warnings.catch_warnings():  # starlette asks for httpx2, which is not part of the lock file
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

# A shop's first day: one customer, one order of its one product (an order export's columns).
ECONOMICS = {"target": "any", "economics": {"value_per_conversion": 20, "coupon_cost": 3, "contact_cost": 0.1},
             "budget": {"users": 100}}
ONE_ORDER = "payment_id,user_id,item_id,paid_at,amount,currency\nA-1001,C-17,SKU-1,2025-03-01 10:15:00,12.50,EUR\n"


def test_a_one_item_one_user_one_day_lake_publishes_a_bundle_the_api_serves(tmp_path):
    data, src = tmp_path / "data", tmp_path / "orders.csv"
    src.write_text(ONE_ORDER)
    behavior(data, "ingest", str(src), "--default", "currency=EUR")
    out = behavior(data, "run", "--report", str(tmp_path / "run.json"))   # exit 0 (was 2: no bundle)
    rep = json.loads((tmp_path / "run.json").read_text())

    # the report says what each stage did or why it skipped
    assert set(rep["stages"]) == set(STAGES)
    why = rep["stages"]["recommend"]["skipped"]
    assert "only 1 item bought before as_of" in why and rep["stages"]["recommend"]["rows"] is None
    assert rep["recommend"]["skipped"] == why
    assert all("skipped" not in s and s["rows"] == 1 for n, s in rep["stages"].items()
               if n in ("features", "loyalty", "segments", "churn", "profiles"))
    assert rep["churn"]["skipped"]                      # the churn model: too little history, said so
    assert any(line.split()[:1] == ["recommend"] and line.endswith(f"skipped: {why}") for line in out.stdout.splitlines())

    # a verified, active bundle without the recommender, with report.html and the profile
    folder = data / "artifacts" / "bundles" / rep["bundle_version"]
    assert (data / "artifacts" / "CURRENT").read_text().strip() == rep["bundle_version"]
    files = set(verify(folder)["checksums"])
    assert {"profiles.parquet", "report.json", "report.html"} <= files and "recommender.npz" not in files
    assert rep["report_html"]["errors"] == []
    page = html.unescape((folder / "report.html").read_text())
    assert f"<th>recommender</th><td class=\"num\">skipped: {why}</td>" in page and f"recommend skipped: {why}" in page
    assert pq.read_table(folder / "profiles.parquet").column("user_id").to_pylist() == ["C-17"]

    key = create_key(data / "api_keys.json", "all", list(SCOPES))
    with TestClient(create_app(Settings(data_dir=data, reload_interval_s=0, rate_limit_per_s=0)),
                    raise_server_exceptions=False) as client:
        profile = client.get("/v1/users/C-17/profile", headers={"X-API-Key": key})
        assert profile.status_code == 200, profile.text
        assert profile.json()["user_id"] == "C-17" and profile.json()["net_spend"] == 12.5
        for path in ("/v1/users/C-17/recommendations", "/v1/items/SKU-1/similar"):
            body = assert_problem(client.get(path, headers={"X-API-Key": key}), 503)
            assert body["type"].endswith("no-recommender") and why in body["detail"], body
        assert client.get("/v1/model", headers={"X-API-Key": key}).json()["recommender"] is False
        # the fallback rule ranks by churn probability x CLV, which this history cannot give
        targets = client.post("/v1/promotions/targets", headers={"X-API-Key": key}, json=ECONOMICS)
        body = assert_problem(targets, 503)
        assert rep["churn"]["skipped"] in body["detail"] and "clv: bgnbd failed" in body["detail"], body


def test_without_the_promotions_stage_the_promotion_routes_answer_503_with_the_reason(tmp_path, monkeypatch):
    from pipelines import stages
    from pipelines.config import Config
    from behavior.store.datahome import DataHome
    from pipelines.runner import Stage, StageSkipped, run_pipeline
    from tests.pipelines.test_stage_skips import ENOUGH, lake

    def skip(ctx):
        raise StageSkipped("the promotions table is being rebuilt")

    monkeypatch.setitem(stages.STAGES, "promotions", Stage("promotions", ("features",), skip))
    home: DataHome = lake(tmp_path, ENOUGH)
    run_pipeline(home, Config())
    key = create_key(home.root / "api_keys.json", "all", list(SCOPES))
    with TestClient(create_app(Settings(data_dir=home.root, reload_interval_s=0, rate_limit_per_s=0)),
                    raise_server_exceptions=False) as client:
        h = {"X-API-Key": key}
        assert client.get("/v1/users/C-1/profile", headers=h).status_code == 200
        assert client.get("/v1/users/C-1/recommendations", headers=h).status_code == 200
        for r in (client.post("/v1/promotions/targets", headers=h, json=ECONOMICS),
                  client.get("/v1/promotions/P-1/effectiveness", headers=h)):
            body = assert_problem(r, 503)
            assert "the promotions stage was skipped: the promotions table is being rebuilt" in body["detail"]
