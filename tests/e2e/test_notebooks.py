"""The analyst notebooks (notebooks/*.py, jupytext percent format) run top to bottom on a small
demo data home (06_your_data makes its own, from a CSV it writes to a temporary folder): each is
converted with jupytext and executed by nbclient on the venv's own kernel; a failing cell fails
its test. Together they must take under two minutes, 06_your_data under 30 s. The notebook of
each served model shows its choice: the report's sentence of what it beat, and its plot."""

from __future__ import annotations

import time
from pathlib import Path

import jupytext
import nbclient
import pytest

from behavior.model_choice import report_selections
from pipelines.notebook import open_demo

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("[0-9]*.py"))
BUDGET_S = 120.0
YOUR_DATA_BUDGET_S = 30.0    # from a CSV to a bundle and its plots, as a newcomer tries it
TIMES: dict[str, float] = {}
# the report paths (`behavior.model_choice.report_selections`) of the choices each notebook shows
SHOWS_CHOICE = {"02_segments": ("loyalty", "merchants.churn"), "03_retention": ("churn",),
                "04_recommendations": ("recommend",), "05_promotions": ("promotions.uplift",)}


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    """synth (800 users, 12 months, half of them in randomized promotions so that the uplift
    model trains) -> ingest -> every stage -> a published bundle."""
    from pipelines.config import Config
    from behavior.store.datahome import DataHome
    from pipelines.ingest import IngestOptions, ingest
    from pipelines.runner import run_pipeline
    from pipelines.synth_files import write_synth

    root = tmp_path_factory.mktemp("notebook-home")
    write_synth(root / "synth", users=800, months=12, seed=11, promo_assign_rate=0.5)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    run_pipeline(home, Config())
    return home.root


def test_the_notebooks_are_there():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) >= 6, names
    for topic in ("payments", "segments", "retention", "recommendations", "promotions", "your_data"):
        assert any(topic in n for n in names), f"no notebook about {topic}: {names}"


@pytest.mark.timing   # the notebooks have a time budget
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_on_the_demo_data(path, demo_home, monkeypatch, tmp_path):
    monkeypatch.setenv("BEHAVIOR_DATA_DIR", str(demo_home))   # the kernel inherits it
    # kernel "python3" is then the venv's own (jupyter_client runs its "python" as this interpreter),
    # not one a developer registered in their user data dir for another Python
    monkeypatch.setenv("JUPYTER_DATA_DIR", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))   # 06_your_data's data home goes where pytest cleans up
    nb = jupytext.read(path)
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()   # raises CellExecutionError, naming the cell, if any cell fails
    TIMES[path.stem] = time.perf_counter() - t0
    if path.stem == "06_your_data":
        assert TIMES[path.stem] < YOUR_DATA_BUDGET_S, f"{path.name} took {TIMES[path.stem]:.1f} s"
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3, f"{path.name} shows {len(images)} figures"
    text = "".join(o.get("text", "") for o in outputs)
    for where, sel in report_selections(open_demo(demo_home).report):
        if where.startswith(SHOWS_CHOICE.get(path.stem, ())):
            assert sel["summary"] in text, f"{path.name} does not show the choice of {where}: {sel['summary']}"
    if path.stem in SHOWS_CHOICE:
        plotted = [c for c in nb.cells if c.cell_type == "code" and "plot_model_choice(" in c.source]
        assert plotted and all(any("image/png" in o.get("data", {}) for o in c.outputs) for c in plotted), \
            f"{path.name} draws no model-choice plot"


def test_notebooks_together_run_in_under_two_minutes():
    if len(TIMES) < len(NOTEBOOKS):
        pytest.skip("runs after every notebook ran in this session")
    total = sum(TIMES.values())
    print("notebook seconds:", {k: round(v, 1) for k, v in TIMES.items()}, f"total {total:.1f}")
    assert total < BUDGET_S, TIMES
