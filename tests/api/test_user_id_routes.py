"""Every per-user route reaches any user id: `/`, `%`, unicode and whitespace in the path form
(percent-encoded or not), and everything, dot segments included, in the query form. Ids are
looked up as ingest stored them (behavior.ids.normalize_id)."""

from urllib.parse import quote

import pyarrow as pa
import pytest

from behavior.ids import normalize_id
from tests.api.conftest import assert_problem, clone_bundle, point_current

# Starlette's TestClient decodes a path twice ("%252F" arrives as "/"): ids with an escape-like
# "%XX" in them go through the path form of a real server (test_server_limits.py).
PATH_IDS = ["a/b", "/lead", "trail/", "a//b", "50%", "ü/ñ 名", "x y", "q?x#y"]
QUERY_ONLY_IDS = ["..", "./x", "a/../b", "%2F"]   # clients resolve dot segments in a path
ODD_IDS = PATH_IDS + QUERY_ONLY_IDS


@pytest.fixture
def odd(client, home):
    """The first profiles renamed to the odd ids, served."""
    def rename(table: pa.Table) -> pa.Table:
        ids = table.column("user_id").to_pylist()
        ids[: len(ODD_IDS)] = ODD_IDS
        return table.set_column(0, "user_id", pa.array(ids, pa.string()))

    clone_bundle(home.bundles, home.active(), "v-odd-ids", profiles=rename)
    point_current(home, "v-odd-ids")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    return client


def path_of(user_id: str) -> str:
    return quote(user_id, safe="")


@pytest.mark.parametrize("user_id", PATH_IDS)
def test_the_path_form_reaches_ids_with_slashes_percent_unicode_and_spaces(odd, home, user_id):
    for sent in (path_of(user_id), quote(user_id, safe="/")):   # %2F or a plain /
        r = odd.get(f"/v1/users/{sent}/profile", headers=home.headers())
        assert r.status_code == 200 and r.json()["user_id"] == user_id, (sent, r.text)
        r = odd.get(f"/v1/users/{sent}/recommendations", params={"n": 3}, headers=home.headers())
        assert r.status_code == 200 and r.json()["user_id"] == user_id, (sent, r.text)


@pytest.mark.parametrize("user_id", ODD_IDS)
def test_the_query_form_reaches_any_id(odd, home, user_id):
    r = odd.get("/v1/users/profile", params={"user_id": user_id}, headers=home.headers())
    assert r.status_code == 200 and r.json()["user_id"] == user_id, r.text
    r = odd.get("/v1/users/recommendations", params={"user_id": user_id, "n": 3}, headers=home.headers())
    assert r.status_code == 200 and r.json()["user_id"] == user_id and len(r.json()["items"]) == 3, r.text


@pytest.mark.parametrize("padded", [" a/b", "a/b\t", "\n50%\r\n", "\u00a0ü/ñ 名\u2028"])
def test_ids_are_normalised_as_ingest_stored_them(odd, home, padded):
    stored = normalize_id(padded)
    assert stored in ODD_IDS and stored != padded
    r = odd.get("/v1/users/profile", params={"user_id": padded}, headers=home.headers())
    assert r.status_code == 200 and r.json()["user_id"] == stored
    r = odd.get(f"/v1/users/{path_of(padded)}/profile", headers=home.headers())
    assert r.status_code == 200 and r.json()["user_id"] == stored


def test_an_id_of_whitespace_only_is_422(odd, home):
    for r in (odd.get("/v1/users/profile", params={"user_id": " \t"}, headers=home.headers()),
              odd.get("/v1/users/%20%09/recommendations", headers=home.headers()),
              odd.delete("/v1/admin/users", params={"user_id": "\u3000"}, headers=home.headers("admin"))):
        assert [e["field"] for e in assert_problem(r, 422)["errors"]] == ["user_id"]


@pytest.mark.parametrize("user_id, form", [("a/b", "path"), ("ü/ñ 名", "path"), ("..", "query"), ("50%", "query")])
def test_the_delete_erases_odd_ids_in_both_forms(odd, home, user_id, form):
    if form == "path":
        r = odd.delete(f"/v1/admin/users/{path_of(user_id)}", headers=home.headers("admin"))
    else:
        r = odd.delete("/v1/admin/users", params={"user_id": " " + user_id}, headers=home.headers("admin"))
    assert r.status_code == 200 and r.json()["user_id"] == user_id, r.text
    assert_problem(odd.get("/v1/users/profile", params={"user_id": user_id}, headers=home.headers()), 404)
    flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user_id}]}}
    assert odd.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 0
    deletes = [e["endpoint"] for e in home.audit() if e["endpoint"].startswith("DELETE")]  # (the query is audited too)
    assert deletes[-1] == ("DELETE /v1/admin/users/{user_id}" if form == "path" else "DELETE /v1/admin/users")


def test_item_ids_with_a_slash_reach_the_similar_route(client, home):
    r = client.get("/v1/items/no%2Fsuch/similar", headers=home.headers())
    assert "'no/such'" in assert_problem(r, 404)["detail"]
