"""The access log's user ids are keyed hashes (api.server.UserIdsHashed); the real server's log
is checked in test_workers_e2e.py."""

import logging
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from behavior.store.erasure_log import ErasureLog
from api.server import UserIdsHashed
from behavior.ids import normalize_id


def test_paths_with_user_ids_are_logged_with_their_keyed_hash(tmp_path):
    f = UserIdsHashed(str(tmp_path))
    key = ErasureLog(tmp_path).key_hash
    assert f.path("/v1/users/u0000001/profile") == f"/v1/users/#{key('u0000001')[:16]}/profile"
    assert f.path("/v1/users/a/b/recommendations?n=3&category=x") == \
        f"/v1/users/#{key('a/b')[:16]}/recommendations?n=3&category=x"
    assert f.path("/v1/admin/users/caf%C3%A9") == f"/v1/admin/users/#{key('café')[:16]}"
    assert f.path("/v1/users/%20u1%09/profile") == f.path("/v1/users/u1/profile")   # one normalisation
    assert f.path("/v1/users/profile?user_id=u%2F1") == f"/v1/users/profile?user_id=#{key('u/1')[:16]}"
    assert f.path("/v1/users/recommendations?n=2&user_id=x") == f"/v1/users/recommendations?n=2&user_id=#{key('x')[:16]}"
    assert f.path("/v1/users/profile/profile") == f"/v1/users/#{key('profile')[:16]}/profile"
    for untouched in ("/v1/model", "/v1/items/i1/similar?n=5", "/v1/segments/query", "/healthz"):
        assert f.path(untouched) == untouched


def test_the_filter_rewrites_uvicorns_access_record(tmp_path):
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5000", "DELETE", "/v1/admin/users/u0000042", "1.1", 200), None)
    assert UserIdsHashed(str(tmp_path)).filter(record) is True
    assert "u0000042" not in record.getMessage() and "/v1/admin/users/#" in record.getMessage()


@settings(max_examples=200, deadline=None)
@given(user=st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=40).filter(
    lambda u: normalize_id(u) and not u.endswith(("/profile", "/recommendations"))))
def test_no_id_survives_in_a_logged_path(tmp_path_factory, user):
    root = tmp_path_factory.getbasetemp() / "access-log-secret"
    root.mkdir(exist_ok=True)
    f = UserIdsHashed(str(root))
    digest = ErasureLog(root).key_hash(normalize_id(user))[:16]
    for suffix in ("/profile", "/recommendations"):
        assert f.path(quote(f"/v1/users/{user}{suffix}")) == f"/v1/users/#{digest}{suffix}"
    assert f.path(quote(f"/v1/admin/users/{user}")) == f"/v1/admin/users/#{digest}"
