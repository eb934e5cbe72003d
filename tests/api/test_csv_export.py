"""The CSV export defuses spreadsheet formulas in text cells (OWASP: a leading `'`) and leaves
numbers, negative ones included, as numbers."""

import csv
import io

import pyarrow as pa
import pyarrow.compute as pc

from tests.api.conftest import clone_bundle, point_current

FORMULAS = ["=cmd|' /C calc'!A0", "+41 555", "-1+1", "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]


def plant(table: pa.Table) -> pa.Table:
    """Formulas in the segment, tier and top category of the first opted-in users, and a negative
    net spend."""
    opted_in = pc.indices_nonzero(pc.invert(table.column("marketing_opt_out").fill_null(True))).to_pylist()
    rows = opted_in[: len(FORMULAS)]
    for name in ("segment", "loyalty_tier", "top_category"):
        values = table.column(name).to_pylist()
        for i, formula in zip(rows, FORMULAS):
            values[i] = formula
        table = table.set_column(table.column_names.index(name), name, pa.array(values, table.schema.field(name).type))
    spend = table.column("net_spend").to_pylist()
    spend[rows[0]] = -12.5
    return table.set_column(table.column_names.index("net_spend"), "net_spend", pa.array(spend, pa.float64()))


def test_formulas_are_quoted_and_numbers_stay_numbers(client, home):
    clone_bundle(home.bundles, home.active(), "v-formulas", profiles=plant)
    point_current(home, "v-formulas")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    body = {"filter": {"all": [{"field": "segment", "op": "in", "value": FORMULAS}]},
            "fields": ["user_id", "segment", "loyalty_tier", "top_category", "net_spend"]}
    r = client.post("/v1/segments/query", json=body, headers=home.headers("export", Accept="text/csv"))
    assert r.status_code == 200, r.text
    rows = list(csv.DictReader(io.StringIO(r.text, newline="")))
    assert sorted(row["segment"] for row in rows) == sorted("'" + f for f in FORMULAS)
    for row in rows:
        for name in ("segment", "loyalty_tier", "top_category"):
            assert row[name].startswith("'") and row[name][1:] in FORMULAS, row
    assert "-12.5" in [row["net_spend"] for row in rows]
    # JSON is not a spreadsheet: the values come back as they are
    page = client.post("/v1/segments/query", json=body, headers=home.headers("export")).json()
    assert sorted(row["segment"] for row in page["rows"]) == sorted(FORMULAS)
