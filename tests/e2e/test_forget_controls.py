"""Erasure of ids holding control characters, through the real CLI and a real `behavior serve`:
the API's erase answer says what `behavior forget` says of such an id, and `behavior forget u1`
erases the quarantined rows (lake quarantine and notification inbox) whose id is u1 with control
characters, never those of another id (u10, xu1)."""

import json
import shutil
import sqlite3
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from behavior.ids import control_notice
from behavior.schema import PAYMENTS
from behavior.store.inbox import Inbox, inbox_path
from behavior.store.senders import add_sender
from tests.api.notify_helpers import PATH, encode, payment, signed
from tests.e2e.small_home import copy_of
from tests.e2e.test_cli import behavior
from tests.e2e.test_faults import patched
from tests.e2e.test_forget import serving

pytestmark = pytest.mark.slow       # a run, a server and six CLI processes (~40 s)

USER = "u0000042"
OTHER = "u0000007"      # a user of the bundle, erased through the API
# quarantined rows that are USER's: the control character is an export's defect
USERS_ROWS = {"a": [USER + "\x00", "\x00" + USER, USER + "\r\x00"], "b": [USER[:3] + "\x07" + USER[3:], "\x1b" + USER]}
PADDED = {"a": "\t" + USER, "b": USER + "\r"}          # quarantined for a bad amount; ingest trims them to USER
# quarantined rows of other ids, which must stay
NEIGHBOURS = {"a": [USER + "0\x00", "x" + USER + "\x00"], "b": ["x\x00" + USER, USER + "x\x7f"]}


def _bad_file(path, part: str) -> None:
    """A Parquet file (a CSV cannot start a field with a NUL) of rows the quarantine keeps."""
    ids = USERS_ROWS[part] + NEIGHBOURS[part] + [PADDED[part], "u0000100"]
    amounts = ["1.00"] * (len(ids) - 2) + ["not-a-number", "2.00"]
    pq.write_table(pa.table({"payment_id": [f"bad-{part}{i}" for i in range(len(ids))], "user_id": ids,
                             "item_id": ["i000001"] * len(ids), "amount": amounts,
                             "paid_at": ["2024-06-01T10:00:00Z"] * len(ids)}), path)


def quarantined_ids(data) -> list[str]:
    files = sorted((data / "lake" / "_rejected").rglob("*.parquet"))
    raws = [r for f in files for r in pq.read_table(f).column("raw").to_pylist() if r is not None]
    return sorted(json.loads(r)["user_id"] for r in raws)


def inbox_rejected_ids(data) -> list[str]:
    con = sqlite3.connect(inbox_path(data))
    try:
        return sorted(u for (u,) in con.execute("SELECT user_id FROM rejected WHERE user_id IS NOT NULL"))
    finally:
        con.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    root = tmp_path_factory.mktemp("forget-controls")
    data = copy_of(tmp_path_factory, root)      # a home with a bundle that serves USER and OTHER
    for part in ("a", "b"):           # two ingests: two quarantine files
        _bad_file(root / f"bad-{part}.parquet", part)
        rep = json.loads(behavior(data, "ingest", str(root / f"bad-{part}.parquet"), "--json").stdout)
        bad_ids = len(USERS_ROWS[part] + NEIGHBOURS[part])
        assert (rep["accepted"], rep["rejected_by_reason"]) == (1, {"bad_user_id": bad_ids, "bad_amount": 1})
    stored = pq.read_table(data / "lake" / "payments").column("user_id").to_pylist()
    assert USER in stored and OTHER in stored
    key = behavior(data, "keys", "add", "ops", "--scope", "admin").stdout.strip()
    return root, data, key


def test_the_api_answers_an_erasure_of_such_an_id_in_the_words_of_forget(home):
    root, data, key = home
    secret = add_sender(data, "psp")
    with serving(data, root / "serve.log") as base, \
            httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30) as api:
        r = api.delete(f"/v1/admin/users/{quote(USER + chr(0), safe='')}")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        problem = r.json()
        assert problem["notice"] == control_notice(USER + "\x00")
        assert problem["notice"].startswith(f"'{USER}\\x00' holds U+0000: ingest never stores an id with a control "
                                            "character (it quarantines the row as bad_user_id), so only the "
                                            f"quarantine can hold it; if the user is '{USER}', erase '{USER}'")
        assert problem["detail"].endswith(problem["notice"]) and "is not in bundle" in problem["detail"]
        r = api.delete("/v1/admin/users", params={"user_id": " \x07" + USER})
        assert r.status_code == 404 and "holds U+0007" in r.json()["notice"]
        r = api.delete(f"/v1/admin/users/{OTHER}")          # no control character: no notice
        assert r.status_code == 200 and r.json()["notice"] is None and r.json()["erased"] is True
        assert "notice" not in api.delete("/v1/admin/users/nobody-at-all").json()
        # a notification of USER with a NUL, and of a neighbour: both rejected into the inbox's quarantine
        body = encode([payment("n-1", user="\x00" + USER), payment("n-2", user="x" + USER + "\x00")])
        receipt = httpx.post(base + PATH, content=body, headers=signed("psp", body, secret=secret), timeout=30).json()
        assert [x["reason"] for x in receipt["rejected"]] == ["bad_user_id", "bad_user_id"]
    assert inbox_rejected_ids(data) == sorted(["\x00" + USER, "x" + USER + "\x00"])
    ids = root / "ids.txt"
    ids.write_text(USER + "\x00\n")
    out = behavior(data, "forget", "--file", str(ids))
    assert f"forget: {problem['notice']}\n" in out.stderr


