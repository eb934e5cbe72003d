"""The recommend stage through the runner: selection, the held-out check, a servable bundle."""

import numpy as np
import pytest

from behavior.recommend.serving import ServingModel
from pipelines.config import Config, RecommendConfig
from pipelines.ingest import IngestOptions, ingest
from pipelines.runner import run_pipeline
from pipelines.synth_files import write_synth


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from behavior.store.datahome import DataHome

    root = tmp_path_factory.mktemp("rec")
    write_synth(root / "synth", users=4000, months=12, seed=5)
    home = DataHome(root / "data")
    ingest(home, [root / "synth"], IngestOptions())
    # a budget above every configuration's estimated cost: the whole search space is tried
    report = run_pipeline(home, Config(recommend=RecommendConfig(search_seconds=3600)), stages=["recommend"])
    return home, report


def test_report_lists_candidates_and_the_choice(run):
    _, rep = run
    rec = rep["recommend"]
    assert rec["k"] == 10 and rec["selected"] in rec["models"]
    for name in ("popularity", "buy_again", "item_knn", "ease", "als", "bpr"):
        assert {"precision@10", "recall@10", "ndcg@10", "map@10", "coverage"} <= set(rec["models"][name]), name
    chosen = rec["models"][rec["selected"]]["ndcg@10"]
    assert chosen >= rec["models"]["popularity"]["ndcg@10"]  # never worse than popularity on validation


def test_report_states_the_choice_and_the_search(run):
    _, rep = run
    rec = rep["recommend"]
    selection, search = rec["selection"], rec["search"]
    assert selection["chosen"] == rec["selected"] and selection["metric"] == "ndcg@10"
    rows = {c["name"]: c for c in selection["candidates"]}
    assert rows["popularity"]["baseline"] and rows["buy_again"]["baseline"] and not rows["ease"]["baseline"]
    assert all(r["low"] <= r["value"] <= r["high"] for r in rows.values())
    assert search["budget_seconds"] == 3600 and search["configs"] == 17 and 0 < search["seconds"] < 3600
    assert len(search["rungs"]) == 1 and len(search["rungs"][0]["configs"]) == 17   # 4,000 users: one rung


def test_planted_tastes_beat_popularity_on_the_held_out_period(run):
    _, rep = run
    test = rep["recommend"]["test"]
    assert test["days"] == 30 and test[rep["recommend"]["selected"]]["users"] > 100
    assert test["users_sampled"] is False   # fewer test users than max_eval_users: all of them
    assert test["ndcg_gain_over_popularity"] >= 0.30


def test_scored_users_are_the_eligible_ones_or_a_seeded_sample_of_them():
    import scipy.sparse as sp

    from pipelines.stages.recommend import users_to_score

    rng = np.random.default_rng(1)
    net = sp.csr_matrix((rng.random((300, 20)) < 0.1).astype(np.float32))
    relevant = sp.csr_matrix((rng.random((300, 20)) < 0.1).astype(np.float32))
    eligible = np.flatnonzero((net.getnnz(axis=1) > 0) & (relevant.getnnz(axis=1) > 0))
    users, sampled = users_to_score(net, relevant)
    assert not sampled and np.array_equal(users, eligible) and 50 < eligible.size < 300
    users, sampled = users_to_score(net, relevant, 40, seed=3)
    assert sampled and users.size == 40 and np.all(np.diff(users) > 0) and np.isin(users, eligible).all()
    assert np.array_equal(users_to_score(net, relevant, 40, seed=3)[0], users)      # the same for every model
    assert not np.array_equal(users_to_score(net, relevant, 40, seed=4)[0], users)


