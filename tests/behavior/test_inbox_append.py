"""The inbox stores each line key once: a batch's duplicates are exactly the keys seen before
(or earlier in the same batch), whichever way `append` finds them."""

from __future__ import annotations

from datetime import datetime, timezone

import pyarrow as pa
from hypothesis import given, settings, strategies as st

from behavior.schema import PAYMENTS
from behavior.store.inbox import Inbox

PAID = datetime(2026, 6, 1, tzinfo=timezone.utc)


def lines(keys: list[tuple[str, int]]) -> pa.Table:
    rows = [{"payment_id": p, "line_no": n, "user_id": "u1", "merchant_id": "m001", "item_id": "i1",
             "category": None, "quantity": 1, "amount": None, "currency": "EUR", "paid_at": PAID,
             "channel": "app", "status": "success", "promotion_id": None} for p, n in keys]
    return pa.Table.from_pylist(rows, schema=PAYMENTS.arrow_schema)


KEY = st.tuples(st.sampled_from(["p1", "p2", "p3", "p4"]), st.integers(0, 3))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(KEY, min_size=1, max_size=8), min_size=1, max_size=5))
def test_duplicates_are_the_keys_seen_before(tmp_path_factory, batches):
    inbox = Inbox(tmp_path_factory.mktemp("inbox"))
    seen: set[tuple[str, int]] = set()
    stored: list[tuple[str, int]] = []
    for keys in batches:
        expected = []
        for i, k in enumerate(keys):
            if k in seen:
                expected.append(i)
            else:
                seen.add(k)
                stored.append(k)
        out = inbox.append(lines(keys), [], "psp", 1)
        assert out.duplicate_rows == expected
        assert (out.accepted, out.duplicates) == (len(keys) - len(expected), len(expected))
    table, _ = inbox.pending()
    assert list(zip(table.column("payment_id").to_pylist(), table.column("line_no").to_pylist())) == stored
    assert inbox.connection().execute("SELECT count(*) FROM keys").fetchone()[0] == len(seen)
