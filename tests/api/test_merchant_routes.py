"""The merchant routes on the published bundle: known answers from its own merchants.parquet and
merchant_customers.parquet; scopes, 404, 422, opt-outs and erasure; pages and CSV."""

import csv
import io
import json

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.api.conftest import assert_problem, clone_bundle, point_current, write_manifest


@pytest.fixture
def merchants(home) -> pd.DataFrame:
    return pq.read_table(home.bundles / home.active() / "merchants.parquet").to_pandas()


@pytest.fixture
def audience(home) -> pd.DataFrame:
    return pq.read_table(home.bundles / home.active() / "merchant_customers.parquet").to_pandas()


def query(client, home, body, key="merchants", **headers):
    return client.post("/v1/merchants/query", json=body, headers=home.headers(key, **headers))


def busiest(audience: pd.DataFrame, segment: str) -> str:
    return audience[audience.audience == segment].merchant_id.value_counts().index[0]


def test_profile_of_a_merchant(client, home, merchants):
    m = merchants.sort_values("revenue", ascending=False).iloc[0]
    r = client.get(f"/v1/merchants/{m.merchant_id}", headers=home.headers("merchants"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["merchant_id"] == m.merchant_id and body["merchant_segment"] == m.merchant_segment
    assert body["customers"] == m.customers and body["payments_90d"] == m.payments_90d
    assert body["share_of_wallet"] == pytest.approx(m.share_of_wallet)
    assert isinstance(body["reasons"], list) and body["last_payment_at"].endswith("Z")
    # an id is read as its stored form (behavior.ids): surrounding whitespace does not matter
    r = client.get(f"/v1/merchants/%20{m.merchant_id}%09", headers=home.headers("merchants"))
    assert r.status_code == 200 and r.json()["merchant_id"] == m.merchant_id


def test_reasons_are_split_into_a_list(client, home):
    def planted(t: pa.Table) -> pa.Table:
        i = t.column_names.index("churn_reasons")
        reasons = ["payments down 60% vs the previous 90 days; no payment for 40 days"] + [None] * (t.num_rows - 1)
        return t.set_column(i, "churn_reasons", pa.array(reasons, pa.string()))

    folder = clone_bundle(home.bundles, home.active(), "v-reasons")
    pq.write_table(planted(pq.read_table(folder / "merchants.parquet")), folder / "merchants.parquet")
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))
    point_current(home, "v-reasons")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    first = pq.read_table(folder / "merchants.parquet", columns=["merchant_id"]).column(0)[0].as_py()
    body = client.get(f"/v1/merchants/{first}", headers=home.headers("merchants")).json()
    assert body["reasons"] == ["payments down 60% vs the previous 90 days", "no payment for 40 days"]


def test_scopes_and_unknown_merchants(client, home, merchants):
    mid = merchants.merchant_id.iloc[0]
    assert_problem(client.get(f"/v1/merchants/{mid}"), 401)
    assert_problem(client.get(f"/v1/merchants/{mid}", headers=home.headers("segments")), 403)
    assert_problem(query(client, home, {}, "segments"), 403)
    p = assert_problem(client.get("/v1/merchants/no-such-merchant", headers=home.headers("merchants")), 404)
    assert "no-such-merchant" in p["detail"]
    assert_problem(client.get("/v1/merchants/no-such-merchant/customers", headers=home.headers("mexport")), 404)
    p = assert_problem(client.get(f"/v1/merchants/{mid}/customers", headers=home.headers("merchants")), 403)
    assert "merchants:export" in p["detail"]


