"""`behavior bench notify`: signed payment notifications under load, one uvicorn worker on loopback.

- Single-payment notifications offered at a steady 2,100/s from 32 connections, with GET
  recommendations paced at 500 requests/s beside them on their own connections. Targets: the
  server keeps up (>= 2,000 notifications/s) with p99 < 50 ms; the GETs' p99 < 25 ms. The
  load is paced, as a payment platform's is: a p99 measured at saturation only measures the
  queue a closed loop of 32 connections builds.
- The same notifications as fast as the server answers them (32 connections, no GETs): the
  capacity, shown without a target.
- Batches of 1,000 one-line payments from 4 connections. Target: >= 20,000 lines/s.

Every acknowledged notification is durable (fsync of the inbox's WAL) before its 200. Every
body is a distinct payment, signed before the clock starts (HMAC-SHA256 over `<t>.<body>`
with a fresh `t`), so the load generator only sends. The generator is wrk (`apt-get install
wrk`) when installed, else Python (asyncio + httpx), which costs far more CPU per request.
With two or more CPUs the server is bound to one and the generator to another, so that they
do not take each other's time. Each measurement is repeated and its median reported, with
the server's peak resident memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from behavior.store.inbox import inbox_path
from behavior.store.senders import add_sender, read_senders, sign_hmac, signature_header
from behavior.store.bundle import PROFILES
from behavior.store.datahome import DataHome
from pipelines.bench.api import parse_wrk
from pipelines.bench.server import bench_key, ensure_bundle, server

SINGLE_TARGET = (">= 2,000 notifications/s, p99 < 50 ms", lambda r: r["per_s"] >= 2000 and r["p99_ms"] < 50)
BESIDE_TARGET = ("p99 < 25 ms at 500 req/s", lambda r: r["p99_ms"] < 25)
BATCH_TARGET = (">= 20,000 lines/s", lambda r: r["lines_per_s"] >= 20_000)
PATH = "/v1/notifications/payments"
SENDER = "bench"
GET_RATE = 500.0
# Offered a little above the target, so that "keeps up with 2,000/s" is what is measured.
SINGLE_RATE = 2100.0
GET_CONNECTIONS = 64   # enough that the pace holds while answers take up to 128 ms
BATCH_LINES = 1000
BATCH_CONNECTIONS = 4
# Bodies signed per run: more than the fastest rate seen times the run's length, so that no
# body is sent twice (a duplicate is answered without a write and would flatter the rate).
SINGLE_POOL_PER_S = 6000
BATCH_POOL_PER_S = 80   # 40 ran out in a 1 s run on a 300-user bundle (the test)
KNOWN_EVERY = 10    # one single notification in ten is of a user of the bundle
INSTALL_WRK = "install wrk for figures not bounded by the load generator: `apt-get install wrk` (Debian, Ubuntu) or `brew install wrk`"

_WRK_POOL = """
local pool, n = {}, 0
for line in io.lines("%(pool)s") do
  local tab = line:find("\\t", 1, true)
  n = n + 1
  pool[n] = wrk.format("POST", "%(path)s", {["Content-Type"] = "application/json",
    ["Behavior-Sender"] = "%(sender)s", ["Behavior-Signature"] = line:sub(1, tab - 1)}, line:sub(tab + 1))
end
local i = 0
request = function()
  i = i %% n + 1
  return pool[i]
