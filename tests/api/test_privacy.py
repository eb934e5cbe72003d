"""Erasures and opt-outs recorded by another process hold at the next request (in process; the
multi-worker servers are in test_workers_e2e.py), and the profile views they make."""

from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.bundle import Bundle, Profiles, RowIndex
from behavior.store.erasure_log import ErasureLog
from api.privacy import IdHashes
from behavior.pii import erasure_hash
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from tests.api.conftest import assert_problem


def small() -> Profiles:
    return Profiles(pa.table({"user_id": ["a", "b", "c", "d", "e"], "segment": ["S", "S", "T", "T", "T"],
                              "marketing_opt_out": [False, True, False, None, False],
                              "clv": [1.0, 2.0, 3.0, 4.0, 5.0]}))


def test_profile_views_drop_rows_flag_opt_outs_and_keep_lookups_right():
    p = small()
    v = p.updated(drop=[1, 3], opt_out=[4])
    assert v.table.column("user_id").to_pylist() == ["a", "c", "e"] and len(v) == 3
    assert isinstance(v.index, RowIndex) and list(v.index) == ["a", "c", "e"] and len(v.index) == 3
    assert v.row("e") == {"user_id": "e", "segment": "T", "marketing_opt_out": True, "clv": 5.0}
    assert v.row("b") is None and "d" not in v.index and v.index.get("c") == 1
    with pytest.raises(KeyError):
        v.index["b"]
    w = v.updated(drop=[0], opt_out=[])                   # a view of a view
    assert list(w.index) == ["c", "e"] and w.row("c")["clv"] == 3.0 and w.index.get("e") == 1
    by = {s.segment: s for s in w.segments}
    assert by["T"].users == 2 and by["T"].opted_out == 1 and "S" not in by
    assert p.updated([], []) is p and p.row("b")["marketing_opt_out"] is True   # the original is untouched


def test_id_hashes_find_exactly_the_hashed_ids():
    now = datetime.now(timezone.utc)
    bundle = Bundle(version="v", as_of=now, created_at=now, manifest={}, report={}, profiles=small())
    secret = bytes(32)
    hashes = IdHashes.of(bundle, secret)
    wanted = frozenset({erasure_hash(secret, "c"), erasure_hash(secret, "zz"), "0" * 64})
    assert hashes.find(wanted, secret) == {"c"}
    assert hashes.find(frozenset(), secret) == set()


def test_an_erasure_logged_by_another_process_holds_at_the_next_request(client, home):
    user = "u0000011"
    assert client.get(f"/v1/users/{user}/profile", headers=home.headers()).status_code == 200
    ErasureLog(home.root).record(user, source="cli")      # another worker, server or `behavior forget`
    assert_problem(client.get(f"/v1/users/{user}/profile", headers=home.headers()), 404)
    flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
    assert client.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 0
    assert client.get(f"/v1/users/{user}/recommendations", headers=home.headers()).json()["source"] == "fallback"


def test_an_ingested_opt_out_holds_at_the_next_request_and_an_opt_in_waits_for_the_run(client, home, tmp_path):
    profiles = pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas()
    opted = profiles.user_id[profiles.marketing_opt_out].iloc[0]
    user = profiles.user_id[~profiles.marketing_opt_out].iloc[0]
    flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
    segments = {s["segment"]: s for s in client.get("/v1/segments", headers=home.headers()).json()["segments"]}
    assert client.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 1
    f = tmp_path / "users.csv"
    f.write_text(f"user_id,marketing_opt_out\n{user},true\n{opted},false\n")
    ingest(DataHome(home.root), [f], IngestOptions(table="users"))
    assert client.post("/v1/segments/query", json=flt, headers=home.headers()).json()["total"] == 0
    assert client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()["marketing_opt_out"] is True
    segment = profiles.segment[profiles.user_id == user].iloc[0]
    after = {s["segment"]: s for s in client.get("/v1/segments", headers=home.headers()).json()["segments"]}
    assert after[segment]["opted_out"] == segments[segment]["opted_out"] + 1
    # the opt-in is the bundle's to carry (next run): the user stays out of marketing until then
    assert client.get(f"/v1/users/{opted}/profile", headers=home.headers()).json()["marketing_opt_out"] is True
