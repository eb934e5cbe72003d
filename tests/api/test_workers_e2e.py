"""Erasures and opt-outs on every worker: real `behavior serve --workers 2` processes (and a
second server on the same data home) on loopback, polling switched off (every 600 s) so that
only the per-request check can make them hold.

A worker is told apart by its `loaded_at` (GET /v1/model): each worker loads the bundle
itself. Every probe opens a new connection (the kernel hands it to either worker), asks
/v1/model on it, then the question, on the same connection, so each answer is tied to a
worker; the probes go on, four at a time, until every worker answered twice.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq
import pytest

from tests.api.test_server_e2e import REPO
from tests.live_server import free_port, wait_ready

pytestmark = pytest.mark.slow

TARGETS = {"target": "any", "economics": {"value_per_conversion": 50, "coupon_cost": 1, "contact_cost": 0.01},
           "budget": {"users": 100_000}, "holdout_share": 0.1, "exclude_contacted_days": 0}


@contextmanager
def behavior_serve(root: Path, workers: int, log: Path) -> Iterator[str]:
    """`behavior serve --workers N` on a free loopback port until every worker answers; its base URL."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BEHAVIOR_API_RELOAD_INTERVAL": "600",
           "BEHAVIOR_API_RATE_LIMIT": "0"}
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(root),
           "serve", "--port", str(port), "--workers", str(workers)]
    out = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, log, timeout=60)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)   # the supervisor and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()


def per_worker(base: str, headers: dict, ask: Callable[[httpx.Client], object], workers: int,
               max_rounds: int = 50, parallel: int = 4) -> dict[str, list]:
    """`ask` on new connections, `parallel` at a time (a busy worker leaves the next connection
    to another), until `workers` workers answered twice each: {worker: [answers]}."""
    def probe(_: int) -> tuple[str, object]:
        with httpx.Client(base_url=base, headers=headers, timeout=30) as c:
            return c.get("/v1/model").json()["loaded_at"], ask(c)

    seen: dict[str, list] = {}
    with ThreadPoolExecutor(parallel) as pool:
        for _ in range(max_rounds):
            for worker, answer in pool.map(probe, range(parallel)):
                seen.setdefault(worker, []).append(answer)
            if len(seen) >= workers and all(len(a) >= 2 for a in seen.values()):
                return seen
    raise AssertionError(f"only {len(seen)} of {workers} workers answered in {max_rounds * parallel} probes")


def user_everywhere(c: httpx.Client, user: str) -> dict[str, bool]:
    """Where the user is served: profile, JSON query, CSV export, target list, personal recommendations."""
    profile = c.get(f"/v1/users/{user}/profile").status_code == 200
    flt = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}}
    json_query = c.post("/v1/segments/query", json=flt).json()["total"] == 1
    body = c.post("/v1/segments/query", json={"fields": ["user_id"]}, headers={"Accept": "text/csv"}).text
    exported = user in {r["user_id"] for r in csv.DictReader(io.StringIO(body))}
    targets = c.post("/v1/promotions/targets", json=TARGETS).json()
    targeted = user in {u["user_id"] for u in targets["targets"] + targets["holdout"]}
    recs = c.get(f"/v1/users/{user}/recommendations?n=5").json()["source"] == "model"
    return {"profile": profile, "json query": json_query, "csv export": exported, "target list": targeted,
            "recommendations": recs}


def served_everywhere(home, base) -> str:
    """A user the bundle serves in every one of `user_everywhere`'s places."""
    profiles = pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas()
    with httpx.Client(base_url=base, headers=home.headers(), timeout=30) as c:
        targets = c.post("/v1/promotions/targets", json=TARGETS).json()
        listed = {u["user_id"] for u in targets["targets"] + targets["holdout"]}
        for user in profiles.user_id[~profiles.marketing_opt_out]:
            if user in listed and all(user_everywhere(c, user).values()):
                return user
    raise AssertionError("no user is served everywhere")


