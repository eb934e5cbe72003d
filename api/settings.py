"""Settings of the API: the `[home]` and `[api]` sections of the one configuration
(`behavior.store.config`), read from the environment once through `get_settings()`.

Nothing is read at import time. Tests build a `Settings` directly and override
`get_settings` in `app.dependency_overrides` (or pass it to `create_app`). Every variable, with
its default, is listed in docs/configuration.md (`BEHAVIOR_DATA_DIR`, `BEHAVIOR_API_*`).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from behavior.store.datahome import DataHome
from behavior.store.config import ApiConfig, HomeConfig, load_section

_API, _HOME = ApiConfig(), HomeConfig()   # the defaults, declared once in behavior.store.config


class Settings(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path = Path(_HOME.data_dir)
    keys_file: Path | None = None
    api_keys_json: str | None = None
    rate_limit_per_s: float = Field(_API.rate_limit, ge=0)
    rate_limit_burst: int = Field(_API.rate_burst, ge=1)
    max_body_bytes: int = Field(_API.max_body_bytes, ge=0)
    max_header_bytes: int = Field(_API.max_header_bytes, ge=0)
    request_timeout_s: float = Field(_API.request_timeout, ge=0)
    reload_interval_s: float = Field(_API.reload_interval, ge=0)
    max_notification_bytes: int = Field(_API.max_notification_bytes, ge=0)

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
        """The `[home]` and `[api]` settings of `environ` (default `os.environ`); a ConfigError
        names a variable whose value cannot be used (the batch side's variables are not read)."""
        api, home = load_section(ApiConfig, environ), load_section(HomeConfig, environ)
        return cls(
            data_dir=Path(home.data_dir).expanduser().absolute(),
            keys_file=Path(api.keys_file).expanduser().absolute() if api.keys_file else None,
            api_keys_json=api.keys or None,
            rate_limit_per_s=api.rate_limit,
            rate_limit_burst=api.rate_burst,
            max_body_bytes=api.max_body_bytes,
            max_header_bytes=api.max_header_bytes,
            request_timeout_s=api.request_timeout,
            reload_interval_s=api.reload_interval,
            max_notification_bytes=api.max_notification_bytes,
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return Settings.from_env()
