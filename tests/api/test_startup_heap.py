"""The objects alive after the app's first start-up are out of the garbage collector's view
(api.main.freeze_startup_heap), and that keeps no bundle alive once it is replaced."""

import gc
import weakref

from fastapi.testclient import TestClient

from api.main import create_app
from tests.api.conftest import clone_bundle, point_current


def test_the_start_up_heap_is_frozen_and_a_replaced_bundle_is_freed(home):
    with TestClient(create_app(home.settings()), raise_server_exceptions=False) as c:
        assert gc.get_freeze_count() > 0
        frozen = set(map(id, gc.get_objects()))
        assert id(c.app) not in frozen   # out of the collector's view, not merely old
        first = weakref.ref(c.app.state.serving.bundle)
        clone_bundle(home.bundles, home.active(), "v-next")
        point_current(home, "v-next")
        assert c.post("/v1/admin/reload", headers=home.headers("admin")).status_code == 200
        assert c.app.state.serving.bundle.version == "v-next"
        gc.collect()
        assert first() is None
