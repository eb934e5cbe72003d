"""Loading a bundle: everything verified, every refusal precise and free of local paths."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from api.bundle import Profiles, load_bundle
from behavior.store.bundle import BundleError, list_bundles
from behavior.store.datahome import DataHome
from tests.api.conftest import clone_bundle, write_manifest


def test_the_published_bundle_loads(home):
    b = load_bundle(home.bundles / home.active())
    assert b.version == home.active() and len(b.profiles) == pq.read_metadata(
        home.bundles / home.active() / "profiles.parquet").num_rows
    assert b.recommender is not None
    assert b.profiles.fields["clv"] == "number" and b.profiles.fields["last_purchase_at"] == "timestamp"


def _refusal(folder) -> str:
    with pytest.raises(BundleError) as err:
        load_bundle(folder)
    message = str(err.value)
    assert str(folder.parent) not in message and "/" not in message.split(": ", 1)[1].replace("n/a", "")
    return message


def test_a_flipped_byte_is_refused(home):
    folder = clone_bundle(home.bundles, home.active(), "v-flipped")
    data = bytearray((folder / "profiles.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "profiles.parquet").write_bytes(bytes(data))
    assert "profiles.parquet does not match its checksum" in _refusal(folder)


@pytest.mark.parametrize("breakage, message", [
    ("no-manifest", "no manifest.json"),
    ("bad-json", "manifest.json is not valid JSON"),
    ("wrong-version", "names version"),
    ("missing-file", "merchants.parquet is listed in the manifest but missing"),
    ("no-column", "has no column marketing_opt_out"),
    ("duplicate-ids", "user_id is not unique"),
    ("unlisted-recommender", "recommender.npz is not in the manifest"),
])
def test_broken_bundles_are_refused(home, breakage, message):
    transform = None
    if breakage == "no-column":
        transform = lambda t: t.drop_columns(["marketing_opt_out"])  # noqa: E731
    if breakage == "duplicate-ids":
        transform = lambda t: pa.concat_tables([t, t.slice(0, 1)])  # noqa: E731
    folder = clone_bundle(home.bundles, home.active(), f"v-{breakage}", profiles=transform)
    manifest = folder / "manifest.json"
    if breakage == "no-manifest":
        manifest.unlink()
    elif breakage == "bad-json":
        manifest.write_text("{")
    elif breakage == "wrong-version":
        doc = json.loads(manifest.read_text())
        doc["version"] = "other"
        manifest.write_text(json.dumps(doc))
    elif breakage == "missing-file":
        (folder / "merchants.parquet").unlink()
    elif breakage == "unlisted-recommender":
        doc = json.loads(manifest.read_text())
        aside = folder.parent / "recommender.aside"
        (folder / "recommender.npz").rename(aside)
        write_manifest(folder, doc)
        aside.rename(folder / "recommender.npz")
    assert message in _refusal(folder)


def test_bundles_are_listed_by_creation(home):
    first = home.active()
    clone_bundle(home.bundles, first, "a-later", later_by_s=60)
    clone_bundle(home.bundles, first, "z-earlier", later_by_s=-60)
    assert list_bundles(DataHome(home.root)) == ["z-earlier", first, "a-later"]


def test_a_profiles_segment_is_its_rows_segment_after_rows_are_dropped(home):
    """Profiles.segment (codes read per GET recommendations) agrees with the table's column on
    every row, a null segment included, and again on the view that erasing users makes."""
    table = load_bundle(home.bundles / home.active()).profiles.table
    segments = table.column("segment").to_pylist()
    segments[1] = None
    mine = Profiles(table.set_column(table.column_names.index("segment"), "segment",
                                     pa.array(segments, table.schema.field("segment").type)))
    assert [mine.segment(i) for i in range(len(mine))] == segments and mine.segment(1) is None
    view = mine.updated(drop=list(range(0, len(mine), 3)), opt_out=[])
    assert [view.segment(view.index[u]) for u in view.index] == \
        [s for i, s in enumerate(segments) if i % 3]
