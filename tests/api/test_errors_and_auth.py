"""Keys and scopes, rate limit, size limit, and problem+json for every error."""

import pytest

from api.bundle import Profiles
from tests.api.conftest import assert_problem

ROUTES = [  # (method, path, json body, scope needed)
    ("GET", "/v1/users/u0000001/profile", None, "profiles"),
    ("GET", "/v1/segments", None, "segments"),
    ("POST", "/v1/segments/query", {}, "segments"),
    ("GET", "/v1/users/u0000001/recommendations", None, "recs"),
    ("GET", "/v1/items/i000001/similar", None, "recs"),
    ("POST", "/v1/admin/reload", None, "admin"),
    ("POST", "/v1/admin/rollback", None, "admin"),
    ("DELETE", "/v1/admin/users/nobody", None, "admin"),
]


def test_health_needs_no_key(client, home):
    assert client.get("/healthz").json() == {"status": "ok"}
    # which bundle is served is for callers with a key (issue 23 item 11)
    assert client.get("/readyz").json() == {"status": "ready"}


@pytest.mark.parametrize("method, path, body, scope", ROUTES)
def test_every_route_needs_a_key_with_its_scope(client, home, method, path, body, scope):
    p = assert_problem(client.request(method, path, json=body), 401)
    assert "X-API-Key" in p["detail"]
    r = client.request(method, path, json=body, headers={"X-API-Key": "bk_not-a-key"})
    assert_problem(r, 401)
    assert r.headers["www-authenticate"].startswith("APIKey")
    wrong = "promo" if scope != "promo" else "admin"
    p = assert_problem(client.request(method, path, json=body, headers=home.headers(wrong)), 403)
    assert "lacks the scope" in p["detail"]
    r = client.request(method, path, json=body, headers=home.headers(scope))
    assert r.status_code not in (401, 403), r.text


def test_model_takes_any_valid_key(client, home):
    r = client.get("/v1/model", headers=home.headers("promo"))
    assert r.status_code == 200 and r.json()["bundle_version"] == home.active()
    assert_problem(client.get("/v1/model"), 401)


def test_unknown_routes_and_methods_are_problems(client, home):
    p = assert_problem(client.get("/v1/nothing-here", headers=home.headers()), 404)
    assert p["instance"] == "/v1/nothing-here"
    r = client.put("/v1/segments", headers=home.headers())
    assert_problem(r, 405)
    assert r.headers["allow"] == "GET"


def test_validation_errors_name_the_fields(client, home):
    p = assert_problem(client.get("/v1/users/u1/recommendations?n=0", headers=home.headers()), 422)
    assert [e["field"] for e in p["errors"]] == ["n"]
    r = client.post("/v1/segments/query", headers=home.headers(),
                    json={"filter": {"all": [{"field": "segment", "op": "like", "value": "x"}]}, "limt": 5})
    p = assert_problem(r, 422)
    assert {e["field"] for e in p["errors"]} == {"filter.all[0].op", "limt"}
    r = client.post("/v1/segments/query", headers={**home.headers(), "Content-Type": "application/json"},
                    content=b"{oops")
    p = assert_problem(r, 422)
    assert p["errors"][0]["field"] == "body" and "not valid JSON" in p["errors"][0]["message"]


def test_body_size_is_limited(make_client, home):
    with make_client(max_body_bytes=200) as client:
        big = {"filter": {"all": [{"field": "segment", "op": "in", "value": ["x" * 20] * 20}]}}
        p = assert_problem(client.post("/v1/segments/query", json=big, headers=home.headers()), 413)
        assert "200 bytes" in p["detail"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            yield b'{"filter": {"all": ['
            for _ in range(20):
                yield b'{"field": "segment", "op": "eq", "value": "xxxxxxxxxxxxxxxx"},'
            yield b"]}}"

        r = client.post("/v1/segments/query", content=chunks(),
                        headers={**home.headers(), "Content-Type": "application/json"})
        assert_problem(r, 413)
        assert client.post("/v1/segments/query", json={"limit": 1}, headers=home.headers()).status_code == 200


def test_rate_limit_per_key_with_retry_after(make_client, home):
    with make_client(rate_limit_per_s=0.5, rate_limit_burst=3) as client:
        for _ in range(3):
            assert client.get("/v1/segments", headers=home.headers("segments")).status_code == 200
        r = client.get("/v1/segments", headers=home.headers("segments"))
        p = assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1 and "segments" in p["detail"]
        # another key has its own bucket
        assert client.get("/v1/segments", headers=home.headers("export")).status_code == 200


def test_an_unexpected_error_is_a_generic_500(client, home, monkeypatch, caplog):
    def boom(self, user_id):
        raise RuntimeError(f"secret detail about {user_id} at /srv/internal/path.py")

    monkeypatch.setattr(Profiles, "row", boom)
    p = assert_problem(client.get("/v1/users/u0000001/profile", headers=home.headers()), 500)
    assert "secret" not in p["detail"] and p["incident"] in p["detail"]
    logged = [r.getMessage() for r in caplog.records if "unhandled error" in r.getMessage()]
    assert len(logged) == 1 and p["incident"] in logged[0]
    # the operators get the route, the error's type and the frames, never the user id
    assert "/v1/users/{user_id" in logged[0] and "RuntimeError" in logged[0] and "boom" in logged[0]
    assert "u0000001" not in logged[0]


def test_without_a_bundle_the_api_says_so(tmp_path, make_client, home):
    home.current.unlink()
    with make_client() as client:
        assert client.get("/healthz").status_code == 200
        p = assert_problem(client.get("/readyz"), 503)
        assert "behavior run" in p["detail"]
        assert_problem(client.get("/v1/model", headers=home.headers()), 503)


def test_settings_can_come_from_a_dependency_override(home):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from api.settings import get_settings

    app = create_app()
    app.dependency_overrides[get_settings] = lambda: home.settings()
    with TestClient(app) as client:
        assert client.get("/v1/model", headers=home.headers()).json()["bundle_version"] == home.active()


def test_token_bucket_refills_at_its_rate():
    from api.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    assert limiter.acquire("k") == 0 and limiter.acquire("k") == 0
    assert limiter.acquire("k") == 0.5 and RateLimiter.retry_after(0.5) == "1"
    now[0] = 0.5
    assert limiter.acquire("k") == 0 and limiter.acquire("k") > 0
    assert RateLimiter(rate=0, burst=1).acquire("k") == 0  # 0 = no limit


def test_waiting_for_a_token_takes_none():
    from api.ratelimit import RateLimiter

    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=1, clock=lambda: now[0])
    assert limiter.wait("k") == 0 and limiter.acquire("k") == 0
    assert limiter.wait("k") == 0.5 and limiter.wait("k") == 0.5
    now[0] = 0.25
    assert limiter.wait("k") == 0.25 and limiter.acquire("k") == 0.25
    now[0] = 0.5
    assert limiter.wait("k") == 0 and limiter.acquire("k") == 0
