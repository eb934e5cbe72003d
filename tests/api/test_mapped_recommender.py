"""The API serves recommender.npz from arrays mapped from the file: every array mapped, it
answers as the arrays np.load copies, and erasing a user works on the mapped arrays."""

import numpy as np

from api.bundle import _load_recommender, recommender_without
from behavior.recommend.serving import ServingModel
from behavior.store import mapped_npz
from behavior.store.bundle import RECOMMENDER, read_recommender


def test_mapped_arrays_serve_the_same_answers(home, monkeypatch):
    folder = home.bundles / home.active()
    monkeypatch.setattr(mapped_npz, "MAP_FROM", 0)
    served = _load_recommender(folder, folder.name)
    copied = ServingModel.from_arrays(read_recommender(folder / RECOMMENDER.file))
    assert not served._indices.flags.writeable          # mapped, not copied
    users = [str(u) for u in copied.users.ids[:40]]
    for user in users:
        for category in (None, str(copied.category_names[0])):
            a, b = served.recommend(user, n=10, category=category), copied.recommend(user, n=10, category=category)
            assert (a.source, a.items) == (b.source, b.items)
    items = [str(i) for i in copied.items.ids[:3]]
    assert served.recommend_for_items(items, n=5) == copied.recommend_for_items(items, n=5)
    assert served.similar(items[0], n=5) == copied.similar(items[0], n=5)
    gone = recommender_without(served, {users[0]})
    assert gone.users.index_of(users[0]) == -1
    assert gone.recommend(users[0], n=10) == copied.recommend("no-such-user", n=10)   # the fallback
    assert np.array_equal(served._data, copied._data)
