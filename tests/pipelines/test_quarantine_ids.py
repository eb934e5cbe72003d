"""The rule by which `behavior forget` finds a user's quarantined rows whose id holds control
characters, and a later ingest refuses them: the id without them (`behavior.ids.without_controls`)
is the erased id. "u1\\x00", "\\x00u1", "\\tu1" and "u1\\r" are rows of "u1"; "u10\\x00" and
"xu1\\x00" are not."""

import json
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.ids import ID_CONTROLS, ID_WHITESPACE, control_notice, normalize_id, without_controls
from behavior.pii import erasure_hash
from behavior.schema import PAYMENTS
from behavior.store.datahome import DataHome
from behavior.store.inbox import Inbox
from pipelines.forget import forget, row_values
from pipelines.ingest import IngestOptions, ingest

# stored ids: no control character, no separator or quote that the quarantine's values are split at
STORED = st.text(st.characters(exclude_characters=ID_CONTROLS + ",;|'\"", exclude_categories=["Cs"]),
                 min_size=1, max_size=10).map(normalize_id).filter(bool)
ENDS = st.text(st.sampled_from(ID_CONTROLS + ID_WHITESPACE), max_size=3)
# a tab inside a quarantined value separates fields ("x\tu1" holds "x" and "u1", as a malformed line does)
INSIDE = ID_CONTROLS.replace("\t", "")


@st.composite
def with_controls(draw, user_id: str, inside: str = ID_CONTROLS) -> str:
    """`user_id` as a defective export writes it: control characters (of `inside`) inside it, and
    control characters or whitespace at its ends."""
    chars = list(user_id)
    for _ in range(draw(st.integers(0, 3))):
        chars.insert(draw(st.integers(0, len(chars))), draw(st.text(st.sampled_from(inside), min_size=1, max_size=3)))
    return draw(ENDS) + "".join(chars) + draw(ENDS)


def quarantined(user_id: str) -> set[str]:
    """The ids a quarantined row whose only value is `user_id` names (a row is erased when any of
    its values names the user)."""
    return row_values(json.dumps({"user_id": user_id}), None)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), user=STORED)
def test_a_quarantined_id_with_control_characters_names_the_id_without_them(data, user):
    noisy = data.draw(with_controls(user))
    assert without_controls(noisy) == user
    assert user in quarantined(noisy)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), user=STORED, other=STORED)
def test_a_quarantined_id_never_names_another_user(data, user, other):
    """Erasing `user` never takes the row of another id, however defective its export."""
    if other == user:
        return
    noisy = data.draw(with_controls(other, INSIDE))
    assert user not in quarantined(noisy)


def test_known_answers():
    for noisy in ("u1\x00", "\x00u1", "\tu1", "u1\r", "u1\r\x00", "\x00 u1 \x7f", "u\x001", "\x1bu1\n"):
        assert "u1" in quarantined(noisy), repr(noisy)
    for other in ("u10\x00", "xu1\x00", "x\x00u1", "u1x\x7f", "u 1\x00", "\x00u10"):
        assert "u1" not in quarantined(other), repr(other)
    assert "u1" in quarantined("x\tu1") and "x" in quarantined("x\tu1")     # two fields
    assert without_controls("\x00\x01") == ""
    assert control_notice("u1") is None and control_notice("\x00") == (
        "'\\x00' holds U+0000: ingest never stores an id with a control character (it quarantines the row as "
        "bad_user_id), so only the quarantine can hold it")
    assert control_notice("\x07u1\x00").endswith("holds U+0007, U+0000: ingest never stores an id with a control "
                                                 "character (it quarantines the row as bad_user_id), so only the "
                                                 "quarantine can hold it; if the user is 'u1', erase 'u1': that "
                                                 "also erases the quarantined rows whose id is 'u1' with control "
                                                 "characters")


def _line(payment_id: str, user_id: str) -> dict:
    return {"payment_id": payment_id, "line_no": 1, "user_id": user_id, "merchant_id": "m001", "item_id": "i1",
            "category": None, "quantity": 1, "amount": None, "currency": "EUR",
            "paid_at": datetime(2026, 6, 1, tzinfo=timezone.utc), "channel": "app", "status": "success",
            "promotion_id": None}


def test_the_inbox_loses_the_users_rejected_lines_with_control_characters_and_no_others(tmp_path):
    inbox = Inbox(tmp_path)
    accepted = pa.Table.from_pylist([_line("p1", "u1"), _line("p2", "u10")], schema=PAYMENTS.arrow_schema)
    bad = ["u1\x00", "\x00u1", "u1\r\x00", "u10\x00", "xu1\x00", "x\x00u1"]
    rejected = [{"payment_id": f"r{i}", "line_no": 1, "user_id": u, "reason": "bad_user_id", "detail": "d",
                 "raw": json.dumps({"user_id": u})} for i, u in enumerate(bad)]
    inbox.append(accepted, rejected, "psp", 1)
    key = b"k" * 32
    assert inbox.purge_erased(key, {erasure_hash(key, "u1")}) == 4
    con = inbox.connection()
    assert [u for (u,) in con.execute("SELECT user_id FROM lines")] == ["u10"]
    assert sorted(u for (u,) in con.execute("SELECT user_id FROM rejected")) == sorted(["u10\x00", "xu1\x00", "x\x00u1"])


@pytest.mark.parametrize("direct", [True, False], ids=["duckdb", "arrow"])
def test_a_later_ingest_keeps_no_values_of_an_erased_users_rows_with_control_characters(tmp_path, direct):
    """After `forget u1`, a row of "u1\\x00" would be quarantined (bad_user_id) with its values:
    it is refused as erased_user instead, with none kept, as a row of "u1" is; an id erased as it
    is ("u2\\x00") still is; other ids keep their reason and values."""
    home = DataHome(tmp_path / "data")
    forget(home, ["u1", "u2\x00"])
    ids = ["u1\x00", "\x1bu1", " u1\x7f ", "u2\x00", "u1", "u10\x00", "xu1\x00", "u3"]
    amounts = ["1.00"] * 4 + ["not-a-number"] + ["1.00"] * 3
    pq.write_table(pa.table({"payment_id": [f"p{i}" for i in range(len(ids))], "user_id": ids,
                             "item_id": ["i1"] * len(ids), "amount": amounts,
                             "paid_at": ["2024-01-05"] * len(ids)}), tmp_path / "in.parquet")
    rep = ingest(home, [tmp_path / "in.parquet"], IngestOptions(direct=direct, defaults={"currency": "EUR"}))
    assert (rep["accepted"], rep["rejected_by_reason"]) == (1, {"erased_user": 5, "bad_user_id": 2})
    q = pq.read_table(home.rejected).to_pandas().set_index("source_row")
    assert q.loc[[1, 2, 3, 4, 5], "raw"].isna().all()
    assert [json.loads(q.loc[r, "raw"])["user_id"] for r in (6, 7)] == ["u10\x00", "xu1\x00"]
