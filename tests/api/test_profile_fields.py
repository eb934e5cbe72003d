"""Every profile field is explained in the OpenAPI: what it is, its unit or range, how it is made."""


def test_every_served_profile_field_has_a_description(client, home):
    spec = client.get("/openapi.json").json()
    props = spec["components"]["schemas"]["Profile"]["properties"]
    undocumented = sorted(name for name, p in props.items() if not p.get("description"))
    assert undocumented == []
    served = client.get("/v1/users/u0000007/profile", headers=home.headers("profiles")).json()
    assert sorted(set(served) - set(props)) == []   # no served field outside the documented model


def test_the_two_recencies_and_p_alive_say_what_they_are(client):
    props = client.get("/openapi.json").json()["components"]["schemas"]["Profile"]["properties"]
    assert "first to the last purchase" in props["purchase_span_days"]["description"]
    assert props["recency"]["deprecated"] and "purchase_span_days" in props["recency"]["description"]
    assert "since the last" in props["recency_days"]["description"]
    assert "BG/NBD" in props["p_alive"]["description"] and "0-1" in props["p_alive"]["description"]
    assert "same BTYD model" in props["expected_purchases"]["description"]
