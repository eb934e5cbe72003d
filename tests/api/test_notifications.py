"""POST /v1/notifications/payments in one process: signatures, limits, validation, the inbox."""

from __future__ import annotations

import sqlite3
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from behavior.store.erasure_log import ErasureLog
from behavior.store.inbox import inbox_path
from behavior.store.senders import add_sender, revoke_sender
from tests.api.conftest import assert_problem
from tests.api.notify_helpers import PATH, encode, payment, signed


@pytest.fixture
def secret(home) -> str:
    return add_sender(home.root, "psp")


def post(client, body: bytes, headers: dict):
    return client.post(PATH, content=body, headers=headers)


def inbox_rows(home, table: str = "lines") -> list[tuple]:
    con = sqlite3.connect(inbox_path(home.root))
    try:
        return con.execute(f"SELECT * FROM {table} ORDER BY seq").fetchall()
    finally:
        con.close()


def test_a_signed_payment_is_acknowledged_and_in_the_inbox(client, home, secret):
    body = encode(payment("p-1", items=("i00001", "i00002")))
    r = post(client, body, signed("psp", body, secret=secret))
    assert r.status_code == 200, r.text
    assert r.json() == {"code": "10000", "msg": "Success", "accepted": 2, "duplicates": 0, "rejected": []}
    rows = inbox_rows(home)
    assert [(row[1], row[2], row[3], row[5]) for row in rows] == [("p-1", 1, "u0000001", "i00001"),
                                                                  ("p-1", 2, "u0000001", "i00002")]
    con = sqlite3.connect(inbox_path(home.root))
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (inbox_path(home.root).stat().st_mode & 0o777) == 0o600
    assert (inbox_path(home.root).parent.stat().st_mode & 0o777) == 0o700


def test_a_list_of_payments_and_a_retry_is_a_duplicate(client, home, secret):
    body = encode([payment("p-1"), payment("p-2", items=("i00003", "i00004"))])
    first = post(client, body, signed("psp", body, secret=secret)).json()
    again = post(client, body, signed("psp", body, secret=secret)).json()
    assert (first["accepted"], first["duplicates"]) == (3, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 3)
    assert len(inbox_rows(home)) == 3


def test_a_wrong_signature_is_401(client, secret):
    body = encode(payment("p-1"))
    headers = signed("psp", body, secret=secret)
    r = post(client, encode(payment("p-2")), headers)          # signed another body
    assert assert_problem(r, 401)["code"] == "40002"
    other = "00" * 32
    assert assert_problem(post(client, body, signed("psp", body, secret=other)), 401)["code"] == "40002"
    garbled = {**headers, "Behavior-Signature": "v1=abc"}
    assert assert_problem(post(client, body, garbled), 401)["code"] == "40002"


def test_missing_headers_are_401(client, secret):
    body = encode(payment("p-1"))
    r = client.post(PATH, content=body, headers={"Content-Type": "application/json"})
    assert assert_problem(r, 401)["code"] == "40001"
    assert r.headers["www-authenticate"].startswith("Signature")


@pytest.mark.parametrize("skew", [-301, 301, 100_000])
def test_a_stale_or_future_timestamp_is_401(client, secret, skew):
    body = encode(payment("p-1"))
    r = post(client, body, signed("psp", body, secret=secret, t=int(time.time()) + skew))
    assert "300 s" in assert_problem(r, 401)["detail"]


def test_a_timestamp_within_the_tolerance_is_accepted(client, secret):
    body = encode(payment("p-1"))
    assert post(client, body, signed("psp", body, secret=secret, t=int(time.time()) - 250)).status_code == 200


def test_unknown_and_revoked_senders_are_401(client, home, secret):
    body = encode(payment("p-1"))
    r = post(client, body, signed("nobody", body, secret=secret))
    assert "not registered" in assert_problem(r, 401)["detail"]
    assert post(client, body, signed("psp", body, secret=secret)).status_code == 200
    revoke_sender(home.root, "psp")
    body = encode(payment("p-2"))
    r = post(client, body, signed("psp", body, secret=secret))
    assert "revoked" in assert_problem(r, 401)["detail"]


