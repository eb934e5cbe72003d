"""Segment queries reject a value an enumerated profile field cannot take (a 422 naming the field,
the valid values and the closest one), instead of matching no row in silence."""

import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.query import ENUM_VOCABULARIES
from tests.api.conftest import assert_problem


def query(client, home, flt):
    return client.post("/v1/segments/query", json={"filter": flt}, headers=home.headers("all"))


def test_a_wrongly_cased_segment_is_a_422_with_the_close_match(client, home):
    r = query(client, home, {"all": [{"field": "segment", "op": "eq", "value": "champions"}]})
    body = assert_problem(r, 422)
    (err,) = body["errors"]
    assert err["field"] == "filter.all[0].value"
    assert err["message"].startswith("unknown segment 'champions'; did you mean 'Champions'? The segment values are: ")
    assert "'Lost'" in err["message"] and "'At Risk'" in err["message"]


@pytest.mark.parametrize("field", ["segment", "loyalty_tier", "top_category", "top_channel"])
def test_each_enumerated_field_is_checked_for_eq_ne_and_in(client, home, field):
    for cond, where in (({"op": "eq", "value": "no-such-value"}, "filter.any[0].value"),
                        ({"op": "ne", "value": "no-such-value"}, "filter.any[0].value"),
                        ({"op": "in", "value": ["no-such-value"]}, "filter.any[0].value[0]")):
        r = query(client, home, {"any": [{"field": field, **cond}]})
        (err,) = assert_problem(r, 422)["errors"]
        assert err["field"] == where and f"unknown {field} 'no-such-value'. The {field} values are: " in err["message"]


def test_the_valid_values_are_the_bundles_and_the_vocabularys(client, home):
    table = pq.read_table(home.bundles / home.active() / "profiles.parquet", columns=["top_category", "segment"])
    category = table.column("top_category").drop_null()[0].as_py()
    absent = [s for s in ENUM_VOCABULARIES["segment"] if s not in set(table.column("segment").to_pylist())]
    values = [category, "At Risk", *absent]
    r = query(client, home, {"all": [{"field": "top_category", "op": "eq", "value": category},
                                     {"field": "segment", "op": "in", "value": values[1:]}]})
    assert r.status_code == 200, r.text
    r = query(client, home, {"all": [{"field": "loyalty_tier", "op": "in", "value": ["Gold", "gold", "Platnum"]}]})
    errs = assert_problem(r, 422)["errors"]
    assert [e["field"] for e in errs] == ["filter.all[0].value[1]", "filter.all[0].value[2]"]
    assert "did you mean 'Gold'?" in errs[0]["message"] and "did you mean 'Platinum'?" in errs[1]["message"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.text(max_size=20))
def test_any_segment_value_is_either_valid_or_named_as_unknown(client, home, value):
    r = query(client, home, {"all": [{"field": "segment", "op": "eq", "value": value}]})
    if value in ENUM_VOCABULARIES["segment"]:
        assert r.status_code == 200
    elif r.status_code == 422:
        msgs = [e["message"] for e in r.json()["errors"]]
        assert any(m.startswith(f"unknown segment {value!r}") for m in msgs) or "surrogate" in " ".join(msgs)
    else:
        raise AssertionError(r.text)
