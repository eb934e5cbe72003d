"""The live loop of `behavior demo`: the API serves in a child process while a demo shop sends
a few signed purchases; a customer's recommendations are printed before and after."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from behavior.store.senders import add_sender, read_senders
from behavior.store.datahome import DataHome
from pipelines.notify_send import send_payments, signer

DEMO_SENDER = "demo-shop"


def _get(base: str, path: str, key: str) -> dict:
    req = urllib.request.Request(base + path, headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def live_loop(home: DataHome, base: str, key: str, user: str, say: Callable[[str], None], purchases: int = 3) -> dict:
    """Send `purchases` signed purchases of `user`'s top recommended items and show the
    recommendations (bought items left out) before and after; returns both lists and the
    profile's live_since."""
    known = {s.name: s for s in read_senders(home.root)}
    secret = known[DEMO_SENDER].secret.hex() if DEMO_SENDER in known else add_sender(home.root, DEMO_SENDER)
    before = [x["item_id"] for x in _get(base, f"/v1/users/{user}/recommendations?n=5&exclude_purchased=true", key)["items"]]
    say(f"\nlive: {user}'s recommendations now:    {', '.join(before)}")
    paid = (datetime.now(timezone.utc) - timedelta(seconds=2)).isoformat()
    stamp = int(time.time())
    payments = [{"payment_id": f"demo-{stamp}-{i}", "user_id": user, "merchant_id": "demo", "paid_at": paid,
                 "status": "success", "currency": None, "channel": "app", "promotion_id": None,
                 "lines": [{"line_no": 1, "item_id": item, "category": None, "quantity": 1, "amount": None}]}
                for i, item in enumerate(before[:purchases])]
    sent = send_payments(base, DEMO_SENDER, payments, signer(secret_hex=secret))
    say(f"live: {DEMO_SENDER} notified {sent.payments} purchases of {user} ({', '.join(before[:purchases])}): "
        f"{sent.accepted} lines acknowledged")
    time.sleep(1.0)   # every worker reads the inbox at least every 100 ms
    after = [x["item_id"] for x in _get(base, f"/v1/users/{user}/recommendations?n=5&exclude_purchased=true", key)["items"]]
    profile = _get(base, f"/v1/users/{user}/profile", key)
    say(f"live: {user}'s recommendations a second later: {', '.join(after)}")
    say(f"live: profile recency_days {profile['recency_days']:.3f}, live_since {json.dumps(profile['live_since'])}")
    return {"before": before, "after": after, "live_since": profile["live_since"]}


def serve_with_live_loop(home: DataHome, port: int, key: str, user: str, say: Callable[[str], None]) -> None:
    """`behavior serve` in a child process, the live loop against it, then serve until Ctrl-C."""
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-c", "from pipelines.cli import main; main()", "--data-dir",
                             str(home.root), "serve", "--port", str(port)])
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(base + "/readyz", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the API did not start; see its log above") from None
                time.sleep(0.2)
        live_loop(home, base, key, user, say)
        say("Ctrl-C stops the server.")
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
