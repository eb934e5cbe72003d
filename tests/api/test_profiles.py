"""GET /v1/users/{user_id}/profile: the bundle's row, typed."""

import math

import pyarrow.parquet as pq

from api.display import decimals
from api.models import Profile
from tests.api.conftest import assert_problem


def _parquet_row(home, user_id):
    t = pq.read_table(home.bundles / home.active() / "profiles.parquet")
    return [row for row in t.to_pylist() if row["user_id"] == user_id][0]


def test_profile_is_the_bundle_row(client, home):
    user = "u0000007"
    r = client.get(f"/v1/users/{user}/profile", headers=home.headers("profiles"))
    assert r.status_code == 200
    got, want = r.json(), _parquet_row(home, user)
    # nothing notified since; recency: the deprecated alias of purchase_span_days
    assert set(got) == set(want) | {"live_since", "recency"} and got["live_since"] is None
    for name, value in want.items():
        if hasattr(value, "isoformat"):
            assert got[name].endswith("Z") and got[name][:19] == value.isoformat()[:19], name
        elif isinstance(value, float):
            # shown rounded by kind (api.display)
            assert (got[name] is None and math.isnan(value)) or got[name] == round(value, decimals(name)), name
        else:
            assert got[name] == value, name


def test_every_profile_fits_the_documented_model(home, client):
    from api.bundle import load_bundle

    b = load_bundle(home.bundles / home.active())
    for user in list(b.profiles.index)[:: max(1, len(b.profiles) // 200)]:
        Profile.model_validate(b.profiles.row(user))


def test_unknown_user_is_a_404_problem(client, home):
    p = assert_problem(client.get("/v1/users/nobody/profile", headers=home.headers()), 404)
    assert "nobody" in p["detail"] and p["type"].endswith("unknown-user")


def test_profile_and_query_rows_agree(client, home):
    fields = list(client.get("/v1/model", headers=home.headers()).json()["profile_fields"])
    user = next(u for u in (f"u{i:07d}" for i in range(1, 100))
                if client.get(f"/v1/users/{u}/profile", headers=home.headers()).json().get("marketing_opt_out") is False)
    profile = client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()
    body = {"filter": {"all": [{"field": "user_id", "op": "eq", "value": user}]}, "fields": fields}
    row = client.post("/v1/segments/query", json=body, headers=home.headers()).json()["rows"][0]
    assert row == {f: profile[f] for f in fields}
