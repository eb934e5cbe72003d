"""The store's bundle on a real published bundle: the catalogue describes every file, erasure
cuts a user out of every per-user artifact, and CURRENT is written only under the data home's
lock (the API's rollback included)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

from behavior.recommend.serving import ServingModel
from behavior.store.bundle import BY_FILE, CATALOGUE, MANIFEST, RECOMMENDER, read_recommender, verify, without_users
from tests.api.conftest import assert_problem, clone_bundle, point_current, write_manifest


def test_the_catalogue_declares_every_file_and_every_per_user_table_of_a_published_bundle(home):
    folder = home.bundles / home.active()
    names = {p.name for p in folder.iterdir()} - {MANIFEST}
    assert names - set(BY_FILE) == set()
    for name in names:
        artifact = BY_FILE[name]
        if artifact.is_table:
            has_ids = "user_id" in pq.read_schema(folder / name).names
            assert has_ids == (artifact.user_key == "user_id"), name


def test_without_users_cuts_the_user_out_of_every_per_user_artifact(home):
    folder = home.bundles / home.active()
    user = "u0000003"
    per_user = [a for a in CATALOGUE if a.user_key and (folder / a.file).exists()]
    assert RECOMMENDER in per_user and len(per_user) >= 3

    def ids_in(artifact) -> list:
        if artifact.is_table:
            return pq.read_table(folder / artifact.file, columns=[artifact.user_key]).column(0).to_pylist()
        with np.load(folder / artifact.file, allow_pickle=False) as npz:
            return npz[artifact.user_key].tolist()

    assert any(user in ids_in(a) for a in per_user)
    removed = without_users(folder, lambda ids: np.isin(np.asarray(ids, dtype=object), [user]), "2026-01-01T00:00:00")
    assert removed >= 1 and all(user not in ids_in(a) for a in per_user)
    assert verify(folder)["erased_at"] == "2026-01-01T00:00:00"
    assert without_users(folder, lambda ids: np.isin(np.asarray(ids, dtype=object), [user]), "later") == 0


FORMER = {"purchased.indptr": "seen.indptr", "purchased.indices": "seen.indices", "purchased.data": "seen.data",
          "purchased.days": "seen.days", "exclude_purchased": "exclude_seen"}


def test_a_recommender_written_with_the_former_array_names_serves_and_erases_the_same(home):
    folder = home.bundles / home.active()
    arrays = read_recommender(folder / RECOMMENDER.file)
    assert "purchased.indptr" in arrays and "exclude_purchased" in arrays
    old = clone_bundle(home.bundles, home.active(), "former-names")
    np.savez(old / RECOMMENDER.file, **{FORMER.get(k, k): v for k, v in arrays.items()})
    write_manifest(old, json.loads((old / MANIFEST).read_text()))
    with np.load(old / RECOMMENDER.file, allow_pickle=False) as npz:
        assert {"seen.indptr", "exclude_seen"} <= set(npz.files) and "purchased.indptr" not in npz.files

    again = read_recommender(old / RECOMMENDER.file)
    assert again.keys() == arrays.keys() and all(np.array_equal(again[k], arrays[k]) for k in arrays)
    new, former = ServingModel.from_arrays(arrays), ServingModel.from_arrays(again)
    for user in arrays["user_ids"][:20].tolist():
        assert former.recommend(user, n=5).items == new.recommend(user, n=5).items

    user = arrays["user_ids"][0]
    assert without_users(old, lambda ids: np.isin(np.asarray(ids, dtype=object), [user]), "2026-01-01T00:00:00") >= 1
    erased = read_recommender(old / RECOMMENDER.file)
    assert user not in erased["user_ids"].tolist() and verify(old)["erased_at"] == "2026-01-01T00:00:00"
    assert erased["purchased.indptr"].size == arrays["purchased.indptr"].size - 1


HOLD_LOCK = """
import sys
from pathlib import Path
from behavior.store.datahome import DataHome
with DataHome(Path(sys.argv[1])).lock("run"):
    print("locked", flush=True)
    sys.stdin.read()
"""


def test_a_rollback_while_a_command_holds_the_data_home_is_refused_and_current_stays(client, home):
    first = home.active()
    clone_bundle(home.bundles, first, "v-second")
    point_current(home, "v-second")
    client.post("/v1/admin/reload", headers=home.headers("admin"))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(home.root)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = assert_problem(client.post("/v1/admin/rollback", headers=home.headers("admin")), 409)
        assert "in use by `behavior run`" in p["detail"] and str(home.root) not in p["detail"]
        assert home.active() == "v-second"
        assert client.get("/v1/model", headers=home.headers()).json()["bundle_version"] == "v-second"
    finally:
        holder.communicate("")
    r = client.post("/v1/admin/rollback", headers=home.headers("admin"))
    assert r.status_code == 200 and home.active() == first