end
"""

# Pacing: each request takes the next slot of a fixed schedule (`rate` per second, shared by
# the thread's connections), so the rate holds while the answers are fast; wrk measures each
# request from when it is sent.
_WRK_PACE = """
local ffi = require("ffi")
ffi.cdef[[typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval, start, k = 1000 / %(rate)f, nil, 0
delay = function()
  start = start or now_ms()
  k = k + 1
  local wait = start + k * interval - now_ms()
  if wait < 1 then return 0 end
  return math.floor(wait)
end
"""

_WRK_PACED_GETS = _WRK_PACE + """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
local headers = {["X-API-Key"] = "%(key)s"}
local j = 0
request = function()
  j = j %% #ids + 1
  return wrk.format("GET", "/v1/users/" .. ids[j] .. "/recommendations?n=10", headers)
end
"""


def _payments(n: int, users: list[str], items: list[str], tag: str, known_every: int = 0) -> list[dict]:
    """`n` one-line payments of new users, every `known_every`-th of a user of `users` instead
    (0: none), so that a user of the bundle gets a few live purchases, as in a day of
    notifications, and not hundreds."""
    paid = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    return [{"payment_id": f"bench-{tag}-{i}",
             "user_id": users[i % len(users)] if known_every and i % known_every == 0 else f"new-{tag}-{i}",
             "merchant_id": "m001",
             "paid_at": paid, "status": "success", "currency": "EUR", "channel": "app", "promotion_id": None,
             "lines": [{"line_no": 1, "item_id": items[i % len(items)], "category": None, "quantity": 1,
                        "amount": "9.90"}]} for i in range(n)]


def _signed(secret: bytes, docs: list) -> list[tuple[str, bytes]]:
    """(Behavior-Signature header, body) of each document, signed now."""
    t = int(time.time())
    out = []
    for doc in docs:
        body = json.dumps(doc, separators=(",", ":")).encode()
        out.append((signature_header(t, sign_hmac(secret, t, body)), body))
    return out


def _pct(values: list[float], q: int) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1], 2) if len(values) >= 2 else float("nan")


def _cpus() -> tuple[set[int], set[int]] | None:
    """(the server's CPU, the load generator's CPUs) when there are two or more to split."""
    have = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ({have[0]}, set(have[1:])) if len(have) >= 2 else None


def _inbox_lines(data_dir: Path) -> int:
    import sqlite3

    with sqlite3.connect(inbox_path(data_dir)) as con:
        return con.execute("SELECT count(*) FROM keys").fetchone()[0]


def _cpu_s(pid: int) -> float:
    """CPU seconds process `pid` has used so far (user and system, all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_mb(pid: int) -> float:
    """The peak resident memory of process `pid` so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


# ------------------------------------------------------------------ wrk

def _wrk(work: Path, name: str, script: str, base: str, connections: int, duration_s: float,
         cpus: set[int] | None) -> subprocess.Popen:
    path = work / f"{name}.lua"
    path.write_text(script)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s", "--timeout", "30s", "--latency",
           "-s", str(path), base]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)


def _wrk_result(proc: subprocess.Popen, duration_s: float, pool: Path | None = None) -> dict:
    out, err = proc.communicate(timeout=duration_s + 120)
    if pool is not None:
        pool.unlink()   # up to a few hundred MB of signed bodies
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {err[-500:]}")
    return parse_wrk(out)


def _write_pool(work: Path, name: str, signed: list[tuple[str, bytes]]) -> Path:
    path = work / f"{name}.txt"
    with open(path, "wb") as fh:
        for header, body in signed:
            fh.write(header.encode() + b"\t" + body + b"\n")
    return path


def _wrk_single(work: Path, base: str, signed: list, duration_s: float, connections: int,
                cpus: set[int] | None, rate: float | None = None,
                beside: tuple[str, list[str]] | None = None) -> tuple[dict, dict | None]:
    """Single notifications from `connections` connections, paced at `rate` per second (None:
    as fast as answered), with paced GET recommendations beside them when `beside` is
    (API key, user ids); (the notifications' result, the GETs' result or None)."""
    pool = _write_pool(work, "single", signed)
    gets = None
    if beside is not None:
        key, users = beside
        (work / "users.txt").write_text("\n".join(users) + "\n")
        gets = _wrk(work, "paced", _WRK_PACED_GETS % {"ids": work / "users.txt", "key": key, "rate": GET_RATE},
                    base, GET_CONNECTIONS, duration_s, cpus)
    script = (_WRK_PACE + _WRK_POOL) if rate else _WRK_POOL
    posts = _wrk(work, "single", script % {"pool": pool, "path": PATH, "sender": SENDER, "rate": rate or 0.0},
                 base, connections, duration_s, cpus)
    return _wrk_result(posts, duration_s, pool), (_wrk_result(gets, duration_s) if gets else None)


def _wrk_batches(work: Path, base: str, signed: list, duration_s: float, cpus: set[int] | None) -> dict:
    pool = _write_pool(work, "batches", signed)
    return _wrk_result(_wrk(work, "batches", _WRK_POOL % {"pool": pool, "path": PATH, "sender": SENDER}, base,
                            BATCH_CONNECTIONS, duration_s, cpus), duration_s, pool)


# ------------------------------------------------------------------ the Python generator

def _python_result(latencies: list[float], errors: int, elapsed: float) -> dict:
    return {"generator": "python", "requests": len(latencies), "requests_per_s": round(len(latencies) / elapsed, 1),
            "p50_ms": _pct(latencies, 50), "p99_ms": _pct(latencies, 99), "errors": errors}


def _post(c: httpx.AsyncClient, item: tuple[str, bytes]):
    header, body = item
    return c.post(PATH, content=body, headers={"Content-Type": "application/json", "Behavior-Sender": SENDER,
                                               "Behavior-Signature": header})


async def _post_all(base: str, signed: list, connections: int, duration_s: float) -> dict:
    """POST the signed bodies in turn from `connections` clients until the time is up."""
    latencies: list[float] = []
    errors = 0
    it = iter(signed)
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            while time.perf_counter() < deadline:
                item = next(it, None)
                if item is None:
                    return
                t0 = time.perf_counter()
                r = await _post(c, item)
                latencies.append((time.perf_counter() - t0) * 1000)
                errors += r.status_code != 200

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(connections)))
    return _python_result(latencies, errors, time.perf_counter() - t0)


async def _paced(c: httpx.AsyncClient, rate: float, duration_s: float, send: Callable) -> dict:
    """`send(c, i)` for i = 0, 1, ... at `rate` per second for `duration_s`, each request on
    its own task so that a slow answer does not delay the next one."""
    latencies: list[float] = []
    errors = 0
    pending: set = set()

    async def one(i: int) -> None:
        nonlocal errors
        t0 = time.perf_counter()
        r = await send(c, i)
        latencies.append((time.perf_counter() - t0) * 1000)
        errors += r.status_code != 200

    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < duration_s:
        await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
        i += 1
    await asyncio.gather(*pending)
    return _python_result(latencies, errors, time.perf_counter() - start)


async def _python_single(base: str, signed: list, duration_s: float, connections: int, rate: float | None = None,
                         beside: tuple[str, list[str]] | None = None) -> tuple[dict, dict | None]:
    """The Python generator's counterpart of `_wrk_single`."""
    if not rate:
        return await _post_all(base, signed, connections, duration_s), None
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as posts:
        runs = [_paced(posts, rate, duration_s, lambda c, i: _post(c, signed[i]))]
        if beside is not None:
            key, users = beside
            gets = httpx.AsyncClient(base_url=base, timeout=30, headers={"X-API-Key": key},
                                     limits=httpx.Limits(max_connections=GET_CONNECTIONS))
            runs.append(_paced(gets, GET_RATE, duration_s,
                               lambda c, i: c.get(f"/v1/users/{users[i % len(users)]}/recommendations?n=10")))
        try:
            results = await asyncio.gather(*runs)
        finally:
            if beside is not None:
                await gets.aclose()
    return results[0], (results[1] if beside is not None else None)


# ------------------------------------------------------------------ the benchmark

def _warm_up(base: str, secret: bytes, key: str, users: list[str], items: list[str]) -> None:
    """A few of each request first, so that first-call costs (imports, caches) are not measured."""
    with httpx.Client(base_url=base, timeout=30) as c:
        for header, body in _signed(secret, _payments(50, users, items, "warmup", KNOWN_EVERY)):
            c.post(PATH, content=body, headers={"Content-Type": "application/json", "Behavior-Sender": SENDER,
                                                "Behavior-Signature": header})
        for user in users[:100]:
            c.get(f"/v1/users/{user}/recommendations?n=10", headers={"X-API-Key": key})


def _median_row(bench: str, runs: list[dict], target: tuple | None, connections: int, generator: str,
                lines_per_request: int | None = None) -> dict:
    row = {"bench": bench, "connections": connections, "generator": generator, "runs": len(runs),
           "requests": int(statistics.median(r["requests"] for r in runs)),
           "per_s": round(statistics.median(r["requests_per_s"] for r in runs), 1),
           "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 2),
           "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 2),
           "errors": sum(r["errors"] for r in runs),
           # the share of its CPU the server used: well under 1 with a target missed means the
           # server was not what limited the run (the disk's fsync, or other processes on its CPU)
           "server_cpu": round(statistics.median(r["server_cpu"] for r in runs), 2),
           "each_per_s": [r["requests_per_s"] for r in runs], "each_p99_ms": [r["p99_ms"] for r in runs],
           "target": target[0] if target else None}
    if lines_per_request:
        row["lines_per_s"] = round(row["per_s"] * lines_per_request, 1)
    row["met"] = (target[1](row) and row["errors"] == 0) if target else None
    return row


def run_notify_bench(work: Path, duration_s: float = 10.0, connections: int = 32, users: int = 2000,
                     repeat: int = 3, progress: Callable[[str], None] = lambda _: None,
                     generator: str | None = None) -> dict:
    """Make (or reuse) a data home with a bundle under `work`, serve it, and measure each load
    `repeat` times with `generator` ("wrk" or "python"; default: wrk if installed);
    {"setup": how it ran, "rows": the medians against the targets}."""
    home = DataHome(work / "data")
    bundle = ensure_bundle(home, users, progress)
    ids = pq.read_table(bundle / PROFILES.file, columns=["user_id"]).column(0).to_pylist()
    items = [f"i{i:05d}" for i in range(1, 200)]
    known = {s.name: s for s in read_senders(home.root)}
    secret = known[SENDER].secret if SENDER in known else bytes.fromhex(add_sender(home.root, SENDER))
    keys_file, key = bench_key(work)
    # the benchmark's own data home: its inbox starts empty at each invocation, so every run
    # serves the same live state (the lines of earlier invocations would be live too)
    shutil.rmtree(inbox_path(home.root).parent, ignore_errors=True)
    cpus = _cpus()
    server_cpus, load_cpus = cpus if cpus else (None, None)
    use_wrk = shutil.which("wrk") is not None if generator is None else generator == "wrk"
    if generator is None and not use_wrk:
        progress(f"wrk not found: the Python load generator runs instead; {INSTALL_WRK}")
    generator = "wrk" if use_wrk else "python (asyncio + httpx)"
    setup = {"generator": generator, "pinned": cpus is not None,
             "server_cpus": sorted(server_cpus) if cpus else None, "generator_cpus": sorted(load_cpus) if cpus else None,
             "duration_s": duration_s, "repeat": repeat, "load_average_before": round(os.getloadavg()[0], 1)}
    paced, beside, capacity, batches = [], [], [], []
    own = os.sched_getaffinity(0) if cpus else None

    def single(tag: str, rate: float | None, with_gets: bool) -> tuple[dict, dict | None]:
        # the bodies are signed before the clock starts, with a fresh timestamp each run
        signed = _signed(secret, _payments(int(SINGLE_POOL_PER_S * duration_s), ids, items, tag, KNOWN_EVERY))
        before = _inbox_lines(home.root) if inbox_path(home.root).exists() else 0
        cpu = _cpu_s(pid)
        gets = (key, ids) if with_gets else None
        if use_wrk:
            post, get = _wrk_single(work, base, signed, duration_s, connections, load_cpus, rate, gets)
        else:
            post, get = asyncio.run(_python_single(base, signed, duration_s, connections, rate, gets))
        if post["requests"] > len(signed):
            raise RuntimeError("the load generator ran out of distinct notifications; raise SINGLE_POOL_PER_S")
        post["stored"] = _inbox_lines(home.root) - before
        post["server_cpu"] = (_cpu_s(pid) - cpu) / duration_s
        if get is not None:
            get["server_cpu"] = post["server_cpu"]
        return post, get

    with server(home.root, keys_file, work / "server.log", cpus=server_cpus) as (base, _, pid):
        if cpus and not use_wrk:
            os.sched_setaffinity(0, load_cpus)   # the Python generator runs in this process
        try:
            _warm_up(base, secret, key, ids, items)
            for run in range(repeat):
                # letters only: an id with 13 or more digits may be a card number, which
                # validation refuses
                tag = uuid.uuid4().hex[:8].translate(str.maketrans("0123456789", "ghijklmnop"))
                progress(f"run {run + 1}/{repeat}: single notifications at {SINGLE_RATE:,.0f}/s from {connections} "
                         f"connections for {duration_s:g} s, GET recommendations at {GET_RATE:g}/s beside")
                post, get = single(f"{tag}p", SINGLE_RATE, True)
                paced.append(post)
                beside.append(get)
                progress(f"run {run + 1}/{repeat}: single notifications as fast as answered from {connections} connections")
                capacity.append(single(f"{tag}c", None, False)[0])
                progress(f"run {run + 1}/{repeat}: batches of {BATCH_LINES:,} lines from {BATCH_CONNECTIONS} connections")
                signed = _signed(secret, [_payments(BATCH_LINES, ids, items, f"{tag}-{b}")
                                          for b in range(int(BATCH_POOL_PER_S * duration_s))])
                cpu = _cpu_s(pid)
                if use_wrk:
                    batch = _wrk_batches(work, base, signed, duration_s, load_cpus)
                else:
                    batch = asyncio.run(_post_all(base, signed, BATCH_CONNECTIONS, duration_s))
                if batch["requests"] > len(signed):
                    raise RuntimeError("the load generator ran out of distinct batches; raise BATCH_POOL_PER_S")
                batch["server_cpu"] = (_cpu_s(pid) - cpu) / duration_s
                batches.append(batch)
        finally:
            if own:
                os.sched_setaffinity(0, own)
        setup["server_peak_mb"] = _peak_mb(pid)
        setup["load_average_after"] = round(os.getloadavg()[0], 1)
    rows = [_median_row(f"notify: single payments at {SINGLE_RATE:,.0f}/s", paced, SINGLE_TARGET, connections,
                        generator),
            _median_row("GET recommendations beside", beside, BESIDE_TARGET, GET_CONNECTIONS, generator),
            _median_row("notify: single payments, capacity", capacity, None, connections, generator),
            _median_row(f"notify: batches of {BATCH_LINES:,} lines", batches, BATCH_TARGET, BATCH_CONNECTIONS,
                        generator, BATCH_LINES)]
    setup["stored_single"] = [r["stored"] for r in paced + capacity]
    return {"setup": setup, "rows": rows}


def format_notify_table(result: dict) -> str:
    s = result["setup"]
    where = (f"server bound to CPU {s['server_cpus'][0]}, load generator to CPU "
             f"{','.join(map(str, s['generator_cpus']))}" if s["pinned"] else "server and load generator share the CPUs")
    out = [f"load generator: {s['generator']}; {where}; one uvicorn worker; median of {s['repeat']} runs of "
           f"{s['duration_s']:g} s; server peak memory {s['server_peak_mb']:,.0f} MB; load average "
           f"{s['load_average_before']:g} before, {s['load_average_after']:g} after (the other processes on these CPUs)"]
    if s["generator"] != "wrk":
        out.append(INSTALL_WRK)
    for r in result["rows"]:
        rate = f"{r['lines_per_s']:>10,.0f} lines/s" if "lines_per_s" in r else f"{r['per_s']:>10,.0f} req/s  "
        out.append(f"{r['bench']:<34} {rate}  p50 {r['p50_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms  "
                   f"server CPU {r['server_cpu']:.0%}  errors {r['errors']}  "
                   + (f"target {r['target']}: {'met' if r['met'] else 'NOT met'}" if r["target"]
                      else "(what one worker serves: no target)"))
    return "\n".join(out)
