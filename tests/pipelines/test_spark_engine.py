"""The Spark engine (local[2]) against the DuckDB engine on the same lake, table by table. (A
whole `behavior run --engine spark`, its bundle equal to DuckDB's and served by the API, is
tests/pipelines/test_engines_same_bundle.py.)

Both engines run the same SQL text (behavior.sql_dialect), so every table must agree row for
row (floats within 1e-9). One SparkSession serves the whole test run (`spark` of
tests/pipelines/conftest.py); the engines reuse it. Skipped only where no Java runtime is found.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from behavior import churn as C
from behavior import promotions as P
from behavior.btyd_select import holdout_purchase_days_sql
from behavior.features import FEATURE_SCHEMA, as_of_literal, user_features
from behavior.merchants import merchant_loyalty
from behavior.recommend.interactions import interactions_sql
from behavior.retention import retention_tables
from behavior.store import erasure_log
from behavior.store.datahome import DataHome
from pipelines.config import Config, EngineConfig, load_config
from pipelines.engines.spark import SparkSettings
from pipelines.ingest import IngestOptions, ingest
from behavior.store.bundle import verify
from pipelines.runner import open_context
from pipelines.synth_files import write_synth


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> DataHome:
    root = tmp_path_factory.mktemp("spark-home")
    write_synth(root / "synth", users=400, months=10, seed=7, promo_assign_rate=0.5)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    return home


@pytest.fixture(scope="module")
def engines(spark, home):
    """(DuckDB context, Spark context) over the same lake at the same default as_of."""
    duck = open_context(home, Config(), None)
    spk = open_context(home, Config(), None, "spark")
    assert spk.engine.spark is spark and not spk.engine.owned   # the shared session
    assert duck.as_of == spk.as_of and duck.tables == spk.tables
    yield duck, spk
    spk.engine.close()
    duck.con.close()


def assert_same(a: pa.Table, b: pa.Table, keys: list[str]) -> None:
    """Same schema, same rows (order by `keys`), floats within 1e-9."""
    assert a.schema == b.schema, f"{a.schema}\n!=\n{b.schema}"
    assert a.num_rows == b.num_rows
    da = a.to_pandas().sort_values(keys).reset_index(drop=True)
    db = b.to_pandas().sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(da, db, check_exact=False, rtol=1e-9, atol=1e-9)


def test_feature_table_is_the_same_on_both_engines(engines):
    duck, spk = engines
    cutoffs = [duck.as_of, duck.as_of - timedelta(days=100, hours=7)]   # a midnight and an intra-day as_of
    for as_of in cutoffs:
        a, b = user_features(duck.engine, "payments", as_of), user_features(spk.engine, "payments", as_of)
        assert b.schema == FEATURE_SCHEMA and a.num_rows > 100
        assert b.column("user_id").to_pylist() == sorted(b.column("user_id").to_pylist())   # ordered by user_id
        # the same doubles, not merely close: a last-bit difference moves the models' bins
        assert a.equals(b), [c for c in a.column_names if not a.column(c).equals(b.column(c))]


def test_cohort_tables_and_churn_labels_are_the_same(engines):
    duck, spk = engines
    for engine, ctx in ((duck.engine, duck), (spk.engine, spk)):
        users = user_features(engine, "payments", ctx.as_of).column("user_id")
        seg = pa.table({"user_id": users, "segment": pa.array([("a", "b", "c")[i % 3] for i in range(len(users))])})
        engine.register("_test_segments", seg)
    try:
        (cohorts, curves) = zip(*(retention_tables(e, ["payments"], "_test_segments") for e in (duck.engine, spk.engine)))
        assert_same(*cohorts, ["cohort_month", "months_since"])
        assert set(curves[1].column("segment").to_pylist()) == {"a", "b", "c"}
        assert_same(*curves, ["segment", "months_since"])
    finally:
        duck.engine.unregister("_test_segments")
        spk.engine.unregister("_test_segments")
    cutoff = duck.as_of - timedelta(days=120)
    a = pa.Table.from_pandas(C.churn_labels(duck.engine, "payments", cutoff), preserve_index=False)
    b = pa.Table.from_pandas(C.churn_labels(spk.engine, "payments", cutoff), preserve_index=False)
    assert 0 < pd.Series(b.column("churned").to_pylist()).mean() < 1
    assert_same(a, b, ["user_id"])


def test_loyalty_holdout_purchase_days_are_the_same(engines):
    duck, spk = engines
    cutoff = duck.as_of - timedelta(days=90)
    a, b = (e.arrow(holdout_purchase_days_sql("payments", as_of_literal(cutoff, dialect=e.dialect),
                                              as_of_literal(duck.as_of, dialect=e.dialect),
                                              int(cutoff.timestamp() // 86400), e.dialect))
            for e in (duck.engine, spk.engine))
    assert a.num_rows > 0 and 0 <= min(a.column("day").to_pylist()) <= max(a.column("day").to_pylist()) < 90
    assert_same(a, b, ["user_id", "day"])


def test_interactions_and_merchants_are_the_same(engines):
    duck, spk = engines
    for start in (None, duck.as_of - timedelta(days=60)):
        a = duck.engine.arrow(interactions_sql(start, duck.as_of))
        b = spk.engine.arrow(interactions_sql(start, duck.as_of, dialect="spark"))
        assert a.num_rows > 0
        assert_same(a, b, ["user_id", "item_id"])
    values = user_features(duck.engine, "payments", duck.as_of).select(["user_id"]).append_column(
        "clv", pa.array([float(i % 7) for i in range(len(user_features(duck.engine, "payments", duck.as_of)))]))
    try:
        for e in (duck.engine, spk.engine):
            e.register("_test_values", values)
        assert_same(merchant_loyalty(duck.engine, "payments", duck.as_of, "_test_values"),
                    merchant_loyalty(spk.engine, "payments", duck.as_of, "_test_values"), ["merchant_id"])
    finally:
        duck.engine.unregister("_test_values")
        spk.engine.unregister("_test_values")


def test_the_recommenders_period_rows_are_the_same_on_both_engines(engines):
    """The local trainer's one scan (`_periods`, read through each engine's `record_batches`)
    gives the same matrices and period purchases on DuckDB and Spark."""
    from pipelines.stages.recommend import _id_maps, _periods

    duck, spk = engines
    end = duck.as_of
    cuts = (end - timedelta(days=60), end - timedelta(days=30))
    a, b = (_periods(ctx, *_id_maps(ctx, end), cuts, end) for ctx in (duck, spk))
    assert a.item_idx.size > 0 and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.item_idx, b.item_idx)
    for k in (1, 2, 3):
        for x, y in zip(a.matrices(k), b.matrices(k)):
            assert np.array_equal(x.indptr, y.indptr) and np.array_equal(x.indices, y.indices)
            assert np.array_equal(x.data, y.data)
    for k in (1, 2):
        assert (a.bought(k) != b.bought(k)).nnz == 0


def test_promotion_windows_are_the_same(engines):
    duck, spk = engines
    promos = duck.engine.arrow("SELECT promotion_id, starts_at, ends_at, coalesce(target, 'any') AS target "
                               "FROM promotions WHERE ends_at <= starts_at + INTERVAL 400 DAY")
    assert promos.num_rows > 0
    try:
        for e in (duck.engine, spk.engine):
            e.register("_test_windows", promos)
        a, b = (e.arrow(P.outcomes_sql("payments", "assignments", "_test_windows", dialect=e.dialect))
                for e in (duck.engine, spk.engine))
        assert a.num_rows > 0 and any(a.column("converted").to_pylist())
        assert_same(a, b, ["promotion_id", "user_id"])
    finally:
        duck.engine.unregister("_test_windows")
        spk.engine.unregister("_test_windows")
    lit = {e.dialect.name: as_of_literal(duck.as_of, dialect=e.dialect) for e in (duck.engine, spk.engine)}
    starts = {e.dialect.name: [as_of_literal(s.as_py(), dialect=e.dialect) for s in promos.column("starts_at")]
              for e in (duck.engine, spk.engine)}
    for sql, keys in ((lambda d: P.category_affinity_sql("payments", lit[d.name], d), ["user_id", "category"]),
                      (lambda d: P.rfm_at_starts_sql("payments", starts[d.name], d), ["user_id"]),
                      (lambda d: P.item_categories_sql("payments", d), ["item_id"]),
                      (lambda d: P.contacts_sql("assignments", "promotions", d), ["user_id"]),
                      (lambda d: P.assignment_checks_sql("assignments", "promotions", d), ["promotion_id"])):
        assert_same(duck.engine.arrow(sql(duck.engine.dialect)), spk.engine.arrow(sql(spk.engine.dialect)), keys)


def test_settings_come_from_the_config_file_and_the_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[engine]\nname = "spark"\nspark_master = "yarn"\nspark_lake = "s3a://bucket/lake"\n'
                 'spark_shuffle_partitions = 64\nspark_conf = {"spark.executor.memory" = "8g"}\n')
    s = SparkSettings.resolve(load_config(f, env={}).engine, default_lake="/data/lake")
    assert (s.master, s.lake, s.shuffle_partitions, dict(s.conf)) == ("yarn", "s3a://bucket/lake", 64,
                                                                      {"spark.executor.memory": "8g"})
    env = {"BEHAVIOR_SPARK_MASTER": "spark://head:7077", "BEHAVIOR_SPARK_LAKE": "hdfs://nn/lake",
           "BEHAVIOR_SPARK_SHUFFLE_PARTITIONS": "200"}
    s = SparkSettings.resolve(load_config(f, env=env).engine, default_lake="/data/lake")
    assert (s.master, s.lake, s.shuffle_partitions) == ("spark://head:7077", "hdfs://nn/lake", 200)
    assert SparkSettings.resolve(EngineConfig(), default_lake="/data/lake").lake == "/data/lake"


def test_an_unknown_engine_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setattr("sys.argv", ["behavior", "--data-dir", str(tmp_path), "run", "--engine", "hadoop"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "--engine hadoop: use one of duckdb, spark" in capsys.readouterr().err


# ---------------------------------------------------------------------- ingest --engine spark

FLOATS = [12345678.0, 4111111111111111.0, -4111111111111111.0, 87654321.0, 0.1, 123.456, -2.5, 12345678.5,
          1e15, 9999999999999998.0, 1e16, -1e17, 1.5e22, 123456789012345.67, 0.001, 0.0001, 0.00012, 1.5e-5,
          -1e-7, 0.0, -0.0, 3.0, 1.7976931348623157e308, float("nan"), float("inf"), float("-inf"), None]


def test_dialect_templates_give_duckdbs_answers(spark):
    """The Spark templates of what ingest's SQL reads: the text of a float (ids, card probe,
    erasure hash), a %Y%m%d date, a whole-text match before a final newline, a row hash with
    NULLs in different places."""
    import duckdb

    from behavior.ids import control_sql, without_controls, without_controls_sql
    from behavior.pii import EMAIL_PATTERN
    from behavior.sql_dialect import DuckDBEngine
    from behavior.validate import id_text_sql
    from pipelines.engines.spark import SparkEngine

    values = pa.table({"x": pa.array(FLOATS, pa.float64()), "_source_row": pa.array(range(len(FLOATS)), pa.int64())})
    answers = {}
    for engine in (DuckDBEngine(duckdb.connect()), SparkEngine(spark, owned=False)):
        d = engine.dialect
        engine.register("_floats", values)
        try:
            texts = engine.arrow(f"SELECT {d.float_text.format('x')} AS t, {id_text_sql('x', pa.float64(), d)} AS id "
                                 "FROM _floats ORDER BY _source_row")
            other = engine.arrow(
                f"SELECT CAST({d.try_strptime(repr('20240105'), ['%Y%m%d'])} AS {d.instant_type}) AS compact, "
                f"CAST({d.try_strptime(repr('2024-1-5'), ['%Y-%m-%d'])} AS {d.instant_type}) AS short, "
                f"{d.full_match(d.literal('a@b.com' + chr(10)), EMAIL_PATTERN[1:-1])} AS email_newline, "
                f"{d.full_match(d.literal('a@b.com'), EMAIL_PATTERN[1:-1])} AS email, "
                f"{d.hash_of(['CAST(NULL AS STRING)', repr('X')])} = {d.hash_of([repr('X'), 'CAST(NULL AS STRING)'])} "
                "AS null_swap_same, "
                + ", ".join(f"{d.printable_ends.format(d.literal(v))} AS ends_{i}"
                            for i, v in enumerate(("u1", "~u!", "caf\u00e9", "\u00e9t", " u1", "u1\n", "", "x", "\x7fu", "u\x7f")))
                + "".join(f", {d.starts_with_year.format(d.literal(v))} AS year_{i}" for i, v in enumerate(YEAR_TEXTS))
                + "".join(f", {control_sql(e, d)} AS control_{i}, {d.may_hold_control.format(e + ', NULL')} AS may_{i}, "
                          f"{without_controls_sql(e, d)} AS bare_{i}" for i, e in enumerate(_control_texts(d))))
        finally:
            engine.unregister("_floats")
        answers[d.name] = texts.to_pydict(), other.to_pylist()[0]
    duck, spk = answers["duckdb"], answers["spark"]
    assert spk[0]["t"] == duck[0]["t"], list(zip(FLOATS, duck[0]["t"], spk[0]["t"]))
    assert duck[0]["t"][:3] == ["12345678.0", "4111111111111111.0", "-4111111111111111.0"]
    assert spk[0]["id"] == duck[0]["id"] and spk[0]["id"][0] == "12345678"
    exact = [{k: v for k, v in row.items() if not k.startswith("may_")} for row in (duck[1], spk[1])]
    assert exact[1] == exact[0]   # the fast first test may differ (DuckDB's also finds '"')
    assert [duck[1][f"ends_{i}"] for i in range(10)] == [True, True, False, False, False, False, False, True, False, False]
    assert [duck[1][f"year_{i}"] for i in range(len(YEAR_TEXTS))] == [True, True, False, False, False, False, False, False]
    assert spk[1]["compact"].day == 5 and spk[1]["short"].day == 5 and spk[1]["email"]
    assert not spk[1]["email_newline"] and not spk[1]["null_swap_same"]
    controls = [duck[1][f"control_{i}"] for i in range(len(CONTROL_TEXTS))]
    assert controls == [False, True, True, False, True, True, False]
    assert [duck[1][f"bare_{i}"] for i in range(len(CONTROL_TEXTS))] == list(map(without_controls, CONTROL_TEXTS))
    assert all(row[f"may_{i}"] for row in (duck[1], spk[1]) for i in range(len(CONTROL_TEXTS)) if controls[i])


# texts for the dialects' starts_with_year (behavior.date_order): only the first two start with a year
YEAR_TEXTS = ("2024-01-30 10:00", "1000-1-5", "0999-01-01", "13-1-24", "12/01/2024", "2024/01/30", "20240130", "")


# ids for behavior.ids.control_sql, without_controls_sql and the dialects' fast first test: u1, u1 NUL,
# u SOH 2, a"b, x DEL, a tab inside, café
CONTROL_TEXTS = ("u1", "u1\x00", "u\x012", 'a"b', "x\x7f", "u\tv", "caf\u00e9")


def _control_texts(d) -> list[str]:
    """CONTROL_TEXTS as SQL (a NUL through chr: it cannot be inside a literal)."""
    return [f"concat({d.literal(v[:-1])}, chr(0))" if v.endswith("\x00") else d.literal(v) for v in CONTROL_TEXTS]

MESSY = os.path.join(os.path.dirname(__file__), "..", "fixtures", "messy")
RETAIL = {"payment_id": "InvoiceNo", "item_id": "StockCode", "paid_at": "InvoiceDate", "user_id": "CustomerID",
          "unit_price": "UnitPrice", "category": "Description"}
SHOP = {"payment_id": "Bestellnr", "line_no": "Position", "user_id": "Kunde", "item_id": "Artikel",
        "category": "Kategorie", "quantity": "Menge", "amount": "Betrag", "paid_at": "Datum", "channel": "Kanal"}
EXPORTS = os.path.join(os.path.dirname(__file__), "..", "fixtures", "exports")
UK_SHOP = {"payment_id": "order_id", "user_id": "customer", "item_id": "product", "amount": "total", "paid_at": "date"}
# (file or files of one call, options): every reader path, a re-ingest (duplicates against the
# lake), derived line numbers, a foreign currency, a card number, day-first dates, a malformed
# record, an upsert; typed floats, a %Y%m%d date, NULLs in other places, a trailing newline;
# missing-value markers and ids with other whitespace, a column decided day-first, 1990s
# epochs, and --replace (twice in one call: a line replaced in the lake, then in the staging)
MESSY_CALLS = [
    ("app_payments.jsonl", IngestOptions(defaults={"currency": "EUR"})),
    ("shop_export_cp1252.csv", IngestOptions(mapping=SHOP, dayfirst=True)),
    ("bom_tabs.tsv", IngestOptions(mapping={"payment_id": "order_id", "user_id": "user", "item_id": "sku",
                                            "unit_price": "price", "quantity": "qty", "paid_at": "created"})),
    ("online_retail.csv", IngestOptions(mapping=RETAIL)),
    ("app_payments.jsonl", IngestOptions()),
    ("users.csv", IngestOptions(table="users")),
    ("users.csv", IngestOptions(table="users")),
    (("floats.parquet", "newline.jsonl"), IngestOptions(date_format="%Y%m%d")),
    ("r_retail_na.csv", IngestOptions(mapping=RETAIL)),
    ("excel_export.tsv", IngestOptions(mapping={"payment_id": "order", "user_id": "customer", "item_id": "sku",
                                                "paid_at": "date", "merchant_id": "merchant"})),
    ("uk_shop_dayfirst.csv", IngestOptions(mapping=UK_SHOP)),
    ("ratings_1997.tsv", IngestOptions(mapping={"user_id": "col1", "item_id": "col2", "paid_at": "col4"})),
    (("uk_fixed.csv", "uk_fixed_again.csv"), IngestOptions(mapping=UK_SHOP, replace=True)),
]
USERS_CSV = "user_id,signup_at,marketing_opt_out\nu1,2024-01-02,yes\nu2,02/03/2024,0\nu1,2024-01-02,no\nu3,,maybe\n"
ERASED = "12345678"   # erased before the ingest; floats.parquet has its rows as the float 12345678.0
CARD_AMOUNT = 4222222222222.0   # a Luhn-valid (13-digit) card number in a DOUBLE amount: Spark wrote 4.222222222222E12


def _write_extra_inputs(folder: Path) -> None:
    """Inputs where the engines' SQL used to differ: typed float64 ids and amounts (Spark wrote
    1.2345678E7: the erased user came back, the card escaped the probe), `%Y%m%d` dates (Spark
    read none), an id with a trailing newline (Java's `$` matched before it), and two lines of
    one payment that differ only in which column is NULL (a guard: two lines, both stored; the
    payments columns that may be NULL are not next to each other, so Spark's old hash, blind
    to NULL places, kept them apart too - the direct test below shows where it did not)."""
    pq.write_table(pa.table({
        "payment_id": ["f1", "f2", "f3", "f4", "f4", "f5"],
        "user_id": pa.array([12345678.0, 87654321.0, 87654321.0, 87654321.0, 87654321.0, 123.25], pa.float64()),
        "item_id": ["i1", "i1", "i2", "i3", "i3", "i1"],
        "category": ["c", "c", "c", None, "X", "c"],
        "promotion_id": [None, None, None, "X", None, None],
        "amount": pa.array([10.5, 12345678.5, CARD_AMOUNT, 2.0, 2.0, 1e-5], pa.float64()),
        "paid_at": ["20240105", "20240106", "20240106", "20240107", "20240107", "20241231"],
    }), folder / "floats.parquet")
    header = "order_id,customer,product,total,date\n"
    (folder / "uk_fixed.csv").write_text(header + "A1,c1,p1,11.00,05/03/2025 09:00\nA2,c2,p2,0.00,13/01/2025 10:30\n")
    (folder / "uk_fixed_again.csv").write_text(header + "A1,c1,p1,12.00,25/03/2025 09:00\nA4,c3,p1,7.50,02/03/2025\n")
    (folder / "newline.jsonl").write_text(
        json.dumps({"payment_id": "n1", "user_id": "a@b.com\n", "item_id": "i1", "amount": 3, "paid_at": "20240108"})
        + "\n")


def _table(root, name: str) -> pd.DataFrame:
    files = sorted(root.glob(f"{name}/**/*.parquet"))
    if not files:
        return pd.DataFrame()
    df = pa.concat_tables([pq.read_table(f, partitioning=None) for f in files]).to_pandas()
    return df.sort_values(sorted(c for c in df.columns if c not in ("ingested_at", "ingest_id", "detail",
                                                                     "raw"))).reset_index(drop=True)


@pytest.mark.slow
def test_ingest_on_spark_stores_and_quarantines_what_duckdb_does(spark, tmp_path):
    """The messy fixtures into two data homes, one per engine: same lake, same quarantine (rows,
    reasons, details, masked values), same accounting."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "users.csv").write_text(USERS_CSV)
    _write_extra_inputs(tmp_path / "in")

    def paths(files: str | tuple[str, ...]) -> list[Path]:
        return [next(Path(d) / f for d in (tmp_path / "in", MESSY, EXPORTS) if (Path(d) / f).exists())
                for f in ((files,) if isinstance(files, str) else files)]

    reports = {}
    for engine in ("duckdb", "spark"):
        home = DataHome(tmp_path / engine)
        erasure_log.record(home, [ERASED])
        reports[engine] = [ingest(home, paths(f), o, engine=engine) for f, o in MESSY_CALLS]
    for a, b in zip(reports["duckdb"], reports["spark"]):
        assert a["engine"]["name"] == "duckdb" and b["engine"]["name"] == "spark"
        strip = ("ingest_id", "seconds", "engine")
        assert {k: v for k, v in a.items() if k not in strip} == {k: v for k, v in b.items() if k not in strip}
    total = {k: sum(r[k] for r in reports["spark"]) for k in ("read", "accepted", "replaced", "duplicates", "rejected")}
    assert total["read"] == total["accepted"] + total["replaced"] + total["duplicates"] + total["rejected"]
    assert total["duplicates"] >= 3 and total["accepted"] > 10
    reasons = {k for r in reports["spark"] for k in r["rejected_by_reason"]}
    assert {"card_number", "currency_mismatch", "malformed_row", "bad_status"} <= reasons
    fixed = reports["spark"][-1]["files"]
    assert [(f["accepted"], f["replaced"], f["duplicates"]) for f in fixed] == [(0, 1, 1), (0, 2, 0)]
    extra = reports["spark"][-6]["files"]
    assert extra[0]["rejected_by_reason"] == {"card_number": 1, "erased_user": 1}
    assert (extra[0]["accepted"], extra[0]["duplicates"], extra[1]["accepted"]) == (4, 0, 0)
    assert extra[1]["rejected_by_reason"] == {"user_id_email": 1}   # an e-mail with a final newline
    duck, spk = DataHome(tmp_path / "duckdb").lake, DataHome(tmp_path / "spark").lake
    for name in ("payments", "users", "_rejected/payments", "_rejected/users"):
        a, b = _table(duck, name), _table(spk, name)
        assert len(a) > 0, name
        if "ingest_id" in a:   # quarantine: the same rows, reasons, details and (masked) values
            a, b = a.drop(columns=["ingest_id", "ingested_at"]), b.drop(columns=["ingest_id", "ingested_at"])
            a["source_file"] = a["source_file"].str.replace("/duckdb/", "/")
        pd.testing.assert_frame_equal(a, b, check_dtype=True)
    stored = _table(spk, "payments")
    assert [str(a) for a in stored.loc[stored["payment_id"] == "A1", "amount"]] == ["12.00"]   # one line, replaced
    assert not {"NA", "#N/A", "C-3\u00a0", " C-3"} & set(stored["user_id"]) and "C-3" in set(stored["user_id"])
    mine = stored[stored["payment_id"].str.startswith(("f", "n"))]
    assert sorted(mine["user_id"].unique()) == ["123.25", "87654321"]
    assert sorted(mine[mine["payment_id"] == "f4"]["line_no"]) == [1, 2]
    assert not (stored["amount"].astype(float).abs() == CARD_AMOUNT).any()   # the card is not stored as an amount
    assert not list(spk.rglob("*.crc")) and not list(spk.rglob("_SUCCESS")) and not list(spk.rglob("*.tmp"))
    assert not (spk / "_txn").exists() or not any((spk / "_txn").iterdir())
    blob = b"".join(p.read_bytes() for p in spk.rglob("*") if p.is_file())
    assert b"4111111111111111" not in blob and b"4111 1111 1111 1111" not in blob and b"4222222222222" not in blob


def test_a_cut_journal_is_an_error_naming_the_file(spark, tmp_path):
    """A commit journal cut by a crash (written in place by older versions; now written to a
    temporary name and renamed) stops recovery with the file named and the way out, as the
    local lake does, not a bare JSON error; a leftover temporary is dropped."""
    from pipelines.engines.spark import SparkEngine, SparkLake
    from pipelines.lake import LakeError, recover

    for lake in (tmp_path / "spark", tmp_path / "local"):
        (lake / "_txn" / "20240101T000000-abc").mkdir(parents=True)
        (lake / "_txn" / "20240101T000000-abc.commit").write_text('{"id": "20240101T000000-abc", "move": [["_t')
        (lake / "_txn" / ".x.commit.1234.tmp").write_text('{"id": ')
    with pytest.raises(LakeError, match=r"_txn/20240101T000000-abc\.commit is damaged.*delete the journal"):
        SparkLake(SparkEngine(spark, owned=False, settings=SparkSettings(lake=str(tmp_path / "spark"))))
    with pytest.raises(LakeError, match=r"_txn/20240101T000000-abc\.commit is damaged.*delete the journal"):
        recover(tmp_path / "local")
    (tmp_path / "spark" / "_txn" / "20240101T000000-abc.commit").unlink()   # the way out
    lake = SparkLake(SparkEngine(spark, owned=False, settings=SparkSettings(lake=str(tmp_path / "spark"))))
    with lake.transaction() as txn:
        lake.write_meta(txn, {"currency": "EUR"})
    assert lake.read_meta() == {"currency": "EUR"}   # Spark's text reader read `_lake.json` as empty
    assert sorted(p.name for p in (tmp_path / "spark").rglob("*")) == ["_lake.json", "_txn"]


@pytest.mark.slow
def test_ingest_then_run_on_spark_from_the_cli_to_a_hadoop_lake_uri(spark, tmp_path, monkeypatch):
    """`behavior ingest --engine spark` into a lake named by a file:// URI (a Hadoop path, from
    the environment) outside the data home, then `behavior run --engine spark` on it publishes
    a bundle whose profiles carry the users' opt-outs (read through Spark, not a local file)."""
    from pipelines.cli import app

    write_synth(tmp_path / "synth", users=100, months=6, seed=3, promo_assign_rate=0.5)
    data = DataHome(tmp_path / "data")
    lake = tmp_path / "remote-lake"
    monkeypatch.setenv("BEHAVIOR_SPARK_LAKE", lake.as_uri())
    out = CliRunner().invoke(app, ["--data-dir", str(data.root), "--quiet", "ingest", str(tmp_path / "synth"),
                                   "--engine", "spark", "--json"])
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    assert rep["engine"]["name"] == "spark" and rep["engine"]["lake"] == lake.as_uri()
    assert rep["read"] == rep["accepted"] + rep["duplicates"] + rep["rejected"] and rep["accepted"] > 500
    assert not data.lake.exists() or not list(data.lake.rglob("*.parquet"))   # nothing in the local lake
    assert sorted(p.name for p in lake.iterdir() if p.name != "_txn") == sorted(  # no .crc, no _SUCCESS
        ["_lake.json", "payments", "items", "users", "promotions", "assignments"])
    again = CliRunner().invoke(app, ["--data-dir", str(data.root), "--quiet", "ingest",
                                     str(tmp_path / "synth" / "payments.parquet"), "--engine", "spark", "--json"])
    assert again.exit_code == 0 and json.loads(again.stdout)["duplicates"] == json.loads(again.stdout)["read"]
    run = CliRunner().invoke(app, ["--data-dir", str(data.root), "--quiet", "run", "--engine", "spark", "--json",
                                   "--stages", "features,loyalty,segments,churn,profiles"])
    assert run.exit_code == 0, run.output
    bundle = data.bundles / json.loads(run.stdout)["bundle_version"]
    verify(bundle)
    opted = pq.read_table(tmp_path / "synth" / "users.parquet").to_pandas().query("marketing_opt_out")["user_id"]
    profiles = pq.read_table(bundle / "profiles.parquet").to_pandas().set_index("user_id")
    assert len(opted) > 0 and profiles.loc[profiles.index.intersection(opted), "marketing_opt_out"].all()
    assert profiles["marketing_opt_out"].sum() == len(profiles.index.intersection(opted))


def test_ingest_engine_errors(tmp_path, monkeypatch, capsys):
    from pipelines.cli import main

    monkeypatch.setattr("sys.argv", ["behavior", "--data-dir", str(tmp_path), "ingest", MESSY + "/headerless.csv",
                                     "--engine", "hadoop"])
    with pytest.raises(SystemExit) as exit_:
        main()
    assert exit_.value.code == 2 and "--engine hadoop: use one of duckdb, spark" in capsys.readouterr().err
