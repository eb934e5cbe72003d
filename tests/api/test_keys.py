"""API keys: stored hashed, scoped, created atomically, compared in constant time."""

import hashlib
import json
import os
import stat

import pytest

from api.keys import load_keyring
from api.settings import Settings
from behavior.store.config import ConfigError
from behavior.store.keys import SCOPES, KeyFileError, create_key, list_keys, revoke_key


def test_create_key_stores_only_the_hash(tmp_path, capsys):
    path = tmp_path / "keys.json"
    plain = create_key(path, "marketing", ["segments:read", "segments:export"])
    assert capsys.readouterr() == ("", "")
    text = path.read_text()
    assert plain not in text
    doc = json.loads(text)
    entry = doc["keys"][0]
    assert entry["key_id"] == "marketing"
    assert entry["sha256"] == hashlib.sha256(plain.encode()).hexdigest()
    assert entry["scopes"] == ["segments:read", "segments:export"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_keyring_authenticates_and_tells_keys_apart(tmp_path):
    path = tmp_path / "keys.json"
    a = create_key(path, "a", ["admin"])
    b = create_key(path, "b", ["profiles:read"])
    ring = load_keyring(path, None)
    assert ring.authenticate(a).key_id == "a" and ring.authenticate(a).scopes == {"admin"}
    assert ring.authenticate(b).key_id == "b"
    assert ring.authenticate(a + "x") is None and ring.authenticate("") is None


def test_bad_requests_and_files_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "keys.json"
    create_key(path, "a", ["admin"])
    with pytest.raises(KeyFileError, match="already exists"):
        create_key(path, "a", ["admin"])
    with pytest.raises(KeyFileError, match="unknown scope 'root'"):
        create_key(path, "c", ["root"])
    with pytest.raises(KeyFileError, match="key id"):
        create_key(path, "no spaces", ["admin"])
    with pytest.raises(KeyFileError, match="at least one scope"):
        create_key(path, "d", [])
    path.write_text("{not json")
    with pytest.raises(KeyFileError, match="not valid JSON"):
        load_keyring(path, None)
    path.write_text(json.dumps({"keys": [{"key_id": "x", "sha256": "abc", "scopes": []}]}))
    with pytest.raises(KeyFileError, match="sha256"):
        load_keyring(path, None)


def test_revoke_and_list(tmp_path):
    path = tmp_path / "keys.json"
    plain = create_key(path, "a", list(SCOPES))
    create_key(path, "b", ["admin"])
    listed = list_keys(path)
    assert [k["key_id"] for k in listed] == ["a", "b"] and "sha256" not in listed[0]
    assert revoke_key(path, "a") and not revoke_key(path, "a")
    assert load_keyring(path, None).authenticate(plain) is None


def test_keys_from_the_environment_join_the_file(tmp_path):
    path = tmp_path / "keys.json"
    create_key(path, "file", ["admin"])
    env_plain = "bk_from-env"
    env = json.dumps({"keys": [{"key_id": "env", "sha256": hashlib.sha256(env_plain.encode()).hexdigest(),
                                "scopes": ["profiles:read"]}]})
    ring = load_keyring(path, env)
    assert ring.authenticate(env_plain).key_id == "env" and len(ring) == 2
    with pytest.raises(KeyFileError, match="also in"):
        load_keyring(path, env.replace('"env"', '"file"'))


def test_settings_come_from_the_environment_when_asked(tmp_path):
    s = Settings.from_env({"BEHAVIOR_DATA_DIR": str(tmp_path), "BEHAVIOR_API_RATE_LIMIT": "2.5",
                           "BEHAVIOR_API_RELOAD_INTERVAL": "0"})
    assert s.data_dir == tmp_path and s.keys_path == tmp_path / "api_keys.json"
    assert s.rate_limit_per_s == 2.5 and s.reload_interval_s == 0
    assert s.audit_log == tmp_path / "audit" / "api.log"
    with pytest.raises(ConfigError, match="BEHAVIOR_API_RATE_LIMIT"):
        Settings.from_env({"BEHAVIOR_API_RATE_LIMIT": "fast"})


def test_server_limits_come_from_the_environment(tmp_path):
    s = Settings.from_env({"BEHAVIOR_DATA_DIR": str(tmp_path)})
    assert (s.max_header_bytes, s.request_timeout_s) == (65_536, 10.0)
    s = Settings.from_env({"BEHAVIOR_API_MAX_HEADER_BYTES": "8192", "BEHAVIOR_API_REQUEST_TIMEOUT": "2.5"})
    assert (s.max_header_bytes, s.request_timeout_s) == (8192, 2.5)
    with pytest.raises(ConfigError, match="BEHAVIOR_API_REQUEST_TIMEOUT"):
        Settings.from_env({"BEHAVIOR_API_REQUEST_TIMEOUT": "-1"})


def test_a_key_added_or_revoked_holds_at_the_next_request_without_polling(make_client, home):
    path = home.root / "api_keys.json"
    with make_client(reload_interval_s=0) as c:
        late = create_key(path, "late", ["profiles:read"])
        assert c.get("/v1/users/u0000001/profile", headers={"X-API-Key": late}).status_code == 200
        assert revoke_key(path, "late")
        assert c.get("/v1/users/u0000001/profile", headers={"X-API-Key": late}).status_code == 401


def test_the_server_reads_only_its_own_sections_of_the_environment(tmp_path):
    env = {"BEHAVIOR_DATA_DIR": str(tmp_path), "BEHAVIOR_API_RATE_BURST": "9",
           "BEHAVIOR_RECOMMEND_TRAINER": "mllib", "BEHAVIOR_SPARK_SHUFFLE_PARTITIONS": "many"}
    s = Settings.from_env(env)   # the batch side's variables, however wrong, do not stop the server
    assert (s.data_dir, s.rate_limit_burst) == (tmp_path, 9)
    with pytest.raises(ConfigError, match="BEHAVIOR_API_RATE_BURST = 0 must be at least 1"):
        Settings.from_env({"BEHAVIOR_API_RATE_BURST": "0"})
