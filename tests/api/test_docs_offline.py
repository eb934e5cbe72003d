"""/docs (Swagger UI) and /redoc (ReDoc) work offline: every script, style and icon they load is
served by the API itself from an installed package, and the pages name no other host."""

import re

import pytest

REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize("page, assets", [("/docs", {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"}),
                                          ("/redoc", {"redoc.standalone.js", "favicon.png"})])
def test_the_docs_pages_load_everything_from_the_api_itself(client, page, assets):
    r = client.get(page)     # no API key needed
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", r.text, re.I), "the page names an outside host"
    refs = [a or b for a, b in REFERENCE.findall(r.text)]
    assert "/openapi.json" in refs
    loaded = set()
    for ref in refs:
        assert ref.startswith("/") and not ref.startswith("//"), ref
        got = client.get(ref)
        assert got.status_code == 200 and len(got.content) > 0, ref
        loaded.add(ref.rsplit("/", 1)[-1])
    assert assets <= loaded
    script = next(ref for ref in refs if ref.endswith(".js"))
    assert client.get(script).headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")


def test_swagger_ui_sends_the_schema_to_no_validator(client):
    assert '"validatorUrl": null' in client.get("/docs").text


def test_the_docs_pages_are_not_operations_of_the_schema(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert not {"/docs", "/redoc"} & set(paths) and not any(p.startswith("/docs-assets") for p in paths)
