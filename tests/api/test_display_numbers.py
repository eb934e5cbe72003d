"""Numbers as people read them: profiles, query rows, /v1/model and target lists are rounded by
kind (money and scores 2 decimals, probabilities 4), counts are integers; a holdout too small to
measure a list is said in its notes."""

import json
import math
import re

import pyarrow.parquet as pq
from hypothesis import given, strategies as st

from api.display import decimals, metrics, parameters, shown

ECON = {"value_per_conversion": 20.0, "coupon_cost": 3.0, "contact_cost": 0.1}


def _places(x: float) -> int:
    text = repr(x)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def _profiles(home):
    return pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas().set_index("user_id")


def test_a_profile_shows_scores_to_2_and_probabilities_to_4_decimals(client, home):
    frame = _profiles(home)
    uid = frame["loyalty_score"].map(_places).idxmax()   # a user whose score has many decimals in the bundle
    assert _places(frame.loc[uid, "loyalty_score"]) > 2
    body = client.get(f"/v1/users/{uid}/profile", headers=home.headers("profiles")).json()
    assert body["loyalty_score"] == round(frame.loc[uid, "loyalty_score"], 2)
    assert body["p_alive"] == round(frame.loc[uid, "p_alive"], 4)
    assert body["clv"] == round(frame.loc[uid, "clv"], 2)
    assert body["churn_probability"] == round(frame.loc[uid, "churn_probability"], 4)
    for name, value in body.items():
        if isinstance(value, float):
            assert _places(value) <= decimals(name), (name, value)
    assert isinstance(body["frequency"], int)


def test_query_rows_and_segment_means_are_rounded(client, home):
    r = client.post("/v1/segments/query", json={"fields": ["loyalty_score", "p_alive", "clv"], "limit": 200},
                    headers=home.headers("export"))   # rows of per-user fields are an export
    rows = r.json()["rows"]
    assert rows and all(_places(row["loyalty_score"]) <= 2 and _places(row["p_alive"]) <= 4 and _places(row["clv"]) <= 2
                        for row in rows if row["p_alive"] is not None)
    for seg in client.get("/v1/segments", headers=home.headers("segments")).json()["segments"]:
        assert _places(seg["mean_loyalty_score"]) <= 2 and _places(seg["mean_p_alive"]) <= 4


def test_model_shows_counts_as_integers_and_rounded_metrics(client, home):
    r = client.get("/v1/model", headers=home.headers("all"))
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body["churn"]["n"], int) and not re.search(r'"n":\s*\d+\.0\b', r.text)
    metrics_ = body["recommend"]["metrics"]
    assert isinstance(metrics_["users"], int) and isinstance(metrics_["configs"], int)
    assert all(_places(v) <= (3 if k.endswith("seconds") else 4) for k, v in metrics_.items() if isinstance(v, float))
    assert all(len(re.sub(r"^0\.0*|\.|-", "", repr(v))) <= 4 for v in body["loyalty"]["bgnbd"].values())


def test_a_budget_too_small_for_a_holdout_says_so(client, home):
    r = client.post("/v1/promotions/targets", headers=home.headers("promo"),
                    json={"target": "any", "economics": ECON, "budget": {"users": 5}, "holdout_share": 0.1})
    body = r.json()
    assert r.status_code == 200 and body["counts"]["targets"] == 5 and body["counts"]["holdout"] < 10
    note = [n for n in body["notes"] if "held back" in n]
    assert len(note) == 1 and "ask for about 90 targets" in note[0]
    for user in body["targets"]:
        assert _places(user["score"]) <= 2 and _places(user["p_redeem"]) <= 4
    big = client.post("/v1/promotions/targets", headers=home.headers("promo"),
                      json={"target": "any", "economics": ECON, "budget": {"users": 5}, "holdout_share": 0.0})
    assert not [n for n in big.json()["notes"] if "held back" in n]


@given(name=st.sampled_from(["clv", "p_alive", "loyalty_score", "recency_days", "fit_seconds", "other"]),
       value=st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9))
def test_shown_is_the_nearest_number_of_its_decimals(name, value):
    d = decimals(name)
    assert shown(name, value) == round(value, d)
    assert abs(shown(name, value) - value) <= 0.5 * 10 ** -d + 1e-6 * abs(value)


def test_report_numbers_keep_counts_as_integers():
    assert metrics({"n": 60000, "auc": 0.712345, "fit_seconds": 0.0123, "ok": True, "x": "a"}) == \
        {"n": 60000, "auc": 0.7123, "fit_seconds": 0.012}
    assert parameters({"r": 0.000123456, "alpha": 41.93456}) == {"r": 0.0001235, "alpha": 41.93}
    assert metrics({"bad": math.nan}) is None and json.dumps(metrics({"n": 4})) == '{"n": 4}'
