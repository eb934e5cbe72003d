"""The objects alive after the app's first start-up are out of the garbage collector's view
(api.main.freeze_startup_heap), and that keeps no bundle alive once it is replaced."""

import gc
import subprocess
import sys
import weakref

from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import clone_bundle, point_current

# a process of its own: the freeze is made once per process, by the first app to start
FIRST_START = """
import gc, sys
from fastapi.testclient import TestClient
from api.main import create_app
from api.settings import Settings
app = create_app(Settings(data_dir=sys.argv[1], reload_interval_s=0))
assert gc.get_freeze_count() == 0
with TestClient(app) as c:
    tracked = {id(o) for g in range(3) for o in gc.get_objects(g)}
    print(gc.get_freeze_count() > 10_000, id(app) in tracked, id(app.state.serving.bundle) in tracked)
"""


def test_the_first_start_up_freezes_the_heap_with_the_app_and_its_bundle(home):
    out = subprocess.run([sys.executable, "-c", FIRST_START, str(home.root)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "False", "False"]


def test_a_replaced_bundle_is_freed(home):
    with TestClient(create_app(home.settings()), raise_server_exceptions=False) as c:
        first = weakref.ref(c.app.state.serving.bundle)
        clone_bundle(home.bundles, home.active(), "v-next")
        point_current(home, "v-next")
        assert c.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
        assert c.app.state.serving.bundle.version == "v-next"
        gc.collect()
        assert first() is None
