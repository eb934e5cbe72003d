"""The benchmarks' payment lines: random but plausible, made in a few seconds at 10M lines
(the ingest, features, churn, engines and scale benchmarks)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def make_payments(lines: int, seed: int = 0) -> pa.Table:
    """Random but plausible payment lines (vectorised; 10M lines in a few seconds)."""
    rng = np.random.default_rng(seed)
    users = max(lines // 10, 1)
    items = max(min(lines // 100, 200_000), 1)
    user = rng.integers(0, users, lines)
    item = np.minimum(rng.zipf(1.3, lines) - 1, items - 1)
    start = 1_704_067_200  # 2024-01-01
    paid = start + rng.integers(0, 700 * 86_400, lines)
    status = rng.choice(np.array(["success", "failed", "refund"]), lines, p=[0.96, 0.025, 0.015])
    amount = rng.gamma(2.0, 15.0, lines).round(2)
    amount = np.where(status == "refund", -amount, amount)
    return pa.table({
        "payment_id": pa.array(np.char.add("p", np.arange(lines).astype(str))),
        "line_no": pa.array(np.ones(lines, dtype=np.int32)),
        "user_id": pa.array(np.char.add("u", user.astype(str))),
        "merchant_id": pa.array(np.char.add("m", (item % 997).astype(str))),
        "item_id": pa.array(np.char.add("i", item.astype(str))),
        "category": pa.array(np.char.add("c", (item % 20).astype(str))),
        "quantity": pa.array(np.where(status == "refund", -1, 1).astype(np.int32)),
        "amount": pa.array(amount),
        "paid_at": pa.array(paid * 1_000_000, pa.timestamp("us", tz="UTC")),
        "channel": pa.array(rng.choice(np.array(["app", "web", "wap", "qr", "pos"]), lines)),
        "status": pa.array(status),
    })
