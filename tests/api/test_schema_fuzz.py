"""Schemathesis over the OpenAPI schema: no server errors, every status code documented and every
response as documented, with a key that has every scope but admin (an admin key would let the
fuzzer erase real users)."""

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance

from behavior.store.keys import SCOPES, create_key
from api.main import create_app

MAX_EXAMPLES = 10
CHECKS = [not_a_server_error, response_schema_conformance, status_code_conformance]


def test_api_conforms_to_its_schema(home):
    # schemathesis' pytest plugin (from_fixture) does not work with this pytest: drive it directly
    schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(home.settings()))
    headers = {"X-API-Key": create_key(home.root / "api_keys.json", "fuzz", [s for s in SCOPES if s != "admin"])}
    known = {"user_id": "u0000001", "item_id": "i000001", "promotion_id": "promo001", "merchant_id": "m00001"}
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 24
    for operation in operations:
        strategies = [operation.as_strategy()]
        if operation.path_parameters or operation.query or operation.body:  # something to get wrong
            strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
        ids = {name: value for name, value in known.items() if "{" + name + "}" in operation.path}
        if ids and operation.method.upper() == "GET":  # also the ids the bundle knows, for 200 answers
            strategies.append(operation.as_strategy(path_parameters=ids))
        for name in ("user_id", "merchant_id"):   # the query forms of the per-user and per-merchant routes
            if operation.query and name in operation.query and operation.method.upper() == "GET":
                strategies.append(operation.as_strategy(query={name: known[name]}))
        for strategy in strategies:
            @given(case=strategy)
            @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def check(case):
                case.call_and_validate(headers=headers, checks=CHECKS)

            check()


def test_schema_documents_problems_and_security(home):
    from fastapi.testclient import TestClient

    with TestClient(create_app(home.settings())) as client:
        doc = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert doc["info"]["title"] == "Behavior API"
    assert doc["components"]["securitySchemes"]["APIKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": doc["components"]["securitySchemes"][
            "APIKeyHeader"]["description"]}
    paths = doc["paths"]
    assert paths["/v1/users/{user_id}/profile"]["get"]["security"] == [{"APIKeyHeader": ["profiles:read"]}]
    assert paths["/v1/admin/reload"]["post"]["security"] == [{"APIKeyHeader": ["admin"]}]
    assert paths["/v1/model"]["get"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in paths["/healthz"]["get"]
    assert paths["/v1/promotions/targets"]["post"]["security"] == [{"APIKeyHeader": ["promotions:target"]}]
    assert paths["/v1/promotions/targets"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for path, ops in paths.items():
        for op in ops.values():
            for code, resp in op["responses"].items():
                if int(code) >= 400:
                    assert list(resp["content"]) == ["application/problem+json"], (path, code)
    # answered before any route: a body that cannot be read (400), the body limit (413)
    for path, method in [("/v1/promotions/targets", "post"), ("/v1/segments/query", "post")]:
        assert {"400", "413"} <= set(paths[path][method]["responses"]), path
    for path in ("/v1/admin/reload", "/v1/admin/rollback", "/v1/users/{user_id}/profile", "/healthz"):
        assert "413" in paths[path][next(iter(paths[path]))]["responses"], path
    assert "with `behavior serve --workers N` a key may make up to N times its rate" in doc["info"]["description"]
    assert paths["/v1/merchants/{merchant_id}"]["get"]["security"] == [{"APIKeyHeader": ["merchants:read"]}]
    assert paths["/v1/merchants/{merchant_id}/customers"]["get"]["security"] == [
        {"APIKeyHeader": ["merchants:read", "merchants:export"]}]
    assert paths["/v1/merchants/profile"]["get"]["security"] == [{"APIKeyHeader": ["merchants:read"]}]
    assert paths["/v1/merchants/customers"]["get"]["security"] == [
        {"APIKeyHeader": ["merchants:read", "merchants:export"]}]
    query = paths["/v1/segments/query"]["post"]
    assert set(query["responses"]["200"]["content"]) == {"application/json", "text/csv"}
    assert query["requestBody"]["content"]["application/json"]["examples"]
