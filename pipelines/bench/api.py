"""`behavior bench api`: the HTTP API under load, on one uvicorn worker over loopback.

- GET recommendations (random known and unknown users) driven by wrk when it is installed,
  else by a Python asyncio + httpx load generator (which, on 2 cores, is often the limit
  itself: the row says which one ran). When the bundle has no recommender, GET profile is
  measured instead and the row says so. Target: >= 1,500 requests/s with p99 < 25 ms.
- A segment query (filter, sort, total count, first page) over a bundle of 1M profiles made
  here by tiling the profiles of a real bundle; the median of several runs. Target: < 100 ms.
  The same server also times a CSV export of the query and the 1M-profile bundle load.
- Memory: the server's resident memory (Linux /proc) before and after 100k more
  recommendation requests, once the throughput run has warmed it up. Target: flat (< 20 MB).
- Reload under load (`pipelines.bench.reload`): the latency of the same requests while new
  bundles are published and picked up. Target: p99 < 50 ms during a reload, no error.

The API runs in its own process (`api.server.serve`) and is reached over HTTP only: the
pipelines and the API meet in the bundle format, not in imports.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from behavior.store.bundle import PROFILES, REPORT, read_current, read_manifest, set_current, write_bundle
from behavior.store.datahome import DataHome
from pipelines.bench.reload import reload_under_load
from pipelines.bench.server import bench_key, ensure_bundle, loop_http, request_ids, server

REC_TARGET = (">= 1,500 req/s and p99 < 25 ms", lambda r: r["requests_per_s"] >= 1500 and r["p99_ms"] < 25)
QUERY_TARGET = ("< 100 ms at 1M profiles", lambda r: r["profiles"] < 1_000_000 or r["median_ms"] < 100)
QUERY = {"filter": {"all": [{"field": "segment", "op": "in", "value": ["Champions", "Loyal", "Potential Loyalist"]},
                            {"field": "p_alive", "op": "ge", "value": 0.5}]},
         "sort": [{"field": "clv", "desc": True}], "limit": 100}
def make_profiles_bundle(source: Path, home: DataHome, profiles: int) -> Path:
    """A bundle in `home` whose profiles are those of bundle `source` tiled to `profiles` rows
    (user ids renamed), with a valid manifest; CURRENT points at it."""
    base = pq.read_table(source / PROFILES.file)
    take = np.arange(profiles) % base.num_rows
    table = base.take(pa.array(take))
    ids = pa.array(np.char.add("b", np.char.zfill(np.arange(profiles).astype(str), 8)))
    table = table.set_column(table.column_names.index("user_id"), "user_id", ids)
    created = datetime.now(timezone.utc)
    version = created.strftime("%Y%m%dT%H%M%SZ") + f"-bench{profiles // 1000}k"
    shutil.rmtree(home.bundles / version, ignore_errors=True)
    folder = write_bundle(home, version, {PROFILES: table, REPORT: json.loads((source / REPORT.file).read_text())},
                          {"as_of": read_manifest(source)["as_of"], "created_at": created.isoformat(timespec="seconds"),
                           "code_version": "bench"})
    set_current(home, version, "bench api")
    return folder


# ------------------------------------------------------------------ load generators

_WRK_SCRIPT = """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
local headers = {["X-API-Key"] = "%(key)s"}
math.randomseed(%(seed)d)
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", string.format("%(path)s", id), headers)
end
"""


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[unit]


def parse_wrk(text: str) -> dict:
    """requests, requests_per_s, p50_ms, p99_ms and errors (non-2xx answers and socket errors)
    of wrk's output with `--latency`."""
    lat = {p: _ms(v, u) for p, v, u in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(map(int, sock.groups())) if sock else 0)
    return {"generator": "wrk", "requests": requests,
            "requests_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), 1),
            "p50_ms": round(lat["50"], 2), "p99_ms": round(lat["99"], 2), "errors": errors}


def _run_wrk(base: str, key: str, ids: list[str], path: str, duration_s: float, connections: int,
             work: Path) -> dict:
    (work / "ids.txt").write_text("\n".join(ids) + "\n")
    script = work / "bench.lua"
    script.write_text(_WRK_SCRIPT % {"ids": work / "ids.txt", "key": key, "seed": 1,
                                     "path": path.replace("{id}", "%s")})
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--latency", "-s", str(script), base]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 60)
    if out.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.stderr[-500:]}")
    return parse_wrk(out.stdout)


