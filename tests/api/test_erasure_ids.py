"""The API's erase route and the erasure log read an id in its stored form (whitespace at either
end trimmed, as ingest and `behavior forget` do)."""

import json

import pyarrow as pa

from behavior.ids import control_notice
from behavior.store.erasure_log import ErasureLog
from tests.api.conftest import assert_problem, clone_bundle, point_current


def test_the_erase_route_trims_the_id_as_ingest_stores_it(client, home):
    r = client.delete("/v1/admin/users/%09u0000003%0B%C2%85", headers=home.headers("admin"))
    assert r.status_code == 200 and r.json()["user_id"] == "u0000003"
    assert_problem(client.get("/v1/users/u0000003/profile", headers=home.headers()), 404)
    log = ErasureLog(home.root)
    assert json.loads((home.root / "erasure_log.jsonl").read_text())["hash"] == log.key_hash("u0000003")
    assert log.erased_among(["u0000003", " u0000003\n", "u0000004"]) == {"u0000003", " u0000003\n"}


def test_an_id_of_only_whitespace_is_refused(client, home):
    assert_problem(client.delete("/v1/admin/users/%20%09", headers=home.headers("admin")), 422)
    assert not (home.root / "erasure_log.jsonl").exists()


def test_the_log_records_one_user_whatever_the_padding(tmp_path):
    log = ErasureLog(tmp_path)
    hashes = log.record_many(["u1", "\tu1", "u1\x85\f"], "cli")
    assert len(set(hashes)) == 1
    assert len((tmp_path / "erasure_log.jsonl").read_text().splitlines()) == 1


def test_an_id_with_a_control_character_is_answered_with_the_notice_of_forget(client, home):
    """Ingest never stores such an id, so the bundle does not hold it: the 404 says why, in the
    words `behavior forget` prints, and the erasure is recorded all the same."""
    r = client.delete("/v1/admin/users/u0000003%00", headers=home.headers("admin"))
    problem = assert_problem(r, 404)
    assert problem["notice"] == control_notice("u0000003\x00") and problem["detail"].endswith(problem["notice"])
    assert "if the user is 'u0000003', erase 'u0000003'" in problem["notice"]
    assert ErasureLog(home.root).erased_among(["u0000003\x00", "u0000003"]) == {"u0000003\x00"}
    assert client.get("/v1/users/u0000003/profile", headers=home.headers()).status_code == 200
    assert "notice" not in assert_problem(client.delete("/v1/admin/users/nobody", headers=home.headers("admin")), 404)


def test_a_bundle_holding_such_an_id_erases_it_with_the_notice(client, home):
    """A bundle built from a lake an older ingest wrote may hold an id with a control character."""
    odd = "u\x1b0000004"

    def rename(table: pa.Table) -> pa.Table:
        ids = table.column("user_id").to_pylist()
        return table.set_column(0, "user_id", pa.array([odd if u == "u0000004" else u for u in ids], pa.string()))

    clone_bundle(home.bundles, home.active(), "v-odd", profiles=rename)
    point_current(home, "v-odd")
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    r = client.delete("/v1/admin/users", params={"user_id": odd}, headers=home.headers("admin"))
    assert r.status_code == 200, r.text
    assert r.json() == {"user_id": odd, "erased": True, "bundle_version": "v-odd", "notice": control_notice(odd)}
    r = client.delete("/v1/admin/users/u0000005", headers=home.headers("admin"))
    assert r.status_code == 200 and r.json()["notice"] is None
