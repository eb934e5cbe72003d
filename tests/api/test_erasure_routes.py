"""Erasure on the serving side: `behavior forget` is picked up without a restart, and an API
erasure is recorded so that no later process serves the user."""

import json

from fastapi.testclient import TestClient

from api.main import create_app
from behavior.store.datahome import DataHome
from pipelines.forget import forget
from tests.api.conftest import assert_problem


def test_forget_rewrites_the_active_bundle_and_the_api_drops_the_user(client, home):
    user = "u0000005"
    assert client.get(f"/v1/users/{user}/profile", headers=home.headers()).status_code == 200
    report = forget(DataHome(home.root), [user])
    assert report["bundles"] and home.active() in report["bundles"]
    r = client.post("/v1/admin/reload", headers=home.headers("admin"))   # what the 5 s poll does
    assert r.status_code == 200 and r.json()["changed"] is True
    assert_problem(client.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
    recs = client.get(f"/v1/users/{user}/recommendations", headers=home.headers()).json()
    assert recs["source"] == "fallback"


def test_an_api_erasure_is_logged_by_keyed_hash_and_survives_a_restart(client, home):
    user = "u0000009"
    assert client.delete(f"/v1/admin/users/{user}", headers=home.headers("admin")).status_code == 200
    lines = (home.root / "erasure_log.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["source"] == "api" and user not in lines[0]
    audit = home.audit()[-1]
    assert user not in json.dumps(audit) and len(audit["user_key_hash"]) == 64
    with TestClient(create_app(home.settings()), raise_server_exceptions=False) as fresh:   # a new process
        assert_problem(fresh.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
        flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
        assert fresh.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 0
        assert fresh.get("/v1/users/u0000010/profile", headers=home.headers()).status_code == 200


def test_a_poll_during_the_forget_swap_does_not_stop_later_reloads(client, home):
    """Found in review: a poll between forget's two renames refused the version for good."""
    user = "u0000012"
    state = client.app.state.serving
    folder = home.bundles / home.active()
    aside = folder.with_name(".erased-" + folder.name)
    folder.rename(aside)                      # what a poll sees mid-swap
    state.poll()
    assert home.active() in state.refused
    aside.rename(folder)
    forget(DataHome(home.root), [user])
    state.poll()
    assert_problem(client.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
