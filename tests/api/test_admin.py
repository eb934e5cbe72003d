"""Hot reload, refusal of broken bundles, rollback and erasure."""

import time


from tests.api.conftest import assert_problem, clone_bundle, point_current


def version(client, home):
    return client.get("/v1/model", headers=home.headers()).json()["bundle_version"]


def test_admin_reload_picks_up_a_new_bundle(client, home):
    old = home.active()
    clone_bundle(home.bundles, old, "v-new", profiles=lambda t: t.slice(0, t.num_rows - 10))
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).json() == {
        "changed": False, "bundle_version": old, "previous_version": old}
    point_current(home, "v-new")
    r = client.post("/v1/admin/reload", headers=home.headers("admin"))
    assert r.json() == {"changed": True, "bundle_version": "v-new", "previous_version": old}
    assert version(client, home) == "v-new"
    assert client.get("/v1/segments", headers=home.headers()).json()["users"] == client.get(
        "/v1/model", headers=home.headers()).json()["profiles"]
    entry = home.audit()[-1]
    assert entry["endpoint"] == "POST /v1/admin/reload" and entry["key_id"] == "admin"


def test_polling_picks_up_a_new_bundle(make_client, home):
    with make_client(reload_interval_s=0.05) as client:
        old = version(client, home)
        clone_bundle(home.bundles, old, "v-polled")
        point_current(home, "v-polled")
        deadline = time.monotonic() + 10
        while version(client, home) != "v-polled" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version(client, home) == "v-polled"


def test_a_corrupted_bundle_is_refused_and_the_old_one_keeps_serving(make_client, home, caplog):
    with make_client(reload_interval_s=0.05) as client:
        old = version(client, home)
        folder = clone_bundle(home.bundles, old, "v-corrupt")
        data = bytearray((folder / "profiles.parquet").read_bytes())
        data[len(data) // 3] ^= 0x01
        (folder / "profiles.parquet").write_bytes(bytes(data))
        point_current(home, "v-corrupt")
        time.sleep(0.3)  # a few polls
        assert version(client, home) == old
        p = assert_problem(client.post("/v1/admin/reload", headers=home.headers("admin")), 409)
        assert "profiles.parquet does not match its checksum" in p["detail"] and old in p["detail"]
        assert client.get("/v1/users/u0000001/profile", headers=home.headers()).status_code == 200
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) >= 1 and len(refusals) <= 2  # logged once by the poller (and once by the admin call)


def test_rollback_goes_to_the_previous_bundle(client, home):
    first = home.active()
    clone_bundle(home.bundles, first, "v-second")
    point_current(home, "v-second")
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    assert version(client, home) == "v-second"
    r = client.post("/v1/admin/rollback", headers=home.headers("admin"))
    assert r.status_code == 200 and r.json() == {"changed": True, "bundle_version": first,
                                                 "previous_version": "v-second"}
    assert version(client, home) == first and home.active() == first
    p = assert_problem(client.post("/v1/admin/rollback", headers=home.headers("admin")), 409)
    assert "no earlier bundle" in p["detail"]
    assert home.audit()[-1]["endpoint"] == "POST /v1/admin/rollback"


def test_erasing_a_user_takes_effect_at_once_and_survives_a_reload(client, home):
    user = "u0000003"
    assert client.get(f"/v1/users/{user}/profile", headers=home.headers()).status_code == 200
    before = client.get(f"/v1/users/{user}/recommendations", headers=home.headers()).json()
    r = client.delete(f"/v1/admin/users/{user}", headers=home.headers("admin"))
    assert r.status_code == 200 and r.json()["erased"] is True
    assert_problem(client.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
    flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
    assert client.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 0
    after = client.get(f"/v1/users/{user}/recommendations", headers=home.headers()).json()
    assert after["source"] == "fallback" and (before["source"] == "model" or before["items"] == after["items"])
    entry = [e for e in home.audit() if e["endpoint"].startswith("DELETE /v1/admin/users")][-1]  # queries audit too
    assert user not in str(entry) and entry["rows"] == 1
    # still gone after a new bundle that has the user
    clone_bundle(home.bundles, home.active(), "v-after")
    point_current(home, "v-after")
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    assert_problem(client.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
    assert_problem(client.delete("/v1/admin/users/nobody", headers=home.headers("admin")), 404)


def test_new_keys_are_picked_up_by_reload(client, home):
    from behavior.store.keys import create_key, revoke_key

    late = create_key(home.root / "api_keys.json", "late", ["profiles:read"])
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    assert client.get("/v1/users/u0000001/profile", headers={"X-API-Key": late}).status_code == 200
    revoke_key(home.root / "api_keys.json", "late")
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    assert_problem(client.get("/v1/users/u0000001/profile", headers={"X-API-Key": late}), 401)
