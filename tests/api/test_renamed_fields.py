"""Fields renamed for one name per concept are served under the new name, and for one release
under the old one too, marked deprecated in /openapi.json with a description naming the new one:
profiles' BTYD `recency` is `purchase_span_days`; the recommendations' `model_version` is
`bundle_version`."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import clone_bundle, point_current


def _user(home) -> str:
    table = pq.read_table(home.bundles / home.active() / "profiles.parquet", columns=["user_id", "frequency"])
    rows = table.to_pylist()
    return next(r["user_id"] for r in rows if r["frequency"] and r["frequency"] > 2)


def test_the_profile_serves_purchase_span_days_and_its_deprecated_alias(client, home):
    columns = pq.read_schema(home.bundles / home.active() / "profiles.parquet").names
    assert "purchase_span_days" in columns and "recency" not in columns
    p = client.get(f"/v1/users/{_user(home)}/profile", headers=home.headers()).json()
    assert p["purchase_span_days"] > 0 and p["recency"] == p["purchase_span_days"]
    assert p["purchase_span_days"] <= p["tenure_days"]   # first to last purchase, within the tenure


def test_a_bundle_published_before_the_rename_is_served_under_both_names(make_client, home):
    def old_names(t):
        return t.rename_columns(["recency" if n == "purchase_span_days" else n for n in t.column_names])

    clone_bundle(home.bundles, home.active(), "old-names", profiles=old_names)
    expected = pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pylist()
    point_current(home, "old-names")
    user = _user(home)
    span = round(next(r["purchase_span_days"] for r in expected if r["user_id"] == user), 2)
    with make_client() as client:
        p = client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()
        assert (p["purchase_span_days"], p["recency"]) == (span, span)
        q = client.post("/v1/segments/query", headers=home.headers(),
                        json={"filter": {"all": [{"field": "purchase_span_days", "op": "ge", "value": 0}]}, "limit": 1})
        assert q.status_code == 200 and q.json()["total"] > 0


def test_queries_accept_the_old_field_name(client, home):
    def query(name: str) -> dict:
        body = {"filter": {"all": [{"field": name, "op": "ge", "value": 30}]},
                "sort": [{"field": name, "desc": True}], "fields": [name], "limit": 5}
        r = client.post("/v1/segments/query", headers=home.headers(), json=body)
        assert r.status_code == 200, r.text
        return r.json()

    new, old = query("purchase_span_days"), query("recency")
    assert new == {**old, "bundle_version": new["bundle_version"]} and new["total"] > 0
    assert old["fields"] == ["user_id", "purchase_span_days"] and old["rows"]
    assert all(row["purchase_span_days"] >= 30 for row in old["rows"])


def test_recommendations_carry_bundle_version_and_the_deprecated_model_version(client, home):
    r = client.get(f"/v1/users/{_user(home)}/recommendations?n=3", headers=home.headers()).json()
    assert r["bundle_version"] == home.active() == r["model_version"]
    item = r["items"][0]["item_id"]
    s = client.get(f"/v1/items/{item}/similar?n=3", headers=home.headers()).json()
    assert s["bundle_version"] == home.active() == s["model_version"]


@pytest.mark.parametrize("schema, old, new", [
    ("Profile", "recency", "purchase_span_days"),
    ("Recommendations", "model_version", "bundle_version"),
    ("SimilarItems", "model_version", "bundle_version"),
])
def test_openapi_marks_the_old_names_deprecated_naming_the_new(client, schema, old, new):
    props = client.get("/openapi.json").json()["components"]["schemas"][schema]["properties"]
    assert props[old].get("deprecated") is True and new in props[old]["description"]
    assert not props[new].get("deprecated")


def test_openapi_names_the_deprecated_query_field_names(client):
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    for name in ("Condition", "SortKey"):
        assert "'recency' (now 'purchase_span_days')" in schemas[name]["properties"]["field"]["description"]
