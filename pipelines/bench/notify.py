"""`behavior bench notify`: signed payment notifications under load, one uvicorn worker on loopback.

- Single-payment notifications (one line each, new keys) from 32 connections for a while,
  with GET recommendations paced at 500 requests/s beside them on their own connections.
  Targets: >= 2,000 notifications/s with p99 < 50 ms; the GETs' p99 < 25 ms.
- Batches of 1,000 one-line payments from 4 connections. Target: >= 20,000 lines/s.

Every acknowledged notification is durable (fsync of the inbox's WAL) before its 200. The
load generator (Python asyncio + httpx) shares the machine's cores with the server: the
figures are what both together reach.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pyarrow.parquet as pq

from behavior.store.senders import add_sender, read_senders, sign_hmac, signature_header
from pipelines.bench.server import bench_key, ensure_bundle, server
from behavior.store.bundle import PROFILES
from behavior.store.datahome import DataHome

SINGLE_TARGET = (">= 2,000 notifications/s, p99 < 50 ms", lambda r: r["per_s"] >= 2000 and r["p99_ms"] < 50)
BESIDE_TARGET = ("p99 < 25 ms at 500 req/s", lambda r: r["p99_ms"] < 25)
BATCH_TARGET = (">= 20,000 lines/s", lambda r: r["lines_per_s"] >= 20_000)


def _payments(n: int, users: list[str], items: list[str], tag: str) -> list[dict]:
    paid = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    return [{"payment_id": f"bench-{tag}-{i}", "user_id": users[i % len(users)], "merchant_id": "m001",
             "paid_at": paid, "status": "success", "currency": "EUR", "channel": "app", "promotion_id": None,
             "lines": [{"line_no": 1, "item_id": items[i % len(items)], "category": None, "quantity": 1,
                        "amount": "9.90"}]} for i in range(n)]


def _pct(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100)[q - 1], 2) if len(values) >= 2 else float("nan")


async def _notify(base: str, secret: bytes, docs: list, connections: int, duration_s: float) -> tuple[list, int, int]:
    """POST `docs` (each a body document) round-robin from `connections` clients until the
    time is up; (latencies in ms, requests answered 200, lines acknowledged)."""
    latencies: list[float] = []
    ok = lines = 0
    it = iter(docs)
    deadline = time.perf_counter() + duration_s

    async def client() -> None:
        nonlocal ok, lines
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            while time.perf_counter() < deadline:
                doc = next(it, None)
                if doc is None:
                    return
                body = json.dumps(doc).encode()
                t = int(time.time())
                headers = {"Content-Type": "application/json", "Behavior-Sender": "bench",
                           "Behavior-Signature": signature_header(t, sign_hmac(secret, t, body))}
                t0 = time.perf_counter()
                r = await c.post("/v1/notifications/payments", content=body, headers=headers)
                latencies.append((time.perf_counter() - t0) * 1000)
                if r.status_code == 200:
                    ok += 1
                    lines += r.json()["accepted"]

    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, ok, lines


async def _paced_gets(base: str, key: str, users: list[str], rate: float, stop: asyncio.Event) -> list[float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=30, headers={"X-API-Key": key},
                                 limits=httpx.Limits(max_connections=8)) as c:
        i = 0
        start = time.perf_counter()
        pending = set()

        async def one(path: str) -> None:
            t0 = time.perf_counter()
            await c.get(path)
            latencies.append((time.perf_counter() - t0) * 1000)

        while not stop.is_set():
            due = start + i / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one(f"/v1/users/{users[i % len(users)]}/recommendations?n=10"))
            pending.add(task)
            task.add_done_callback(pending.discard)
            i += 1
        await asyncio.gather(*pending)
    return latencies


async def _single_with_gets(base: str, secret: bytes, key: str, users: list[str], items: list[str],
                            duration_s: float, connections: int) -> tuple[dict, dict]:
    # made before the clock starts: building them blocks the loop for seconds, which the
    # notifications' rate and the paced GETs' latencies would otherwise carry
    docs = _payments(400_000, users, items, uuid.uuid4().hex[:8])
    stop = asyncio.Event()
    gets = asyncio.create_task(_paced_gets(base, key, users, 500.0, stop))
    t0 = time.perf_counter()
    lat, ok, _ = await _notify(base, secret, docs, connections, duration_s)
    elapsed = time.perf_counter() - t0
    stop.set()
    get_lat = await gets
    single = {"bench": "notify: single payments", "connections": connections, "requests": ok,
              "per_s": round(ok / elapsed, 1), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
              "target": SINGLE_TARGET[0]}
    beside = {"bench": "GET recommendations beside", "connections": 8, "requests": len(get_lat),
              "per_s": round(len(get_lat) / elapsed, 1), "p50_ms": _pct(get_lat, 50), "p99_ms": _pct(get_lat, 99),
              "target": BESIDE_TARGET[0]}
    single["met"], beside["met"] = SINGLE_TARGET[1](single), BESIDE_TARGET[1](beside)
    return single, beside


def run_notify_bench(work: Path, duration_s: float = 10.0, connections: int = 32, users: int = 2000,
                     progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Make (or reuse) a data home with a bundle under `work`, serve it, and measure."""
    home = DataHome(work / "data")
    bundle = ensure_bundle(home, users, progress)
    ids = pq.read_table(bundle / PROFILES.file, columns=["user_id"]).column(0).to_pylist()
    items = [f"i{i:05d}" for i in range(1, 200)]
    known = {s.name: s for s in read_senders(home.root)}
    secret = known["bench"].secret if "bench" in known else bytes.fromhex(add_sender(home.root, "bench"))
    keys_file, key = bench_key(work)
    rows = []
    with server(home.root, keys_file, work / "server.log") as (base, _, _):
        progress(f"single notifications from {connections} connections for {duration_s:g} s")
        rows += list(asyncio.run(_single_with_gets(base, secret, key, ids, items, duration_s, connections)))
        progress("batches of 1,000 lines from 4 connections")
        batches = [_payments(1000, ids, items, f"{uuid.uuid4().hex[:8]}-{b}") for b in range(200)]
        t0 = time.perf_counter()
        lat, ok, lines = asyncio.run(_notify(base, secret, batches, 4, duration_s))
        elapsed = time.perf_counter() - t0
        batch = {"bench": "notify: batches of 1,000 lines", "connections": 4, "requests": ok,
                 "lines_per_s": round(lines / elapsed, 1), "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
                 "target": BATCH_TARGET[0]}
        batch["met"] = BATCH_TARGET[1](batch)
        rows.append(batch)
    return rows


def format_notify_table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        rate = f"{r['lines_per_s']:>10,.0f} lines/s" if "lines_per_s" in r else f"{r['per_s']:>10,.0f} req/s  "
        out.append(f"{r['bench']:<34} {rate}  p50 {r['p50_ms']:>7.1f} ms  p99 {r['p99_ms']:>7.1f} ms  "
                   f"target {r['target']}: {'met' if r['met'] else 'NOT met'}")
    return "\n".join(out)