def test_an_api_erasure_holds_on_every_worker_of_every_server_at_once(home, tmp_path, timed):
    with behavior_serve(home.root, 2, tmp_path / "a.log") as a, behavior_serve(home.root, 1, tmp_path / "b.log") as b:
        user = served_everywhere(home, a)
        before = per_worker(a, home.headers(), lambda c: user_everywhere(c, user), workers=2)
        assert all(all(answer.values()) for answers in before.values() for answer in answers), before
        with timed():
            r = httpx.delete(f"{a}/v1/admin/users/{user}", headers=home.headers("admin"), timeout=30)
            assert r.status_code == 200, r.text
            erased_at = time.monotonic()
            probes = [(time.monotonic() - erased_at, base, per_worker(base, home.headers(),
                                                                       lambda c: user_everywhere(c, user), workers))
                      for base, workers in ((a, 2), (b, 1))]
            assert probes[0][0] < 1.0      # the first probes ran within a second of the 200
            for _, base, after in probes:
                served = [(w, place) for w, answers in after.items() for ans in answers
                          for place, on in ans.items() if on]
                assert served == [], f"{base} still serves {user}: {served}"


def test_an_ingested_opt_out_holds_on_every_worker_within_a_second(home, tmp_path, timed):
    with behavior_serve(home.root, 2, tmp_path / "serve.log") as base:
        user = served_everywhere(home, base)
        users_csv = tmp_path / "users.csv"
        users_csv.write_text(f"user_id,signup_at,marketing_opt_out\n{user},2024-01-05,true\n")
        cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(home.root),
               "ingest", str(users_csv), "--table", "users"]
        with timed():
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
            assert out.returncode == 0, out.stderr
            ingested_at = time.monotonic()

            def marketed(c: httpx.Client) -> dict[str, bool]:
                where = user_everywhere(c, user)
                profile = c.get(f"/v1/users/{user}/profile").json()
                return {**{k: where[k] for k in ("json query", "csv export", "target list")},
                        "not flagged": profile["marketing_opt_out"] is not True}

            assert time.monotonic() - ingested_at < 1.0     # the probes start within a second of the ingest
            first = per_worker(base, home.headers(), marketed, workers=2)
            marketed_on = [(w, k) for w, answers in first.items() for ans in answers for k, on in ans.items() if on]
            assert marketed_on == [], f"opted-out {user} still marketed: {marketed_on}"
            # still a profile and recommendations: an opt-out is not an erasure
            with httpx.Client(base_url=base, headers=home.headers(), timeout=30) as c:
                assert c.get(f"/v1/users/{user}/profile").status_code == 200


def test_the_access_log_names_no_user(home, tmp_path):
    log = tmp_path / "serve.log"
    users = ["u0000001", "u0000002", "u0000007"]
    with behavior_serve(home.root, 2, log) as base:
        with httpx.Client(base_url=base, headers=home.headers(), timeout=30) as c:
            for user in users:
                assert c.get(f"/v1/users/{user}/profile").status_code == 200
                assert c.get(f"/v1/users/{user}/recommendations?n=3").status_code == 200
            assert c.get("/v1/users/no body%2Fwith slash/profile").status_code == 404
        r = httpx.delete(f"{base}/v1/admin/users/{users[2]}", headers=home.headers("admin"), timeout=30)
        assert r.status_code == 200
        time.sleep(0.5)   # the workers flush their log lines
    text = log.read_text()
    for user in users + ["body", "slash"]:
        assert user not in text
    lines = [ln for ln in text.splitlines() if '"GET /v1/users/' in ln or '"DELETE /v1/admin/users/' in ln]
    assert len(lines) == 8, text
    assert all(re.search(r'/users/#[0-9a-f]{16}(/profile|/recommendations\?n=3)? HTTP', ln) for ln in lines), lines
    from behavior.store.erasure_log import ErasureLog

    digest = ErasureLog(home.root).key_hash(users[2])[:16]     # whoever holds the secret finds the user's lines
    assert sum(f"#{digest}" in ln for ln in lines) == 3