def _rsa_pair() -> tuple[bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


def test_an_rsa2_sender_signs_with_its_private_key(client, home):
    private, public = _rsa_pair()
    assert add_sender(home.root, "alipay", public) is None          # no HMAC secret for an RSA2 sender
    body = encode(payment("p-rsa"))
    r = post(client, body, signed("alipay", body, private_pem=private))
    assert r.status_code == 200 and r.json()["accepted"] == 1
    stranger, _ = _rsa_pair()
    body = encode(payment("p-rsa-2"))
    assert assert_problem(post(client, body, signed("alipay", body, private_pem=stranger)), 401)["code"] == "40002"
    # an HMAC of the right text is not an RSA2 signature
    assert post(client, body, signed("alipay", body, secret="11" * 32)).status_code == 401


def test_a_body_too_large_is_413(make_client, home, secret):
    body = encode([payment(f"p-{i}") for i in range(40)])
    with make_client(max_notification_bytes=2000) as c:
        r = post(c, body, signed("psp", body, secret=secret))
        assert assert_problem(r, 413)["code"] == "40013"
        small = encode(payment("p-1"))
        assert post(c, small, signed("psp", small, secret=secret)).status_code == 200
    # larger than the API's other routes take: notifications have their own limit
    body = encode([payment(f"q-{i}") for i in range(400)])
    with make_client(max_body_bytes=65_536) as c:
        assert len(body) > 65_536
        assert post(c, body, signed("psp", body, secret=secret)).json()["accepted"] == 400


def test_malformed_json_is_400_and_a_wrong_shape_422(client, secret):
    body = b'{"payment_id": "p-1", '
    r = post(client, body, signed("psp", body, secret=secret))
    assert assert_problem(r, 400)["code"] == "40004"
    doc = payment("p-1")
    doc["lines"][0]["line_no"] = "one"
    body = encode(doc)
    problem = assert_problem(post(client, body, signed("psp", body, secret=secret)), 422)
    assert problem["code"] == "40004" and problem["errors"][0]["field"] == "lines[0].line_no"
    body = encode([payment("p-1"), {"user_id": "u1", "lines": []}])
    problem = assert_problem(post(client, body, signed("psp", body, secret=secret)), 422)
    assert problem["errors"][0]["field"] == "[1].payment_id"


def test_a_card_number_rejects_the_line_and_never_reaches_the_disk(client, home, secret):
    card = "4111111111111111"
    doc = payment("p-card", items=("i00001", "i00002"))
    doc["lines"][1]["category"] = f"card {card}"
    body = encode(doc)
    r = post(client, body, signed("psp", body, secret=secret)).json()
    assert r["accepted"] == 1
    assert [(x["payment_id"], x["line_no"], x["reason"]) for x in r["rejected"]] == [("p-card", 2, "card_number")]
    assert card not in r["rejected"][0]["detail"]
    quarantined = inbox_rows(home, "rejected")
    assert len(quarantined) == 1 and quarantined[0][4] == "card_number" and "i00002" in quarantined[0][6]
    for f in inbox_path(home.root).parent.iterdir():
        assert card.encode() not in f.read_bytes(), f.name


def test_bad_values_are_rejected_with_ingests_reasons(client, secret):
    bad_date = payment("p-date", paid_at=None)
    bad_date["paid_at"] = "yesterday-ish"
    email = payment("p-mail", user="someone@example.com")
    body = encode([bad_date, email, payment("p-ok")])
    r = post(client, body, signed("psp", body, secret=secret)).json()
    assert r["accepted"] == 1
    assert sorted((x["payment_id"], x["reason"]) for x in r["rejected"]) == [("p-date", "bad_paid_at"),
                                                                           ("p-mail", "user_id_email")]


def test_a_duplicate_after_a_restart(make_client, home, secret):
    body = encode(payment("p-restart"))
    with make_client() as c:
        assert post(c, body, signed("psp", body, secret=secret)).json()["accepted"] == 1
    with make_client() as c:       # a new process's state: only the inbox on disk knows the line
        r = post(c, body, signed("psp", body, secret=secret)).json()
        assert (r["accepted"], r["duplicates"]) == (0, 1)


def test_an_erased_users_notifications_are_refused(client, home, secret):
    ErasureLog(home.root).record("u0000007")
    body = encode([payment("p-gone", user=" u0000007 "), payment("p-kept", user="u0000008")])
    r = post(client, body, signed("psp", body, secret=secret)).json()
    assert r["accepted"] == 1
    assert [(x["payment_id"], x["reason"]) for x in r["rejected"]] == [("p-gone", "erased_user")]
    assert [row[3] for row in inbox_rows(home)] == ["u0000008"]
    (gone,) = inbox_rows(home, "rejected")
    assert gone[3] is None and gone[6] is None          # neither the id nor the values are kept
    for f in inbox_path(home.root).parent.iterdir():
        assert b"u0000007" not in f.read_bytes(), f.name


def test_concurrent_requests_are_stored_in_batches_with_the_answers_of_one_by_one(tmp_path):
    import asyncio

    from api.notify import Receiver
    from behavior.notifications import parse_body

    ErasureLog(tmp_path).record("u-gone")
    receiver = Receiver(tmp_path)
    card = payment("c-1")
    card["lines"][0]["item_id"] = "4111111111111111"
    docs = [payment(f"b-{i}", user=f"u{i}", items=("i1", "i2")) for i in range(30)]
    docs += [payment("b-3", user="u3", items=("i1", "i2"))] * 3          # retries of one payment
    docs += [card, payment("g-1", user="u-gone")]

    async def main():
        return await asyncio.gather(*(receiver.submit(parse_body(encode(d)), "psp") for d in docs))

    receipts = asyncio.run(main())
    assert receiver.commits < len(docs) - 5                              # batched
    assert [(r.accepted, r.duplicates) for r in receipts[:30]] == [(2, 0)] * 30
    assert [(r.accepted, r.duplicates) for r in receipts[30:33]] == [(0, 2)] * 3
    assert [x["reason"] for x in receipts[33].rejected] == ["card_number"]
    assert [(x["payment_id"], x["reason"]) for x in receipts[34].rejected] == [("g-1", "erased_user")]

    class Home:
        root = tmp_path

    assert len(inbox_rows(Home)) == 60
    assert sorted(r[7] for r in inbox_rows(Home, "rejected")) == ["psp", "psp"]


def test_a_notification_is_served_ahead_of_fastapis_routing(client, home, secret):
    """The busiest write skips FastAPI's routing and dependency solving (api.routes.notifications.
    NotificationLane), which cost as much CPU as checking and storing a one-payment notification;
    the operation is still documented, and the app's own middlewares still apply."""
    import asyncio
    import sys

    import httpx

    seen: set[str] = set()

    def hook(frame, event, arg):
        if event == "call":
            seen.add(frame.f_code.co_filename)

    async def send(body: bytes) -> httpx.Response:
        # the app (started by `client`) called on this thread, where the hook sees every call
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url="http://t") as c:
            sys.setprofile(hook)
            try:
                return await c.post(PATH, content=body, headers=signed("psp", body, secret=secret))
            finally:
                sys.setprofile(None)

    body = encode(payment("p-lane"))
    r = asyncio.run(send(body))
    assert r.status_code == 200 and r.json()["accepted"] == 1
    assert any(f.endswith("api/routes/notifications.py") for f in seen)
    assert not any(f.replace("\\", "/").endswith(("fastapi/routing.py", "fastapi/dependencies/utils.py")) for f in seen)
    assert "post" in client.get("/openapi.json").json()["paths"][PATH]


