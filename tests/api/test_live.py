"""Live state: a notified purchase shows in the profile and the recommendations within a second."""

from __future__ import annotations

import time

import numpy as np
import pytest

from behavior.store.senders import add_sender
from tests.api.notify_helpers import PATH, encode, payment, signed


@pytest.fixture
def secret(home) -> str:
    return add_sender(home.root, "psp")


def _wait(check, timeout: float = 1.0):
    """The first truthy result of check() within `timeout` seconds (else the last one)."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.02)


def _unpurchased_top_item(client, home, user: str) -> tuple[str, list[str]]:
    recs = client.get(f"/v1/users/{user}/recommendations?n=10", headers=home.headers()).json()
    items = [x["item_id"] for x in recs["items"]]
    return items[0], items


@pytest.mark.timing
def test_a_purchase_is_live_in_the_profile_and_the_recommendations(client, home, secret):
    user = "u0000005"
    before = client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()
    item, recs_before = _unpurchased_top_item(client, home, user)
    body = encode(payment("live-1", user=user, items=(item,), amount="20.00"))
    assert client.post(PATH, content=body, headers=signed("psp", body, secret=secret)).json()["accepted"] == 1
    t0 = time.monotonic()

    def profile():
        p = client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()
        return p if p["live_since"] else None

    after = _wait(profile)
    assert after, "the purchase did not reach the profile within a second"
    assert time.monotonic() - t0 < 1.0
    assert after["recency_days"] < 1 and after["last_purchase_at"] > before["last_purchase_at"]
    assert after["n_payments"] == before["n_payments"] + 1
    assert after["net_spend"] == pytest.approx(before["net_spend"] + 20.0)
    assert after["live_since"]["items"] == [item] and after["live_since"]["payments"] == 1
    for key in ("segment", "clv", "loyalty_score"):
        assert after[key] == before[key]
    recs = client.get(f"/v1/users/{user}/recommendations?n=10&exclude_purchased=true",
                      headers=home.headers()).json()
    assert item not in [x["item_id"] for x in recs["items"]]
    default = client.get(f"/v1/users/{user}/recommendations?n=10", headers=home.headers()).json()
    assert [x["item_id"] for x in default["items"]] != recs_before     # the purchase is folded in


def test_a_user_new_to_the_bundle_gets_personalised_items_after_a_first_purchase(client, home, secret):
    user = "new-customer-1"
    r = client.get(f"/v1/users/{user}/recommendations?n=5", headers=home.headers()).json()
    assert r["source"] == "fallback"
    assert client.get(f"/v1/users/{user}/profile", headers=home.headers()).status_code == 404
    item = r["items"][0]["item_id"]
    body = encode(payment("live-new", user=user, items=(item,)))
    client.post(PATH, content=body, headers=signed("psp", body, secret=secret))
    got = _wait(lambda: (rec := client.get(f"/v1/users/{user}/recommendations?n=5", headers=home.headers()).json())
                ["source"] == "model" and rec)
    assert got and got["source"] == "model"
    profile = client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()
    assert profile["n_payments"] == 1 and profile["recency_days"] < 1 and profile["segment"] is None


def test_recommend_folded_matches_recommend_for_items_for_an_unknown_user(home):
    from api.bundle import load_bundle

    model = load_bundle(home.bundles / home.active()).recommender
    items = model.items.ids[:3].tolist()
    assert model.recommend_folded("nobody", items, 5) == model.recommend_for_items(items, 5)
    known = model.users.ids[0]
    assert model.recommend_folded(known, [], 5) == model.recommend(known, 5)
    purchased = model._indices[model._indptr[0]:model._indptr[1]]
    new = next(i for i in range(len(model.items)) if i not in set(purchased.tolist()) and model.active[i])
    folded = model.recommend_folded(known, [model.items.ids[new]], 10, exclude_purchased=True)
    assert model.items.ids[new] not in [i for i, _ in folded.items]
    assert np.all(np.isfinite([s for _, s in folded.items]))


def test_erased_users_leave_the_live_state(client, home, secret):
    from behavior.store.erasure_log import ErasureLog

    user = "u0000009"
    body = encode(payment("live-e", user=user))
    client.post(PATH, content=body, headers=signed("psp", body, secret=secret))
    assert _wait(lambda: client.get(f"/v1/users/{user}/profile", headers=home.headers()).json()["live_since"])
    ErasureLog(home.root).record(user)
    assert _wait(lambda: client.app.state.live.lines(user) == [])


def test_an_inbox_file_whose_schema_is_not_written_yet_is_read_without_error(home):
    """A worker makes the inbox file (0600) a moment before it writes the schema; another
    worker's poller that looked in between failed with 'no such table: lines' (seen in the demo)."""
    from api.live import LiveState
    from behavior.store.inbox import Inbox, inbox_path

    path = inbox_path(home.root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.touch(mode=0o600)                      # made, no schema yet
    live = LiveState(home.root)
    live.refresh(None)                          # raised sqlite3.OperationalError before
    assert Inbox(home.root).lines_after(0) == []


def test_a_look_copies_only_the_users_with_new_lines(tmp_path):
    """Each look (every 0.1 s) makes new dicts for its readers; the users without new lines stay
    in a dict that is not copied, so a look costs its new lines, not the whole live state."""
    from datetime import datetime, timezone

    import pyarrow as pa

    from api.live import MERGE_AT, LiveLine, LiveState
    from behavior.schema import PAYMENTS
    from behavior.store.inbox import Inbox

    def lines(users: list[str], tag: str) -> pa.Table:
        paid = datetime(2026, 6, 1, tzinfo=timezone.utc)
        return pa.Table.from_pylist([
            {"payment_id": f"{tag}-{u}", "line_no": 1, "user_id": u, "merchant_id": "m001", "item_id": "i1",
             "category": None, "quantity": 1, "amount": None, "currency": "EUR", "paid_at": paid, "channel": "app",
             "status": "success", "promotion_id": None} for u in users], schema=PAYMENTS.arrow_schema)

    inbox = Inbox(tmp_path)
    live = LiveState(tmp_path)
    many = [f"u{i}" for i in range(MERGE_AT + 10)]
    inbox.append(lines(many, "a"), [], "psp", 1)
    live.refresh(None)
    base, recent = live._view
    assert len(base) == len(many) and not recent        # merged once `recent` grew past MERGE_AT
    inbox.append(lines(["u1", "new"], "b"), [], "psp", 1)
    live.refresh(None)
    assert live._view[0] is base                         # not copied
    assert [ln.payment_id for ln in live.lines("u1")] == ["a-u1", "b-u1"]
    assert [ln.payment_id for ln in live.lines("new")] == ["b-new"]
    assert [LiveLine._make(t).payment_id for t in base["u1"]] == ["a-u1"]   # what an earlier reader took is unchanged
    everyone = live.all_lines()
    assert len(everyone) == len(many) + 1 and len(everyone["u1"]) == 2 and len(everyone["u2"]) == 1


def test_the_live_lines_are_out_of_the_garbage_collectors_view(tmp_path):
    """The live state holds plain tuples (each line, each user's lines), which the collector stops
    tracking: a full collection under a day of notifications does not walk every line."""
    import gc
    from datetime import datetime, timezone
    from decimal import Decimal

    import pyarrow as pa

    from api.live import LiveState
    from behavior.schema import PAYMENTS
    from behavior.store.inbox import Inbox

    paid = datetime(2026, 6, 1, tzinfo=timezone.utc)
    Inbox(tmp_path).append(pa.Table.from_pylist([
        {"payment_id": f"p{i}", "line_no": 1, "user_id": f"u{i % 7}", "merchant_id": "m001", "item_id": "i1",
         "category": None, "quantity": 2, "amount": Decimal("1.50"), "currency": "EUR", "paid_at": paid, "channel": "app",
         "status": "success", "promotion_id": "promo"} for i in range(50)], schema=PAYMENTS.arrow_schema),
        [], "psp", 1)
    live = LiveState(tmp_path)
    live.refresh(None)
    gc.collect()
    gc.collect()   # a tuple is let go once its items are: a user's tuple may need a second pass
    base, recent = live._view
    state = {**base, **recent}
    assert len(state) == 7 and sum(map(len, state.values())) == 50
    assert not any(gc.is_tracked(lines) or any(map(gc.is_tracked, lines)) for lines in state.values())
    assert live.purchased_items("u0") == ["i1"] * 16 and live.lines("u0")[0].promotion_id == "promo"
