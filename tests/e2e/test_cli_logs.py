"""Progress off a terminal: timestamped lines per stage start and end on stderr (text or JSON),
so a scheduler can tell a hang from slow work; on a terminal, a spinner with the elapsed time."""

import json
import os
import pty
import re
import subprocess
import sys

import pytest

CLI = [sys.executable, "-c", "from pipelines.cli import main; main()"]
STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"


def behavior(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("logs")
    data = root / "data"
    assert behavior("--data-dir", str(data), "synth", "--out", str(root / "synth"), "--users", "600",
                    "--months", "12", "--seed", "5").returncode == 0
    assert behavior("--data-dir", str(data), "--quiet", "ingest", str(root / "synth")).returncode == 0
    return data


@pytest.mark.slow
def test_run_off_a_terminal_logs_each_stage_start_and_end(lake):
    out = behavior("--data-dir", str(lake), "run", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)   # stdout stays the result alone
    lines = out.stderr.splitlines()
    for name, entry in report["stages"].items():
        starts = [ln for ln in lines if re.fullmatch(rf"{STAMP} stage {name} started \(\d+/\d+\)", ln)]
        ends = [ln for ln in lines if re.fullmatch(rf"{STAMP} stage {name} (done in|skipped after) \d+\.\d s.*", ln)]
        assert len(starts) == 1 and len(ends) == 1, (name, out.stderr)
        if entry.get("rows") is not None:
            assert ends[0].endswith(f", {entry['rows']:,} rows")
        assert lines.index(starts[0]) < lines.index(ends[0])
    assert re.search(rf"^{STAMP} running: started$", out.stderr, re.M)
    assert re.search(rf"^{STAMP} running: done in \d+\.\d s$", out.stderr, re.M)
    # the long loops say where they are
    assert re.search(rf"^{STAMP} running: churn: training cutoff 1/\d+", out.stderr, re.M)
    assert re.search(rf"^{STAMP} running: recommender search: rung 1/\d+ \([\d,]+ users\), \w+ \(1/\d+\)$",
                     out.stderr, re.M)


def test_log_format_json_is_one_object_per_line(lake):
    out = behavior("run", "--stages", "features", "--data-dir", str(lake), "--log-format", "json")
    assert out.returncode == 0, out.stderr
    events = [json.loads(line) for line in out.stderr.splitlines()]
    assert all(re.fullmatch(STAMP, e["time"]) for e in events)
    assert [e["event"] for e in events if e["event"].startswith("stage")] == ["stage_start", "stage_end"]
    end = next(e for e in events if e["event"] == "stage_end")
    assert end["stage"] == "features" and end["rows"] == 600 and isinstance(end["seconds"], float)
    assert events[0] == {"time": events[0]["time"], "event": "start", "task": "running"}
    assert events[-1]["event"] == "end" and events[-1]["seconds"] >= end["seconds"]


def test_quiet_prints_no_progress(lake):
    out = behavior("--quiet", "run", "--stages", "features", "--data-dir", str(lake))
    assert out.returncode == 0 and out.stderr == ""


def test_an_unknown_log_format_is_bad_usage(tmp_path):
    out = behavior("--data-dir", str(tmp_path), "--log-format", "xml", "keys", "list")
    assert out.returncode == 2 and "--log-format xml: use one of text, json" in out.stderr


def test_the_spinner_on_a_terminal_shows_the_elapsed_time(tmp_path):
    main, child = pty.openpty()
    proc = subprocess.Popen([*CLI, "--data-dir", str(tmp_path / "d"), "synth", "--out", str(tmp_path / "s"),
                             "--users", "3000", "--months", "12"], stdout=subprocess.DEVNULL, stderr=child,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "100"})
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:   # the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    text = seen.decode(errors="replace")
    assert "generating" in text and re.search(r"\d:\d\d:\d\d", text), text[-500:]
    assert not re.search(STAMP, text)   # no log lines on a terminal
