"""The receiver checks clean notifications without the validation SQL, and everything else
the full way, with the same receipts."""

from __future__ import annotations

from behavior.store.erasure_log import ErasureLog
from api.notify import Receiver
from behavior.notifications import parse_body
from tests.api.notify_helpers import encode, payment


def test_clean_notifications_skip_the_full_check_and_others_take_it(tmp_path):
    receiver = Receiver(tmp_path)
    ErasureLog(tmp_path).record("u-gone")
    clean = receiver.receive(parse_body(encode([payment("p-1", items=("i00001", "i00002")),
                                                payment("p-2", user="u-gone")])), "psp")
    assert (clean.accepted, clean.duplicates, receiver.full_checks) == (2, 0, 0)
    assert [(r["payment_id"], r["reason"]) for r in clean.rejected] == [("p-2", "erased_user")]
    again = receiver.receive(parse_body(encode(payment("p-1", items=("i00001", "i00002")))), "psp")
    assert (again.accepted, again.duplicates, receiver.full_checks) == (0, 2, 0)
    card = receiver.receive(parse_body(encode([payment("p-3"), payment("p-4", items=("4111111111111111",))])), "psp")
    assert (card.accepted, receiver.full_checks) == (1, 1)
    assert [(r["payment_id"], r["reason"]) for r in card.rejected] == [("p-4", "card_number")]
    assert "4111111111111111" not in card.rejected[0]["detail"]


def test_a_batch_of_requests_with_one_unclean_line_is_checked_the_full_way(tmp_path):
    receiver = Receiver(tmp_path)
    receipts = receiver.receive_many([(parse_body(encode(payment("p-1"))), "a"),
                                      (parse_body(encode(payment("p-2", user="a@b.co"))), "b")])
    assert [(r.accepted, [x["reason"] for x in r.rejected]) for r in receipts] == [(1, []), (0, ["user_id_email"])]
    assert receiver.full_checks == 1 and receiver.commits == 1
