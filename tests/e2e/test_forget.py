"""Right to erasure through the CLI: after `behavior forget`, no file under the data home holds the id."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from pipelines.publish import verify
from pipelines.synth_files import write_synth
from tests.e2e.test_cli import behavior


def files_naming(root: Path, user_id: str) -> list[str]:
    """Every file under `root` whose bytes, Parquet values or npz arrays contain `user_id`."""
    needle = user_id.encode()
    hits = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        if needle in f.read_bytes():
            hits.append(f"{f} (bytes)")
        elif f.suffix == ".parquet":
            for col in pq.read_table(f).columns:
                if any(user_id in str(v) for v in col.to_pylist() if v is not None):
                    hits.append(f"{f} (column {col._name if hasattr(col, '_name') else '?'})")
                    break
        elif f.suffix == ".npz":
            with np.load(f, allow_pickle=False) as z:
                if any(a.dtype.kind == "U" and np.char.find(a.astype(str), user_id).max(initial=-1) >= 0
                       for a in (z[k] for k in z.files)):
                    hits.append(f"{f} (array)")
    return hits


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
    behavior(data, "ingest", str(synth))
    behavior(data, "ingest", str(root / "bad.csv"))
    behavior(data, "run")
    behavior(data, "run")           # a second bundle, kept for rollback
    before = files_naming(data, user)
    out = behavior(data, "forget", user)
    return root, data, synth, user, before, out


def test_the_user_was_everywhere_before(erased):
    _, data, _, user, before, _ = erased
    kinds = " ".join(before)
    for place in ("lake/payments", "lake/users", "lake/assignments", "lake/_rejected", "profiles.parquet",
                  "recommender.npz", "uplift_scores.parquet", "contacts.parquet"):
        assert place in kinds, (place, before)


def test_no_file_under_the_data_home_names_the_user_afterwards(erased):
    _, data, _, user, _, out = erased
    assert "1 users recorded" in out.stdout
    assert files_naming(data, user) == []
    for folder in (data / "artifacts" / "bundles").iterdir():
        verify(folder)                      # rewritten bundles are complete and checksummed
    log = [json.loads(line) for line in (data / "erasure_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and set(log[0]) == {"hash", "erased_at", "source"} and user not in log[0]["hash"]


def test_rows_arriving_again_are_rejected_and_leave_no_trace(erased):
    _, data, synth, user, _, _ = erased
    rep = json.loads(behavior(data, "ingest", str(synth / "payments.parquet"), "--json").stdout)
    assert rep["rejected_by_reason"].get("erased_user", 0) > 0 and rep["accepted"] == 0
    assert rep["read"] == rep["accepted"] + rep["duplicates"] + rep["rejected"]
    behavior(data, "run")
    assert files_naming(data, user) == []
    profiles = pq.read_table(data / "artifacts" / "bundles" / (data / "artifacts" / "CURRENT").read_text().strip()
                             / "profiles.parquet").to_pandas()
    assert user not in set(profiles["user_id"]) and len(profiles) > 600


def test_forget_needs_ids_and_reads_a_file(erased, tmp_path):
    root, data, _, _, _, _ = erased
    out = behavior(data, "forget", check=False)
    assert out.returncode == 2 and "name the users to erase" in out.stderr
    ids = tmp_path / "ids.txt"
    ids.write_text("# erasure requests\nu0000001\n\nnobody-at-all\n")
    out = behavior(data, "forget", "--file", str(ids))
    assert "2 users recorded" in out.stdout and files_naming(data, "u0000001") == []
