"""The API's erase route and the erasure log read an id in its stored form (whitespace at either
end trimmed, as ingest and `behavior forget` do)."""

import json

from behavior.store.erasure_log import ErasureLog
from tests.api.conftest import assert_problem


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
