"""Item attributes on recommended items, and the bulk export of an audience's recommendations."""

import io

import duckdb
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from behavior.store.keys import create_key
from tests.api.conftest import assert_problem

URL = "/v1/recommendations/export"


@pytest.fixture(scope="module")
def catalogue(published):
    """item_id -> (category, merchant_id, price) of the fixture's items table."""
    con = duckdb.connect()
    rows = con.sql(f"SELECT item_id, category, merchant_id, price "
                   f"FROM read_parquet('{published.parent}/synth/items.parquet')").fetchall()
    return {i: (c, m, p) for i, c, m, p in rows}


@pytest.fixture
def exporter(home):
    """A key with both recommendation scopes, made before the client loads the keys file."""
    return {"X-API-Key": create_key(home.root / "api_keys.json", "recexport",
                                    ["recommendations:read", "recommendations:export"])}


def profiles(home):
    return pq.read_table(home.bundles / home.active() / "profiles.parquet",
                         columns=["user_id", "segment", "marketing_opt_out"]).to_pandas()


def test_recommended_items_carry_name_category_merchant_and_price(client, home, catalogue):
    user = profiles(home)["user_id"].iloc[0]
    for url in (f"/v1/users/{user}/recommendations", "/v1/items/i000027/similar"):
        items = client.get(url, params={"n": 5}, headers=home.headers("recs")).json()["items"]
        assert items
        for it in items:
            assert set(it) == {"item_id", "score", "name", "category", "merchant_id", "price"}
            category, merchant, price = catalogue[it["item_id"]]
            assert (it["category"], it["merchant_id"], it["name"]) == (category, merchant, None)
            assert it["price"] == pytest.approx(price)


def read_csv(r):
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    return pacsv.read_csv(io.BytesIO(r.content),
                          convert_options=pacsv.ConvertOptions(strings_can_be_null=True)).to_pandas()


def test_the_export_needs_its_scope_and_is_audited_without_ids(exporter, client, home):
    body = {"user_ids": ["u0000001"], "n": 3}
    assert_problem(client.post(URL, json=body, headers=home.headers("recs")), 403)
    assert_problem(client.post(URL, json=body), 401)
    assert_problem(client.post(URL, json={"n": 3}, headers=exporter), 422)   # no audience
    assert_problem(client.post(URL, json={**body, "filter": {}}, headers=exporter), 422)   # two
    p = assert_problem(client.post(URL, json={**body, "category": "no-such"}, headers=exporter), 422)
    assert p["errors"][0]["field"] == "category"
    rows = read_csv(client.post(URL, json=body, headers=exporter))
    assert len(rows) == 3 and list(rows["rank"]) == [1, 2, 3]
    line = [e for e in home.audit() if e["endpoint"] == "POST /v1/recommendations/export"][-1]
    assert line["key_id"] == "recexport" and line["rows"] == 3 and line["users"] == 1
    assert line["completed"] is True and line["format"] == "csv" and line["audience"] == "user_ids"
    assert "u0000001" not in str(line)


def test_unknown_users_get_the_fallback_and_formulas_are_neutralised(exporter, client, home):
    known = profiles(home)["user_id"].iloc[3]
    rows = read_csv(client.post(URL, json={"user_ids": [known, "=HYPERLINK(\"x\")", " " + known], "n": 4},
                                headers=exporter))
    by_user = dict(tuple(rows.groupby("user_id")))
    assert set(by_user) == {known, "'=HYPERLINK(\"x\")"}   # the padded id is the same user, once
    assert set(by_user["'=HYPERLINK(\"x\")"]["source"]) == {"fallback"} and len(by_user[known]) == 4
    assert by_user[known]["category"].notna().all() and by_user[known]["price"].notna().all()


def test_opted_out_users_are_exported_and_erased_users_never_appear(exporter, client, home):
    p = profiles(home)
    opted = p.loc[p["marketing_opt_out"], "user_id"].iloc[0]
    gone, kept = p.loc[~p["marketing_opt_out"], "user_id"].iloc[:2]
    r = client.delete(f"/v1/admin/users/{gone}", headers=home.headers("admin"))
    assert r.status_code == 200, r.text
    rows = read_csv(client.post(URL, json={"user_ids": [opted, gone, kept], "n": 2}, headers=exporter))
    assert set(rows["user_id"]) == {opted, kept}
    segment = p.loc[p["user_id"] == opted, "segment"].iloc[0]
    flt = {"all": [{"field": "segment", "op": "eq", "value": segment}]}
    r = client.post(URL, json={"filter": flt, "n": 2, "format": "parquet"}, headers=exporter)
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(r.content)).to_pandas()
    members = set(p.loc[p["segment"] == segment, "user_id"]) - {gone}
    assert set(table["user_id"]) == members and opted in members   # opted-out users included
    assert table.groupby("user_id")["rank"].max().eq(2).all()
    line = home.audit()[-1]
    assert line["audience"] == "filter" and line["format"] == "parquet" and line["users"] == len(members)
    assert line["rows"] == len(table)


def test_csv_and_parquet_stream_in_chunks_and_hold_the_same_rows(exporter, client, home, monkeypatch):
    from api.routes import recommendations_export

    monkeypatch.setattr(recommendations_export, "BATCH_USERS", 7)   # many row groups and CSV chunks
    users = list(profiles(home)["user_id"].iloc[:30]) + ["new-1", "new-2"]
    body = {"user_ids": users, "n": 3}
    with client.stream("POST", URL, json=body, headers=exporter) as r:
        chunks = list(r.iter_raw())
    assert len(chunks) > 2
    csv = read_csv(client.post(URL, json=body, headers=exporter))
    parquet = pq.ParquetFile(io.BytesIO(client.post(URL, json={**body, "format": "parquet"},
                                                    headers=exporter).content))
    assert parquet.metadata.num_row_groups == 5
    table = parquet.read().to_pandas()
    assert list(table["user_id"].drop_duplicates()) == users == list(csv["user_id"].drop_duplicates())
    assert table[["user_id", "rank", "item_id"]].values.tolist() == csv[["user_id", "rank", "item_id"]].values.tolist()
    assert (table["score"] - csv["score"]).abs().max() < 1e-9
