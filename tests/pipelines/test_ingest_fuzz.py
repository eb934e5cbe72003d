"""Bad data at scale: random rows and random byte noise never crash ingest, and every row is
accounted for (stored, duplicate or quarantined), with the lake holding exactly what was stored."""

import os
import tempfile
from pathlib import Path

import duckdb
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from behavior.errors import BehaviorError
from behavior.store.datahome import DataHome
from pipelines.ingest import IngestOptions, ingest
from pipelines.lake import scan_sql, table_files

FUZZ_EXAMPLES = int(os.environ.get("BEHAVIOR_FUZZ_EXAMPLES", "40"))  # raise it to fuzz longer
HEADER = "payment_id,user_id,item_id,category,amount,currency,paid_at,channel,status"

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
amount = st.one_of(text, st.decimals(-10**6, 10**6, places=2).map(str), st.just("4111 1111 1111 1111"))
when = st.one_of(text, st.datetimes().map(lambda d: d.isoformat()), st.just("31/12/2024"), st.just(""))
row = st.tuples(st.one_of(text, st.just("")), text, text, text, amount, st.sampled_from(["EUR", "usd", "", "XXX"]),
                when, st.sampled_from(["app", "web", "pos", "??", ""]),
                st.sampled_from(["success", "failed", "refund", "", "paid"]))


def _csv_field(v: str) -> str:
    return '"' + v.replace('"', '""') + '"' if any(c in v for c in ',"\r\n') else v


def _stored(home: DataHome) -> int:
    if not table_files(home.lake, "payments"):
        return 0
    return duckdb.sql(f"SELECT count(*) FROM {scan_sql(home.lake, 'payments')}").fetchall()[0][0]


def _ingest_accounts(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.csv"
        path.write_bytes(data)
        home = DataHome(Path(tmp) / "data")
        try:
            rep = ingest(home, [path], IngestOptions(defaults={"currency": "EUR"}))
        except BehaviorError as exc:     # an unreadable file: a clear error, and nothing stored
            assert str(exc) and _stored(home) == 0
            return
        assert rep["read"] == rep["accepted"] + rep["duplicates"] + rep["rejected"]
        assert _stored(home) == rep["accepted"]
        again = ingest(home, [path], IngestOptions(defaults={"currency": "EUR"}))          # the same rows again add nothing
        assert again["accepted"] == 0 and _stored(home) == rep["accepted"]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(row, min_size=0, max_size=25))
@example([("", "0", "0", "\xadqE", "", "EUR", "2000-01-01T00:00:00", "", "refund")])  # found: an empty
def test_random_rows_are_all_accounted_for(rows):                                      # payment_id stayed null
    lines = [HEADER] + [",".join(_csv_field(v) for v in r) for r in rows]
    _ingest_accounts(("\n".join(lines) + "\n").encode("utf-8"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)), max_size=6))
def test_byte_noise_in_a_valid_file_never_crashes(noise):
    good = [HEADER] + [f"p{i},u{i % 7},i{i % 5},food,{i}.50,EUR,2025-01-{1 + i % 28:02d}T10:00:00Z,app,success"
                       for i in range(30)]
    data = bytearray(("\n".join(good) + "\n").encode())
    for pos, junk in noise:
        at = pos % (len(data) + 1)
        data[at:at] = junk
    _ingest_accounts(bytes(data))
