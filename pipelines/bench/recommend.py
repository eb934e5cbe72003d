"""`behavior bench recommend-search`: the recommend stage's model search at demo size.

A demo lake (`behavior synth` with its defaults: 60,000 users, 24 months; in `behavior bench`,
`search_users` of its size options) is made once, then the
recommend stage runs alone on it in a fresh process per run (`[engine] duckdb_threads = 2`).
Each run reports the search's wall time (`recommend.search.seconds`: successive halving, the
baselines, the blend and the choice), the whole stage's time, the selected model and the
held-out test period's precision@10 and nDCG@10 of the selected model (`recommend.test`).
Target (2 cores): the search <= 30 s at demo size.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

from pipelines.bench.demo import DEMO_USERS

STEP = "recommend search"
TARGET = ("<= 30 s at demo size (60k users)", lambda r: r["users"] < DEMO_USERS or r["seconds"] <= 30)
# the recommender benchmark's users per interaction line (`behavior bench --recommend-lines`)
LINES_PER_USER = 20
MIN_USERS = 1_500   # the smallest demo lake the search is tested on (tests/pipelines/test_bench_recommend.py)


def search_users(recommend_lines: int, users: int | None = None) -> int:
    """The users of the search's demo lake in `behavior bench`: `users` (its `--users`) when
    given, else those of the recommender benchmark's `recommend_lines` (lines / 20), at most
    the demo's 60,000 (where the target is set: the default 20M lines give 60,000) and at
    least MIN_USERS."""
    if users is not None:
        return users
    return max(MIN_USERS, min(DEMO_USERS, recommend_lines // LINES_PER_USER))


_RUN = """
from pathlib import Path
from pipelines.config import Config, EngineConfig
from behavior.store.datahome import DataHome
from pipelines.runner import run_pipeline
rep = run_pipeline(DataHome(Path(sys.argv[1])), Config(engine=EngineConfig(duckdb_threads=2)), stages=["recommend"])
rec = rep["recommend"]
test = rec["test"][rec["selected"]]
res = {"seconds": rec["search"]["seconds"], "stage_seconds": rep["stages"]["recommend"]["seconds"],
       "selected": rec["selected"], "precision@10": test.get("precision@10"), "ndcg@10": test.get("ndcg@10"),
       "configs": rec["search"]["configs"], "budget_seconds": rec["search"]["budget_seconds"]}
"""


def _cli(home: Path, *args: str) -> None:
    out = subprocess.run([sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir", str(home),
                          "--quiet", *args], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"behavior {' '.join(args)} failed:\n{out.stderr[-2000:]}")


def demo_lake(work: Path, users: int, progress: Callable[[str], None]) -> Path:
    """A data home with the synthetic demo history of `users` users, made once and reused."""
    home = work / f"home-demo-{users}"
    if not (home / "lake" / "payments").exists():
        progress(f"making a demo lake of {users:,} users")
        _cli(home, "synth", "--out", str(work / f"synth-{users}"), "--users", str(users))
        _cli(home, "ingest", str(work / f"synth-{users}"))
    return home


def bench_search(work: Path, repeat: int, users: int = DEMO_USERS,
                 progress: Callable[[str], None] = lambda _: None) -> dict:
    """One row: the median search seconds over `repeat` runs, with the stage's seconds, the
    selected model and its test precision@10 / nDCG@10 (the same data every run)."""
    from pipelines.bench.child import run_child

    home = demo_lake(work, users, progress)
    runs = []
    for i in range(repeat):
        progress(f"recommend stage on the demo lake of {users:,} users, run {i + 1}/{repeat}")
        runs.append(run_child(_RUN, str(home)))
    row = {"step": STEP, "lines": users, "users": users, "runs": len(runs),
           "seconds": round(statistics.median(r["seconds"] for r in runs), 3),
           "stage_seconds": round(statistics.median(r["stage_seconds"] for r in runs), 3),
           "lines_per_s": 0, "peak_mb": max(r["peak_mb"] for r in runs),
           "selected": [r["selected"] for r in runs], "budget_seconds": runs[0]["budget_seconds"],
           "precision@10": statistics.median(r["precision@10"] for r in runs),
           "ndcg@10": statistics.median(r["ndcg@10"] for r in runs)}
    row["lines_per_s"] = int(users / row["seconds"]) if row["seconds"] else 0   # users searched per second
    row["target"], row["met"] = TARGET[0], bool(TARGET[1](row))
    return row
