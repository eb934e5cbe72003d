"""The keys file: API keys with scopes, stored hashed (`behavior keys` writes it, the API reads it).

The keys file (default `<data home>/api_keys.json`, or $BEHAVIOR_API_KEYS with the same JSON) is

    {"keys": [{"key_id": "marketing", "sha256": "<hex digest of the key>",
               "scopes": ["segments:read", "segments:export"], "created_at": "2026-01-01T00:00:00+00:00"}]}

Only the SHA-256 of a key is stored; the plaintext is shown once by `create_key`. A presented
key is hashed and compared with every stored digest in constant time (`hmac.compare_digest`),
without stopping at the first match (the API's key ring).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from behavior.errors import BehaviorError
from behavior.store import atomic
from behavior.store.json_file import read_json

SCOPES = ("recommendations:read", "recommendations:export", "profiles:read", "segments:read", "segments:export", "promotions:target",
          "merchants:read", "merchants:export", "admin")
KEY_PREFIX = "bk_"
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class KeyFileError(BehaviorError, ValueError):
    """The keys file (or $BEHAVIOR_API_KEYS) cannot be read, or a key request is invalid."""


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    scopes: frozenset[str]
    digest: bytes


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _check_scopes(scopes: list[str] | tuple[str, ...], where: str) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise KeyFileError(f"{where}: unknown scope {', '.join(map(repr, unknown))}; the scopes are: {', '.join(SCOPES)}")
    return sorted(set(scopes), key=SCOPES.index)


def parse_keys(doc: Any, where: str) -> list[ApiKey]:
    """The keys of a parsed keys document; `where` names its source in error messages."""
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise KeyFileError(f'{where}: expected an object {{"keys": [...]}}')
    keys, seen = [], set()
    for i, entry in enumerate(doc["keys"]):
        at = f"{where}: keys[{i}]"
        if not isinstance(entry, dict):
            raise KeyFileError(f"{at} is not an object")
        key_id, digest, scopes = entry.get("key_id"), entry.get("sha256"), entry.get("scopes")
        if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
            raise KeyFileError(f"{at}: key_id must be 1-64 letters, digits, '.', '_' or '-'")
        if key_id in seen:
            raise KeyFileError(f"{at}: key_id {key_id!r} appears twice")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise KeyFileError(f"{at}: sha256 must be the 64 lowercase hex digits of the key's SHA-256")
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise KeyFileError(f"{at}: scopes must be a list of strings")
        seen.add(key_id)
        keys.append(ApiKey(key_id, frozenset(_check_scopes(scopes, at)), bytes.fromhex(digest)))
    return keys


def read_keys_file(path: Path) -> list[ApiKey]:
    """The keys in `path`; none if the file does not exist."""
    doc = read_json(path, KeyFileError, None)
    return [] if doc is None else parse_keys(doc, path.name)


def _read_doc(path: Path) -> dict:
    doc = read_json(path, KeyFileError, {"keys": []}, "; fix or remove it")
    parse_keys(doc, path.name)  # refuse to add to a file that would not load
    return doc


def create_key(path: Path, key_id: str, scopes: list[str] | tuple[str, ...]) -> str:
    """Add a key with `scopes` to the keys file at `path` (created if absent) and return its
    plaintext, which is stored nowhere: only its SHA-256 is written."""
    if not _KEY_ID.match(key_id):
        raise KeyFileError(f"key id {key_id!r}: use 1-64 letters, digits, '.', '_' or '-'")
    if not scopes:
        raise KeyFileError(f"key {key_id!r}: give at least one scope ({', '.join(SCOPES)})")
    chosen = _check_scopes(list(scopes), f"key {key_id!r}")
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.locked(path):
        doc = _read_doc(path)
        if any(k.get("key_id") == key_id for k in doc["keys"]):
            raise KeyFileError(f"key id {key_id!r} already exists in {path.name}; revoke it first or pick another id")
        doc["keys"].append({"key_id": key_id, "sha256": hash_key(plaintext), "scopes": chosen,
                            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        atomic.write_json(path, doc)
    return plaintext


def revoke_key(path: Path, key_id: str) -> bool:
    """Remove the key `key_id` from the keys file; False if it was not there."""
    with atomic.locked(path):
        doc = _read_doc(path)
        kept = [k for k in doc["keys"] if k.get("key_id") != key_id]
        if len(kept) == len(doc["keys"]):
            return False
        doc["keys"] = kept
        atomic.write_json(path, doc)
    return True


def list_keys(path: Path) -> list[dict]:
    """key_id, scopes and created_at of every key in the file (never the digests)."""
    doc = _read_doc(path)
    return [{"key_id": k["key_id"], "scopes": k["scopes"], "created_at": k.get("created_at")} for k in doc["keys"]]
