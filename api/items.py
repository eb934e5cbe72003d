"""What a recommended item shows besides its id and score: name, category, merchant_id and
price, from the bundle's recommender arrays (null where the bundle does not know them).

`ItemDetails` prepares, once per bundle at load, each item's attributes as a JSON fragment
(`"name":...,"category":...,"merchant_id":...,"price":...`) and as a row, so the hot
recommendation route only splices bytes per item.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic_core import to_json

from behavior.recommend.serving import ServingModel

ATTRIBUTES = ("name", "category", "merchant_id", "price")


def _text(values: np.ndarray | None, n: int) -> list[str | None]:
    if values is None:
        return [None] * n
    return [v or None for v in values.tolist()]


class ItemDetails:
    """The attributes of every item of a recommender, ready to serve."""

    def __init__(self, model: ServingModel) -> None:
        n = len(model.items)
        self._index_of = dict(zip(model.items.ids.tolist(), range(n)))   # a dict: the hot path looks up each item
        names = model.category_names.tolist()
        category = [names[c] if c >= 0 else None for c in model.item_category.tolist()]
        price = ([None] * n if model.item_price is None else
                 [p if math.isfinite(p) else None for p in model.item_price.tolist()])
        columns = {"name": _text(model.item_name, n), "category": category,
                   "merchant_id": _text(model.item_merchant, n), "price": price}
        self._rows = [dict(zip(ATTRIBUTES, values)) for values in zip(*columns.values())] if n else []
        # '{"name":..,"price":..}' without its braces: spliced after the id and score of an item
        self._fragments = [to_json(row)[1:-1] for row in self._rows]
        self._none = to_json(dict.fromkeys(ATTRIBUTES))[1:-1]

    def _index(self, item_id: str) -> int:
        return self._index_of.get(item_id, -1)

    def row(self, item_id: str) -> dict[str, Any]:
        """name, category, merchant_id, price of the item (None where unknown)."""
        i = self._index(item_id)
        return dict(self._rows[i]) if i >= 0 else dict.fromkeys(ATTRIBUTES)

    def items_json(self, pairs: list[tuple[str, float]]) -> bytes:
        """The JSON array of `pairs` (item id, finite score) with each item's attributes:
        [{"item_id":..,"score":..,"name":..,"category":..,"merchant_id":..,"price":..}, ...]."""
        parts = []
        for item_id, score in pairs:
            i = self._index(item_id)
            parts.append(b'{"item_id":' + to_json(item_id) + b',"score":' + to_json(score) + b","
                         + (self._fragments[i] if i >= 0 else self._none) + b"}")
        return b"[" + b",".join(parts) + b"]"
