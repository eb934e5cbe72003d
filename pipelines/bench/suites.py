"""`behavior bench`: performance of ingest and the stages, as medians with peak memory.

Loyalty: BG/NBD + Gamma-Gamma fit (target < 10 s) and scoring P(alive), expected purchases
and CLV (target < 5 s) on 1M customers simulated from the models.

Every measurement runs in a fresh Python process (so its peak RSS is its own) on data made
here: random payment lines with users = lines / 10 and items = min(lines / 100, 200k).
Ingest is measured beside its floor, DuckDB's own COPY of the same file
(`pipelines.bench.ingest`). Targets (2 cores): ingest <= 1.5x that floor; the feature stage on 10M lines / 1M users in < 30 s with peak memory < 4 GB.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow.parquet as pq

from pipelines.bench.child import measure, run_child
from pipelines.bench.demo import DEMO_USERS
from pipelines.bench.payments import make_payments
from pipelines.bench.ingest import INGEST, bench_ingest

# Step name -> (target description, check of the median result)
TARGETS: dict[str, tuple[str, Callable[[dict], bool]]] = {
    "features": ("< 30 s and < 4 GB at 10M lines", lambda r: r["lines"] < 10_000_000 or (r["seconds"] < 30 and r["peak_mb"] < 4096)),
    "loyalty fit": ("< 10 s at 1M customers", lambda r: r["lines"] < 1_000_000 or r["seconds"] < 10),
    "loyalty score": ("< 5 s at 1M customers", lambda r: r["lines"] < 1_000_000 or r["seconds"] < 5),
    "churn train + score": ("< 90 s at 1M customers", lambda r: r["lines"] < 10_000_000 or r["seconds"] < 90),
    "recommend matrix build": ("< 20 s at 20M lines", lambda r: r["lines"] < 20_000_000 or r["seconds"] < 20),
    "recommend top-10 all users": ("< 120 s at 1M users", lambda r: r["lines"] < 20_000_000 or r["seconds"] < 120),
    "recommend one user top-10": ("< 1 ms", lambda r: r["seconds"] < 0.001),
}


def make_customers(n: int, seed: int = 0, r=0.9, alpha=22.0, a=0.8, b=12.0, p=6.0, q=3.8, v=15.0) -> dict:
    """(frequency, recency, T, monetary_value) of `n` customers drawn from BG/NBD and
    Gamma-Gamma, in whole days like the feature table."""
    rng = np.random.default_rng(seed)
    T = rng.integers(1, 731, n).astype(float)
    lam = rng.gamma(r, 1 / alpha, n)
    drop = rng.beta(a, b, n)
    k = rng.poisson(lam * T)                 # purchases the Poisson process puts in (0, T]
    x = np.minimum(k, rng.geometric(drop))   # repeat purchases made before dropping out
    # The x-th smallest of k uniform times on (0, T] is T * Beta(x, k - x + 1).
    rec = np.where(x > 0, T * rng.beta(np.maximum(x, 1), np.maximum(k - x + 1, 1)), 0.0)
    nu = rng.gamma(q, 1 / v, n)
    money = np.where(x > 0, rng.gamma(np.maximum(p * x, 1e-9), 1 / (nu * np.maximum(x, 1))), np.nan)
    return {"frequency": x.astype(float), "recency": np.floor(rec), "T": T, "monetary_value": money}


_FEATURES = """
from pathlib import Path
from pipelines.config import Config, EngineConfig
from behavior.store.datahome import DataHome
from pipelines.runner import open_context
from pipelines.stages import features
ctx = open_context(DataHome(Path(sys.argv[1])), Config(engine=EngineConfig(duckdb_threads=2)), None)
t = time.perf_counter()
out = features.run(ctx)
ctx.user_parts.close()
res = {"seconds": time.perf_counter() - t, "users": out.output.num_rows}
"""


_LOYALTY = """
from pipelines.bench.suites import make_customers
from behavior.btyd import BetaGeoFitter, GammaGammaFitter
c = make_customers(int(sys.argv[1]))
rep = c["frequency"] > 0
t = time.perf_counter()
bg = BetaGeoFitter().fit(c["frequency"], c["recency"], c["T"])
gg = GammaGammaFitter().fit(c["frequency"][rep], c["monetary_value"][rep])
fit = time.perf_counter() - t
t = time.perf_counter()
bg.conditional_probability_alive(c["frequency"], c["recency"], c["T"])
bg.conditional_expected_number_of_purchases_up_to_time(90, c["frequency"], c["recency"], c["T"])
m = np.nan_to_num(c["monetary_value"])
gg.customer_lifetime_value(bg, c["frequency"], c["recency"], c["T"], m, horizon_days=365)
res = {"seconds": fit, "score_seconds": time.perf_counter() - t}
"""


def _median(runs: list[dict], lines: int, step: str) -> dict:
    secs = statistics.median(r["seconds"] for r in runs)
    row = {"step": step, "lines": lines, "runs": len(runs), "seconds": round(secs, 6),
           "lines_per_s": int(lines / secs) if secs else None,
           "peak_mb": max(r["peak_mb"] for r in runs)}
    target = TARGETS.get(step)
    if target:
        row["target"] = target[0]
        row["met"] = bool(target[1](row))
    return row


_RECOMMEND = """
import numpy as np
from behavior.recommend.interactions import build_matrix
from behavior.recommend.factors import ALS
users, items, lines = (int(a) for a in sys.argv[1:4])
rng = np.random.default_rng(0)
u = rng.integers(0, users, lines)
i = np.minimum(rng.zipf(1.2, lines) - 1, items - 1)
t = time.perf_counter()
m = build_matrix(u, i, np.ones(lines), users, items)
build = time.perf_counter() - t
t = time.perf_counter()
model = ALS(factors=64, iterations=15).fit(m)
fit = time.perf_counter() - t
t = time.perf_counter()
all_users = np.arange(users)
model.recommend(all_users, m, 10, exclude_purchased=True)
all_top = time.perf_counter() - t
one = []
for j in rng.integers(0, users, 200):
    t0 = time.perf_counter()
    model.recommend(np.array([j]), m[j], 10, exclude_purchased=True)
    one.append(time.perf_counter() - t0)
