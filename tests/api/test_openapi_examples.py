"""Every operation of the OpenAPI schema has a worked example: each request body and each
successful response, on every media type. A body example is sent to the API as it stands (it
must not be refused as invalid: no 422), and a response example must be valid against the
schema it illustrates."""

from __future__ import annotations

import json

import jsonschema
import pytest

from behavior.store.senders import add_sender
from tests.api.notify_helpers import signed


def _operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [(method, path, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def _media(op: dict) -> list[tuple[str, str, dict]]:
    """(where, media type, media object) of the request body and of every 2xx response."""
    found = [("request", ct, m) for ct, m in op.get("requestBody", {}).get("content", {}).items()]
    return found + [(code, ct, m) for code, r in op["responses"].items() if code.startswith("2")
                    for ct, m in r.get("content", {}).items()]


def _examples(media: dict) -> list:
    return [e["value"] for e in media.get("examples", {}).values()]


@pytest.fixture
def spec(client) -> dict:
    return client.get("/openapi.json").json()


def test_every_body_and_successful_response_has_an_example(spec):
    missing = [f"{m.upper()} {p} {where} {ct}" for m, p, op in _operations(spec) for where, ct, media in _media(op)
               if not _examples(media)]
    assert missing == []
    without_success = [f"{m.upper()} {p}" for m, p, op in _operations(spec)
                       if not any(where != "request" for where, _, _ in _media(op))]
    assert without_success == []


def test_response_examples_are_valid_against_their_schema(spec):
    checked = 0
    for method, path, op in _operations(spec):
        for where, ct, media in _media(op):
            validator = jsonschema.Draft202012Validator({**media["schema"], "components": spec["components"]})
            for value in _examples(media):
                errors = [e.message for e in validator.iter_errors(value)]
                assert errors == [], f"{method.upper()} {path} {where} {ct}: {errors}"
                checked += 1
    assert checked >= len(_operations(spec))


def test_body_examples_are_accepted_by_the_api(spec, client, home):
    secret = add_sender(home.root, "psp")
    sent = 0
    for method, path, op in _operations(spec):
        media = op.get("requestBody", {}).get("content", {}).get("application/json")
        if media is None:
            continue
        for name, example in media["examples"].items():
            body = json.dumps(example["value"]).encode()
            headers = signed("psp", body, secret=secret) if path.startswith("/v1/notifications") else \
                home.headers(**{"Content-Type": "application/json"})
            r = client.request(method.upper(), path, content=body, headers=headers)
            assert r.status_code < 400, f"{method.upper()} {path} example {name!r}: {r.status_code} {r.text}"
            sent += 1
    assert sent >= 4