async def _python_load(base: str, key: str, ids: list[str], path: str, duration_s: float,
                       connections: int) -> dict:
    latencies: list[float] = []
    errors = 0
    rng = random.Random(1)
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, limits=limits, timeout=10) as client:
        deadline = time.perf_counter() + duration_s

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                url = path.replace("{id}", rng.choice(ids))
                t = time.perf_counter()
                try:
                    r = await client.get(url)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t)
                errors += not ok

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"generator": "python (asyncio + httpx; on 2 cores it competes with the server)",
            "requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "errors": errors}


def _load(base: str, key: str, ids: list[str], path: str, duration_s: float, connections: int, work: Path) -> dict:
    # a short warm-up so that first-call costs (imports, caches) are not measured
    with httpx.Client(base_url=base, headers={"X-API-Key": key}) as c:
        for i in range(200):
            c.get(path.replace("{id}", ids[i % len(ids)]))
    if shutil.which("wrk"):
        return _run_wrk(base, key, ids, path, duration_s, connections, work)
    return asyncio.run(_python_load(base, key, ids, path, duration_s, connections))


# ------------------------------------------------------------------ the benchmark

MEMORY_REQUESTS = 100_000
MEMORY_TARGET = ("RSS grows < 20 MB over 100k requests", lambda r: r["rss_growth_mb"] < 20)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc (Linux only)")


def _memory_over(base: str, key: str, ids: list[str], path: str, connections: int, work: Path, pid: int,
                 warm: dict, progress: Callable[[str], None]) -> dict:
    """Server RSS before and after about MEMORY_REQUESTS more requests (after the throughput run
    warmed it up): a leak per request shows as growth."""
    rate = max(float(warm.get("requests_per_s") or 500.0), 100.0)
    seconds = MEMORY_REQUESTS / rate * 1.1
    progress(f"memory: about {MEMORY_REQUESTS:,} requests ({seconds:.0f} s)")
    before = _rss_mb(pid)
    done = errors = 0
    while done < MEMORY_REQUESTS:          # a busy machine serves fewer per second: go on until 100k
        res = _load(base, key, ids, path, max(seconds * (MEMORY_REQUESTS - done) / MEMORY_REQUESTS, 1.0),
                    connections, work)
        done += int(res.get("requests") or 0)
        errors += int(res.get("errors") or 0)
    after = _rss_mb(pid)
    row = {"step": "api memory over 100k requests", "requests": done,
           "rss_before_mb": round(before, 1), "rss_after_mb": round(after, 1),
           "rss_growth_mb": round(after - before, 1), "errors": errors, "target": MEMORY_TARGET[0]}
    row["met"] = bool(MEMORY_TARGET[1](row)) and errors == 0
    return row


