"""POST /v1/promotions/targets and GET /v1/promotions/{id}/effectiveness on the published bundle."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from tests.api.conftest import assert_problem

ECON = {"value_per_conversion": 30.0, "coupon_cost": 2.0, "contact_cost": 0.1}


def _report(home) -> dict:
    return json.loads((home.bundles / home.active() / "report.json").read_text())


def _profiles(home):
    return pq.read_table(home.bundles / home.active() / "profiles.parquet").to_pandas().set_index("user_id")


def _ask(client, home, key="promo", **body):
    payload = {"target": "any", "economics": ECON, "budget": {"users": 40}, **body}
    return client.post("/v1/promotions/targets", json=payload, headers=home.headers(key))


def test_uplift_model_list_is_ranked_by_positive_expected_profit_with_a_holdout(client, home):
    assert "any" in _report(home)["promotions"]["uplift"]["trained_on"]
    r = _ask(client, home, holdout_share=0.2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["method"] == "uplift model" and body["bundle_version"] == home.active()
    targets, holdout = body["targets"], body["holdout"]
    assert 0 < len(targets) <= 40 and body["counts"]["targets"] == len(targets)
    profits = [t["expected_profit"] for t in targets + holdout]
    assert all(p > 0 for p in profits)
    ranked = sorted(targets + holdout, key=lambda t: t["rank"])
    assert [t["expected_profit"] for t in ranked] == sorted(profits, reverse=True)
    for t in targets:
        # shown rounded: profit to 2 decimals, uplift and P(redeem) to 4 (api.display)
        assert t["expected_profit"] == pytest.approx(30 * t["uplift"] - 2 * t["p_redeem"] - 0.1, abs=0.0067)
    assert not {t["user_id"] for t in targets} & {t["user_id"] for t in holdout}
    assert body["expected"]["incremental_conversions"] == pytest.approx(sum(t["uplift"] for t in targets), abs=0.01)
    # each shown profit is rounded to the cent: their sum may be off by half a cent per target
    assert body["expected"]["incremental_profit"] == pytest.approx(sum(t["expected_profit"] for t in targets),
                                                                   abs=0.01 + 0.005 * len(targets))
    audit = home.audit()[-1]
    assert audit["endpoint"] == "POST /v1/promotions/targets" and audit["rows"] == len(targets) + len(holdout)
    assert audit["key_id"] == "promo" and audit["method"] == "uplift model"
    again = _ask(client, home, holdout_share=0.2).json()
    assert again["targets"] == targets and again["list_id"] != body["list_id"]


def test_opted_out_and_recently_contacted_users_are_never_targeted(client, home):
    profiles = _profiles(home)
    opted = set(profiles.index[profiles["marketing_opt_out"]])
    assert opted
    contacts = pq.read_table(home.bundles / home.active() / "contacts.parquet").to_pandas()
    assert len(contacts)
    body = _ask(client, home, budget={"users": 10_000}, holdout_share=0.0, exclude_contacted_days=3650).json()
    chosen = {t["user_id"] for t in body["targets"] + body["holdout"]}
    assert chosen and not chosen & opted and not chosen & set(contacts["user_id"])
    assert body["counts"]["opted_out"] == len(opted) and body["counts"]["recently_contacted"] > 0
    wide = _ask(client, home, budget={"users": 10_000}, exclude_contacted_days=0).json()
    assert wide["counts"]["recently_contacted"] == 0
    assert not {t["user_id"] for t in wide["targets"] + wide["holdout"]} & opted


def test_fallback_rule_for_a_target_without_a_randomized_promotion(client, home):
    rep = _report(home)["promotions"]["uplift"]
    profiles = _profiles(home)
    category = next(c for c in profiles["top_category"].dropna().unique() if c not in rep["trained_on"])
    body = _ask(client, home, target=category).json()
    assert body["method"] == "fallback rule"
    assert any("fallback" in n or "no randomized promotion" in n for n in body["notes"])
    assert body["expected"]["incremental_profit"] is None and body["expected"]["incremental_conversions"] is None
    scores = [t["score"] for t in sorted(body["targets"] + body["holdout"], key=lambda t: t["rank"])]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)
    top = profiles.loc[body["targets"][0]["user_id"]]
    assert top["churn_probability"] > 0 and top["clv"] > 0


def test_money_budget_caps_the_expected_cost(client, home):
    body = _ask(client, home, budget={"money": 5.0}).json()
    assert body["expected"]["cost"] <= 5.0 + 1e-9
    cost = sum(0.1 + 2.0 * t["p_redeem"] for t in body["targets"])
    assert cost == pytest.approx(body["expected"]["cost"], abs=0.02)


@pytest.mark.parametrize("budget", [{"users": 0}, {"users": -5}, {"money": 0}, {"money": -1.0},
                                    {"users": 10, "money": 10.0}, {}])
def test_zero_negative_or_ambiguous_budget_is_a_422_naming_the_field(client, home, budget):
    p = assert_problem(_ask(client, home, budget=budget), 422)
    assert any("budget" in e.get("location", e.get("loc", "")) or "budget" in json.dumps(e) for e in p["errors"])


def test_unknown_target_item_and_scope(client, home):
    p = assert_problem(_ask(client, home, target="no_such_category"), 404)
    assert "unknown target" in p["detail"] and "item:" in p["detail"]
    assert "not in the bundle's catalogue" in assert_problem(_ask(client, home, target="item:nope"), 404)["detail"]
    assert_problem(_ask(client, home, key="segments"), 403)
    r = _ask(client, home, economics={"value_per_conversion": -1})
    assert_problem(r, 422)


def test_item_target_is_scored_by_its_category(client, home):
    items = pq.read_table(home.bundles / home.active() / "item_categories.parquet").to_pandas()
    trained = set(_report(home)["promotions"]["uplift"]["trained_on"]) - {"any"}
    item = items[items["category"].isin(trained)].iloc[0]
    body = _ask(client, home, target=f"item:{item['item_id']}").json()
    assert body["method"] == "uplift model" and body["target"] == f"item:{item['item_id']}"


def test_an_erased_user_is_never_in_a_list(client, home):
    first = _ask(client, home, budget={"users": 10_000}, holdout_share=0.0).json()["targets"][0]["user_id"]
    assert client.delete(f"/v1/admin/users/{first}", headers=home.headers("admin")).status_code == 200
    after = _ask(client, home, budget={"users": 10_000}, holdout_share=0.0).json()
    assert first not in {t["user_id"] for t in after["targets"] + after["holdout"]}


def test_effectiveness_of_a_past_promotion(client, home):
    eff = _report(home)["promotions"]["effectiveness"]
    pid = sorted(eff)[0]
    r = client.get(f"/v1/promotions/{pid}/effectiveness", headers=home.headers("promo"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["promotion_id"] == pid and body["status"] == eff[pid]["status"]
    if body["status"] == "estimated":
        lo, hi = body["conversion"]["lift_ci"]
        assert lo <= body["conversion"]["lift"] <= hi
    p = assert_problem(client.get("/v1/promotions/nope/effectiveness", headers=home.headers("promo")), 404)
    assert pid in p["detail"]
