"""GET /v1/segments and POST /v1/segments/query: known answers computed with pandas on the
bundle's own profiles; opted-out users never appear; pages and CSV cover the same rows."""

import csv
import io
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.conftest import assert_problem, clone_bundle, point_current


@pytest.fixture
def frame(home) -> pd.DataFrame:
    return pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas()


def query(client, home, body, key="all", **headers):
    return client.post("/v1/segments/query", json=body, headers=home.headers(key, **headers))


def all_pages(client, home, body) -> tuple[list[dict], int]:
    rows, cursor, pages = [], None, 0
    while True:
        r = query(client, home, {**body, **({"cursor": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        page = r.json()
        rows += page["rows"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return rows, pages


def test_segments_summary_matches_the_profiles(client, home, frame):
    r = client.get("/v1/segments", headers=home.headers("segments"))
    assert r.status_code == 200
    body = r.json()
    assert body["users"] == len(frame) and body["bundle_version"] == home.active()
    by_name = {s["segment"]: s for s in body["segments"]}
    for name, group in frame.groupby("segment"):
        s = by_name[name]
        assert s["users"] == len(group) and s["opted_out"] == int(group["marketing_opt_out"].sum())
        # shown rounded: money to 2 decimals, probabilities to 4 (api.display)
        assert abs(s["mean_clv"] - group["clv"].mean()) <= 0.005 + 1e-9
        assert abs(s["mean_p_alive"] - group["p_alive"].mean()) <= 0.00005 + 1e-9


CASES = [
    ({"all": [{"field": "segment", "op": "eq", "value": "Champions"}]},
     lambda f: f.segment == "Champions"),
    ({"all": [{"field": "segment", "op": "in", "value": ["Lost", "At Risk"]}, {"field": "clv", "op": "gt", "value": 5}]},
     lambda f: f.segment.isin(["Lost", "At Risk"]) & (f.clv > 5)),
    ({"any": [{"field": "loyalty_tier", "op": "eq", "value": "Platinum"}, {"field": "frequency", "op": "le", "value": 1}]},
     lambda f: (f.loyalty_tier == "Platinum") | (f.frequency <= 1)),
    ({"all": [{"field": "p_alive", "op": "between", "value": [0.2, 0.8]},
              {"any": [{"field": "top_channel", "op": "ne", "value": "app"},
                       {"field": "monetary_value", "op": "is_null"}]}]},
     lambda f: f.p_alive.between(0.2, 0.8) & ((f.top_channel != "app") | f.monetary_value.isna())),
    ({"all": [{"field": "last_purchase_at", "op": "ge", "value": "2024-11-01T00:00:00Z"},
              {"field": "std_gap_days", "op": "is_null", "value": False}]},
     lambda f: (f.last_purchase_at >= pd.Timestamp("2024-11-01", tz="UTC")) & f.std_gap_days.notna()),
    ({}, lambda f: f.user_id.notna()),
]


@pytest.mark.parametrize("flt, expected", CASES)
def test_filters_select_exactly_the_expected_users(client, home, frame, flt, expected):
    want = frame[expected(frame) & ~frame.marketing_opt_out]
    r = query(client, home, {"filter": flt, "limit": 1000})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["total"] == len(want) and body["bundle_version"] == home.active()
    assert sorted(row["user_id"] for row in body["rows"]) == sorted(want.user_id)[:1000]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["clv", "p_alive", "loyalty_score", "frequency", "recency_days"]),
       op=st.sampled_from(["lt", "le", "gt", "ge", "eq", "ne"]), q=st.floats(0, 1))
def test_numeric_conditions_agree_with_pandas(client, home, frame, field, op, q):
    value = float(frame[field].quantile(q))
    col = frame[field]
    mask = {"lt": col < value, "le": col <= value, "gt": col > value, "ge": col >= value,
            "eq": col == value, "ne": col != value}[op]
    r = query(client, home, {"filter": {"all": [{"field": field, "op": op, "value": value}]}, "limit": 1})
    assert r.json()["total"] == int((mask & ~frame.marketing_opt_out).sum())


def test_opted_out_users_never_appear(client, home, frame):
    opted = set(frame.user_id[frame.marketing_opt_out])
    assert opted, "the fixture should have opted-out users"
    rows, _ = all_pages(client, home, {"limit": 1000})
    assert {r["user_id"] for r in rows}.isdisjoint(opted) and len(rows) == len(frame) - len(opted)
    r = query(client, home, {"filter": {"all": [{"field": "marketing_opt_out", "op": "eq", "value": True}]}})
    assert r.json()["total"] == 0 and r.json()["rows"] == []
    r = query(client, home, {"filter": {}}, "export", Accept="text/csv")
    ids = [row["user_id"] for row in csv.DictReader(io.StringIO(r.text))]
    assert set(ids).isdisjoint(opted)


@pytest.mark.parametrize("sort", [
    [{"field": "clv", "desc": True}],
    [{"field": "monetary_value"}, {"field": "segment", "desc": True}],   # nulls in the first key
    [{"field": "std_gap_days", "desc": True}, {"field": "last_purchase_at"}],
])
def test_cursor_pages_walk_every_row_once_in_order(client, home, frame, sort):
    flt = {"all": [{"field": "frequency", "op": "ge", "value": 1}]}
    body = {"filter": flt, "sort": sort, "limit": 37, "fields": ["user_id"] + [s["field"] for s in sort]}
    rows, pages = all_pages(client, home, body)
    want = frame[(frame.frequency >= 1) & ~frame.marketing_opt_out]
    ids = [r["user_id"] for r in rows]
    assert len(ids) == len(set(ids)) == len(want) and pages == math.ceil(len(want) / 37)
    keys = [s["field"] for s in sort] + ["user_id"]
    asc = [not s.get("desc", False) for s in sort] + [True]
    expected = want.sort_values(keys, ascending=asc, na_position="last", kind="stable").user_id.tolist()
    assert ids == expected


def test_csv_export_equals_the_json_pages_and_is_audited(client, home):
    body = {"filter": {"all": [{"field": "segment", "op": "in", "value": ["Champions", "Loyal", "Hibernating"]}]},
            "sort": [{"field": "loyalty_score", "desc": True}],
            "fields": ["user_id", "segment", "loyalty_score", "last_purchase_at", "monetary_value", "frequency"]}
    rows, _ = all_pages(client, home, {**body, "limit": 100})
    r = query(client, home, body, "export", Accept="text/csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    exported = list(csv.DictReader(io.StringIO(r.text)))
    assert len(exported) == len(rows) > 100
    for j, c in zip(rows, exported):
        assert c["user_id"] == j["user_id"] and c["segment"] == j["segment"]
        assert c["last_purchase_at"] == j["last_purchase_at"]
        assert int(c["frequency"]) == j["frequency"]
        assert abs(float(c["loyalty_score"]) - j["loyalty_score"]) <= 0.005 + 1e-9   # JSON shows 2 decimals
        assert (c["monetary_value"] == "") == (j["monetary_value"] is None)
    entry = home.audit()[-1]
    assert entry["key_id"] == "export" and entry["rows"] == len(rows) and entry["completed"] is True
    assert entry["bundle_version"] == home.active() and entry["endpoint"] == "POST /v1/segments/query"
    assert {"time", "key_id", "endpoint", "rows", "bundle_version"} <= set(entry)


def test_csv_needs_the_export_scope_and_has_no_row_cap(client, home, frame):
    p = assert_problem(query(client, home, {}, "segments", Accept="text/csv"), 403)
    assert "segments:export" in p["detail"]
    p = assert_problem(query(client, home, {"limit": 1001}), 422)
    assert p["errors"][0]["field"] == "limit"
    r = query(client, home, {"limit": 1001}, "export", Accept="text/csv")
    assert r.status_code == 200 and len(r.text.splitlines()) == 1 + min(1001, int((~frame.marketing_opt_out).sum()))
    # JSON wins when the client prefers it
    assert query(client, home, {"limit": 1}, "export", Accept="text/csv;q=0.5, application/json").headers[
        "content-type"].startswith("application/json")


def test_queries_are_checked_against_the_bundle_fields(client, home):
    bad = {"filter": {"all": [
        {"field": "segment; DROP TABLE profiles", "op": "eq", "value": "x"},
        {"field": "clv", "op": "gt", "value": "lots"},
        {"field": "marketing_opt_out", "op": "lt", "value": True},
        {"field": "last_purchase_at", "op": "ge", "value": "yesterday"},
        {"field": "segment", "op": "in", "value": []},
        {"field": "clv", "op": "between", "value": [1]},
    ]}, "sort": [{"field": "nope"}], "fields": ["user_id", "password"]}
    p = assert_problem(query(client, home, bad), 422)
    assert [e["field"] for e in p["errors"]] == [
        "filter.all[0].field", "filter.all[1].value", "filter.all[2].op", "filter.all[3].value",
        "filter.all[4].value", "filter.all[5].value", "sort[0].field", "fields[1]"]
    # a value is only ever a value
    r = query(client, home, {"filter": {"all": [{"field": "user_id", "op": "eq", "value": "x' OR '1'='1"}]}})
    assert r.status_code == 200 and r.json()["total"] == 0
    r = query(client, home, {"filter": {"all": [{"field": "segment", "op": "eq", "value": "x' OR '1'='1"}]}})
    assert "unknown segment \"x' OR '1'='1\"" in assert_problem(r, 422)["errors"][0]["message"]


def test_cursors_are_checked(client, home):
    body = {"sort": [{"field": "clv"}], "limit": 5}
    cursor = query(client, home, body).json()["next_cursor"]
    assert_problem(query(client, home, {**body, "cursor": "not-a-cursor"}), 400)
    p = assert_problem(query(client, home, {**body, "sort": [{"field": "p_alive"}], "cursor": cursor}), 400)
    assert "different filter or sort" in p["detail"]
    clone_bundle(home.bundles, home.active(), "v-next")
    point_current(home, "v-next")
    assert client.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
    p = assert_problem(query(client, home, {**body, "cursor": cursor}), 409)
    assert "v-next" in p["detail"]


def test_a_read_only_key_gets_counts_and_no_ids(client, home, frame):
    body = {"filter": {"all": [{"field": "segment", "op": "in", "value": ["Champions", "Loyal"]}]},
            "fields": ["user_id", "clv"], "limit": 1000}
    full = query(client, home, body, "export").json()
    audited = len(home.audit())
    r = query(client, home, body, "segments")
    assert r.status_code == 200
    assert r.json() == {"bundle_version": home.active(), "total": full["total"], "count": 0, "fields": [],
                        "rows": [], "next_cursor": None}
    assert full["total"] > 0 and len(home.audit()) == audited          # no id returned: nothing to audit
    p = assert_problem(query(client, home, {"filter": {"any": [{"all": [
        {"field": "user_id", "op": "eq", "value": frame.user_id.iloc[0]}]}]}}, "segments"), 403)
    assert "segments:export" in p["detail"] and "user_id" in p["detail"]


def test_json_pages_of_ids_need_the_export_scope_and_are_audited(client, home):
    body = {"filter": {"all": [{"field": "segment", "op": "eq", "value": "Champions"}]}, "limit": 40}
    before = len(home.audit())
    rows, pages = all_pages(client, home, body)
    entries = home.audit()[before:]
    assert len(entries) == pages > 1 and sum(e["rows"] for e in entries) == len(rows)
    assert all(e["endpoint"] == "POST /v1/segments/query" and e["format"] == "json" and e["key_id"] == "all"
               and e["bundle_version"] == home.active() for e in entries)
    assert [e["first_page"] for e in entries] == [True] + [False] * (pages - 1)
    text = (home.root / "audit" / "api.log").read_text()
    assert not any(r["user_id"] in text for r in rows)
