"""Settings of the API, read from the environment once through `get_settings()`.

Nothing is read at import time. Tests build a `Settings` directly and override
`get_settings` in `app.dependency_overrides` (or pass it to `create_app`).

Environment variables:
  BEHAVIOR_DATA_DIR            data home (default ./data)
  BEHAVIOR_API_KEYS_FILE       keys file (default <data_dir>/api_keys.json)
  BEHAVIOR_API_KEYS            keys as JSON, same format as the keys file (hashes, never plaintext)
  BEHAVIOR_API_RATE_LIMIT      requests per second per key, sustained (0 = no limit; default 50), counted
                               by each worker process on its own: with --workers N a key may make up
                               to N times as many. Requests without a valid key are limited the same
                               way per client address.
  BEHAVIOR_API_RATE_BURST      requests a key may make at once (default 100)
  BEHAVIOR_API_MAX_BODY_BYTES  largest request body accepted (default 65536)
  BEHAVIOR_API_MAX_HEADER_BYTES  largest request line and headers accepted, 431 above (default 65536)
  BEHAVIOR_API_REQUEST_TIMEOUT seconds a request may take to arrive whole, and a new connection to send
                               its first request; 408 and close after (0 = no limit; default 10)
  BEHAVIOR_API_RELOAD_INTERVAL seconds between two looks at CURRENT (0 = no polling; default 5)
  BEHAVIOR_API_MAX_NOTIFICATION_BYTES  largest payment notification body (default 2097152)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from behavior.errors import BehaviorError
from behavior.store.datahome import DataHome


class SettingsError(BehaviorError, ValueError):
    """An environment variable of the API has a value that cannot be used."""


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path = Path("data")
    keys_file: Path | None = None
    api_keys_json: str | None = None
    rate_limit_per_s: float = Field(50.0, ge=0)
    rate_limit_burst: int = Field(100, ge=1)
    max_body_bytes: int = Field(65_536, ge=0)
    max_header_bytes: int = Field(65_536, ge=0)
    request_timeout_s: float = Field(10.0, ge=0)
    reload_interval_s: float = Field(5.0, ge=0)
    max_notification_bytes: int = Field(2_097_152, ge=0)

    @property
    def home(self) -> DataHome:
        """The data home (its layout is `DataHome`'s)."""
        return DataHome(self.data_dir)

    @property
    def keys_path(self) -> Path:
        return self.keys_file if self.keys_file is not None else self.home.keys_file

    @property
    def bundles_dir(self) -> Path:
        return self.home.bundles

    @property
    def current_file(self) -> Path:
        return self.home.current

    @property
    def audit_log(self) -> Path:
        return self.home.audit_log

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ

        def number(name: str, kind: type, default: float | int) -> float | int:
            raw = env.get(name)
            if raw is None or raw.strip() == "":
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise SettingsError(f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number") from None
            if value < 0:
                raise SettingsError(f"{name}={raw!r} must not be negative")
            return value

        keys_file = env.get("BEHAVIOR_API_KEYS_FILE")
        return cls(
            data_dir=Path(env.get("BEHAVIOR_DATA_DIR") or "data").expanduser().absolute(),
            keys_file=Path(keys_file).expanduser().absolute() if keys_file else None,
            api_keys_json=env.get("BEHAVIOR_API_KEYS") or None,
            rate_limit_per_s=number("BEHAVIOR_API_RATE_LIMIT", float, 50.0),
            rate_limit_burst=max(1, int(number("BEHAVIOR_API_RATE_BURST", int, 100))),
            max_body_bytes=number("BEHAVIOR_API_MAX_BODY_BYTES", int, 65_536),
            max_header_bytes=number("BEHAVIOR_API_MAX_HEADER_BYTES", int, 65_536),
            request_timeout_s=number("BEHAVIOR_API_REQUEST_TIMEOUT", float, 10.0),
            reload_interval_s=number("BEHAVIOR_API_RELOAD_INTERVAL", float, 5.0),
            max_notification_bytes=number("BEHAVIOR_API_MAX_NOTIFICATION_BYTES", int, 2_097_152),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()
