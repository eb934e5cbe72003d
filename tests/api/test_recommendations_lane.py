"""RecommendationsLane: GET recommendations answered ahead of FastAPI, byte for byte as FastAPI's
route answers them, and every request it does not serve answered by FastAPI as before.

Each test runs two apps on one data home: `create_app` (with the lane) and the same app with the
lane taken out of its middlewares (FastAPI's routes answer everything). A spy behind the lane
records every request the lane handed on, so each test knows which of the two answered.
"""

from __future__ import annotations

import json
import re
import shutil
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import count
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from fastapi.testclient import TestClient

from api.main import create_app
from api.routes.recommendations_lane import RecommendationsLane
from behavior.ids import normalize_id
from behavior.store.datahome import DataHome
from behavior.store.erasure_log import ErasureLog
from behavior.store.keys import SCOPES, create_key, revoke_key
from behavior.store.senders import add_sender
from tests.api.conftest import Home, clone_bundle, point_current, write_manifest
from tests.api.notify_helpers import PATH as NOTIFY, encode, payment, signed

ROLES = {"all": list(SCOPES), "recs": ["recommendations:read"], "profiles": ["profiles:read"], "admin": ["admin"]}
_RECOMMENDATION_ID = re.compile(rb'"recommendation_id":"([0-9a-f-]{36})"')


@dataclass
class Pair:
    home: Home
    lane: TestClient        # create_app: the lane in front
    plain: TestClient       # the same app without the lane
    handed_on: list[str]    # paths of the requests the lane handed on to FastAPI
    secret: str


def _without_lane(settings):
    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not RecommendationsLane]
    return app


def _spy(client: TestClient) -> list[str]:
    """Record the path of every request that the app's lane hands on to FastAPI."""
    client.get("/healthz")   # builds the middleware stack
    node = client.app.middleware_stack
    while not isinstance(node, RecommendationsLane):
        node = node.app
    inner, seen = node.app, []

    async def recorder(scope, receive, send):
        seen.append(scope.get("path"))
        await inner(scope, receive, send)

    node.app = recorder
    seen.clear()
    return seen


def _make_home(published, root) -> Home:
    shutil.copytree(published / "artifacts", root / "artifacts")
    keys_file = DataHome(root).keys_file
    return Home(root, {name: create_key(keys_file, name, scopes) for name, scopes in ROLES.items()})


@pytest.fixture
def make_pair(published, tmp_path) -> Iterator:
    """make_pair(**settings) -> a started Pair on a fresh copy of the published home."""
    home = _make_home(published, tmp_path / "data")
    secret = add_sender(home.root, "psp")
    opened = []

    def make(**overrides) -> Pair:
        lane = TestClient(create_app(home.settings(**overrides)), raise_server_exceptions=False).__enter__()
        plain = TestClient(_without_lane(home.settings(**overrides)), raise_server_exceptions=False).__enter__()
        opened.extend([lane, plain])
        return Pair(home, lane, plain, _spy(lane), secret)

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture(scope="module")
def pair(published, tmp_path_factory) -> Iterator[Pair]:
    """One Pair for the property test (no rate limit)."""
    home = _make_home(published, tmp_path_factory.mktemp("lane") / "data")
    with TestClient(create_app(home.settings()), raise_server_exceptions=False) as lane, \
            TestClient(_without_lane(home.settings()), raise_server_exceptions=False) as plain:
        yield Pair(home, lane, plain, _spy(lane), add_sender(home.root, "psp"))


def _masked(r) -> tuple:
    """(status, headers, body) with the recommendation id, a fresh uuid4 in each answer, blanked."""
    for m in _RECOMMENDATION_ID.finditer(r.content):
        assert uuid.UUID(m.group(1).decode()).version == 4
    return r.status_code, r.headers.raw, _RECOMMENDATION_ID.sub(b'"recommendation_id":"-"', r.content)


def _both(p: Pair, url: str, **kwargs) -> tuple:
    """(the lane app's answer, the plain app's answer), each masked."""
    return _masked(p.lane.get(url, **kwargs)), _masked(p.plain.get(url, **kwargs))


def _refresh_live(p: Pair) -> None:
    """Both apps take the inbox's new lines now (their pollers would within 0.1 s)."""
    for c in (p.lane, p.plain):
        c.app.state.live.refresh(c.app.state.serving.bundle)


_payments = count()


def _buy(p: Pair, user: str, item: str) -> None:
    body = encode(payment(f"lane-{next(_payments)}", user=user, items=(item,)))
    r = p.lane.post(NOTIFY, content=body, headers=signed("psp", body, secret=p.secret))
    assert r.status_code == 200, r.text