def serve_and_load(data_dir: Path, duration_s: float, connections: int = 32) -> dict:
    """Start the API on the data home's active bundle, time its start-up (checksums, load,
    index) and load GET recommendations for `duration_s`: {"startup_s", "requests_per_s",
    "p99_ms", ..., "rss_mb" (the server's, after the load)}. For `behavior bench scale`."""
    home = DataHome(Path(data_dir).absolute())
    work = Path(tempfile.mkdtemp(prefix="behavior-bench-api-"))
    try:
        keys_file, key = bench_key(work)
        path, ids = request_ids(home.bundles / read_current(home))
        with server(home.root, keys_file, work / "server.log") as (base, ready_s, pid):
            res = _load(base, key, ids, path, duration_s, connections, work)
            return {"startup_s": round(ready_s, 2), "path": path, **res, "rss_mb": round(_rss_mb(pid), 1)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_api_bench(data_dir: Path, duration_s: float, connections: int, profiles: int = 1_000_000, *,
                  query_runs: int = 7, users: int = 20_000,
                  progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Measure the API (see the module docstring). `data_dir` is a data home: its active
    bundle is served for the load test (one is made from `users` synthetic users if it has
    none); the 1M-profile bundle is written under `data_dir/bench-api-<profiles>`."""
    home = DataHome(Path(data_dir).absolute())
    home.root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="behavior-bench-api-"))
    rows: list[dict] = []
    try:
        keys_file, key = bench_key(work)
        bundle = ensure_bundle(home, users, progress)
        known = pq.read_table(bundle / PROFILES.file, columns=["user_id"]).num_rows
        path, ids = request_ids(bundle)
        if "recommendations" in path:
            step, note = "api recommendations", "random users, 1 in 5 unknown (fallback)"
        else:
            step = "api profile"
            note = "no recommender.npz in the bundle: GET profile measured instead of recommendations"
        progress(f"{step}: {connections} connections for {duration_s:g} s")
        with server(home.root, keys_file, work / "server.log") as (base, _, pid):
            res = _load(base, key, ids, path, duration_s, connections, work)
            memory = _memory_over(base, key, ids, path, connections, work, pid, res, progress)
        row = {"step": step, "bundle": bundle.name, "profiles": known, "connections": connections,
               "seconds": duration_s, "server": "uvicorn, 1 worker, {} + {}".format(*loop_http()), **res,
               "note": note,
               "target": REC_TARGET[0], "met": bool(REC_TARGET[1](res))}
        rows.append(row)
        rows.append(memory)
        rows.append(reload_under_load(home.root, users=users, progress=progress))

        big = DataHome(home.root / f"bench-api-{profiles}")
        progress(f"making a bundle of {profiles:,} profiles")
        make_profiles_bundle(bundle, big, profiles)
        progress(f"segment query over {profiles:,} profiles, {query_runs} runs")
        with server(big.root, keys_file, work / "server-1m.log") as (base, ready_s, _):
            rows.append({"step": "api bundle load", "profiles": profiles, "seconds": round(ready_s, 2),
                         "note": "server start to ready: verify checksums, read, index"})
            with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=120) as c:
                times, total = [], None
                for i in range(query_runs + 1):
                    t = time.perf_counter()
                    r = c.post("/v1/segments/query", json=QUERY)
                    elapsed = time.perf_counter() - t
                    r.raise_for_status()
                    total = r.json()["total"]
                    if i:  # the first run warms up
                        times.append(elapsed)
                q = {"median_ms": round(statistics.median(times) * 1000, 1),
                     "min_ms": round(min(times) * 1000, 1), "max_ms": round(max(times) * 1000, 1)}
                rows.append({"step": "api segment query", "profiles": profiles, "runs": len(times), **q,
                             "matches": total, "note": "filter in + ge, sort by clv desc, total count, 100 rows",
                             "target": QUERY_TARGET[0], "met": bool(QUERY_TARGET[1]({"profiles": profiles, **q}))})
                t = time.perf_counter()
                with c.stream("POST", "/v1/segments/query", json={**QUERY, "limit": None},
                              headers={"Accept": "text/csv"}) as r:
                    r.raise_for_status()
                    lines = sum(chunk.count(b"\n") for chunk in r.iter_bytes())
                elapsed = time.perf_counter() - t
                rows.append({"step": "api segment export csv", "profiles": profiles, "rows": lines - 1,
                             "seconds": round(elapsed, 2), "rows_per_s": int((lines - 1) / elapsed)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows


def format_api_table(rows: list[dict]) -> str:
    """A Markdown summary (pasted into the README)."""
    out = []
    for r in rows:
        if "requests_per_s" in r:
            out.append(f"| {r['step']} | {r['requests_per_s']:,.0f} req/s, p50 {r['p50_ms']:.1f} ms, "
                       f"p99 {r['p99_ms']:.1f} ms, {r['errors']} errors ({r['generator']}; {r['server']}; "
                       f"{r['connections']} connections, {r['profiles']:,} profiles) | {r['target']} | "
                       f"{'yes' if r['met'] else 'no'} |")
        elif "median_ms" in r:
            out.append(f"| {r['step']} | median {r['median_ms']:.1f} ms of {r['runs']} runs "
                       f"(min {r['min_ms']:.1f}, max {r['max_ms']:.1f}) at {r['profiles']:,} profiles, "
                       f"{r['matches']:,} matches | {r['target']} | {'yes' if r['met'] else 'no'} |")
        elif "reload_p99_ms" in r:
            out.append(f"| {r['step']} | p99 {r['reload_p99_ms']:.1f} ms (p50 {r['reload_p50_ms']:.1f}, max "
                       f"{r['reload_max_ms']:.1f}) over {r['requests_during_reloads']:,} requests during {r['reloads']} "
                       f"reloads, {r['steady_p99_ms']:.1f} ms between them; {r['errors']} errors "
                       f"({r['connections']} connections) | {r['target']} | {'yes' if r['met'] else 'no'} |")
        elif "rss_growth_mb" in r:
            out.append(f"| {r['step']} | RSS {r['rss_before_mb']:,.1f} MB before, {r['rss_after_mb']:,.1f} MB after "
                       f"{r['requests']:,} requests, {r['errors']} errors | {r['target']} | "
                       f"{'yes' if r['met'] else 'no'} |")
        elif "rows_per_s" in r:
            out.append(f"| {r['step']} | {r['rows']:,} rows in {r['seconds']:.2f} s ({r['rows_per_s']:,} rows/s) | | |")
        else:
            out.append(f"| {r['step']} | {r['seconds']:.2f} s at {r['profiles']:,} profiles | | |")
    notes = [f"- {r['step']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(["| step | measured | target | met |", "|---|---|---|---|", *out, "",
                      f"{os.cpu_count()} cores, one uvicorn worker, load generator on the same machine.", *notes])