def test_bundle_serves_without_pickle(run):
    home, rep = run
    folder = home.bundles / rep["bundle_version"]
    with np.load(folder / "recommender.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    model = ServingModel.from_arrays(arrays)
    user = str(arrays["user_ids"][0])
    known = model.recommend(user, n=5)
    assert known.source == "model" and len(known.items) == 5
    active = dict(zip(arrays["item_ids"], arrays["item_active"]))
    assert all(active[i] for i, _ in known.items)
    cold = model.recommend("someone-new", n=5)
    assert cold.source == "fallback" and len(cold.items) == 5
    assert len(model.similar(known.items[0][0], n=3)) == 3


def test_one_scan_of_periods_gives_the_matrices_of_a_scan_per_period(run):
    """The stage reads every prefix of its split in one scan (`Periods`); each training prefix
    and each period's purchases equal what a query of that period alone gives, days included."""
    from datetime import timedelta

    from pipelines.runner import open_context
    from pipelines.stages.recommend import _id_maps, _interactions, _periods, _purchased

    home, rep = run
    ctx = open_context(home, Config(), None)
    try:
        end = ctx.as_of
        cuts = (end - timedelta(days=60), end - timedelta(days=30))
        users, items = _id_maps(ctx, end)
        periods = _periods(ctx, users, items, cuts, end)
        for k, (start, stop) in enumerate(zip((None, *cuts), (*cuts, end))):
            one = _interactions(ctx, users, items, None, stop).matrices()
            prefix = periods.matrices(k + 1)
            for a, b in zip(one, prefix):
                assert a.nnz > 0 and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)
                assert np.allclose(a.data, b.data, rtol=1e-5, atol=1e-4)  # counts; days (float32)
            if start is not None:
                bought = _purchased(ctx, users, items, start, stop)
                assert bought.nnz > 0 and (bought != periods.bought(k)).nnz == 0
    finally:
        ctx.con.close()


def test_the_scan_by_user_parts_gives_the_rows_of_the_scan_in_one_piece(run, monkeypatch):
    """Above the user parts' size the users and the prefixes are read part by part (ranges of
    user_id, one after another in user order): the id maps and every array of `Periods` are the
    one-piece scan's, bit for bit."""
    from datetime import timedelta

    import behavior.features as F
    from pipelines.runner import open_context
    from pipelines.stages.recommend import _id_maps, _log_parts, _periods

    home, _ = run
    held, ids = {}, {}
    for part_lines in (None, 10_000):
        if part_lines:
            monkeypatch.setattr(F, "PART_LINES", part_lines)
        ctx = open_context(home, Config(), None)
        try:
            end = ctx.as_of
            users, items = _id_maps(ctx, end)
            cuts = (end - timedelta(days=60), end - timedelta(days=30))
            held[part_lines] = ([r for _, r in _log_parts(ctx, end)], _periods(ctx, users, items, cuts, end))
            ids[part_lines] = (users.ids, items.ids)
        finally:
            ctx.user_parts.close()
            ctx.con.close()
    (one_relations, one), (parted_relations, parted) = held[None], held[10_000]
    assert one_relations == ["payments"] and len(parted_relations) >= 3
    assert all(np.array_equal(a, b) for a, b in zip(ids[None], ids[10_000])) and ids[None][0].size > 3000
    assert one.item_idx.size > 10_000 and np.array_equal(one.indptr, parted.indptr)
    assert np.array_equal(one.item_idx, parted.item_idx)
    for a, b in zip([*one.net, *one.days, *one.bought_in], [*parted.net, *parted.days, *parted.bought_in]):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_segment_codes_are_each_known_users_position_in_segments():
    """Each user of the id map gets its segment's position in SEGMENTS; a user without a row,
    or with a segment name not in SEGMENTS, gets -1; users the map does not know are ignored;
    a dictionary-encoded segment column reads the same."""
    from types import SimpleNamespace

    import pyarrow as pa

    from behavior.recommend.interactions import IdMap
    from behavior.segments import SEGMENTS
    from pipelines.stages.recommend import _segment_codes

    users = IdMap(["a", "b", "c", "d"])
    rows = {"user_id": ["d", "zz", "b", "a"], "segment": [SEGMENTS[2], SEGMENTS[0], SEGMENTS[-1], "no such"]}
    expected = [-1, len(SEGMENTS) - 1, -1, 2]
    for table in (pa.table(rows), pa.table({**rows, "segment": pa.array(rows["segment"]).dictionary_encode()})):
        codes = _segment_codes(SimpleNamespace(outputs={"segments": table}), users)
        assert codes.dtype == np.int32 and codes.tolist() == expected
    assert _segment_codes(SimpleNamespace(outputs={}), users).tolist() == [-1] * 4