res = {"seconds": build, "fit": fit, "all_users": all_top, "one_user_ms": 1000 * float(np.median(one)), "pairs": int(m.nnz)}
"""

_CHURN = """
from pathlib import Path
from pipelines.config import Config, EngineConfig
from behavior.store.datahome import DataHome
from pipelines.runner import run_pipeline
rep = run_pipeline(DataHome(Path(sys.argv[1])), Config(engine=EngineConfig(duckdb_threads=2)), stages=["churn"])
res = {"seconds": rep["stages"]["churn"]["seconds"], "scored": rep["churn"].get("scored_users"),
       "roc_auc": rep["churn"].get("test", {}).get("roc_auc")}
"""

SUITES = ("ingest", "features", "loyalty", "recommend", "recommend-search", "churn")


def run_bench(sizes: list[int], *, repeat: int = 3, work: Path | None = None,
              progress: Callable[[str], None] = lambda _: None, feature_lines: int | None = None,
              customers: int = 1_000_000, suites: tuple[str, ...] = SUITES,
              recommend_shape: tuple[int, int, int] = (1_000_000, 100_000, 20_000_000),
              search_users: int = DEMO_USERS) -> list[dict]:
    """The suites' benchmarks. ingest: each size in `sizes`, Parquet and CSV; features: the
    feature stage at `feature_lines` (default 10M); loyalty: fitting and scoring on
    `customers`; recommend: users x items x lines of `recommend_shape` (matrix build, ALS fit
    with 64 factors and 15 iterations, top-10 for every user, one user's top-10);
    recommend-search: the recommend stage's search on a demo lake of `search_users` users
    (`pipelines.bench.recommend`).
    One row per step; `lines` counts customers for loyalty and interaction lines for recommend."""
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="behavior-bench-")) if own else work
    work.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    try:
        if "ingest" in suites:
            rows += bench_ingest(sizes, repeat, work, progress)
        if "features" in suites:
            rows += _bench_features(feature_lines or 10_000_000, repeat, work, progress)
        if "loyalty" in suites:
            runs = measure({"loyalty": ("import numpy as np\n" + _LOYALTY, str(customers))}, repeat=repeat,
                           label=f"loyalty fit and score on {customers:,} customers", progress=progress)["loyalty"]
            rows.append(_median(runs, customers, "loyalty fit"))
            rows.append(_median([{**r, "seconds": r["score_seconds"]} for r in runs], customers, "loyalty score"))
        if "churn" in suites:
            flines = feature_lines or 10_000_000
            home = _bench_lake(work, flines, progress)
            runs = measure({"churn": (_CHURN, str(home))}, repeat=repeat, progress=progress,
                           label=f"churn stage (training and scoring) on {flines // 10:,} customers")["churn"]
            row = _median(runs, flines, "churn train + score")
            row["customers"] = runs[0]["scored"]
            rows.append(row)
        if "recommend" in suites:
            users, items, lines = recommend_shape
            runs = measure({"recommend": (_RECOMMEND, str(users), str(items), str(lines))}, repeat=repeat,
                           label=f"recommender on {users:,} users x {items:,} items x {lines:,} lines",
                           progress=progress)["recommend"]
            for step, key in (("recommend matrix build", "seconds"), ("recommend ALS fit", "fit"),
                              ("recommend top-10 all users", "all_users")):
                rows.append(_median([{**r, "seconds": r[key]} for r in runs], lines, step))
            one = _median([{**r, "seconds": r["one_user_ms"] / 1000} for r in runs], lines, "recommend one user top-10")
            rows.append(one)
        if "recommend-search" in suites:
            from pipelines.bench.recommend import bench_search

            rows.append(bench_search(work, repeat, users=search_users, progress=progress))
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return rows


def _bench_lake(work: Path, lines: int, progress) -> Path:
    """A data home holding `lines` generated payment lines, made once per size and reused
    (the feature and churn benchmarks read the same lake)."""
    home = work / f"home-{lines}"
    if not (home / "lake" / "payments").exists():
        shutil.rmtree(home, ignore_errors=True)
        progress(f"making a lake of {lines:,} payment lines")
        pq.write_table(make_payments(lines, seed=1), work / f"payments-{lines}.parquet")
        run_child(INGEST, str(home), str(work / f"payments-{lines}.parquet"))
    return home


def _bench_features(flines, repeat, work, progress) -> list[dict]:
    home = _bench_lake(work, flines, progress)
    runs = measure({"features": (_FEATURES, str(home))}, repeat=repeat, label=f"features on {flines:,} lines",
                   progress=progress)["features"]
    row = _median(runs, flines, "features")
    row["users"] = runs[0]["users"]
    return [row]


def format_table(rows: list[dict]) -> str:
    """A Markdown table (pasted into the README)."""
    out = ["| step | lines | median s | lines/s | peak MB | target | met |",
           "|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        target = r.get("target", "")
        if "ratio" in r:   # ingest beside its floor
            target += f": {r['ratio']:.2f}x ({r['floor_seconds']:.4g} s, {r['floor_peak_mb']:,.0f} MB)"
        out.append(f"| {r['step']} | {r['lines']:,} | {r['seconds']:.4g} | {r['lines_per_s']:,} | "
                   f"{r['peak_mb']:,.0f} | {target} | {'yes' if r.get('met') else 'no' if 'met' in r else ''} |")
    cores = os.cpu_count()
    out.append(f"\n{cores} cores; medians of {rows[0]['runs'] if rows else 0} runs, each in a fresh process.")
    return "\n".join(out)
