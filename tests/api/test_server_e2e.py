"""The real server: uvicorn in a subprocess on a loopback port, called over HTTP, with bundles
swapped under concurrent requests."""

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from behavior.store.bundle import BundleError
from api.server import serve
from tests.api.conftest import clone_bundle, point_current
from tests.live_server import free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(home, tmp_path):
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BEHAVIOR_API_RELOAD_INTERVAL": "0.1",
           "BEHAVIOR_API_RATE_LIMIT": "0"}
    code = f"from pathlib import Path; from api.server import serve; serve(Path({str(home.root)!r}), '127.0.0.1', {port}, access_log=False, log_level='warning')"
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, (tmp_path / "server.log"), timeout=30)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def test_the_server_answers_over_http(server, home):
    with httpx.Client(base_url=server, headers=home.headers(), timeout=10) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/v1/model").json()["bundle_version"] == home.active()
        assert c.get("/v1/users/u0000001/profile").json()["user_id"] == "u0000001"
        assert c.get("/v1/users/u0000001/recommendations?n=3").json()["model_version"] == home.active()
        r = c.post("/v1/segments/query", json={"limit": 5}, headers={"Accept": "text/csv"})
        assert r.status_code == 200 and r.text.startswith('"user_id"')
        r = c.get("/nowhere")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert httpx.get(server + "/v1/model").status_code == 401


def test_no_request_fails_while_bundles_swap(server, home):
    first = home.active()
    versions = [first] + [clone_bundle(home.bundles, first, f"v-swap-{i}", later_by_s=10 * (i + 1)).name
                          for i in range(3)]
    stop = threading.Event()
    seen: Counter = Counter()
    failures: list[str] = []

    def hammer(i: int) -> None:
        paths = ["/v1/users/u0000002/profile", "/v1/users/u0000002/recommendations?n=5", "/v1/model"]
        with httpx.Client(base_url=server, headers=home.headers(), timeout=10) as c:
            n = 0
            while not stop.is_set():
                path = paths[(n + i) % len(paths)]
                n += 1
                try:
                    if n % 7 == 0:
                        r = c.post("/v1/segments/query", json={"sort": [{"field": "clv", "desc": True}], "limit": 50})
                    else:
                        r = c.get(path)
                except httpx.HTTPError as exc:
                    failures.append(f"{path}: {type(exc).__name__}")
                    continue
                if r.status_code != 200:
                    failures.append(f"{path}: {r.status_code} {r.text[:200]}")
                    continue
                body = r.json()
                seen[body.get("bundle_version") or body.get("model_version") or "profile"] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    try:
        for v in versions[1:] + [first]:
            time.sleep(0.5)
            point_current(home, v)
        time.sleep(0.5)
        httpx.post(server + "/v1/admin/reload", headers=home.headers("admin"), timeout=10)
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert sum(seen.values()) > 100
    assert len([v for v in seen if v.startswith("v-swap-")]) >= 2, seen


def test_serve_refuses_to_start_without_a_published_bundle(tmp_path, monkeypatch):
    from api.settings import get_settings

    monkeypatch.delenv("BEHAVIOR_DATA_DIR", raising=False)  # serve() sets it for its workers
    with pytest.raises(BundleError, match="no bundle has been published"):
        serve(tmp_path / "empty", "127.0.0.1", free_port())
    get_settings.cache_clear()
