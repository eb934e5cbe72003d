"""The report page's monthly figures are queried beside the stages: the runner starts them once
the user parts are written, the page uses them, and a failed run stops them before the parts go."""

from pathlib import Path

import pytest

from behavior import features as F
from behavior.store.datahome import DataHome
from pipelines import runner
from pipelines import stages as registry
from pipelines.config import Config
from pipelines.ingest import IngestOptions, ingest
from pipelines.report_html import MonthlyFigures
from pipelines.stage import Stage
from pipelines.synth_files import write_synth


@pytest.fixture
def recorded(tmp_path, monkeypatch):
    write_synth(tmp_path / "synth", users=300, months=8, seed=4)
    home = DataHome(tmp_path / "data")
    ingest(home, [tmp_path / "synth"], IngestOptions())
    monkeypatch.setattr(F, "PART_LINES", 1_000)       # the lake's lines in several parts
    made: list = []

    class Recording(MonthlyFigures):
        def __init__(self, con, parts=None):
            super().__init__(con, parts)
            made.append((self, parts.written, parts.count))

    monkeypatch.setattr(runner, "MonthlyFigures", Recording)
    return home, made


def test_the_runner_starts_the_monthly_figures_once_the_user_parts_are_written(recorded):
    home, made = recorded
    report = runner.run_pipeline(home, Config(), stages=["features", "loyalty"])
    assert [(written, count > 2) for _, written, count in made] == [(True, True)]    # once, after features
    figures = made[0][0]
    assert figures._future.done() and figures._cursor is None and figures.result() is not None
    assert report["report_html"]["errors"] == []
    page = (home.bundles / report["bundle_version"] / "report.html").read_text()
    assert "Successful payments, customers and net sales per month." in page


def test_a_failed_run_stops_the_monthly_figures_before_the_parts_are_removed(recorded, monkeypatch):
    home, made = recorded

    def boom(ctx):
        raise RuntimeError("a stage failed")

    monkeypatch.setitem(registry.STAGES, "boom", Stage("boom", ("features",), boom))
    with pytest.raises(RuntimeError, match="a stage failed"):
        runner.run_pipeline(home, Config(), stages=["boom"])
    figures = made[0][0]
    assert figures._future.done() and figures._cursor is None
    assert not [p for p in Path(home.root / "tmp").glob("parts-*")]     # the parts are gone