def test_an_unexpected_error_in_a_notification_is_a_500_problem_with_an_incident(client, home, secret, monkeypatch):
    async def broken(rows, sender):
        raise RuntimeError("the disk is gone")

    monkeypatch.setattr(client.app.state.receiver, "submit", broken)
    body = encode(payment("p-500"))
    r = post(client, body, signed("psp", body, secret=secret))
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "incident" in r.json()


def test_an_erased_users_rejected_lines_keep_no_values(client, home, secret):
    """A line of an erased user that validation rejects (a bad date, or the id with a control
    character, most likely an export's defect) is refused as erased_user and nothing of it is
    kept; another id's rejected line keeps its values."""
    ErasureLog(home.root).record("u0000007")
    bad_date = payment("p-date", user="u0000007")
    bad_date["paid_at"] = "yesterday-ish"
    body = encode([bad_date, payment("p-nul", user="\x00u0000007"), payment("p-esc", user="u0000007\x1b"),
                   payment("p-other", user="xu0000007\x00")])
    r = post(client, body, signed("psp", body, secret=secret)).json()
    assert sorted((x["payment_id"], x["reason"]) for x in r["rejected"]) == [
        ("p-date", "erased_user"), ("p-esc", "erased_user"), ("p-nul", "erased_user"), ("p-other", "bad_user_id")]
    kept = {row[1]: (row[3], row[6]) for row in inbox_rows(home, "rejected")}
    assert kept["p-date"] == kept["p-nul"] == kept["p-esc"] == (None, None)
    assert kept["p-other"][0] == "xu0000007\x00" and "p-other" in kept["p-other"][1]