def test_forget_erases_the_users_quarantined_rows_with_control_characters_and_no_others(home):
    _, data, _ = home
    rep = json.loads(behavior(data, "forget", USER, "--json").stdout)
    assert (rep["users"], rep["matched"], rep["unmatched_ids"]) == (1, 1, [])
    assert quarantined_ids(data) == sorted(NEIGHBOURS["a"] + NEIGHBOURS["b"])
    assert inbox_rejected_ids(data) == ["x" + USER + "\x00"]
    assert rep["inbox_rows"] == 1
    stored = pq.read_table(data / "lake" / "payments").column("user_id").to_pylist()
    assert USER not in stored and len(stored) > 100



def test_a_later_notification_of_the_user_with_a_control_character_keeps_nothing(home):
    """After the erasure, the API refuses such a line as erased_user, as it does the user's other lines."""
    root, data, _ = home
    secret = add_sender(data, "psp2")
    body = encode([payment("n-3", user="\x1b" + USER), payment("n-4", user=USER + "0\x00")])
    with serving(data, root / "serve-2.log") as base:
        receipt = httpx.post(base + PATH, content=body, headers=signed("psp2", body, secret=secret), timeout=30).json()
    assert [(x["payment_id"], x["reason"]) for x in receipt["rejected"]] == [("n-3", "erased_user"), ("n-4", "bad_user_id")]
    assert inbox_rejected_ids(data) == sorted(["x" + USER + "\x00", USER + "0\x00"])
    con = sqlite3.connect(inbox_path(data))
    try:
        assert con.execute("SELECT user_id, raw FROM rejected WHERE payment_id = 'n-3'").fetchall() == [(None, None)]
    finally:
        con.close()


KILL_IN_QUARANTINE = """
import os, signal
import pyarrow.parquet as pq
real = pq.write_table
def write_table(table, where, *a, **k):
    real(table, where, *a, **k)
    if "-forget-q" in str(where):
        os.kill(os.getpid(), signal.SIGKILL)   # the first quarantine file rewritten, the others not
pq.write_table = write_table
"""

KILL_IN_INBOX = """
import os, signal
import behavior.store.inbox as inbox
def die(user_id):
    os.kill(os.getpid(), signal.SIGKILL)       # the user's lines deleted, their rejected lines not yet
inbox.without_controls = die
"""


@pytest.fixture(scope="module")
def quarantine_only(tmp_path_factory):
    """A data home with the two quarantine files and an inbox holding USER's lines, no bundle."""
    root = tmp_path_factory.mktemp("forget-kill")
    data = root / "data"
    for part in ("a", "b"):
        _bad_file(root / f"bad-{part}.parquet", part)
        behavior(data, "ingest", str(root / f"bad-{part}.parquet"), "--default", "currency=EUR")
    line = {"line_no": 1, "user_id": USER, "merchant_id": "m001", "item_id": "i1", "category": None, "quantity": 1,
            "amount": None, "currency": "EUR", "paid_at": datetime(2026, 6, 1, tzinfo=timezone.utc),
            "channel": "app", "status": "success", "promotion_id": None}
    inbox = Inbox(data)
    inbox.append(pa.Table.from_pylist([{**line, "payment_id": "n-1"}], schema=PAYMENTS.arrow_schema),
                 [{"payment_id": "n-2", "line_no": 1, "user_id": "\x00" + USER, "reason": "bad_user_id",
                   "detail": "d", "raw": json.dumps({"user_id": "\x00" + USER})}], "psp", 1)
    inbox.close()
    return data


def _files(data) -> dict[str, bytes]:
    """Every file of the quarantine and the inbox's rows: what a kill must leave as it was."""
    out = {str(f.relative_to(data)): f.read_bytes() for f in sorted((data / "lake" / "_rejected").rglob("*"))
           if f.is_file()}
    con = sqlite3.connect(inbox_path(data))
    try:
        for table in ("lines", "rejected"):
            out[f"inbox {table}"] = repr(con.execute(f"SELECT * FROM {table} ORDER BY seq").fetchall()).encode()
    finally:
        con.close()
    return out


@pytest.mark.parametrize("patch", [KILL_IN_QUARANTINE, KILL_IN_INBOX], ids=["in-the-quarantine", "in-the-inbox"])
def test_a_kill_mid_forget_leaves_the_quarantine_and_the_inbox_as_before(quarantine_only, tmp_path, patch):
    data = tmp_path / "data"
    shutil.copytree(quarantine_only, data)
    before = _files(data)
    out = patched(data, patch, "forget", USER)
    assert out.returncode == -9, out.stderr
    after = _files(data)
    if patch is KILL_IN_QUARANTINE:      # the inbox goes first, in its own transaction
        assert {k: v for k, v in after.items() if not k.startswith("inbox")} == \
            {k: v for k, v in before.items() if not k.startswith("inbox")}
    else:
        assert after == before
    rep = json.loads(behavior(data, "forget", USER, "--json").stdout)        # the next forget finishes it
    assert rep["matched"] == 1
    assert quarantined_ids(data) == sorted(NEIGHBOURS["a"] + NEIGHBOURS["b"])
    assert inbox_rejected_ids(data) == []
    assert not any((data / "lake" / "_txn").glob("*"))
