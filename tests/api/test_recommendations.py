"""Recommendations and similar items from the bundle's recommender."""

import uuid

import duckdb
import pytest

from tests.api.conftest import assert_problem, clone_bundle, point_current, write_manifest


@pytest.fixture(scope="module")
def lake(published):
    """(user -> items bought, item -> category) from the fixture's lake and synth files."""
    con = duckdb.connect()
    bought = {}
    for u, i in con.sql(f"SELECT DISTINCT user_id, item_id FROM read_parquet('{published.parent}/synth/payments.parquet') "
                        "WHERE status = 'success'").fetchall():
        bought.setdefault(u, set()).add(i)
    cats = dict(con.sql(f"SELECT item_id, category FROM read_parquet('{published.parent}/synth/items.parquet')").fetchall())
    return bought, cats


def recs(client, home, user, **params):
    return client.get(f"/v1/users/{user}/recommendations", params=params, headers=home.headers("recs"))


def test_a_known_user_gets_model_recommendations(client, home, lake):
    bought, _ = lake
    user = max(bought, key=lambda u: len(bought[u]))
    r = recs(client, home, user, n=7)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["source"] == "model" and body["model_version"] == home.active() and body["user_id"] == user
    assert uuid.UUID(body["recommendation_id"]).version == 4
    assert len(body["items"]) == 7 and len({i["item_id"] for i in body["items"]}) == 7
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    assert recs(client, home, user, n=7).json()["recommendation_id"] != body["recommendation_id"]


def test_filters_category_and_purchased(client, home, lake):
    bought, cats = lake
    user = max(bought, key=lambda u: len(bought[u]))
    category = cats[next(iter(bought[user]))]
    items = recs(client, home, user, n=5, category=category).json()["items"]
    assert items and all(cats[i["item_id"]] == category for i in items)
    items = recs(client, home, user, n=20, exclude_purchased="true").json()["items"]
    assert items and not {i["item_id"] for i in items} & bought[user]
    p = assert_problem(recs(client, home, user, category="no-such-category"), 422)
    assert p["errors"][0]["field"] == "category"
    assert_problem(recs(client, home, user, n=101), 422)


def test_unknown_users_get_the_fallback(client, home):
    body = recs(client, home, "someone-new", n=5).json()
    assert body["source"] == "fallback" and len(body["items"]) == 5


def test_similar_items(client, home, lake):
    _, cats = lake
    item = sorted(cats)[0]
    r = client.get(f"/v1/items/{item}/similar", params={"n": 4}, headers=home.headers("recs"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["item_id"] == item and body["model_version"] == home.active()
    assert 0 < len(body["items"]) <= 4 and item not in {i["item_id"] for i in body["items"]}
    assert_problem(client.get("/v1/items/no-such-item/similar", headers=home.headers("recs")), 404)


def test_a_bundle_without_recommender_answers_503(client, home):
    folder = clone_bundle(home.bundles, home.active(), "v-norec")
    (folder / "recommender.npz").unlink()
    manifest = __import__("json").loads((folder / "manifest.json").read_text())
    write_manifest(folder, manifest)
    point_current(home, "v-norec")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    p = assert_problem(recs(client, home, "u0000001"), 503)
    assert p["detail"].startswith("no recommender in the active bundle")
    assert_problem(client.get("/v1/items/i000001/similar", headers=home.headers("recs")), 503)
