"""Input the segment query cannot use is a 422 (or the 400 of a forged cursor) naming the field,
never a 500 nor a cut-off 200: integers too big for a float or a BIGINT, lone UTF-16 surrogates,
limits past what DuckDB takes, and JSON true where a number belongs."""

import base64
import json

import pytest

from api.models import SegmentQuery
from api.query import query_hash
from tests.api.conftest import assert_problem

SURROGATE = "\ud800"


def post(client, home, body, key="all", **headers):
    """POST the body as JSON text with \\uXXXX escapes (httpx would refuse to encode a lone surrogate)."""
    return client.post("/v1/segments/query", content=json.dumps(body),
                       headers=home.headers(key, **{"Content-Type": "application/json", **headers}))


def fields_of(problem) -> list[str]:
    return [e["field"] for e in problem["errors"]]


@pytest.mark.parametrize("condition, field", [
    ({"field": "clv", "op": "gt", "value": 10**400}, "filter.all[0].value"),
    ({"field": "frequency", "op": "eq", "value": 2**63}, "filter.all[0].value"),
    ({"field": "frequency", "op": "ge", "value": -2**63 - 1}, "filter.all[0].value"),
    ({"field": "clv", "op": "in", "value": [1, 10**30]}, "filter.all[0].value[1]"),
    ({"field": "clv", "op": "between", "value": [0, 10**309]}, "filter.all[0].value[1]"),
    ({"field": "segment", "op": "eq", "value": "Champ" + SURROGATE}, "filter.all[0].value"),
    ({"field": "segment", "op": "in", "value": ["Champions", SURROGATE + "x"]}, "filter.all[0].value"),
    ({"field": "seg" + SURROGATE, "op": "eq", "value": "x"}, "filter.all[0].field"),
])
def test_filter_values_no_column_can_hold_are_422(client, home, condition, field):
    p = assert_problem(post(client, home, {"filter": {"all": [condition]}}), 422)
    assert fields_of(p) == [field], p


def test_whole_numbers_in_range_and_big_decimals_still_work(client, home):
    r = post(client, home, {"filter": {"all": [{"field": "frequency", "op": "le", "value": 2**63 - 1},
                                               {"field": "clv", "op": "lt", "value": 1e300}]}, "limit": 1})
    assert r.status_code == 200 and r.json()["total"] > 0


def test_surrogates_elsewhere_in_the_body_are_422(client, home):
    p = assert_problem(post(client, home, {"sort": [{"field": SURROGATE}]}), 422)
    assert fields_of(p) == ["sort[0].field"]
    p = assert_problem(post(client, home, {"fields": ["user_id", SURROGATE]}), 422)
    assert fields_of(p) == ["fields[1]"]
    p = assert_problem(post(client, home, {"cursor": SURROGATE}), 422)
    assert fields_of(p) == ["cursor"]
    p = assert_problem(post(client, home, {"filter": {SURROGATE: []}}), 422)
    assert fields_of(p) == ["filter"]


def forged(version: str, body: dict, keys: list) -> str:
    qhash = query_hash(SegmentQuery.model_validate(body))
    raw = json.dumps({"v": version, "q": qhash, "k": keys}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("keys", [["Champions" + SURROGATE, "u1"], [None, "u" + SURROGATE], [None, 10**30]])
def test_a_forged_cursor_is_the_invalid_cursor_problem_naming_the_cursor(client, home, keys):
    body = {"sort": [{"field": "segment"}], "limit": 5}
    p = assert_problem(post(client, home, {**body, "cursor": forged(home.active(), body, keys)}), 400)
    assert p["type"].endswith("invalid-cursor") and fields_of(p) == ["cursor"]


@pytest.mark.parametrize("accept", ["application/json", "text/csv"])
@pytest.mark.parametrize("limit", [2**63, 2**64 + 1, True, 5.0, "5"])
def test_a_limit_that_is_not_a_whole_number_duckdb_takes_is_422(client, home, accept, limit):
    p = assert_problem(post(client, home, {"limit": limit}, "export", Accept=accept), 422)
    assert fields_of(p) == ["limit"]


def test_the_largest_limit_exports_every_row(client, home):
    r = post(client, home, {"limit": 2**63 - 1}, "export", Accept="text/csv")
    total = post(client, home, {"limit": 1}).json()["total"]
    assert r.status_code == 200 and len(r.text.splitlines()) == 1 + total


def test_true_is_not_a_number_in_target_requests(client, home):
    body = {"economics": {"value_per_conversion": True}, "budget": {"users": True}}
    r = client.post("/v1/promotions/targets", json=body, headers=home.headers("promo"))
    assert sorted(fields_of(assert_problem(r, 422))) == ["budget.users", "economics.value_per_conversion"]
