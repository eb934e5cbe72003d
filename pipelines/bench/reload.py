"""Reload under load (a case of `behavior bench api`): request latency while the server swaps
in newly published bundles.

A real server (`api.server.serve`, one uvicorn worker, polling CURRENT every
`POLL_S`) is loaded with GET recommendations (or GET profile when the bundle has no
recommender) by an asyncio + httpx client on `connections` connections (4 by default: on two
cores a Python client with more queues requests itself), while this process
publishes copies of the active bundle (a new folder, then CURRENT replaced) one after the
other. Each request's start time and latency is kept; a request counts as "during a reload"
when it started between CURRENT's replacement and half a second after the server was first
seen serving the new version (GET /v1/model, polled every 10 ms). Target: p99 < 50 ms during a reload,
and no failed request.
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import numpy as np

from behavior.store.bundle import copy_bundle, read_manifest, set_current
from behavior.store.datahome import DataHome
from pipelines.bench.server import bench_key, ensure_bundle, request_ids, server

RELOAD_TARGET = ("p99 < 50 ms during a reload, no error", lambda r: r["reload_p99_ms"] < 50 and r["errors"] == 0)
POLL_S = 0.5
AFTER_SWAP_S = 0.5


def publish_copy(home: DataHome, source: str, tag: str, later_by_s: float) -> str:
    """A copy of bundle `source` published as a new version (written, then CURRENT replaced);
    returns the version."""
    created = datetime.fromisoformat(read_manifest(home.bundles / source)["created_at"]) + timedelta(seconds=later_by_s)
    version = f"{created.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}-{tag}"
    copy_bundle(home, source, version, created.isoformat(timespec="seconds"))
    set_current(home, version, "bench reload")
    return version


async def _load_and_publish(base: str, key: str, ids: list[str], path: str, connections: int, publish: Callable[[int], str],
                            reloads: int, gap_s: float, progress: Callable[[str], None]
                            ) -> tuple[list[tuple[float, float, bool]], list[tuple[float, float]]]:
    """Requests on `connections` connections while `publish(i)` publishes `reloads` bundles
    `gap_s` apart; ((start, seconds, ok) per request, (published, first served) per reload).
    The client is one event loop: a thread of its own polling the server would take the GIL
    from it and lengthen the very latencies measured."""
    samples: list[tuple[float, float, bool]] = []
    swaps: list[tuple[float, float]] = []
    done = asyncio.Event()
    rng = random.Random(2)
    limits = httpx.Limits(max_connections=connections + 1, max_keepalive_connections=connections + 1)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=30) as client:
        async def worker() -> None:
            while not done.is_set():
                url = path.replace("{id}", rng.choice(ids))
                t = time.perf_counter()
                try:
                    ok = (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                samples.append((t, time.perf_counter() - t, ok))

        async def control() -> None:
            try:
                await asyncio.sleep(gap_s)
                for i in range(reloads):
                    progress(f"reload under load: publishing bundle {i + 1} of {reloads}")
                    version = await asyncio.to_thread(publish, i)
                    published = time.perf_counter()
                    while (await client.get("/v1/model")).json().get("bundle_version") != version:
                        if time.perf_counter() - published > 60:
                            raise RuntimeError(f"the server did not pick up bundle {version} within 60 s")
                        await asyncio.sleep(0.01)
                    swaps.append((published, time.perf_counter()))
                    await asyncio.sleep(gap_s)
            finally:
                done.set()

        await asyncio.gather(control(), *(worker() for _ in range(connections)))
    return samples, swaps


def _p(latencies: np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(latencies, q)) * 1000, 2) if latencies.size else None


def reload_under_load(data_dir: Path, *, reloads: int = 4, gap_s: float = 3.0, connections: int = 4,
                      users: int = 20_000, progress: Callable[[str], None] = lambda _: None) -> dict:
    """Publish `reloads` bundles `gap_s` apart while the server is under load; the row of the
    benchmark (see the module docstring). The published copies are removed afterwards and
    CURRENT points at the bundle it pointed at before."""
    home = DataHome(Path(data_dir).absolute())
    home.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="behavior-bench-reload-"))
    bundle = ensure_bundle(home, users, progress)
    published: list[str] = []
    try:
        keys_file, key = bench_key(work)
        path, ids = request_ids(bundle)

        def publish(i: int) -> str:
            published.append(publish_copy(home, bundle.name, f"reload{i}", later_by_s=i + 1))
            return published[-1]

        env = {"BEHAVIOR_API_RELOAD_INTERVAL": str(POLL_S)}
        with server(home.root, keys_file, work / "server.log", env=env) as (base, _, _pid):
            with httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:   # warm-up
                for i in range(200):
                    c.get(path.replace("{id}", ids[i % len(ids)]))
            samples, swaps = asyncio.run(_load_and_publish(base, key, ids, path, connections, publish, reloads,
                                                           gap_s, progress))
    finally:
        set_current(home, bundle.name, "bench reload")
        for version in published:
            shutil.rmtree(home.bundles / version, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    windows = [(lo, hi + AFTER_SWAP_S) for lo, hi in swaps]
    starts = np.array([s for s, _, _ in samples])
    lat = np.array([d for _, d, _ in samples])
    during = np.zeros(len(samples), bool)
    for lo, hi in windows:
        during |= (starts >= lo) & (starts <= hi)
    row = {"step": "api reload under load", "bundle": bundle.name, "path": path, "connections": connections,
           "reloads": reloads, "requests": len(samples), "errors": sum(not ok for _, _, ok in samples),
           "requests_during_reloads": int(during.sum()),
           "swap_s": [round(hi - lo, 2) for lo, hi in swaps],
           "reload_p50_ms": _p(lat[during], 50), "reload_p99_ms": _p(lat[during], 99),
           "reload_max_ms": round(float(lat[during].max()) * 1000, 2) if during.any() else None,
           "steady_p99_ms": _p(lat[~during], 99),
           "note": f"bundles published {gap_s:g} s apart, picked up by polling every {POLL_S:g} s; "
                   "'during a reload' = from CURRENT replaced to 0.5 s after the new version is first served",
           "target": RELOAD_TARGET[0]}
    row["met"] = bool(row["reload_p99_ms"] is not None and RELOAD_TARGET[1](row))
    return row