def test_query_filters_sorts_and_pages_every_merchant_once(client, home, merchants):
    body = {"filter": {"all": [{"field": "customers", "op": "ge", "value": 1}]},
            "sort": [{"field": "revenue", "desc": True}], "fields": ["merchant_id", "revenue", "merchant_segment"],
            "limit": 7}
    rows, cursor = [], None
    while True:
        r = query(client, home, {**body, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        rows += page["rows"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    want = merchants[merchants.customers >= 1].sort_values(["revenue", "merchant_id"], ascending=[False, True])
    assert [x["merchant_id"] for x in rows] == list(want.merchant_id)
    assert page["total"] == len(want) and page["fields"] == ["merchant_id", "revenue", "merchant_segment"]
    seg = merchants.merchant_segment.iloc[0]
    r = query(client, home, {"filter": {"all": [{"field": "merchant_segment", "op": "eq", "value": seg}]}})
    assert r.json()["total"] == int((merchants.merchant_segment == seg).sum())
    assert set(r.json()["fields"]) >= {"merchant_id", "merchant_segment", "churn_risk"}


def test_query_rejects_unknown_fields_and_operators(client, home):
    p = assert_problem(query(client, home, {"filter": {"all": [{"field": "segment", "op": "eq", "value": "x"}]}}),
                       422)
    assert "unknown field 'segment'" in str(p["errors"])   # a user field, not a merchant one
    assert_problem(query(client, home, {"sort": [{"field": "nope"}]}), 422)
    assert_problem(query(client, home, {"filter": {"all": [{"field": "customers", "op": "like", "value": 1}]}}), 422)
    assert_problem(query(client, home, {"bogus": 1}), 422)


def test_csv_export_needs_the_export_scope_and_is_audited(client, home, merchants):
    p = assert_problem(query(client, home, {}, "merchants", Accept="text/csv"), 403)
    assert "merchants:export" in p["detail"]
    r = query(client, home, {"sort": [{"field": "merchant_id"}], "fields": ["merchant_id", "revenue"]}, "mexport",
              Accept="text/csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [x["merchant_id"] for x in rows] == sorted(merchants.merchant_id)
    entry = home.audit()[-1]
    assert entry["endpoint"] == "POST /v1/merchants/query" and entry["rows"] == len(merchants)
    assert entry["key_id"] == "mexport" and entry["completed"] is True


def test_customers_are_the_merchants_audience_without_opted_out_users(client, home, audience):
    mid = busiest(audience, "lapsed")
    profiles = pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas()
    opted = set(profiles.user_id[profiles.marketing_opt_out.fillna(True)])
    want = audience[(audience.merchant_id == mid) & (audience.audience == "lapsed") & ~audience.user_id.isin(opted)]
    r = client.get(f"/v1/merchants/{mid}/customers", params={"segment": "lapsed", "n": 10000},
                   headers=home.headers("mexport"))
    assert r.status_code == 200, r.text
    body = r.json()
    got = [c["user_id"] for c in body["customers"]]
    assert sorted(got) == sorted(want.user_id) and body["count"] == len(got) > 0
    days = [c["purchase_days"] for c in body["customers"]]
    assert days == sorted(days, reverse=True)
    entry = home.audit()[-1]
    assert entry["endpoint"] == "GET /v1/merchants/{merchant_id}/customers" and entry["rows"] == len(got)
    assert entry["merchant_id"] == mid and entry["segment"] == "lapsed" and entry["key_id"] == "mexport"
    r = client.get(f"/v1/merchants/{mid}/customers", params={"segment": "lapsed", "n": 1},
                   headers=home.headers("mexport"))
    assert r.json()["count"] == 1


def test_customers_query_parameters_are_checked(client, home, audience):
    mid = audience.merchant_id.iloc[0]
    for params in ({"segment": "champions"}, {"n": 0}, {"n": 10001}, {"n": "many"}):
        p = assert_problem(client.get(f"/v1/merchants/{mid}/customers", params=params,
                                      headers=home.headers("mexport")), 422)
        assert p["errors"]


def test_an_opt_out_in_a_new_bundle_and_an_erasure_remove_a_customer(client, home, audience):
    mid = busiest(audience, "lapsed")
    url = f"/v1/merchants/{mid}/customers?segment=lapsed&n=10000"
    before = [c["user_id"] for c in client.get(url, headers=home.headers("mexport")).json()["customers"]]
    assert len(before) >= 2
    opted, erased = before[0], before[1]

    def opt_out(t: pa.Table) -> pa.Table:
        i = t.column_names.index("marketing_opt_out")
        flag = pc.or_(t.column(i), pc.equal(t.column("user_id"), opted))
        return t.set_column(i, "marketing_opt_out", flag)

    clone_bundle(home.bundles, home.active(), "v-opt", profiles=opt_out)
    point_current(home, "v-opt")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    after = [c["user_id"] for c in client.get(url, headers=home.headers("mexport")).json()["customers"]]
    assert opted not in after and set(after) == set(before) - {opted}
    assert client.delete(f"/v1/admin/users/{erased}", headers=home.headers("admin")).status_code == 200
    after = [c["user_id"] for c in client.get(url, headers=home.headers("mexport")).json()["customers"]]
    assert erased not in after and set(after) == set(before) - {opted, erased}


def test_a_bundle_without_merchants_answers_503(client, home, merchants):
    folder = clone_bundle(home.bundles, home.active(), "v-nomerchants")
    (folder / "merchants.parquet").unlink()
    (folder / "merchant_customers.parquet").unlink()
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))
    point_current(home, "v-nomerchants")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    p = assert_problem(client.get(f"/v1/merchants/{merchants.merchant_id.iloc[0]}", headers=home.headers("merchants")),
                       503)
    assert "v-nomerchants has no merchant profiles" in p["detail"]
    assert_problem(query(client, home, {}), 503)
    assert client.get("/v1/segments", headers=home.headers("segments")).status_code == 200


def _rename_merchant(t: pa.Table, old: str, new: str) -> pa.Table:
    i = t.column_names.index("merchant_id")
    ids = pc.if_else(pc.equal(t.column(i), old), new, t.column(i))
    return t.set_column(i, t.schema.field(i), ids)


def test_any_merchant_id_has_a_query_form(client, home, audience):
    """An id with `/` (or `?`, `#`, `%`, spaces) has no path form: the query form reads it."""
    mid = busiest(audience, "lapsed")
    url = f"/v1/merchants/{mid}/customers?segment=lapsed&n=10000"
    want = client.get(url, headers=home.headers("mexport")).json()["customers"]
    odd = "shop/Paris ?#%1"
    folder = clone_bundle(home.bundles, home.active(), "v-slash")
    for name in ("merchants.parquet", "merchant_customers.parquet"):
        pq.write_table(_rename_merchant(pq.read_table(folder / name), mid, odd), folder / name)
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))
    point_current(home, "v-slash")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200

    r = client.get("/v1/merchants/profile", params={"merchant_id": f" {odd}\t"}, headers=home.headers("merchants"))
    assert r.status_code == 200, r.text
    assert r.json()["merchant_id"] == odd
    r = client.get("/v1/merchants/customers", params={"merchant_id": odd, "segment": "lapsed", "n": 10000},
                   headers=home.headers("mexport"))
    assert r.status_code == 200, r.text
    assert r.json()["merchant_id"] == odd and r.json()["customers"] == want
    entry = home.audit()[-1]
    assert entry["endpoint"] == "GET /v1/merchants/customers" and entry["merchant_id"] == odd
    assert entry["rows"] == len(want)

    assert_problem(client.get("/v1/merchants/profile", params={"merchant_id": odd}), 401)
    assert_problem(client.get("/v1/merchants/customers", params={"merchant_id": odd},
                              headers=home.headers("merchants")), 403)
    assert_problem(client.get("/v1/merchants/profile", params={"merchant_id": "shop/none"},
                              headers=home.headers("merchants")), 404)
    for path in ("/v1/merchants/profile", "/v1/merchants/customers"):
        p = assert_problem(client.get(path, params={"merchant_id": " \t"}, headers=home.headers("mexport")), 422)
        assert [e["field"] for e in p["errors"]] == ["merchant_id"]
        assert_problem(client.get(path, headers=home.headers("mexport")), 422)
    assert_problem(client.get("/v1/merchants/customers", params={"merchant_id": odd, "segment": "champions"},
                              headers=home.headers("mexport")), 422)
