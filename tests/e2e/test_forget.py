"""Right to erasure through the CLI: after `behavior forget`, no file under the data home holds the id
(lake, quarantine, bundles finished or not, the demo's input, logs), and the data home is private."""

import json
import os
import shutil
import stat
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from behavior.store.bundle import verify
from pipelines.synth_files import write_synth
from tests.e2e.test_cli import behavior
from tests.live_server import free_port, wait_ready

pytestmark = pytest.mark.slow       # two runs and a server (~45 s)


def files_naming(root: Path, user_id: str) -> list[str]:
    """Every file under `root` whose name, bytes, Parquet string values, npz arrays or JSON
    values contain `user_id` (Parquet pages are compressed and npz strings are UTF-32, so raw
    bytes alone would miss them)."""
    needle = user_id.encode()
    hits = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        data = f.read_bytes()
        if user_id in str(f.relative_to(root)):
            hits.append(f"{f} (name)")
        elif needle in data:
            hits.append(f"{f} (bytes)")
        elif f.suffix == ".parquet":
            t = pq.read_table(f)
            hits += [f"{f} (column {name})" for name, col in zip(t.column_names, t.columns)
                     if any(user_id in str(v) for v in col.to_pylist() if v is not None)]
        elif f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                hits += [f"{f} (array {k})" for k in z.files if z[k].dtype.kind in "US"
                         and np.char.find(z[k].astype(str), user_id).max(initial=-1) >= 0]
        elif f.suffix in (".json", ".jsonl", ".log"):
            for line in data.decode(errors="replace").splitlines():
                try:
                    if user_id in json.dumps(json.loads(line), ensure_ascii=False):
                        hits.append(f"{f} (JSON value)")
                        break
                except ValueError:
                    continue
    return hits


def loose_modes(root: Path) -> list[str]:
    """Files not 0600 and folders not 0700 under `root` (the root included)."""
    out = []
    for p in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(p.lstat().st_mode)
        if not p.is_symlink() and mode != (0o700 if p.is_dir() else 0o600):
            out.append(f"{oct(mode)} {p.relative_to(root)}")
    return out