def _catalogue(p: Pair) -> tuple[list[str], list[str], list[str]]:
    """(known user ids, item ids, category names) of the active bundle."""
    model = p.lane.app.state.serving.bundle.recommender
    return [str(u) for u in model.users.ids[:40]], [str(i) for i in model.items.ids[:40]], \
        [str(c) for c in model.category_names]


def _url(form: str, user: str) -> tuple[str, dict]:
    if form == "query":
        return "/v1/users/recommendations", {"user_id": user}
    return f"/v1/users/{quote(user, safe='/' if form == 'path' else '')}/recommendations", {}


_ODD = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@st.composite
def _requests(draw, catalogue):
    users, items, categories = catalogue
    form = draw(st.sampled_from(["path", "path-%2F", "query"]))
    user = draw(st.one_of(st.sampled_from(users), st.sampled_from(users).map(lambda u: f" {u}\t"), _ODD))
    if not normalize_id(user) or (form == "path" and {".", ".."} & set(user.split("/"))):
        user = users[0]   # ids the lane leaves to FastAPI (only whitespace, a dot segment the client resolves)
    params = {}
    if draw(st.booleans()):
        params["n"] = str(draw(st.integers(1, 100)))
    category = draw(st.none() | st.sampled_from(categories))
    if category is not None:
        params["category"] = category
    exclude = draw(st.sampled_from([None, "true", "false"]))
    if exclude is not None:
        params["exclude_purchased"] = exclude
    bought = draw(st.lists(st.tuples(st.sampled_from(users + [normalize_id(user)]), st.sampled_from(items)),
                           max_size=3))
    return form, user, params, bought


def test_the_lane_answers_as_fastapis_route(pair):
    """A property test: over user ids (known, padded, any text percent-encoded, in each form), n,
    category, exclude_purchased and purchases notified just before, the lane answers and its
    answer is FastAPI's byte for byte (status, headers, body) but for the recommendation id."""
    catalogue = _catalogue(pair)

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_requests(catalogue))
    def check(request):
        form, user, params, bought = request
        for who, item in bought:
            _buy(pair, who, item)
        if bought:
            _refresh_live(pair)
        url, query = _url(form, user)
        pair.handed_on.clear()
        lane, plain = _both(pair, url, params={**query, **params}, headers=pair.home.headers("recs"))
        assert pair.handed_on == [], "the lane handed a well-formed request on to FastAPI"
        assert lane[0] == 200, lane
        assert lane == plain

    check()
    assert pair.home.audit() == []    # the route audits nothing; neither does the lane


