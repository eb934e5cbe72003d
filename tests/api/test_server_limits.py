"""The limits of the real server (`api.server.serve` in a subprocess on loopback, spoken to with
raw sockets and httpx): request heads past the header limit get a 431 without being buffered,
requests and new connections that do not arrive in time are closed (408), kept-alive
connections are not; and the rate limit of requests without a valid key."""

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pyarrow as pa
import pytest

from behavior.store.keys import SCOPES, create_key
from tests.api.conftest import Home, assert_problem, clone_bundle, point_current
from tests.live_server import free_port, wait_ready

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 1.0
ODD_IDS = ["%2F", "a%41b/%", "50%25 off"]   # escape-like text: only a real server decodes the path once


@contextlib.contextmanager
def running(home, tmp_path, **env: str) -> Iterator[tuple[str, int]]:
    """`serve()` on a free loopback port with these environment variables; yields (base URL, port)."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BEHAVIOR_API_RELOAD_INTERVAL": "0", **env}
    code = (f"from pathlib import Path; from api.server import serve; "
            f"serve(Path({str(home.root)!r}), '127.0.0.1', {port}, access_log=False, log_level='warning')")
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, proc, (tmp_path / "server.log"), timeout=30)
        yield base, port
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def live(published, tmp_path_factory) -> Home:
    """A copy of the published data home whose bundle's first users have escape-like ids."""
    root = tmp_path_factory.mktemp("limits") / "data"
    shutil.copytree(published / "artifacts", root / "artifacts")
    keys = {"all": create_key(root / "api_keys.json", "all", list(SCOPES))}
    home = Home(root, keys)

    def rename(table: pa.Table) -> pa.Table:
        ids = table.column("user_id").to_pylist()
        ids[: len(ODD_IDS)] = ODD_IDS
        return table.set_column(0, "user_id", pa.array(ids, pa.string()))

    clone_bundle(home.bundles, home.active(), "v-odd", profiles=rename)
    point_current(home, "v-odd")
    return home


@pytest.fixture(scope="module")
def server(live, tmp_path_factory):
    """One server for the module, with a 1 s request timeout and the default 64 KiB header limit."""
    with running(live, tmp_path_factory.mktemp("server"), BEHAVIOR_API_REQUEST_TIMEOUT=str(TIMEOUT_S),
                 BEHAVIOR_API_RATE_LIMIT="0") as s:
        yield s


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body) from a kept-alive connection."""
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def read_all(sock: socket.socket, limit_s: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or resets) the connection, and when that was."""
    sock.settimeout(limit_s)
    t0, out = time.monotonic(), b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            out += chunk
    return out, time.monotonic() - t0


def test_a_20_mb_header_is_refused_without_being_read(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent, refused = 0, False
        try:
            while sent < 20 * 2**20:
                sock.sendall(b"a" * 2**16)
                sent += 2**16
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            refused = True
        answer, _ = read_all(sock) if not refused else (b"", 0)
    assert refused or answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert sent < 10 * 2**20   # closed long before the 20 MB were through


def test_a_head_just_over_the_limit_gets_431_and_one_under_is_served(server):
    _, port = server
    for size, status in ((70_000, b"431"), (60_000, b"200")):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
            answer, _ = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 " + status), answer[:200]
    assert b"application/problem+json" in answer or status == b"200"


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /v1/segments/query HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"limit\""])
def test_requests_that_do_not_arrive_in_time_are_closed(server, sent):
    _, port = server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(sent)
        answer, waited = read_all(sock)
    assert TIMEOUT_S * 0.8 <= waited <= TIMEOUT_S + 3, waited
    assert answer.startswith(b"HTTP/1.1 408") if sent else answer == b"", answer[:200]


def test_kept_alive_connections_and_slow_but_timely_requests_are_served(server):
    _, port = server
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for pause in (0, 2 * TIMEOUT_S):        # idle past the request timeout between two requests
            time.sleep(pause)
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            time.sleep(TIMEOUT_S / 2)               # a request that trickles in, but in time
            sock.sendall(b"Host: x\r\n\r\n")
            answer = read_response(sock)
            assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"status":"ok"}'), answer[:200]
        # the limits hold for the next request on the same connection too
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
        answer, _ = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]


def test_escape_like_ids_reach_the_path_forms(server, live):
    base, _ = server
    with httpx.Client(base_url=base, headers=live.headers(), timeout=10) as c:
        for user_id in ODD_IDS:
            encoded = quote(user_id, safe="")
            r = c.get(f"/v1/users/{encoded}/profile")
            assert r.status_code == 200 and r.json()["user_id"] == user_id, (user_id, r.text)
            r = c.get(f"/v1/users/{encoded}/recommendations", params={"n": 2})
            assert r.status_code == 200 and r.json()["user_id"] == user_id, (user_id, r.text)
        r = c.delete(f"/v1/admin/users/{quote(ODD_IDS[0], safe='')}")
        assert r.status_code == 200 and r.json()["user_id"] == ODD_IDS[0]
        assert c.get("/v1/users/profile", params={"user_id": ODD_IDS[0]}).status_code == 404


def test_requests_without_a_valid_key_are_rate_limited_by_address(make_client, home):
    with make_client(rate_limit_per_s=2, rate_limit_burst=3) as client:
        for _ in range(3):
            assert_problem(client.get("/v1/model", headers={"X-API-Key": "bk_guess"}), 401)
        assert_problem(client.get("/v1/model"), 429)   # no key counts too
        # checked before the key: a right guess from this address gets the 429 as well
        r = client.get("/v1/model", headers=home.headers())
        assert "without a valid API key" in assert_problem(r, 429)["detail"] and r.headers["Retry-After"] == "1"
        time.sleep(0.6)   # 1.2 tokens back at 2/s
        # a valid key does not take the address's tokens (after one it would have none left)
        for _ in range(3):
            assert client.get("/v1/model", headers=home.headers()).status_code == 200
