"""The keys the API accepts: the keys file (`behavior.store.keys`) and $BEHAVIOR_API_KEYS, with
a constant-time check of a presented key against every stored digest."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

from behavior.store.keys import ApiKey, KeyFileError, parse_keys, read_keys_file


class KeyRing:
    """The keys the API accepts (immutable; a changed keys file gives a new ring)."""

    def __init__(self, keys: list[ApiKey]) -> None:
        self._keys = tuple(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def authenticate(self, presented: str) -> ApiKey | None:
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for key in self._keys:  # no early exit: the time does not depend on which key matched
            if hmac.compare_digest(key.digest, digest):
                found = key
        return found


def load_keyring(path: Path, env_json: str | None) -> KeyRing:
    keys = read_keys_file(path)
    if env_json:
        try:
            doc = json.loads(env_json)
        except json.JSONDecodeError as exc:
            raise KeyFileError(f"BEHAVIOR_API_KEYS: not valid JSON ({exc.msg})") from None
        file_ids = {k.key_id for k in keys}
        extra = parse_keys(doc, "BEHAVIOR_API_KEYS")
        clash = [k.key_id for k in extra if k.key_id in file_ids]
        if clash:
            raise KeyFileError(f"BEHAVIOR_API_KEYS: key_id {', '.join(clash)} is also in {path.name}")
        keys += extra
    return KeyRing(keys)
