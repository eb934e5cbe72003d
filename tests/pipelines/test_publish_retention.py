"""Bundles are kept for the last KEEP_BUNDLES runs (and the active one), not for ever."""

from pipelines.publish import KEEP_BUNDLES, prune_bundles


def test_prune_keeps_the_newest_and_the_active_bundle(home):
    versions = [f"20260{m}01T000000Z-abc{m}" for m in range(1, 9)]
    for v in versions:
        (home.bundles / v).mkdir(parents=True)
    (home.bundles / ".tmp-x").mkdir()
    home.current.write_text(versions[0] + "\n")          # rolled back to the oldest
    removed = prune_bundles(home)
    left = sorted(p.name for p in home.bundles.iterdir() if not p.name.startswith("."))
    assert left == [versions[0], *versions[-KEEP_BUNDLES:]]
    assert removed == versions[1:-KEEP_BUNDLES]
    assert prune_bundles(home) == []
