"""What the API benchmarks share: a data home with an active bundle, a keys file with a bench
key, and `behavior serve` in a process of its own on a free loopback port."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from behavior.store.bundle import PROFILES, RECOMMENDER, read_current
from behavior.store.datahome import DataHome

SCOPES = ["recommendations:read", "profiles:read", "segments:read", "segments:export"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_key(work: Path) -> tuple[Path, str]:
    """A keys file with one key for the benchmark (the API's own file format: SHA-256 only)."""
    import hashlib
    import secrets

    key = "bk_bench_" + secrets.token_urlsafe(24)
    path = work / "bench_keys.json"
    path.write_text(json.dumps({"keys": [{"key_id": "bench", "sha256": hashlib.sha256(key.encode()).hexdigest(),
                                          "scopes": SCOPES}]}))
    return path, key


def loop_http() -> tuple[str, str]:
    """uvicorn's event loop and HTTP parser, as `behavior serve` picks them (api.server): the
    compiled uvloop and httptools when installed (dependencies of the project)."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, http


@contextmanager
def server(data_dir: Path, keys_file: Path, log: Path, startup_timeout_s: float = 300,
            env: dict[str, str] | None = None, cpus: set[int] | None = None) -> Iterator[tuple[str, float, int]]:
    """A uvicorn server (one worker, `loop_http()`) on a free loopback port, with `env` over its
    environment and, if given, bound to the CPUs `cpus`; yields (base URL, seconds until ready, its pid)."""
    port = free_port()
    env = {**os.environ, "BEHAVIOR_API_KEYS_FILE": str(keys_file), "BEHAVIOR_API_RATE_LIMIT": "0",
           "BEHAVIOR_API_RELOAD_INTERVAL": "0", "BEHAVIOR_API_KEYS": "", **(env or {})}
    loop, http = loop_http()
    code = ("from pathlib import Path; from api.server import serve; "
            f"serve(Path({str(data_dir)!r}), '127.0.0.1', {port}, access_log=False, log_level='warning', "
            f"loop={loop!r}, http={http!r})")
    out = open(log, "w")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=out, stderr=subprocess.STDOUT,
                            cwd=log.parent, preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > startup_timeout_s:
                raise RuntimeError("the API server did not start:\n" + log.read_text()[-2000:])
            time.sleep(0.1)
        yield base, time.perf_counter() - t0, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()


def ensure_bundle(home: DataHome, users: int, progress: Callable[[str], None]) -> Path:
    """The active bundle of `home`; one is made (synth -> ingest -> run) if there is none."""
    active = read_current(home)
    if active is not None:
        return home.bundles / active
    from pipelines.config import Config
    from pipelines.ingest import IngestOptions, ingest
    from pipelines.runner import run_pipeline
    from pipelines.synth_files import write_synth

    progress(f"making a bundle from {users:,} synthetic users")
    synth = home.root / "synth"
    write_synth(synth, users=users, months=12, seed=0)
    ingest(home, [synth], IngestOptions())
    report = run_pipeline(home, Config())
    return home.bundles / report["bundle_version"]


def request_ids(bundle: Path) -> tuple[str, list[str]]:
    """(path, ids): GET recommendations for random known users and 1 in 5 unknown ones (the
    fallback), or GET profile when the bundle has no recommender."""
    known = pq.read_table(bundle / PROFILES.file, columns=["user_id"]).column("user_id").to_pylist()
    sample = random.Random(0).sample(known, min(len(known), 5000))
    if (bundle / RECOMMENDER.file).exists():
        return "/v1/users/{id}/recommendations?n=10", sample + [f"unknown-{i:05d}" for i in range(len(sample) // 4)]
    return "/v1/users/{id}/profile", sample