@contextmanager
def serving(data: Path, log: Path):
    """`behavior serve` on a loopback port, its output (the access log) written to `log`."""
    port = free_port()
    env = {**os.environ, "BEHAVIOR_API_RATE_LIMIT": "0"}
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir",
                                 str(data), "serve", "--port", str(port)], stdout=out, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_ready(base, proc, log, timeout=60, probe="/healthz")
            yield base
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def erased(tmp_path_factory):
    root = tmp_path_factory.mktemp("forget")
    data, synth = root / "data", root / "synth"
    write_synth(synth, users=700, months=12, seed=4, promo_assign_rate=0.5)
    assignments = pq.read_table(synth / "assignments.parquet").to_pandas()
    payments = pq.read_table(synth / "payments.parquet").to_pandas()
    users = sorted(set(assignments.loc[assignments["group"] == "treatment", "user_id"]) & set(payments["user_id"]))
    user = users[len(users) // 2]
    # a bad row of the user lands in the quarantine
    (root / "bad.csv").write_text(f"payment_id,user_id,item_id,amount,paid_at\nbad-1,{user},i000001,not-a-number,"
                                  "2024-06-01T10:00:00Z\nok-1,someone_else,i000001,3.50,2024-06-01T10:00:00Z\n")
    umask = os.umask(0o022)         # an ordinary umask: the data home must be private all the same
    try:
        behavior(data, "ingest", str(synth))
        behavior(data, "ingest", str(root / "bad.csv"))
        behavior(data, "run")
        behavior(data, "run")           # a second bundle, kept for rollback
        key = behavior(data, "keys", "add", "ops", *(a for s in ("admin", "profiles:read", "recommendations:read",
                                                                 "segments:read", "segments:export")
                                                     for a in ("--scope", s))).stdout.strip()
        with serving(data, root / "serve.log") as base, \
                httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as api:
            assert api.get(f"/v1/users/{user}/profile").status_code == 200
            assert api.get(f"/v1/users/{user}/recommendations").status_code == 200
            query = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
            assert api.post("/v1/segments/query", json=query).json()["total"] == 1
            assert user in api.post("/v1/segments/query", json=query, headers={"Accept": "text/csv"}).text
        loose = loose_modes(data)
        # what else a data home holds after `behavior demo`-like use: the operator keeps the server's
        # output (the access log) in the data home, the demo's input files are in synth/, and a run
        # killed while publishing left a half-written bundle
        (data / "logs").mkdir()
        shutil.move(root / "serve.log", data / "logs" / "serve.log")
        shutil.copytree(synth, data / "synth")
        bundles = data / "artifacts" / "bundles"
        shutil.copytree(bundles / (data / "artifacts" / "CURRENT").read_text().strip(), bundles / ".tmp-20990101T000000Z-killed")
        before = files_naming(data, user)
        out = behavior(data, "forget", user)
    finally:
        os.umask(umask)
    return root, data, synth, user, before, out, loose


def test_the_user_was_everywhere_before(erased):
    _, data, _, user, before, _, _ = erased
    kinds = " ".join(before)
    for place in ("lake/payments", "lake/users", "lake/assignments", "lake/_rejected", "profiles.parquet",
                  "recommender.npz", "uplift_scores.parquet", "contacts.parquet", "category_affinity.parquet",
                  "bundles/.tmp-20990101T000000Z-killed/profiles.parquet", "synth/payments.parquet"):
        assert place in kinds, (place, before)


def test_no_file_under_the_data_home_names_the_user_afterwards(erased):
    _, data, _, user, before, out, _ = erased
    assert "1 id recorded" in out.stdout and "1 of them matched stored rows" in out.stdout
    if any("logs/serve.log" in hit for hit in before):     # the access log names users (unless it hashes them)
        assert "logs/serve.log" in out.stdout.split("[erased]")[1]
    assert "half-written bundles removed: .tmp-20990101T000000Z-killed" in out.stdout
    assert files_naming(data, user) == []
    assert not list((data / "artifacts" / "bundles").glob(".*"))
    for folder in (data / "artifacts" / "bundles").iterdir():
        verify(folder)                      # rewritten bundles are complete and checksummed
    log = [json.loads(line) for line in (data / "erasure_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and set(log[0]) == {"hash", "erased_at", "source"} and user not in log[0]["hash"]


def test_every_file_and_folder_of_the_data_home_is_private(erased):
    """ingest, run, keys and serve under umask 022 wrote nothing readable by other users, and
    forget tightened what the test copied in (0755/0644) before it looked at it."""
    _, data, _, _, _, _, loose = erased
    assert loose == []
    assert loose_modes(data) == []


def test_rows_arriving_again_are_rejected_and_leave_no_trace(erased):
    _, data, synth, user, _, _, _ = erased
    rep = json.loads(behavior(data, "ingest", str(synth / "payments.parquet"), "--json").stdout)
    assert rep["rejected_by_reason"].get("erased_user", 0) > 0 and rep["accepted"] == 0
    assert rep["read"] == rep["accepted"] + rep["duplicates"] + rep["rejected"]
    behavior(data, "run")
    assert files_naming(data, user) == []
    profiles = pq.read_table(data / "artifacts" / "bundles" / (data / "artifacts" / "CURRENT").read_text().strip()
                             / "profiles.parquet").to_pandas()
    assert user not in set(profiles["user_id"]) and len(profiles) > 600


def test_forget_needs_ids_and_reads_a_file(erased, tmp_path):
    _, data, _, _, _, _, _ = erased
    out = behavior(data, "forget", check=False)
    assert out.returncode == 2 and "name the users to erase" in out.stderr
    assert behavior(data, "forget", " \t", check=False).returncode == 2
    ids = tmp_path / "ids.txt"
    ids.write_text("# erasure requests\nu0000001\n\nnobody-at-all\n")
    out = behavior(data, "forget", "--file", str(ids))
    assert "2 ids recorded" in out.stdout and "1 of them matched stored rows" in out.stdout
    assert "1 id matched no stored row: 'nobody-at-all'" in out.stdout and "future ingests will reject" in out.stdout
    assert files_naming(data, "u0000001") == []


def test_an_id_that_matched_nothing_is_said_and_blocks_its_later_rows(erased, tmp_path):
    """An erasure may come before the data: it is recorded (exit 0) and the report says so."""
    _, data, _, _, _, _, _ = erased
    rep = json.loads(behavior(data, "forget", "early-bird", "--json").stdout)
    assert (rep["users"], rep["matched"], rep["unmatched_ids"], rep["rows_matched"]) == (1, 0, ["early-bird"], 0)
    again = json.loads(behavior(data, "forget", "early-bird", "--json").stdout)
    assert again["already_logged"] == 1 and again["matched"] == 0
    (tmp_path / "late.csv").write_text("user_id,item_id,amount,paid_at\nearly-bird,i000001,2.50,2024-06-01T10:00:00Z\n"
                                       "someone-new,i000001,2.50,2024-06-01T10:00:00Z\n")
    rep = json.loads(behavior(data, "ingest", str(tmp_path / "late.csv"), "--json").stdout)
    assert rep["rejected_by_reason"] == {"erased_user": 1} and rep["accepted"] == 1
