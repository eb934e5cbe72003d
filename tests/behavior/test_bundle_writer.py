"""The bundle writer: each file's checksum is computed from the bytes as they are written (no
second read), what `later` makes is written after the artifacts written meanwhile, and a
failure leaves no folder behind."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from behavior.store import bundle as B
from behavior.store.datahome import DataHome

META = {"as_of": "2026-01-01T00:00:00+00:00", "created_at": "2026-01-02T00:00:00+00:00", "code_version": "t"}


def _artifacts() -> dict:
    profiles = pa.table({"user_id": [f"u{i}" for i in range(5000)], "segment": ["Champions"] * 5000,
                         "marketing_opt_out": [False] * 5000})
    arrays = {"user_ids": np.array(["u1", "u2"]), "item_factors": np.random.default_rng(0).random((300, 8))}
    return {B.PROFILES: profiles, B.RECOMMENDER: arrays}


def test_checksums_made_while_writing_are_those_of_the_files_and_the_npz_reads_back(tmp_path):
    home = DataHome(tmp_path)
    order: list[str] = []

    def later():
        order.append("later")
        return {B.REPORT_HTML: "<html></html>", B.REPORT: {"run_id": "r"}}

    folder = B.write_bundle(home, "v1", _artifacts(), META, later=later)
    manifest = B.verify(folder)   # recomputes every SHA-256 from the disk
    assert set(manifest["checksums"]) == {"profiles.parquet", "recommender.npz", "report.html", "report.json"}
    assert all(manifest["checksums"][f.name] == B.sha256(f) for f in folder.iterdir() if f.name != B.MANIFEST)
    assert manifest["row_counts"] == {"profiles.parquet": 5000} and order == ["later"]
    arrays = B.read_recommender(folder / "recommender.npz")
    assert arrays["user_ids"].tolist() == ["u1", "u2"] and arrays["item_factors"].shape == (300, 8)
    assert pq.read_table(folder / "profiles.parquet").num_rows == 5000


def test_a_corrupted_file_still_fails_verification_against_the_written_checksum(tmp_path):
    folder = B.write_bundle(DataHome(tmp_path), "v1", {**_artifacts(), B.REPORT: {"run_id": "r"}}, META)
    with open(folder / "recommender.npz", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(B.BundleError, match="recommender.npz does not match its checksum"):
        B.verify(folder)


def test_a_failure_while_the_artifacts_are_written_leaves_no_folder(tmp_path):
    home = DataHome(tmp_path)

    def later():
        raise RuntimeError("the page could not be made")

    with pytest.raises(RuntimeError, match="page"):
        B.write_bundle(home, "v1", _artifacts(), META, later=later)
    with pytest.raises(TypeError, match="cannot write report.html"):
        B.write_bundle(home, "v2", {**_artifacts(), B.REPORT_HTML: 3.5}, META)
    assert list(home.bundles.iterdir()) == []
