"""`behavior bench demo`: the demo's pipeline (synth -> ingest -> run -> publish, what `behavior
demo` does before it starts the API) at its default size, per step, as medians of fresh runs.

Each run is a fresh Python process on a fresh data home, timing each step as the demo runs it:
`synth` (generate and write the files), `ingest`, each stage of `behavior run`, `report.html`
(rendered while publishing) and `publish` (the rest of publishing: bundle files, checksums,
verification, CURRENT). The table gives per step the median, min and max seconds and the
process's peak resident memory, and the whole pipeline against its target (<= 60 s on 2 cores).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Callable

from pipelines.bench.child import measure

TARGET_SECONDS = 60.0
DEMO_USERS = 60_000

_DEMO = """
from pathlib import Path
from pipelines.config import load_config
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import run_pipeline
from pipelines.synth_files import write_synth
home = DataHome(Path(sys.argv[1]))
steps = {}
t0 = t = time.perf_counter()
write_synth(home.root / "synth", users=int(sys.argv[2]), months=24, seed=0)
steps["synth"] = time.perf_counter() - t
t = time.perf_counter()
ingest(home, [home.root / "synth"], IngestOptions())
steps["ingest"] = time.perf_counter() - t
t = time.perf_counter()
rep = run_pipeline(home, load_config(None))
run_s = time.perf_counter() - t
for name, st in rep["stages"].items():
    steps[name] = st["seconds"]
steps["report.html"] = rep["report_html"]["seconds"]
steps["publish"] = run_s - sum(st["seconds"] for st in rep["stages"].values()) - steps["report.html"]
steps["pipeline"] = time.perf_counter() - t0
res = {"seconds": steps["pipeline"], "steps": steps}
"""


def run_demo_bench(work: Path | None, *, users: int = DEMO_USERS, repeat: int = 3,
                   progress: Callable[[str], None] = lambda _: None) -> list[dict]:
    """Rows {step, runs, median, min, max, peak_mb[, target, met]}; the last row is the whole
    pipeline."""
    tmp = None
    if work is None:
        tmp = tempfile.mkdtemp(prefix="behavior-bench-demo-")
        work = Path(tmp)
    try:
        home = work / "demo"
        runs = measure({"demo": (_DEMO, str(home), str(users))}, repeat=repeat, progress=progress,
                       label=f"demo pipeline, {users:,} users", fresh=home)["demo"]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    peak = max(r["peak_mb"] for r in runs)
    rows = []
    for step in runs[0]["steps"]:
        secs = [r["steps"][step] for r in runs]
        rows.append({"step": step, "users": users, "runs": len(runs), "median": round(statistics.median(secs), 2),
                     "min": round(min(secs), 2), "max": round(max(secs), 2), "peak_mb": peak})
    rows[-1]["target"] = f"<= {TARGET_SECONDS:.0f} s"
    rows[-1]["met"] = rows[-1]["median"] <= TARGET_SECONDS
    return rows


def format_demo_table(rows: list[dict]) -> str:
    runs = rows[0]["runs"]
    lines = [f"demo pipeline, {rows[0]['users']:,} users, {runs} run{'s' if runs > 1 else ''} (peak memory "
             f"{rows[0]['peak_mb']:,.0f} MB)", "",
             "| step | median s | min s | max s | share |", "|---|---:|---:|---:|---:|"]
    total = rows[-1]["median"]
    for r in rows:
        name = f"**{r['step']}**" if r["step"] == "pipeline" else r["step"]
        lines.append(f"| {name} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                     f"{100 * r['median'] / total:.0f}% |")
    last = rows[-1]
    lines.append(f"\ntarget {last['target']} on 2 cores: {'met' if last['met'] else 'not met'}")
    return "\n".join(lines)
