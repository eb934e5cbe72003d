"""A small published bundle (the real pipeline on synthetic data), built once per session, and
per-test copies of its data home with API keys, so tests may reload, roll back and corrupt.

The bundle gets a recommender.npz (an item kNN fitted here with behavior.recommend) when the
pipeline did not publish one itself.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

with warnings.catch_warnings():  # starlette asks for httpx2, which is not part of the lock file
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import Settings
from behavior.store.bundle import sha256
from behavior.store.datahome import DataHome
from behavior.store.keys import SCOPES, create_key

USERS = 800


@dataclass
class Home:
    root: Path
    keys: dict[str, str]     # key id -> plaintext

    @property
    def bundles(self) -> Path:
        return DataHome(self.root).bundles

    @property
    def current(self) -> Path:
        return DataHome(self.root).current

    def active(self) -> str:
        return self.current.read_text().strip()

    def headers(self, key_id: str = "all", **extra: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[key_id], **extra}

    def settings(self, **overrides) -> Settings:
        base = dict(data_dir=self.root, reload_interval_s=0, rate_limit_per_s=0)
        return Settings(**{**base, **overrides})

    def audit(self) -> list[dict]:
        path = DataHome(self.root).audit_log
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def write_manifest(folder: Path, manifest: dict) -> None:
    manifest["checksums"] = {f.name: sha256(f) for f in sorted(folder.iterdir()) if f.name != "manifest.json"}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def add_recommender(home_root: Path, folder: Path) -> None:
    """Fit an item kNN on the lake's purchases and add its serving arrays to the bundle."""
    from behavior.recommend.interactions import IdMap, build_matrix
    from behavior.recommend.models import ItemKNN
    from behavior.recommend.serving import serving_arrays
    from pipelines.lake import scan_sql

    lake = home_root / "lake"
    con = duckdb.connect()
    pairs = con.sql(f"""SELECT user_id, item_id, count(*)::DOUBLE AS n FROM {scan_sql(lake, 'payments')}
                        WHERE status = 'success' GROUP BY ALL""").fetchnumpy()
    items = con.sql(f"SELECT item_id, category FROM {scan_sql(lake, 'items')}").fetchnumpy()
    users, catalogue = IdMap.fit(pairs["user_id"]), IdMap.fit(np.concatenate([pairs["item_id"], items["item_id"]]))
    m = build_matrix(users.index(pairs["user_id"]), catalogue.index(pairs["item_id"]), pairs["n"],
                     len(users), len(catalogue))
    model = ItemKNN(K=20).fit(m)
    cat_names = np.unique(items["category"].astype(str))
    item_cat = np.full(len(catalogue), -1, np.int32)
    item_cat[catalogue.index(items["item_id"])] = np.searchsorted(cat_names, items["category"].astype(str))
    profiles = pq.read_table(folder / "profiles.parquet", columns=["user_id", "segment"]).to_pydict()
    seg_names = np.unique(np.array(profiles["segment"], dtype=str))
    seg_of = dict(zip(profiles["user_id"], profiles["segment"]))
    user_seg = np.array([np.searchsorted(seg_names, seg_of[u]) if u in seg_of else -1 for u in users.ids], np.int32)
    arrays = serving_arrays(model, user_ids=users, item_ids=catalogue, purchased=m, item_category=item_cat,
                            category_names=cat_names, item_active=np.ones(len(catalogue), bool),
                            user_segment=user_seg, segment_names=seg_names, selected="item_knn")
    np.savez(folder / "recommender.npz", **arrays)
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))


def clone_bundle(bundles: Path, source: str, version: str, *, later_by_s: int = 60,
                 profiles: Callable[[pa.Table], pa.Table] | None = None) -> Path:
    """A new bundle folder `version` made from `source` (created `later_by_s` after it), its
    profiles changed by `profiles` if given; CURRENT is not touched."""
    src, dst = bundles / source, bundles / version
    shutil.copytree(src, dst)
    manifest = json.loads((src / "manifest.json").read_text())
    if profiles is not None:
        pq.write_table(profiles(pq.read_table(src / "profiles.parquet")), dst / "profiles.parquet")
    created = datetime.fromisoformat(manifest["created_at"]) + timedelta(seconds=later_by_s)
    manifest.update(version=version, created_at=created.isoformat(timespec="seconds"))
    write_manifest(dst, manifest)
    return dst


def point_current(home: Home, version: str) -> None:
    tmp = home.current.with_name(".CURRENT.tmp")
    tmp.write_text(version + "\n")
    tmp.replace(home.current)


@pytest.fixture(scope="session")
def published(tmp_path_factory, worker_id) -> Path:
    """A data home with one published bundle (profiles, merchants, report, recommender), built
    once per test run: under pytest-xdist the first worker to need it builds it in the folder the
    workers share, the others wait for it. Tests only read it (or copy it)."""
    if worker_id == "master":
        return _publish(tmp_path_factory.mktemp("api-home"))
    shared = tmp_path_factory.getbasetemp().parent   # this run's folder, common to its workers
    root = shared / "api-home"
    with open(shared / "api-home.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "published").exists():
            shutil.rmtree(root, ignore_errors=True)   # a worker that failed half-way left it
            root.mkdir()
            _publish(root)
            (root / "published").touch()
    return root / "data"


def _publish(root: Path) -> Path:
    """Synthetic data -> ingest -> every stage -> a published bundle in `root`/data."""
    from pipelines.config import Config
    from pipelines.ingest import IngestOptions, ingest
    from pipelines.runner import run_pipeline
    from pipelines.synth_files import write_synth

    synth = root / "synth"
    write_synth(synth, users=USERS, months=12, seed=11, promo_assign_rate=0.5)  # enough to train uplift
    home = DataHome(root / "data")
    ingest(home, [synth], IngestOptions())
    report = run_pipeline(home, Config())
    folder = home.bundles / report["bundle_version"]
    if not (folder / "recommender.npz").exists():
        add_recommender(home.root, folder)
    return home.root


@pytest.fixture
def home(published, tmp_path) -> Home:
    """A private copy of the published data home (without the lake) with one key per role."""
    root = tmp_path / "data"
    shutil.copytree(published / "artifacts", root / "artifacts")
    keys_file = DataHome(root).keys_file
    roles = {"all": list(SCOPES), "admin": ["admin"], "profiles": ["profiles:read"],
             "segments": ["segments:read"], "export": ["segments:read", "segments:export"],
             "recs": ["recommendations:read"], "promo": ["promotions:target"],
             "merchants": ["merchants:read"], "mexport": ["merchants:read", "merchants:export"]}
    return Home(root, {name: create_key(keys_file, name, scopes) for name, scopes in roles.items()})


@pytest.fixture
def client(home) -> Iterator[TestClient]:
    with TestClient(create_app(home.settings()), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def make_client(home) -> Callable[..., TestClient]:
    """make_client(**settings) -> a TestClient (use it as a context manager)."""
    def make(**overrides) -> TestClient:
        return TestClient(create_app(home.settings(**overrides)), raise_server_exceptions=False)
    return make


def assert_problem(r, status: int) -> dict:
    """The response is an RFC 9457 problem with `status` and no internals; returns its body."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(body)
    assert body["status"] == status and isinstance(body["title"], str) and body["title"]
    text = r.text
    assert "Traceback" not in text and "/tmp" not in text and "/work" not in text and ".py" not in text
    return body
