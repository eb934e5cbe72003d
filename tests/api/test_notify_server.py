"""Notifications through real `behavior serve` processes: two workers, `kill -9` in a stream,
`behavior ingest --inbox` into the lake, and the senders commands."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import duckdb
import httpx
import pytest

from behavior.store.senders import add_sender
from tests.api.notify_helpers import PATH, encode, payment, signed
from tests.live_server import free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]


def behavior(data: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(data), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    if check and out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} -> {out.returncode}\n{out.stdout}\n{out.stderr}")
    return out


@pytest.fixture
def root(published, tmp_path) -> Path:
    """A private copy of the published data home, lake included."""
    dst = tmp_path / "data"
    shutil.copytree(published, dst, ignore=shutil.ignore_patterns("synth", ".lock"))
    return dst


class Server:
    def __init__(self, root: Path, log: Path, workers: int = 1, port: int | None = None) -> None:
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "a")
        env = {**os.environ, "PYTHONPATH": str(REPO), "BEHAVIOR_API_RELOAD_INTERVAL": "0.2"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(root), "serve",
             "--port", str(self.port), "--workers", str(workers)],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_ready(self.base, self.proc, log, timeout=60)
        except AssertionError:
            self.stop()
            raise

    def kill9(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)     # the server and its workers: the group this test started
        self.proc.wait(timeout=15)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()


def lake_keys(root: Path) -> Counter:
    files = sorted(str(p) for p in (root / "lake" / "payments").rglob("*.parquet"))
    rows = duckdb.connect().execute(
        "SELECT payment_id, line_no FROM read_parquet($f, hive_partitioning = false) WHERE payment_id LIKE 'n-%'",
        {"f": files}).fetchall()
    return Counter(rows)


def test_senders_commands(tmp_path):
    data = tmp_path / "data"
    out = behavior(data, "senders", "add", "psp")
    secret = out.stdout.strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert (data / "senders.json").stat().st_mode & 0o777 == 0o600
    assert secret in (data / "senders.json").read_text()
    assert behavior(data, "senders", "list").stdout.startswith("psp: hmac, active")
    assert secret not in behavior(data, "senders", "list").stdout
    again = behavior(data, "senders", "add", "psp", check=False)
    assert again.returncode == 2 and "already registered" in again.stderr
    bad_key = tmp_path / "key.pem"
    bad_key.write_text("not a key")
    out = behavior(data, "senders", "add", "rsa", "--rsa-public-key", str(bad_key), check=False)
    assert out.returncode == 2 and "not a PEM public key" in out.stderr
    behavior(data, "senders", "revoke", "psp")
    assert "revoked" in behavior(data, "senders", "list").stdout
    assert behavior(data, "senders", "revoke", "nobody", check=False).returncode == 2
    assert behavior(data, "ingest", check=False).returncode == 2
    assert "nothing to move" in behavior(data, "ingest", "--inbox").stdout


@pytest.mark.slow
def test_two_workers_store_each_line_once_and_ingest_moves_it_once(root, tmp_path):
    secret = add_sender(root, "psp")
    server = Server(root, tmp_path / "server.log", workers=2)
    results: list[dict] = []
    try:
        bodies = [encode([payment(f"n-{i}", user=f"u{i % 7:07d}", items=("i00001", "i00002")) for i in range(k, k + 5)])
                  for k in range(0, 40, 5)]

        def send(offset: int) -> None:
            with httpx.Client(base_url=server.base, timeout=30) as c:
                for j in range(len(bodies)):
                    body = bodies[(j + offset) % len(bodies)]
                    r = c.post(PATH, content=body, headers=signed("psp", body, secret=secret))
                    assert r.status_code == 200, r.text
                    results.append(r.json())

        threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        server.stop()
    assert len(results) == 6 * 8
    assert sum(r["accepted"] for r in results) == 80             # 40 payments x 2 lines, once
    assert sum(r["duplicates"] for r in results) == 5 * 80
    out = behavior(root, "ingest", "--inbox", "--json")
    rep = json.loads(out.stdout)
    assert (rep["read"], rep["accepted"], rep["duplicates"]) == (80, 80, 0)
    keys = lake_keys(root)
    assert len(keys) == 80 and set(keys.values()) == {1}
    again = json.loads(behavior(root, "ingest", "--inbox", "--json").stdout)
    assert again["ingest_id"] is None and again["read"] == 0


@pytest.mark.slow
def test_kill_9_during_a_stream_loses_no_acknowledged_line_and_duplicates_none(root, tmp_path):
    secret = add_sender(root, "psp")
    server = Server(root, tmp_path / "server.log")
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        with httpx.Client(base_url=server.base, timeout=10) as c:
            i = 0
            while not stop.is_set():
                pid = f"n-{i:05d}"
                body = encode(payment(pid, user=f"u{i % 11:07d}"))
                sent.append(pid)
                try:
                    r = c.post(PATH, content=body, headers=signed("psp", body, secret=secret))
                except httpx.HTTPError:
                    return                      # the server died under this request: not acknowledged
                if r.status_code == 200 and r.json()["accepted"] == 1:
                    acked.append(pid)
                i += 1

    threads = [threading.Thread(target=stream)]
    threads[0].start()
    time.sleep(3)
    server.kill9()
    stop.set()
    threads[0].join()
    assert len(acked) >= 5, "the stream did not get going before the kill"
    out = json.loads(behavior(root, "ingest", "--inbox", "--json").stdout)
    keys = lake_keys(root)
    assert set(keys.values()) == {1}
    assert {(p, 1) for p in acked} <= set(keys)                  # every acknowledged line, once
    assert set(keys) <= {(p, 1) for p in sent}
    assert out["accepted"] == len(keys)
    # the sender retries everything it sent: all duplicates, in the API and in the lake
    server = Server(root, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.base, timeout=30) as c:
            for pid in sent:
                body = encode(payment(pid, user=f"u{int(pid[2:]) % 11:07d}"))
                r = c.post(PATH, content=body, headers=signed("psp", body, secret=secret)).json()
                assert r["accepted"] + r["duplicates"] == 1
                assert r["duplicates"] == 1 or (pid, 1) not in keys
    finally:
        server.stop()
    behavior(root, "ingest", "--inbox")
    keys = lake_keys(root)
    assert set(keys.values()) == {1} and set(keys) == {(p, 1) for p in sent}


def _receive(root: Path, docs: list[dict]) -> dict:
    from api.notify import Receiver
    from behavior.notifications import parse_body

    receipt = Receiver(root).receive(parse_body(encode(docs)), "psp")
    return {"accepted": receipt.accepted, "duplicates": receipt.duplicates, "rejected": receipt.rejected}


def test_ingest_inbox_moves_lines_quarantines_rejections_and_counts_lake_duplicates(root):
    import pyarrow.parquet as pq

    stored = duckdb.connect().execute(
        "SELECT payment_id, line_no, user_id, item_id FROM read_parquet($f, hive_partitioning = false) LIMIT 1",
        {"f": sorted(str(p) for p in (root / "lake" / "payments").rglob("*.parquet"))}).fetchone()
    in_lake = payment(stored[0], user=stored[2], items=(stored[3],))     # a line the lake holds from a file
    in_lake["lines"][0]["line_no"] = stored[1]
    card = payment("n-card")
    card["lines"][0]["category"] = "4111 1111 1111 1111"
    r = _receive(root, [payment("n-1"), payment("n-2", items=("i00001", "i00002")), in_lake, card])
    assert r["accepted"] == 4 and [x["reason"] for x in r["rejected"]] == ["card_number"]
    rep = json.loads(behavior(root, "ingest", "--inbox", "--json").stdout)
    assert (rep["read"], rep["accepted"], rep["duplicates"], rep["quarantined"]) == (4, 3, 1, 1)
    assert lake_keys(root) == Counter({("n-1", 1): 1, ("n-2", 1): 1, ("n-2", 2): 1})
    quarantine = pq.read_table(root / "lake" / "_rejected" / "payments").to_pylist()
    (q,) = [row for row in quarantine if row["source_file"] == "inbox:psp"]
    assert q["reason"] == "card_number" and "4111" not in q["raw"] and "n-card" in q["raw"]
    assert not list((root / "inbox").glob("*.parquet"))       # the batch file is gone
    assert "nothing to move" in behavior(root, "ingest", "--inbox").stdout


def test_forget_purges_the_inbox(root):
    from tests.api.test_notifications import inbox_rows

    class _Home:
        pass

    _receive(root, [payment("n-1", user="u0000003"), payment("n-2", user="u0000004")])
    behavior(root, "forget", "u0000003")
    home = _Home()
    home.root = root
    assert [row[3] for row in inbox_rows(home)] == ["u0000004"]
    for f in (root / "inbox").iterdir():
        assert b"u0000003" not in f.read_bytes(), f.name


@pytest.mark.slow
def test_a_purchase_is_live_on_every_worker_within_a_second(root, tmp_path, timed):
    from behavior.store.keys import create_key

    secret = add_sender(root, "psp")
    key = create_key(root / "api_keys.json", "all", ["profiles:read", "recommendations:read"])
    server = Server(root, tmp_path / "server.log", workers=2)
    user = "u0000012"
    try:
        def get(path: str) -> dict:    # a new connection each time: the kernel spreads them over the workers
            return httpx.get(server.base + path, headers={"X-API-Key": key}, timeout=10).json()

        recs = [x["item_id"] for x in get(f"/v1/users/{user}/recommendations?n=10")["items"]]
        item = recs[0]
        body = encode(payment("n-live", user=user, items=(item,)))
        with timed():
            r = httpx.post(server.base + PATH, content=body, headers=signed("psp", body, secret=secret), timeout=10)
            assert r.json()["accepted"] == 1
            time.sleep(1.0)
            for _ in range(30):
                profile = get(f"/v1/users/{user}/profile")
                assert profile["recency_days"] < 1 and profile["live_since"]["items"] == [item]
                after = get(f"/v1/users/{user}/recommendations?n=10&exclude_purchased=true")["items"]
                after = [x["item_id"] for x in after]
                assert item not in after
    finally:
        server.stop()


@pytest.mark.slow
def test_the_next_run_holds_the_live_lines_and_drops_them_from_the_live_state(root, timed):
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from behavior.store.keys import create_key
    from api.main import create_app
    from api.settings import Settings

    key = create_key(root / "api_keys.json", "all", ["profiles:read"])
    user = "u0000021"
    app = create_app(Settings(data_dir=root, reload_interval_s=0.2, rate_limit_per_s=0))
    with TestClient(app) as c:
        before = c.get(f"/v1/users/{user}/profile", headers={"X-API-Key": key}).json()
        last = duckdb.connect().execute("SELECT max(paid_at) FROM read_parquet($f, hive_partitioning = false)", {
            "f": sorted(str(p) for p in (root / "lake" / "payments").rglob("*.parquet"))}).fetchone()[0]
        # paid an hour after the lake's last payment: the run's default as_of (the next day) takes it
        with timed():
            _receive(root, [payment("n-run", user=user, amount="30.00", paid_at=last + timedelta(hours=1))])
            deadline = time.monotonic() + 1
            while not (live := c.get(f"/v1/users/{user}/profile", headers={"X-API-Key": key}).json())["live_since"]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        rep = json.loads(behavior(root, "run", "--json").stdout)   # not timed: beside the other worker's tests
        assert rep["inbox"]["accepted"] == 1
        with timed():
            deadline = time.monotonic() + 10
            while (now := c.get(f"/v1/users/{user}/profile", headers={"X-API-Key": key}).json())["live_since"]:
                assert time.monotonic() < deadline, "the new bundle did not replace the live state"
                time.sleep(0.1)
    assert now["n_payments"] == before["n_payments"] + 1 == live["n_payments"]
    assert now["last_purchase_at"][:19] == live["last_purchase_at"][:19]
    # the next move prunes the lines the active bundle holds
    assert json.loads(behavior(root, "ingest", "--inbox", "--json").stdout)["pruned"] == 1


@pytest.mark.timing
def test_a_running_promotion_is_watched_live_by_arm(root, tmp_path):
    import warnings
    from datetime import datetime, timezone

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
        from fastapi.testclient import TestClient

    from behavior.store.keys import create_key
    from api.main import create_app
    from api.settings import Settings

    now = datetime.now(timezone.utc)
    # a two-week promotion in its third day: its end lies days ahead, and it is in the lake while it runs
    (tmp_path / "promotions.csv").write_text(
        "promotion_id,name,starts_at,ends_at,target,cost_per_redemption\n"
        f"promo-live,Live test,{(now - timedelta(days=2)).isoformat()},{(now + timedelta(days=12)).isoformat()},any,1\n")
    users = [f"u{i:07d}" for i in range(1, 41)]
    (tmp_path / "assignments.csv").write_text("promotion_id,user_id,group\n" + "".join(
        f"promo-live,{u},{'treatment' if i % 2 else 'control'}\n" for i, u in enumerate(users)))
    promos = json.loads(behavior(root, "ingest", str(tmp_path / "promotions.csv"), "--table", "promotions",
                                 "--json").stdout)
    assert promos["accepted"] == 1, promos
    behavior(root, "ingest", str(tmp_path / "assignments.csv"), "--table", "assignments")
    key = create_key(root / "api_keys.json", "promo", ["promotions:target"])
    with TestClient(create_app(Settings(data_dir=root, reload_interval_s=0, rate_limit_per_s=0))) as c:
        def live() -> dict:
            r = c.get("/v1/promotions/promo-live/live", headers={"X-API-Key": key})
            assert r.status_code == 200, r.text
            return r.json()

        before = live()
        assert before["running"] and before["arms"]["treatment"]["users"] == 20
        assert before["arms"]["treatment"]["conversions"] == before["arms"]["control"]["conversions"] == 0
        treated = [u for i, u in enumerate(users) if i % 2][:12]
        _receive(root, [payment(f"n-promo-{u}", user=u, amount="10.00", promotion_id="promo-live") for u in treated]
                 + [payment("n-promo-c", user=users[0], amount="4.00")])
        deadline = time.monotonic() + 1
        while (after := live())["live_lines"] < 13:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert after["arms"]["treatment"]["conversions"] == 12 and after["arms"]["treatment"]["revenue"] == 120.0
        assert after["arms"]["control"]["conversions"] == 1
        conv = after["conversion"]
        assert conv["anytime_valid"] and conv["diff"] == pytest.approx(12 / 20 - 1 / 20)
        assert conv["ci"][0] < conv["diff"] < conv["ci"][1]
        assert c.get("/v1/promotions/nope/live", headers={"X-API-Key": key}).status_code == 404
    # moved into the lake, each line still counted once
    behavior(root, "ingest", "--inbox")
    with TestClient(create_app(Settings(data_dir=root, reload_interval_s=0, rate_limit_per_s=0))) as c:
        time.sleep(0.3)
        moved = c.get("/v1/promotions/promo-live/live", headers={"X-API-Key": key}).json()
        assert moved["arms"] == after["arms"] and moved["live_lines"] == 0


@pytest.mark.slow
def test_behavior_notify_signs_sends_and_retries_until_the_api_is_up(root, tmp_path):
    behavior(root, "senders", "add", "shop")
    export = tmp_path / "export.csv"
    export.write_text("payment_id,line_no,user_id,item_id,amount,paid_at,currency\n"
                      "n-a,1,u0000001,i00001,10.00,2026-12-01T10:00:00Z,EUR\n"
                      "n-a,2,u0000001,i00002,5.00,2026-12-01T10:00:00Z,EUR\n"
                      "n-b,1,u0000002,i00003,7.50,2026-12-01T11:00:00Z,EUR\n"
                      "n-c,1,u0000003,4111111111111111,1.00,2026-12-01T12:00:00Z,EUR\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(root), "notify",
           str(export), "--sender", "shop", "--url", url, "--batch", "2"]
    # the API is not up yet: the port takes the sender's first connection and drops it, so its
    # first request fails in transit (however slowly the sender starts), and it backs off and retries
    with socket.socket() as early:
        early.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        early.bind(("127.0.0.1", port))
        early.listen()
        early.settimeout(120)
        sending = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        early.accept()[0].close()
    server = Server(root, tmp_path / "server.log", port=port)
    try:
        out, err = sending.communicate(timeout=120)
        assert sending.returncode == 0, err
        assert "3 payments in 2 requests: accepted 3 lines, duplicates 0, rejected 1 (1 card_number)" in out
        assert "retries" in out
        again = behavior(root, "notify", str(export), "--sender", "shop", "--url", url)
        assert "accepted 0 lines, duplicates 3" in again.stdout
        wrong = tmp_path / "wrong.secret"
        wrong.write_text("ab" * 32)
        bad = behavior(root, "notify", str(export), "--sender", "shop", "--url", url, "--secret-file", str(wrong),
                       check=False)
        assert bad.returncode == 2 and "401" in bad.stderr
    finally:
        server.stop()
    assert lake_keys(root) == Counter()   # not in the lake before ingest --inbox
    behavior(root, "ingest", "--inbox")
    assert lake_keys(root) == Counter({("n-a", 1): 1, ("n-a", 2): 1, ("n-b", 1): 1})


@pytest.mark.slow
def test_the_demos_live_loop_shows_recommendations_change(root, tmp_path):
    from behavior.store.keys import create_key
    from behavior.store.datahome import DataHome
    from pipelines.notify_demo import live_loop

    key = create_key(root / "api_keys.json", "demo", ["recommendations:read", "profiles:read"])
    said: list[str] = []
    server = Server(root, tmp_path / "server.log")
    try:
        got = live_loop(DataHome(root), server.base, key, "u0000030", said.append)
    finally:
        server.stop()
    assert got["live_since"]["payments"] == 3 and sorted(got["live_since"]["items"]) == sorted(got["before"][:3])
    assert got["after"] != got["before"]
    assert any("a second later" in line for line in said)
