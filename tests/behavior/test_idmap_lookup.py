"""IdMap lookups (one id: `index_of`; many: `index`) with known answers: ids that are present,
absent, percent-encoded (an id is looked up as stored: no decoding) and near neighbours in sort
order (prefixes, extensions, the next code point), on the map and on the serving side's map
of erased users."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from api.bundle import _ErasedIds
from behavior.recommend.interactions import IdMap

# in code point order, so each id's index is its position here
IDS = ["a%2Fb", "a/b", "u0000001", "u00000010", "u0000002", "u000001", "u1", "u10", "é", "ü", "日本"]
ABSENT = ["", "a", "a%2fb", "a%2F", "a/", "a/b/", "U0000001", "u000000", "u0000001 ", " u0000001", "u00000011",
          "u0000000", "u0000003", "u0", "u2", "u100", "e", "ê", "日", "日本語", "zzz", "\uffff"]


def test_every_present_id_is_found_at_its_sorted_position():
    ids = IdMap.fit(list(reversed(IDS)))
    assert ids.ids.tolist() == IDS
    for i, value in enumerate(IDS):
        assert ids.index_of(value) == i, value
    assert ids.index(IDS).tolist() == list(range(len(IDS)))


def test_absent_ids_and_near_neighbours_are_not_found():
    ids = IdMap(IDS)
    for value in ABSENT:
        assert ids.index_of(value) == -1, value
    assert ids.index(ABSENT).tolist() == [-1] * len(ABSENT)
    assert IdMap([]).index_of("u1") == -1


def test_one_id_with_a_trailing_nul_is_not_the_id_without_it():
    # numpy's str arrays drop trailing NULs, so the id looked up must be compared as sent
    assert IdMap(IDS).index_of("u1\x00") == -1 and IdMap(IDS).index_of("u1") == 6


def test_a_percent_encoded_id_is_its_own_id():
    ids = IdMap(IDS)
    assert (ids.index_of("a/b"), ids.index_of("a%2Fb"), ids.index_of("a%2fb")) == (1, 0, -1)


def test_erased_ids_look_unknown_and_their_neighbours_do_not():
    erased = _ErasedIds(IdMap(IDS).ids, frozenset({"u0000001", "a/b"}))
    want = [-1 if v in ("u0000001", "a/b") else i for i, v in enumerate(IDS)]
    assert [erased.index_of(v) for v in IDS] == want
    assert erased.index(IDS).tolist() == want
    assert [erased.index_of(v) for v in ABSENT] == [-1] * len(ABSENT)


_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


def _neighbours(value: str) -> list[str]:
    """Ids next to `value` in sort order: its prefix, extensions, the last character moved by one."""
    out = [value[:-1], value + "0", value + "\uffff", "0" + value]
    if value:
        last = ord(value[-1])
        out += [value[:-1] + chr(c) for c in (last - 1, last + 1) if 0 < c < 0x110000 and not 0xD800 <= c < 0xE000]
    return out


@settings(max_examples=300, deadline=None)
@given(st.sets(_TEXT, max_size=30), st.lists(_TEXT, max_size=10))
def test_a_lookup_answers_the_sorted_position_or_minus_one(values, others):
    ids = IdMap.fit(sorted(values)) if values else IdMap([])
    order = sorted(values)
    probes = [*order, *others, *(n for v in order for n in _neighbours(v))]
    want = [order.index(p) if p in values else -1 for p in probes]
    assert [ids.index_of(p) for p in probes] == want
    assert ids.index(np.array(probes, dtype=np.str_) if probes else []).tolist() == want