USER = "u0000001"
ERRORS = {
    # name: (url, query, the key's role: a key of ROLES, another text sent as the key, None: no key)
    "no key": (f"/v1/users/{USER}/recommendations", {}, None),
    "invalid key": (f"/v1/users/{USER}/recommendations", {}, "bogus"),
    "empty key": (f"/v1/users/{USER}/recommendations", {}, ""),
    "missing scope": (f"/v1/users/{USER}/recommendations", {}, "profiles"),
    "n=0": (f"/v1/users/{USER}/recommendations", {"n": "0"}, "recs"),
    "n=101": (f"/v1/users/{USER}/recommendations", {"n": "101"}, "recs"),
    "n=abc": (f"/v1/users/{USER}/recommendations", {"n": "abc"}, "recs"),
    "n empty": (f"/v1/users/{USER}/recommendations", {"n": ""}, "recs"),
    "n=010 (FastAPI reads 10)": (f"/v1/users/{USER}/recommendations", {"n": "010"}, "recs"),
    "n=+5 (FastAPI reads 5)": (f"/v1/users/{USER}/recommendations", {"n": "+5"}, "recs"),
    "repeated n (FastAPI takes the last)": (f"/v1/users/{USER}/recommendations?n=3&n=4", {}, "recs"),
    "unknown parameter (FastAPI ignores it)": (f"/v1/users/{USER}/recommendations", {"x": "1"}, "recs"),
    "user_id in the path form": (f"/v1/users/{USER}/recommendations", {"user_id": "u0000002"}, "recs"),
    "unknown category": (f"/v1/users/{USER}/recommendations", {"category": "no-such-category"}, "recs"),
    "empty category": (f"/v1/users/{USER}/recommendations", {"category": ""}, "recs"),
    "long category": (f"/v1/users/{USER}/recommendations", {"category": "c" * 201}, "recs"),
    "exclude_purchased=maybe": (f"/v1/users/{USER}/recommendations", {"exclude_purchased": "maybe"}, "recs"),
    "exclude_purchased=yes (FastAPI reads true)": (f"/v1/users/{USER}/recommendations",
                                                   {"exclude_purchased": "yes"}, "recs"),
    "whitespace-only id": ("/v1/users/%20%09/recommendations", {}, "recs"),
    "id too long": (f"/v1/users/{'u' * 201}/recommendations", {}, "recs"),
    "empty id": ("/v1/users//recommendations", {}, "recs"),
    "query form without user_id": ("/v1/users/recommendations", {}, "recs"),
    "query form, empty user_id": ("/v1/users/recommendations", {"user_id": ""}, "recs"),
    "trailing slash": (f"/v1/users/{USER}/recommendations/", {}, "recs"),
    "trailing line break": (f"/v1/users/{USER}/recommendations%0A", {}, "recs"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_what_the_lane_does_not_serve_is_answered_by_fastapi(make_pair, case):
    p = make_pair()
    url, query, role = ERRORS[case]
    headers = {} if role is None else {"X-API-Key": p.home.keys.get(role, role)}
    lane, plain = _both(p, url, params=query or None, headers=headers)   # {} would drop the url's own query
    assert p.handed_on, f"the lane served {case!r}"
    assert lane == plain
    if case == "unknown category":
        assert lane[0] == 422 and b'"field":"category"' in lane[2]


def test_a_head_request_and_other_routes_pass_through(make_pair):
    p = make_pair()
    for method, url in (("HEAD", f"/v1/users/{USER}/recommendations"), ("GET", f"/v1/users/{USER}/profile"),
                        ("GET", "/v1/items/i00001/similar")):
        p.handed_on.clear()
        a = p.lane.request(method, url, headers=p.home.headers("all"))
        b = p.plain.request(method, url, headers=p.home.headers("all"))
        assert p.handed_on and _masked(a) == _masked(b)


def test_a_key_over_its_rate_is_limited_whichever_path_serves(make_pair):
    """The lane takes its token from the same limiter as FastAPI: a key's burst is shared by the
    requests the lane serves and those FastAPI serves, and the 429 is FastAPI's problem."""
    p = make_pair(rate_limit_per_s=0.01, rate_limit_burst=4)
    served = f"/v1/users/{USER}/recommendations"
    for i in range(4):
        p.handed_on.clear()
        query = {"n": "3"} if i % 2 else {"n": "3", "unknown": "1"}   # the lane, then FastAPI, by turns
        r = p.lane.get(served, params=query, headers=p.home.headers("recs"))
        assert r.status_code == 200 and bool(p.handed_on) == (i % 2 == 0)
    p.handed_on.clear()
    over = p.lane.get(served, params={"n": "3"}, headers=p.home.headers("recs"))
    assert over.status_code == 429 and p.handed_on == [served]
    for _ in range(4):
        p.plain.get(served, params={"n": "3"}, headers=p.home.headers("recs"))
    fastapi = p.plain.get(served, params={"n": "3"}, headers=p.home.headers("recs"))
    assert (over.status_code, over.json()) == (fastapi.status_code, fastapi.json())
    assert int(over.headers["Retry-After"]) >= 1
    # another key has its own bucket
    assert p.lane.get(served, headers=p.home.headers("all")).status_code == 200


def test_a_client_over_the_unauthenticated_rate_is_limited_with_a_valid_key(make_pair):
    p = make_pair(rate_limit_per_s=0.01, rate_limit_burst=2)
    url = f"/v1/users/{USER}/recommendations"
    for _ in range(2):
        assert p.lane.get(url, headers={"X-API-Key": "bogus"}).status_code == 401
    p.handed_on.clear()
    r = p.lane.get(url, headers=p.home.headers("recs"))
    assert r.status_code == 429 and p.handed_on == [url]
    assert "without a valid API key" in r.json()["detail"]


def test_a_revoked_key_and_an_erased_user_hold_at_the_next_request(make_pair):
    p = make_pair()
    url = f"/v1/users/{USER}/recommendations"
    assert p.lane.get(url, headers=p.home.headers("recs")).json()["source"] == "model"
    ErasureLog(p.home.root).record(USER)
    lane, plain = _both(p, url, headers=p.home.headers("recs"))
    assert lane == plain and b'"source":"fallback"' in lane[2]
    revoke_key(DataHome(p.home.root).keys_file, "recs")
    p.handed_on.clear()
    lane, plain = _both(p, url, headers=p.home.headers("recs"))
    assert lane[0] == 401 and lane == plain and p.handed_on == [url]


def test_without_a_recommender_fastapi_answers_503(make_pair):
    p = make_pair()
    folder = clone_bundle(p.home.bundles, p.home.active(), "v-norec")
    (folder / "recommender.npz").unlink()
    write_manifest(folder, json.loads((folder / "manifest.json").read_text()))
    point_current(p.home, "v-norec")
    for c in (p.lane, p.plain):
        assert c.post("/v1/admin/reload", headers=p.home.headers("admin")).status_code == 200
    p.handed_on.clear()
    lane, plain = _both(p, f"/v1/users/{USER}/recommendations", headers=p.home.headers("recs"))
    assert p.handed_on and lane == plain and lane[0] == 503


def test_an_unexpected_error_in_the_lane_is_a_500_problem_with_an_incident(make_pair, monkeypatch):
    p = make_pair()

    def broken(user_id):
        raise RuntimeError("the live state is gone")

    monkeypatch.setattr(p.lane.app.state.live, "purchased_items", broken)
    r = p.lane.get(f"/v1/users/{USER}/recommendations", headers=p.home.headers("recs"))
    assert r.status_code == 500 and p.handed_on == []
    assert r.headers["content-type"].startswith("application/problem+json") and "incident" in r.json()


def test_the_openapi_document_is_the_routes(make_pair):
    p = make_pair()
    assert p.lane.get("/openapi.json").json() == p.plain.get("/openapi.json").json()


def _add_key(p: Pair) -> None:
    """A key created after both apps read the keys file: each must read it again."""
    p.home.keys["late"] = create_key(DataHome(p.home.root).keys_file, "late", ["recommendations:read"])


AUTH_STATES = {
    # name: (settings, what is done to the home first, then (role, expected status) per request)
    "revoked key": ({}, lambda p: revoke_key(DataHome(p.home.root).keys_file, "recs"), [("recs", 401)] * 2),
    "key without the scope": ({}, None, [("profiles", 403), ("admin", 403)]),
    "no key, then a valid one": ({}, None, [(None, 401), ("recs", 200)]),
    "client over its rate without a valid key": (
        {"rate_limit_per_s": 0.01, "rate_limit_burst": 2}, None,
        [("bogus", 401), ("bogus", 401), ("recs", 429), ("all", 429)]),
    "key over its rate": ({"rate_limit_per_s": 0.01, "rate_limit_burst": 2}, None,
                          [("recs", 200), ("recs", 200), ("recs", 429), ("all", 200)]),
    "erased user": ({}, lambda p: ErasureLog(p.home.root).record(USER), [("recs", 200)] * 2),
    "key added since the keys were read": ({}, _add_key, [("late", 200)] * 2),
}


@pytest.mark.parametrize("form", ["path", "query"])
@pytest.mark.parametrize("state", list(AUTH_STATES))
def test_the_lane_and_fastapi_agree_on_each_auth_state(make_pair, state, form):
    """The same requests in the same auth state, through the app with the lane and the app
    without it, get the same answers one by one (status, headers, body): both authorize through
    `api.deps.admit`, and a refused request takes no token in the lane that FastAPI takes again."""
    overrides, prepare, steps = AUTH_STATES[state]
    p = make_pair(**overrides)
    if prepare is not None:
        prepare(p)
    url, query = _url(form, USER)
    for role, status in steps:
        headers = {} if role is None else {"X-API-Key": p.home.keys.get(role, role)}
        lane, plain = _both(p, url, params=query or None, headers=headers)
        assert lane == plain, (state, role)
        assert lane[0] == status, (state, role, lane)
        if state == "erased user":
            assert b'"source":"fallback"' in lane[2]


NEIGHBOURS = {
    # the id as sent (percent-encoded where it is in the path), whether the recommender knows it
    USER: True,
    "%20u0000001%09": True,                  # whitespace at either end is not part of an id
    "u000000": False, "u00000010": False,    # its prefix and an extension (longer than every known id)
    "u0000001%2F": False, "u0000001%25": False, "U0000001": False, "u0000001%00": False,
}


@pytest.mark.parametrize("form", ["path", "query"])
def test_near_neighbours_of_a_known_user_are_unknown_users(make_pair, form):
    p = make_pair()
    for sent, known in NEIGHBOURS.items():
        url, query = (f"/v1/users/{sent}/recommendations", {}) if form == "path" else \
            (f"/v1/users/recommendations?user_id={sent}", {})
        p.handed_on.clear()
        lane, plain = _both(p, url, headers=p.home.headers("recs"))
        assert lane == plain and lane[0] == 200 and p.handed_on == [], sent
        assert (b'"source":"model"' in lane[2]) == known, sent
