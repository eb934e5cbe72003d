"""behavior.store.opt_outs: the late opt-outs file ingest writes and the API reads."""

import json
import stat

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from behavior.pii import erasure_hash
from behavior.store import opt_outs

SECRET = bytes(range(32))


def rows(*pairs: tuple[str, bool]) -> pa.Table:
    return pa.table({"user_id": pa.array([u for u, _ in pairs], pa.string()),
                     "signup_at": pa.nulls(len(pairs), pa.timestamp("us", "UTC")),
                     "marketing_opt_out": pa.array([o for _, o in pairs], pa.bool_())})


def h(user: str) -> str:
    return erasure_hash(SECRET, user)


def test_later_rows_win_and_later_ingests_add_and_remove(tmp_path):
    assert opt_outs.read(tmp_path) == frozenset() and not (tmp_path / opt_outs.FILE).exists()
    n = opt_outs.update(tmp_path, SECRET, rows(("u1", True), ("u2", False), ("u3", True), ("u1", False)))
    assert n == 1 and opt_outs.read(tmp_path) == {h("u3")}
    opt_outs.update(tmp_path, SECRET, rows(("u2", True), ("u4", False)))
    assert opt_outs.read(tmp_path) == {h("u2"), h("u3")}          # u3 not in this ingest: stays
    opt_outs.update(tmp_path, SECRET, rows(("u3", False)))
    assert opt_outs.read(tmp_path) == {h("u2")}


def test_the_file_is_private_names_no_id_and_is_rewritten_only_on_change(tmp_path):
    opt_outs.update(tmp_path, SECRET, rows(("alice-0001", True), ("bob-0002", True)))
    path = tmp_path / opt_outs.FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "alice" not in text and "bob" not in text
    doc = json.loads(text)
    assert doc["format"] == 1 and doc["hashes"] == sorted([h("alice-0001"), h("bob-0002")])
    before = path.stat().st_ino
    opt_outs.update(tmp_path, SECRET, rows(("alice-0001", True), ("carol", False)))
    assert path.stat().st_ino == before
    opt_outs.update(tmp_path, SECRET, rows(("alice-0001", False)))
    assert path.stat().st_ino != before and [p.name for p in tmp_path.iterdir()] == [opt_outs.FILE]


@pytest.mark.parametrize("content", ["{not json", '{"format": 2, "hashes": []}', '["h"]', '{"format": 1}'])
def test_a_file_of_another_shape_is_an_error_naming_it(tmp_path, content):
    (tmp_path / opt_outs.FILE).write_text(content)
    with pytest.raises(opt_outs.OptOutsError, match=opt_outs.FILE):
        opt_outs.read(tmp_path)


users = st.sampled_from(["u1", "u2", "u3", "u4", " u5", "ü6"])
ingests = st.lists(st.lists(st.tuples(users, st.booleans()), max_size=8), min_size=1, max_size=5)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batches=ingests)
def test_the_file_names_exactly_the_users_whose_last_row_opts_out(tmp_path_factory, batches):
    root = tmp_path_factory.mktemp("opt")
    last: dict[str, bool] = {}
    for batch in batches:
        opt_outs.update(root, SECRET, rows(*batch))
        last.update(batch)
    assert opt_outs.read(root) == {h(u) for u, opted in last.items() if opted}
