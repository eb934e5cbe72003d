"""`behavior bench notify` end to end on a small bundle: a real server, real signed bodies."""

from __future__ import annotations

import shutil

import pytest

from behavior.store.datahome import DataHome
from behavior.store.senders import SenderBook, verify
from pipelines.bench.server import ensure_bundle
from pipelines.bench.notify import _payments, _signed, format_notify_table, run_notify_bench

GENERATORS = ["python"] + (["wrk"] if shutil.which("wrk") else [])


def test_the_signed_bodies_are_distinct_payments_that_verify(tmp_path):
    from behavior.store.senders import add_sender

    secret = bytes.fromhex(add_sender(tmp_path, "bench"))
    docs = _payments(50, ["u1"], ["i00001"], "abcd", known_every=10)
    signed = _signed(secret, docs)
    sender = SenderBook(tmp_path).get("bench")
    for header, body in signed:
        verify(sender, header, body, float(header.split(",")[0][2:]))
    assert len({body for _, body in signed}) == 50
    assert len({d["payment_id"] for d in docs}) == 50
    # one in ten is a user of the bundle, the others are new
    assert [d["user_id"] for d in docs[::10]] == ["u1", "u1", "u1", "u1", "u1"]
    assert all(d["user_id"].startswith("new-") for i, d in enumerate(docs) if i % 10)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """The benchmark's folder with its data home's bundle made, once for both generators (the
    benchmark reuses it, as `behavior bench notify` does a second time)."""
    work = tmp_path_factory.mktemp("bench-notify")
    ensure_bundle(DataHome(work / "data"), 300, lambda _: None)
    return work


@pytest.mark.slow
@pytest.mark.timing   # 1-second load runs: another worker's load could leave a run with too few requests to measure
@pytest.mark.parametrize("generator", GENERATORS)
def test_the_benchmark_measures_every_target_with_each_generator(generator, work):
    result = run_notify_bench(work, duration_s=1.0, connections=4, users=300, repeat=2, generator=generator)
    setup, rows = result["setup"], result["rows"]
    assert setup["generator"].startswith(generator)
    assert setup["server_peak_mb"] > 50
    assert [r["bench"] for r in rows] == ["notify: single payments at 2,100/s", "GET recommendations beside",
                                          "notify: single payments, capacity", "notify: batches of 1,000 lines"]
    for r in rows:
        assert r["runs"] == 2 and r["errors"] == 0 and r["per_s"] > 0 and 0 < r["p50_ms"] <= r["p99_ms"]
        assert 0 < r["server_cpu"] < 1.5
    paced, gets, capacity, batches = rows
    # the paced loads are sent at their pace, never faster (a few % over for a run of 1 s)
    assert paced["per_s"] <= 2100 * 1.05 and gets["per_s"] <= 500 * 1.05
    assert [r["met"] is None for r in rows] == [False, False, True, False]
    assert capacity["target"] is None and "(what one worker serves: no target)" in format_notify_table(result)
    assert batches["lines_per_s"] == pytest.approx(batches["per_s"] * 1000)
    # every acknowledged notification was a new line: no body was sent twice
    assert all(stored >= 1 for stored in setup["stored_single"])
    table = format_notify_table(result)
    assert f"load generator: {setup['generator']}" in table and "median of 2 runs" in table
    if setup["pinned"]:
        assert "server bound to CPU" in table
